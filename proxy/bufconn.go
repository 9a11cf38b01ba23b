package proxy

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// bufSize is the read-ahead buffer of a connection during its handshake steps: a PROXY v1
// header (at most 107 bytes) must fit in it, and it halves the read(2)s of an AMQP handshake (a
// frame's header and payload, the client's Tune-Ok and Open, come in one read).
const bufSize = 4096

var bufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}

// bufConn is a connection read through a buffer during the steps before the relay: the PROXY
// header, the AMQP protocol header and the handshake frames, on the client's side as on the
// broker's. Each step reads only what it needs; what the buffer holds beyond it is read first by
// the next step. Before the relay, unbuffer passes what is left on and frees the buffer, so the
// relay reads the socket itself (and can splice) and an idle session holds no buffer. The buffer
// is taken from a pool at the first read: a connection never read through it costs nothing.
//
// Only the session's goroutine reads it.
type bufConn struct {
	net.Conn
	br *bufio.Reader // nil before the first read and after unbuffer
	// direct: reads no longer fill the buffer; what it holds is read first, then it is freed.
	direct bool
	n      int64 // bytes read from Conn
	// rd is the read deadline last set through SetReadDeadline while buffering. The steps
	// before the relay set a deadline per read and leave it: a step's next read with the same
	// deadline (the client's handshake frames share one) costs no call, and unbuffer clears it
	// once. Each SetReadDeadline is a timer change under the runtime's locks.
	rd time.Time
}

// SetReadDeadline sets Conn's read deadline unless, before the relay, it is already t.
func (b *bufConn) SetReadDeadline(t time.Time) error {
	if !b.direct && t.Equal(b.rd) {
		return nil
	}
	b.rd = t
	return b.Conn.SetReadDeadline(t)
}

// SetDeadline sets Conn's deadlines, and forgets the read deadline SetReadDeadline set.
func (b *bufConn) SetDeadline(t time.Time) error {
	b.rd = t
	return b.Conn.SetDeadline(t)
}

func newBufConn(c net.Conn) *bufConn { return &bufConn{Conn: c} }

// connReader reads b.Conn and counts what it read.
type connReader struct{ b *bufConn }

func (r connReader) Read(p []byte) (int, error) {
	n, err := r.b.Conn.Read(p)
	r.b.n += int64(n)
	return n, err
}

// reader returns the buffered reader, taking a buffer from the pool if it has none.
func (b *bufConn) reader() *bufio.Reader {
	if b.br == nil {
		b.br = bufPool.Get().(*bufio.Reader)
		b.br.Reset(connReader{b})
	}
	return b.br
}

// Read reads what the buffer holds first, then the connection.
func (b *bufConn) Read(p []byte) (int, error) {
	if b.direct {
		if b.br == nil || b.br.Buffered() == 0 {
			b.free()
			return connReader{b}.Read(p)
		}
		return b.br.Read(p)
	}
	return b.reader().Read(p)
}

// read returns how many bytes were read from the connection so far.
func (b *bufConn) read() int64 { return b.n }

// passThrough stops filling the buffer: what it holds is still read first, then reads go to the
// connection. For a layer that reads on its own terms from now on (TLS over the socket).
func (b *bufConn) passThrough() { b.direct = true }

// unbuffer hands what the buffer holds beyond what was read to pass, frees the buffer, and
// stops buffering. The caller then reads the connection itself.
func (b *bufConn) unbuffer(pass func([]byte) error) error {
	if !b.direct && !b.rd.IsZero() {
		_ = b.Conn.SetReadDeadline(time.Time{})
	}
	b.rd = time.Time{}
	b.direct = true
	if b.br == nil {
		return nil
	}
	var err error
	if n := b.br.Buffered(); n > 0 {
		p, _ := b.br.Peek(n)
		err = pass(p)
	}
	b.free()
	return err
}

func (b *bufConn) free() {
	if b.br != nil {
		b.br.Reset(nil)
		bufPool.Put(b.br)
		b.br = nil
	}
}
