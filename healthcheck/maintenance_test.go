package healthcheck

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/testenv"
)

// fakeNode is one node of a fake cluster: an AMQP listener (a healthy fake broker) and a
// management API listener, both on 127.0.0.1 ports of their own that drain closes (as a node
// in maintenance mode suspends its listeners) and revive opens again.
type fakeNode struct {
	t         *testing.T
	c         *fakeCluster
	name      string // Erlang node name
	amqp      string
	mgmt      string
	mu        sync.Mutex
	amqpLn    net.Listener
	mgmtSrv   *http.Server
	mgmtLn    net.Listener
	drained   atomic.Bool
	running   atomic.Bool // as the other nodes list it
	wrongPort atomic.Bool // the AMQP port refuses while the node serves its management API
}

// fakeCluster is what the nodes' management APIs tell of each other.
type fakeCluster struct {
	nodes []*fakeNode
	// old: /api/nodes has no being_drained (RabbitMQ 3.12 and older).
	old atomic.Bool
}

func startFakeCluster(t *testing.T, n int) *fakeCluster {
	c := &fakeCluster{}
	for i := range n {
		nd := &fakeNode{t: t, c: c, name: "rabbit@node" + strconv.Itoa(i+1),
			amqp: testenv.FreeAddr(t), mgmt: testenv.FreeAddr(t)}
		nd.running.Store(true)
		c.nodes = append(c.nodes, nd)
		nd.open()
		t.Cleanup(nd.close)
	}
	return c
}

func (nd *fakeNode) open() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if !nd.wrongPort.Load() {
		ln, err := net.Listen("tcp", nd.amqp)
		if err != nil {
			nd.t.Fatal(err)
		}
		nd.amqpLn = ln
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go healthy()(c)
			}
		}()
	}
	ln, err := net.Listen("tcp", nd.mgmt)
	if err != nil {
		nd.t.Fatal(err)
	}
	nd.mgmtLn = ln
	nd.mgmtSrv = &http.Server{Handler: http.HandlerFunc(nd.serveHTTP)}
	go nd.mgmtSrv.Serve(ln)
}

func (nd *fakeNode) close() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.amqpLn != nil {
		nd.amqpLn.Close()
		nd.amqpLn = nil
	}
	if nd.mgmtSrv != nil {
		nd.mgmtLn.Close() // Serve may not have taken it yet
		nd.mgmtSrv.Close()
		nd.mgmtSrv, nd.mgmtLn = nil, nil
	}
}

// drain puts the node in maintenance mode: both listeners refuse, the others list it drained.
func (nd *fakeNode) drain() {
	nd.drained.Store(true)
	nd.close()
}

// revive ends it.
func (nd *fakeNode) revive() {
	nd.drained.Store(false)
	nd.open()
}

