package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// Issue 6: amqplb runs haproxy.cfg files unchanged, with PROXY protocol, TLS and source ACLs,
// against real RabbitMQ.

// startLBFile runs amqplb -f on a file called name holding content, with its admin API on a
// free address (-admin), until it serves. addr is the AMQP frontend the test will use.
func startLBFile(t testing.TB, name, content, addr string) *lb {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &lb{addr: addr, adminAddr: testenv.FreeAddr(t), path: path, log: &testenv.Buffer{}, done: make(chan error, 1)}
	return l.start(t, "-admin", l.adminAddr)
}

// start runs the binary on l.path with extra flags and waits until it serves.
func (l *lb) start(t testing.TB, flags ...string) *lb {
	t.Helper()
	l.cmd = execBinary(append([]string{"-f", l.path}, flags...)...)
	l.cmd.Stdout, l.cmd.Stderr = l.log, l.log
	if len(l.env) > 0 {
		l.cmd.Env = append(os.Environ(), l.env...)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	t.Cleanup(func() {
		if err := l.stop(10 * time.Second); err != nil {
			t.Errorf("amqplb did not stop cleanly: %v", err)
		}
		if t.Failed() {
			t.Logf("amqplb output:\n%s", l.log.String())
		}
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		if log := l.log.String(); !strings.Contains(log, "amqplb started") {
			select {
			case err := <-l.done:
				t.Fatalf("amqplb exited before serving: %v\n%s", err, l.log.String())
			default:
			}
			return fmt.Errorf("amqplb did not start:\n%s", log)
		}
		return nil
	})
	return l
}

// roundTrip publishes a message on a fresh queue through conn and consumes it back.
func roundTrip(t testing.TB, conn *amqp.Connection) {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := []byte("through amqplb " + t.Name())
	if err := ch.PublishWithContext(ctx, "", q.Name, false, false, amqp.Publishing{Body: body}); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if string(m.Body) != string(body) {
			t.Fatalf("consumed %q, want %q", m.Body, body)
		}
	case <-ctx.Done():
		t.Fatal("the published message did not come back")
	}
}

func dialURL(t testing.TB, url string, cfg *tls.Config) *amqp.Connection {
	t.Helper()
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second), TLSClientConfig: cfg})
	if err != nil {
		t.Fatalf("AMQP connect to %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// corpusFile reads a file of the haproxy.cfg corpus and points it at this test: every bind
// (and legacy listen address) moves to a free loopback port, every server (and server-template)
// address to one of servers in turn, and files named relative to the corpus directory become absolute. It returns the
// rewritten text and the first bind of a proxy that is not an HTTP (stats) one.
func corpusFile(t testing.TB, name string, servers []string) (text string, first corpusBind) {
	t.Helper()
	dir, err := filepath.Abs("../config/haproxycfg/testdata/haproxy")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	// Sections in mode http (stats, exporter, management UI) are not where AMQP clients go.
	httpSection := map[int]bool{}
	section := 0
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) > 0 && isSectionKeyword(f[0]) {
			section = i
		}
		if len(f) == 2 && f[0] == "mode" && f[1] == "http" {
			httpSection[section] = true
		}
	}
	server := 0
	section = 0
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) > 0 && isSectionKeyword(f[0]) {
			section = i
		}
		var a string
		switch {
		case len(f) >= 2 && f[0] == "bind":
			a = testenv.FreeAddr(t)
			line = strings.Replace(line, f[1], a, 1)
		case len(f) >= 3 && f[0] == "listen" && strings.Contains(f[2], ":"):
			a = testenv.FreeAddr(t)
			line = strings.Replace(line, f[2], a, 1)
		case len(f) >= 3 && f[0] == "server":
			line = strings.Replace(line, f[2], servers[server%len(servers)], 1)
			server++
		case len(f) >= 4 && f[0] == "server-template":
			// An IP address: the template's one server, never looked up.
			line = strings.Replace(line, f[3], servers[server%len(servers)], 1)
			server++
		case len(f) >= 3 && f[0] == "stats" && f[1] == "socket" && strings.Contains(f[2], "/"):
			// The runtime socket goes to a directory of the test's own, owned by whoever
			// runs it: no /run/haproxy, no chown.
			line = "    stats socket " + filepath.Join(t.TempDir(), "admin.sock")
			for i := 3; i+1 < len(f); i++ {
				if f[i] == "mode" || f[i] == "level" {
					line += " " + f[i] + " " + f[i+1]
					i++
				}
			}
		}
		if a != "" && first.addr == "" && !httpSection[section] {
			first = corpusBind{addr: a, tls: slices.Contains(f, "ssl"), acceptProxy: slices.Contains(f, "accept-proxy")}
		}
		for _, w := range f {
			if strings.HasPrefix(w, "certs/") {
				line = strings.Replace(line, w, filepath.Join(dir, w), 1)
			}
		}
		lines[i] = line
	}
	if first.addr == "" {
		t.Fatalf("%s has no bind", name)
	}
	return strings.Join(lines, "\n"), first
}

