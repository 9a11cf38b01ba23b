//go:build !linux

package proxy

import (
	"net"
	"time"
)

// newSocketMover returns the mover of a direction whose src is a plain socket. Outside Linux
// this is the portable read/write loop: correct, without the Linux relay's raw system calls,
// splice(2) or its idle cost (Linux is the platform amqplb is built for in production).
func newSocketMover(dst net.Conn, src *net.TCPConn, moved func(int), track *frameTracker) (mover, error) {
	return &copyRelay{src: src, dst: dst, moved: moved, track: track}, nil
}

// setPending does nothing: sessions are parked on Linux only.
func setPending(*leg, []byte) {}

// flushPending has nothing to write: sessions are parked on Linux only.
func flushPending(*leg) error { return nil }

// setUserTimeout does nothing outside Linux: TCP_USER_TIMEOUT is Linux's. A peer that stops
// reading is then dropped by the kernel's own retransmission limits only.
func setUserTimeout(*net.TCPConn, time.Duration) {}

// pendingOut cannot tell outside Linux (no SIOCOUTQ): a direction held up by its receiver is
// then judged by its silence alone.
func pendingOut(*net.TCPConn) bool { return false }
