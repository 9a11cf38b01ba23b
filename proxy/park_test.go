//go:build linux

package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	// A session is counted parked before its directions' goroutines have returned.
	waitFor(t, "every session parked, its goroutines gone", func() bool {
		return fx.f.Stats().Parked == n && legGoroutines() == 0
	})
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

// waitSweeps waits until the frontend's sweeper has made n more passes.
func waitSweeps(t *testing.T, f *Frontend, n int64) {
	t.Helper()
	p := f.parker.Load()
	if p == nil {
		t.Fatal("no parker")
	}
	from := p.sweeps.Load()
	waitFor(t, "sweeps", func() bool { return p.sweeps.Load() >= from+n })
}

// stuckBroker accepts one connection, never reads it, and writes a byte each time it is told
// to; stop (also run at cleanup) closes it.
func stuckBroker(t *testing.T) (addr string, send chan<- struct{}, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch, quit, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for {
			select {
			case <-quit:
				return
			case <-ch:
				if _, err := c.Write([]byte{'h'}); err != nil {
					return
				}
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); ln.Close(); <-done }) }
	t.Cleanup(stop)
	return ln.Addr().String(), ch, stop
}

// A broker that stops reading (a resource alarm) while it still sends: the client's direction
// blocks writing, and what the broker sends must still reach the client however many sweeps
// pass, including when the park request came just before the write blocked (the stopped
// direction runs again: cancelStalledPark).
func TestParkingNeverStallsTheOtherDirection(t *testing.T) {
	for _, requestFirst := range []bool{false, true} {
		addr, send, stop := stuckBroker(t)
		fx := start(t, FrontendOptions{Mode: ModeTCP, ParkAfter: 10 * time.Millisecond}, Route{}, addr)
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the session relays", func() bool {
			l := fx.f.snapshot(nil)
			return len(l) == 1 && l[0].relaying.Load()
		})
		s := fx.f.snapshot(nil)[0]
		writing := make(chan struct{})
		t.Cleanup(func() { c.Close(); <-writing })
		go func() {
			defer close(writing)
			buf := make([]byte, 1<<20)
			for range 64 { // far more than the socket buffers hold
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		waitFor(t, "the client's direction blocked", func() bool {
			s.mu.Lock() // parking replaces the session's sockets (bare, dress)
			defer s.mu.Unlock()
			return pendingOut(s.upRaw)
		})
		if requestFirst {
			// As if the sweeper had asked just before the write blocked (it checks pendingOut
			// first, but the direction can block right after): the broker's direction stops
			// for the request, the client's cannot.
			s.mu.Lock()
			s.parkState.Store(parkRequested)
			s.parkReqAt = time.Now()
			_ = s.client.SetReadDeadline(time.Unix(1, 0))
			_ = s.up.SetReadDeadline(time.Unix(1, 0))
			s.mu.Unlock()
		}
		for i := range 3 {
			waitSweeps(t, fx.f, 4)
			send <- struct{}{}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 1)
			if _, err := c.Read(b); err != nil {
				t.Fatalf("request first %v: byte %d from the broker never reached the client: %v", requestFirst, i, err)
			}
		}
		stop() // the broker goes, the writes fail
		c.Close()
		<-writing
		waitFor(t, "the session ends", func() bool { return fx.f.Stats().Active == 0 })
	}
}

// Bytes a parked session's wake-up could not write go out before a graceful close's frames
// (the state deliver leaves after a short write, then a close before the directions run).
func TestPendingBytesGoBeforeAGracefulClose(t *testing.T) {
	fx := parkedFixture(t, Route{})
	c := amqpConnect(t, fx.addr())
	waitFor(t, "parked", func() bool { return fx.f.Stats().Parked == 1 })
	s := fx.f.snapshot(nil)[0]
	hb := []byte{amqpwire.FrameHeartbeat, 0, 0, 0, 0, 0, 0, amqpwire.FrameEnd}
	s.mu.Lock()
	s.tracks[1].advance(hb)
	s.pending[1] = append([]byte(nil), hb...)
	s.mu.Unlock()
	if !fx.f.CloseGracefully(s.id, EndRebalanced, "test") {
		t.Fatal("CloseGracefully found no session")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []byte{amqpwire.FrameHeartbeat, amqpwire.FrameMethod} {
		f, err := amqpwire.ReadFrame(c, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != want {
			t.Fatalf("frame type %d, want %d (the pending heartbeat, then the Close)", f.Type, want)
		}
	}
	c.Close()
	waitFor(t, "the session ends", func() bool { return fx.f.Stats().Active == 0 })
}

// exhaustFDs lowers the process's soft RLIMIT_NOFILE to just above the fds open now and opens
// /dev/null until no fd is left. refill takes the fds freed since; release gives them all back
// (also at cleanup).
//
// The garbage collector is off until release: it frees fds on its own time, closing the spare
// splice pipes the runtime pools (two fds each, left by earlier relays) when it empties the
// pool. Those pipes are closed first, so that no fd comes free behind the test's back.
func exhaustFDs(t *testing.T) (refill, release func()) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	gcPercent := debug.SetGCPercent(-1)
	var files []*os.File
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, f := range files {
				f.Close()
			}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Error(err)
			}
			debug.SetGCPercent(gcPercent)
		})
	}
	t.Cleanup(release)
	waitFor(t, "the runtime's spare splice pipes closed", func() bool {
		runtime.GC() // the pool is emptied over two cycles; its pipes' cleanups close them
		return len(pipePairs()) <= inheritedPipePairs
	})
	open, _ := countFDs(t)
	low := lim
	low.Cur = uint64(open + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	refill = func() {
		for {
			f, err := os.Open(os.DevNull)
			if err != nil {
				if !errors.Is(err, syscall.EMFILE) {
					t.Fatalf("filling the fd table: %v", err)
				}
				return
			}
			files = append(files, f)
		}
	}
	refill()
	return refill, release
}

