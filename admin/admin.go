// Package admin owns amqplb's operator listeners: HTTP, and HAProxy's runtime socket.
// The admin Server: Prometheus metrics on /metrics, the JSON API under /api/v1/ (read servers, frontends and sessions, change a server's operator
// state or weight, close a session), /healthz and /readyz for orchestrators, and the
// self-contained status page at /.
// The StatsServer: what an HAProxy `listen` section with `stats enable|uri|auth|realm|refresh|
// hide-version` or `http-request use-service prometheus-exporter` becomes, a read-only
// listener with the same status page, the JSON it reads and the metrics, behind basic auth
// when it has users (with `stats admin if TRUE`, its page's buttons set servers' states).
// The Socket: HAProxy's runtime API (`stats socket`) on a UNIX socket, its text protocol.
//
// It imports backend, and healthcheck for its Status type only. It reads servers through their
// atomic accessors at request time and changes them only through SetAdmin and SetWeight (and
// the runtime socket's SetMaxConnections), in changeAdmin and changeWeight, which every
// listener shares; what the health checks found (last check, failures by kind, check durations)
// it asks Options.Checks, per server; frontends reach it as plain FrontendStats that the caller
// provides, and open sessions as plain Session snapshots (Options.Sessions): listed at
// /api/v1/sessions, closed by id through Options.CloseSession, counted by vhost in
// amqplb_vhost_sessions. It keeps no copy of the backends or the sessions: every request asks
// Options.Backends and Options.Sessions, so a reload that swaps the backend set is seen at once.
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
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultListen is the admin address when Options.Listen is empty: loopback only, because
// the API can take servers out of rotation.
const DefaultListen = "127.0.0.1:8404"

// FrontendStats is a snapshot of one frontend's counters, taken by the caller when admin asks.
type FrontendStats struct {
	// Name identifies the frontend.
	Name string
	// Active is the number of sessions open now.
	Active int
	// Total is the number of sessions accepted since start.
	Total uint64
	// Refused counts refused connections by reason (see Options.RefuseReasons); a nil map means
	// none.
	Refused map[string]uint64
	// Parked is the number of open sessions parked as idle (no goroutine of their own).
	Parked int
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
	// Checks returns what the health checks know of a server (healthcheck.Statuses.Status):
	// the API's "check" and the health-check metrics. It is called for every server on every
	// request and scrape. nil means nothing is known: every check is pending.
	Checks func(*backend.Server) healthcheck.Status
	// RefuseReasons are the reasons of amqplb_frontend_refused_total (and of the API's refused
	// map) that are always exported, 0 until one happens, so that alerts and dashboards find
	// every series from the start: proxy.RefuseReasons(). admin keeps no list of its own.
	RefuseReasons []string
	// Sessions returns a snapshot of every open session, in every frontend, in any order:
	// GET /api/v1/sessions and the amqplb_vhost_sessions metric, which are computed from it
	// at request and scrape time. nil means none.
	Sessions func() []Session
	// CloseSession ends the open session with the given id (the proxy logs it as
	// end=closed_by_admin) and reports whether there was one; POST
	// /api/v1/sessions/{id}/close calls it. nil refuses such requests.
	CloseSession func(id uint64) bool
	// CloseSessionGracefully ends the open session with the given id as a broker would (an
	// AMQP Connection.Close 320 at a frame boundary; the proxy logs end=closed_by_admin) and
	// reports whether there was one; POST /api/v1/sessions/{id}/close?graceful=true calls it.
	// nil refuses such requests.
	CloseSessionGracefully func(id uint64) bool
	// VHostLabels caps the vhost label of amqplb_vhost_sessions: the VHostLabels vhosts with
	// the most open sessions get a series each, and all others are summed under
	// vhost="_other". 0 (or less) puts every session under "_other". [admin] vhost_labels,
	// 100 by default, is what amqplb passes.
	VHostLabels int
	// CloseSessions ends every session on s, in every frontend, and returns how many it
	// ended; POST .../state with "shutdown_sessions" calls it. nil refuses such requests.
	CloseSessions func(s *backend.Server) int
	// Rebalance plans a rebalance of the named backend and returns the sessions it closes, in
	// order; unless dryRun it also starts it (the closes are paced at the backend's rate). An
	// error wrapping ErrRebalanceUnavailable says why the backend cannot be rebalanced. POST
	// /api/v1/backends/{b}/rebalance calls it; nil refuses such requests (501).
	Rebalance func(backend string, dryRun bool) ([]RebalanceVictim, error)
	// Rebalancing reports whether the backend has a rebalance in progress (the API's
	// "rebalancing" and the status page's badge); nil means never.
	Rebalancing func(backend string) bool
	// RebalanceCloses counts the sessions rebalancing closed on a server
	// (amqplb_rebalance_closes_total); nil means none.
	RebalanceCloses func(backend, server string) uint64
	// Discovery returns what the backend's cluster discovery sees, and false when the backend
	// has none: the API's "discovery" and the amqplb_discovery_* metrics. nil means none.
	Discovery func(backend string) (Discovery, bool)
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
	*view
	opts    Options
	page    []byte // the status page
	handler http.Handler
	srv     *listener
}

