package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/amqplb/amqplb/internal/testenv"
	"github.com/amqplb/amqplb/internal/testenv/chrome"
)

// pageFixture is what an operator sees mid-incident: backend rabbitmq with rmq1 up and busy,
// rmq2 up, rmq3 failing its login (403); backend rabbitmq-dr with one server in maintenance.
func pageFixture() *fixture {
	f := newFixture()
	now := time.Now()
	ok := func(s *backend.Server, d time.Duration) {
		f.checks.Record(s, healthcheck.CheckResult{OK: true, Reason: "AMQP handshake ok", Duration: d, At: now.Add(-1500 * time.Millisecond)})
	}
	rmq1 := backend.NewServer(backend.ServerOptions{Name: "rmq1", Address: "10.0.1.11:5672", Weight: 10, MaxConnections: 500})
	rmq2 := backend.NewServer(backend.ServerOptions{Name: "rmq2", Address: "10.0.1.12:5672", Weight: 10})
	rmq3 := backend.NewServer(backend.ServerOptions{Name: "rmq3", Address: "10.0.1.13:5672", Weight: 10})
	ok(rmq1, 4200*time.Microsecond)
	ok(rmq2, 3900*time.Microsecond)
	f.checks.Record(rmq3, healthcheck.CheckResult{Kind: healthcheck.FailAuth, Code: 403,
		Reason:   "broker closed: 403 ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
		Duration: 6100 * time.Microsecond, At: now.Add(-3 * time.Second)})
	rmq3.SetHealth(false)
	for range 42 {
		rmq1.Acquire()
		rmq1.Connected()
	}
	for range 17 {
		rmq2.Acquire()
		rmq2.Connected()
	}
	for range 6 {
		rmq2.Release()
	}
	rmq1.AddBytes(734<<20, 2<<30)
	rmq2.AddBytes(96<<20, 310<<20)
	rmq3.AddBytes(12<<20, 40<<20)

	dr1 := backend.NewServer(backend.ServerOptions{Name: "dr1", Address: "10.0.2.11:5672", Weight: 1})
	dr2 := backend.NewServer(backend.ServerOptions{Name: "dr2", Address: "10.0.2.12:5672", Weight: 1, Backup: true})
	ok(dr1, 11*time.Millisecond)
	ok(dr2, 12*time.Millisecond)
	dr2.SetAdmin(backend.AdminMaint)

	f.backends = []*backend.Backend{
		{Name: "rabbitmq", Servers: []*backend.Server{rmq1, rmq2, rmq3}},
		{Name: "rabbitmq-dr", Servers: []*backend.Server{dr1, dr2}},
	}
	f.frontends = []FrontendStats{
		{Name: "amqp", Active: 53, Total: 18211, Refused: map[string]uint64{"bad_header": 2}},
		{Name: "amqps", Active: 0, Total: 120},
	}
	return f
}

// rowStates returns [server, badge text] for each row of backend b, in page order.
func rowStates(ctx context.Context, b string) ([][]string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[[][]string](`Array.from(document.querySelectorAll(
		'section[data-backend="`+b+`"] tbody tr')).map(tr => [tr.dataset.server, tr.querySelector('.badge').textContent])`))
}

// wantRows fails the test unless the rows of backend b are want ([server, badge text]).
func wantRows(t *testing.T, ctx context.Context, b string, want [][]string) {
	t.Helper()
	states, err := rowStates(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(states, want, slices.Equal) {
		t.Fatalf("rows of %s = %v, want %v", b, states, want)
	}
}

// waitFor waits, with testenv.Eventually, until cond holds or the test's patience ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if !cond() {
			return errors.New("waiting for " + what)
		}
		return nil
	})
}