// corpusBind is where a test's AMQP client connects to a corpus file's proxy.
type corpusBind struct {
	addr        string
	tls         bool // the bind terminates TLS
	acceptProxy bool // the bind expects a PROXY header
}

// dial connects an AMQP client: over TLS verified with pool if the bind terminates it, after a
// PROXY v1 header announcing a client in 10.0.0.0/8 if the bind expects one.
func (b corpusBind) dial(t testing.TB, pool *x509.CertPool) *amqp.Connection {
	t.Helper()
	cfg := amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)}
	if b.acceptProxy {
		cfg.Dial = func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, 5*time.Second)
			if err != nil {
				return nil, err
			}
			if _, err := io.WriteString(c, "PROXY TCP4 10.1.2.3 127.0.0.1 40000 5672\r\n"); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	url := "amqp://guest:guest@" + b.addr + "/"
	if b.tls {
		url = "amqps://guest:guest@" + b.addr + "/"
		cfg.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	}
	conn, err := amqp.DialConfig(url, cfg)
	if err != nil {
		t.Fatalf("AMQP connect to %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func isSectionKeyword(s string) bool {
	switch s {
	case "global", "defaults", "listen", "frontend", "backend":
		return true
	}
	return false
}

// TestCorpusFilesServeRealClients runs the files of the haproxy.cfg corpus unchanged but for
// addresses, and publishes and consumes through each (over TLS where the file terminates it).
// Files whose servers speak TLS or expect a PROXY header are served by the tests below, which
// have brokers that do.
func TestCorpusFilesServeRealClients(t *testing.T) {
	c := testenv.RequireCluster(t)
	entries, err := os.ReadDir("../config/haproxycfg/testdata/haproxy")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile("../config/haproxycfg/testdata/haproxy/certs/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	var nodes []string
	for _, n := range c.Nodes {
		nodes = append(nodes, n.AMQPAddr())
	}
	served := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".cfg") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("../config/haproxycfg/testdata/haproxy", name))
		if err != nil {
			t.Fatal(err)
		}
		if needsSpecialBrokers(string(raw)) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			text, bind := corpusFile(t, name, nodes)
			l := startLBFile(t, name, text, bind.addr)
			waitUp(t, l, 1)
			roundTrip(t, bind.dial(t, pool))
		})
		served++
	}
	if served < 10 {
		t.Fatalf("only %d corpus files were served; want at least 10", served)
	}
}

// needsSpecialBrokers reports whether a haproxy.cfg has a server that speaks TLS or sends a
// PROXY header, which the shared cluster does not take.
func needsSpecialBrokers(text string) bool {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "server" || f[0] == "default-server") &&
			(slices.Contains(f, "ssl") || slices.Contains(f, "send-proxy") || slices.Contains(f, "send-proxy-v2")) {
			return true
		}
	}
	return false
}

// waitUp waits until at least n servers of amqplb's backends are up.
func waitUp(t testing.TB, l *lb, n int) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, func() error {
		up := 0
		all := l.backendServers(t)
		for _, b := range all {
			for _, s := range b {
				if s.State == "up" {
					up++
				}
			}
		}
		if up < n {
			return fmt.Errorf("%d servers up, want %d: %+v", up, n, all)
		}
		return nil
	})
}

