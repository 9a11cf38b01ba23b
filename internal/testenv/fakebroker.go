package testenv

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// FakeBroker is a TCP server on 127.0.0.1 with a pluggable per-connection behaviour, for fast
// unit tests of the proxy and the checks. It never replaces a real broker in tests of behaviour
// that only RabbitMQ shows.
type FakeBroker struct {
	ln       net.Listener
	handle   func(net.Conn)
	accepted atomic.Int64
	active   atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// StartFakeBroker listens on a free loopback port and serves every connection with handle in
// its own goroutine. The broker is closed, and its goroutines waited for, when t ends.
func StartFakeBroker(t testing.TB, handle func(net.Conn)) *FakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fake broker: %v", err)
	}
	b := &FakeBroker{ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.Close)
	return b
}

func (b *FakeBroker) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			_ = c.Close()
			return
		}
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		b.accepted.Add(1)
		b.active.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.active.Add(-1)
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				_ = c.Close()
			}()
			b.handle(c)
		}()
	}
}

// Addr returns the broker's host:port.
func (b *FakeBroker) Addr() string { return b.ln.Addr().String() }

// Accepted returns how many connections the broker has accepted.
func (b *FakeBroker) Accepted() int { return int(b.accepted.Load()) }

// Active returns how many connections are open now.
func (b *FakeBroker) Active() int { return int(b.active.Load()) }

// Close stops listening, closes every open connection and waits for the handlers to return.
func (b *FakeBroker) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	_ = b.ln.Close()
	b.wg.Wait()
}

// AMQPHeader is the AMQP 0-9-1 protocol header a client sends first.
var AMQPHeader = []byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// Echo copies everything it reads back to the peer; when the peer half-closes, it finishes
// sending and half-closes too (so tests can check both directions of a half-closed stream).
// It copies through a user-space buffer: io.Copy between TCP conns would splice and hold pipe
// fds while idle, which would blur the proxy's own fd figures in tests.
func Echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	// Wait for the peer to close its side completely.
	_, _ = io.Copy(io.Discard, c)
}

// GreetThenEcho returns a handler that reads the 8-byte protocol header, answers with greeting
// (standing in for Connection.Start), then echoes like Echo.
func GreetThenEcho(greeting []byte) func(net.Conn) {
	return func(c net.Conn) {
		var h [8]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		if _, err := c.Write(greeting); err != nil {
			return
		}
		Echo(c)
	}
}

// Silent accepts and then never writes, like a frozen broker whose kernel still completes the
// TCP handshake; it returns when the peer closes.
func Silent(c net.Conn) {
	_, _ = io.Copy(io.Discard, c)
}

// Hangup closes the connection as soon as it is accepted.
func Hangup(c net.Conn) {}

// IsClosed reports whether err means the connection is gone (closed, reset or EOF).
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}
