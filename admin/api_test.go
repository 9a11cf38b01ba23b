package admin

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/amqplb/amqplb/internal/testenv"
	"github.com/amqplb/amqplb/proxy"
)

func keys(m map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

func TestGetBackendsShape(t *testing.T) {
	f := newFixture()
	rmq2 := f.server("rabbitmq", "rmq2")
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.checks.Record(rmq2, healthcheck.CheckResult{Kind: healthcheck.FailAuth, Code: 403, Reason: "broker closed: 403 ACCESS_REFUSED - Login was refused", Duration: 1500 * time.Microsecond, At: at})
	rmq2.SetHealth(false)
	rmq2.AddBytes(10, 20)
	h := New(f.options("")).Handler()

	code, body := do(t, h, http.MethodGet, "/api/v1/backends", "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/backends = %d: %s", code, body)
	}
	top := decode(t, body)
	bs, ok := top["backends"].([]any)
	if !ok || len(bs) != 2 {
		t.Fatalf("backends = %v, want a list of 2", top["backends"])
	}
	b0 := bs[0].(map[string]any)
	if b0["name"] != "rabbitmq" || b0["up"] != 2.0 {
		t.Errorf("first backend = %v %v, want rabbitmq with 2 up", b0["name"], b0["up"])
	}
	servers := b0["servers"].([]any)
	if len(servers) != 3 {
		t.Fatalf("rabbitmq has %d servers, want 3", len(servers))
	}
	// Contract fields (ARCHITECTURE.md) and the extensions, exactly.
	wantServer := []string{"active_connections", "address", "admin", "backup", "bytes_to_client", "bytes_to_server",
		"check", "connect_errors", "effective_weight", "healthy", "maintenance", "max_connections", "name", "state", "suspect",
		"total_connections", "weight"}
	for _, s := range servers {
		if got := keys(s.(map[string]any)); !slices.Equal(got, wantServer) {
			t.Errorf("server fields = %v, want %v", got, wantServer)
		}
	}
	s1 := servers[0].(map[string]any)
	c1 := s1["check"].(map[string]any)
	if c1["status"] != "pending" || c1["at"] != nil {
		t.Errorf("unchecked server check = %v, want pending with at null", c1)
	}
	if got, want := keys(c1), []string{"at", "code", "duration_ms", "reason", "status"}; !slices.Equal(got, want) {
		t.Errorf("pending check fields = %v, want %v", got, want)
	}

	var typed BackendsResponse
	if err := json.Unmarshal([]byte(body), &typed); err != nil {
		t.Fatal(err)
	}
	s2 := typed.Backends[0].Servers[1]
	if s2.Name != "rmq2" || s2.State != "down" || s2.Address != "127.0.0.1:5674" || s2.Weight != 10 || s2.Backup || s2.Healthy {
		t.Errorf("rmq2 = %+v", s2)
	}
	if s2.Check.Status != "fail" || s2.Check.Code != 403 || s2.Check.Kind != "auth" || !strings.Contains(s2.Check.Reason, "ACCESS_REFUSED") ||
		s2.Check.DurationMS != 1.5 || s2.Check.At == nil || !s2.Check.At.Equal(at) {
		t.Errorf("rmq2 check = %+v", s2.Check)
	}
	if s2.BytesToServer != 10 || s2.BytesToClient != 20 {
		t.Errorf("rmq2 bytes = %d/%d, want 10/20", s2.BytesToServer, s2.BytesToClient)
	}
	if !typed.Backends[0].Servers[2].Backup {
		t.Error("rmq3 is not reported as a backup")
	}
	if typed.Version != "v0.0.0-test" || time.Since(typed.GeneratedAt) > time.Minute {
		t.Errorf("version %q generated_at %v", typed.Version, typed.GeneratedAt)
	}

	// One server and one backend by name.
	code, body = do(t, h, http.MethodGet, "/api/v1/backends/rabbitmq/servers/rmq2", "")
	if code != http.StatusOK || decode(t, body)["state"] != "down" {
		t.Errorf("GET one server = %d %s", code, body)
	}
	code, body = do(t, h, http.MethodGet, "/api/v1/backends/other", "")
	if code != http.StatusOK || decode(t, body)["name"] != "other" {
		t.Errorf("GET one backend = %d %s", code, body)
	}
}