func TestStatusPageInBrowser(t *testing.T) {
	ctx := chrome.Tab(t, chrome.Options{ConsoleErrors: true})
	f := pageFixture()
	var apiDown atomic.Bool
	o := f.options("")
	var closedSessions atomic.Int64
	o.CloseSessions = func(s *backend.Server) int { // as the proxy would: every session ends
		n := 0
		for ; s.ActiveConnections() > 0; n++ {
			s.Release()
		}
		closedSessions.Add(int64(n))
		return n
	}
	sessions := pageSessions()
	sessions.wire(&o, 100)
	h := New(o).Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if apiDown.Load() && strings.HasPrefix(r.URL.Path, "/api/") {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer ts.Close()
	rmq1, rmq2 := f.server("rabbitmq", "rmq1"), f.server("rabbitmq", "rmq2")

	if err := chromedp.Do(ctx,
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq3"] .badge[data-state="down"]`)),
	); err != nil {
		t.Fatal(err)
	}

	// Three servers with their states, in configuration order.
	wantRows(t, ctx, "rabbitmq", [][]string{{"rmq1", "up"}, {"rmq2", "up"}, {"rmq3", "down"}})
	// The failing server shows the broker's code and reason, and the header counts it.
	txt, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[
		document.querySelector('tr[data-server="rmq3"] .code').textContent,
		document.querySelector('tr[data-server="rmq3"] .reason').textContent,
		document.querySelector('section[data-backend="rabbitmq"] .count').textContent,
		getComputedStyle(document.querySelector('tr[data-server="rmq3"] .badge')).backgroundColor,
		document.querySelector('tr[data-server="rmq1"] .cmeta').textContent]`))
	if err != nil {
		t.Fatal(err)
	}
	if txt[0] != "403" || !strings.HasPrefix(txt[1], "403ACCESS_REFUSED - Login was refused") || txt[2] != "2/3 up" {
		t.Errorf("rmq3 shows code %q reason %q, header %q", txt[0], txt[1], txt[2])
	}
	// The style sheet applied (its CSP hash is right): a down badge is filled.
	if txt[3] == "" || txt[3] == "rgba(0, 0, 0, 0)" {
		t.Errorf("down badge has no background (%q): the style sheet did not apply", txt[3])
	}
	if !strings.Contains(txt[4], "ms") || !strings.Contains(txt[4], "ago") {
		t.Errorf("rmq1 check meta = %q, want a duration and an age", txt[4])
	}

	// Clicking drain on rmq2 drains it in the API and in the page.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-server="rmq2"] button[data-action="drain"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq2"] .badge[data-state="drain"]`)),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rmq2 drained in the API", func() bool { return rmq2.Admin() == backend.AdminDrain })
	if rmq1.Admin() != backend.AdminReady {
		t.Error("rmq1 changed too")
	}
	// The page refreshes at once after a change: the header counts follow within a poll period.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('section[data-backend="rabbitmq"] .count').textContent === "1/3 up"`,
		chromedp.WithPollingTimeout(1500*time.Millisecond))); err != nil {
		t.Errorf("header after drain is not 1/3 up: %v", err)
	}

	// rmq2 still has 11 sessions open: "Close sessions" closes them, on a second click.
	kick := `tr[data-server="rmq2"] button.kick`
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(kick)),
		chromedp.Click(chromedp.CSS(kick)),
	); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "admin-status-page-close-sessions.png", shot)
	armed, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+kick+`').textContent`))
	if err != nil || armed != "Close 11? Click again" || closedSessions.Load() != 0 {
		t.Errorf("after one click the button says %q (%v) and %d sessions were closed; want it armed and none closed", armed, err, closedSessions.Load())
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(kick)),
		chromedp.WaitNotVisible(chromedp.CSS(kick)), // no session left to close
	); err != nil {
		t.Fatal(err)
	}
	if n := closedSessions.Load(); n != 11 || rmq2.Admin() != backend.AdminDrain {
		t.Errorf("closed %d sessions, rmq2 %v; want 11 closed and rmq2 still drained", n, rmq2.Admin())
	}
	if kicks, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('button.kick')].filter(b => !b.hidden).length`)); err != nil || kicks != 0 {
		t.Errorf("%d close-sessions buttons visible (%v); want none: no other drained server has sessions", kicks, err)
	}

	// A change behind the page's back shows on the next refresh.
	rmq1.SetHealth(false)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .badge[data-state="down"]`))); err != nil {
		t.Fatal(err)
	}
	rmq1.SetHealth(true)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .badge[data-state="up"]`))); err != nil {
		t.Fatal(err)
	}

	// The incident view, light and dark: rmq1 up, rmq2 draining, rmq3 refusing logins.
	shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "admin-status-page.png", shot)
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
	}); err != nil {
		t.Fatal(err)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "admin-status-page-dark.png", shot)

	// When the API stops answering, the page says so in red.
	apiDown.Store(true)
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#live.bad`)),
		chromedp.WaitVisible(chromedp.CSS(`#stale-banner`)),
	); err != nil {
		t.Fatal(err)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "admin-status-page-stale.png", shot)
	apiDown.Store(false)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#live.ok`))); err != nil {
		t.Fatal(err)
	}

	// The weight is edited in place: click, type, Enter.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-server="rmq1"] .wbtn`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .winput`)),
		chromedp.SendKeys(chromedp.CSS(`tr[data-server="rmq1"] .winput`), "5"+kb.Enter),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rmq1 weight 5 in the API", func() bool { return rmq1.Weight() == 5 })
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .wbtn`))); err != nil {
		t.Fatal(err)
	}
	// Shown at once, and not undone by a refresh that was under way (less than a poll period).
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('tr[data-server="rmq1"] .wbtn').textContent === "5"`,
		chromedp.WithPollingTimeout(1500*time.Millisecond))); err != nil {
		t.Errorf("weight 5 not shown: %v", err)
	}

	sessionsInBrowser(t, ctx, sessions)
	statsPageInBrowser(t, ctx, f)

	// On a phone the rows become cards.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(420, 900), chromedp.Sleep(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "admin-status-page-narrow.png", shot)
}

