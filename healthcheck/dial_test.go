package healthcheck

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/amqpwire"
	"github.com/amqplb/amqplb/internal/testenv"
)

// testPKI makes a CA and a server certificate for 127.0.0.1 signed by it: the pool to verify
// the server with and the server's TLS configuration.
func testPKI(t *testing.T) (*x509.CertPool, *tls.Config) {
	t.Helper()
	certs, err := testenv.WriteTestCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return certs.Pool(t), certs.ServerTLS(t)
}

// overTLS serves h over TLS with cfg, as a broker's AMQPS listener.
func overTLS(cfg *tls.Config, h func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		tc := tls.Server(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		_ = tc.SetDeadline(time.Time{})
		h(tc)
	}
}

// tlsServer returns a server at addr reached over TLS, verified with roots as serverName.
func tlsServer(addr string, roots *x509.CertPool, serverName string) *backend.Server {
	return backend.NewServer(backend.ServerOptions{Name: "rmq1", Address: addr, Weight: 1,
		TLS: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}})
}

func TestCheckOverTLS(t *testing.T) {
	pool, srvCfg := testPKI(t)
	fake := &testenv.FakeAMQP{}
	b := testenv.StartFakeBroker(t, overTLS(srvCfg, fake.Handle))
	tcpCheck, err := NewTCPChecker(testTimeout, amqpProbe)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("verified with the CA", func(t *testing.T) {
		s := tlsServer(b.Addr(), pool, "127.0.0.1")
		for _, c := range []Checker{&AMQPChecker{Timeout: testTimeout}, &ProbeChecker{Timeout: testTimeout}, &TCPChecker{Timeout: testTimeout}, tcpCheck} {
			res := checkTarget(t, c, serverTarget(s, false), testTimeout)
			if !res.OK {
				t.Errorf("%T over TLS: %+v", c, res)
			}
		}
		waitIdle(t, b)
		if n := fake.CleanCloses(); n != 1 {
			t.Errorf("%d clean AMQP closes over TLS, want 1", n)
		}
	})

	t.Run("verify none", func(t *testing.T) {
		s := backend.NewServer(backend.ServerOptions{Name: "rmq1", Address: b.Addr(), Weight: 1,
			TLS: &tls.Config{InsecureSkipVerify: true}})
		expect(t, checkTarget(t, &ProbeChecker{Timeout: testTimeout}, serverTarget(s, false), testTimeout), true, 0)
	})

	tests := []struct {
		name  string
		s     *backend.Server
		kind  string
		words []string
	}{
		{"unknown authority", tlsServer(b.Addr(), x509.NewCertPool(), "127.0.0.1"), FailProtocol,
			[]string{"TLS handshake: x509: certificate signed by unknown authority"}},
		{"wrong name", tlsServer(b.Addr(), pool, "rabbit.example"), FailProtocol,
			[]string{"TLS handshake: x509: ", "rabbit.example"}},
		{"plain broker", tlsServer(testenv.StartFakeBroker(t, (&testenv.FakeAMQP{}).Handle).Addr(), pool, "127.0.0.1"),
			FailProtocol, []string{"TLS handshake: tls: first record does not look like a TLS handshake"}},
		{"silent", tlsServer(testenv.StartFakeBroker(t, testenv.Silent).Addr(), pool, "127.0.0.1"),
			FailTimeout, []string{"timeout after 300ms in the TLS handshake"}},
		{"hangup", tlsServer(testenv.StartFakeBroker(t, testenv.Hangup).Addr(), pool, "127.0.0.1"),
			FailReset, []string{"by broker in the TLS handshake"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []Checker{&AMQPChecker{Timeout: testTimeout}, &TCPChecker{Timeout: testTimeout}} {
				res := checkTarget(t, c, serverTarget(tt.s, false), testTimeout)
				expect(t, res, false, 0, tt.words...)
				if res.Kind != tt.kind {
					t.Errorf("%T: Kind = %q, want %q", c, res.Kind, tt.kind)
				}
			}
		})
	}
	if n := fake.Opened(); n != 1 {
		t.Errorf("the fake opened %d connections, want only the verified one", n)
	}
}

// seenHeader is the PROXY header a connection began with, and its real addresses.
type seenHeader struct {
	h             *proxyproto.Header
	remote, local net.Addr
	err           error
}

// proxyLog records the PROXY headers of a fake broker's connections.
type proxyLog struct {
	mu   sync.Mutex
	seen []seenHeader
}