// proxyNode boots a one-node RabbitMQ with proxy_protocol = true and a TLS listener, for the
// length of the test.
func proxyNode(t *testing.T, certs testenv.TestCerts) *testenv.Node {
	t.Helper()
	testenv.RequireCluster(t) // the shared cluster is up: this is a broker test run
	// Not t.TempDir: the node runs as its own user, who must reach the directory.
	dir, err := os.MkdirTemp("", "amqplb-proxy-node")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pc, err := testenv.StartCluster(ctx, testenv.ClusterOptions{
		Dir: dir, Nodes: 1, ProxyProtocol: true,
		TLS: &testenv.TLSFiles{CACert: certs.CA, Cert: certs.ServerCert, Key: certs.ServerKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pc.Stop(); err != nil {
			t.Errorf("stop the proxy-protocol node: %v", err)
		}
	})
	return pc.Nodes[0]
}

// clientPort is the local port of an AMQP connection, as the broker should see it.
func clientPort(t testing.TB, conn *amqp.Connection) int {
	t.Helper()
	a, ok := conn.LocalAddr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("local address %v", conn.LocalAddr())
	}
	return a.Port
}

// waitPeer waits until node n's management API lists a connection from 127.0.0.1:port and
// returns it.
func waitPeer(t testing.TB, n *testenv.Node, port int) testenv.Connection {
	t.Helper()
	var found testenv.Connection
	testenv.EventuallyEvery(t, 20*time.Second, brokerPoll, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cs, err := n.Connections(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.PeerPort == port && c.PeerHost == "127.0.0.1" {
				found = c
				return nil
			}
		}
		return fmt.Errorf("the broker never listed a connection from 127.0.0.1:%d; it lists %+v", port, cs)
	})
	return found
}

// TestSendProxyShowsTheClientToRabbitMQ: a node with proxy_protocol = true sees, in its
// management API, the address and port of the client behind amqplb, for PROXY v1 and v2 and for
// a TLS connection to the broker; the health checks (which send a PROXY header and speak TLS too)
// keep the servers up.
func TestSendProxyShowsTheClientToRabbitMQ(t *testing.T) {
	certs, err := testenv.WriteTestCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := proxyNode(t, certs)
	v1, v2, tlsAddr, mixed := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	plain := testenv.RequireCluster(t).Nodes[0] // a node without proxy_protocol
	cfg := fmt.Sprintf(`global
    maxconn 1000

defaults
    mode tcp
    timeout connect 5s
    timeout client 3h
    timeout server 3h

listen rabbitmq-v1
    bind %s
    balance roundrobin
    server rmq1 %s check inter 500 rise 1 fall 2 send-proxy

listen rabbitmq-v2
    bind %s
    server rmq1 %s check inter 500 rise 1 fall 2 send-proxy-v2

listen rabbitmq-tls
    bind %s
    server rmq1 127.0.0.1:%d check inter 500 rise 1 fall 2 send-proxy ssl verify required ca-file %s

# send-proxy per server: the PROXY node gets a header, the plain node none.
listen rabbitmq-mixed
    bind %s
    balance roundrobin
    server proxied %s check inter 500 rise 1 fall 2 send-proxy-v2
    server plain %s check inter 500 rise 1 fall 2
`, v1, n.AMQPAddr(), v2, n.AMQPAddr(), tlsAddr, n.TLSPort, certs.CA, mixed, n.AMQPAddr(), plain.AMQPAddr())
	l := startLBFile(t, "haproxy.cfg", cfg, v1)
	waitUp(t, l, 5) // checks go each server's way: both servers of the mixed backend are up
	t.Run("mixed", func(t *testing.T) {
		// Round robin puts one connection on each: a proxy_protocol node refuses a connection
		// without the header, and a plain node one with it, so both working shows each got
		// its own.
		for range 2 {
			roundTrip(t, dialURL(t, "amqp://guest:guest@"+mixed+"/", nil))
		}
	})
	for _, tc := range []struct{ name, addr string }{{"v1", v1}, {"v2", v2}, {"tls", tlsAddr}} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialURL(t, "amqp://guest:guest@"+tc.addr+"/", nil)
			roundTrip(t, conn)
			got := waitPeer(t, n, clientPort(t, conn))
			if got.SSL != (tc.name == "tls") {
				t.Errorf("broker says ssl=%v for the %s frontend", got.SSL, tc.name)
			}
		})
	}

	// The corpus file with send-proxy and send-proxy-v2 backends, unchanged but for addresses.
	t.Run("10-send-proxy.cfg", func(t *testing.T) {
		text, bind := corpusFile(t, "10-send-proxy.cfg", []string{n.AMQPAddr()})
		l := startLBFile(t, "10-send-proxy.cfg", text, bind.addr)
		waitUp(t, l, 4)
		conn := bind.dial(t, nil)
		roundTrip(t, conn)
		waitPeer(t, n, clientPort(t, conn))
	})
}