func TestGetFrontends(t *testing.T) {
	f := newFixture()
	code, body := do(t, New(f.options("")).Handler(), http.MethodGet, "/api/v1/frontends", "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/frontends = %d", code)
	}
	var r FrontendsResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Frontends) != 1 {
		t.Fatalf("frontends = %+v", r.Frontends)
	}
	fe := r.Frontends[0]
	if fe.Name != "amqp" || fe.ActiveConnections != 2 || fe.TotalConnections != 40 || fe.Refused["maxconn"] != 3 || len(fe.Refused) != len(proxy.RefuseReasons()) {
		t.Errorf("frontend = %+v", fe)
	}
}

// Each mutating endpoint, with a token configured: no or a wrong Authorization gets 401 and
// changes nothing; the right one gets 200, the server's JSON, and the change.
func TestMutationsNeedToken(t *testing.T) {
	const token = "s3cret"
	for _, tc := range []struct {
		name    string
		path    string
		body    string
		changed func(*backend.Server) bool
	}{
		{"state", "/api/v1/backends/rabbitmq/servers/rmq1/state", `{"state":"drain"}`,
			func(s *backend.Server) bool { return s.Admin() == backend.AdminDrain }},
		{"weight", "/api/v1/backends/rabbitmq/servers/rmq1/weight", `{"weight":3}`,
			func(s *backend.Server) bool { return s.Weight() == 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture()
			h := New(f.options(token)).Handler()
			rmq1 := f.server("rabbitmq", "rmq1")
			for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "bearer", token, "Basic czNjcmV0"} {
				var hdr []string
				if auth != "" {
					hdr = []string{"Authorization", auth}
				}
				code, body := do(t, h, http.MethodPost, tc.path, tc.body, hdr...)
				if code != http.StatusUnauthorized {
					t.Errorf("Authorization %q: %d, want 401", auth, code)
				}
				if decode(t, body)["error"] == nil {
					t.Errorf("Authorization %q: no JSON error in %s", auth, body)
				}
				if tc.changed(rmq1) {
					t.Fatalf("Authorization %q changed the server", auth)
				}
			}
			// 401 comes before 404: no probing names without the token.
			if code, _ := do(t, h, http.MethodPost, "/api/v1/backends/nope/servers/x/state", `{"state":"drain"}`); code != http.StatusUnauthorized {
				t.Errorf("unknown server without token: %d, want 401", code)
			}
			code, body := do(t, h, http.MethodPost, tc.path, tc.body, "Authorization", "Bearer "+token)
			if code != http.StatusOK {
				t.Fatalf("with token: %d %s", code, body)
			}
			if !tc.changed(rmq1) {
				t.Error("with token: server unchanged")
			}
			if decode(t, body)["name"] != "rmq1" {
				t.Errorf("answer is not the server's JSON: %s", body)
			}
			// Reading needs no token.
			if code, _ := do(t, h, http.MethodGet, "/api/v1/backends", ""); code != http.StatusOK {
				t.Errorf("GET with a token configured = %d, want 200", code)
			}
		})
	}
}

