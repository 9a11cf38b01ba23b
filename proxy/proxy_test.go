package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/balancer"
	"github.com/amqplb/amqplb/internal/amqp10"
	"github.com/amqplb/amqplb/internal/amqpwire"
	"github.com/amqplb/amqplb/internal/testenv"
)

// echoBroker returns a fake broker that completes the AMQP handshake for real, then echoes.
func echoBroker(t testing.TB) *testenv.FakeBroker {
	return testenv.StartFakeBroker(t, (&testenv.FakeAMQP{Echo: true}).Handle)
}

// handshake is the client side of an AMQP connection handshake, as amqp091-go does it.
type handshake struct {
	sent, recv int // bytes
}

// clientHandshake runs the handshake on c, up to Open-Ok. A broker's Connection.Close is returned
// as an error naming its code.
func clientHandshake(c net.Conn) (handshake, error) { return clientHandshakeAfter(c, nil) }

// clientHandshakeAfter runs the handshake on c, sending first (a PROXY header, say) in the same
// write as the protocol header. first is not counted in the bytes sent.
func clientHandshakeAfter(c net.Conn, first []byte) (handshake, error) {
	var h handshake
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	write := func(ms ...amqpwire.Method) error {
		var buf []byte
		for _, m := range ms {
			var err error
			if buf, err = amqpwire.AppendMethodFrame(buf, 0, m); err != nil {
				return err
			}
		}
		h.sent += len(buf)
		_, err := c.Write(buf)
		return err
	}
	read := func() (amqpwire.Method, error) {
		f, err := amqpwire.ReadFrame(c, 0)
		if err != nil {
			return nil, err
		}
		h.recv += len(f.Payload) + 8
		m, err := amqpwire.DecodeMethod(f.Payload)
		if cl, ok := m.(*amqpwire.ConnectionClose); ok {
			return nil, fmt.Errorf("broker closed: %d %s", cl.ReplyCode, cl.ReplyText)
		}
		return m, err
	}
	if _, err := c.Write(append(append([]byte(nil), first...), testenv.AMQPHeader...)); err != nil {
		return h, err
	}
	h.sent += 8
	if _, err := read(); err != nil { // Start
		return h, err
	}
	if err := write(amqpwire.PlainStartOk("guest", "guest", amqpwire.ClientProperties("test", ""))); err != nil {
		return h, err
	}
	if _, err := read(); err != nil { // Tune
		return h, err
	}
	if err := write(&amqpwire.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072}, &amqpwire.ConnectionOpen{VirtualHost: "/"}); err != nil {
		return h, err
	}
	_, err := read() // Open-Ok
	return h, err
}

type fixture struct {
	f       *Frontend
	servers []*backend.Server
	logs    *testenv.Buffer
}

// start runs a frontend on 127.0.0.1:0 in front of addrs and shuts it down when t ends.
func start(t testing.TB, o FrontendOptions, r Route, addrs ...string) *fixture {
	t.Helper()
	var servers []backend.ServerOptions
	for _, a := range addrs {
		servers = append(servers, backend.ServerOptions{Address: a})
	}
	return startServers(t, o, r, servers...)
}

// startServers runs a frontend (on o.Bind, 127.0.0.1:0 by default) in front of servers (named
// a, b, ... with weight 1 unless set) and shuts it down when t ends.
func startServers(t testing.TB, o FrontendOptions, r Route, servers ...backend.ServerOptions) *fixture {
	t.Helper()
	b := &backend.Backend{Name: "test"}
	for i, so := range servers {
		if so.Name == "" {
			so.Name = string(rune('a' + i))
		}
		if so.Weight == 0 {
			so.Weight = 1
		}
		b.Servers = append(b.Servers, backend.NewServer(so))
	}
	if r.Policy == nil {
		p, err := balancer.New("roundrobin")
		if err != nil {
			t.Fatal(err)
		}
		r.Policy = p
	}
	r.Backend = b
	logs := &testenv.Buffer{}
	o.Name = "fe"
	if o.Bind == "" {
		o.Bind = "127.0.0.1:0"
	}
	if o.Logger == nil { // a caller's own logger keeps its own AccessLog setting (benchmarks)
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.AccessLog = true
	}
	f := NewFrontend(o, &r)
	if err := f.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- f.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("frontend log:\n%s", logs.String())
		}
	})
	return &fixture{f: f, servers: b.Servers, logs: logs}
}

