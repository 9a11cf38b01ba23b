package admin

import (
	"bytes"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/testenv"
)

// statsOptions returns StatsOptions over f's data.
func (f *fixture) statsOptions(uri, metrics string, users map[string]string) StatsOptions {
	o := f.options("")
	return StatsOptions{
		Name:          "stats",
		URI:           uri,
		Metrics:       metrics,
		Users:         users,
		Backends:      o.Backends,
		Frontends:     o.Frontends,
		Checks:        o.Checks,
		RefuseReasons: o.RefuseReasons,
		Logger:        o.Logger,
		Version:       o.Version,
	}
}

// get sends GET target to h, with basic auth when user is not empty, and returns the recorder.
func get(t *testing.T, h http.Handler, method, target, user, pass string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// pageAttr returns the value of data-NAME in the page's <meta id="config">.
func pageAttr(t *testing.T, page, name string) string {
	t.Helper()
	meta := regexp.MustCompile(`<meta name="amqplb" id="config"[^>]*>`).FindString(page)
	if meta == "" {
		t.Fatalf("no <meta id=config> in the page")
	}
	m := regexp.MustCompile(` data-` + name + `="([^"]*)"`).FindStringSubmatch(meta)
	if m == nil {
		t.Fatalf("no data-%s in %s", name, meta)
	}
	return html.UnescapeString(m[1])
}

func isPage(rec *httptest.ResponseRecorder) bool {
	return rec.Code == http.StatusOK && strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") &&
		strings.Contains(rec.Body.String(), `id="config"`)
}

func TestPageHasConfigElement(t *testing.T) {
	if n := bytes.Count(statusHTML, []byte(pageMeta)); n != 1 {
		t.Fatalf("status.html holds %q %d times, want once", pageMeta, n)
	}
	page := adminPage(true)
	if !bytes.Contains(page, []byte(`data-readonly="false"`)) {
		t.Error("admin page is not told it may change servers")
	}
	if !bytes.Contains(page, []byte(`data-sessions="true"`)) || !bytes.Contains(adminPage(false), []byte(`data-sessions="false"`)) {
		t.Error("admin page is not told whether it can list sessions")
	}
	// The config element must not move the CSP hashes: they cover the style and script only.
	if inlineHash(page, "<script>", "</script>") != inlineHash(statusHTML, "<script>", "</script>") {
		t.Error("rendering the page changed its script")
	}
}

func TestStatsBasicAuth(t *testing.T) {
	f := newFixture()
	users := map[string]string{"admin": "s3cret", "ops": "other"}
	h := NewStats(f.statsOptions("/", "/metrics", users)).Handler()

	paths := []string{"/", "/haproxy?stats", "/api/v1/backends", "/api/v1/frontends", "/metrics", "/no/such/path"}
	for _, p := range paths {
		for _, c := range []struct{ user, pass string }{{"", ""}, {"admin", "wrong"}, {"nobody", "s3cret"}, {"ops", "s3cret"}, {"admin", ""}} {
			rec := get(t, h, http.MethodGet, p, c.user, c.pass)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("GET %s as %q:%q = %d, want 401", p, c.user, c.pass, rec.Code)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != `Basic realm="HAProxy Statistics"` {
				t.Errorf("GET %s: WWW-Authenticate = %q", p, got)
			}
			if strings.Contains(rec.Body.String(), "rmq1") {
				t.Errorf("GET %s without a login shows data: %s", p, rec.Body)
			}
		}
	}
	for _, c := range []struct{ user, pass string }{{"admin", "s3cret"}, {"ops", "other"}} {
		if rec := get(t, h, http.MethodGet, "/", c.user, c.pass); !isPage(rec) {
			t.Errorf("GET / as %s = %d %s, want the page", c.user, rec.Code, rec.Header().Get("Content-Type"))
		}
		if rec := get(t, h, http.MethodGet, "/api/v1/backends", c.user, c.pass); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"rmq1"`) {
			t.Errorf("GET /api/v1/backends as %s = %d %s", c.user, rec.Code, rec.Body)
		}
		if rec := get(t, h, http.MethodGet, "/metrics", c.user, c.pass); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "amqplb_server_up") {
			t.Errorf("GET /metrics as %s = %d", c.user, rec.Code)
		}
	}

	// A realm of one's own, quoted as the header's syntax wants.
	o := f.statsOptions("/", "", users)
	o.Realm = `amqplb "prod"`
	rec := get(t, NewStats(o).Handler(), http.MethodGet, "/", "", "")
	if got := rec.Header().Get("WWW-Authenticate"); rec.Code != http.StatusUnauthorized || got != `Basic realm="amqplb \"prod\""` {
		t.Errorf("custom realm: %d %q", rec.Code, got)
	}

	// Without users, no login is asked for.
	if rec := get(t, NewStats(f.statsOptions("/", "", nil)).Handler(), http.MethodGet, "/", "", ""); !isPage(rec) {
		t.Errorf("no users: GET / = %d, want the page", rec.Code)
	}
}

func TestStatsWrongPasswordLogged(t *testing.T) {
	f := newFixture()
	var logs testenv.Buffer
	o := f.statsOptions("/", "", map[string]string{"admin": "s3cret"})
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h := NewStats(o).Handler()
	get(t, h, http.MethodGet, "/", "", "") // a browser's first request: not worth a line
	if logs.String() != "" {
		t.Errorf("a request without a login was logged: %s", logs.String())
	}
	get(t, h, http.MethodGet, "/", "admin", "guess")
	for _, want := range []string{"wrong user name or password", "user=admin", "stats=stats", "component=stats"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q: %s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "guess") {
		t.Error("the log shows the password tried")
	}
}

// The page is served wherever HAProxy would serve it (requests beginning with the URI), and
// the API address it computes from its <meta> answers, whatever the depth of the URI.
func TestStatsPageLocations(t *testing.T) {
	f := newFixture()
	for _, c := range []struct {
		uri      string
		page     []string // requests served the page
		notPage  []string // requests not served the page
		metaBase string   // data-base for the first of page
	}{
		{DefaultStatsURI, []string{"/haproxy?stats", "/haproxy?stats;up", "/haproxy?statsx"}, []string{"/", "/haproxy", "/haproxy?stat", "/stats"}, "./"},
		{"/", []string{"/", "/haproxy?stats", "/anything/at/all", "/index.html"}, nil, "./"},
		{"/stats", []string{"/stats", "/stats/", "/stats?x", "/statsfoo", "/stats/a/b"}, []string{"/", "/stat"}, "./"},
		{"/lb/stats/", []string{"/lb/stats/", "/lb/stats/x"}, []string{"/lb/stats", "/lb/", "/"}, "../../lb/stats/"},
		{"lb/stats", []string{"/lb/stats"}, []string{"/"}, "../lb/"},
	} {
		h := NewStats(f.statsOptions(c.uri, "", nil)).Handler()
		for i, p := range c.page {
			rec := get(t, h, http.MethodGet, p, "", "")
			if !isPage(rec) {
				t.Errorf("uri %q: GET %s = %d %s, want the page", c.uri, p, rec.Code, rec.Body)
				continue
			}
			base := pageAttr(t, rec.Body.String(), "base")
			if i == 0 && base != c.metaBase {
				t.Errorf("uri %q: GET %s: data-base = %q, want %q", c.uri, p, base, c.metaBase)
			}
			if ro := pageAttr(t, rec.Body.String(), "readonly"); ro != "true" {
				t.Errorf("uri %q: page not read-only: %q", c.uri, ro)
			}
			// Where the page fetches its data, resolved as a browser does, answers JSON.
			for _, api := range []string{"api/v1/backends", "api/v1/frontends"} {
				doc, _ := url.Parse("http://lb.example" + p)
				ref, err := url.Parse(base + api)
				if err != nil {
					t.Fatal(err)
				}
				target := doc.ResolveReference(ref).RequestURI()
				arec := get(t, h, http.MethodGet, target, "", "")
				if arec.Code != http.StatusOK || !strings.HasPrefix(arec.Header().Get("Content-Type"), "application/json") {
					t.Errorf("uri %q: page at %s fetches %s = %d %s", c.uri, p, target, arec.Code, arec.Body)
				}
			}
		}
		for _, p := range c.notPage {
			if rec := get(t, h, http.MethodGet, p, "", ""); isPage(rec) {
				t.Errorf("uri %q: GET %s served the page", c.uri, p)
			}
		}
	}

	// The JSON holds the same data as the admin API's.
	h := NewStats(f.statsOptions(DefaultStatsURI, "", nil)).Handler()
	rec := get(t, h, http.MethodGet, "/api/v1/backends/rabbitmq/servers/rmq2", "", "")
	var s ServerJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || s.Name != "rmq2" || s.Address != "127.0.0.1:5674" {
		t.Errorf("GET one server = %d %s", rec.Code, rec.Body)
	}
	if rec := get(t, h, http.MethodGet, "/api/v1/backends/nope", "", ""); rec.Code != http.StatusNotFound {
		t.Errorf("unknown backend = %d, want 404", rec.Code)
	}
	// No page, no JSON.
	h = NewStats(f.statsOptions("", "/metrics", nil)).Handler()
	for _, p := range []string{"/", "/haproxy?stats", "/api/v1/backends"} {
		if rec := get(t, h, http.MethodGet, p, "", ""); rec.Code != http.StatusNotFound {
			t.Errorf("no URI: GET %s = %d, want 404", p, rec.Code)
		}
	}
}

func TestStatsRefresh(t *testing.T) {
	f := newFixture()
	for _, c := range []struct {
		refresh time.Duration
		want    string
	}{{0, "0"}, {10 * time.Second, "10000"}, {1500 * time.Millisecond, "1500"}, {time.Millisecond, "500"}} {
		o := f.statsOptions("/", "", nil)
		o.Refresh = c.refresh
		rec := get(t, NewStats(o).Handler(), http.MethodGet, "/", "", "")
		if got := pageAttr(t, rec.Body.String(), "refresh-ms"); got != c.want {
			t.Errorf("refresh %v: data-refresh-ms = %q, want %q", c.refresh, got, c.want)
		}
	}
}

func TestStatsHideVersion(t *testing.T) {
	f := newFixture()
	const version = "v9.8.7-secret"
	for _, hide := range []bool{false, true} {
		o := f.statsOptions("/", "/metrics", nil)
		o.Version = version
		o.HideVersion = hide
		h := NewStats(o).Handler()
		var seen []string
		for _, p := range []string{"/", "/api/v1/backends", "/api/v1/frontends", "/api/v1/backends/rabbitmq"} {
			rec := get(t, h, http.MethodGet, p, "", "")
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s = %d", p, rec.Code)
			}
			if strings.Contains(rec.Body.String(), version) {
				seen = append(seen, p)
			}
			for k, vs := range rec.Header() {
				for _, v := range vs {
					if strings.Contains(v, version) || strings.Contains(strings.ToLower(v), "amqplb/") {
						t.Errorf("hide %v: GET %s: header %s: %s tells the version", hide, p, k, v)
					}
				}
			}
		}
		if hide && len(seen) > 0 {
			t.Errorf("hide-version: the version shows in %v", seen)
		}
		if !hide && !slices.Contains(seen, "/api/v1/backends") {
			t.Errorf("without hide-version the page's data lacks the version (seen in %v)", seen)
		}
	}
}

func TestStatsMetrics(t *testing.T) {
	f := newFixture()
	f.server("rabbitmq", "rmq2").SetHealth(false)
	for _, path := range []string{"/metrics", "/prom/metrics", "exporter"} {
		h := NewStats(f.statsOptions("/haproxy?stats", path, nil)).Handler()
		want := "/" + strings.TrimPrefix(path, "/")
		req := httptest.NewRequest(http.MethodGet, want, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("metrics at %q: GET %s = %d %s", path, want, rec.Code, rec.Body)
		}
		body := rec.Body.String()
		for _, series := range []string{
			`amqplb_server_up{backend="rabbitmq",server="rmq1"} 1`,
			`amqplb_server_up{backend="rabbitmq",server="rmq2"} 0`,
			`amqplb_frontend_connections_total{frontend="amqp"} 40`,
			`amqplb_build_info{`,
			`go_goroutines `,
		} {
			if !strings.Contains(body, series) {
				t.Errorf("metrics at %q lack %s", path, series)
			}
		}
		// The page links to them, relative to itself.
		page := get(t, h, http.MethodGet, "/haproxy?stats", "", "").Body.String()
		if got := pageAttr(t, page, "metrics"); got != "./"+strings.TrimPrefix(want, "/") {
			t.Errorf("metrics at %q: page links to %q", path, got)
		}
	}
	// The same families as the admin Server's /metrics.
	stats := scrape(t, NewStats(f.statsOptions("", "/metrics", nil)).Handler())
	admin := scrape(t, New(f.options("")).Handler())
	for name := range admin {
		if strings.HasPrefix(name, "amqplb_") && stats[name] == nil {
			t.Errorf("stats metrics lack %s", name)
		}
	}
	// No metrics path: nothing at /metrics, and no link on the page.
	h := NewStats(f.statsOptions("/stats", "", nil)).Handler()
	if rec := get(t, h, http.MethodGet, "/metrics", "", ""); rec.Code != http.StatusNotFound {
		t.Errorf("no metrics path: GET /metrics = %d, want 404", rec.Code)
	}
	if got := pageAttr(t, get(t, h, http.MethodGet, "/stats", "", "").Body.String(), "metrics"); got != "" {
		t.Errorf("no metrics path: page links to %q", got)
	}
}

// Nothing on a stats listener changes anything.
func TestStatsReadOnly(t *testing.T) {
	f := newFixture()
	rmq1 := f.server("rabbitmq", "rmq1")
	users := map[string]string{"admin": "s3cret"}
	h := NewStats(f.statsOptions("/", "/metrics", users)).Handler()
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		for _, p := range []string{"/", "/api/v1/backends/rabbitmq/servers/rmq1/state", "/api/v1/backends/rabbitmq/servers/rmq1/weight", "/metrics"} {
			var body io.Reader = strings.NewReader(`{"state":"maint","weight":0}`)
			req := httptest.NewRequest(method, p, body)
			req.SetBasicAuth("admin", "s3cret")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s = %d (Allow %q), want 405", method, p, rec.Code, rec.Header().Get("Allow"))
			}
			if rec := get(t, h, method, p, "", ""); rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s without a login = %d, want 401", method, p, rec.Code)
			}
		}
	}
	if rmq1.Admin() != backend.AdminReady || rmq1.Weight() != 10 {
		t.Errorf("rmq1 changed: %v weight %d", rmq1.Admin(), rmq1.Weight())
	}
	if rec := get(t, h, http.MethodHead, "/", "admin", "s3cret"); rec.Code != http.StatusOK {
		t.Errorf("HEAD / = %d, want 200", rec.Code)
	}
	// The admin API's other endpoints are not here.
	for _, p := range []string{"/healthz", "/readyz"} {
		if rec := get(t, NewStats(f.statsOptions("/stats", "/metrics", nil)).Handler(), http.MethodGet, p, "", ""); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, rec.Code)
		}
	}
}

func TestStatsListenServeShutdown(t *testing.T) {
	f := newFixture()
	o := f.statsOptions(DefaultStatsURI, "/metrics", map[string]string{"admin": "s3cret"})
	if err := NewStats(o).Listen(); err == nil {
		t.Fatal("Listen without an address succeeded")
	}
	o.Listen = "127.0.0.1:0"
	testLifecycle(t, NewStats(o), func(base string, client *http.Client) {
		for _, c := range []struct {
			user string
			want int
		}{{"", http.StatusUnauthorized}, {"admin", http.StatusOK}} {
			req, _ := http.NewRequest(http.MethodGet, base+"/haproxy?stats", nil)
			if c.user != "" {
				req.SetBasicAuth(c.user, "s3cret")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("GET /haproxy?stats as %q = %d, want %d", c.user, resp.StatusCode, c.want)
			}
		}
	})
}

// stats admin: the page gets its controls, and its POSTs to a server's state (behind the
// listener's auth) change the server; no other POST is let through.
func TestStatsAdmin(t *testing.T) {
	f := newFixture()
	o := f.statsOptions("/haproxy?stats", "", map[string]string{"ops": "pw"})
	o.Admin = true
	var closed int
	o.CloseSessions = func(*backend.Server) int { closed++; return 2 }
	h := NewStats(o).Handler()
	if got := pageAttr(t, get(t, h, http.MethodGet, "/haproxy?stats", "ops", "pw").Body.String(), "readonly"); got != "false" {
		t.Errorf("page readonly = %q with stats admin, want false", got)
	}
	post := func(path, body, user string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		if user != "" {
			req.SetBasicAuth(user, "pw")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	state := "/api/v1/backends/rabbitmq/servers/rmq1/state"
	if rec := post(state, `{"state":"drain"}`, ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("POST without auth = %d, want 401", rec.Code)
	}
	if rec := post(state, `{"state":"drain","shutdown_sessions":true}`, "ops"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"sessions_closed": 2`) {
		t.Errorf("POST drain = %d %s", rec.Code, rec.Body.String())
	}
	if s := f.server("rabbitmq", "rmq1"); s.Admin() != backend.AdminDrain || closed != 1 {
		t.Errorf("rmq1 is %v after the page's drain (sessions closed %d times)", s.Admin(), closed)
	}
	for _, p := range []string{"/api/v1/backends/rabbitmq/servers/rmq1/weight", "/api/v1/backends/rabbitmq/rebalance", "/haproxy?stats"} {
		if rec := post(p, `{"weight":1}`, "ops"); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d, want 405", p, rec.Code)
		}
	}
	// Without stats admin the same POST is refused and the page has no controls.
	ro := NewStats(f.statsOptions("/haproxy?stats", "", nil)).Handler()
	rec := httptest.NewRecorder()
	ro.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, state, strings.NewReader(`{"state":"maint"}`)))
	if rec.Code != http.StatusMethodNotAllowed || f.server("rabbitmq", "rmq1").Admin() != backend.AdminDrain {
		t.Errorf("POST on a read-only stats listener = %d", rec.Code)
	}
}
