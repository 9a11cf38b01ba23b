package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/discovery"
	"github.com/amqplb/amqplb/internal/testenv"
)

// discoveryJSON is a backend's "discovery" in GET /api/v1/backends.
type discoveryJSON struct {
	Management string `json:"management"`
	OK         bool   `json:"ok"`
	Error      string `json:"error"`
	Refreshes  uint64 `json:"refreshes"`
	Nodes      []struct {
		Name           string `json:"name"`
		Address        string `json:"address"`
		ManagementPort int    `json:"management_port"`
		Running        bool   `json:"running"`
	} `json:"nodes"`
}

// discovery reads the backend "rabbitmq"'s discovery from the admin API.
func (l *lb) discovery(t testing.TB) discoveryJSON {
	t.Helper()
	resp, err := http.Get("http://" + l.adminAddr + "/api/v1/backends/rabbitmq")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct {
		Discovery *discoveryJSON `json:"discovery"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || b.Discovery == nil {
		t.Fatalf("GET /api/v1/backends/rabbitmq: %v, discovery %v", err, b.Discovery)
	}
	return *b.Discovery
}

// waitServerNames waits until the backend's servers are want, in order.
func (l *lb) waitServerNames(t testing.TB, within time.Duration, want ...string) {
	t.Helper()
	testenv.Eventually(t, within, func() error {
		var got []string
		for _, s := range l.backendList(t) {
			got = append(got, s.Name)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("servers %v, want %v", got, want)
		}
		return nil
	})
}

// backendList reads the backend "rabbitmq"'s servers, in order.
func (l *lb) backendList(t testing.TB) []apiServer {
	t.Helper()
	resp, err := http.Get("http://" + l.adminAddr + "/api/v1/backends/rabbitmq")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct {
		Servers []apiServer `json:"servers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Servers
}

// TestDiscoveryFollowsANodeLeavingAndRejoining runs amqplb with [backend.discovery] and no
// written server in front of the real cluster: it serves the three nodes (named and addressed
// as the management API lists them); node 3 stopping stays a server, down; node 3 leaving the
// cluster (stop_app, reset) is no server any more while connects go on to the others; node 3
// joining again (join_cluster, start_app) is a server again and gets connections, all without
// a reload. The management API is read as a user of its own, whose password (from password_env)
// shows nowhere. The node is put back even when the test fails, and the cluster must report three
// running nodes again.
func TestDiscoveryFollowsANodeLeavingAndRejoining(t *testing.T) {
	c := testenv.RequireCluster(t)
	first, victim := c.Nodes[0], c.Nodes[2]
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := victim.Join(ctx, first); err != nil {
			t.Errorf("putting %s back: %v", victim.Name, err)
			return
		}
		if err := testenv.Poll(time.Minute, func() error {
			m, err := first.Members(ctx)
			if err != nil {
				return err
			}
			running := 0
			for _, r := range m {
				if r {
					running++
				}
			}
			if running != len(c.Nodes) || len(m) != len(c.Nodes) {
				return fmt.Errorf("the cluster lists %v, want %d running nodes", m, len(c.Nodes))
			}
			return nil
		}); err != nil {
			t.Errorf("after putting %s back: %v", victim.Name, err)
		}
	})

	// A user of its own, with the tag /api/nodes needs, whose password must show nowhere.
	const user, password = "amqplb-discovery", "disc-s3cret-pw"
	addUser(t, c, user, password, user)
	{
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := first.Rabbitmqctl(ctx, "set_user_tags", user, "monitoring")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	check := fastChecks + fmt.Sprintf("\n\n[backend.discovery]\nmanagement = %q\ninterval = \"500ms\"\ntimeout = \"2s\"\n"+
		"user = %q\npassword_env = \"AMQPLB_E2E_DISCOVERY_PASSWORD\"\n", first.ManagementURL(), user)
	bind, adminAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	l := &lb{addr: bind, adminAddr: adminAddr, log: &testenv.Buffer{}, done: make(chan error, 1),
		env: []string{"AMQPLB_E2E_DISCOVERY_PASSWORD=" + password}}
	l.path = filepath.Join(t.TempDir(), "amqplb.toml")
	if err := os.WriteFile(l.path, []byte(setup{check: check}.render(bind, adminAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	l.start(t)

	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.NodeName)
	}
	l.waitServerNames(t, 10*time.Second, names...)
	for i, s := range l.backendList(t) {
		if s.Address != c.Nodes[i].AMQPAddr() {
			t.Errorf("server %s at %s, want %s", s.Name, s.Address, c.Nodes[i].AMQPAddr())
		}
	}
	for _, n := range names {
		l.waitEligible(t, n, 15*time.Second)
	}
	d := l.discovery(t)
	if !d.OK || d.Management != first.ManagementURL() || len(d.Nodes) != 3 || d.Nodes[2].ManagementPort != victim.ManagementPort {
		t.Errorf("discovery %+v", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Stopped, the node is still a member: a server, down.
	if err := victim.StopApp(ctx); err != nil {
		t.Fatal(err)
	}
	l.waitState(t, victim.NodeName, "down", 15*time.Second)
	l.waitServerNames(t, 5*time.Second, names...)

	// Reset, it has left: no server any more; connects go on to the others.
	left := time.Now()
	if _, err := victim.Rabbitmqctl(ctx, "reset"); err != nil {
		t.Fatal(err)
	}
	l.waitServerNames(t, 15*time.Second, names[:2]...)
	t.Logf("%s gone from the backend %v after reset returned", victim.NodeName, time.Since(left).Round(time.Millisecond))
	for i := range 20 {
		if err := connectOnce(l.url()); err != nil {
			t.Fatalf("connect %d with %s gone: %v", i, victim.Name, err)
		}
	}

	// It joins again: a server again, up, and it gets connections (roundrobin over three).
	joined := time.Now()
	if _, err := victim.Rabbitmqctl(ctx, "join_cluster", first.NodeName); err != nil {
		t.Fatal(err)
	}
	if err := victim.StartApp(ctx); err != nil {
		t.Fatal(err)
	}
	l.waitServerNames(t, 15*time.Second, names...)
	l.waitEligible(t, victim.NodeName, 15*time.Second)
	t.Logf("%s serving through amqplb %v after join_cluster", victim.NodeName, time.Since(joined).Round(time.Millisecond))
	before := l.servers(t)[victim.NodeName].TotalConnections
	for i := range 6 {
		if err := connectOnce(l.url()); err != nil {
			t.Fatalf("connect %d after %s rejoined: %v", i, victim.Name, err)
		}
	}
	if after := l.servers(t)[victim.NodeName].TotalConnections; after-before != 2 {
		t.Errorf("%s got %d of 6 roundrobin connections after it rejoined, want 2", victim.NodeName, after-before)
	}

	resp, err := http.Get("http://" + l.adminAddr + "/api/v1/backends")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), password) {
		t.Errorf("the discovery password is in /api/v1/backends: %s", body)
	}
	fams := l.scrape(t)
	if v := metric(t, fams, "amqplb_discovery_refreshes_total", map[string]string{"backend": "rabbitmq", "result": "ok"}); v < 3 {
		t.Errorf("amqplb_discovery_refreshes_total{result=ok} = %v", v)
	}
	if v := metric(t, fams, "amqplb_discovery_nodes", map[string]string{"backend": "rabbitmq"}); v != 3 {
		t.Errorf("amqplb_discovery_nodes = %v, want 3", v)
	}
	if err := l.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(l.log.String(), password) {
		t.Error("the discovery password is in amqplb's log")
	}
	if lines := l.log.String(); !strings.Contains(lines, "discovery: servers changed") || !strings.Contains(lines, `removed="[`+victim.NodeName) {
		t.Errorf("no discovery change logged:\n%s", lines)
	}
}

// TestDiscoveryRefreshesLeaveNothingBehind runs 300 refreshes of a Watcher against the real
// cluster's management API in this process, with a seed that refuses (the first refresh fails
// over to the member it was given, the next ones ask the node that answered), and checks that its fds and goroutines are back at the baseline once
// the Watcher stops.
func TestDiscoveryRefreshesLeaveNothingBehind(t *testing.T) {
	c := testenv.RequireCluster(t)
	dead := testenv.FreeAddr(t) // nothing listens there: the seed refuses
	runtime.GC()
	fdBase, gBase := openFDs(t), runtime.NumGoroutine()
	w, err := discovery.New(discovery.Options{Backend: "rabbitmq", Seed: "http://" + dead, Username: "guest", Password: "guest",
		Interval: time.Hour, Timeout: 2 * time.Second, Initial: []discovery.Member{{Node: c.Nodes[1].NodeName, Host: "127.0.0.1",
			AMQPPort: c.Nodes[1].AMQPPort, ManagementPort: c.Nodes[1].ManagementPort}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := w.Refresh(context.Background()); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
	}
	if got := len(w.Members()); got != len(c.Nodes) {
		t.Errorf("%d members, want %d", got, len(c.Nodes))
	}
	w.Stop()
	if err := testenv.Poll(10*time.Second, func() error {
		runtime.GC()
		if fds, gs := openFDs(t), runtime.NumGoroutine(); fds > fdBase || gs > gBase {
			return fmt.Errorf("after 300 refreshes: fds %d (baseline %d), goroutines %d (baseline %d): %s", fds, fdBase, gs, gBase, describeFDs())
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
