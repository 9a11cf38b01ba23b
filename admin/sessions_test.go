package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSessions stands in for the proxy's frontends: a list of open sessions that
// CloseSession ends.
type fakeSessions struct {
	mu     sync.Mutex
	list   []Session
	closed []uint64
}

func (fs *fakeSessions) all() []Session {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.Clone(fs.list)
}

func (fs *fakeSessions) close(id uint64) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	i := slices.IndexFunc(fs.list, func(s Session) bool { return s.ID == id })
	if i < 0 {
		return false
	}
	fs.list = slices.Delete(fs.list, i, i+1)
	fs.closed = append(fs.closed, id)
	return true
}

func (fs *fakeSessions) set(list []Session) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.list = list
}

// wire makes o read and close fs's sessions, with a cap of labels vhosts.
func (fs *fakeSessions) wire(o *Options, labels int) {
	o.Sessions, o.CloseSession, o.VHostLabels = fs.all, fs.close, labels
}

var sessionEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// synthSession returns session id of user on vhost, through backend "rabbitmq" to server, with
// every field set but CloseCode (a session the broker did not refuse).
func synthSession(id uint64, server, vhost, user string) Session {
	return Session{
		ID:             id,
		Frontend:       "amqp",
		Client:         netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(id >> 8), byte(id)}), 40000+uint16(id%20000)),
		Backend:        "rabbitmq",
		Server:         server,
		Protocol:       "amqp-0-9-1",
		Mechanism:      "PLAIN",
		User:           user,
		VHost:          vhost,
		ConnectionName: fmt.Sprintf("orders-worker-%d", id),
		ClientProduct:  "RabbitMQ",
		ClientVersion:  "5.21.0",
		ClientPlatform: "Java",
		ChannelMax:     2047,
		FrameMax:       131072,
		Heartbeat:      60 * time.Second,
		BytesToServer:  1000 + id,
		BytesToClient:  2000 + id,
		Since:          sessionEpoch.Add(time.Duration(id) * time.Second),
	}
}

// sessionsFixture is three sessions, given out of order: 7 (alice on /, rmq1, through a PROXY
// header), 3 (bob on orders, rmq2) and 5 (alice on orders, rmq1, from frontend amqps).
func sessionsFixture() *fakeSessions {
	s7 := synthSession(7, "rmq1", "/", "alice")
	s7.Client = netip.MustParseAddrPort("[2001:db8::7]:51000")
	s7.Via = netip.MustParseAddrPort("192.0.2.10:33000")
	s3 := synthSession(3, "rmq2", "orders", "bob")
	s3.ConnectionName = "Billing API"
	s5 := synthSession(5, "rmq1", "orders", "alice")
	s5.Frontend = "amqps"
	s5.Heartbeat = 0
	return &fakeSessions{list: []Session{s7, s3, s5}}
}

func getSessionsPage(t *testing.T, h http.Handler, query string) SessionsResponse {
	t.Helper()
	code, body := do(t, h, http.MethodGet, "/api/v1/sessions"+query, "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/sessions%s = %d: %s", query, code, body)
	}
	var r SessionsResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func ids(r SessionsResponse) []uint64 {
	var out []uint64
	for _, s := range r.Sessions {
		out = append(out, s.ID)
	}
	return out
}