func (p *proxyLog) all() []seenHeader {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]seenHeader(nil), p.seen...)
}

// bufConn is a connection whose first bytes were read into r already.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// proxied reads the PROXY header a connection starts with, as a broker with proxy_protocol
// does, records it, and serves the rest with h. A connection without a valid header is closed.
func (p *proxyLog) proxied(h func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		hdr, err := proxyproto.Read(r)
		p.mu.Lock()
		p.seen = append(p.seen, seenHeader{h: hdr, remote: c.RemoteAddr(), local: c.LocalAddr(), err: err})
		p.mu.Unlock()
		if err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		h(&bufConn{Conn: c, r: r})
	}
}

// wantAddrs fails unless s announced the check connection's own addresses in a version v header.
func wantAddrs(t *testing.T, s seenHeader, v byte) {
	t.Helper()
	switch {
	case s.err != nil:
		t.Errorf("no PROXY header: %v", s.err)
	case s.h.Version != v || s.h.Command != proxyproto.PROXY || s.h.TransportProtocol != proxyproto.TCPv4:
		t.Errorf("header version %d command %v transport %v, want v%d PROXY TCP4", s.h.Version, s.h.Command, s.h.TransportProtocol, v)
	case s.h.SourceAddr.String() != s.remote.String() || s.h.DestinationAddr.String() != s.local.String():
		t.Errorf("header announces %v -> %v, the check connected %v -> %v", s.h.SourceAddr, s.h.DestinationAddr, s.remote, s.local)
	}
}

func wantLocal(t *testing.T, s seenHeader) {
	t.Helper()
	if s.err != nil || s.h.Version != 2 || s.h.Command != proxyproto.LOCAL {
		t.Errorf("got header %+v (%v), want v2 LOCAL", s.h, s.err)
	}
}

func proxyServer(addr string, version int) *backend.Server {
	return backend.NewServer(backend.ServerOptions{Name: "rmq1", Address: addr, Weight: 1, SendProxy: version})
}

