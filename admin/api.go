package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
)

// maxBody bounds a mutating request's body; the largest valid one is a few dozen bytes.
const maxBody = 4 << 10

// BackendsResponse is the body of GET /api/v1/backends.
type BackendsResponse struct {
	// Backends lists the backends in configuration order.
	Backends []BackendJSON `json:"backends"`
	// GeneratedAt is the server's clock when the answer was built, so that a client computes
	// check ages without trusting its own clock.
	GeneratedAt time.Time `json:"generated_at"`
	// Version is amqplb's version.
	Version string `json:"version,omitempty"`
}

// BackendJSON is one backend in the API.
type BackendJSON struct {
	// Name identifies the backend.
	Name string `json:"name"`
	// Up is the number of servers up.
	Up int `json:"up"`
	// Rebalancing reports a rebalance in progress: surplus sessions are being closed.
	Rebalancing bool `json:"rebalancing"`
	// Discovery is what the backend's cluster discovery sees; left out without
	// [backend.discovery].
	Discovery *Discovery `json:"discovery,omitempty"`
	// Servers lists the servers in configuration order.
	Servers []ServerJSON `json:"servers"`
}

// ServerJSON is one server in the API; the field names are a contract (ARCHITECTURE.md).
type ServerJSON struct {
	// Name identifies the server within its backend.
	Name string `json:"name"`
	// Address is the configured host:port.
	Address string `json:"address"`
	// State is up, down, drain or maint (drain also while the broker is in maintenance mode).
	State string `json:"state"`
	// Check is the last health check.
	Check CheckJSON `json:"check"`
	// ActiveConnections is the number of sessions open now.
	ActiveConnections int64 `json:"active_connections"`
	// TotalConnections is the number of sessions ever established.
	TotalConnections uint64 `json:"total_connections"`
	// Weight is the configured or operator-set weight.
	Weight int `json:"weight"`
	// Backup reports a backup server.
	Backup bool `json:"backup"`
	// Suspect reports that a failed dial took the server out of rotation until a check passes.
	Suspect bool `json:"suspect"`
	// Healthy is the checks' verdict, whatever the operator's state.
	Healthy bool `json:"healthy"`
	// Admin is the operator's state: ready, drain or maint.
	Admin string `json:"admin"`
	// Maintenance reports that the checks found the broker in maintenance mode (rabbitmq-upgrade
	// drain): the server is drain until they find it serving again, whatever the operator's ready.
	Maintenance bool `json:"maintenance"`
	// EffectiveWeight is the weight in use now (lower than Weight during slow start).
	EffectiveWeight int `json:"effective_weight"`
	// MaxConnections is the server's session cap; 0 means none.
	MaxConnections int `json:"max_connections"`
	// BytesToServer counts bytes relayed from clients to the server.
	BytesToServer uint64 `json:"bytes_to_server"`
	// BytesToClient counts bytes relayed from the server to clients.
	BytesToClient uint64 `json:"bytes_to_client"`
	// ConnectErrors counts failed dials.
	ConnectErrors uint64 `json:"connect_errors"`
	// Agent is the server's last agent check; absent without an agent or before its first.
	Agent *AgentJSON `json:"agent,omitempty"`
}

// AgentJSON is a server's last agent check (HAProxy's agent-check) in the API.
type AgentJSON struct {
	// Status is ok when the agent answered, fail when it could not be asked (the server is
	// then left as it was).
	Status string `json:"status"`
	// Reply is the agent's line ("drain 50% #deploy"); empty when it failed.
	Reply string `json:"reply"`
	// Error says why the agent could not be asked; empty when ok.
	Error string `json:"error,omitempty"`
	// Healthy is false while the agent's last health word was down, fail or stopped.
	Healthy bool `json:"healthy"`
	// DurationMS is how long the question took, in milliseconds.
	DurationMS float64 `json:"duration_ms"`
	// At is when it finished.
	At time.Time `json:"at"`
}

// CheckJSON is a server's last health check in the API.
type CheckJSON struct {
	// Status is ok, fail, or pending before the first check.
	Status string `json:"status"`
	// Code is the broker's reply code (403, 530, ...), 0 when it gave none.
	Code int `json:"code"`
	// Kind classifies a failure (timeout, refused, auth, vhost, ...); empty when ok.
	Kind string `json:"kind,omitempty"`
	// Reason is the check's human explanation.
	Reason string `json:"reason"`
	// DurationMS is how long the check took, in milliseconds.
	DurationMS float64 `json:"duration_ms"`
	// At is when the check finished; null while pending.
	At *time.Time `json:"at"`
}

// FrontendsResponse is the body of GET /api/v1/frontends.
type FrontendsResponse struct {
	// Frontends lists the frontends as the caller reports them.
	Frontends []FrontendJSON `json:"frontends"`
}