func TestSessionsShape(t *testing.T) {
	fs := sessionsFixture()
	o := newFixture().options("")
	fs.wire(&o, 100)
	h := New(o).Handler()

	code, body := do(t, h, http.MethodGet, "/api/v1/sessions", "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/sessions = %d: %s", code, body)
	}
	top := decode(t, body)
	if got, want := keys(top), []string{"generated_at", "next_after", "sessions", "total"}; !slices.Equal(got, want) {
		t.Errorf("top-level fields = %v, want %v", got, want)
	}
	if top["total"] != 3.0 || top["next_after"] != nil {
		t.Errorf("total %v next_after %v, want 3 and null", top["total"], top["next_after"])
	}
	list := top["sessions"].([]any)
	// Contract fields (ARCHITECTURE.md), exactly.
	wantSession := []string{"backend", "bytes_to_client", "bytes_to_server", "channel_max", "client", "client_platform",
		"client_product", "client_version", "connection_name", "frame_max", "frontend", "heartbeat_seconds", "id",
		"mechanism", "protocol", "server", "since", "user", "vhost", "via"}
	var got []float64
	for _, s := range list {
		m := s.(map[string]any)
		if k := keys(m); !slices.Equal(k, wantSession) {
			t.Errorf("session fields = %v, want %v", k, wantSession)
		}
		got = append(got, m["id"].(float64))
	}
	if !slices.Equal(got, []float64{3, 5, 7}) {
		t.Errorf("ids = %v, want 3 5 7 (by id)", got)
	}

	r := getSessionsPage(t, h, "")
	s7 := r.Sessions[2]
	want := SessionJSON{ID: 7, Frontend: "amqp", Client: "[2001:db8::7]:51000", Via: "192.0.2.10:33000", Backend: "rabbitmq",
		Server: "rmq1", Protocol: "amqp-0-9-1", Mechanism: "PLAIN", User: "alice", VHost: "/", ConnectionName: "orders-worker-7",
		ClientProduct: "RabbitMQ", ClientVersion: "5.21.0", ClientPlatform: "Java", ChannelMax: 2047, FrameMax: 131072,
		HeartbeatSeconds: 60, BytesToServer: 1007, BytesToClient: 2007, Since: sessionEpoch.Add(7 * time.Second)}
	if !reflect.DeepEqual(s7, want) {
		t.Errorf("session 7 =\n%+v\nwant\n%+v", s7, want)
	}
	if r.Sessions[0].Via != "" || r.Sessions[0].Client != "10.1.0.3:40003" || r.Sessions[1].HeartbeatSeconds != 0 {
		t.Errorf("session 3 client %q via %q, session 5 heartbeat %v", r.Sessions[0].Client, r.Sessions[0].Via, r.Sessions[1].HeartbeatSeconds)
	}
	if !strings.Contains(body, `"since": "2026-03-01T12:00:07Z"`) {
		t.Errorf("since is not RFC 3339 UTC:\n%s", body)
	}

	// One session by id.
	code, body = do(t, h, http.MethodGet, "/api/v1/sessions/3", "")
	if code != http.StatusOK || decode(t, body)["connection_name"] != "Billing API" {
		t.Errorf("GET /api/v1/sessions/3 = %d %s", code, body)
	}
	if code, body = do(t, h, http.MethodGet, "/api/v1/sessions/4", ""); code != http.StatusNotFound {
		t.Errorf("GET /api/v1/sessions/4 = %d %s, want 404", code, body)
	}

	// Without a session source: an empty list, not an error.
	r = getSessionsPage(t, New(newFixture().options("")).Handler(), "")
	if r.Sessions == nil || len(r.Sessions) != 0 || r.Total != 0 {
		t.Errorf("no Sessions: %+v", r)
	}
}

// A session whose handshake the broker refused is listed, while it ends, with the broker's
// reply code; every other session has no close_code key, so the contract's keys stay as they are.
func TestSessionsCloseCode(t *testing.T) {
	fs := sessionsFixture()
	refused := synthSession(9, "rmq2", "", "mallory")
	refused.CloseCode = 403
	fs.list = append(fs.list, refused)
	o := newFixture().options("")
	fs.wire(&o, 100)
	h := New(o).Handler()

	code, body := do(t, h, http.MethodGet, "/api/v1/sessions/9", "")
	if got := decode(t, body)["close_code"]; code != http.StatusOK || got != 403.0 {
		t.Errorf("GET /api/v1/sessions/9 = %d, close_code %v, want 403: %s", code, got, body)
	}
	_, body = do(t, h, http.MethodGet, "/api/v1/sessions/7", "")
	if m := decode(t, body); slices.Contains(keys(m), "close_code") {
		t.Errorf("a session the broker did not refuse has close_code: %s", body)
	}
	r := getSessionsPage(t, h, "?user=mallory")
	if len(r.Sessions) != 1 || r.Sessions[0].CloseCode != 403 {
		t.Errorf("the list = %+v, want session 9 with close_code 403", r.Sessions)
	}
}