func TestCheckSendsProxyHeader(t *testing.T) {
	pl := &proxyLog{}
	fake := &testenv.FakeAMQP{}
	b := testenv.StartFakeBroker(t, pl.proxied(fake.Handle))
	for i, tt := range []struct {
		version int
		local   bool
	}{{1, false}, {2, false}, {1, true}, {2, true}} {
		res := checkTarget(t, &AMQPChecker{Timeout: testTimeout}, serverTarget(proxyServer(b.Addr(), tt.version), tt.local), testTimeout)
		expect(t, res, true, 0, "AMQP handshake ok")
		if res.BrokerVersion != "3.13.7" {
			t.Errorf("BrokerVersion = %q, want the fake's 3.13.7", res.BrokerVersion)
		}
		seen := pl.all()
		if len(seen) != i+1 {
			t.Fatalf("%d connections, want %d", len(seen), i+1)
		}
		if tt.version == 2 && tt.local {
			wantLocal(t, seen[i])
		} else {
			// LOCAL exists in v2 only: a v1 server gets the addresses whatever the broker.
			wantAddrs(t, seen[i], byte(tt.version))
		}
	}
	waitIdle(t, b)
	if n := fake.CleanCloses(); n != 4 {
		t.Errorf("%d clean closes, want 4", n)
	}

	// Over TLS, the header comes first, in clear, then the handshake.
	pool, srvCfg := testPKI(t)
	tb := testenv.StartFakeBroker(t, pl.proxied(overTLS(srvCfg, (&testenv.FakeAMQP{}).Handle)))
	s := backend.NewServer(backend.ServerOptions{Name: "rmq1", Address: tb.Addr(), Weight: 1, SendProxy: 2,
		TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	expect(t, checkTarget(t, &AMQPChecker{Timeout: testTimeout}, serverTarget(s, false), testTimeout), true, 0)
	wantAddrs(t, pl.all()[4], 2)
}

// refusesProxy answers anything but the AMQP 0-9-1 header with that header and closes, as a
// RabbitMQ node without proxy_protocol answers a PROXY header. It reads what the client sent
// before it closes, so the client sees the answer and not a reset.
func refusesProxy(c net.Conn) {
	var h [8]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return
	}
	_, _ = c.Write(testenv.AMQPHeader)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, _ = io.Copy(io.Discard, c)
}

func TestCheckProxyHeaderRefused(t *testing.T) {
	b := testenv.StartFakeBroker(t, refusesProxy)
	res := checkTarget(t, &ProbeChecker{Timeout: testTimeout}, serverTarget(proxyServer(b.Addr(), 2), false), testTimeout)
	expect(t, res, false, 0, "broker refused the PROXY v2 header", "is proxy_protocol enabled on the broker?")
	// Without a header sent, the same answer means what it always did.
	res = checkTarget(t, &ProbeChecker{Timeout: testTimeout}, serverTarget(proxyServer(b.Addr(), 0), false), testTimeout)
	expect(t, res, false, 0, "broker refused the AMQP 0-9-1 protocol header")
	if strings.Contains(res.Reason, "PROXY") {
		t.Errorf("reason %q names a PROXY header never sent", res.Reason)
	}
}

func TestCheckUsesCheckPort(t *testing.T) {
	b := testenv.StartFakeBroker(t, healthy())
	_, port, _ := net.SplitHostPort(b.Addr())
	p, _ := strconv.Atoi(port)
	// Nothing listens on the server's own address: only the check port answers.
	s := backend.NewServer(backend.ServerOptions{Name: "rmq1", Address: testenv.FreeAddr(t), Weight: 1, CheckPort: p})
	if tgt := serverTarget(s, false); tgt.Addr != b.Addr() {
		t.Errorf("target address %s, want the check port's %s", tgt.Addr, b.Addr())
	}
	m := startMonitor(t, MonitorOptions{Servers: []*backend.Server{s}, Checker: &AMQPChecker{},
		Policy: Policy{Interval: time.Hour}, Timeout: time.Second, Logger: slog.New(&logRecorder{})})
	// The result is stored a moment before the health it leads to: wait for both.
	testenv.Eventually(t, 2*time.Second, holds("checked", func() bool { return m.Status(s).Last != nil && s.State() == backend.StateUp }))
	if c := m.Status(s).Last; !c.OK || s.State() != backend.StateUp || b.Accepted() != 1 {
		t.Errorf("state %v, check %+v, %d connections to the check port", s.State(), c, b.Accepted())
	}
	if n := s.ConnectErrors(); n != 0 {
		t.Errorf("checks counted %d connect errors", n)
	}
}

// startOnly is a broker that sends Connection.Start with the given version and then waits for
// the client to go: enough for an amqp-probe check.
func startOnly(version string) func(net.Conn) {
	return func(c net.Conn) {
		var h [8]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		props := amqpwire.Table{"product": "RabbitMQ", "version": version, "platform": "Erlang/OTP 25.2.3"}
		if amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionStart{VersionMinor: 9, ServerProperties: props,
			Mechanisms: "PLAIN AMQPLAIN", Locales: "en_US"}) != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	}
}