func TestMutationsWithoutToken(t *testing.T) {
	f := newFixture()
	var logBuf testenv.Buffer
	o := f.options("")
	o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	h := New(o).Handler()
	rmq2 := f.server("rabbitmq", "rmq2")
	rmq2.SetHealth(false)

	for _, step := range []struct {
		body      string
		admin     backend.Admin
		wantState string
	}{
		{`{"state":"drain"}`, backend.AdminDrain, "drain"},
		{`{"state":"maint"}`, backend.AdminMaint, "maint"},
		{`{"state":"ready"}`, backend.AdminReady, "down"}, // back to the checks' verdict
	} {
		code, body := do(t, h, http.MethodPost, "/api/v1/backends/rabbitmq/servers/rmq2/state", step.body, "Content-Type", "application/json")
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", step.body, code, body)
		}
		if rmq2.Admin() != step.admin {
			t.Errorf("%s: Admin() = %v, want %v", step.body, rmq2.Admin(), step.admin)
		}
		if got := decode(t, body)["state"]; got != step.wantState {
			t.Errorf("%s: answer state = %v, want %s", step.body, got, step.wantState)
		}
	}
	for _, w := range []int{0, 256, 7} {
		code, body := do(t, h, http.MethodPost, "/api/v1/backends/rabbitmq/servers/rmq2/weight", `{"weight":`+itoa(w)+`}`)
		if code != http.StatusOK || rmq2.Weight() != w {
			t.Errorf("weight %d: %d %s, Weight() = %d", w, code, body, rmq2.Weight())
		}
	}
	// Each mutation is logged with who and what.
	logs := logBuf.String()
	for _, want := range []string{"remote=192.0.2.1:1234", "server=rmq2", "admin=drain", "to=maint", "msg=\"admin: server weight set\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// shutdown_sessions ends the server's sessions after its state changed, says how many, and is
// refused where it makes no sense.
func TestShutdownSessions(t *testing.T) {
	f := newFixture()
	o := f.options("")
	rmq1 := f.server("rabbitmq", "rmq1")
	var closed []string
	o.CloseSessions = func(s *backend.Server) int {
		if s.Admin() == backend.AdminReady {
			t.Errorf("sessions of %s closed before its state changed: its clients could reconnect to it", s.Name())
		}
		closed = append(closed, s.Name())
		return 4
	}
	h := New(o).Handler()
	url := "/api/v1/backends/rabbitmq/servers/rmq1/state"
	code, body := do(t, h, http.MethodPost, url, `{"state":"drain","shutdown_sessions":true}`)
	if code != http.StatusOK || rmq1.Admin() != backend.AdminDrain {
		t.Fatalf("drain with shutdown_sessions: %d %s, Admin() = %v", code, body, rmq1.Admin())
	}
	if got := decode(t, body); got["sessions_closed"] != float64(4) || got["state"] != "drain" || got["name"] != "rmq1" {
		t.Errorf("answer = %v, want the server in drain and sessions_closed 4", got)
	}
	if len(closed) != 1 || closed[0] != "rmq1" {
		t.Errorf("CloseSessions called for %v, want rmq1 once", closed)
	}
	code, body = do(t, h, http.MethodPost, url, `{"state":"maint"}`)
	if code != http.StatusOK || strings.Contains(body, "sessions_closed") || len(closed) != 1 {
		t.Errorf("maint without shutdown_sessions: %d %s, closed %v; want no sessions closed", code, body, closed)
	}
	code, body = do(t, h, http.MethodPost, url, `{"state":"maint","shutdown_sessions":true}`)
	if code != http.StatusOK || len(closed) != 2 || decode(t, body)["sessions_closed"] != float64(4) {
		t.Errorf("maint with shutdown_sessions: %d %s, closed %v; want the sessions closed", code, body, closed)
	}
	// Closing the sessions of a server that takes new ones back makes no sense.
	if code, body := do(t, h, http.MethodPost, url, `{"state":"ready","shutdown_sessions":true}`); code != http.StatusBadRequest || rmq1.Admin() != backend.AdminMaint || len(closed) != 2 {
		t.Errorf("ready with shutdown_sessions: %d %s, Admin() = %v; want 400 and no change", code, body, rmq1.Admin())
	}
	// Without a way to close sessions, nothing is promised and nothing changes.
	o.CloseSessions = nil
	if code, _ := do(t, New(o).Handler(), http.MethodPost, url, `{"state":"drain","shutdown_sessions":true}`); code != http.StatusNotImplemented || rmq1.Admin() != backend.AdminMaint {
		t.Errorf("shutdown_sessions without CloseSessions: %d, Admin() = %v; want 501 and no change", code, rmq1.Admin())
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// Every bad request gets its 4xx and a JSON error, never a 500, and changes nothing.
func TestBadRequests(t *testing.T) {
	const state = "/api/v1/backends/rabbitmq/servers/rmq1/state"
	const weight = "/api/v1/backends/rabbitmq/servers/rmq1/weight"
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
		header                   []string
	}{
		{"unknown backend", "POST", "/api/v1/backends/nope/servers/rmq1/state", `{"state":"drain"}`, 404, nil},
		{"unknown server", "POST", "/api/v1/backends/rabbitmq/servers/nope/state", `{"state":"drain"}`, 404, nil},
		{"unknown server weight", "POST", "/api/v1/backends/rabbitmq/servers/nope/weight", `{"weight":1}`, 404, nil},
		{"unknown backend GET", "GET", "/api/v1/backends/nope", "", 404, nil},
		{"unknown server GET", "GET", "/api/v1/backends/rabbitmq/servers/nope", "", 404, nil},
		{"unknown endpoint", "GET", "/api/v1/nothing", "", 404, nil},
		{"bad state", "POST", state, `{"state":"down"}`, 400, nil},
		{"state case", "POST", state, `{"state":"DRAIN"}`, 400, nil},
		{"empty state", "POST", state, `{"state":""}`, 400, nil},
		{"missing state", "POST", state, `{}`, 400, nil},
		{"state not a string", "POST", state, `{"state":1}`, 400, nil},
		{"empty body", "POST", state, ``, 400, nil},
		{"bad JSON", "POST", state, `{"state":`, 400, nil},
		{"not an object", "POST", state, `"drain"`, 400, nil},
		{"unknown field", "POST", state, `{"state":"drain","force":true}`, 400, nil},
		{"two objects", "POST", state, `{"state":"drain"}{"state":"maint"}`, 400, nil},
		{"trailing garbage", "POST", state, `{"state":"drain"} x`, 400, nil},
		{"body too large", "POST", state, `{"state":"drain","x":"` + strings.Repeat("a", 8<<10) + `"}`, 413, nil},
		{"padding too large", "POST", state, `{"state":"drain"}` + strings.Repeat(" ", 8<<10), 413, nil},
		{"weight too big", "POST", weight, `{"weight":257}`, 400, nil},
		{"weight negative", "POST", weight, `{"weight":-1}`, 400, nil},
		{"weight fraction", "POST", weight, `{"weight":1.5}`, 400, nil},
		{"weight string", "POST", weight, `{"weight":"5"}`, 400, nil},
		{"weight null", "POST", weight, `{"weight":null}`, 400, nil},
		{"weight missing", "POST", weight, `{}`, 400, nil},
		{"weight huge", "POST", weight, `{"weight":99999999999999999999}`, 400, nil},
		{"weight unknown field", "POST", weight, `{"weight":1,"state":"drain"}`, 400, nil},
		{"GET on state", "GET", state, "", 405, nil},
		{"PUT on state", "PUT", state, `{"state":"drain"}`, 405, nil},
		{"DELETE on weight", "DELETE", weight, "", 405, nil},
		{"POST on backends", "POST", "/api/v1/backends", `{}`, 405, nil},
		{"POST on metrics", "POST", "/metrics", "", 405, nil},
		{"POST on healthz", "POST", "/healthz", "", 405, nil},
		{"POST on page", "POST", "/", "", 405, nil},
		{"cross-site POST", "POST", state, `{"state":"drain"}`, 403, []string{"Sec-Fetch-Site", "cross-site"}},
		{"cross-origin POST", "POST", state, `{"state":"drain"}`, 403, []string{"Origin", "http://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture()
			h := New(f.options("")).Handler()
			code, body := do(t, h, tc.method, tc.path, tc.body, tc.header...)
			if code != tc.want {
				t.Errorf("%s %s %q = %d, want %d: %s", tc.method, tc.path, tc.body, code, tc.want, body)
			}
			if msg, _ := decode(t, body)["error"].(string); msg == "" {
				t.Errorf("no JSON error: %s", body)
			}
			rmq1 := f.server("rabbitmq", "rmq1")
			if rmq1.Admin() != backend.AdminReady || rmq1.Weight() != 10 {
				t.Errorf("server changed: admin %v weight %d", rmq1.Admin(), rmq1.Weight())
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	f := newFixture()
	h := New(f.options("")).Handler()
	ready := func() (int, map[string]any) {
		t.Helper()
		code, body := do(t, h, http.MethodGet, "/readyz", "")
		return code, decode(t, body)
	}
	if code, _ := ready(); code != http.StatusOK {
		t.Fatalf("all up: /readyz = %d, want 200", code)
	}

	// One server down of three: still ready. Two down (the backup left): still ready.
	f.server("rabbitmq", "rmq1").SetHealth(false)
	f.server("rabbitmq", "rmq2").SetAdmin(backend.AdminDrain)
	if code, _ := ready(); code != http.StatusOK {
		t.Fatalf("one server up: /readyz = %d, want 200", code)
	}
	// None up in rabbitmq: 503 naming it.
	f.server("rabbitmq", "rmq3").SetAdmin(backend.AdminMaint)
	code, body := ready()
	if code != http.StatusServiceUnavailable {
		t.Fatalf("no server up: /readyz = %d, want 503", code)
	}
	if none, _ := body["no_server_up"].([]any); len(none) != 1 || none[0] != "rabbitmq" || !strings.Contains(body["error"].(string), "rabbitmq") {
		t.Errorf("503 body = %v, want it to name rabbitmq", body)
	}
	// Back up.
	f.server("rabbitmq", "rmq1").SetHealth(true)
	if code, _ := ready(); code != http.StatusOK {
		t.Fatalf("server back: /readyz = %d, want 200", code)
	}
	// Shutting down: 503 whatever the servers.
	f.mu.Lock()
	f.ready = false
	f.mu.Unlock()
	code, body = ready()
	if code != http.StatusServiceUnavailable || body["error"] != "shutting down" {
		t.Errorf("shutting down: /readyz = %d %v, want 503 shutting down", code, body)
	}
	// /healthz stays 200 while the process serves.
	if code, _ := do(t, h, http.MethodGet, "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz while shutting down = %d, want 200", code)
	}
}

func TestStatusPageServed(t *testing.T) {
	h := New(newFixture().options("")).Handler()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	csp := rec.Header().Get("Content-Security-Policy")
	if strings.Contains(csp, "'none'; script-src 'none'") || !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "style-src 'sha256-") {
		t.Errorf("CSP lacks the inline hashes: %s", csp)
	}
	page := rec.Body.String()
	for _, banned := range []string{"http://", "https://", "<link rel=\"stylesheet\"", "@import", "src=\""} {
		if strings.Contains(strings.ReplaceAll(page, "http://www.w3.org/2000/svg", ""), banned) {
			t.Errorf("page refers to an external asset (%q)", banned)
		}
	}
	if code, _ := do(t, h, http.MethodGet, "/index.html", ""); code != http.StatusNotFound {
		t.Errorf("GET /index.html = %d, want 404", code)
	}
}

func TestReadyzIgnoresBackendsNoFrontendUses(t *testing.T) {
	f := newFixture()
	o := f.options("")
	all := o.Backends()
	if len(all) < 2 {
		t.Fatalf("fixture has %d backends, want at least 2", len(all))
	}
	o.Serving = func() []*backend.Backend { return all[:1] }
	h := New(o).Handler()
	for _, s := range all[1].Servers {
		s.SetHealth(false)
	}
	if code, body := do(t, h, http.MethodGet, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("an unused backend with no server up: /readyz = %d %s, want 200", code, body)
	}
	for _, s := range all[0].Servers {
		s.SetHealth(false)
	}
	if code, _ := do(t, h, http.MethodGet, "/readyz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("the serving backend with no server up: /readyz = %d, want 503", code)
	}
}
