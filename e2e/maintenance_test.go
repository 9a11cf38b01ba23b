package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// maintenanceChecks are fastChecks with the management API: the nodes share 127.0.0.1, so each
// server gets its own management_port (the backend's port is the first node's).
const maintenanceChecks = fastChecks + "\nmanagement = { port = %d }"

// startLBWithManagementPorts runs amqplb in front of c's nodes, each server with its node's
// management port.
func startLBWithManagementPorts(t *testing.T, c *testenv.Cluster, s setup) *lb {
	t.Helper()
	bind, adminAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	text := s.render(bind, adminAddr)
	for _, n := range c.Nodes {
		addr := fmt.Sprintf("address = %q\n", n.AMQPAddr())
		if !strings.Contains(text, addr) {
			t.Fatalf("no server at %s in\n%s", n.AMQPAddr(), text)
		}
		text = strings.Replace(text, addr, addr+fmt.Sprintf("management_port = %d\n", n.ManagementPort), 1)
	}
	path := filepath.Join(t.TempDir(), "amqplb.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &lb{addr: bind, adminAddr: adminAddr, path: path, log: &testenv.Buffer{}, done: make(chan error, 1)}
	return l.start(t)
}

// TestMaintenanceDrainsTheNode runs `rabbitmq-upgrade drain` on node 2 while 50 sessions are
// open through amqplb: the node's sessions get the broker's Close (320 CONNECTION_FORCED)
// unchanged, amqplb shows the node as drain (not down) within one check interval, with the
// maintenance reason, 200 sequential connects meanwhile all succeed on the other nodes, and
// `rabbitmq-upgrade revive` brings the node back.
func TestMaintenanceDrainsTheNode(t *testing.T) {
	t.Run("3.10", func(t *testing.T) { testMaintenance(t, testenv.RequireCluster(t)) })
	t.Run("4.0", func(t *testing.T) { testMaintenance(t, testenv.RequireCluster4(t)) })
}

func testMaintenance(t *testing.T, c *testenv.Cluster) {
	const interval, timeout = time.Second, 500 * time.Millisecond
	victim := c.Nodes[1]
	if c.Version() == testenv.RabbitMQ40 {
		nameCluster(t, c)
	}
	l := startLBWithManagementPorts(t, c, setup{servers: nodesAsServers(c),
		check:   fmt.Sprintf(maintenanceChecks, c.Nodes[0].ManagementPort),
		backend: "retries = 3\nredispatch = true"})
	for _, n := range c.Nodes {
		l.waitState(t, n.Name, "up", 10*time.Second)
	}

	// 50 sessions, spread over the nodes by roundrobin.
	type session struct {
		conn   *amqp.Connection
		closed chan *amqp.Error
	}
	var sessions []session
	for range 50 {
		conn := l.dial(t)
		sessions = append(sessions, session{conn, conn.NotifyClose(make(chan *amqp.Error, 1))})
	}
	before := l.servers(t)[victim.Name]
	onVictim := before.ActiveConnections
	if onVictim == 0 {
		t.Fatalf("no session on %s: %+v", victim.Name, before)
	}

	t.Cleanup(func() {
		// Put the node back even when the test failed half-way (revive of a node that is not
		// drained does nothing).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := victim.Revive(ctx); err != nil {
			t.Errorf("revive %s: %v", victim.Name, err)
		}
	})
	downs := metric(t, l.scrape(t), "amqplb_server_transitions_total", map[string]string{"backend": "rabbitmq", "server": victim.Name, "to": "down"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	if err := victim.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	drained := time.Since(began)
	// Within one check interval of the drain (plus the check's own timeout, the question to the
	// other nodes included, and the admin API's polling).
	took, s := l.waitState(t, victim.Name, "drain", interval+timeout+250*time.Millisecond)
	t.Logf("rabbitmq-upgrade drain took %v; %s drain in amqplb %v after it returned", drained.Round(time.Millisecond), victim.Name, took.Round(time.Millisecond))
	if s.Check.Reason != "node in maintenance (rabbitmq-upgrade drain)" || s.Check.Status != "fail" {
		t.Errorf("check %+v", s.Check)
	}

	// The victim's sessions got the broker's Close, unchanged; the others are still open.
	testenv.Eventually(t, 10*time.Second, func() error {
		var closed int64
		for _, se := range sessions {
			if se.conn.IsClosed() {
				closed++
			}
		}
		if closed != onVictim {
			return fmt.Errorf("%d sessions closed, want the %d on %s", closed, onVictim, victim.Name)
		}
		return nil
	})
	for i, se := range sessions {
		if !se.conn.IsClosed() {
			continue
		}
		if e := <-se.closed; e == nil || e.Code != amqp.ConnectionForced || !e.Server || !strings.Contains(e.Reason, "maintenance") {
			t.Errorf("session %d closed with %+v, want 320 CONNECTION_FORCED from the broker", i, e)
		}
	}

	// 200 sequential connects during the drain: all succeed, none on (or even tried on) node 2.
	mid := l.maintServer(t, victim.Name)
	for i := range 200 {
		if err := connectOnce(l.url()); err != nil {
			t.Fatalf("connect %d during the drain: %v", i, err)
		}
	}
	after := l.maintServer(t, victim.Name)
	if after.State != "drain" || after.TotalConnections != mid.TotalConnections || after.ConnectErrors != mid.ConnectErrors {
		t.Errorf("%s during the drain: state %s, sessions %d → %d, connect errors %d → %d; want drain and no change",
			victim.Name, after.State, mid.TotalConnections, after.TotalConnections, mid.ConnectErrors, after.ConnectErrors)
	}
	if !after.Maintenance || !after.Healthy || after.Admin != "ready" {
		t.Errorf("%s: maintenance %v healthy %v admin %q; want true true ready", victim.Name, after.Maintenance, after.Healthy, after.Admin)
	}
	fams := l.scrape(t)
	if v := metric(t, fams, "amqplb_server_state", map[string]string{"backend": "rabbitmq", "server": victim.Name, "state": "drain"}); v != 1 {
		t.Errorf("amqplb_server_state{state=drain} = %v, want 1", v)
	}
	if v := metric(t, fams, "amqplb_server_transitions_total", map[string]string{"backend": "rabbitmq", "server": victim.Name, "to": "down"}); v != downs {
		t.Errorf("amqplb_server_transitions_total{to=down} went from %v to %v during the drain", downs, v)
	}
	for _, kind := range []string{"refused", "reset", "other"} {
		if v := metric(t, fams, "amqplb_health_check_failures_total", map[string]string{"backend": "rabbitmq", "server": victim.Name, "reason": kind}); v != 0 {
			t.Errorf("amqplb_health_check_failures_total{reason=%s} = %v, want 0: maintenance is no failure", kind, v)
		}
	}

	// revive: back in rotation at its next check.
	began = time.Now()
	if err := victim.Revive(ctx); err != nil {
		t.Fatal(err)
	}
	revived := time.Since(began)
	took, _ = l.waitState(t, victim.Name, "up", interval+timeout+250*time.Millisecond)
	t.Logf("rabbitmq-upgrade revive took %v; %s up in amqplb %v after it returned", revived.Round(time.Millisecond), victim.Name, took.Round(time.Millisecond))
	final := l.maintServer(t, victim.Name)
	if final.Maintenance {
		t.Errorf("%s still in maintenance: %+v", victim.Name, final)
	}
	if err := connectOnce(l.url()); err != nil {
		t.Errorf("connect after the revive: %v", err)
	}
	for _, line := range strings.Split(l.log.String(), "\n") {
		if strings.Contains(line, "server="+victim.Name) && strings.Contains(line, "level=WARN") {
			t.Errorf("warning about %s: %s", victim.Name, line)
		}
	}
	for _, want := range []string{"msg=\"server in maintenance\"", "msg=\"server out of maintenance\""} {
		if !strings.Contains(l.log.String(), want) {
			t.Errorf("no %s line in the log", want)
		}
	}
}

// nameCluster gives a 4.0 cluster a name until t ends. Without one, RabbitMQ 4.0 puts its
// default, derived from the host's name, in every Connection.Start; the host's name is not in
// the test root's /etc/hosts, so every connection asks DNS, and some of those lookups hang for
// seconds (the broker sends no Start meanwhile), which a test of many connects runs into.
func nameCluster(t *testing.T, c *testenv.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Nodes[0].Rabbitmqctl(ctx, "set_cluster_name", "amqplb-e2e"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.Nodes[0].Rabbitmqctl(ctx, "clear_global_parameter", "cluster_name"); err != nil {
			t.Errorf("clearing the cluster name: %v", err)
		}
	})
}

// connectOnce opens one AMQP connection and closes it.
func connectOnce(url string) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return err
	}
	return nil
}

// maintServer is a server of GET /api/v1/backends with the fields this test reads beyond
// apiServer's.
type maintServer struct {
	Name             string `json:"name"`
	State            string `json:"state"`
	TotalConnections uint64 `json:"total_connections"`
	ConnectErrors    uint64 `json:"connect_errors"`
	Healthy          bool   `json:"healthy"`
	Admin            string `json:"admin"`
	Maintenance      bool   `json:"maintenance"`
}

// maintServer reads server name of the backend "rabbitmq" from the admin API.
func (l *lb) maintServer(t testing.TB, name string) maintServer {
	t.Helper()
	resp, err := http.Get("http://" + l.adminAddr + "/api/v1/backends/rabbitmq/servers/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s maintServer
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || s.Name != name {
		t.Fatalf("GET server %s: %v (%+v)", name, err, s)
	}
	return s
}