// TestAcceptProxyChain: clients go through an edge amqplb (one sends PROXY v1, another v2) and
// amqplb B (accept-proxy, send-proxy v1) to a proxy_protocol node, which sees each client's own
// address. B refuses a connection whose PROXY header is malformed, and counts it.
func TestAcceptProxyChain(t *testing.T) {
	certs, err := testenv.WriteTestCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := proxyNode(t, certs)
	bAddr := testenv.FreeAddr(t)
	b := startLBFile(t, "b.cfg", fmt.Sprintf(`frontend from-edge
    bind %s accept-proxy
    mode tcp
    default_backend rmq
backend rmq
    mode tcp
    server rmq1 %s check inter 500 rise 1 send-proxy
`, bAddr, n.AMQPAddr()), bAddr)
	waitUp(t, b, 1)
	for _, v := range []string{"send-proxy", "send-proxy-v2"} {
		edge := testenv.FreeAddr(t)
		a := startLBFile(t, "edge.cfg", fmt.Sprintf(`listen edge
    bind %s
    mode tcp
    server b %s %s
`, edge, bAddr, v), edge)
		waitUp(t, a, 1)
		conn := dialURL(t, "amqp://guest:guest@"+edge+"/", nil)
		roundTrip(t, conn)
		port := clientPort(t, conn)
		waitPeer(t, n, port)
		conn.Close()
		// B's access-log line, written when the session ends, names the client, not the edge.
		waitLog(t, b, 1, "client=127.0.0.1:"+strconv.Itoa(port)+" via=")
	}

	// A malformed header: B closes the connection without a byte and counts it.
	raw, err := net.DialTimeout("tcp", bAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.Write([]byte("PROXY TCP4 not-an-address\r\nAMQP\x00\x00\x09\x01"))
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if k, err := raw.Read(make([]byte, 64)); k != 0 || err == nil {
		t.Errorf("a malformed PROXY header got %d bytes, err %v; want the connection closed", k, err)
	}
	raw.Close()
	testenv.Eventually(t, 5*time.Second, func() error {
		if metric(t, b.scrape(t), "amqplb_frontend_refused_total", map[string]string{"frontend": "from-edge", "reason": "bad_proxy"}) != 1 {
			return errors.New("amqplb_frontend_refused_total{reason=\"bad_proxy\"} did not count the malformed header")
		}
		return nil
	})
}

// TestSyslogGetsTheAccessLog: global log ADDR local0 info sends the access log to a syslog
// server over UDP, and log /PATH local0 to a local syslog socket (what /dev/log is).
func TestSyslogGetsTheAccessLog(t *testing.T) {
	c := testenv.RequireCluster(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	sock := filepath.Join(t.TempDir(), "log")
	local, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	addr := testenv.FreeAddr(t)
	l := startLBFile(t, "haproxy.cfg", fmt.Sprintf(`global
    log %s local0 info
    log %s local1
defaults
    log global
    mode tcp
    option tcplog
listen rabbitmq
    bind %s
    server rmq1 %s check
`, pc.LocalAddr(), sock, addr, c.Nodes[0].AMQPAddr()), addr)
	waitUp(t, l, 1)
	conn := dialURL(t, "amqp://guest:guest@"+addr+"/", nil)
	port := clientPort(t, conn)
	conn.Close()
	want := "client=127.0.0.1:" + strconv.Itoa(port)
	for _, tc := range []struct {
		name string
		pc   net.PacketConn
		pri  string
	}{
		{"udp", pc, "<134>"},     // local0 (16) * 8 + info (6)
		{"unix", local, "<142>"}, // local1 (17) * 8 + info (6)
	} {
		buf := make([]byte, 2048)
		_ = tc.pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			k, _, err := tc.pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: no syslog line with %q arrived: %v", tc.name, want, err)
			}
			line := string(buf[:k])
			if strings.Contains(line, want) {
				if !strings.HasPrefix(line, tc.pri) || !strings.Contains(line, "amqplb[") {
					t.Errorf("%s: syslog line %q: want %s and the amqplb[PID] tag", tc.name, line, tc.pri)
				}
				break
			}
		}
	}
}