func (fx *fixture) addr() string { return fx.f.Addr().String() }

// amqpConnect opens a connection through the frontend and completes the AMQP handshake.
func amqpConnect(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, _ := amqpConnectCounting(t, addr)
	return c
}

func amqpConnectCounting(t testing.TB, addr string) (net.Conn, handshake) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h, err := clientHandshake(c)
	if err != nil {
		t.Fatalf("AMQP handshake through the frontend: %v", err)
	}
	return c, h
}

func echoes(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// expectClosed asserts that the peer closes c within a few seconds, returning what it sent first.
func expectClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("expected the connection to be closed, got %v", err)
	}
	return b
}

func TestAMQPSessionRelaysBothWays(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	c, h := amqpConnectCounting(t, fx.addr())
	echoes(t, c, "hello")
	big := strings.Repeat("x", 200<<10) // takes the splice path
	echoes(t, c, big)
	c.Close()
	waitFor(t, "session end", func() bool { return fx.f.Stats().Active == 0 })
	if got, want := fx.servers[0].BytesToServer(), uint64(h.sent+5+len(big)); got != want {
		t.Errorf("bytes to server = %d, want %d", got, want)
	}
	if got, want := fx.servers[0].BytesToClient(), uint64(h.recv+5+len(big)); got != want {
		t.Errorf("bytes to client = %d, want %d", got, want)
	}
	if !strings.Contains(fx.logs.String(), "end=client_closed") {
		t.Errorf("access log lacks end=client_closed:\n%s", fx.logs)
	}
}

func TestBadHeaderIsAnsweredAndNeverReachesABroker(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	// A bare AMQP 1.0 header (no SASL) gets the SASL header back, as RabbitMQ 4 answers it.
	for hdr, want := range map[string][]byte{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n": testenv.AMQPHeader,
		"AMQP\x00\x01\x00\x00":              amqp10.HeaderSASL[:],
		"AMQP\x00\x00\x09\x00":              testenv.AMQPHeader,
	} {
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(hdr)); err != nil {
			t.Fatal(err)
		}
		got := expectClosed(t, c)
		c.Close()
		if !bytes.Equal(got, want) {
			t.Errorf("reply to %q = %q, want %q", hdr, got, want)
		}
	}
	if n := fb.Accepted(); n != 0 {
		t.Errorf("broker saw %d connections, want 0", n)
	}
	waitFor(t, "refusals counted", func() bool { return fx.f.Stats().Refused["bad_header"] == 3 })
}

func TestSlowHeaderTimesOut(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, HandshakeTimeout: 200 * time.Millisecond}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("AMQ")) // a slowloris never finishes its header
	t0 := time.Now()
	expectClosed(t, c)
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
	if fb.Accepted() != 0 {
		t.Errorf("broker saw the slow client")
	}
	waitFor(t, "refusal counted", func() bool { return fx.f.Stats().Refused["handshake_timeout"] == 1 })
}

func TestMaxConnectionsRefusesWithoutDisturbingOthers(t *testing.T) {
	fb := echoBroker(t)
	global := NewLimiter(3)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, MaxConnections: 2, Global: global}, Route{}, fb.Addr())
	c1 := amqpConnect(t, fx.addr())
	c2 := amqpConnect(t, fx.addr())
	over, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_, _ = over.Write(testenv.AMQPHeader)
	if got := expectClosed(t, over); len(got) != 0 {
		t.Errorf("refused client got %q", got)
	}
	echoes(t, c1, "still")
	echoes(t, c2, "working")
	if fb.Accepted() != 2 {
		t.Errorf("broker accepted %d, want 2", fb.Accepted())
	}
	if n := fx.f.Stats().Refused["maxconn"]; n != 1 {
		t.Errorf("refused maxconn = %d, want 1", n)
	}
	// Freed slots are reusable.
	c1.Close()
	waitFor(t, "slot freed", func() bool { return global.InUse() == 1 })
	amqpConnect(t, fx.addr())
}

