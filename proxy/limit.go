package proxy

import (
	"sync/atomic"
	"time"
)

// Limiter caps concurrent connections. It is a single atomic counter: taking a slot is one
// atomic add, never a lock. A nil *Limiter has no limit. The limit can change at run time (on a
// reload); holders above a lowered limit keep their slots.
type Limiter struct {
	max atomic.Int64 // 0 = no limit
	n   atomic.Int64
}

// NewLimiter returns a limiter admitting at most n concurrent holders; n <= 0 means no limit.
func NewLimiter(n int) *Limiter {
	l := &Limiter{}
	l.SetMax(n)
	return l
}

// SetMax changes the limit; n <= 0 means no limit.
func (l *Limiter) SetMax(n int) { l.max.Store(int64(max(n, 0))) }

// Acquire takes a slot, or reports false when all are taken.
func (l *Limiter) Acquire() bool {
	if l == nil {
		return true
	}
	n := l.n.Add(1)
	if m := l.max.Load(); m > 0 && n > m {
		l.n.Add(-1)
		return false
	}
	return true
}

// Release returns a slot taken by Acquire.
func (l *Limiter) Release() {
	if l != nil {
		l.n.Add(-1)
	}
}

// InUse returns the number of slots taken.
func (l *Limiter) InUse() int64 {
	if l == nil {
		return 0
	}
	return l.n.Load()
}

// Max returns the limit, or 0 when there is none.
func (l *Limiter) Max() int64 {
	if l == nil {
		return 0
	}
	return l.max.Load()
}

// logThrottle lets through at most one log line per interval and counts the ones it held back,
// so a flood of refused clients cannot flood the log too.
type logThrottle struct {
	interval   time.Duration
	next       atomic.Int64 // unix nanos before which lines are suppressed
	suppressed atomic.Uint64
}

// allow reports whether a line may be logged now and, if so, how many were suppressed since the
// last one.
func (t *logThrottle) allow() (bool, uint64) {
	now := time.Now().UnixNano()
	next := t.next.Load()
	if now < next || !t.next.CompareAndSwap(next, now+int64(t.interval)) {
		t.suppressed.Add(1)
		return false, 0
	}
	return true, t.suppressed.Swap(0)
}