// With a token configured, the page asks for it on the first 401, keeps it in sessionStorage
// and retries; a wrong token is refused and asked for again.
func TestStatusPageAsksForToken(t *testing.T) {
	ctx := chrome.Tab(t, chrome.Options{ConsoleErrors: true})
	f := pageFixture()
	ts := httptest.NewServer(New(f.options("s3cret")).Handler())
	defer ts.Close()
	rmq1 := f.server("rabbitmq", "rmq1")

	if err := chromedp.Do(ctx,
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .badge[data-state="up"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-server="rmq1"] button[data-action="maint"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#token-dialog[open] #token-input`)),
		chromedp.SendKeys(chromedp.CSS(`#token-input`), "wrong"),
		chromedp.Click(chromedp.CSS(`#token-ok`)),
		chromedp.WaitVisible(chromedp.CSS(`#token-dialog[open] #token-msg.err`)),
	); err != nil {
		t.Fatal(err)
	}
	if rmq1.Admin() != backend.AdminReady {
		t.Fatal("a wrong token changed the server")
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#token-input`), "s3cret"),
		chromedp.Click(chromedp.CSS(`#token-ok`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .badge[data-state="maint"]`)),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rmq1 in maint in the API", func() bool { return rmq1.Admin() == backend.AdminMaint })
	if tok, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('amqplb.token')`)); err != nil || tok != "s3cret" {
		t.Errorf("sessionStorage token = %q (%v), want s3cret", tok, err)
	}

	// The kept token is used without asking again.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-server="rmq1"] button[data-action="ready"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .badge[data-state="up"]`)),
	); err != nil {
		t.Fatal(err)
	}
	if open, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('token-dialog').open`)); err != nil || open {
		t.Errorf("token dialog open = %v (%v) with a kept token", open, err)
	}
	waitFor(t, "rmq1 ready in the API", func() bool { return rmq1.Admin() == backend.AdminReady })
}

// statsPageInBrowser opens, in the tab of TestStatusPageInBrowser, the page of a StatsServer
// that HAProxy's `stats uri /lb/stats`, `stats auth`, `stats refresh 1500ms` and
// `stats hide-version` make: under a sub-path, behind basic auth (given in the address, as
// `curl -u` users type it), read-only, with the data of the same fixture.
func statsPageInBrowser(t *testing.T, ctx context.Context, f *fixture) {
	t.Helper()
	o := f.statsOptions("/lb/stats", "/lb/metrics", map[string]string{"admin": "s3cret"})
	o.Refresh = 1500 * time.Millisecond
	o.HideVersion = true
	o.Version = "v1.2.3-hidden"
	var unauthorized atomic.Int64
	h := NewStats(o).Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); !ok {
			unauthorized.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer ts.Close()
	rmq1 := f.server("rabbitmq", "rmq1")

	u := strings.Replace(ts.URL, "http://", "http://admin:s3cret@", 1) + "/lb/stats"
	if err := chromedp.Do(ctx,
		chromedp.Navigate(u),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq3"] .badge[data-state="down"]`)),
	); err != nil {
		t.Fatalf("stats page: %v", err)
	}
	wantRows(t, ctx, "rabbitmq", [][]string{{"rmq1", "up"}, {"rmq2", "drain"}, {"rmq3", "down"}})
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[
		String(document.querySelectorAll('button[data-action], .wbtn, th.actions, td.actions, .sessbtn, .sessions').length),
		document.querySelector('tr[data-server="rmq1"] .wval').textContent,
		document.getElementById('version').textContent,
		document.getElementById('footer').textContent,
		Array.from(document.querySelectorAll('#footer a')).map(a => new URL(a.href).pathname).join(' '),
		document.querySelector('.fe[data-frontend="amqp"] .big').textContent]`))
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "0" {
		t.Errorf("read-only page has %s controls", got[0])
	}
	if want := strconv.Itoa(rmq1.Weight()); got[1] != want {
		t.Errorf("rmq1 weight shows %q, want %s", got[1], want)
	}
	if got[2] != "" {
		t.Errorf("hide-version: the page shows version %q", got[2])
	}
	if !strings.HasPrefix(got[3], "Refreshes every 1.5 s") {
		t.Errorf("footer = %q, want the refresh period of 1.5 s", got[3])
	}
	if got[4] != "/lb/api/v1/backends /lb/metrics" {
		t.Errorf("footer links = %q", got[4])
	}
	if got[5] != "53 active" {
		t.Errorf("frontend amqp shows %q", got[5])
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "stats-page.png", shot)

	// It refreshes itself, with the login the browser keeps.
	rmq1.SetHealth(false)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .badge[data-state="down"]`))); err != nil {
		t.Fatalf("stats page did not refresh: %v", err)
	}
	rmq1.SetHealth(true)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-server="rmq1"] .badge[data-state="up"]`))); err != nil {
		t.Fatal(err)
	}
	if live, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('live').className`)); err != nil || live != "live ok" {
		t.Errorf("live indicator = %q (%v), want live ok", live, err)
	}
	t.Logf("stats page: %d requests without a login (the browser's first, answered 401)", unauthorized.Load())
}

