package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/internal/testenv"
)

// fakeMgmt answers /api/nodes and /api/overview for a cluster whose nodes are the given
// brokers (name → AMQP port), as any node of a RabbitMQ cluster does.
type fakeMgmt struct {
	mu    sync.Mutex
	nodes []string
	ports map[string]int
	down  bool
	srv   *httptest.Server
}

func newFakeMgmt(t *testing.T) *fakeMgmt {
	m := &fakeMgmt{ports: map[string]int{}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if u, p, _ := r.BasicAuth(); u != "lb" || p != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if m.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/api/nodes":
			var out []map[string]any
			for _, n := range m.nodes {
				out = append(out, map[string]any{"name": n, "running": true})
			}
			_ = json.NewEncoder(w).Encode(out)
		case "/api/overview":
			var ls []map[string]any
			for _, n := range m.nodes {
				ls = append(ls, map[string]any{"node": n, "protocol": "amqp", "ip_address": "127.0.0.1", "port": m.ports[n]})
			}
			self := ""
			if len(m.nodes) > 0 {
				self = m.nodes[0]
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"node": self, "listeners": ls})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *fakeMgmt) set(f func(m *fakeMgmt)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func brokerPort(t *testing.T, b *testenv.FakeBroker) int {
	_, p, err := net.SplitHostPort(b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// A running amqplb with [backend.discovery] serves the nodes its management API lists, next
// to a written server: a node that leaves gets no new sessions while its open session goes on,
// one that joins gets sessions, all without a reload; a reload keeps them; an API that stops answering leaves the
// servers as they are and is counted; the password is never logged.
func TestDiscoveryFollowsTheCluster(t *testing.T) {
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, baseline) }) // first registered, so run last
	brokers := map[string]*testenv.FakeBroker{}
	for _, n := range []string{"rabbit@a", "rabbit@b", "rabbit@c", "static"} {
		brokers[n] = testenv.StartFakeBroker(t, testenv.Echo)
	}
	mg := newFakeMgmt(t)
	mg.set(func(m *fakeMgmt) {
		m.nodes = []string{"rabbit@a", "rabbit@b"}
		for _, n := range []string{"rabbit@a", "rabbit@b", "rabbit@c"} {
			m.ports[n] = brokerPort(t, brokers[n])
		}
	})

	interval := 20 * time.Millisecond // what the next load gives: a reload may change it
	makeCfg := func() *config.Config {
		cfg := config.DefaultConfig()
		cfg.File = "test.toml"
		cfg.Global.DrainTimeout = time.Second
		cfg.Global.AccessLog = false
		cfg.Admin.Listen = "127.0.0.1:0"
		cfg.Frontends = []config.Frontend{{Name: "amqp", Bind: "127.0.0.1:0", Backend: "rabbitmq", Mode: "tcp"}}
		b := config.DefaultBackend()
		b.Name = "rabbitmq"
		b.Balance = "leastconn"
		b.HealthCheck.Type = "none"
		d := config.DefaultDiscovery()
		d.Management, d.Interval, d.User, d.Password = mg.srv.URL, interval, "lb", "secret"
		b.Discovery = &d
		s := config.DefaultServer()
		s.Name, s.Address, s.Weight = "static", brokers["static"].Addr(), 0 // never picked: the test counts discovered ones
		b.Servers = []config.Server{s}
		cfg.Backends = []config.Backend{b}
		return cfg
	}
	var logs testenv.Buffer
	a, err := newApp(makeCfg(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		func(string) (*config.Config, error) { return makeCfg(), nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the app has stopped (cleanups run last first)
		if strings.Contains(logs.String(), "secret") {
			t.Errorf("the password is in the log:\n%s", logs.String())
		}
	})
	h, addr := a.admin.Handler(), a.frontends[0].Addr().String() // before run, which sets them
	hup := runApp(t, a)

	backendJSON := func() admin.BackendJSON {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/backends/rabbitmq", nil))
		var bj admin.BackendJSON
		if err := json.Unmarshal(rec.Body.Bytes(), &bj); err != nil {
			t.Fatalf("GET /api/v1/backends/rabbitmq: %v: %s", err, rec.Body)
		}
		return bj
	}
	names := func() []string {
		var out []string
		for _, s := range backendJSON().Servers {
			out = append(out, s.Name)
		}
		return out
	}
	waitServers := func(want ...string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() error {
			if got := names(); !slices.Equal(got, want) {
				return fmt.Errorf("servers %v, want %v", got, want)
			}
			return nil
		})
	}
	// The first generation already has the discovered servers: newApp read the cluster once.
	if got := names(); !slices.Equal(got, []string{"static", "rabbit@a", "rabbit@b"}) {
		t.Fatalf("servers at start %v", got)
	}
	if bj := backendJSON(); bj.Discovery == nil || !bj.Discovery.OK || len(bj.Discovery.Nodes) != 2 ||
		bj.Discovery.Management != mg.srv.URL || bj.Discovery.Nodes[0].Address != brokers["rabbit@a"].Addr() {
		t.Fatalf("discovery status %+v", bj.Discovery)
	}

	// A session through amqplb, on a or b (leastconn, weight 0 for static).
	session := func() (net.Conn, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		echo(t, c, "ping")
		for name, br := range brokers {
			if br.Active() > 0 && name != "static" {
				return c, name
			}
		}
		t.Fatal("no broker holds the session")
		return nil, ""
	}
	c1, on := session()
	other := "rabbit@b"
	if on == "rabbit@b" {
		other = "rabbit@a"
	}

	// Its node leaves: no new session goes there, the open one goes on.
	mg.set(func(m *fakeMgmt) { m.nodes = slices.DeleteFunc(m.nodes, func(n string) bool { return n == on }) })
	waitServers("static", other)
	echo(t, c1, "still relayed after its server left")
	before := brokers[on].Accepted()
	for range 4 {
		c, _ := session()
		c.Close()
	}
	if n := brokers[on].Accepted(); n != before {
		t.Errorf("%s got %d new sessions after it left", on, n-before)
	}
	// Those sessions end on their own time; leastconn must count none of them below.
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, s := range backendJSON().Servers {
			if s.Name == other && s.ActiveConnections != 0 {
				return fmt.Errorf("%s has %d active connections, want 0", other, s.ActiveConnections)
			}
		}
		return nil
	})

	// A node joins: it gets sessions (leastconn spreads 4 held sessions over the two).
	mg.set(func(m *fakeMgmt) { m.nodes = append(m.nodes, "rabbit@c") })
	waitServers("static", other, "rabbit@c")
	for range 4 {
		session()
	}
	if n := brokers["rabbit@c"].Active(); n != 2 {
		t.Errorf("rabbit@c holds %d of 4 new sessions after it joined, want 2", n)
	}

	// A reload keeps the discovered servers, the same ones (their counters go on), and so does
	// one that changes the discovery (a new watcher, starting from what the old one knew).
	served := brokers["rabbit@c"].Accepted()
	for i, iv := range []time.Duration{20 * time.Millisecond, 30 * time.Millisecond} {
		interval = iv
		hup <- syscall.SIGHUP
		testenv.Eventually(t, 10*time.Second, func() error {
			if n := strings.Count(logs.String(), "msg=reloaded"); n != i+1 {
				return fmt.Errorf("%d reloads logged", n)
			}
			return nil
		})
		if got := names(); !slices.Equal(got, []string{"static", other, "rabbit@c"}) {
			t.Errorf("servers after reload %d: %v", i+1, got)
		}
		for _, s := range backendJSON().Servers {
			if s.Name == "rabbit@c" && s.TotalConnections != uint64(served) {
				t.Errorf("rabbit@c after reload %d: %d sessions counted, want %d (the same server)", i+1, s.TotalConnections, served)
			}
		}
	}

	// The API fails: the servers stay, the failure is shown and counted.
	mg.set(func(m *fakeMgmt) { m.down = true })
	testenv.Eventually(t, 10*time.Second, func() error {
		if d := backendJSON().Discovery; d == nil || d.OK || d.Failures == 0 || !strings.Contains(d.Error, "503") {
			return fmt.Errorf("discovery status %+v", d)
		}
		return nil
	})
	if got := names(); !slices.Equal(got, []string{"static", other, "rabbit@c"}) {
		t.Errorf("servers after the API failed %v", got)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `amqplb_discovery_refreshes_total{backend="rabbitmq",result="error"}`) {
		t.Errorf("no amqplb_discovery_refreshes_total error series")
	}
	if !strings.Contains(logs.String(), "discovery: servers changed") || !strings.Contains(logs.String(), "discovery: refresh failed") {
		t.Errorf("log lacks the change or the failure:\n%s", logs.String())
	}
}

