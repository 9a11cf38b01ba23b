package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// smallCopyMax is the largest amount of waiting data moved with read(2)+write(2) through a pooled
// buffer; more than that is moved with splice(2). AMQP traffic is mostly small frames, for which a
// user-space copy costs the same two syscalls as splice and needs no pipe; bulk transfers (large
// messages) take the zero-copy path.
const smallCopyMax = 16 << 10

var smallBufPool = sync.Pool{New: func() any { b := make([]byte, smallCopyMax); return &b }}

// relay moves bytes from src to dst for one direction of a session.
//
// Unlike io.Copy between two *net.TCPConn (which calls splice(2) and then blocks in the kernel
// poller holding a pipe pair, i.e. two extra fds, for as long as the source is idle), relay first
// waits for src to become readable while holding nothing but the two sockets, asks the kernel how
// many bytes are queued (SIOCINQ), and moves exactly those: a small amount through a pooled buffer,
// a large one with splice(2) via dst.ReadFrom of an io.LimitedReader, which never waits for more
// data than is already there. An idle session therefore costs two sockets and two parked goroutines.
type relay struct {
	src, dst *net.TCPConn
	raw      syscall.RawConn
	lr       io.LimitedReader // reused for every splice, so the data path does not allocate
	avail    int              // bytes queued on src, set by poll; 0 means EOF, -1 an error
	count    func(n int)      // called after each chunk with the bytes moved
	waitFn   func(uintptr) bool
}

func newRelay(dst, src *net.TCPConn, count func(int)) (*relay, error) {
	raw, err := src.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &relay{src: src, dst: dst, raw: raw, count: count}
	r.lr.R = src
	r.waitFn = r.poll
	return r, nil
}

// poll runs under src's read lock inside RawConn.Read: returning false makes the runtime park
// the goroutine until the socket is readable and call it again. It checks the socket's real
// state before every wait, as the runtime's own reads do, so an edge-triggered wake-up is never
// missed.
func (r *relay) poll(fd uintptr) bool {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if err != nil {
		r.avail = -1
		return true
	}
	if n > 0 {
		r.avail = n
		return true
	}
	// Nothing queued: either nothing has arrived yet, or the peer closed (EOF) or reset.
	// A one-byte MSG_PEEK tells these apart without consuming anything.
	var b [1]byte
	m, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return false
	case errno != 0:
		r.avail = -1
	case m == 0:
		r.avail = 0
	default:
		r.avail = int(m)
	}
	return true
}

// step waits until src is readable and moves what is queued. It returns the bytes moved,
// io.EOF when src has closed its side, or an error.
func (r *relay) step() (int64, error) {
	if err := r.raw.Read(r.waitFn); err != nil {
		return 0, err
	}
	switch {
	case r.avail == 0:
		return 0, io.EOF
	case r.avail > 0 && r.avail <= smallCopyMax:
		bp := smallBufPool.Get().(*[]byte)
		defer smallBufPool.Put(bp)
		n, err := r.src.Read((*bp)[:r.avail])
		if n > 0 {
			if _, werr := r.dst.Write((*bp)[:n]); werr != nil {
				return 0, werr
			}
		}
		if n == 0 && err == nil {
			err = io.EOF
		}
		if errors.Is(err, io.EOF) && n > 0 {
			err = nil
		}
		return int64(n), err
	default:
		// Large, or an error pending on src: let the kernel move the bytes (or report the error).
		r.lr.N = int64(max(r.avail, 1))
		n, err := r.dst.ReadFrom(&r.lr)
		if n == 0 && err == nil {
			err = io.EOF
		}
		return n, err
	}
}