func TestSupportsProxyLocal(t *testing.T) {
	for v, want := range map[string]bool{
		"3.10.8": false, "3.9.29": false, "2.8.0": false, "0.0.0": false,
		"3.11.0": false, "3.11.18": false, "3.11.19": true, "3.11.28": true,
		"3.12.0": false, "3.12.1": true, "3.12.4": true, "3.12.14": true,
		"3.13.0": true, "3.13.7": true, "4.0.5": true, "4.1.0": true, "10.0.0": true,
		"3.12.1-rc.1": false, "3.11.19-beta.1": false, "3.12.2-rc.1": true, "4.0.0-beta.5": true,
		"3.12.4+vmware.1": true, "3.10.8+deb12": false, "3.12.1-": false,
		"": false, "garbage": false, "3.12": false, "4": false, "3.12.x": false, "v3.12.4": false,
		" 3.12.4": false, "3.12.4.1": false, "3..1": false, "+3.12.4": false, "99999999999.0.0": false,
	} {
		if got := supportsProxyLocal(v); got != want {
			t.Errorf("supportsProxyLocal(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestBrokerVersionInResult(t *testing.T) {
	b := testenv.StartFakeBroker(t, startOnly("3.10.8"))
	if res := checkWithin(t, &ProbeChecker{Timeout: testTimeout}, b.Addr(), testTimeout); !res.OK || res.BrokerVersion != "3.10.8" {
		t.Errorf("probe: %+v, want the version 3.10.8", res)
	}
	// A check that fails after Connection.Start still read it.
	fake := testenv.StartFakeBroker(t, (&testenv.FakeAMQP{Username: "guest", Password: "guest"}).Handle)
	if res := checkWithin(t, &AMQPChecker{Password: "x", Timeout: testTimeout}, fake.Addr(), testTimeout); res.Code != 403 || res.BrokerVersion != "3.13.7" {
		t.Errorf("refused login: %+v, want a 403 and the version 3.13.7", res)
	}
	if res := checkWithin(t, &TCPChecker{Timeout: testTimeout}, fake.Addr(), testTimeout); !res.OK || res.BrokerVersion != "" {
		t.Errorf("tcp: %+v, want no version", res)
	}
}

func TestMonitorProxyLocal(t *testing.T) {
	// settle waits for n checks of s and returns the headers they sent.
	settle := func(t *testing.T, pl *proxyLog, m *Monitor, s *backend.Server, b *testenv.FakeBroker, n int) []seenHeader {
		t.Helper()
		testenv.Eventually(t, 3*time.Second, holds("checks", func() bool { return b.Accepted() >= n && m.Status(s).Last != nil }))
		waitIdle(t, b)
		return pl.all()
	}
	start := func(t *testing.T, s *backend.Server, c Checker) *Monitor {
		return startMonitor(t, MonitorOptions{Servers: []*backend.Server{s}, Checker: c,
			Policy: Policy{Interval: 10 * time.Millisecond}, Timeout: time.Second, Logger: slog.New(&logRecorder{})})
	}

	t.Run("LOCAL once a check saw 3.13.7", func(t *testing.T) {
		pl := &proxyLog{}
		b := testenv.StartFakeBroker(t, pl.proxied(healthy()))
		s := proxyServer(b.Addr(), 2)
		m := start(t, s, &AMQPChecker{})
		seen := settle(t, pl, m, s, b, 4)
		wantAddrs(t, seen[0], 2) // nothing known yet
		for _, h := range seen[1:] {
			wantLocal(t, h)
		}
	})

	t.Run("LOCAL after an amqp-probe saw 3.12.1", func(t *testing.T) {
		pl := &proxyLog{}
		b := testenv.StartFakeBroker(t, pl.proxied(startOnly("3.12.1")))
		s := proxyServer(b.Addr(), 2)
		m := start(t, s, &ProbeChecker{})
		seen := settle(t, pl, m, s, b, 3)
		wantAddrs(t, seen[0], 2)
		for _, h := range seen[1:] {
			wantLocal(t, h)
		}
	})

	for _, tt := range []struct {
		name    string
		version int
		handler func(net.Conn)
		checker Checker
	}{
		{"never LOCAL to 3.10.8", 2, startOnly("3.10.8"), &ProbeChecker{}},
		{"never LOCAL to a version it cannot read", 2, startOnly("unknown"), &ProbeChecker{}},
		{"never LOCAL in v1", 1, healthy(), &AMQPChecker{}},
		{"never LOCAL with tcp checks", 2, healthy(), &TCPChecker{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pl := &proxyLog{}
			b := testenv.StartFakeBroker(t, pl.proxied(tt.handler))
			s := proxyServer(b.Addr(), tt.version)
			m := start(t, s, tt.checker)
			for _, h := range settle(t, pl, m, s, b, 4) {
				wantAddrs(t, h, byte(tt.version))
			}
		})
	}

	t.Run("back to addresses when a check reads no version", func(t *testing.T) {
		pl := &proxyLog{}
		sw := newSwitchable(healthy())
		b := testenv.StartFakeBroker(t, pl.proxied(sw.Handle))
		s := proxyServer(b.Addr(), 2)
		m := start(t, s, &AMQPChecker{})
		settle(t, pl, m, s, b, 3)
		// Now the node drops every connection, as one that rejects LOCAL would.
		sw.set(testenv.Hangup)
		n := len(pl.all())
		testenv.Eventually(t, 3*time.Second, holds("a check with addresses", func() bool {
			seen := pl.all()
			for _, h := range seen[n:] {
				if h.err == nil && h.h.Command == proxyproto.PROXY {
					return true
				}
			}
			return false
		}))
		// And LOCAL again once the broker says who it is.
		sw.set(healthy())
		n = len(pl.all())
		testenv.Eventually(t, 3*time.Second, holds("LOCAL again", func() bool {
			seen := pl.all()
			return len(seen) > n+2 && seen[len(seen)-1].err == nil && seen[len(seen)-1].h.Command == proxyproto.LOCAL
		}))
	})
}