// echo writes s through c and reads it back from the echoing broker.
func echo(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(s))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != s {
		t.Fatalf("echo %q: got %q, %v", s, got, err)
	}
}

// withDiscovered adds one server per member, after the written ones, leaving out a member whose
// name or address a written server has; it never changes the configuration it is given.
func TestWithDiscovered(t *testing.T) {
	a := &app{discStats: nil, watchers: map[string]*watcher{}}
	cfg := config.DefaultConfig()
	b := config.DefaultBackend()
	b.Name, b.SendProxy = "r", "v2"
	b.HealthCheck.Management = &config.Management{Port: 15672}
	b.Discovery = &config.Discovery{Management: "http://x:15672"}
	s := config.DefaultServer()
	s.Name, s.Address = "written", "10.0.0.9:5672"
	b.Servers = []config.Server{s}
	cfg.Backends = []config.Backend{b}
	w, err := a.newWatcher(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.watchers["r"] = w
	// No refresh yet: only the written server.
	if got := a.withDiscovered(cfg); len(got.Backends[0].Servers) != 1 {
		t.Fatalf("before any refresh: %+v", got.Backends[0].Servers)
	}
	if !sameServers(cfg, a.withDiscovered(cfg)) {
		t.Error("sameServers is false for equal lists")
	}
}