// pageSessions is who is connected in pageFixture: five sessions on rmq1, one on rmq2.
func pageSessions() *fakeSessions {
	mk := func(id uint64, server, vhost, user, name, product, version string, hb time.Duration) Session {
		s := synthSession(id, server, vhost, user)
		s.ConnectionName, s.ClientProduct, s.ClientVersion, s.Heartbeat = name, product, version, hb
		s.Since = time.Now().Add(-time.Duration(id) * 7 * time.Minute)
		s.BytesToServer, s.BytesToClient = id*3<<20, id*11<<20
		return s
	}
	orders := mk(11, "rmq1", "orders", "orders-svc", "orders-api@web-3", "RabbitMQ", "5.21.0", 60*time.Second)
	orders.ClientPlatform = "Java"
	billing := mk(12, "rmq1", "billing", "billing", "billing-worker-1", "pika", "1.3.2", 30*time.Second)
	billing.ClientPlatform = "Python 3.12.3"
	via := mk(13, "rmq1", "orders", "orders-svc", "orders-api@web-4", "RabbitMQ", "5.21.0", 60*time.Second)
	via.Via = netip.MustParseAddrPort("10.0.0.5:41000")
	handshaking := mk(14, "rmq1", "", "", "", "", "", 0)
	handshaking.Mechanism, handshaking.Protocol = "", "amqp-0-9-1"
	audit := mk(15, "rmq1", "/", "audit", "audit-tail", "amqp091-go", "1.10.0", 10*time.Second)
	audit.ClientPlatform = "Go"
	other := mk(16, "rmq2", "orders", "orders-svc", "orders-api@web-9", "RabbitMQ", "5.21.0", 60*time.Second)
	return &fakeSessions{list: []Session{orders, billing, via, handshaking, audit, other}}
}

