//go:build linux

package proxy

import (
	"bytes"
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/amqpwire"
)

// legGoroutines counts the goroutines running a relay direction.
func legGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte("proxy.(*session).runLeg("))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// parkedFixture runs an AMQP frontend in front of an echo broker that parks sessions idle for
// 10 ms.
func parkedFixture(t *testing.T, r Route) *fixture {
	return start(t, FrontendOptions{Mode: ModeAMQP, ParkAfter: 10 * time.Millisecond}, r, echoBroker(t).Addr())
}

// An idle session is parked: its directions' goroutines exit. Small chunks (a heartbeat, a small
// message) are relayed while it stays parked, counted as the relay counts them; a large one
// unparks it, arrives whole, and the session parks again.
func TestIdleSessionsAreParked(t *testing.T) {
	fx := parkedFixture(t, Route{})
	const n = 20
	conns := make([]net.Conn, n)
	sent, recv := 0, 0
	for i := range conns {
		c, h := amqpConnectCounting(t, fx.addr())
		conns[i], sent, recv = c, sent+h.sent, recv+h.recv
	}
	waitFor(t, "every session parked", func() bool { return fx.f.Stats().Parked == n })
	if g := legGoroutines(); g != 0 {
		t.Errorf("%d relay goroutines while every session is parked, want 0", g)
	}
	heartbeat := string([]byte{amqpwire.FrameHeartbeat, 0, 0, 0, 0, 0, 0, amqpwire.FrameEnd})
	for _, c := range conns {
		echoes(t, c, heartbeat)
	}
	if p := fx.f.Stats().Parked; p != n {
		t.Errorf("%d sessions parked after a heartbeat each way, want all %d (relayed while parked)", p, n)
	}
	if g := legGoroutines(); g != 0 {
		t.Errorf("%d relay goroutines after the heartbeats, want 0", g)
	}
	big := strings.Repeat("y", 300<<10)
	echoes(t, conns[0], big)
	waitFor(t, "every session parked again", func() bool { return fx.f.Stats().Parked == n })
	echoes(t, conns[0], heartbeat)
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "sessions end", func() bool { return fx.f.Stats().Active == 0 })
	wantTo := uint64(sent + n*len(heartbeat) + len(big) + len(heartbeat))
	wantBack := uint64(recv + n*len(heartbeat) + len(big) + len(heartbeat))
	if got := fx.servers[0].BytesToServer(); got != wantTo {
		t.Errorf("bytes to server = %d, want %d", got, wantTo)
	}
	if got := fx.servers[0].BytesToClient(); got != wantBack {
		t.Errorf("bytes to client = %d, want %d", got, wantBack)
	}
	if strings.Contains(fx.logs.String(), "end=idle_timeout") || !strings.Contains(fx.logs.String(), "end=client_closed") {
		t.Errorf("want every session to end client_closed:\n%s", fx.logs)
	}
}

// A parked session's idle timeout still ends it: the sweeper unparks it before the timeout and
// the directions' deadlines decide, as without parking.
func TestParkedSessionTimesOut(t *testing.T) {
	fx := parkedFixture(t, Route{IdleTimeout: 500 * time.Millisecond})
	c := amqpConnect(t, fx.addr())
	waitFor(t, "the session parked", func() bool { return fx.f.Stats().Parked == 1 })
	expectClosed(t, c)
	waitFor(t, "the session ends", func() bool { return fx.f.Stats().Active == 0 })
	if !strings.Contains(fx.logs.String(), "end=idle_timeout") {
		t.Errorf("access log lacks end=idle_timeout:\n%s", fx.logs)
	}
}

// Closing a parked session from outside, or its client leaving, reaches it.
func TestParkedSessionsEnd(t *testing.T) {
	fx := parkedFixture(t, Route{})
	byAdmin := amqpConnect(t, fx.addr())
	halfClosed := amqpConnect(t, fx.addr())
	graceful := amqpConnect(t, fx.addr())
	waitFor(t, "the sessions parked", func() bool { return fx.f.Stats().Parked == 3 })
	ids := map[uint64]bool{}
	for _, in := range fx.f.Sessions() {
		ids[in.ID] = true
	}
	sessionOf := func(c net.Conn) uint64 {
		t.Helper()
		for _, in := range fx.f.Sessions() {
			if in.Client.String() == c.LocalAddr().String() {
				return in.ID
			}
		}
		t.Fatalf("no session of %s", c.LocalAddr())
		return 0
	}

	if !fx.f.CloseSession(sessionOf(byAdmin)) {
		t.Fatal("CloseSession found no session")
	}
	expectClosed(t, byAdmin)

	// The client's FIN: the echo broker finishes and closes, which ends the session.
	if err := halfClosed.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, halfClosed)

	if !fx.f.CloseGracefully(sessionOf(graceful), EndRebalanced, "test") {
		t.Fatal("CloseGracefully found no session")
	}
	_ = graceful.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := amqpwire.ReadFrame(graceful, 1<<20)
	if err != nil {
		t.Fatalf("no Connection.Close from the parked session: %v", err)
	}
	if m, ok := connectionMethod(f); !ok || m != amqpwire.MethodClose || binary.BigEndian.Uint16(f.Payload[4:]) != 320 {
		t.Fatalf("frame %+v, want Connection.Close 320", f)
	}
	closeOK, _ := amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionCloseOk{})
	if _, err := graceful.Write(closeOK); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, graceful)
	waitFor(t, "the sessions end", func() bool { return fx.f.Stats().Active == 0 })
	for _, want := range []string{"end=closed_by_admin", "end=client_closed", "end=rebalanced"} {
		if !strings.Contains(fx.logs.String(), want) {
			t.Errorf("access log lacks %s:\n%s", want, fx.logs)
		}
	}
}

// ParkAfter < 0 keeps every session on its goroutines.
func TestParkingOff(t *testing.T) {
	fx := start(t, FrontendOptions{Mode: ModeAMQP, ParkAfter: -1}, Route{}, echoBroker(t).Addr())
	c := amqpConnect(t, fx.addr())
	echoes(t, c, "x")
	// A sweep an hour from now leaves the session alone.
	p := &parker{f: fx.f}
	p.setAfter()
	for _, s := range fx.f.snapshot(nil) {
		s.sweep(p, time.Now().Add(time.Hour))
		if st := s.parkState.Load(); st != parkNone {
			t.Fatalf("park state %d after a sweep with parking off", st)
		}
	}
	if g := legGoroutines(); g != 2 {
		t.Errorf("%d relay goroutines, want 2", g)
	}
}
