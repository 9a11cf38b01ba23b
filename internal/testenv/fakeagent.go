package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// FakeAgent is an HAProxy agent-check agent on 127.0.0.1: it answers every connection with the
// line set by Set ("up", "drain", "50%" ...), then keeps what the checker sent (agent-send)
// until the checker closes the connection.
type FakeAgent struct {
	*FakeBroker
	mu       sync.Mutex
	reply    string
	received string
}

// StartFakeAgent starts an agent answering reply. It is closed when t ends.
func StartFakeAgent(t testing.TB, reply string) *FakeAgent {
	t.Helper()
	a := &FakeAgent{reply: reply}
	a.FakeBroker = StartFakeBroker(t, a.serve)
	return a
}

// Set changes the line the next connections get (without its newline).
func (a *FakeAgent) Set(reply string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reply = reply
}

// Received returns what the last checker that closed its connection sent.
func (a *FakeAgent) Received() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.received
}

// Port returns the agent's port.
func (a *FakeAgent) Port() int { return a.ln.Addr().(*net.TCPAddr).Port }

func (a *FakeAgent) serve(c net.Conn) {
	a.mu.Lock()
	reply := a.reply
	a.mu.Unlock()
	if _, err := io.WriteString(c, reply+"\n"); err != nil {
		return
	}
	// The checker closes once it has the line; a checker that never does is cut after a while.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(io.LimitReader(c, 4096))
	a.mu.Lock()
	a.received = string(got)
	a.mu.Unlock()
}
