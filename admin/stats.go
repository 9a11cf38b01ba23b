package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultStatsURI is where HAProxy serves its status page after `stats enable` without
// `stats uri`. NewStats does not apply it (an empty URI means no page); the configuration does.
const DefaultStatsURI = "/haproxy?stats"

// DefaultStatsRealm is the basic-auth realm when StatsOptions.Realm is empty, as in HAProxy.
const DefaultStatsRealm = "HAProxy Statistics"

// MinStatsRefresh is the shortest refresh period the status page accepts; a shorter
// StatsOptions.Refresh counts as this.
const MinStatsRefresh = 500 * time.Millisecond

// StatsOptions configures a StatsServer, the read-only listener that an HAProxy `listen`
// section with `stats enable` or `http-request use-service prometheus-exporter` becomes. Every
// function field may be nil, as in Options.
type StatsOptions struct {
	// Name is the section's name, in log lines.
	Name string
	// Listen is the host:port to bind; it has no default.
	Listen string
	// URI is where the status page is (HAProxy's `stats uri`): every request whose path and
	// query begin with it gets the page, as in HAProxy, so "/haproxy?stats" serves
	// "/haproxy?stats" and "/" serves every path. The JSON the page reads is under the URI's
	// directory ("/" for "/haproxy?stats", "/lb/" for "/lb/stats"), at api/v1/backends and
	// api/v1/frontends. Empty means no page and no JSON. A URI without a leading "/" gets one.
	URI string
	// Users are the user names and passwords of HTTP basic auth (`stats auth USER:PASS`).
	// When there are any, every path of the listener needs one of them.
	Users map[string]string
	// Realm is the basic-auth realm (`stats realm`); empty means DefaultStatsRealm.
	Realm string
	// Refresh is how often the page refreshes its data (`stats refresh`); 0 means the page's
	// default (2s), and anything shorter than MinStatsRefresh counts as MinStatsRefresh.
	Refresh time.Duration
	// HideVersion keeps amqplb's version off the page and out of the JSON
	// (`stats hide-version`). amqplb_build_info still carries it, as haproxy_process_build_info
	// does in HAProxy's exporter.
	HideVersion bool
	// Metrics is the path of the Prometheus metrics (`http-request use-service
	// prometheus-exporter if { path /metrics }`): the same series as the admin Server's
	// /metrics. Empty means none. A path without a leading "/" gets one.
	Metrics string
	// Backends returns the current set of backends, on every request and scrape.
	Backends func() []*backend.Backend
	// Frontends returns a snapshot of every frontend's counters.
	Frontends func() []FrontendStats
	// Checks returns what the health checks know of a server, as Options.Checks.
	Checks func(*backend.Server) healthcheck.Status
	// RefuseReasons are the refusal reasons always exported, as Options.RefuseReasons.
	RefuseReasons []string
	// Sessions and VHostLabels feed amqplb_vhost_sessions, as in Options. A stats listener
	// lists no sessions: user names and client addresses are more than an HAProxy stats page
	// shows, and such pages are often open to many.
	Sessions    func() []Session
	VHostLabels int
	// Rebalancing and RebalanceCloses tell of rebalancing, as in Options (the "rebalancing"
	// of the JSON and the page, amqplb_rebalance_closes_total); nil means none.
	Rebalancing     func(backend string) bool
	RebalanceCloses func(backend, server string) uint64
	// Discovery tells of cluster discovery, as in Options; nil means none.
	Discovery func(backend string) (Discovery, bool)
	// Admin turns on the status page's controls (ready, drain, maint, close sessions) for
	// whoever passes the listener's auth: HAProxy's `stats admin if TRUE`. The page then POSTs
	// to api/v1/backends/{b}/servers/{s}/state under the URI's directory, as on the admin
	// Server; every other POST, and every POST without Admin, is answered 405.
	Admin bool
	// CloseSessions ends every session on a server (the page's close-sessions button, with
	// Admin), as Options.CloseSessions; nil refuses it.
	CloseSessions func(*backend.Server) int
	// Logger receives the server's errors and refused logins.
	Logger *slog.Logger
	// Version is amqplb's version, shown on the page unless HideVersion.
	Version string
}

// StatsServer is a read-only HTTP listener: the status page, the JSON it reads and the
// metrics, behind basic auth when there are users. Nothing on it changes a server, unless
// StatsOptions.Admin lets its page's buttons set servers' states: every other method but GET
// and HEAD is answered 405. Build it with NewStats, then mount Handler or call
// Listen and Serve, and finally Shutdown.
type StatsServer struct {
	*view
	opts      StatsOptions
	base      string // the URI's directory: where the JSON is
	users     []credential
	challenge string // the WWW-Authenticate header of a 401
	api       http.Handler
	handler   http.Handler
	srv       *listener
}

// credential is one basic-auth user, hashed so that comparisons take the same time whatever
// the lengths.
type credential struct{ user, pass [sha256.Size]byte }

