package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/internal/testenv"
)

// fakeCluster is the part of a cluster's management API that discovery reads, served by one
// httptest server per node, each answering for the whole cluster as RabbitMQ's nodes do.
type fakeCluster struct {
	mu    sync.Mutex
	nodes []fakeNode
	user  string
	pass  string
	calls map[string]int // node → requests answered
}

type fakeNode struct {
	name    string
	running bool
	amqp    int
	ip      string // the AMQP listener's ip_address
	srv     *httptest.Server
	down    bool // its API answers 503
}

func newFakeCluster(t *testing.T, n int) *fakeCluster {
	c := &fakeCluster{user: "lb", pass: "pw", calls: map[string]int{}}
	for i := range n {
		name := "rabbit@node" + strconv.Itoa(i+1)
		fn := fakeNode{name: name, running: true, amqp: 5672 + i, ip: "127.0.0.1"}
		fn.srv = httptest.NewServer(c.handler(name))
		t.Cleanup(fn.srv.Close)
		c.nodes = append(c.nodes, fn)
	}
	return c
}

func (c *fakeCluster) port(i int) int {
	_, p, _ := net.SplitHostPort(c.nodes[i].srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

func (c *fakeCluster) base(i int) string { return c.nodes[i].srv.URL }

func (c *fakeCluster) set(f func(c *fakeCluster)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

func (c *fakeCluster) handler(self string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != c.user || p != c.pass {
			http.Error(w, `{"error":"not_authorised"}`, http.StatusUnauthorized)
			return
		}
		var me *fakeNode
		for i := range c.nodes {
			if c.nodes[i].name == self {
				me = &c.nodes[i]
			}
		}
		if me == nil || me.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		c.calls[self]++
		switch r.URL.Path {
		case "/api/nodes":
			var out []map[string]any
			for _, n := range c.nodes {
				out = append(out, map[string]any{"name": n.name, "running": n.running})
			}
			_ = json.NewEncoder(w).Encode(out)
		case "/api/overview":
			var ls []map[string]any
			for i, n := range c.nodes {
				if !n.running {
					continue // a stopped broker lists no listener
				}
				ls = append(ls,
					map[string]any{"node": n.name, "protocol": "amqp", "ip_address": n.ip, "port": n.amqp},
					map[string]any{"node": n.name, "protocol": "clustering", "ip_address": "::", "port": 25672},
					map[string]any{"node": n.name, "protocol": "http", "ip_address": "::", "port": c.port(i)},
					map[string]any{"node": n.name, "protocol": "http/prometheus", "ip_address": "::", "port": 15692})
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"cluster_name": "c", "node": self, "listeners": ls})
		default:
			http.NotFound(w, r)
		}
	}
}

func TestMembers(t *testing.T) {
	c := newFakeCluster(t, 3)
	c.set(func(c *fakeCluster) { c.nodes[2].ip = "::" }) // a wildcard listener: the node name's host
	cl := NewClient("lb", "pw", time.Second)
	got, err := cl.Members(context.Background(), c.base(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{
		{Node: "rabbit@node1", Host: "127.0.0.1", AMQPPort: 5672, ManagementPort: c.port(0), Running: true},
		{Node: "rabbit@node2", Host: "127.0.0.1", AMQPPort: 5673, ManagementPort: c.port(1), Running: true},
		{Node: "rabbit@node3", Host: "node3", AMQPPort: 5674, ManagementPort: c.port(2), Running: true},
	}
	if len(got) != len(want) {
		t.Fatalf("members %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("member %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if a := got[2].Address(); a != "node3:5674" {
		t.Errorf("address %s", a)
	}

	// A stopped member lists no listener: it keeps the ports seen before, or is left out.
	c.set(func(c *fakeCluster) { c.nodes[1].running = false })
	got, err = cl.Members(context.Background(), c.base(0), map[string]Member{want[1].Node: want[1]})
	if err != nil || len(got) != 3 || got[1].Running || got[1].AMQPPort != 5673 || got[1].ManagementPort != c.port(1) {
		t.Fatalf("with node2 stopped and known: %+v, %v", got, err)
	}
	got, err = cl.Members(context.Background(), c.base(0), nil)
	if err != nil || len(got) != 2 || got[1].Node != "rabbit@node3" {
		t.Fatalf("with node2 stopped and never seen: %+v, %v", got, err)
	}

	// Wrong credentials: an error that names the URL and status, never the password.
	_, err = NewClient("lb", "wrong-secret", time.Second).Members(context.Background(), c.base(0), nil)
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("bad password: %v", err)
	}
}

func TestHostOf(t *testing.T) {
	for _, tt := range []struct{ node, ip, want string }{
		{"rabbit@h1", "10.0.0.5", "10.0.0.5"},
		{"rabbit@h1", "::ffff:10.0.0.5", "10.0.0.5"},
		{"rabbit@h1.example.com", "0.0.0.0", "h1.example.com"},
		{"rabbit@h1", "::", "h1"},
		{"rabbit@h1", "", "h1"},
		{"rabbit", "::", ""},
		{"rabbit@h1", "fd00::1", "fd00::1"},
	} {
		if got := hostOf(tt.node, tt.ip); got != tt.want {
			t.Errorf("hostOf(%q, %q) = %q, want %q", tt.node, tt.ip, got, tt.want)
		}
	}
}

// recorder collects the changes OnRefresh reports, and counts the calls.
type recorder struct {
	mu      sync.Mutex
	changes [][]Member
	calls   int
}

func (r *recorder) add(m []Member, changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if changed {
		r.changes = append(r.changes, m)
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

func (r *recorder) last() []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changes[len(r.changes)-1]
}

func nodesOf(ms []Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Node)
	}
	return strings.Join(out, ",")
}

// A node that leaves the cluster is reported gone; one that joins is reported; a refresh that
// finds nothing new calls nothing; when the seed does not answer, the other members' APIs are
// asked; when none answers, the members stay and the failure is counted.
func TestWatcherRefresh(t *testing.T) {
	c := newFakeCluster(t, 3)
	var rec recorder
	stats := NewStats()
	w, err := New(Options{Backend: "rabbitmq", Seed: c.base(0) + "/", Username: "lb", Password: "pw",
		Interval: time.Hour, Timeout: time.Second, OnRefresh: rec.add, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.count() != 1 || nodesOf(rec.last()) != "rabbit@node1,rabbit@node2,rabbit@node3" {
		t.Fatalf("first refresh: %d changes, %v", rec.count(), rec.changes)
	}
	if err := w.Refresh(ctx); err != nil || rec.count() != 1 {
		t.Fatalf("an unchanged cluster gave a change: %v %d", err, rec.count())
	}
	// A running flag alone changes no server.
	c.set(func(c *fakeCluster) { c.nodes[2].running = false })
	if err := w.Refresh(ctx); err != nil || rec.count() != 1 {
		t.Fatalf("a stopped member gave a change: %v %d", err, rec.count())
	}
	if st := w.Status(); len(st.Members) != 3 || st.Members[2].Running {
		t.Errorf("status after node3 stopped: %+v", st.Members)
	}
	// node3 leaves (reset), then joins again.
	left := c.nodes[2]
	c.set(func(c *fakeCluster) { c.nodes = c.nodes[:2] })
	if err := w.Refresh(ctx); err != nil || rec.count() != 2 || nodesOf(rec.last()) != "rabbit@node1,rabbit@node2" {
		t.Fatalf("after node3 left: %v %v", err, rec.changes)
	}
	left.running = true
	c.set(func(c *fakeCluster) { c.nodes = append(c.nodes, left) })
	if err := w.Refresh(ctx); err != nil || rec.count() != 3 || nodesOf(rec.last()) != "rabbit@node1,rabbit@node2,rabbit@node3" {
		t.Fatalf("after node3 joined: %v %v", err, rec.changes)
	}

	// The seed's API fails: the others are asked, and the one that answered is asked first next.
	c.set(func(c *fakeCluster) { c.nodes[0].down = true })
	if err := w.Refresh(ctx); err != nil {
		t.Fatalf("seed down: %v", err)
	}
	st := w.Status()
	if st.Source != c.base(1) || st.Error != "" {
		t.Errorf("seed down: source %s, error %q; want %s", st.Source, st.Error, c.base(1))
	}
	c.set(func(c *fakeCluster) { c.calls = map[string]int{} })
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	c.set(func(c *fakeCluster) {
		if c.calls["rabbit@node2"] != 2 || c.calls["rabbit@node1"] != 0 {
			t.Errorf("second refresh with the seed down asked %v; want node2 only", c.calls)
		}
	})

	// No API answers: the members stay, the failure is counted and shown.
	c.set(func(c *fakeCluster) {
		for i := range c.nodes {
			c.nodes[i].down = true
		}
	})
	before := rec.count()
	if err := w.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("every API down: %v", err)
	}
	if rec.count() != before || len(w.Members()) != 3 {
		t.Errorf("a failed refresh changed the members: %v", w.Members())
	}
	st = w.Status()
	if st.Error == "" || st.SucceededAt.After(st.RefreshedAt) || !st.RefreshedAt.After(st.SucceededAt) {
		t.Errorf("status after a failure: %+v", st)
	}
	if ok, failed := stats.Refreshes("rabbitmq"); ok != 7 || failed != 1 {
		t.Errorf("refreshes ok %d failed %d, want 7 and 1", ok, failed)
	}
	if rec.calls != 7 {
		t.Errorf("OnRefresh called %d times, want 7 (every successful refresh)", rec.calls)
	}
}

// Start refreshes at once, then every interval (sooner after a failure); Stop ends the
// goroutine, and an unanswered request with it.
func TestWatcherLoop(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first, so run after the servers close
	c := newFakeCluster(t, 2)
	var rec recorder
	w, err := New(Options{Backend: "b", Seed: c.base(0), Username: "lb", Password: "pw",
		Interval: 20 * time.Millisecond, Timeout: time.Second, OnRefresh: rec.add})
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	// Wait for the first change, then for the one the shrink brings; the assertion after Stop
	// says what is missing.
	changes := func(n int) func() error {
		return func() error {
			if got := rec.count(); got < n {
				return fmt.Errorf("%d membership changes, want %d", got, n)
			}
			return nil
		}
	}
	_ = testenv.Poll(5*time.Second, changes(1))
	c.set(func(c *fakeCluster) { c.nodes = c.nodes[:1] })
	_ = testenv.Poll(5*time.Second, changes(2))
	w.Stop()
	if rec.count() < 2 || nodesOf(rec.last()) != "rabbit@node1" {
		t.Fatalf("changes %v", rec.changes)
	}

	// A seed that never answers: Stop does not wait for its timeout.
	hang := make(chan struct{})
	var asked atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)
	w, err = New(Options{Backend: "b", Seed: slow.URL, Interval: time.Hour, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	defer w.Stop() // when the wait below fails; Stop may be called again
	// The first request is under way (the seed holds it); the assertion is Stop's speed.
	testenv.Eventually(t, 5*time.Second, func() error {
		if asked.Load() == 0 {
			return errors.New("the seed has not been asked yet")
		}
		return nil
	})
	t0 := time.Now()
	w.Stop()
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Stop took %v", d)
	}
}

func TestNewRejectsBadSeeds(t *testing.T) {
	for _, s := range []string{"", "rabbit:15672", "ftp://r:15672", "http://"} {
		if _, err := New(Options{Seed: s}); err == nil {
			t.Errorf("New(%q) succeeded", s)
		}
	}
	w, err := New(Options{Seed: "http://u:p@r:15672/prefix/"})
	if err != nil || w.Status().Seed != "http://r:15672/prefix" {
		t.Errorf("seed %+v, %v", w.Status().Seed, err)
	}
}