// A parked session woken while the process has no fd to spare (resuming it needs one per
// socket for a moment) stays parked, loses nothing and resumes once fds are free; one closed
// meanwhile (an abort) ends at once with its own reason and gives its server slot back, and so
// does one whose client resets its connection.
func TestParkedSessionWokenWithoutFreeFDs(t *testing.T) {
	broker := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, ParkAfter: 10 * time.Millisecond}, Route{}, broker.Addr())
	waiting, closing := amqpConnect(t, fx.addr()), amqpConnect(t, fx.addr())
	waitFor(t, "both sessions parked", func() bool { return fx.f.Stats().Parked == 2 })
	resetting := amqpConnect(t, fx.addr())
	waitFor(t, "three sessions parked", func() bool { return fx.f.Stats().Parked == 3 })
	refill, release := exhaustFDs(t)

	_ = resetting.(*net.TCPConn).SetLinger(0)
	resetting.Close() // a reset: no fd is needed to see it, nor to end the session
	waitFor(t, "the reset session ends", func() bool { return fx.f.Stats().Active == 2 })
	// The broker closes its end of the reset session's upstream connection on its own time;
	// an fd freed after refill would let the wake-up below resume at once.
	waitFor(t, "the broker closes its end", func() bool { return broker.Active() == 2 })
	refill() // the sockets of both ends were closed

	big := strings.Repeat("w", 64<<10) // more than a parked session relays by itself
	wrote := make(chan error, 1)
	go func() { _, err := waiting.Write([]byte(big)); wrote <- err }()
	// The warning is written once, at the first wake-up that could not resume a session, and
	// stays in the log (the session's wakeRetry would clear if it resumed).
	waitFor(t, "a wake-up that could not resume the session", func() bool {
		return strings.Contains(fx.logs.String(), "parked sessions wait to be resumed")
	})
	if p := fx.f.Stats().Parked; p != 2 {
		t.Errorf("%d sessions parked while no fd is free, want both", p)
	}
	var closeID uint64
	for _, in := range fx.f.Sessions() {
		if in.Client.String() == closing.LocalAddr().String() {
			closeID = in.ID
		}
	}
	if !fx.f.CloseSession(closeID) {
		t.Fatal("CloseSession found no session")
	}
	expectClosed(t, closing)
	waitFor(t, "the closed session ends", func() bool { return fx.f.Stats().Active == 1 })
	if strings.Contains(fx.logs.String(), "could not be resumed") {
		t.Errorf("an abort or a reset of a parked session tried to resume it:\n%s", fx.logs)
	}

	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	_ = waiting.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(waiting, got); err != nil || string(got) != big {
		t.Fatalf("the echo after fds were freed: %d bytes, %v", len(got), err)
	}
	echoes(t, waiting, "and after")
	waiting.Close()
	waitFor(t, "sessions end", func() bool { return fx.f.Stats().Active == 0 })
	if n := fx.servers[0].ActiveConnections(); n != 0 {
		t.Errorf("server has %d active connections after every session ended", n)
	}
	logs := fx.logs.String()
	for _, want := range []string{"parked sessions wait to be resumed", "end=closed_by_admin", "end=client_closed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// inheritedPipePairs is how many pipePairs the test binary started with, before any relay could
// leave a spare splice pipe.
var inheritedPipePairs = len(pipePairs())

// pipePairs returns the pipes whose both ends the process holds open beyond its standard fds
// (go test's stdout and stderr may be one pipe), by inode: the runtime's spare splice pipes are
// such pairs. Without /proc/self/fd it finds none (countFDs fails the test there).
func pipePairs() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	ends := make(map[string]int)
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n <= 2 {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			ends[l]++
		}
	}
	var pairs []string
	for l, n := range ends {
		if n > 1 {
			pairs = append(pairs, l)
		}
	}
	return pairs
}
