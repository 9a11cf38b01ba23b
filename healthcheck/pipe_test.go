package healthcheck

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
)

// pipeNet is an in-memory network of fake brokers for tests that run in a synctest bubble,
// where a goroutine blocked on a real socket would stop the fake clock: its checker connects
// through net.Pipe to the broker listening at the target's address, and is refused where none
// listens. Everything about a check but the dial (the checker's conversation, its deadlines and
// timeouts, the Monitor's scheduling) is the real code.
type pipeNet struct {
	mu      sync.Mutex
	brokers map[string]*pipeBroker
}

// pipeBroker is one fake broker of a pipeNet: like testenv.FakeBroker, it serves every
// connection with a handler in its own goroutine and counts them.
type pipeBroker struct {
	addr     string
	handle   func(net.Conn)
	accepted atomic.Int64
	active   atomic.Int64
}

// listen starts a broker at addr (a host:port no real socket uses) serving with handle.
func (n *pipeNet) listen(addr string, handle func(net.Conn)) *pipeBroker {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.brokers == nil {
		n.brokers = map[string]*pipeBroker{}
	}
	b := &pipeBroker{addr: addr, handle: handle}
	n.brokers[addr] = b
	return b
}

// dial connects to the broker at addr, or fails as a TCP connect to a closed port does.
func (n *pipeNet) dial(addr string) (net.Conn, error) {
	n.mu.Lock()
	b := n.brokers[addr]
	n.mu.Unlock()
	if b == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	client, server := net.Pipe()
	b.accepted.Add(1)
	b.active.Add(1)
	go func() {
		defer b.active.Add(-1)
		defer server.Close()
		b.handle(server)
	}()
	return client, nil
}

// checker returns c connecting through n instead of the target's own dial.
func (n *pipeNet) checker(c Checker) Checker { return pipeChecker{c, n} }

type pipeChecker struct {
	c Checker
	n *pipeNet
}

func (pc pipeChecker) Check(ctx context.Context, t Target) Result {
	t.Dial = func(context.Context) (net.Conn, error) { return pc.n.dial(t.Addr) }
	return pc.c.Check(ctx, t)
}

// Addr returns the broker's address.
func (b *pipeBroker) Addr() string { return b.addr }

// Accepted returns how many connections the broker has accepted.
func (b *pipeBroker) Accepted() int { return int(b.accepted.Load()) }

// waitIdle fails t unless the broker has no connection open once every goroutine of the
// bubble is blocked.
func (b *pipeBroker) waitIdle(t *testing.T) {
	t.Helper()
	synctest.Wait()
	if n := b.active.Load(); n > 0 {
		t.Fatalf("fake broker %s still has %d connections open", b.addr, n)
	}
}

// settled turns cond into a condition for testenv.Eventually in a synctest bubble: it asks
// once every other goroutine of the bubble is blocked, and fails with what.
func settled(what string, cond func() bool) func() error {
	return func() error {
		synctest.Wait()
		if !cond() {
			return errors.New(what)
		}
		return nil
	}
}

// holds turns cond into a condition for testenv.Eventually outside a bubble.
func holds(what string, cond func() bool) func() error {
	return func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	}
}