// FrontendJSON is one frontend in the API.
type FrontendJSON struct {
	// Name identifies the frontend.
	Name string `json:"name"`
	// ActiveConnections is the number of sessions open now.
	ActiveConnections int `json:"active_connections"`
	// TotalConnections is the number of connections accepted.
	TotalConnections uint64 `json:"total_connections"`
	// Refused counts refused connections by reason; every reason of Options.RefuseReasons is present.
	Refused map[string]uint64 `json:"refused"`
	// ParkedSessions is the number of open sessions parked as idle: their sockets wait in
	// amqplb's own poll set, without goroutines (Linux).
	ParkedSessions int `json:"parked_sessions"`
}

// ErrorJSON is the body of every 4xx answer.
type ErrorJSON struct {
	// Error says what was wrong with the request.
	Error string `json:"error"`
}

// serverJSON snapshots s, with what the health checks know of it (checks). The server's state
// is read first: a check result is recorded before the health it changes, so a state that a
// check set always comes with that check, never with "pending".
func serverJSON(s *backend.Server, checks func(*backend.Server) healthcheck.Status) ServerJSON {
	j := ServerJSON{
		Name:              s.Name(),
		Address:           s.Address(),
		State:             s.State().String(),
		Check:             CheckJSON{Status: "pending"},
		ActiveConnections: s.ActiveConnections(),
		TotalConnections:  s.TotalConnections(),
		Weight:            s.Weight(),
		Backup:            s.Backup(),
		Suspect:           s.Suspect(),
		Healthy:           s.Healthy(),
		Admin:             s.Admin().String(),
		Maintenance:       s.Maintenance(),
		EffectiveWeight:   s.EffectiveWeight(),
		MaxConnections:    s.MaxConnections(),
		BytesToServer:     s.BytesToServer(),
		BytesToClient:     s.BytesToClient(),
		ConnectErrors:     s.ConnectErrors(),
	}
	st := checks(s)
	if a := st.Agent; a != nil {
		j.Agent = &AgentJSON{Status: "ok", Reply: a.Reply, Error: a.Error, Healthy: s.AgentHealthy(),
			DurationMS: float64(a.Duration.Microseconds()) / 1000, At: a.At.UTC()}
		if !a.OK {
			j.Agent.Status = "fail"
		}
	}
	if c := st.Last; c != nil {
		at := c.At.UTC()
		j.Check = CheckJSON{
			Status:     "ok",
			Code:       c.Code,
			Kind:       c.Kind,
			Reason:     c.Reason,
			DurationMS: float64(c.Duration.Microseconds()) / 1000,
			At:         &at,
		}
		if !c.OK {
			j.Check.Status = "fail"
		}
	}
	return j
}

// routes builds the mux. Each path also has a method-less pattern answering 405 in JSON, since
// the mux's own 405 is plain text.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(method, path string, h http.HandlerFunc) {
		mux.Handle(method+" "+path, h)
		allow := method
		if method == http.MethodGet {
			allow = "GET, HEAD"
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		})
	}

	csrf := newCSRF()
	mutating := func(h http.HandlerFunc) http.HandlerFunc {
		return csrf.Handler(s.authorize(h)).ServeHTTP
	}

	handle(http.MethodGet, "/healthz", s.healthz)
	handle(http.MethodGet, "/readyz", s.readyz)
	handle(http.MethodGet, "/metrics", s.metrics.ServeHTTP)
	s.readAPI(handle)
	handle(http.MethodPost, "/api/v1/backends/{b}/servers/{s}/state", mutating(s.stateHandler(s.opts.CloseSessions)))
	handle(http.MethodPost, "/api/v1/backends/{b}/servers/{s}/weight", mutating(s.postWeight))
	handle(http.MethodPost, "/api/v1/backends/{b}/rebalance", mutating(s.postRebalance))
	handle(http.MethodGet, "/api/v1/sessions", s.getSessions)
	handle(http.MethodGet, "/api/v1/sessions/{id}", s.getSession)
	handle(http.MethodPost, "/api/v1/sessions/{id}/close", mutating(s.postCloseSession))
	handle(http.MethodGet, "/{$}", s.statusPage)
	mux.HandleFunc("/", notFound)
	return mux
}

// newCSRF protects the mutating endpoints. Browsers send Sec-Fetch-Site or Origin: this turns
// away a cross-site page that tries to POST to a loopback admin port, while curl and scripts
// pass untouched.
func newCSRF() *http.CrossOriginProtection {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return csrf
}

// slogPromLogger passes promhttp's errors to a listener's logger.
type slogPromLogger struct{ log *slog.Logger }