func TestGlobalLimitIsSharedAcrossFrontends(t *testing.T) {
	fb := echoBroker(t)
	global := NewLimiter(1)
	a := start(t, FrontendOptions{Mode: ModeAMQP, Global: global}, Route{}, fb.Addr())
	b := start(t, FrontendOptions{Mode: ModeAMQP, Global: global}, Route{}, fb.Addr())
	amqpConnect(t, a.addr())
	c, err := net.Dial("tcp", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosed(t, c)
	if b.f.Stats().Refused["maxconn"] != 1 {
		t.Errorf("second frontend did not count the refusal")
	}
}

func TestTCPModeHalfClose64MiB(t *testing.T) {
	const size = 64 << 20
	// An echo server that hashes what it receives and echoes it back; it half-closes after the
	// client did, so the client half-closes first while the echo is still flowing back.
	serverGot := make(chan []byte, 1)
	fb := testenv.StartFakeBroker(t, func(c net.Conn) {
		h := sha256.New()
		buf := make([]byte, 64<<10)
		_, err := io.CopyBuffer(struct{ io.Writer }{io.MultiWriter(c, h)}, struct{ io.Reader }{c}, buf)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		if err != nil {
			t.Errorf("echo server: %v", err)
		}
		serverGot <- h.Sum(nil)
	})
	fx := start(t, FrontendOptions{Mode: ModeTCP}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := sha256.New()
	writeErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(c, sent), io.LimitReader(rand.Reader, size))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite() // the client half-closes first
		}
		writeErr <- err
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("client write: %v", err)
	}
	if n != size {
		t.Fatalf("client received %d bytes, want %d", n, size)
	}
	if !bytes.Equal(<-serverGot, sent.Sum(nil)) {
		t.Errorf("client→server: the server's sha256 differs from what the client sent")
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Errorf("server→client: the echo's sha256 differs from what the client sent")
	}
}

// Many small writes each way, of random sizes around the relay's read buffer, from several
// clients at once: bytes that arrive while the relay writes, and the FIN after them, must still
// be moved, in order.
func TestSmallWritesArriveInOrderBothWays(t *testing.T) {
	fb := testenv.StartFakeBroker(t, func(c net.Conn) {
		buf := make([]byte, 1000) // echoes in pieces, so the way back is many small writes too
		_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
		_ = c.(*net.TCPConn).CloseWrite()
	})
	fx := start(t, FrontendOptions{Mode: ModeTCP}, Route{}, fb.Addr())
	var wg sync.WaitGroup
	for client := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", fx.addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			type result struct {
				n   int
				sum []byte
			}
			sent := make(chan result, 1)
			go func() {
				rng := mrand.New(mrand.NewPCG(uint64(client), 1))
				h, total := sha256.New(), 0
				for i := range 1500 {
					msg := bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(3*readBufSize/2))
					if _, err := c.Write(msg); err != nil {
						break
					}
					h.Write(msg)
					total += len(msg)
				}
				_ = c.(*net.TCPConn).CloseWrite()
				sent <- result{total, h.Sum(nil)}
			}()
			got := sha256.New()
			n, err := io.Copy(got, c)
			want := <-sent
			if err != nil {
				t.Errorf("client %d: read after %d bytes: %v", client, n, err)
				return
			}
			if int(n) != want.n || !bytes.Equal(got.Sum(nil), want.sum) {
				t.Errorf("client %d: echoed %d bytes, sent %d, or their sha256 differ", client, n, want.n)
			}
		}()
	}
	wg.Wait()
}

