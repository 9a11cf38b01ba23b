package backend

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
	"github.com/pires/go-proxyproto"
)

func TestStateCombinesHealthAndOperator(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Address: "127.0.0.1:1", Weight: 1})
	steps := []struct {
		do   func()
		want State
	}{
		{func() {}, StateUp},
		{func() { s.SetHealth(false) }, StateDown},
		{func() { s.SetAdmin(AdminDrain) }, StateDrain}, // the operator's word wins over health
		{func() { s.SetHealth(true) }, StateDrain},
		{func() { s.SetAdmin(AdminMaint) }, StateMaint},
		{func() { s.SetAdmin(AdminReady) }, StateUp}, // back to what the checks say
		{func() { s.SetHealth(false) }, StateDown},
		{func() { s.SetState(StateUp) }, StateUp},
	}
	for i, st := range steps {
		st.do()
		if got := s.State(); got != st.want {
			t.Fatalf("step %d: state %v, want %v", i, got, st.want)
		}
	}
	if got := s.Transitions(StateDown); got != 2 {
		t.Errorf("transitions to down = %d, want 2", got)
	}
	if got := s.Transitions(StateUp); got != 2 {
		t.Errorf("transitions to up = %d, want 2", got)
	}
	// Setting the same health again is not a transition.
	s.SetHealth(true)
	if got := s.Transitions(StateUp); got != 2 {
		t.Errorf("a repeated up counted as a transition: %d", got)
	}
}

func TestBrokerMaintenanceIsDrainAndOnlyTheChecksEndIt(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Address: "127.0.0.1:1", Weight: 1})
	steps := []struct {
		do   func()
		want State
	}{
		{func() { s.SetMaintenance(true) }, StateDrain},
		{func() { s.SetHealth(false) }, StateDrain}, // maintenance wins over health
		{func() { s.SetAdmin(AdminMaint) }, StateMaint},
		{func() { s.SetAdmin(AdminReady) }, StateDrain}, // the operator's ready does not end it
		{func() { s.SetMaintenance(false) }, StateDown},
		{func() { s.SetHealth(true) }, StateUp},
		{func() { s.SetMaintenance(true) }, StateDrain},
		{func() { s.SetState(StateUp) }, StateUp},
	}
	for i, st := range steps {
		st.do()
		if got := s.State(); got != st.want {
			t.Fatalf("step %d: state %v, want %v", i, got, st.want)
		}
		if st.want == StateDrain && s.Eligible() {
			t.Fatalf("step %d: a server in maintenance is eligible", i)
		}
	}
	if s.Maintenance() {
		t.Error("SetState(StateUp) left the maintenance flag")
	}
	if got := s.Transitions(StateDrain); got != 3 {
		t.Errorf("transitions to drain = %d, want 3", got)
	}
	if got := s.Transitions(StateDown); got != 1 {
		t.Errorf("transitions to down = %d, want 1 (when maintenance ended on a down verdict)", got)
	}
}

func TestEligible(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Weight: 1, MaxConnections: 1})
	if !s.Eligible() {
		t.Fatal("a fresh server is not eligible")
	}
	if !s.Acquire() {
		t.Fatal("first slot refused")
	}
	if s.Eligible() || s.Acquire() {
		t.Error("a full server is eligible or gave a second slot")
	}
	s.Release()
	if !s.MarkSuspect() || s.Eligible() {
		t.Error("a suspect server is eligible")
	}
	if s.MarkSuspect() {
		t.Error("MarkSuspect reported a new suspicion twice")
	}
	s.SetHealth(true) // a passing check clears the suspicion
	if s.Suspect() || !s.Eligible() {
		t.Error("a passing check did not clear suspect")
	}
	s.SetWeight(0)
	if s.Eligible() {
		t.Error("a weight-0 server is eligible")
	}
	s.SetWeight(1000)
	if s.Weight() != MaxWeight {
		t.Errorf("weight clamped to %d, want %d", s.Weight(), MaxWeight)
	}
}

// TestSlowstartRampsTheWeight runs on synctest's fake clock: the ramp is an hour long.
func TestSlowstartRampsTheWeight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(ServerOptions{Name: "a", Weight: 100, Slowstart: time.Hour})
		if w := s.EffectiveWeight(); w != 100 {
			t.Fatalf("a server up since start ramps: %d", w)
		}
		s.SetHealth(false)
		s.SetHealth(true)
		if w := s.EffectiveWeight(); w != 1 {
			t.Errorf("just recovered: effective weight %d, want 1", w)
		}
		time.Sleep(30 * time.Minute)
		if w := s.EffectiveWeight(); w < 49 || w > 51 {
			t.Errorf("half way: effective weight %d, want about 50", w)
		}
		time.Sleep(90 * time.Minute)
		if w := s.EffectiveWeight(); w != 100 {
			t.Errorf("after the ramp: effective weight %d, want 100", w)
		}
		// Down and up again: the ramp starts over.
		s.SetHealth(false)
		s.SetHealth(true)
		if w := s.EffectiveWeight(); w != 1 {
			t.Errorf("recovered again: effective weight %d, want 1", w)
		}
	})
}

