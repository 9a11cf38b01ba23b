package healthcheck

import "time"

// Defaults of Policy's zero fields, as in the configuration's defaults.
const (
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultInterval = 2 * time.Second
)

// RiseFall are the thresholds of a state change, as HAProxy's rise and fall.
type RiseFall struct {
	// Rise is how many consecutive passed checks bring a down server up; 0 means DefaultRise.
	Rise int
	// Fall is how many consecutive failed checks bring an up server down; 0 means DefaultFall.
	Fall int
}

func (rf RiseFall) rise() int {
	if rf.Rise <= 0 {
		return DefaultRise
	}
	return rf.Rise
}

func (rf RiseFall) fall() int {
	if rf.Fall <= 0 {
		return DefaultFall
	}
	return rf.Fall
}

// Policy decides, from check results, a server's health and when to check it next. It is pure:
// the monitor keeps the Health and feeds it back.
type Policy struct {
	// RiseFall are the thresholds of a state change.
	RiseFall
	// Interval is the time between checks of a server that is steady; 0 means DefaultInterval.
	Interval time.Duration
	// FastInterval is used while a change is pending (an up server failing, a down server
	// passing); 0 means Interval.
	FastInterval time.Duration
	// DownInterval is used while a server is down and not passing; 0 means Interval.
	DownInterval time.Duration
}

// Health is a server's health as the checks see it.
type Health struct {
	// Up reports whether the checks consider the server up. The monitor seeds it from the
	// server's state (servers start up, as in HAProxy).
	Up bool
	// Passes and Fails count consecutive passed and failed checks; at most one is non-zero.
	// They saturate at the larger threshold.
	Passes, Fails int
}

// Next returns the health after a check that passed (ok) or failed, and how long to wait before
// the next check. The server changed state if next.Up != h.Up.
func (p Policy) Next(h Health, ok bool) (next Health, wait time.Duration) {
	limit := max(p.rise(), p.fall())
	next = h
	if ok {
		next.Passes, next.Fails = min(h.Passes+1, limit), 0
		if !h.Up && next.Passes >= p.rise() {
			next.Up = true
		}
	} else {
		next.Passes, next.Fails = 0, min(h.Fails+1, limit)
		if h.Up && next.Fails >= p.fall() {
			next.Up = false
		}
	}
	return next, p.Wait(next)
}

// Wait returns how long to wait before checking a server in health h: FastInterval while a
// change is pending, DownInterval while down, Interval otherwise.
func (p Policy) Wait(h Health) time.Duration {
	inter := p.Interval
	if inter <= 0 {
		inter = DefaultInterval
	}
	switch {
	case (h.Up && h.Fails > 0) || (!h.Up && h.Passes > 0):
		if p.FastInterval > 0 {
			return p.FastInterval
		}
	case !h.Up:
		if p.DownInterval > 0 {
			return p.DownInterval
		}
	}
	return inter
}
