//go:build linux

package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// netns is a network namespace the test made, joined to the host by a veth pair, with a real
// RabbitMQ node of its own inside (startNode): the balancers reach that node over the veth, so
// cutting, dropping or slowing the namespace's link is a network fault on that node alone, as
// on another host. Every address is the namespace's own (10.213.N.0/30) or loopback; everything
// is removed when the test ends.
type netns struct {
	name         string
	hostIf, nsIf string
	hostIP, nsIP string
}

// run runs a command, returning its combined output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetns makes the namespace and the veth pair. It skips t when ip is missing or namespaces
// cannot be made (no root), and fails it instead under AMQPLB_REQUIRE_BROKERS=1 (CI), where a
// network row that did not run must not pass unseen.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		skipUnlessRequired(t, "no ip (iproute2): %v", err)
	}
	k := os.Getpid()%200 + 20
	ns := &netns{
		name:   fmt.Sprintf("amqplb-faults-%d", os.Getpid()),
		hostIf: fmt.Sprintf("fh%d", os.Getpid()),
		nsIf:   fmt.Sprintf("fn%d", os.Getpid()),
		hostIP: fmt.Sprintf("10.213.%d.1", k),
		nsIP:   fmt.Sprintf("10.213.%d.2", k),
	}
	if err := run("ip", "netns", "add", ns.name); err != nil {
		skipUnlessRequired(t, "cannot make a network namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = run("ip", "route", "del", "unreachable", fmt.Sprintf("10.213.%d.0/30", k), "metric", "4000")
		_ = run("ip", "link", "del", ns.hostIf) // gone with the namespace too, unless moved back
		if err := run("ip", "netns", "del", ns.name); err != nil {
			t.Errorf("removing the namespace: %v", err)
		}
	})
	inNS := func(args ...string) error { return run("ip", append([]string{"netns", "exec", ns.name}, args...)...) }
	for _, step := range []func() error{
		func() error { return run("ip", "link", "add", ns.hostIf, "type", "veth", "peer", "name", ns.nsIf) },
		func() error { return run("ip", "link", "set", ns.nsIf, "netns", ns.name) },
		func() error { return run("ip", "addr", "add", ns.hostIP+"/30", "dev", ns.hostIf) },
		func() error { return run("ip", "link", "set", ns.hostIf, "up") },
		func() error { return inNS("ip", "addr", "add", ns.nsIP+"/30", "dev", ns.nsIf) },
		func() error { return inNS("ip", "link", "set", ns.nsIf, "up") },
		func() error { return inNS("ip", "link", "set", "lo", "up") },
		// A backstop: should the veth's own route go, packets to the namespace's addresses stop
		// here instead of taking the default route off the machine.
		func() error {
			return run("ip", "route", "add", "unreachable", fmt.Sprintf("10.213.%d.0/30", k), "metric", "4000")
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// startNode boots a real RabbitMQ 3.10 node (a one-node cluster of its own: its epmd, Erlang
// distribution and rabbitmqctl stay inside the namespace) listening on the namespace's address,
// named name; it is stopped before the namespace goes.
func (ns *netns) startNode(t *testing.T, name string) *testenv.Node {
	t.Helper()
	dir, err := os.MkdirTemp("", "amqplb-faults-netns")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the node runs as user rabbitmq when we are root
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := &testenv.Buffer{}
	c, err := testenv.StartCluster(ctx, testenv.ClusterOptions{Dir: filepath.Join(dir, "cluster"), Nodes: 1, NetNS: ns.name, Host: ns.nsIP, Log: log})
	if err != nil {
		t.Fatalf("a RabbitMQ node in %s: %v\n%s (logs in %s)", ns.name, err, log.String(), dir)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the node in %s: %v (logs in %s)", ns.name, err, dir)
			return
		}
		os.RemoveAll(dir)
	})
	t.Logf("a RabbitMQ node in %s at %s: %s", ns.name, c.Nodes[0].AMQPAddr(), strings.TrimSpace(log.String()))
	n := *c.Nodes[0]
	n.Name = name
	return &n
}

// exec runs a command inside the namespace.
func (ns *netns) exec(args ...string) error {
	return run("ip", append([]string{"netns", "exec", ns.name}, args...)...)
}

// withNode returns c with its node i replaced by n (a node in a namespace), for the balancers'
// servers and the row's victim.
func withNode(c *testenv.Cluster, i int, n *testenv.Node) *testenv.Cluster {
	nodes := slices.Clone(c.Nodes)
	nodes[i] = n
	return &testenv.Cluster{Nodes: nodes}
}

// relay is a delay line in front of a node: it relays every connection to target, holding each
// chunk from the node for the current delay first (netem's stand-in on a kernel without it).
type relay struct {
	addr   string
	target string
	ln     net.Listener
	delay  atomic.Int64 // nanoseconds
	mu     sync.Mutex
	conns  []net.Conn
}

// newRelay listens on a loopback port and relays to target until t ends.
func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: ln.Addr().String(), target: target, ln: ln}
	t.Cleanup(r.close)
	go r.serve()
	return r
}

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			u, err := net.DialTimeout("tcp", r.target, 5*time.Second)
			if err != nil {
				c.Close()
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, u)
			r.mu.Unlock()
			var wg sync.WaitGroup
			wg.Go(func() {
				_, _ = io.Copy(u, c)
				_ = u.(*net.TCPConn).CloseWrite()
			})
			r.copyDelayed(c, u)
			_ = c.(*net.TCPConn).CloseWrite()
			wg.Wait()
			c.Close()
			u.Close()
		}()
	}
}

// copyDelayed copies from src to dst, holding each chunk for the current delay first: a delay
// line for ping-pong traffic such as an AMQP handshake.
func (r *relay) copyDelayed(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(r.delay.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close stops the relay and closes what it holds.
func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// skipUnlessRequired skips t, or fails it when the run requires every broker test to run
// (testenv.EnvRequireBrokers).
func skipUnlessRequired(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(testenv.EnvRequireBrokers) == "1" {
		t.Fatalf(format+" (required: "+testenv.EnvRequireBrokers+"=1)", args...)
	}
	t.Skipf(format, args...)
}