// NewStats builds a StatsServer with its own Prometheus registry.
func NewStats(o StatsOptions) *StatsServer {
	if o.URI != "" && !strings.HasPrefix(o.URI, "/") {
		o.URI = "/" + o.URI
	}
	if o.Metrics != "" && !strings.HasPrefix(o.Metrics, "/") {
		o.Metrics = "/" + o.Metrics
	}
	if o.Realm == "" {
		o.Realm = DefaultStatsRealm
	}
	if o.Refresh > 0 && o.Refresh < MinStatsRefresh {
		o.Refresh = MinStatsRefresh
	}
	logger := o.Logger
	if logger != nil && o.Name != "" {
		logger = logger.With("stats", o.Name)
	}
	s := &StatsServer{
		view: newView(source{backends: o.Backends, frontends: o.Frontends, checks: o.Checks, refuseReasons: o.RefuseReasons,
			sessions: o.Sessions, vhostLabels: o.VHostLabels, rebalancing: o.Rebalancing, rebalanceCloses: o.RebalanceCloses,
			discovery: o.Discovery},
			logger, "stats", o.Version, o.HideVersion),
		opts:      o,
		challenge: `Basic realm="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(o.Realm) + `"`,
	}
	if o.URI != "" {
		path, _, _ := strings.Cut(o.URI, "?")
		s.base = path[:strings.LastIndex(path, "/")+1]
		mux := http.NewServeMux()
		s.readAPI(func(method, path string, h http.HandlerFunc) { mux.HandleFunc(method+" "+path, h) })
		if o.Admin {
			mux.Handle("POST /api/v1/backends/{b}/servers/{s}/state", newCSRF().Handler(s.stateHandler(o.CloseSessions)))
		}
		mux.HandleFunc("/", notFound)
		s.api = http.StripPrefix(strings.TrimSuffix(s.base, "/"), mux)
	}
	for _, u := range slices.Sorted(maps.Keys(o.Users)) {
		s.users = append(s.users, credential{sha256.Sum256([]byte(u)), sha256.Sum256([]byte(o.Users[u]))})
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	s.srv = newListener("stats", o.Listen, s.handler, s.log)
	return s
}

// Handler returns the server's HTTP handler, without a listener.
func (s *StatsServer) Handler() http.Handler { return s.handler }

// Listen binds StatsOptions.Listen, so that the caller learns of a busy port before it starts
// anything else.
func (s *StatsServer) Listen() error { return s.srv.listen() }

// Addr returns the bound address, or nil before Listen.
func (s *StatsServer) Addr() net.Addr { return s.srv.addr() }

// Serve answers requests on the listener bound by Listen until Shutdown, then returns nil.
func (s *StatsServer) Serve() error { return s.srv.serve() }

// Shutdown stops accepting, waits for requests in flight until ctx ends, and closes the
// listener (also when Serve was never called).
func (s *StatsServer) Shutdown(ctx context.Context) error { return s.srv.shutdown(ctx) }

// Registry returns the server's Prometheus registry, for callers that want to add collectors
// of their own to the metrics.
func (s *StatsServer) Registry() *prometheus.Registry { return s.registry }

// serveHTTP checks the login, then the method, then routes: the metrics path, the JSON under
// the URI's directory, and the page at every request that begins with the URI.
func (s *StatsServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		h := w.Header()
		h.Set("WWW-Authenticate", s.challenge)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "401 Unauthorized: this page needs a valid user name and password\n")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.adminPost(r) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: this listener is read-only (allowed: GET, HEAD)")
		return
	}
	path := r.URL.EscapedPath()
	switch {
	case s.opts.Metrics != "" && r.URL.Path == s.opts.Metrics:
		s.metrics.ServeHTTP(w, r)
	case s.api != nil && strings.HasPrefix(path, s.base+"api/"):
		s.api.ServeHTTP(w, r)
	case s.opts.URI != "" && strings.HasPrefix(r.URL.RequestURI(), s.opts.URI):
		writePage(w, s.page(path))
	default:
		notFound(w, r)
	}
}

// adminPost reports whether r is a POST that `stats admin` lets through: a server's state.
func (s *StatsServer) adminPost(r *http.Request) bool {
	if !s.opts.Admin || s.api == nil || r.Method != http.MethodPost {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, s.base+"api/v1/backends/")
	return ok && strings.HasSuffix(rest, "/state") && strings.Count(rest, "/") == 3
}

// authorized reports whether r carries the name and password of a user, or there are none.
// Every user is compared, so the time taken does not tell which name exists.
func (s *StatsServer) authorized(r *http.Request) bool {
	if len(s.users) == 0 {
		return true
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hu, hp := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	match := 0
	for _, c := range s.users {
		match |= subtle.ConstantTimeCompare(hu[:], c.user[:]) & subtle.ConstantTimeCompare(hp[:], c.pass[:])
	}
	if match != 1 {
		s.log.Warn("stats: wrong user name or password", "remote", r.RemoteAddr, "user", user, "path", r.URL.Path)
		return false
	}
	return true
}

// page renders the status page for a document at the escaped path docPath. Its links are
// relative to the document, so the page also works behind a proxy that mounts the listener
// under a prefix of its own.
func (s *StatsServer) page(docPath string) []byte {
	root := "./"
	if n := strings.Count(docPath, "/") - 1; n > 0 {
		root = strings.Repeat("../", n)
	}
	c := pageConfig{base: root + s.base[1:], refresh: s.opts.Refresh, readOnly: !s.opts.Admin}
	if s.opts.Metrics != "" {
		c.metrics = root + s.opts.Metrics[1:]
	}
	return renderPage(c)
}

// notFound answers 404 in JSON.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
}
