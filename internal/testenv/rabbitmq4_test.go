package testenv_test

// Tests of the RabbitMQ 4.0 cluster (AMQPLB_TEST_CLUSTER_4; `make test` boots it). Facts checked
// on the development machine (Debian 12 host, Debian 13 root, rabbitmq-server 4.0.5, Erlang 27):
//   - a cold root build (debootstrap --variant=minbase --include=rabbitmq-server trixie) takes
//     40 s to 1.5 min and 240 MB; a 4.0 node then boots in about 4 s, a 3-node cluster in about
//     22 s (booting and joining one node after the other, as for 3.10);
//   - the root's rabbitmq user is not the host's (uid 101 there, 104 here): node files belong
//     to the root's;
//   - each cluster has its own Erlang cookie (DIR/home, mounted at the same path inside the root),
//     so neither the root's own cookie (/var/lib/rabbitmq) nor a 3.10 cluster's CLI reaches it;
//   - the 4.0 listener also speaks AMQP 1.0: to "AMQP\x03\x01\x00\x00" it answers with the same
//     header and SASL mechanisms PLAIN, AMQPLAIN and ANONYMOUS (after SASL a client sends
//     "AMQP\x00\x01\x00\x00"; a queue's 1.0 address is /queues/NAME).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

func TestRabbit4ClusterFormed(t *testing.T) {
	c := testenv.RequireCluster4(t)
	if len(c.Nodes) != 3 {
		t.Fatalf("cluster has %d nodes, want 3", len(c.Nodes))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The 4.0 CLI, run in the root with the cluster's cookie.
	out, err := c.Nodes[0].Rabbitmqctl(ctx, "cluster_status", "--formatter", "json")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		RunningNodes []string `json:"running_nodes"`
		Versions     map[string]struct {
			RabbitMQVersion string `json:"rabbitmq_version"`
			ErlangVersion   string `json:"erlang_version"`
		} `json:"versions"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatalf("cluster_status: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		if !slices.Contains(status.RunningNodes, n.NodeName) {
			t.Errorf("%s not among running nodes %v", n.NodeName, status.RunningNodes)
		}
		if v := status.Versions[n.NodeName]; !strings.HasPrefix(v.RabbitMQVersion, "4.0.") || !strings.HasPrefix(v.ErlangVersion, "27.") {
			t.Errorf("%s runs RabbitMQ %q on Erlang %q, want 4.0.* on 27.*", n.NodeName, v.RabbitMQVersion, v.ErlangVersion)
		}
	}
}

// TestRabbit4NodesServe opens an AMQP 0-9-1 connection to each node: the broker says it is 4.0,
// a quorum queue works (a 4.0 cluster), and the node's Prometheus count follows the connection.
func TestRabbit4NodesServe(t *testing.T) {
	c := testenv.RequireCluster4(t)
	for _, n := range c.Nodes {
		waitConnections(t, n, 0)
		conn, err := amqp.Dial(n.URL())
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if v, _ := conn.Properties["version"].(string); !strings.HasPrefix(v, "4.0.") {
			t.Errorf("%s: server property version = %q, want 4.0.*", n.Name, v)
		}
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		q := "amqplb-testenv-quorum-" + n.Name
		if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			t.Fatalf("%s: declare a quorum queue: %v", n.Name, err)
		}
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Fatal(err)
		}
		waitConnections(t, n, 1)
		conn.Close()
		waitConnections(t, n, 0)
	}
}

func waitConnections(t *testing.T, n *testenv.Node, want int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		got, err := n.ConnectionCount(context.Background())
		if err == nil && got != want {
			return fmt.Errorf("%s: ConnectionCount = %d, want %d", n.Name, got, want)
		}
		return err
	})
}

// TestRabbit4FailureInjections runs the failure injections the broker tests use on a 4.0 node:
// pause and resume, stop_app and start_app, kill and start (it rejoins its cluster).
func TestRabbit4FailureInjections(t *testing.T) {
	c := testenv.RequireCluster4(t)
	n := c.Nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := n.Pause(); err != nil {
		t.Fatal(err)
	}
	if !n.Paused() {
		t.Error("Paused() = false after Pause")
	}
	conn, err := amqp.DialConfig(n.URL(), amqp.Config{Dial: amqp.DefaultDial(time.Second)})
	if err == nil {
		conn.Close()
		t.Fatal("AMQP dial to a paused node succeeded")
	}
	if err := n.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitReady(ctx); err != nil {
		t.Fatalf("after Resume: %v", err)
	}

	if err := n.StopApp(ctx); err != nil {
		t.Fatal(err)
	}
	if !n.Running() {
		t.Error("Running() = false after StopApp")
	}
	if conn, err := amqp.Dial(n.URL()); err == nil {
		conn.Close()
		t.Fatal("AMQP dial succeeded after stop_app")
	}
	if err := n.StartApp(ctx); err != nil {
		t.Fatal(err)
	}

	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if n.Running() {
		t.Error("Running() = true after Kill")
	}
	start := time.Now()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %v", time.Since(start).Round(100*time.Millisecond))
	out, err := c.Nodes[0].Rabbitmqctl(ctx, "cluster_status", "--formatter", "json")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		RunningNodes []string `json:"running_nodes"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(status.RunningNodes, n.NodeName) {
		t.Errorf("%s not running in the cluster after Start: %v", n.NodeName, status.RunningNodes)
	}
}

// TestRabbit4OffersAMQP10 checks what a 4.0 listener answers to an AMQP 1.0 client (qpid-proton
// sends the SASL header first).
func TestRabbit4OffersAMQP10(t *testing.T) {
	c := testenv.RequireCluster4(t)
	mechs := amqp10SASLMechanisms(t, c.Nodes[0].AMQPAddr())
	for _, m := range []string{"PLAIN", "AMQPLAIN", "ANONYMOUS"} {
		if !bytes.Contains(mechs, []byte(m)) {
			t.Errorf("sasl-mechanisms %q lacks %s", mechs, m)
		}
	}
}

// amqp10SASLMechanisms sends the AMQP 1.0 SASL protocol header to addr and returns the frame
// that follows the broker's header (sasl-mechanisms).
func amqp10SASLMechanisms(t *testing.T, addr string) []byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("AMQP\x03\x01\x00\x00")); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 8+4)
	if _, err := io.ReadFull(conn, head); err != nil {
		t.Fatalf("read the header: %v", err)
	}
	if string(head[:8]) != "AMQP\x03\x01\x00\x00" {
		t.Fatalf("header %q, want the AMQP 1.0 SASL header", head[:8])
	}
	size := int(head[8])<<24 | int(head[9])<<16 | int(head[10])<<8 | int(head[11])
	if size < 8 || size > 4096 {
		t.Fatalf("frame size %d", size)
	}
	frame := make([]byte, size-4)
	if _, err := io.ReadFull(conn, frame); err != nil {
		t.Fatalf("read sasl-mechanisms: %v", err)
	}
	return frame
}

