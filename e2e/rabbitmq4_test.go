package e2e

// Broker tests against RabbitMQ 4.0 (AMQPLB_TEST_CLUSTER_4: Debian 13's 4.0.5 on Erlang 27, a
// 3-node cluster run from a trixie root by internal/testenv; `make test` boots it next to the
// 3.10 one). A chosen subset of the 3.10 suite, the part where the broker's version could matter:
// publish/confirm/consume through amqplb, round robin as the brokers count it, the AMQP health
// check and the ejection of a frozen (SIGSTOP) node, and AMQP 1.0, which 4.0 serves on the same
// port (only mode "tcp" lets it through).

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

func TestRabbit4PublishConfirmConsumeThroughAMQPLB(t *testing.T) {
	c := testenv.RequireCluster4(t)
	l := startLB(t, setup{servers: nodesAsServers(c)})
	conn := l.dial(t)
	// The broker's Connection.Start, relayed unchanged.
	if p, v := conn.Properties["product"], conn.Properties["version"]; p != "RabbitMQ" || !strings.HasPrefix(fmt.Sprint(v), "4.0.") {
		t.Errorf("server properties product %q version %q, want RabbitMQ 4.0.*", p, v)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// A quorum queue: replicated on the 4.0 cluster's three nodes.
	q := fmt.Sprintf("amqplb-e2e-rabbit4-%d", time.Now().UnixNano())
	if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ch, err := l.dial(t).Channel(); err == nil {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})
	publishConfirmConsume(t, ch, q, testBodies(60, 20, 1<<20))
}

// TestRabbit4RoundRobinLandsEvenly counts with the 4.0 brokers' own Prometheus gauge.
func TestRabbit4RoundRobinLandsEvenly(t *testing.T) {
	roundRobinLandsEvenly(t, testenv.RequireCluster4(t), 5)
}

// TestRabbit4CheckSeesNodesAndEjectsAFrozenOne: the AMQP health check passes on 4.0 nodes (the
// admin API does not show the broker's version, so the version is checked on a client's
// connection above), and a node frozen with SIGSTOP is marked down on timeouts while clients keep
// connecting to the others.
func TestRabbit4CheckSeesNodesAndEjectsAFrozenOne(t *testing.T) {
	c := testenv.RequireCluster4(t)
	l := startLB(t, setup{servers: nodesAsServers(c), check: fastChecks, backend: "retries = 3\nredispatch = true"})
	for _, n := range c.Nodes {
		_, s := l.waitState(t, n.Name, "up", 10*time.Second)
		if s.Check.Status != "ok" {
			t.Errorf("%s: check %+v", n.Name, s.Check)
		}
	}
	victim := c.Nodes[1]
	if err := victim.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.Resume() }) // RequireCluster4's cleanup also resumes it
	_, s := l.waitState(t, victim.Name, "down", 10*time.Second)
	if !strings.Contains(s.Check.Reason, "timeout") {
		t.Errorf("down reason %q does not say timeout", s.Check.Reason)
	}
	for i := range 50 {
		conn, err := amqp.DialConfig(l.url(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			t.Fatalf("connect %d with %s frozen: %v", i, victim.Name, err)
		}
		conn.Close()
	}
	if err := victim.Resume(); err != nil {
		t.Fatal(err)
	}
	l.waitState(t, victim.Name, "up", 10*time.Second)
}

