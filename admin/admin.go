// Package admin owns amqplb's admin HTTP server: Prometheus metrics on /metrics, the JSON API
// under /api/v1/ (read servers and frontends, change a server's operator state or weight),
// /healthz and /readyz for orchestrators, and the self-contained status page at /.
//
// It imports backend only. It reads servers through their atomic accessors at request time and
// changes them only through SetAdmin and SetWeight; frontends reach it as plain FrontendStats
// that the caller provides. It keeps no copy of the backends: every request asks
// Options.Backends, so a reload that swaps the backend set is seen at once.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultListen is the admin address when Options.Listen is empty: loopback only, because
// the API can take servers out of rotation.
const DefaultListen = "127.0.0.1:8404"

// RefuseReasons are the reasons of amqplb_frontend_refused_total (and of the API's refused
// map) that are always exported, 0 until one happens, so that alerts and dashboards find every
// series from the start. They match proxy's reasons; admin does not import proxy.
var RefuseReasons = []string{"maxconn", "bad_header", "handshake_timeout", "no_server", "connect_failed"}

// FrontendStats is a snapshot of one frontend's counters, taken by the caller when admin asks.
type FrontendStats struct {
	// Name identifies the frontend.
	Name string
	// Active is the number of sessions open now.
	Active int
	// Total is the number of sessions accepted since start.
	Total uint64
	// Refused counts refused connections by reason (see RefuseReasons); a nil map means none.
	Refused map[string]uint64
}

// Options configures a Server. Every function field may be nil: no backends, no frontends,
// always ready, a discarding logger.
type Options struct {
	// Listen is the host:port to bind; empty means DefaultListen.
	Listen string
	// Token, when set, is required as "Authorization: Bearer <token>" on mutating requests.
	Token string
	// Backends returns the current set of backends. It is called on every request and scrape
	// and never cached, since a reload replaces the set.
	Backends func() []*backend.Backend
	// Serving returns the backends that frontends send connections to: /readyz wants at least
	// one server up in each. nil means all of Backends (a backend no frontend uses does not
	// make amqplb unready).
	Serving func() []*backend.Backend
	// Frontends returns a snapshot of every frontend's counters.
	Frontends func() []FrontendStats
	// Ready reports whether the process accepts new work; false while shutting down, which
	// makes /readyz answer 503 whatever the servers.
	Ready func() bool
	// Logger receives one line per mutation and the server's errors.
	Logger *slog.Logger
	// Version is amqplb's version, shown on the status page and in amqplb_build_info.
	Version string
}

// Server is the admin HTTP server. Build it with New, then either mount Handler yourself or
// call Listen and Serve, and finally Shutdown.
type Server struct {
	opts     Options
	log      *slog.Logger
	registry *prometheus.Registry
	handler  http.Handler
	http     *http.Server

	mu sync.Mutex
	ln net.Listener
}

// New builds a Server with its own Prometheus registry, so two Servers in one process (a
// test, or a reload that rebuilds the admin server) never collide.
func New(o Options) *Server {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Backends == nil {
		o.Backends = func() []*backend.Backend { return nil }
	}
	if o.Frontends == nil {
		o.Frontends = func() []FrontendStats { return nil }
	}
	if o.Ready == nil {
		o.Ready = func() bool { return true }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: o.Logger.With("component", "admin")}
	s.registry = newRegistry(o)
	s.handler = s.routes()
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler returns the server's HTTP handler: every endpoint, without a listener.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the server's Prometheus registry, for callers that want to add collectors
// of their own to /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Listen binds Options.Listen. It is separate from Serve so that the caller learns of a busy
// port before it starts anything else.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.opts.Listen, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		ln.Close()
		return errors.New("admin: already listening")
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve answers requests on the listener bound by Listen until Shutdown, then returns nil.
func (s *Server) Serve() error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return errors.New("admin: Serve before Listen")
	}
	s.log.Info("admin listening", "addr", ln.Addr().String())
	if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, waits for requests in flight until ctx ends, and closes the
// listener (also when Serve was never called).
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close() // Shutdown closed it when Serve ran; closing twice is harmless
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}