func TestAcquireIsExactUnderContention(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Weight: 1, MaxConnections: 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.Acquire() {
				mu.Lock()
				got++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got != 10 || s.ActiveConnections() != 10 || s.TotalConnections() != 0 {
		t.Errorf("granted %d slots (active %d, total %d), want 10 slots and no session yet", got, s.ActiveConnections(), s.TotalConnections())
	}
}

func TestDialCountsErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := NewServer(ServerOptions{Name: "a", Address: addr, Weight: 1})
	c, err := s.Dial(context.Background(), DialOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ln.Close()
	_, err = s.Dial(context.Background(), DialOptions{Timeout: time.Second})
	var op *net.OpError
	if !errors.As(err, &op) || s.ConnectErrors() != 1 {
		t.Errorf("dial to a closed port: err %v, connect errors %d", err, s.ConnectErrors())
	}
}

func TestParseAdmin(t *testing.T) {
	for _, in := range []string{"ready", "drain", "maint"} {
		a, err := ParseAdmin(in)
		if err != nil || a.String() != in {
			t.Errorf("ParseAdmin(%q) = %v, %v", in, a, err)
		}
	}
	if _, err := ParseAdmin("up"); err == nil {
		t.Error(`ParseAdmin("up") accepted`)
	}
}

// v2sig is the PROXY protocol v2 signature (proxy-protocol.txt, section 2.2).
const v2sig = "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"

func unhex(t *testing.T, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestProxyHeaderMatchesTheSpec checks the bytes of the headers against the examples and
// layouts of the PROXY protocol specification (haproxy.org/download/2.6/doc/proxy-protocol.txt).
func TestProxyHeaderMatchesTheSpec(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name     string
		version  int
		src, dst netip.AddrPort
		local    bool
		want     string
	}{
		// Section 2.1's example.
		{"v1 TCP4", 1, ap("192.168.0.1:56324"), ap("192.168.0.11:443"), false,
			"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"},
		{"v1 TCP6", 1, ap("[2001:db8::1]:56324"), ap("[::1]:5672"), false,
			"PROXY TCP6 2001:db8::1 ::1 56324 5672\r\n"},
		// An IPv4-mapped address is announced as the IPv4 address it is.
		{"v1 mapped", 1, ap("[::ffff:10.0.0.1]:1000"), ap("[::ffff:10.0.0.2]:5672"), false,
			"PROXY TCP4 10.0.0.1 10.0.0.2 1000 5672\r\n"},
		// Mixed families are announced as IPv6 with the IPv4 address mapped.
		{"v1 mixed", 1, ap("10.0.0.1:1000"), ap("[2001:db8::2]:5672"), false,
			"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1000 5672\r\n"},
		// v1 has no LOCAL: the addresses are sent.
		{"v1 local ignored", 1, ap("192.168.0.1:56324"), ap("192.168.0.11:443"), true,
			"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"},
		// Section 2.2: version 2, command PROXY (0x21), TCP over IPv4 (0x11), length 12, then
		// source and destination addresses and ports, big-endian.
		{"v2 TCP4", 2, ap("192.168.0.1:56324"), ap("192.168.0.11:443"), false,
			v2sig + "\x21\x11\x00\x0C" + "\xC0\xA8\x00\x01" + "\xC0\xA8\x00\x0B" + "\xDC\x04" + "\x01\xBB"},
		// TCP over IPv6 (0x21), length 36.
		{"v2 TCP6", 2, ap("[2001:db8::1]:56324"), ap("[::1]:5672"), false,
			v2sig + "\x21\x21\x00\x24" + unhex(t, "20010db8000000000000000000000001") +
				unhex(t, "00000000000000000000000000000001") + "\xDC\x04" + "\x16\x28"},
		// LOCAL (0x20), UNSPEC (0x00), length 0: the receiver uses the connection's addresses.
		{"v2 LOCAL", 2, netip.AddrPort{}, netip.AddrPort{}, true, v2sig + "\x20\x00\x00\x00"},
		// Without any address, v1 says UNKNOWN.
		{"v1 UNKNOWN", 1, netip.AddrPort{}, netip.AddrPort{}, false, "PROXY UNKNOWN\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProxyHeader(tc.version, tc.src, tc.dst, nil, tc.local)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("header = %q\nwant     %q", got, tc.want)
			}
			// And the library's reader reads it back.
			h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(got)))
			if err != nil {
				t.Fatalf("reading the header back: %v", err)
			}
			if h.Command.IsProxy() {
				if s, ok := h.SourceAddr.(*net.TCPAddr); !ok || s.AddrPort().Port() != tc.src.Port() {
					t.Errorf("read back source %v, want %v", h.SourceAddr, tc.src)
				}
			}
		})
	}
	if _, err := ProxyHeader(3, netip.AddrPort{}, netip.AddrPort{}, nil, false); err == nil {
		t.Error("version 3 accepted")
	}
}