// TestTLSTerminationAndReload: amqp091-go DialTLS through amqplb terminating TLS in front of the
// real cluster; a frontend that requires client certificates refuses a client without one; and a
// certificate replaced on disk is served after SIGHUP.
func TestTLSTerminationAndReload(t *testing.T) {
	c := testenv.RequireCluster(t)
	dir := t.TempDir()
	certs, err := testenv.WriteTestCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	open, mtls := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`defaults
    mode tcp
    timeout connect 5s
    timeout client 3h
    timeout server 3h

frontend amqps
    bind %s ssl crt %s
    default_backend rabbitmq

frontend amqps-mtls
    bind %s ssl crt %s ca-file %s verify required
    default_backend rabbitmq

backend rabbitmq
    balance leastconn
    server rmq1 %s check inter 1s
    server rmq2 %s check inter 1s
    server rmq3 %s check inter 1s
`, open, certs.ServerPEM, mtls, certs.ServerPEM, certs.CA, c.Nodes[0].AMQPAddr(), c.Nodes[1].AMQPAddr(), c.Nodes[2].AMQPAddr())
	l := startLBFile(t, "haproxy.cfg", cfg, open)
	waitUp(t, l, 3)

	host, _, _ := net.SplitHostPort(open)
	tlsCfg := &tls.Config{RootCAs: certs.Pool(t), ServerName: host}
	roundTrip(t, dialURL(t, "amqps://guest:guest@"+open+"/", tlsCfg))

	// Client certificates required: without one the handshake fails; with one it works.
	if conn, err := amqp.DialConfig("amqps://guest:guest@"+mtls+"/", amqp.Config{TLSClientConfig: tlsCfg, Dial: amqp.DefaultDial(5 * time.Second)}); err == nil {
		conn.Close()
		t.Fatal("a client without a certificate connected to a frontend with verify required")
	}
	cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	withCert := tlsCfg.Clone()
	withCert.Certificates = []tls.Certificate{cert}
	roundTrip(t, dialURL(t, "amqps://guest:guest@"+mtls+"/", withCert))

	// A new certificate (from a new CA) on disk, then SIGHUP: new connections get it.
	certs2, err := testenv.WriteTestCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(certs2.ServerPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certs.ServerPEM, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, l, 1, "reloaded")
	roundTrip(t, dialURL(t, "amqps://guest:guest@"+open+"/", &tls.Config{RootCAs: certs2.Pool(t), ServerName: host}))
}

// TestSourceACLRefusesOutsiders: tcp-request connection reject unless an src ACL matches.
func TestSourceACLRefusesOutsiders(t *testing.T) {
	c := testenv.RequireCluster(t)
	closed, opened := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`frontend office-only
    bind %s
    mode tcp
    acl office src 10.20.0.0/16 192.168.7.0/24
    tcp-request connection reject unless office
    default_backend rabbitmq

frontend loopback-ok
    bind %s
    mode tcp
    acl local src 127.0.0.0/8 ::1
    tcp-request connection accept if local
    tcp-request connection reject
    default_backend rabbitmq

backend rabbitmq
    mode tcp
    server rmq1 %s check
`, closed, opened, c.Nodes[0].AMQPAddr())
	l := startLBFile(t, "acl.cfg", cfg, opened)
	waitUp(t, l, 1)
	roundTrip(t, dialURL(t, "amqp://guest:guest@"+opened+"/", nil))
	if conn, err := amqp.DialConfig("amqp://guest:guest@"+closed+"/", amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)}); err == nil {
		conn.Close()
		t.Fatal("a client outside the ACL connected")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if metric(t, l.scrape(t), "amqplb_frontend_refused_total", map[string]string{"frontend": "office-only", "reason": "denied"}) < 1 {
			return errors.New("the refused client was not counted as denied")
		}
		return nil
	})
}

