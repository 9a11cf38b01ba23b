package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/balancer"
	"github.com/amqplb/amqplb/internal/testenv"
	"github.com/pires/go-proxyproto"
)

// received is what a PROXY-protocol broker got first on one connection.
type received struct {
	first  []byte             // its first read
	header *proxyproto.Header // the header it parsed
	rest   []byte             // what followed the header in the first read
	err    error
}

// proxyBroker returns a fake broker that expects a PROXY header in the first read of every
// connection, reports it on the returned channel, then serves the rest of the stream with then.
func proxyBroker(t testing.TB, then func(net.Conn)) (*testenv.FakeBroker, <-chan received) {
	ch := make(chan received, 100)
	b := testenv.StartFakeBroker(t, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			ch <- received{err: err}
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		r := received{first: append([]byte(nil), buf[:n]...)}
		hl, err := headerLen(r.first)
		if err != nil {
			r.err = err
			ch <- r
			return
		}
		r.rest = r.first[hl:]
		r.header, r.err = proxyproto.Read(bufio.NewReader(bytes.NewReader(r.first[:hl])))
		ch <- r
		if r.err == nil {
			then(&prefixedConn{Conn: c, r: io.MultiReader(bytes.NewReader(r.rest), c)})
		}
	})
	return b, ch
}

// headerLen returns the length of the PROXY header at the start of b, which must hold it whole.
func headerLen(b []byte) (int, error) {
	switch {
	case bytes.HasPrefix(b, []byte("PROXY ")):
		if i := bytes.Index(b, []byte("\r\n")); i > 0 {
			return i + 2, nil
		}
	case bytes.HasPrefix(b, proxyproto.SIGV2):
		if len(b) >= 16 {
			if n := 16 + int(binary.BigEndian.Uint16(b[14:16])); len(b) >= n {
				return n, nil
			}
		}
	default:
		return 0, fmt.Errorf("the first read %q does not start with a PROXY header", b)
	}
	return 0, fmt.Errorf("the first read %q holds only part of a PROXY header", b)
}

type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func next(t *testing.T, ch <-chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("broker: %v", r.err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the broker got no connection")
	}
	return received{}
}