// firstRead is what acceptFirstRead saw: the first read of a connection (which must hold the
// whole PROXY header) and the header parsed from it.
type firstRead struct {
	raw    []byte
	header *proxyproto.Header
	conn   net.Conn // the rest of the stream, after the header
	err    error
}

// acceptFirstRead accepts one connection on ln and reports its first read, the PROXY header
// and, with tlsCfg, the TLS connection that follows the header.
func acceptFirstRead(t *testing.T, ln net.Listener, tlsCfg *tls.Config) <-chan firstRead {
	ch := make(chan firstRead, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- firstRead{err: err}
			return
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			ch <- firstRead{err: err}
			return
		}
		fr := firstRead{raw: buf[:n]}
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(buf[:n]), c))
		fr.header, fr.err = proxyproto.Read(br)
		fr.conn = &readerConn{Conn: c, r: br}
		if fr.err == nil && tlsCfg != nil {
			tc := tls.Server(fr.conn, tlsCfg)
			fr.err = tc.Handshake()
			fr.conn = tc
		}
		ch <- fr
	}()
	return ch
}

type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestDialSendsTheProxyHeaderFirstInOneWrite(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run("v"+strconv.Itoa(version), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := acceptFirstRead(t, ln, nil)
			s := NewServer(ServerOptions{Name: "a", Address: ln.Addr().String(), Weight: 1, SendProxy: version})
			src, dst := netip.MustParseAddrPort("203.0.113.7:4242"), netip.MustParseAddrPort("198.51.100.1:5672")
			c, err := s.Dial(context.Background(), DialOptions{Timeout: time.Second, Source: src, Destination: dst})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, ok := c.(*net.TCPConn); !ok {
				t.Errorf("Dial without TLS returned a %T", c)
			}
			fr := <-got
			if fr.err != nil {
				t.Fatal(fr.err)
			}
			want, _ := ProxyHeader(version, src, dst, nil, false)
			if !bytes.Equal(fr.raw, want) {
				t.Errorf("first read = %q, want exactly the header %q", fr.raw, want)
			}
			if sa, ok := fr.header.SourceAddr.(*net.TCPAddr); !ok || unmapPort(sa.AddrPort()) != src {
				t.Errorf("source = %v, want %v", fr.header.SourceAddr, src)
			}
			// Client bytes follow the header.
			if _, err := c.Write([]byte("AMQP")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(fr.conn, b); err != nil || string(b) != "AMQP" {
				t.Errorf("after the header: %q, %v", b, err)
			}
		})
	}
}

func TestDialWithoutSourceAnnouncesItsOwnAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		version int
		local   bool
		command proxyproto.ProtocolVersionAndCommand
	}{{1, false, proxyproto.PROXY}, {1, true, proxyproto.PROXY}, {2, false, proxyproto.PROXY}, {2, true, proxyproto.LOCAL}} {
		got := acceptFirstRead(t, ln, nil)
		s := NewServer(ServerOptions{Name: "a", Address: ln.Addr().String(), Weight: 1, SendProxy: tc.version})
		c, err := s.Dial(context.Background(), DialOptions{Timeout: time.Second, Check: true, ProxyLocal: tc.local})
		if err != nil {
			t.Fatal(err)
		}
		fr := <-got
		if fr.err != nil {
			t.Fatal(fr.err)
		}
		if fr.header.Command != tc.command {
			t.Errorf("v%d local=%v: command %v, want %v", tc.version, tc.local, fr.header.Command, tc.command)
		}
		if tc.command == proxyproto.PROXY && fr.header.SourceAddr.String() != c.LocalAddr().String() {
			t.Errorf("v%d: source %v, want the connection's own %v", tc.version, fr.header.SourceAddr, c.LocalAddr())
		}
		c.Close()
	}
}

