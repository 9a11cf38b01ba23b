package proxy

import (
	"slices"
	"sync"
	"time"
)

// workerIdle is how long a pool goroutine waits for its next function before it exits: long
// enough to carry a connection storm from one session to the next, short enough that an idle
// process holds no spare goroutine.
const workerIdle = 200 * time.Millisecond

// goPool runs functions on goroutines that outlive them for a moment, so that the next session
// starts on a stack that has already grown. A new goroutine starts with a small stack, and a
// session's handshake (dial included) and relay grow it two or three times: each growth copies
// the stack, walking its frames, which was about a quarter of the instructions a proxied
// connection cost (make bench-instructions).
type goPool struct {
	mu   sync.Mutex
	idle []chan func() // the waiting workers, the most recently idle last (its stack is warmest)
}

// sessionPool runs every session's goroutines, whatever its frontend.
var sessionPool goPool

// Go runs f on an idle worker, or on a new goroutine when none waits.
func (p *goPool) Go(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		ch := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		ch <- f // buffered: never blocks
		return
	}
	p.mu.Unlock()
	go p.work(f)
}

func (p *goPool) work(f func()) {
	ch := make(chan func(), 1)
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		f = nil // not kept alive while waiting
		p.mu.Lock()
		p.idle = append(p.idle, ch)
		p.mu.Unlock()
		t.Reset(workerIdle)
		select {
		case f = <-ch:
		case <-t.C:
			p.mu.Lock()
			if i := slices.Index(p.idle, ch); i >= 0 {
				p.idle = slices.Delete(p.idle, i, i+1)
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			f = <-ch // taken just now: its function is on its way
		}
	}
}
