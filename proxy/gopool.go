package proxy

import (
	"sync"
	"sync/atomic"
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
	// idleFor is how long a worker waits for its next function; 0 means workerIdle.
	idleFor time.Duration
	// started counts the goroutines the pool has started (tests).
	started atomic.Int64

	mu sync.Mutex
	// The waiting workers, a list linked through them: Go takes the most recently idle one
	// (its stack and caches are the warmest); a worker whose wait ends unlinks itself, in O(1)
	// however many wait (a mass disconnect can leave tens of thousands at once).
	last *poolWorker
}

// poolWorker is one waiting goroutine of a goPool; prev, next and waiting are the pool's, under
// its mu.
type poolWorker struct {
	ch         chan func() // buffered: Go's send never blocks
	prev, next *poolWorker
	waiting    bool
}

// sessionPool runs every session's goroutines, whatever its frontend.
var sessionPool goPool

// Go runs f on an idle worker, or on a new goroutine when none waits.
func (p *goPool) Go(f func()) {
	p.mu.Lock()
	if w := p.last; w != nil {
		p.unlinkLocked(w)
		p.mu.Unlock()
		w.ch <- f
		return
	}
	p.mu.Unlock()
	p.started.Add(1)
	go p.work(f)
}

func (p *goPool) unlinkLocked(w *poolWorker) {
	if w.prev != nil {
		w.prev.next = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		p.last = w.prev
	}
	w.prev, w.next, w.waiting = nil, nil, false
}

func (p *goPool) work(f func()) {
	idle := p.idleFor
	if idle == 0 {
		idle = workerIdle
	}
	w := &poolWorker{ch: make(chan func(), 1)}
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		f()
		f = nil // not kept alive while waiting
		p.mu.Lock()
		w.prev, w.waiting = p.last, true
		if p.last != nil {
			p.last.next = w
		}
		p.last = w
		p.mu.Unlock()
		t.Reset(idle) // Go 1.23+ timers: a tick of the previous wait is discarded
		select {
		case f = <-w.ch:
		case <-t.C:
			p.mu.Lock()
			if w.waiting {
				p.unlinkLocked(w)
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			f = <-w.ch // taken just now: its function is on its way
		}
	}
}
