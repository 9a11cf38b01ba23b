package proxy

import (
	"net"
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