func (nd *fakeNode) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != "guest" || p != "guest" {
		http.Error(w, `{"error":"not_authorized"}`, http.StatusUnauthorized)
		return
	}
	var v any
	switch r.URL.Path {
	case "/api/overview":
		var listeners []map[string]any
		for _, o := range nd.c.nodes {
			_, port, _ := net.SplitHostPort(o.amqp)
			p, _ := strconv.Atoi(port)
			listeners = append(listeners, map[string]any{"node": o.name, "protocol": "amqp", "ip_address": "127.0.0.1", "port": p})
		}
		v = map[string]any{"node": nd.name, "listeners": listeners}
	case "/api/nodes":
		var nodes []map[string]any
		for _, o := range nd.c.nodes {
			rec := map[string]any{"name": o.name, "running": o.running.Load()}
			if !nd.c.old.Load() {
				rec["being_drained"] = o.drained.Load()
			}
			nodes = append(nodes, rec)
		}
		v = nodes
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// maintMonitor starts a monitor of the cluster's nodes, each with its management port as its
// own (ServerPorts) and the backend's Port pointing nowhere.
func maintMonitor(t *testing.T, c *fakeCluster, logs *logRecorder) (*Monitor, []*backend.Server) {
	var servers []*backend.Server
	ports := map[*backend.Server]int{}
	for i, nd := range c.nodes {
		s := newServer("rmq"+strconv.Itoa(i+1), nd.amqp)
		_, port, _ := net.SplitHostPort(nd.mgmt)
		ports[s], _ = strconv.Atoi(port)
		servers = append(servers, s)
	}
	_, nowhere, _ := net.SplitHostPort(testenv.FreeAddr(t))
	np, _ := strconv.Atoi(nowhere)
	m := startMonitor(t, MonitorOptions{
		Servers: servers, Checker: &AMQPChecker{},
		Policy:  Policy{RiseFall: RiseFall{Rise: 2, Fall: 2}, Interval: 20 * time.Millisecond, FastInterval: 10 * time.Millisecond, DownInterval: 20 * time.Millisecond},
		Timeout: time.Second, Management: &ManagementOptions{Port: np, ServerPorts: ports},
		Logger: slog.New(logs),
	})
	return m, servers
}

// allUp holds once every server is up after a passed check of its own.
func allUp(m *Monitor, servers []*backend.Server) func() error {
	return holds("every server up", func() bool {
		for _, s := range servers {
			if c := m.Status(s).Last; c == nil || !c.OK || s.State() != backend.StateUp {
				return false
			}
		}
		return true
	})
}

func TestMonitorSeesMaintenance(t *testing.T) {
	for _, old := range []bool{false, true} {
		name := "being_drained"
		if old {
			name = "3.10: running and refusing"
		}
		t.Run(name, func(t *testing.T) {
			c := startFakeCluster(t, 3)
			c.old.Store(old)
			logs := &logRecorder{}
			m, servers := maintMonitor(t, c, logs)
			s2 := servers[1]
			testenv.Eventually(t, 3*time.Second, allUp(m, servers))
			downs := s2.Transitions(backend.StateDown) // holding it until its first check is one

			c.nodes[1].drain()
			testenv.Eventually(t, 3*time.Second, holds("rmq2 drain", func() bool { return s2.State() == backend.StateDrain }))
			last := m.Status(s2).Last
			if last.OK || last.Kind != KindMaintenance || last.Reason != MaintenanceReason {
				t.Errorf("last check %+v", last)
			}
			if !s2.Maintenance() || !s2.Healthy() || s2.Admin() != backend.AdminReady {
				t.Errorf("maintenance %v healthy %v admin %v; want true true ready", s2.Maintenance(), s2.Healthy(), s2.Admin())
			}
			// The operator's ready does not end the broker's maintenance; more checks keep it.
			s2.SetAdmin(backend.AdminReady)
			checks := m.Status(s2).Durations.Count
			testenv.Eventually(t, 3*time.Second, holds("more checks", func() bool { return m.Status(s2).Durations.Count >= checks+3 }))
			if s2.State() != backend.StateDrain {
				t.Errorf("state %v after more checks, want drain", s2.State())
			}
			for k, n := range m.Status(s2).Failures {
				if n != 0 {
					t.Errorf("%d failures of kind %s counted: maintenance is no failure", n, k)
				}
			}
			if n := s2.Transitions(backend.StateDown) - downs; n != 0 {
				t.Errorf("%d transitions to down", n)
			}

			c.nodes[1].revive()
			// Maintenance ends before it is logged.
			testenv.Eventually(t, 3*time.Second, holds("rmq2 up after revive, logged", func() bool {
				if s2.State() != backend.StateUp {
					return false
				}
				for _, l := range logs.forServer("rmq2") {
					if l.msg == "server out of maintenance" {
						return true
					}
				}
				return false
			}))
			if s2.Maintenance() {
				t.Error("still in maintenance")
			}
			var msgs []string
			for _, l := range logs.forServer("rmq2") {
				if l.level > slog.LevelInfo {
					t.Errorf("%v line %q %v", l.level, l.msg, l.attrs)
				}
				if l.level == slog.LevelInfo && l.msg != "server up" {
					msgs = append(msgs, l.msg)
				}
			}
			if len(msgs) != 2 || msgs[0] != "server in maintenance" || msgs[1] != "server out of maintenance" {
				t.Errorf("log lines %q", msgs)
			}
			for _, l := range logs.forServer("rmq2") {
				if l.msg == "server in maintenance" && (l.attrs["node"] != "rabbit@node2" || l.attrs["to"] != "drain" || l.attrs["seen"] == "") {
					t.Errorf("log %v", l.attrs)
				}
			}
		})
	}
}

func TestMonitorMaintenanceIsNotEveryFailure(t *testing.T) {
	t.Run("stopped node", func(t *testing.T) {
		c := startFakeCluster(t, 3)
		c.old.Store(true)
		logs := &logRecorder{}
		m, servers := maintMonitor(t, c, logs)
		testenv.Eventually(t, 3*time.Second, allUp(m, servers))
		c.nodes[1].running.Store(false)
		c.nodes[1].close()
		testenv.Eventually(t, 3*time.Second, holds("rmq2 down", func() bool { return servers[1].State() == backend.StateDown }))
		if last := m.Status(servers[1]).Last; last.Kind != FailRefused || servers[1].Maintenance() {
			t.Errorf("last check %+v, maintenance %v", last, servers[1].Maintenance())
		}
	})
	t.Run("3.10: wrong AMQP port, management answers", func(t *testing.T) {
		c := startFakeCluster(t, 3)
		c.old.Store(true)
		c.nodes[1].wrongPort.Store(true)
		c.nodes[1].close()
		c.nodes[1].open()
		logs := &logRecorder{}
		m, servers := maintMonitor(t, c, logs)
		testenv.Eventually(t, 3*time.Second, holds("rmq2 down", func() bool {
			return servers[1].State() == backend.StateDown && servers[0].State() == backend.StateUp
		}))
		if last := m.Status(servers[1]).Last; last.Kind != FailRefused || servers[1].Maintenance() {
			t.Errorf("last check %+v, maintenance %v", last, servers[1].Maintenance())
		}
	})
	t.Run("4.0: not being drained", func(t *testing.T) {
		c := startFakeCluster(t, 3)
		logs := &logRecorder{}
		m, servers := maintMonitor(t, c, logs)
		testenv.Eventually(t, 3*time.Second, allUp(m, servers))
		c.nodes[2].close() // refuses, but being_drained says false
		testenv.Eventually(t, 3*time.Second, holds("rmq3 down", func() bool { return servers[2].State() == backend.StateDown }))
		if last := m.Status(servers[2]).Last; last.Kind != FailRefused {
			t.Errorf("last check %+v", last)
		}
	})
}

// TestMonitorMaintenanceFromTheStart starts the monitor while a node is drained: its name was
// never read from its own API, so the AMQP listener the others list on its port names it.
func TestMonitorMaintenanceFromTheStart(t *testing.T) {
	c := startFakeCluster(t, 3)
	c.nodes[2].drain()
	logs := &logRecorder{}
	m, servers := maintMonitor(t, c, logs)
	testenv.Eventually(t, 3*time.Second, holds("rmq3 drain, the others up", func() bool {
		return servers[2].State() == backend.StateDrain && servers[0].State() == backend.StateUp && servers[1].State() == backend.StateUp
	}))
	if last := m.Status(servers[2]).Last; last.Kind != KindMaintenance {
		t.Errorf("last check %+v", last)
	}
	c.nodes[2].revive()
	testenv.Eventually(t, 3*time.Second, allUp(m, servers))
	for _, l := range logs.forServer("rmq3") {
		if l.level > slog.LevelInfo {
			t.Errorf("%v line %q %v", l.level, l.msg, l.attrs)
		}
	}
}

// TestMonitorEndsMaintenanceWithoutManagement: a reload that drops the management API (or
// turns checks off) must not leave a server drained with nothing to end it.
func TestMonitorEndsMaintenanceWithoutManagement(t *testing.T) {
	b := testenv.StartFakeBroker(t, healthy())
	checked := newServer("checked", b.Addr())
	dead := newServer("dead", testenv.FreeAddr(t))
	unchecked := newServer("unchecked", b.Addr())
	for _, s := range []*backend.Server{checked, dead, unchecked} {
		s.SetMaintenance(true)
	}
	startMonitor(t, MonitorOptions{Servers: []*backend.Server{checked, dead}, Checker: &AMQPChecker{},
		Policy: Policy{Interval: 20 * time.Millisecond}, Logger: slog.New(&logRecorder{})})
	startMonitor(t, MonitorOptions{Servers: []*backend.Server{unchecked}, Logger: slog.New(&logRecorder{})})
	testenv.Eventually(t, 3*time.Second, holds("maintenance ended", func() bool {
		return checked.State() == backend.StateUp && dead.State() == backend.StateDown && unchecked.State() == backend.StateUp
	}))
}