// TestStatsListenServesStatusAndMetrics: an HAProxy stats section with auth serves amqplb's
// status page there, and the Prometheus exporter line serves its metrics.
func TestStatsListenServesStatusAndMetrics(t *testing.T) {
	c := testenv.RequireCluster(t)
	amqpAddr, stats, prom := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`listen rabbitmq
    bind %s
    mode tcp
    server rmq1 %s check

listen stats
    bind %s
    mode http
    stats enable
    stats uri /stats
    stats realm RabbitMQ\ LB
    stats auth ops:s3cret
    stats refresh 5s

frontend prometheus
    bind %s
    mode http
    http-request use-service prometheus-exporter if { path /metrics }
    no log
`, amqpAddr, c.Nodes[0].AMQPAddr(), stats, prom)
	l := startLBFile(t, "stats.cfg", cfg, amqpAddr)
	waitUp(t, l, 1)
	get := func(url, user, pass string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("http://"+stats+"/stats", "", ""); code != http.StatusUnauthorized {
		t.Errorf("stats page without credentials: %d, want 401", code)
	}
	if code, _ := get("http://"+stats+"/stats", "ops", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("stats page with a wrong password: %d, want 401", code)
	}
	if code, body := get("http://"+stats+"/stats", "ops", "s3cret"); code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("stats page with credentials: %d, %.80q", code, body)
	}
	code, body := get("http://"+prom+"/metrics", "", "")
	if code != http.StatusOK || !strings.Contains(body, "amqplb_server_up{") {
		t.Errorf("prometheus exporter: %d, no amqplb_server_up in %.200q", code, body)
	}

	// SIGHUP with the stats section moved: the new address serves, the old one is closed, and
	// the exporter, unchanged, kept serving.
	stats2 := testenv.FreeAddr(t)
	if err := os.WriteFile(l.path, []byte(strings.Replace(cfg, stats, stats2, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, l, 1, "reloaded")
	if code, _ := get("http://"+stats2+"/stats", "ops", "s3cret"); code != http.StatusOK {
		t.Errorf("the moved stats page: %d", code)
	}
	if _, err := http.Get("http://" + stats + "/stats"); err == nil {
		t.Error("the old stats address still serves after the reload")
	}
	if code, _ := get("http://"+prom+"/metrics", "", ""); code != http.StatusOK {
		t.Errorf("the exporter after the reload: %d", code)
	}
}

// TestCheckAcceptsCorpusLikeHAProxy: amqplb -c on a haproxy.cfg prints its warnings as
// FILE:LINE: and exits 0; on a broken one it names the line and exits 1.
func TestCheckAcceptsCorpusLikeHAProxy(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(good, []byte(`global
    daemon
    nbproc 1
defaults
    contimeout 5000
    clitimeout 3h
    srvtimeout 3h
listen rabbitmq 127.0.0.1:5672
    mode tcp
    balance roundrobin
    server rmq1 127.0.0.1:5673 check inter 5s rise 2 fall 3
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := execBinary("-c", "-f", good).CombinedOutput()
	if err != nil {
		t.Fatalf("amqplb -c on a valid file: %v\n%s", err, out)
	}
	for _, want := range []string{good + ":2: ", good + ":3: ", good + ":11: "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("amqplb -c output lacks %q:\n%s", want, out)
		}
	}
	bad := filepath.Join(dir, "bad.cfg")
	if err := os.WriteFile(bad, []byte("listen x\n    bind 127.0.0.1:5672\n    balance roundrobin\n    server a 127.0.0.1:1 chek\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = execBinary("-c", "-f", bad).CombinedOutput()
	if err == nil {
		t.Fatalf("amqplb -c accepted a misspelt server option:\n%s", out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	found := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), bad+":4: ") {
			found = true
		}
	}
	if !found {
		t.Errorf("the error does not start with %s:4:\n%s", bad, out)
	}
}

// TestDebianHAProxyUnit runs amqplb the way Debian's haproxy.service runs haproxy, with only the
// binary's name changed: -Ws -f $CONFIG -p $PIDFILE -S /run/haproxy-master.sock, Type=notify,
// ExecReload= the same with -c -q, then kill -USR2 $MAINPID.
func TestDebianHAProxyUnit(t *testing.T) {
	c := testenv.RequireCluster(t)
	// Not t.TempDir: amqplb switches to the user haproxy (when the test runs as root), which
	// must still read the configuration on reload, as it reads /etc/haproxy/haproxy.cfg.
	dir, err := os.MkdirTemp("", "amqplb-unit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sockPath := filepath.Join(dir, "notify.sock")
	notifications, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notifications.Close()
	// Like systemd's own socket: writable by the user amqplb switches to.
	if err := os.Chmod(sockPath, 0o777); err != nil {
		t.Fatal(err)
	}
	next := func(want string) {
		t.Helper()
		_ = notifications.SetReadDeadline(time.Now().Add(15 * time.Second))
		b := make([]byte, 512)
		for {
			n, err := notifications.Read(b)
			if err != nil {
				t.Fatalf("no %q from amqplb on NOTIFY_SOCKET: %v", want, err)
			}
			if strings.Contains(string(b[:n]), want) {
				return
			}
		}
	}
	addr := testenv.FreeAddr(t)
	// Debian's stock line, but for the directory (/run/haproxy exists only once the haproxy
	// service has run).
	adminSock := filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`global
    log /dev/log local0
    chroot /var/lib/haproxy
    stats socket %s mode 660 level admin
    user haproxy
    group haproxy
    daemon
defaults
    log global
    mode tcp
    timeout connect 5s
    timeout client 3h
    timeout server 3h
listen rabbitmq
    bind %s
    balance leastconn
    server rmq1 %s check inter 1s
    server rmq2 %s check inter 1s
`, adminSock, addr, c.Nodes[0].AMQPAddr(), c.Nodes[1].AMQPAddr())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// ExecStartPre-style check, as the unit's ExecReload does it.
	if out, err := execBinary("-Ws", "-f", path, "-c", "-q", "-S", "/run/haproxy-master.sock").CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("amqplb -Ws -f FILE -c -q: %v, output %q", err, out)
	}
	pidFile := filepath.Join(dir, "haproxy.pid")
	l := &lb{addr: addr, adminAddr: testenv.FreeAddr(t), path: path, log: &testenv.Buffer{}, done: make(chan error, 1),
		env: []string{"NOTIFY_SOCKET=" + sockPath}}
	l.start(t, "-Ws", "-p", pidFile, "-S", "/run/haproxy-master.sock", "-admin", l.adminAddr)
	next("READY=1")
	pid, err := os.ReadFile(pidFile)
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(l.cmd.Process.Pid) {
		t.Fatalf("pid file %q (%v), want %d", pid, err, l.cmd.Process.Pid)
	}
	// global user haproxy, group haproxy: once bound, amqplb runs as that user, as HAProxy does.
	if os.Geteuid() == 0 {
		want, err := user.Lookup("haproxy")
		if err != nil {
			t.Fatalf("the haproxy package creates the user haproxy: %v", err)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", l.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^Uid:\s+` + want.Uid + `\s+` + want.Uid + `\s+` + want.Uid).Match(status) {
			t.Errorf("amqplb does not run as haproxy (uid %s):\n%s", want.Uid, status)
		}
	}
	waitUp(t, l, 2)
	conn := dialURL(t, "amqp://guest:guest@"+addr+"/", nil)
	roundTrip(t, conn)
	if out := socat(t, adminSock, "show cli level"); out != "admin\n\n" {
		t.Errorf("the stats socket answers show cli level with %q, want admin", out)
	}

	// ExecReload: kill -USR2 $MAINPID.
	if err := l.cmd.Process.Signal(sigUSR2); err != nil {
		t.Fatal(err)
	}
	waitLog(t, l, 1, "reloaded")
	next("READY=1")
	roundTrip(t, conn) // the reload cut nothing
	if out := socat(t, adminSock, "show backend"); out != "# name\nrabbitmq\n\n" {
		t.Errorf("the stats socket after the reload answers %q", out)
	}
	conn2 := dialURL(t, "amqp://guest:guest@"+addr+"/", nil)
	roundTrip(t, conn2)
	conn.Close()
	conn2.Close()

	// systemctl stop: SIGTERM; systemd hears STOPPING=1, and the pid file goes.
	if err := l.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
}

// TestBackendRulesRefuseOutsiders: tcp-request content rules in a backend section apply to the
// sessions routed to that backend, whichever frontend they came through; another backend's
// sessions are not affected.
func TestBackendRulesRefuseOutsiders(t *testing.T) {
	c := testenv.RequireCluster(t)
	guarded, open := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`defaults
    mode tcp
    timeout connect 5s

frontend amqp
    bind %s
    default_backend rabbitmq

frontend amqp-open
    bind %s
    default_backend rabbitmq-open

backend rabbitmq
    acl internal_networks src 10.0.0.0/8 192.168.0.0/16
    tcp-request content reject if ! internal_networks
    server rmq1 %s check

backend rabbitmq-open
    server rmq1 %s check
`, guarded, open, c.Nodes[0].AMQPAddr(), c.Nodes[0].AMQPAddr())
	l := startLBFile(t, "backend-rules.cfg", cfg, open)
	waitUp(t, l, 2)
	roundTrip(t, dialURL(t, "amqp://guest:guest@"+open+"/", nil))
	if conn, err := amqp.DialConfig("amqp://guest:guest@"+guarded+"/", amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)}); err == nil {
		conn.Close()
		t.Fatal("a client outside the backend's ACL connected")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if metric(t, l.scrape(t), "amqplb_frontend_refused_total", map[string]string{"frontend": "amqp", "reason": "denied"}) < 1 {
			return errors.New("the refused client was not counted as denied")
		}
		return nil
	})
	waitLog(t, l, 1, "end=denied")
}