// TestRabbit4AMQP10 sends an AMQP 1.0 client's first bytes (qpid-proton: the SASL header
// "AMQP\x03\x01\x00\x00") through amqplb. Mode "tcp" relays them: the 4.0 broker answers with
// its SASL mechanisms (PLAIN, AMQPLAIN, ANONYMOUS). Mode "amqp" relays a real 1.0 client
// (qpid-proton) and knows who it is, and refuses 1.0 without SASL as RabbitMQ 4 does.
func TestRabbit4AMQP10(t *testing.T) {
	c := testenv.RequireCluster4(t)
	t.Run("tcp", func(t *testing.T) {
		l := startLBMode(t, setup{servers: nodesAsServers(c)}, "tcp")
		conn := saslHeader(t, l.addr)
		defer conn.Close()
		head := make([]byte, 8+4)
		if _, err := io.ReadFull(conn, head); err != nil {
			t.Fatalf("read: %v", err)
		}
		if string(head[:8]) != "AMQP\x03\x01\x00\x00" {
			t.Fatalf("header %q, want the AMQP 1.0 SASL header", head[:8])
		}
		size := int(head[8])<<24 | int(head[9])<<16 | int(head[10])<<8 | int(head[11])
		if size < 8 || size > 4096 {
			t.Fatalf("frame size %d", size)
		}
		mechs := make([]byte, size-4)
		if _, err := io.ReadFull(conn, mechs); err != nil {
			t.Fatalf("read sasl-mechanisms: %v", err)
		}
		for _, m := range []string{"PLAIN", "AMQPLAIN", "ANONYMOUS"} {
			if !bytes.Contains(mechs, []byte(m)) {
				t.Errorf("sasl-mechanisms %q lacks %s", mechs, m)
			}
		}
	})
	t.Run("amqp", func(t *testing.T) {
		// A real AMQP 1.0 client (qpid-proton) through mode "amqp", with a user and vhost of
		// its own: it sends and receives, and amqplb knows who it is.
		const user, password, vhost, queue = "e2e-proton", "pw-proton-S3cret", "e2e-amqp10", "e2e-proton-q"
		addUser(t, c, user, password, vhost)
		declare, err := amqp.Dial(fmt.Sprintf("amqp://%s:%s@%s/%s", user, password, c.Nodes[0].AMQPAddr(), vhost))
		if err != nil {
			t.Fatal(err)
		}
		ch, err := declare.Channel()
		if err == nil {
			_, err = ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
		}
		declare.Close()
		if err != nil {
			t.Fatal(err)
		}
		l := startLB(t, setup{servers: nodesAsServers(c), admin: `token = "adm1n"`})
		host, port, _ := net.SplitHostPort(l.addr)
		out, err := exec.Command(debianPython, "testdata/proton_client.py", host, port, user, password, vhost,
			"e2e-proton-container", "/queues/"+queue).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ok hello over AMQP 1.0") {
			t.Fatalf("qpid-proton through amqplb: %v\n%s", err, out)
		}
		line := waitLog(t, l, 1, "connection_name=e2e-proton-container")
		for _, kv := range []string{"protocol=amqp-1.0", "user=" + user, "vhost=" + vhost, "end=client_closed"} {
			if !strings.Contains(line, kv) {
				t.Errorf("access log line lacks %s: %s", kv, line)
			}
		}
		if strings.Contains(l.log.String(), password) {
			t.Error("amqplb's log shows the password")
		}
	})
	t.Run("amqp-bare-1.0", func(t *testing.T) {
		// A 1.0 client without SASL: refused at the balancer with the SASL header, as RabbitMQ
		// 4 answers it directly (checked here against the node itself).
		direct, err := net.DialTimeout("tcp", c.Nodes[0].AMQPAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer direct.Close()
		_ = direct.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := direct.Write([]byte("AMQP\x00\x01\x00\x00")); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 8)
		if _, err := io.ReadFull(direct, want); err != nil {
			t.Fatalf("RabbitMQ's answer to a bare AMQP 1.0 header: %v", err)
		}
		l := startLB(t, setup{servers: nodesAsServers(c)})
		conn, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("AMQP\x00\x01\x00\x00")); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(conn)
		if !bytes.Equal(got, want) {
			t.Fatalf("amqplb answers a bare AMQP 1.0 header with %q; RabbitMQ 4 with %q", got, want)
		}
	})
}

// saslHeader connects to addr and sends the AMQP 1.0 SASL protocol header.
func saslHeader(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("AMQP\x03\x01\x00\x00")); err != nil {
		t.Fatal(err)
	}
	return conn
}

// startLBMode is startLB with the frontend in mode ("tcp" or "amqp").
func startLBMode(t testing.TB, c setup, mode string) *lb {
	t.Helper()
	bind, adminAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	conf := c.render(bind, adminAddr)
	const frontendBackend = "\nbackend = \"rabbitmq\"\n"
	if !strings.Contains(conf, frontendBackend) {
		t.Fatalf("no frontend backend line to add the mode to:\n%s", conf)
	}
	conf = strings.Replace(conf, frontendBackend, frontendBackend+fmt.Sprintf("mode = %q\n", mode), 1)
	path := filepath.Join(t.TempDir(), "amqplb.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &lb{addr: bind, adminAddr: adminAddr, path: path, log: &testenv.Buffer{}, done: make(chan error, 1)}
	return l.start(t)
}
