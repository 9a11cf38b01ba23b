package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// readBufSize is the pooled buffer a relay reads into. AMQP traffic is mostly small frames,
// which a read(2) and a write(2) move at the cost splice(2) would have, without a pipe; a read
// that fills the buffer means bulk, and what is queued beyond it is moved with splice(2).
const readBufSize = 16 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// relay moves bytes from src, a plain socket, to dst for one direction of a session.
//
// Unlike io.Copy between two *net.TCPConn (which calls splice(2) and then blocks in the kernel
// poller holding a pipe pair, i.e. two extra fds, for as long as the source is idle), relay parks
// in the runtime's poller holding nothing but the two sockets. When src is readable it reads into
// a pooled buffer inside RawConn.Read (so the read that finds nothing, the wait and the read that
// finds data are one syscall each, as in the runtime's own reads) and writes that on; when the
// buffer came back full, it also moves everything else already queued with splice(2), via
// dst.ReadFrom of an io.LimitedReader sized by SIOCINQ, which never waits for more data than is
// there. An idle session therefore costs two sockets and two parked goroutines. When dst is not
// a plain socket (a *tls.Conn), every chunk goes through the buffer and Write.
type relay struct {
	src      *net.TCPConn
	dst      net.Conn
	dstTCP   *net.TCPConn // dst when it is a plain socket: bulk data is spliced into it
	raw      syscall.RawConn
	lr       io.LimitedReader // reused for every splice, so the data path does not allocate
	buf      *[]byte          // set by tryRead while it holds data
	n        int              // bytes tryRead read; 0 with rerr nil means EOF
	rerr     error            // the read error tryRead met
	readFn   func(uintptr) bool
	queuedFn func(uintptr)
	queued   int
}

// release is a no-op: relay holds its buffer only while data is in it.
func (r *relay) release() {}

// copyRelay moves bytes from src to dst for one direction of a session whose src is not a plain
// socket (a *tls.Conn): a loop of Read and Write through a pooled buffer, which it holds for the
// session's life (a TLS read blocks with its buffer).
type copyRelay struct {
	src, dst net.Conn
	buf      *[]byte
}

// step reads what src has and writes it to dst.
func (r *copyRelay) step() (int64, error) {
	if r.buf == nil {
		r.buf = readBufPool.Get().(*[]byte)
	}
	n, err := r.src.Read(*r.buf)
	if n > 0 {
		if _, werr := r.dst.Write((*r.buf)[:n]); werr != nil {
			return 0, &writeError{werr}
		}
	}
	return int64(n), err
}

// release returns the buffer to the pool once the direction has ended.
func (r *copyRelay) release() {
	if r.buf != nil {
		readBufPool.Put(r.buf)
		r.buf = nil
	}
}

// mover moves the bytes of one direction: step waits for data and moves what it got, returning
// the bytes moved, io.EOF when src closed its side, a *writeError when dst failed, or src's error.
type mover interface {
	step() (int64, error)
	release()
}

// leg is one direction of a session: its two ends (as the session reads and writes them, and
// the sockets under them) and how bytes move.
type leg struct {
	src, dst       net.Conn
	srcRaw, dstRaw *net.TCPConn
	mv             mover
	count          func(n int) // called after each chunk with the bytes moved
}

// newLeg returns the direction from src to dst. A plain socket is read by relay (which splices
// into a plain dst); anything else by copyRelay.
func newLeg(dst net.Conn, dstRaw *net.TCPConn, src net.Conn, srcRaw *net.TCPConn, count func(int)) (*leg, error) {
	l := &leg{src: src, dst: dst, srcRaw: srcRaw, dstRaw: dstRaw, count: count}
	if tc, ok := src.(*net.TCPConn); ok {
		r, err := newRelay(dst, tc)
		if err != nil {
			return nil, err
		}
		l.mv = r
	} else {
		l.mv = &copyRelay{src: src, dst: dst}
	}
	return l, nil
}

// release frees what the direction held, once it has ended.
func (l *leg) release() { l.mv.release() }

// writeError is a failure to write to dst, as opposed to reading src.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func newRelay(dst net.Conn, src *net.TCPConn) (*relay, error) {
	raw, err := src.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &relay{src: src, dst: dst, raw: raw}
	r.dstTCP, _ = dst.(*net.TCPConn)
	r.lr.R = src
	r.readFn = r.tryRead
	r.queuedFn = func(fd uintptr) {
		r.queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}
	return r, nil
}

// tryRead runs under src's read lock inside RawConn.Read: returning false makes the runtime park
// the goroutine until the socket is readable and call it again. It reads before every wait, as
// the runtime's own reads do, so an edge-triggered wake-up is never missed; the buffer goes back
// to the pool while the relay waits.
func (r *relay) tryRead(fd uintptr) bool {
	if r.buf == nil {
		r.buf = readBufPool.Get().(*[]byte)
	}
	for {
		n, err := unix.Read(int(fd), *r.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			readBufPool.Put(r.buf)
			r.buf = nil
			return false
		case err != nil:
			r.n, r.rerr = 0, err
		default:
			r.n, r.rerr = n, nil
		}
		return true
	}
}

// step waits until src is readable and moves what is queued. It returns the bytes moved,
// io.EOF when src has closed its side, a *writeError when dst failed, or src's error.
func (r *relay) step() (int64, error) {
	if err := r.raw.Read(r.readFn); err != nil {
		return 0, err // closed, or the read deadline passed
	}
	bp := r.buf
	r.buf = nil
	defer readBufPool.Put(bp)
	switch {
	case r.rerr != nil:
		return 0, r.rerr
	case r.n == 0:
		return 0, io.EOF
	}
	if _, err := r.dst.Write((*bp)[:r.n]); err != nil {
		return 0, &writeError{err}
	}
	moved := int64(r.n)
	if r.n < len(*bp) || r.dstTCP == nil {
		return moved, nil
	}
	// A full buffer: bulk data. Splice what is queued now.
	if err := r.raw.Control(r.queuedFn); err != nil || r.queued <= 0 {
		return moved, nil
	}
	r.lr.N = int64(r.queued)
	n, err := r.dstTCP.ReadFrom(&r.lr)
	moved += n
	if err != nil && !errors.Is(err, io.EOF) {
		// ReadFrom does not say which side failed; a closed dst shows as EPIPE or a reset on
		// write, and any other error is src's.
		if errors.Is(err, syscall.EPIPE) {
			err = &writeError{err}
		}
		return moved, err
	}
	return moved, nil
}