// New builds a Server with its own Prometheus registry, so two Servers in one process (a
// test, or a reload that rebuilds the admin server) never collide.
func New(o Options) *Server {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Ready == nil {
		o.Ready = func() bool { return true }
	}
	src := source{backends: o.Backends, frontends: o.Frontends, checks: o.Checks, refuseReasons: o.RefuseReasons,
		sessions: o.Sessions, vhostLabels: o.VHostLabels, rebalancing: o.Rebalancing, rebalanceCloses: o.RebalanceCloses,
		discovery: o.Discovery}
	s := &Server{view: newView(src, o.Logger, "admin", o.Version, false)}
	if o.Backends == nil {
		o.Backends = s.backends
	}
	s.opts = o
	s.page = adminPage(o.Sessions != nil)
	s.handler = s.routes()
	s.srv = newListener("admin", o.Listen, s.handler, s.log)
	return s
}

// Handler returns the server's HTTP handler: every endpoint, without a listener.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the server's Prometheus registry, for callers that want to add collectors
// of their own to /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Listen binds Options.Listen. It is separate from Serve so that the caller learns of a busy
// port before it starts anything else.
func (s *Server) Listen() error { return s.srv.listen() }

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr { return s.srv.addr() }

// Serve answers requests on the listener bound by Listen until Shutdown, then returns nil.
func (s *Server) Serve() error { return s.srv.serve() }

// Shutdown stops accepting, waits for requests in flight until ctx ends, and closes the
// listener (also when Serve was never called).
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.shutdown(ctx) }

// listener is the HTTP server and listening socket life cycle that Server and StatsServer
// share.
type listener struct {
	name   string // "admin" or "stats": the prefix of errors and log messages
	bind   string
	log    *slog.Logger
	server *http.Server

	mu sync.Mutex
	ln net.Listener
}

func newListener(name, bind string, h http.Handler, log *slog.Logger) *listener {
	return &listener{
		name: name,
		bind: bind,
		log:  log,
		server: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
}

func (l *listener) listen() error {
	if l.bind == "" {
		return fmt.Errorf("%s: no address to listen on", l.name)
	}
	ln, err := net.Listen("tcp", l.bind)
	if err != nil {
		return fmt.Errorf("%s: listen %s: %w", l.name, l.bind, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		ln.Close()
		return fmt.Errorf("%s: already listening", l.name)
	}
	l.ln = ln
	return nil
}

func (l *listener) addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

func (l *listener) serve() error {
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	if ln == nil {
		return fmt.Errorf("%s: Serve before Listen", l.name)
	}
	l.log.Info(l.name+" listening", "addr", ln.Addr().String())
	if err := l.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: serve: %w", l.name, err)
	}
	return nil
}

func (l *listener) shutdown(ctx context.Context) error {
	err := l.server.Shutdown(ctx)
	l.mu.Lock()
	if l.ln != nil {
		l.ln.Close() // Shutdown closed it when Serve ran; closing twice is harmless
	}
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: shutdown: %w", l.name, err)
	}
	return nil
}