// TestSNIRoutesWithoutTerminatingTLS: a mode tcp frontend reads the TLS ClientHello and sends
// each client to the backend its server name routes to, passing the TLS bytes through
// untouched (here to two TLS-terminating frontends of the same amqplb, one per node); a name
// no route takes, and a client without SNI, go to the frontend's backend.
func TestSNIRoutesWithoutTerminatingTLS(t *testing.T) {
	c := testenv.RequireCluster(t)
	certs, err := testenv.WriteTestCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	edge, tls1, tls2 := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`[[frontend]]
name = "edge"
bind = %q
mode = "tcp"
backend = "via-one"
inspect_delay = "5s"

[[frontend.route]]
sni = ["Two.Example.com"]
backend = "via-two"

[[frontend.route]]
sni_suffix = [".two.internal"]
backend = "via-two"

[[frontend]]
name = "tls-one"
bind = %q
mode = "tcp"
backend = "one"
tls = { cert = %q }

[[frontend]]
name = "tls-two"
bind = %q
mode = "tcp"
backend = "two"
tls = { cert = %q }

[[backend]]
name = "via-one"
[backend.health_check]
type = "tcp"
[[backend.server]]
name = "t1"
address = %q

[[backend]]
name = "via-two"
[backend.health_check]
type = "tcp"
[[backend.server]]
name = "t2"
address = %q

[[backend]]
name = "one"
[[backend.server]]
name = "rmq1"
address = %q

[[backend]]
name = "two"
[[backend.server]]
name = "rmq2"
address = %q
`, edge, tls1, certs.ServerPEM, tls2, certs.ServerPEM, tls1, tls2, c.Nodes[0].AMQPAddr(), c.Nodes[1].AMQPAddr())
	l := startLBFile(t, "sni.toml", cfg, edge)
	waitUp(t, l, 4)
	for _, tc := range []struct{ sni, backend string }{
		{"two.example.com", "two"}, {"a.two.internal", "two"}, {"one.example.com", "one"}, {"", "one"},
	} {
		t.Run("sni="+tc.sni, func(t *testing.T) {
			// The certificate names localhost: the routes' names are checked by amqplb, not
			// by this client, which is here to send them.
			name := "e2e-sni-" + tc.sni
			conn, err := amqp.DialConfig("amqps://guest:guest@"+edge+"/", amqp.Config{
				TLSClientConfig: &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true},
				Properties:      amqp.Table{"connection_name": name},
				Dial:            amqp.DefaultDial(5 * time.Second),
			})
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, conn)
			conn.Close()
		})
	}
	// Each client's session through the edge went to its route's backend, and on, through that
	// backend's TLS frontend, to its node. All of them pass TCP (mode tcp): the client closing
	// after the broker's Close-Ok and the broker closing after sending it race there, so either
	// side may be recorded as the one that closed.
	count := func(re string) int { return len(regexp.MustCompile(re).FindAllString(l.log.String(), -1)) }
	testenv.Eventually(t, 10*time.Second, func() error {
		for re, want := range map[string]int{
			`msg=session frontend=edge \S+ backend=via-two server=t2 .*end=(client|server)_closed`:  2,
			`msg=session frontend=edge \S+ backend=via-one server=t1 .*end=(client|server)_closed`:  2,
			`msg=session frontend=tls-two \S+ backend=two server=rmq2 .*end=(client|server)_closed`: 2,
			`msg=session frontend=tls-one \S+ backend=one server=rmq1 .*end=(client|server)_closed`: 2,
		} {
			if got := count(re); got != want {
				return fmt.Errorf("%d access-log lines match %s, want %d", got, re, want)
			}
		}
		return nil
	})
}