// A broker that answers and closes at once: its FIN often arrives with the data, under one
// readiness edge, and must still reach the client (a relay that waited for a new edge after a
// short read hung here).
func TestDataFollowedByFINReachesTheClient(t *testing.T) {
	fb := testenv.StartFakeBroker(t, func(c net.Conn) {
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err == nil {
			_, _ = c.Write(buf[:n])
		}
		_ = c.Close()
	})
	fx := start(t, FrontendOptions{Mode: ModeTCP}, Route{}, fb.Addr())
	for i := range 300 {
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "ping" {
			t.Fatalf("connection %d: got %q, %v; want the echo, then EOF", i, got, err)
		}
	}
}

// A broker that stops reading (RabbitMQ blocks publishers that way under a memory alarm) fills
// the relay's way to it; closing the session must still be immediate. (A relay that waited for
// the broker while holding the client socket's read lock made Close of that socket wait for it
// forever.)
func TestSessionsCloseWhileTheBrokerIsNotReading(t *testing.T) {
	hold := make(chan struct{})
	fb := testenv.StartFakeBroker(t, func(c net.Conn) { <-hold })
	defer close(hold)
	fx := start(t, FrontendOptions{Mode: ModeTCP}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	blocked := make(chan struct{})
	go func() {
		b := make([]byte, 1000)
		for {
			_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := c.Write(b); err != nil {
				close(blocked) // every buffer on the way to the broker is full
				return
			}
		}
	}()
	select {
	case <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("the buffers towards a broker that does not read never filled")
	}
	done := make(chan int, 1)
	go func() { done <- fx.f.CloseSessions(fx.servers[0], EndServerDown) }()
	select {
	case n := <-done:
		if n != 1 {
			t.Errorf("CloseSessions = %d, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("CloseSessions hangs on a session whose broker does not read")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the client was not disconnected: %v", err)
	}
}

func TestRetryThenRedispatchHidesADeadServer(t *testing.T) {
	fb := echoBroker(t)
	var failures sync.Map
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{Retries: 3, Redispatch: true,
		OnConnectFailure: func(s *backend.Server, err error) { failures.Store(s.Name(), err) }},
		testenv.FreeAddr(t), fb.Addr())
	for range 20 {
		c := amqpConnect(t, fx.addr())
		echoes(t, c, "ok")
		c.Close()
	}
	dead := fx.servers[0]
	if dead.ConnectErrors() == 0 {
		t.Errorf("dead server has no connect errors")
	}
	if _, ok := failures.Load("a"); !ok {
		t.Errorf("OnConnectFailure was not called for the dead server")
	}
	if fb.Accepted() != 20 {
		t.Errorf("live server accepted %d, want 20", fb.Accepted())
	}
}

// A server drained while a session's connect to it is failing is not retried: the session
// goes to another server, as a new one would.
func TestServerDrainedDuringAConnectIsNotRetried(t *testing.T) {
	var drained func()
	ready := make(chan struct{})
	var attempts atomic.Int32
	a := testenv.StartFakeBroker(t, func(c net.Conn) {
		<-ready
		if attempts.Add(1) == 1 {
			drained() // an operator drains a; this attempt fails (closed before Connection.Start)
			return
		}
		(&testenv.FakeAMQP{Echo: true}).Handle(c)
	})
	b := echoBroker(t)
	first, err := balancer.New("first")
	if err != nil {
		t.Fatal(err)
	}
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{Policy: first, Retries: 3, Redispatch: true}, a.Addr(), b.Addr())
	drained = func() { fx.servers[0].SetAdmin(backend.AdminDrain) }
	close(ready)
	c := amqpConnect(t, fx.addr())
	echoes(t, c, "ok")
	if a.Accepted() != 1 || b.Accepted() != 1 {
		t.Errorf("connects: %d to the drained server, %d to the other; want 1 and 1", a.Accepted(), b.Accepted())
	}
}

func TestSilentBrokerIsSkippedInAMQPMode(t *testing.T) {
	silent := testenv.StartFakeBroker(t, testenv.Silent)
	good := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{Retries: 2, Redispatch: true, ConnectTimeout: 200 * time.Millisecond},
		silent.Addr(), good.Addr())
	for range 4 {
		c := amqpConnect(t, fx.addr())
		echoes(t, c, "ok")
		c.Close()
	}
	if silent.Accepted() == 0 {
		t.Errorf("the silent broker was never tried; the test proves nothing")
	}
}