func TestDialChecksGoToTheCheckPortAndAreNotCounted(t *testing.T) {
	check, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	_, port, _ := net.SplitHostPort(check.Addr().String())
	p, _ := strconv.Atoi(port)
	dead := "127.0.0.1:1" // nothing listens on port 1
	s := NewServer(ServerOptions{Name: "a", Address: dead, Weight: 1, CheckPort: p})
	if s.CheckAddress() != check.Addr().String() {
		t.Fatalf("CheckAddress = %s, want %s", s.CheckAddress(), check.Addr())
	}
	c, err := s.Dial(context.Background(), DialOptions{Timeout: time.Second, Check: true})
	if err != nil {
		t.Fatalf("check dial to the check port: %v", err)
	}
	c.Close()
	check.Close()
	if _, err := s.Dial(context.Background(), DialOptions{Timeout: time.Second, Check: true}); err == nil {
		t.Fatal("check dial to a closed port succeeded")
	}
	if s.ConnectErrors() != 0 {
		t.Errorf("a failed check counted as a connect error")
	}
}

func TestDialTLSAfterTheProxyHeader(t *testing.T) {
	certs, err := testenv.WriteTestCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool, srvCfg := certs.Pool(t), certs.ServerTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	got := acceptFirstRead(t, ln, srvCfg)
	s := NewServer(ServerOptions{Name: "a", Address: ln.Addr().String(), Weight: 1, SendProxy: 2,
		TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
	src := netip.MustParseAddrPort("[2001:db8::7]:4242")
	dst := netip.MustParseAddrPort("[2001:db8::1]:5671")
	c, err := s.Dial(context.Background(), DialOptions{Timeout: 2 * time.Second, Source: src, Destination: dst})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*tls.Conn); !ok {
		t.Fatalf("Dial with TLS returned a %T", c)
	}
	fr := <-got
	if fr.err != nil {
		t.Fatal(fr.err)
	}
	if want, _ := ProxyHeader(2, src, dst, nil, false); !bytes.HasPrefix(fr.raw, want) {
		t.Errorf("first read %q does not start with the header %q", fr.raw, want)
	}
	if _, err := c.Write([]byte("over TLS")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if _, err := io.ReadFull(fr.conn, b); err != nil || string(b) != "over TLS" {
		t.Errorf("read over TLS: %q, %v", b, err)
	}

	// A server whose certificate does not verify: the dial fails and counts.
	got = acceptFirstRead(t, ln, srvCfg)
	bad := NewServer(ServerOptions{Name: "b", Address: ln.Addr().String(), Weight: 1,
		TLS: &tls.Config{RootCAs: pool, ServerName: "rabbit.example"}})
	if _, err := bad.Dial(context.Background(), DialOptions{Timeout: 2 * time.Second}); err == nil {
		t.Fatal("a certificate for another name was accepted")
	} else if bad.ConnectErrors() != 1 {
		t.Errorf("a failed TLS handshake: connect errors %d, want 1 (err %v)", bad.ConnectErrors(), err)
	}
	<-got
}

// A check on another port leaves TLS and the PROXY header out when told to (HAProxy's defaults
// for a server with "port"), while sessions keep both.
func TestCheckWithoutTLSAndProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 64)
		n, _ := c.Read(b)
		got <- b[:n]
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	s := NewServer(ServerOptions{Name: "s", Address: "127.0.0.1:1", CheckPort: p, SendProxy: 2,
		TLS: &tls.Config{InsecureSkipVerify: true}, CheckWithoutTLS: true, CheckWithoutProxy: true})
	if s.CheckSendProxy() != 0 || s.CheckTLS() != nil || s.SendProxy() != 2 || s.TLS() == nil {
		t.Fatalf("check proxy %d tls %v, session proxy %d tls %v", s.CheckSendProxy(), s.CheckTLS(), s.SendProxy(), s.TLS())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Check: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*net.TCPConn); !ok {
		t.Errorf("the check connection is %T, want plain TCP", c)
	}
	_, _ = c.Write([]byte("GET /"))
	if b := <-got; string(b) != "GET /" {
		t.Errorf("the check port got %q first, want the check's own bytes", b)
	}
	c.Close()
}

// TestAgentHealth wants a server down while its agent says so, whatever its checks say, and
// operator states to win over both.
func TestAgentHealth(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Address: "127.0.0.1:1", Weight: 1})
	if from, to := s.SetAgentHealth(false); from != StateUp || to != StateDown || s.Eligible() || !s.Healthy() {
		t.Fatalf("agent down: %v -> %v, eligible %v, healthy %v", from, to, s.Eligible(), s.Healthy())
	}
	s.SetHealth(true)
	if s.State() != StateDown {
		t.Errorf("a passing check brought up a server its agent says is down")
	}
	s.SetAdmin(AdminDrain)
	if s.State() != StateDrain {
		t.Errorf("drain: state %v", s.State())
	}
	s.SetAdmin(AdminReady)
	if from, to := s.SetAgentHealth(true); from != StateDown || to != StateUp || !s.AgentHealthy() {
		t.Errorf("agent up: %v -> %v", from, to)
	}
	if n := s.Transitions(StateDown); n != 2 {
		t.Errorf("%d transitions to down, want 2", n)
	}
}