// TestRabbit4NodeBootsAndStops boots a node of its own from the 4.0 cluster's root and stops it:
// what `rabbitcluster up -rabbitmq 4.0` and `down` do, down to the mount point in the root.
func TestRabbit4NodeBootsAndStops(t *testing.T) {
	c4 := testenv.RequireCluster4(t)
	root := c4.Nodes[0].Root
	if !testenv.RootReady(root) {
		t.Fatalf("the cluster's root %s is not marked complete", root)
	}
	dir, err := os.MkdirTemp("", "amqplb-rabbit4-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the node's user must reach it
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := testenv.StartCluster(ctx, testenv.ClusterOptions{
		Dir: filepath.Join(dir, "c"), Nodes: 1, RabbitMQ: testenv.RabbitMQ40, Root: root,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	t.Logf("a 4.0 node booted in %v", time.Since(start).Round(100*time.Millisecond))
	n := c.Nodes[0]
	if n.Version != testenv.RabbitMQ40 || n.Root != root {
		t.Errorf("node version %q root %q", n.Version, n.Root)
	}
	conn, err := amqp.Dial(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	mountPoint := filepath.Join(root, c.Dir)
	if _, err := os.Stat(mountPoint); err != nil {
		t.Errorf("no mount point in the root while the node runs: %v", err)
	}
	if m := hostMountsUnder(t, root); len(m) > 0 {
		t.Errorf("the node's mounts show on the host: %v", m)
	}

	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if c.Running() {
		t.Error("Running() after Stop")
	}
	if _, err := os.Stat(mountPoint); !os.IsNotExist(err) {
		t.Errorf("mount point %s left in the root: %v", mountPoint, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}

// hostMountsUnder lists this process's mount points below dir.
func hostMountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}