func TestEveryAttemptFailedClosesTheClient(t *testing.T) {
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{Retries: 2, Redispatch: true}, testenv.FreeAddr(t), testenv.FreeAddr(t))
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(testenv.AMQPHeader)
	expectClosed(t, c)
	waitFor(t, "session end", func() bool { return fx.f.Stats().Active == 0 })
	if n := fx.f.Stats().Refused["connect_failed"]; n != 1 {
		t.Errorf("refused connect_failed = %d, want 1", n)
	}
	if got := fx.servers[0].ConnectErrors() + fx.servers[1].ConnectErrors(); got != 3 {
		t.Errorf("dials = %d, want 3 (1 + retries)", got)
	}
	if !strings.Contains(fx.logs.String(), "end=connect_failed") {
		t.Errorf("access log lacks end=connect_failed:\n%s", fx.logs)
	}
}

func TestIdleTimeout(t *testing.T) {
	fb := echoBroker(t)
	// The idle timeout is 20 ticks long, so that a loaded machine (a tick taking several times
	// its 50 ms) does not make the busy session look idle.
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{IdleTimeout: time.Second}, fb.Addr())
	busy := amqpConnect(t, fx.addr())
	idle := amqpConnect(t, fx.addr())
	t0 := time.Now()
	// Keep one session busy past several idle periods; it must survive.
	for time.Since(t0) < 2500*time.Millisecond {
		echoes(t, busy, "tick")
		time.Sleep(50 * time.Millisecond) // workload: the busy client's pace, not a wait
	}
	expectClosed(t, idle)
	echoes(t, busy, "still here")
	// The client's socket is closed before the access-log line is written; the session is
	// counted out after it.
	waitFor(t, "the idle session ends", func() bool { return fx.f.Stats().Active == 1 })
	if !strings.Contains(fx.logs.String(), "end=idle_timeout") {
		t.Errorf("access log lacks end=idle_timeout:\n%s", fx.logs)
	}
}

func TestShutdownDrainsThenCloses(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	c := amqpConnect(t, fx.addr())
	addr := fx.addr()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fx.f.Shutdown(ctx) }()
	waitFor(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	echoes(t, c, "during drain") // open sessions keep working while draining
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	expectClosed(t, c)
	if !strings.Contains(fx.logs.String(), "end=shutdown") {
		t.Errorf("access log lacks end=shutdown:\n%s", fx.logs)
	}
}

func TestCloseSessionsOfOneServer(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	c := amqpConnect(t, fx.addr())
	if n := fx.f.CloseSessions(fx.servers[0], EndServerDown); n != 1 {
		t.Fatalf("closed %d sessions, want 1", n)
	}
	expectClosed(t, c)
}

// fakeAcceptor fails with errs first, then hands out conns, then reports closed.
type fakeAcceptor struct {
	errs  []error
	conns []*net.TCPConn
}

func (a *fakeAcceptor) AcceptTCP() (*net.TCPConn, error) {
	if len(a.errs) > 0 {
		err := a.errs[0]
		a.errs = a.errs[1:]
		return nil, err
	}
	if len(a.conns) > 0 {
		c := a.conns[0]
		a.conns = a.conns[1:]
		return c, nil
	}
	return nil, net.ErrClosed
}

func TestAcceptLoopSurvivesEMFILE(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	// A real server-side conn to hand to the loop after the errors.
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srvSide, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	acc := &fakeAcceptor{errs: []error{emfile, emfile, emfile}, conns: []*net.TCPConn{srvSide}}
	t0 := time.Now()
	if err := fx.f.serve(acc); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if d := time.Since(t0); d < 35*time.Millisecond {
		t.Errorf("three EMFILEs took %v; want backoff of 5+10+20ms", d)
	}
	// The connection accepted after the errors is served.
	if _, err := clientHandshake(client); err != nil {
		t.Fatalf("connection after EMFILE not served: %v", err)
	}
	if !strings.Contains(fx.logs.String(), "too many open files") {
		t.Errorf("EMFILE not logged:\n%s", fx.logs)
	}
}