// No output carries a credential: neither the types admin gets and gives nor the JSON has a
// field for one, whatever the identity holds.
func TestSessionsHoldNoPassword(t *testing.T) {
	bad := []string{"pass", "secret", "response", "credential", "token"}
	for _, typ := range []reflect.Type{reflect.TypeFor[Session](), reflect.TypeFor[SessionJSON]()} {
		for f := range typ.Fields() {
			name := strings.ToLower(f.Name + " " + f.Tag.Get("json"))
			for _, b := range bad {
				if strings.Contains(name, b) {
					t.Errorf("%s.%s looks like a credential", typ.Name(), f.Name)
				}
			}
		}
	}
	fs := sessionsFixture()
	o := newFixture().options("")
	fs.wire(&o, 100)
	_, body := do(t, New(o).Handler(), http.MethodGet, "/api/v1/sessions", "")
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				for _, b := range bad {
					if strings.Contains(strings.ToLower(k), b) {
						t.Errorf("JSON key %q looks like a credential", k)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(decode(t, body))
}

func TestSessionsFilters(t *testing.T) {
	fs := sessionsFixture()
	o := newFixture().options("")
	fs.wire(&o, 100)
	h := New(o).Handler()
	for _, tt := range []struct {
		query string
		want  []uint64
	}{
		{"?server=rmq1", []uint64{5, 7}},
		{"?server=rmq2", []uint64{3}},
		{"?server=rmq9", nil},
		{"?vhost=orders", []uint64{3, 5}},
		{"?vhost=%2F", []uint64{7}},
		{"?vhost=", nil}, // exact: only sessions with no vhost yet
		{"?user=alice", []uint64{5, 7}},
		{"?user=alice&vhost=orders", []uint64{5}},
		{"?frontend=amqps", []uint64{5}},
		{"?backend=rabbitmq&server=rmq1&user=alice&vhost=%2F&frontend=amqp", []uint64{7}},
		{"?backend=other", nil},
		{"?q=billing", []uint64{3}},            // connection name, any case
		{"?q=ALI", []uint64{5, 7}},             // user
		{"?q=2001:db8", []uint64{7}},           // client address
		{"?q=192.0.2.10", []uint64{7}},         // the PROXY header's peer
		{"?q=rabbitmq", []uint64{3, 5, 7}},     // client product
		{"?q=ord&server=rmq1", []uint64{5, 7}}, // vhost of 5, connection name of 7
		{"?q=", []uint64{3, 5, 7}},
	} {
		r := getSessionsPage(t, h, tt.query)
		if got := ids(r); !slices.Equal(got, tt.want) || r.Total != len(tt.want) {
			t.Errorf("%s: ids %v total %d, want %v", tt.query, got, r.Total, tt.want)
		}
	}

	for _, tt := range []struct{ query, msg string }{
		{"?vhots=orders", `unknown query parameter "vhots" (known: after, backend, frontend, limit, q, server, user, vhost)`},
		{"?user=a&user=b", `query parameter "user" given 2 times`},
		{"?limit=0", `limit "0" is not a number in 1..1000`},
		{"?limit=1001", `limit "1001" is not a number in 1..1000`},
		{"?limit=ten", `limit "ten" is not a number in 1..1000`},
		{"?after=-1", `after "-1" is not a session id`},
		{"?user=%zz", `bad query: invalid URL escape "%zz"`},
	} {
		code, body := do(t, h, http.MethodGet, "/api/v1/sessions"+tt.query, "")
		if code != http.StatusBadRequest || decode(t, body)["error"] != tt.msg {
			t.Errorf("%s = %d %s, want 400 %q", tt.query, code, body, tt.msg)
		}
	}
	if code, _ := do(t, h, http.MethodGet, "/api/v1/sessions/x", ""); code != http.StatusBadRequest {
		t.Errorf("GET /api/v1/sessions/x = %d, want 400", code)
	}
}

// Paging is by id (keyset): a page starts after the last id of the one before, so sessions
// that come and go between two pages neither repeat nor push others out.
func TestSessionsPaging(t *testing.T) {
	list := make([]Session, 250)
	for i := range list {
		vhost := "a"
		if i%2 == 1 {
			vhost = "b"
		}
		list[i] = synthSession(uint64(i+1), "rmq1", vhost, "u")
	}
	rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	fs := &fakeSessions{list: list}
	o := newFixture().options("")
	fs.wire(&o, 100)
	h := New(o).Handler()

	seq := func(from, to uint64) []uint64 {
		var out []uint64
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
		return out
	}
	p1 := getSessionsPage(t, h, "")
	if !slices.Equal(ids(p1), seq(1, 100)) || p1.Total != 250 || p1.NextAfter == nil || *p1.NextAfter != 100 {
		t.Fatalf("page 1: %d sessions from %v, total %d, next %v", len(p1.Sessions), p1.Sessions[0].ID, p1.Total, p1.NextAfter)
	}
	// Between the pages, session 50 (seen) and 150 (not yet seen) end and 300 starts.
	fs.close(50)
	fs.close(150)
	fs.mu.Lock()
	fs.list = append(fs.list, synthSession(300, "rmq1", "a", "u"))
	fs.mu.Unlock()
	p2 := getSessionsPage(t, h, "?after=100")
	want := slices.DeleteFunc(seq(101, 201), func(id uint64) bool { return id == 150 })
	if !slices.Equal(ids(p2), want) || p2.Total != 249 || p2.NextAfter == nil || *p2.NextAfter != 201 {
		t.Fatalf("page 2: ids %v, total %d, next %v", ids(p2), p2.Total, p2.NextAfter)
	}
	p3 := getSessionsPage(t, h, "?after=201")
	if want := append(seq(202, 250), 300); !slices.Equal(ids(p3), want) || p3.NextAfter != nil {
		t.Fatalf("page 3: ids %v, next %v, want %v and null", ids(p3), p3.NextAfter, want)
	}

	// With a filter and a limit: the odd ids and 300 are on vhost a.
	f1 := getSessionsPage(t, h, "?vhost=a&limit=10")
	if !slices.Equal(ids(f1), []uint64{1, 3, 5, 7, 9, 11, 13, 15, 17, 19}) || f1.Total != 126 || *f1.NextAfter != 19 {
		t.Errorf("vhost a, 10: ids %v total %d next %v", ids(f1), f1.Total, *f1.NextAfter)
	}
	if f2 := getSessionsPage(t, h, "?vhost=a&limit=10&after=19"); f2.Sessions[0].ID != 21 {
		t.Errorf("vhost a after 19 starts at %d", f2.Sessions[0].ID)
	}
	// Exactly one full page left: no next page.
	if last := getSessionsPage(t, h, "?after=240&limit=11"); len(last.Sessions) != 11 || last.NextAfter != nil {
		t.Errorf("the last full page: %d sessions, next %v", len(last.Sessions), last.NextAfter)
	}
	if all := getSessionsPage(t, h, "?limit=1000"); len(all.Sessions) != 249 || all.NextAfter != nil {
		t.Errorf("limit 1000: %d sessions, next %v", len(all.Sessions), all.NextAfter)
	}
}

func TestCloseSession(t *testing.T) {
	fs := sessionsFixture()
	var logs bytes.Buffer
	o := newFixture().options("s3cret")
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	fs.wire(&o, 100)
	h := New(o).Handler()
	auth := []string{"Authorization", "Bearer s3cret"}

	code, body := do(t, h, http.MethodPost, "/api/v1/sessions/3/close", "")
	if code != http.StatusUnauthorized || len(fs.all()) != 3 {
		t.Fatalf("close without a token = %d %s; %d sessions left", code, body, len(fs.all()))
	}
	code, _ = do(t, h, http.MethodPost, "/api/v1/sessions/3/close", "", append(auth, "Sec-Fetch-Site", "cross-site")...)
	if code != http.StatusForbidden || len(fs.all()) != 3 {
		t.Fatalf("cross-site close = %d; %d sessions left", code, len(fs.all()))
	}
	code, body = do(t, h, http.MethodPost, "/api/v1/sessions/3/close", "", auth...)
	if code != http.StatusOK {
		t.Fatalf("close 3 = %d %s", code, body)
	}
	if m := decode(t, body); m["closed"] != true || m["id"] != 3.0 || m["graceful"] != false || len(m) != 3 {
		t.Errorf("close 3 answered %s", body)
	}
	if !slices.Equal(fs.closed, []uint64{3}) {
		t.Errorf("closed %v, want [3]", fs.closed)
	}
	line := logs.String()
	for _, want := range []string{`msg="admin: session closed"`, "id=3", "user=bob", "vhost=orders", "server=rmq2", "client=10.1.0.3:40003"} {
		if !strings.Contains(line, want) {
			t.Errorf("log has no %s:\n%s", want, line)
		}
	}
	// Gone now: 404, for the close and the GET.
	if code, body = do(t, h, http.MethodPost, "/api/v1/sessions/3/close", "", auth...); code != http.StatusNotFound ||
		decode(t, body)["error"] != "no open session 3" {
		t.Errorf("close 3 again = %d %s, want 404", code, body)
	}
	if code, _ = do(t, h, http.MethodGet, "/api/v1/sessions/3", ""); code != http.StatusNotFound {
		t.Errorf("GET closed session = %d, want 404", code)
	}
	if code, _ = do(t, h, http.MethodPost, "/api/v1/sessions/abc/close", "", auth...); code != http.StatusBadRequest {
		t.Errorf("close abc = %d, want 400", code)
	}
	// graceful=true goes to CloseSessionGracefully: 501 without one, then the closer.
	if code, _ = do(t, h, http.MethodPost, "/api/v1/sessions/2/close?graceful=true", "", auth...); code != http.StatusNotImplemented {
		t.Errorf("graceful close without a graceful closer = %d, want 501", code)
	}
	if code, _ = do(t, h, http.MethodPost, "/api/v1/sessions/2/close?graceful=perhaps", "", auth...); code != http.StatusBadRequest {
		t.Errorf("graceful=perhaps = %d, want 400", code)
	}
	var graceful []uint64
	og := o
	og.CloseSessionGracefully = func(id uint64) bool { graceful = append(graceful, id); return true }
	code, body = do(t, New(og).Handler(), http.MethodPost, "/api/v1/sessions/2/close?graceful=true", "", auth...)
	if m := decode(t, body); code != http.StatusOK || m["graceful"] != true || !slices.Equal(graceful, []uint64{2}) {
		t.Errorf("graceful close of 2 = %d %s; the graceful closer saw %v", code, body, graceful)
	}
	if code, _ = do(t, h, http.MethodGet, "/api/v1/sessions/5/close", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET .../close = %d, want 405", code)
	}
	if code, _ = do(t, h, http.MethodDelete, "/api/v1/sessions", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /api/v1/sessions = %d, want 405", code)
	}

	// Without a closer: 501, and the sessions stay.
	o.CloseSession = nil
	if code, _ = do(t, New(o).Handler(), http.MethodPost, "/api/v1/sessions/5/close", "", auth...); code != http.StatusNotImplemented || len(fs.all()) != 2 {
		t.Errorf("close without a closer = %d, want 501", code)
	}
}

func TestVHostSessions(t *testing.T) {
	var list []Session
	add := func(vhost string, n int) {
		for range n {
			list = append(list, synthSession(uint64(len(list)+1), "rmq1", vhost, "u"))
		}
	}
	add("a", 3)
	add("b", 2)
	add("c", 1)
	add("", 2) // still in the handshake: not counted
	for _, tt := range []struct {
		labels int
		want   []vhostCount
	}{
		{2, []vhostCount{{"a", 3}, {"b", 2}, {"_other", 1}}},
		{0, []vhostCount{{"_other", 6}}},
		{-1, []vhostCount{{"_other", 6}}},
		{3, []vhostCount{{"a", 3}, {"b", 2}, {"c", 1}, {"_other", 0}}},
		{100, []vhostCount{{"a", 3}, {"b", 2}, {"c", 1}, {"_other", 0}}},
	} {
		if got := vhostSessions(list, tt.labels); !slices.Equal(got, tt.want) {
			t.Errorf("labels %d: %v, want %v", tt.labels, got, tt.want)
		}
	}
	// Ties go by name; a real vhost named _other is summed with the rest.
	add("e", 1)
	add("d", 1)
	add("_other", 4)
	if got, want := vhostSessions(list, 4), []vhostCount{{"a", 3}, {"b", 2}, {"c", 1}, {"d", 1}, {"_other", 5}}; !slices.Equal(got, want) {
		t.Errorf("ties: %v, want %v", got, want)
	}
	if got := vhostSessions(nil, 100); !slices.Equal(got, []vhostCount{{"_other", 0}}) {
		t.Errorf("no sessions: %v", got)
	}
}

func TestVHostSessionsMetric(t *testing.T) {
	fs := &fakeSessions{}
	var list []Session
	for i, v := range []string{"orders", "orders", "orders", "billing", "billing", "audit", ""} {
		list = append(list, synthSession(uint64(i+1), "rmq1", v, "u"))
	}
	fs.set(list)
	o := newFixture().options("")
	fs.wire(&o, 2)
	fams := scrape(t, New(o).Handler())
	fam := fams["amqplb_vhost_sessions"]
	if fam == nil || fam.GetType().String() != "GAUGE" || fam.GetHelp() == "" {
		t.Fatalf("amqplb_vhost_sessions = %v, want a gauge with help", fam)
	}
	got := map[string]float64{}
	for _, m := range fam.Metric {
		if len(m.Label) != 1 || m.Label[0].GetName() != "vhost" {
			t.Fatalf("labels %v, want vhost only", m.Label)
		}
		got[m.Label[0].GetValue()] = m.Gauge.GetValue()
	}
	if want := map[string]float64{"orders": 3, "billing": 2, "_other": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("amqplb_vhost_sessions = %v, want %v", got, want)
	}

	// The stats listener exports it too (the same families), but lists no sessions.
	so := newFixture().statsOptions("/stats", "/metrics", nil)
	so.Sessions, so.VHostLabels = fs.all, 0
	sh := NewStats(so).Handler()
	if v, ok := value(scrape(t, sh), "amqplb_vhost_sessions", map[string]string{"vhost": "_other"}); !ok || v != 6 {
		t.Errorf("stats amqplb_vhost_sessions{_other} = %v %v, want 6", v, ok)
	}
	if code, _ := do(t, sh, http.MethodGet, "/api/v1/sessions", ""); code != http.StatusNotFound {
		t.Errorf("stats GET /api/v1/sessions = %d, want 404", code)
	}

	// Without a session source, no family.
	if fams := scrape(t, New(newFixture().options("")).Handler()); fams["amqplb_vhost_sessions"] != nil {
		t.Error("amqplb_vhost_sessions without Options.Sessions")
	}
}

// BenchmarkSessionsAPI1000 lists 1,000 open sessions in one answer through the handler, as
// GET /api/v1/sessions?limit=1000 (the bound: 100 ms).
func BenchmarkSessionsAPI1000(b *testing.B) {
	list := make([]Session, 1000)
	for i := range list {
		list[i] = synthSession(uint64(i+1), fmt.Sprintf("rmq%d", i%3+1), fmt.Sprintf("vhost-%d", i%40), fmt.Sprintf("user-%d", i%25))
	}
	rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	o := newFixture().options("")
	o.Sessions = func() []Session { return slices.Clone(list) } // a snapshot, as the proxy's
	h := New(o).Handler()
	b.ReportAllocs()
	for b.Loop() {
		code, body := do(b, h, http.MethodGet, "/api/v1/sessions?limit=1000", "")
		if code != http.StatusOK || !strings.Contains(body, `"total": 1000`) {
			b.Fatalf("GET = %d", code)
		}
	}
}