func tcpAddr(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func headerAddrs(h *proxyproto.Header) (src, dst netip.AddrPort) {
	return tcpAddr(h.SourceAddr), tcpAddr(h.DestinationAddr)
}

// proxyHeader returns a PROXY header of the given version from src to dst.
func proxyHeader(t testing.TB, version int, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(byte(version),
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSendProxyHeaderComesFirst: with send-proxy, the broker's first read starts with the
// whole header, naming the client's address and the frontend's, before any byte of a client
// that writes at once; for v1 and v2, from IPv4 and IPv6 clients.
func TestSendProxyHeaderComesFirst(t *testing.T) {
	for _, bind := range []string{"127.0.0.1:0", "[::1]:0"} {
		if ln, err := net.Listen("tcp", bind); err != nil {
			t.Logf("skipping %s: %v", bind, err)
			continue
		} else {
			ln.Close()
		}
		for _, version := range []int{1, 2} {
			t.Run(fmt.Sprintf("v%d/%s", version, bind), func(t *testing.T) {
				fb, got := proxyBroker(t, testenv.Echo)
				fx := startServers(t, FrontendOptions{Mode: ModeTCP, Bind: bind}, Route{},
					backend.ServerOptions{Address: fb.Addr(), SendProxy: version})
				c, err := net.Dial("tcp", fx.addr())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write([]byte("client bytes")); err != nil {
					t.Fatal(err)
				}
				r := next(t, got)
				if int(r.header.Version) != version || !r.header.Command.IsProxy() {
					t.Errorf("header version %d command %v", r.header.Version, r.header.Command)
				}
				src, dst := headerAddrs(r.header)
				if src != tcpAddr(c.LocalAddr()) || dst != tcpAddr(c.RemoteAddr()) {
					t.Errorf("header says %v -> %v, want %v -> %v", src, dst, c.LocalAddr(), c.RemoteAddr())
				}
				if version == 1 && strings.Contains(bind, "::1") && !bytes.HasPrefix(r.first, []byte("PROXY TCP6 ::1 ::1 ")) {
					t.Errorf("v1 header for an IPv6 client: %q", r.first)
				}
				if len(r.rest) > 0 && !bytes.HasPrefix([]byte("client bytes"), r.rest) {
					t.Errorf("after the header the broker read %q", r.rest)
				}
				echo := make([]byte, len("client bytes"))
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, echo); err != nil || string(echo) != "client bytes" {
					t.Fatalf("echo: %q, %v", echo, err)
				}
				echoes(t, c, "and then some")
			})
		}
	}
}

// echoAfterAMQP is a FakeAMQP that echoes after the handshake.
func echoAfterAMQP(c net.Conn) { (&testenv.FakeAMQP{Echo: true}).Handle(c) }

// TestAcceptProxyEndToEnd: a client behind another balancer (its PROXY header in the same write
// as the AMQP header) is logged, balanced and announced to a send-proxy server by its own
// address.
func TestAcceptProxyEndToEnd(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run("v"+strconv.Itoa(version), func(t *testing.T) {
			fb, got := proxyBroker(t, echoAfterAMQP)
			fx := startServers(t, FrontendOptions{Mode: ModeAMQP, AcceptProxy: true}, Route{},
				backend.ServerOptions{Address: fb.Addr(), SendProxy: 3 - version}) // the other version
			c, err := net.Dial("tcp", fx.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := clientHandshakeAfter(c, proxyHeader(t, version, "203.0.113.7:4242", "198.51.100.1:5672")); err != nil {
				t.Fatal(err)
			}
			echoes(t, c, "through two balancers")
			r := next(t, got)
			src, dst := headerAddrs(r.header)
			if src.String() != "203.0.113.7:4242" || dst.String() != "198.51.100.1:5672" {
				t.Errorf("the server was told %v -> %v, want the original 203.0.113.7:4242 -> 198.51.100.1:5672", src, dst)
			}
			c.Close()
			waitFor(t, "session end", func() bool { return fx.f.Stats().Active == 0 })
			want := "client=203.0.113.7:4242 via=" + c.LocalAddr().String()
			if !strings.Contains(fx.logs.String(), want) {
				t.Errorf("access log lacks %q:\n%s", want, fx.logs)
			}
		})
	}
}

// TestAcceptProxyInTCPModeAndLocal: bytes read with the header reach the server (TCP mode);
// a v2 LOCAL header keeps the peer's address.
func TestAcceptProxyInTCPModeAndLocal(t *testing.T) {
	fb, headers := proxyBroker(t, testenv.Echo)
	fx := startServers(t, FrontendOptions{Mode: ModeTCP, AcceptProxy: true}, Route{},
		backend.ServerOptions{Address: fb.Addr(), SendProxy: 1})
	local, _ := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
	for _, tc := range []struct {
		name, hdr, wantSrc string
	}{
		{"v1 IPv6", string(proxyHeader(t, 1, "[2001:db8::7]:4242", "[2001:db8::1]:5672")), "[2001:db8::7]:4242"},
		{"v2 LOCAL", string(local), ""},
	} {
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(tc.hdr + "early bytes")); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, len("early bytes"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, echo); err != nil || string(echo) != "early bytes" {
			t.Fatalf("%s: echo of the bytes sent with the header: %q, %v", tc.name, echo, err)
		}
		want := tc.wantSrc
		if want == "" {
			want = c.LocalAddr().String()
		}
		if src, _ := headerAddrs(next(t, headers).header); src.String() != want {
			t.Errorf("%s: the server was told the client is %v, want %s", tc.name, src, want)
		}
		c.Close()
		waitFor(t, "session end", func() bool { return fx.f.Stats().Active == 0 })
		logs := fx.logs.String()
		if !strings.Contains(logs, "client="+want) {
			t.Errorf("%s: access log lacks client=%s:\n%s", tc.name, want, logs)
		}
	}
	if strings.Count(fx.logs.String(), "via=") != 1 {
		t.Errorf("via= should appear for the proxied client only:\n%s", fx.logs)
	}
}

// TestAcceptProxySourceBalancing: the source policy hashes the header's address, not the
// upstream balancer's.
func TestAcceptProxySourceBalancing(t *testing.T) {
	a, b := echoBroker(t), echoBroker(t)
	p, err := balancer.New("source")
	if err != nil {
		t.Fatal(err)
	}
	fx := start(t, FrontendOptions{Mode: ModeAMQP, AcceptProxy: true}, Route{Policy: p}, a.Addr(), b.Addr())
	for i := range 16 {
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := clientHandshakeAfter(c, proxyHeader(t, 2, fmt.Sprintf("198.51.100.%d:1000", i+1), "192.0.2.1:5672")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if a.Accepted() == 0 || b.Accepted() == 0 {
		t.Errorf("16 client addresses all went to one server (%d, %d): the peer's address was hashed", a.Accepted(), b.Accepted())
	}
}

// TestBadProxyHeaderIsRefused: a missing, malformed or late header closes the connection,
// without reaching a broker, and is counted; an established client is not disturbed.
func TestBadProxyHeaderIsRefused(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, AcceptProxy: true, HandshakeTimeout: 500 * time.Millisecond}, Route{}, fb.Addr())
	good, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := clientHandshakeAfter(good, proxyHeader(t, 1, "192.0.2.9:999", "192.0.2.1:5672")); err != nil {
		t.Fatal(err)
	}
	bad := []string{
		"PROXY TCP4 not-an-address\r\nAMQP\x00\x00\x09\x01",
		"AMQP\x00\x00\x09\x01", // no header at all
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		string(proxyproto.SIGV2) + "\x21\x11\x00\x05short",    // a v2 length that does not fit TCP4
		string(proxyproto.SIGV2) + "\x21\x11\x00\x0c\x01\x02", // a truncated v2 header: times out
		"", // nothing: times out
	}
	for _, b := range bad {
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
		if got := expectClosed(t, c); len(got) != 0 {
			t.Errorf("after %q the client got %q", b, got)
		}
		c.Close()
	}
	waitFor(t, "refusals counted", func() bool { return fx.f.Stats().Refused["bad_proxy"] == uint64(len(bad)) })
	waitFor(t, "refused sessions end", func() bool { return fx.f.Stats().Active == 1 })
	echoes(t, good, "undisturbed")
	if fb.Accepted() != 1 {
		t.Errorf("the broker accepted %d connections, want 1", fb.Accepted())
	}
	if !strings.Contains(fx.logs.String(), "bad PROXY protocol header") || !strings.Contains(fx.logs.String(), "end=bad_proxy") {
		t.Errorf("the refusal is not logged:\n%s", fx.logs)
	}
}

func matchAddr(s string) func(netip.Addr) bool {
	p := netip.MustParsePrefix(s)
	return p.Contains
}

// TestRules: connection rules decide at accept on the peer's address (even behind accept-proxy);
// content rules on the PROXY header's source.
func TestRules(t *testing.T) {
	fb := echoBroker(t)
	// A reject rule for 127.0.0.1 refuses before any byte is read.
	deny := start(t, FrontendOptions{Mode: ModeAMQP, Rules: []Rule{
		{Reject: true, Match: matchAddr("127.0.0.1/32")},
	}}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", deny.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := expectClosed(t, c); len(got) != 0 {
		t.Errorf("a denied client got %q", got)
	}
	waitFor(t, "denial counted and logged", func() bool {
		return deny.f.Stats().Refused["denied"] == 1 && strings.Contains(deny.logs.String(), "end=denied")
	})
	if fb.Accepted() != 0 || deny.f.Stats().Total != 0 {
		t.Errorf("a denied client reached a broker (%d) or a session (%d)", fb.Accepted(), deny.f.Stats().Total)
	}

	// First match decides: accept 127.0.0.1, then reject everything.
	allow := start(t, FrontendOptions{Mode: ModeAMQP, Rules: []Rule{
		{Match: matchAddr("127.0.0.0/8")},
		{Reject: true},
	}}, Route{}, fb.Addr())
	echoes(t, amqpConnect(t, allow.addr()), "let in")

	// With accept-proxy: connection rules judge the balancer (127.0.0.1, allowed), content rules
	// the header's source. A forged header cannot get a client past a connection rule.
	proxied := start(t, FrontendOptions{Mode: ModeAMQP, AcceptProxy: true,
		Rules: []Rule{
			{Match: matchAddr("127.0.0.0/8")},
			{Reject: true},
		},
		ContentRules: []Rule{
			{Reject: true, Match: matchAddr("203.0.113.0/24")},
		}}, Route{}, fb.Addr())
	c2, err := net.Dial("tcp", proxied.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := clientHandshakeAfter(c2, proxyHeader(t, 2, "203.0.113.7:4242", "192.0.2.1:5672")); err == nil {
		t.Error("a client from a rejected network got through")
	}
	waitFor(t, "denial counted", func() bool { return proxied.f.Stats().Refused["denied"] == 1 })
	c3, err := net.Dial("tcp", proxied.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := clientHandshakeAfter(c3, proxyHeader(t, 2, "198.51.100.7:4242", "192.0.2.1:5672")); err != nil {
		t.Errorf("a client from an accepted network: %v", err)
	}

	// Only the balancer at 10.0.0.0/8 may connect: a header claiming 10.1.2.3 from 127.0.0.1
	// is refused at accept, before it is read.
	guarded := start(t, FrontendOptions{Mode: ModeAMQP, AcceptProxy: true, Rules: []Rule{
		{Reject: true, Match: func(a netip.Addr) bool { return !matchAddr("10.0.0.0/8")(a) }},
	}}, Route{}, fb.Addr())
	c4, err := net.Dial("tcp", guarded.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if _, err := clientHandshakeAfter(c4, proxyHeader(t, 2, "10.1.2.3:4242", "192.0.2.1:5672")); err == nil {
		t.Error("a forged PROXY header got a client past a connection rule")
	}
	waitFor(t, "denial counted", func() bool { return guarded.f.Stats().Refused["denied"] == 1 })

	// A link-local client with a zone still matches its prefix.
	if !rejected([]Rule{{Reject: true, Match: matchAddr("fe80::/10")}}, netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("an address with a zone escaped a rule for its prefix")
	}
}

// TestDontLogNull: sessions in which the client sent nothing leave no access-log line.
func TestDontLogNull(t *testing.T) {
	fb := echoBroker(t)
	for _, acceptProxy := range []bool{false, true} {
		fx := start(t, FrontendOptions{Mode: ModeAMQP, DontLogNull: true, AcceptProxy: acceptProxy,
			HandshakeTimeout: 500 * time.Millisecond}, Route{}, fb.Addr())
		var hdr []byte
		if acceptProxy {
			hdr = proxyHeader(t, 1, "192.0.2.7:1234", "192.0.2.1:5672")
		}
		// Probes: connect and close; connect and say nothing until the timeout; with
		// accept-proxy, send only the header.
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", fx.addr())
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				switch i {
				case 1:
					_, _ = io.Copy(io.Discard, c)
				case 2:
					_, _ = c.Write(hdr)
					_ = c.(*net.TCPConn).CloseWrite()
					_, _ = io.Copy(io.Discard, c)
				}
			}()
		}
		wg.Wait()
		waitFor(t, "probes end", func() bool { return fx.f.Stats().Active == 0 && fx.f.Stats().Total == 3 })
		if strings.Contains(fx.logs.String(), "msg=session") {
			t.Errorf("accept-proxy %v: probes were logged:\n%s", acceptProxy, fx.logs)
		}
		// A client that sent something is logged, refused or not.
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(append(hdr, "GET /"...))
		expectClosed(t, c)
		c.Close()
		c, err = net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := clientHandshakeAfter(c, hdr); err != nil {
			t.Fatal(err)
		}
		c.Close()
		waitFor(t, "sessions end", func() bool { return fx.f.Stats().Active == 0 && fx.f.Stats().Total == 5 })
		if n := strings.Count(fx.logs.String(), "msg=session"); n != 2 {
			t.Errorf("accept-proxy %v: %d access-log lines, want 2:\n%s", acceptProxy, n, fx.logs)
		}
	}
	// A refusal decided at accept leaves a warning but no access-log line.
	fx := start(t, FrontendOptions{Mode: ModeAMQP, DontLogNull: true, Rules: []Rule{{Reject: true}}}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	c.Close()
	waitFor(t, "denial counted and logged", func() bool {
		return fx.f.Stats().Refused["denied"] == 1 && strings.Contains(fx.logs.String(), "denied by a tcp-request rule")
	})
	if logs := fx.logs.String(); strings.Contains(logs, "msg=session") {
		t.Errorf("a denial with dontlognull: want a warning and no access-log line:\n%s", logs)
	}
}