func (l slogPromLogger) Println(v ...any) {
	l.log.Warn("metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}

// authorize lets a request through when no token is configured or it carries the token.
func (s *Server) authorize(h http.HandlerFunc) http.HandlerFunc {
	if s.opts.Token == "" {
		return h
	}
	// Hashing both sides makes the comparison constant-time in the token's length too.
	want := sha256.Sum256([]byte("Bearer " + s.opts.Token))
	return func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			s.log.Warn("admin: unauthorized request", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="amqplb"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong token: send Authorization: Bearer <token>")
			return
		}
		h(w, r)
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

// readyzJSON is the body of /readyz.
type readyzJSON struct {
	Ready bool   `json:"ready"`
	Error string `json:"error,omitempty"`
	// NoServerUp lists the backends with no server up.
	NoServerUp []string `json:"no_server_up,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.opts.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, readyzJSON{Error: "shutting down"})
		return
	}
	serving := s.backends
	if s.opts.Serving != nil {
		serving = s.opts.Serving
	}
	var none []string
	for _, b := range serving() {
		if b != nil && b.UpCount() == 0 {
			none = append(none, b.Name)
		}
	}
	if len(none) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, readyzJSON{
			Error:      "no server up in backend " + strings.Join(none, ", "),
			NoServerUp: none,
		})
		return
	}
	writeJSON(w, http.StatusOK, readyzJSON{Ready: true})
}

func (v *view) backendJSON(b *backend.Backend) BackendJSON {
	j := BackendJSON{Name: b.Name, Rebalancing: v.rebalancing(b.Name), Servers: make([]ServerJSON, 0, len(b.Servers))}
	if d, ok := v.discovery(b.Name); ok {
		if d.Nodes == nil {
			d.Nodes = []DiscoveredNode{}
		}
		j.Discovery = &d
	}
	for _, srv := range b.Servers {
		if srv == nil {
			continue
		}
		sj := v.serverJSON(srv)
		if sj.State == backend.StateUp.String() {
			j.Up++
		}
		j.Servers = append(j.Servers, sj)
	}
	return j
}

// readAPI registers the read-only JSON endpoints, the ones the status page reads, with handle.
func (v *view) readAPI(handle func(method, path string, h http.HandlerFunc)) {
	handle(http.MethodGet, "/api/v1/backends", v.getBackends)
	handle(http.MethodGet, "/api/v1/backends/{b}", v.getBackend)
	handle(http.MethodGet, "/api/v1/backends/{b}/servers/{s}", v.getServer)
	handle(http.MethodGet, "/api/v1/frontends", v.getFrontends)
}

func (v *view) getBackends(w http.ResponseWriter, r *http.Request) {
	resp := BackendsResponse{Backends: []BackendJSON{}, GeneratedAt: time.Now().UTC(), Version: v.version}
	for _, b := range v.backends() {
		if b != nil {
			resp.Backends = append(resp.Backends, v.backendJSON(b))
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (v *view) getBackend(w http.ResponseWriter, r *http.Request) {
	b := v.findBackend(w, r)
	if b == nil {
		return
	}
	writeJSON(w, http.StatusOK, v.backendJSON(b))
}

func (v *view) getServer(w http.ResponseWriter, r *http.Request) {
	if _, srv := v.findServer(w, r); srv != nil {
		writeJSON(w, http.StatusOK, v.serverJSON(srv))
	}
}

// serverJSON snapshots srv with what Options.Checks knows of it.
func (v *view) serverJSON(srv *backend.Server) ServerJSON { return serverJSON(srv, v.checks) }

func (v *view) getFrontends(w http.ResponseWriter, r *http.Request) {
	resp := FrontendsResponse{Frontends: []FrontendJSON{}}
	for _, f := range v.frontends() {
		refused := make(map[string]uint64)
		for _, k := range v.refused(f.Refused) {
			refused[k] = f.Refused[k]
		}
		resp.Frontends = append(resp.Frontends, FrontendJSON{
			Name:              f.Name,
			ActiveConnections: f.Active,
			TotalConnections:  f.Total,
			Refused:           refused,
			ParkedSessions:    f.Parked,
		})
	}
	writeJSON(w, http.StatusOK, resp)
}

// stateRequest is the body of POST .../state. ShutdownSessions, with "drain" or "maint", also
// ends the server's established sessions (end=drained in the access log), so its clients
// reconnect to other servers: HAProxy's "shutdown sessions server".
type stateRequest struct {
	State            string `json:"state"`
	ShutdownSessions bool   `json:"shutdown_sessions"`
}

// StateResponse is the answer to POST .../state: the server as GET shows it, and how many
// sessions shutdown_sessions ended.
type StateResponse struct {
	ServerJSON
	// SessionsClosed is how many sessions shutdown_sessions ended; absent without it.
	SessionsClosed *int `json:"sessions_closed,omitempty"`
}

// weightRequest is the body of POST .../weight. A pointer tells a missing weight from 0.
type weightRequest struct {
	Weight *int `json:"weight"`
}

// stateHandler is POST .../state: the admin Server's, and a StatsServer's with `stats admin`
// (its page's buttons). closeSessions serves shutdown_sessions; nil refuses it.
func (v *view) stateHandler(closeSessions func(*backend.Server) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, srv := v.findServer(w, r)
		if srv == nil {
			return
		}
		var req stateRequest
		if !readJSON(w, r, &req) {
			return
		}
		a, err := backend.ParseAdmin(req.State)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		switch {
		case req.ShutdownSessions && closeSessions == nil:
			writeError(w, http.StatusNotImplemented, `this server cannot close sessions ("shutdown_sessions")`)
			return
		case req.ShutdownSessions && a == backend.AdminReady:
			writeError(w, http.StatusBadRequest, `"shutdown_sessions" goes with "drain" or "maint": the server's clients would only come back to it`)
			return
		}
		n := changeAdmin(v.log, []any{"remote", r.RemoteAddr}, b, srv, a, req.ShutdownSessions, closeSessions)
		resp := StateResponse{ServerJSON: v.serverJSON(srv)}
		if req.ShutdownSessions {
			// The answer's active_connections still counts them: they finish asynchronously.
			resp.SessionsClosed = &n
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

func (s *Server) postWeight(w http.ResponseWriter, r *http.Request) {
	b, srv := s.findServer(w, r)
	if srv == nil {
		return
	}
	var req weightRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Weight == nil {
		writeError(w, http.StatusBadRequest, `missing "weight"`)
		return
	}
	if *req.Weight < 0 || *req.Weight > backend.MaxWeight {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("weight %d out of range 0..%d", *req.Weight, backend.MaxWeight))
		return
	}
	changeWeight(s.log, []any{"remote", r.RemoteAddr}, b, srv, *req.Weight)
	writeJSON(w, http.StatusOK, s.serverJSON(srv))
}

// changeAdmin sets srv's operator state and, with shutdown, then ends its sessions through
// closeSessions, and logs it with who (the requester's attributes). It is the one path of the
// HTTP API's POST .../state and of the runtime socket's disable/enable/set server ... state,
// so that both behave and log alike. It returns how many sessions were ended.
func changeAdmin(log *slog.Logger, who []any, b *backend.Backend, srv *backend.Server, a backend.Admin,
	shutdown bool, closeSessions func(*backend.Server) int) int {
	from, to := srv.SetAdmin(a)
	args := append(append([]any(nil), who...), "backend", b.Name, "server", srv.Name(),
		"admin", a.String(), "from", from.String(), "to", to.String())
	n := 0
	if shutdown && closeSessions != nil {
		// After SetAdmin, so that the clients' reconnects cannot land on srv again.
		n = closeSessions(srv)
		args = append(args, "sessions_closed", n)
	}
	log.Info("admin: server state set", args...)
	return n
}

// changeWeight sets srv's weight and logs it with who: the one path of POST .../weight and of
// the runtime socket's set server ... weight and set weight.
func changeWeight(log *slog.Logger, who []any, b *backend.Backend, srv *backend.Server, w int) {
	old := srv.Weight()
	srv.SetWeight(w)
	args := append(append([]any(nil), who...), "backend", b.Name, "server", srv.Name(), "from", old, "to", w)
	log.Info("admin: server weight set", args...)
}

// findBackend returns the backend named by {b}, or answers 404 and returns nil.
func (v *view) findBackend(w http.ResponseWriter, r *http.Request) *backend.Backend {
	name := r.PathValue("b")
	for _, b := range v.backends() {
		if b != nil && b.Name == name {
			return b
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no backend %q", name))
	return nil
}

// findServer returns the server named by {b} and {s}, or answers 404 and returns nils.
func (v *view) findServer(w http.ResponseWriter, r *http.Request) (*backend.Backend, *backend.Server) {
	b := v.findBackend(w, r)
	if b == nil {
		return nil, nil
	}
	name := r.PathValue("s")
	if srv := b.Server(name); srv != nil {
		return b, srv
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no server %q in backend %q", name, b.Name))
	return nil, nil
}

// readJSON decodes exactly one JSON object with only known fields from a bounded body, or
// answers 400 / 413 and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// One object and nothing after it.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
			if errors.As(terr, new(*http.MaxBytesError)) {
				err = terr
			}
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "empty body: want a JSON object")
	case errors.As(err, &typeErr):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad JSON: field %q wants %s, got %s", typeErr.Field, typeErr.Type, typeErr.Value))
	default:
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
	}
	return false
}

// writeJSON answers status with v as indented JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Only unencodable types fail here: a bug, but still answered in JSON.
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal: cannot encode answer"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// writeError answers status with {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorJSON{Error: msg})
}
