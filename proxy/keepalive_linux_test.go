package proxy

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// keepAliveOf reads c's SO_KEEPALIVE, TCP_KEEPIDLE and TCP_KEEPINTVL.
func keepAliveOf(t *testing.T, c *net.TCPConn) (on, idle, intvl int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.Control(func(fd uintptr) {
		on, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		intvl, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
	})
	return on, idle, intvl
}

// Both sockets of a session get the route's keep-alive (probes every 15 s after it), set once;
// a negative one leaves keep-alive off.
func TestSessionKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		period        time.Duration
		on, idle, int int
	}{{40 * time.Second, 1, 40, 15}, {0, 1, 15, 15}, {-1, 0, -1, -1}} {
		fx := start(t, FrontendOptions{Mode: ModeAMQP, ParkAfter: -1}, Route{KeepAlive: tc.period}, echoBroker(t).Addr())
		c := amqpConnect(t, fx.addr())
		echoes(t, c, "x")
		for _, s := range fx.f.snapshot(nil) {
			for _, sock := range []*net.TCPConn{s.raw, s.upRaw} {
				on, idle, intvl := keepAliveOf(t, sock)
				if on != tc.on || tc.on == 1 && (idle != tc.idle || intvl != tc.int) {
					t.Errorf("period %v: keep-alive %d, idle %d s, interval %d s; want %d, %d, %d",
						tc.period, on, idle, intvl, tc.on, tc.idle, tc.int)
				}
			}
		}
	}
}

// A parked session holds its sockets as bare file descriptors, no Go connection (bare), and
// gets Go connections again when it unparks (dress): the sockets keep the route's keep-alive
// through a park and unpark (a fresh *net.TCPConn would have Go's default), and the sessions
// API still knows amqplb's address on the server connection.
func TestParkedSessionHoldsBareSockets(t *testing.T) {
	for _, tc := range []struct {
		period        time.Duration
		on, idle, int int
	}{{40 * time.Second, 1, 40, 15}, {-1, 0, -1, -1}} {
		fx := parkedFixture(t, Route{KeepAlive: tc.period})
		c := amqpConnect(t, fx.addr())
		waitFor(t, "the session parked", func() bool { return fx.f.Stats().Parked == 1 })
		s := fx.f.snapshot(nil)[0]
		up := s.info().Upstream
		if !up.IsValid() || up.Port() == 0 {
			t.Errorf("parked session's upstream address = %v", up)
		}
		// Unparked (more than a parked session relays by itself) and parked again.
		echoes(t, c, strings.Repeat("z", 64<<10))
		waitFor(t, "the session parked again", func() bool { return fx.f.Stats().Parked == 1 })
		s.mu.Lock()
		raw, upRaw, fds, state := s.raw, s.upRaw, s.fds, s.parkState.Load()
		var got [2][4]int
		for i, fd := range fds {
			got[i][0], _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			got[i][1], _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
			got[i][2], _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
			got[i][3], _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		}
		s.mu.Unlock()
		if state != parked || raw != nil || upRaw != nil {
			t.Fatalf("parked session: state %d, Go connections %v %v; want parked, none", state, raw, upRaw)
		}
		probes := 9
		if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_keepalive_probes"); err == nil {
			probes, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		for i, g := range got {
			if g[3] != probes {
				t.Errorf("socket %d after a park and unpark: %d keep-alive probes, want the system's %d", i, g[3], probes)
			}
			if g[0] != tc.on || tc.on == 1 && (g[1] != tc.idle || g[2] != tc.int) {
				t.Errorf("period %v, socket %d after a park and unpark: keep-alive %d, idle %d s, interval %d s; want %d, %d, %d",
					tc.period, i, g[0], g[1], g[2], tc.on, tc.idle, tc.int)
			}
		}
		if got := s.info().Upstream; got != up {
			t.Errorf("upstream address after an unpark = %v, want %v", got, up)
		}
		echoes(t, c, "still relays")
	}
}