// sessionsInBrowser, in the tab of TestStatusPageInBrowser: a click on rmq1's connection count
// lists its sessions, the search box narrows them, and one is closed with two clicks.
func sessionsInBrowser(t *testing.T, ctx context.Context, fs *fakeSessions) {
	t.Helper()
	panel := `section[data-backend="rabbitmq"] .sessions`
	rowIDs := func() []string {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('`+panel+` tbody tr')).map(tr => tr.dataset.session)`))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-server="rmq1"] .sessbtn`)),
		chromedp.WaitVisible(chromedp.CSS(panel+` tr[data-session="15"]`)),
	); err != nil {
		t.Fatal(err)
	}
	if got := rowIDs(); !slices.Equal(got, []string{"11", "12", "13", "14", "15"}) {
		t.Errorf("rmq1 lists sessions %v, want 11..15 in order", got)
	}
	txt, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[
		document.querySelector('`+panel+` h3').textContent,
		document.querySelector('`+panel+` .scount').textContent,
		document.querySelector('`+panel+` tr[data-session="12"]').innerText,
		document.querySelector('`+panel+` tr[data-session="13"] .sclient').innerText,
		document.querySelector('`+panel+` tr[data-session="14"] .svhost').textContent,
		document.querySelector('tr[data-server="rmq1"] .sessbtn').getAttribute('aria-expanded')]`))
	if err != nil {
		t.Fatal(err)
	}
	if txt[0] != "Sessions on rmq1" || txt[1] != "5 open" {
		t.Errorf("panel title %q, count %q", txt[0], txt[1])
	}
	for _, want := range []string{"billing", "billing-worker-1", "pika 1.3.2", "Python 3.12.3", "30 s", "PLAIN", "1h 24m"} {
		if !strings.Contains(txt[2], want) {
			t.Errorf("session 12 row has no %q: %q", want, txt[2])
		}
	}
	if !strings.Contains(txt[3], "via 10.0.0.5:41000") || txt[4] != "—" || txt[5] != "true" {
		t.Errorf("session 13 client %q, session 14 vhost %q, expanded %q", txt[3], txt[4], txt[5])
	}

	// The search box asks the API: by vhost, then by a piece of a connection name.
	search := chromedp.CSS(panel + ` input[type="search"]`)
	// clear empties the search box without an input event: the typing that follows sends them.
	clear := chromedp.Evaluate[chromedp.Void](`document.querySelector('` + panel + ` input[type="search"]').value = ''`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(search, "billing")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('`+panel+` tbody tr').length === 1`)); err != nil {
		t.Fatalf("search billing: rows %v (%v)", rowIDs(), err)
	}
	if got := rowIDs(); !slices.Equal(got, []string{"12"}) {
		t.Errorf("search billing lists %v, want [12]", got)
	}
	if err := chromedp.Do(ctx, clear, chromedp.SendKeys(search, "WEB-")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('`+panel+` tbody tr').length === 2`)); err != nil {
		t.Fatalf("search web-: rows %v (%v)", rowIDs(), err)
	}
	if got := rowIDs(); !slices.Equal(got, []string{"11", "13"}) {
		t.Errorf("search WEB- lists %v, want [11 13] (rmq2's web-9 is not rmq1's)", got)
	}
	if count, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+panel+` .scount').textContent`)); count != "2 matching" {
		t.Errorf("count while searching = %q", count)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "admin-status-page-sessions.png", shot)

	// Close session 13: the first click arms, the second closes it in the API.
	kill := chromedp.CSS(panel + ` tr[data-session="13"] .skill`)
	if err := chromedp.Do(ctx, chromedp.Click(kill)); err != nil {
		t.Fatal(err)
	}
	if armed, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+panel+` tr[data-session="13"] .skill').textContent`)); armed != "Close?" || len(fs.closed) != 0 {
		t.Errorf("after one click: button %q, closed %v", armed, fs.closed)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(kill),
		chromedp.WaitNotPresent(chromedp.CSS(panel+` tr[data-session="13"]`)),
	); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	closed := slices.Clone(fs.closed)
	fs.mu.Unlock()
	if !slices.Equal(closed, []uint64{13}) {
		t.Errorf("closed %v, want [13]", closed)
	}

	// Clearing the search lists the four left; the × hides them.
	if err := chromedp.Do(ctx, clear, chromedp.SendKeys(search, "x"+kb.Backspace)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('`+panel+` tbody tr').length === 4`)); err != nil {
		t.Fatalf("after clearing the search: rows %v (%v)", rowIDs(), err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(panel+` .sclose`)),
		chromedp.WaitNotVisible(chromedp.CSS(panel)),
	); err != nil {
		t.Fatal(err)
	}
}