// countFDs returns the number of open fds and how many of them are pipes. It reads Linux's
// /proc/self/fd: elsewhere the test skips; on Linux a missing /proc fails it.
func countFDs(t testing.TB) (all, pipes int) {
	if runtime.GOOS != "linux" {
		t.Skipf("counting open fds reads /proc/self/fd, which %s does not have", runtime.GOOS)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return len(ents), pipes
}

func TestIdleSessionsHoldNoPipes(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	_, pipesBefore := countFDs(t)
	big := strings.Repeat("y", 100<<10) // forces splice, which takes pipes from the runtime's pool
	var conns []net.Conn
	for range 50 {
		c := amqpConnect(t, fx.addr())
		echoes(t, c, big)
		conns = append(conns, c)
	}
	// Pipes returned to the runtime's splice pool are closed by cleanups after a few GCs.
	var pipesAfter int
	_ = testenv.PollEvery(500*time.Millisecond, 10*time.Millisecond, func() error {
		runtime.GC()
		if _, pipesAfter = countFDs(t); pipesAfter-pipesBefore > 4 {
			return errors.New("pipes still open")
		}
		return nil
	})
	if extra := pipesAfter - pipesBefore; extra > 4 {
		t.Errorf("50 idle sessions hold %d pipe fds; an idle session must hold none", extra)
	}
	for _, c := range conns {
		c.Close()
	}
}

func TestNoLeaksAfter1000Sessions(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	warm := amqpConnect(t, fx.addr())
	warm.Close()
	waitFor(t, "warm-up session end", func() bool { return fx.f.Stats().Active == 0 && fb.Active() == 0 })
	fdBefore, _ := countFDs(t)
	gBefore := runtime.NumGoroutine()
	for i := range 1000 {
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := clientHandshake(c); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 0 {
			buf := make([]byte, 4)
			_, _ = c.Write([]byte("data"))
			_, _ = io.ReadFull(c, buf)
		}
		c.Close()
	}
	waitFor(t, "sessions end", func() bool { return fx.f.Stats().Active == 0 && fb.Active() == 0 })
	waitFor(t, "goroutines and fds back to baseline", func() bool {
		runtime.GC() // closes pipes left in the runtime's splice pool
		fd, _ := countFDs(t)
		return runtime.NumGoroutine() <= gBefore && fd <= fdBefore
	})
	if fx.f.Stats().Total != 1001 {
		t.Errorf("total = %d, want 1001", fx.f.Stats().Total)
	}
}

// waitFor waits until cond holds, asking every 10 ms (it asks this process, which is cheap).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.EventuallyEvery(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !cond() {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		return nil
	})
}

func TestUpdateChangesNewSessionsOnly(t *testing.T) {
	oldB := echoBroker(t)
	newB := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, oldB.Addr())
	before := amqpConnect(t, fx.addr())

	p, _ := balancer.New("roundrobin")
	nb := &backend.Backend{Name: "new", Servers: []*backend.Server{
		backend.NewServer(backend.ServerOptions{Name: "n", Address: newB.Addr(), Weight: 1}),
	}}
	fx.f.Update(FrontendOptions{Name: "renamed", Mode: ModeAMQP, MaxConnections: 2, Logger: fx.f.opts.Logger, AccessLog: true},
		&Route{Backend: nb, Policy: p})
	after := amqpConnect(t, fx.addr())
	echoes(t, before, "old route still works")
	echoes(t, after, "new route")
	if oldB.Accepted() != 1 || newB.Accepted() != 1 {
		t.Errorf("old broker accepted %d, new %d; want 1 and 1", oldB.Accepted(), newB.Accepted())
	}
	// The new max_connections (2) applies: a third connection is refused.
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosed(t, c)
	if fx.f.Name() != "renamed" {
		t.Errorf("name = %q after Update", fx.f.Name())
	}
}
