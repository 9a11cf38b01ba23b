package rebalance

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// ErrNotListed is what a Close callback returns when the broker does not list the session's
// connection (yet: the management API lags a few seconds behind). The Loop leaves that session
// alone for NotListedRetry and closes another one meanwhile.
var ErrNotListed = errors.New("the broker does not list the connection")

// ErrGone is what a Close callback returns when the session ended before it could be closed.
var ErrGone = errors.New("the session is gone")

// Defaults of Options.
const (
	// DefaultTick is how often a Loop looks at the backend while there is nothing to close.
	DefaultTick = time.Second
	// NotListedRetry is how long a session whose connection the broker did not list is left
	// alone.
	NotListedRetry = 3 * time.Second
	// Jitter stretches each pause between two closes by up to this fraction, at random, so that
	// the reconnects of many amqplb instances do not line up. The pause is never shortened.
	Jitter = 0.25
)

// Options configure a Loop.
type Options struct {
	// Backend names the backend, for Stats and the log.
	Backend string
	// Policy is how far rebalancing goes.
	Policy Policy
	// Rate is the most closes per second; closes are at least 1/Rate apart (a token bucket of
	// one token, with Jitter). It must be above 0.
	Rate float64
	// Enabled starts a pass whenever a server is beyond the tolerance; otherwise only Trigger
	// starts one. A pass closes down to the fair share (Policy.Continue), then ends.
	Enabled bool
	// Tick is how often the backend is looked at when there is nothing to close; 0 means
	// DefaultTick.
	Tick time.Duration
	// Servers and Sessions return the backend's servers and its open sessions now.
	Servers  func() []Server
	Sessions func() []Session
	// Sticky, when not nil, returns the upstream addresses (Session.Upstream) of the sessions
	// that consume from an exclusive or auto-delete queue (Management.Sticky); Plan closes them
	// last. It is asked only when there is something to close, at most once per StickyTTL.
	Sticky func(ctx context.Context) (map[netip.AddrPort]bool, error)
	// Close ends one session, synchronously enough that the session is on its way out when it
	// returns nil; see ErrNotListed and ErrGone. ctx ends when the Loop stops.
	Close func(ctx context.Context, s Session) error
	// Stats counts the closes and whether a rebalance is in progress; it may outlive the Loop
	// (a reload starts new Loops on the same Stats). nil means not counted.
	Stats *Stats
	// Logger receives a line per close and the closer's errors (at most one a tick); nil
	// discards.
	Logger *slog.Logger
}

// Loop rebalances one backend on a goroutine of its own, from Start to Stop.
type Loop struct {
	o      Options
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	pass     bool // a pass is under way: close down to the fair share, not to the tolerance
	sticky   map[netip.AddrPort]bool
	stickyAt time.Time // when sticky was asked for (also after a failure: retried after StickyTTL)
}

// StickyTTL is how long an answer of Options.Sticky is used.
const StickyTTL = 2 * time.Second

// plan is Plan with the sticky sessions marked, when there is something to close and
// Options.Sticky can tell which.
func (l *Loop) plan(ctx context.Context, servers []Server, sessions []Session, p Policy, now time.Time, skip func(uint64) bool) []Session {
	victims := Plan(servers, sessions, p, now, skip)
	if len(victims) == 0 || l.o.Sticky == nil {
		return victims
	}
	l.mu.Lock()
	sticky, fresh := l.sticky, time.Since(l.stickyAt) < StickyTTL
	l.mu.Unlock()
	if !fresh {
		var err error
		if sticky, err = l.o.Sticky(ctx); err != nil {
			l.o.Logger.Debug("rebalance: cannot tell which sessions consume from exclusive or auto-delete queues",
				"backend", l.o.Backend, "err", err)
		}
		l.mu.Lock()
		l.sticky, l.stickyAt = sticky, time.Now()
		l.mu.Unlock()
	}
	if len(sticky) == 0 {
		return victims
	}
	for i := range sessions {
		sessions[i].Sticky = sticky[sessions[i].Upstream]
	}
	return Plan(servers, sessions, p, now, skip)
}

// New returns a Loop; it does nothing until Start.
func New(o Options) *Loop {
	if o.Tick <= 0 {
		o.Tick = DefaultTick
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stats == nil {
		o.Stats = NewStats()
	}
	return &Loop{o: o, wake: make(chan struct{}, 1)}
}

// Start starts the Loop's goroutine. It must be called once.
func (l *Loop) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	go l.run(ctx)
}

// Stop ends the goroutine (a close under way is cancelled) and waits for it. It may be called
// more than once, and without Start.
func (l *Loop) Stop() {
	if l.cancel == nil {
		return
	}
	l.cancel()
	<-l.done
	l.o.Stats.setActive(l.o.Backend, false)
}

// Trigger plans now, down to the fair share whatever the tolerance, and returns the sessions
// that would be closed, in order, without the rate limit. Unless dryRun, it also starts a
// pass: the Loop closes them (and whatever else a later plan finds), paced at Rate, until no
// server is above its fair share, even when not Enabled.
func (l *Loop) Trigger(dryRun bool) []Session {
	p := l.o.Policy
	p.Continue = true
	victims := l.plan(context.Background(), l.o.Servers(), l.o.Sessions(), p, time.Now(), nil)
	if !dryRun && len(victims) > 0 {
		l.mu.Lock()
		l.pass = true
		l.mu.Unlock()
		l.o.Stats.setActive(l.o.Backend, true)
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return victims
}

func (l *Loop) run(ctx context.Context) {
	defer close(l.done)
	var (
		closing   = map[uint64]bool{}      // asked to close, still open
		notListed = map[uint64]time.Time{} // the broker did not list it; retry after
		lastClose time.Time
		interval  = time.Duration(float64(time.Second) / l.o.Rate)
	)
	timer := time.NewTimer(l.o.Tick)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-l.wake:
		}
		delay := l.o.Tick
		if wait := interval - time.Since(lastClose); wait > 0 {
			delay = wait // never two closes closer than 1/Rate, a Trigger's wake included
		} else if l.active() {
			delay = l.step(ctx, closing, notListed, &lastClose, interval)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(delay)
	}
}

func (l *Loop) active() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.o.Enabled || l.pass
}

func (l *Loop) inPass() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pass
}

func (l *Loop) setPass(on bool) {
	l.mu.Lock()
	l.pass = on
	l.mu.Unlock()
	l.o.Stats.setActive(l.o.Backend, on)
}

// step plans and closes at most one session; it returns how long to wait before the next step.
func (l *Loop) step(ctx context.Context, closing map[uint64]bool, notListed map[uint64]time.Time, lastClose *time.Time, interval time.Duration) time.Duration {
	now := time.Now()
	sessions := l.o.Sessions()
	open := make(map[uint64]bool, len(sessions))
	for i := range sessions {
		id := sessions[i].ID
		open[id] = true
		sessions[i].Closing = closing[id]
	}
	for id := range closing {
		if !open[id] {
			delete(closing, id)
		}
	}
	for id, until := range notListed {
		if !open[id] || now.After(until) {
			delete(notListed, id)
		}
	}
	skip := func(id uint64) bool { _, ok := notListed[id]; return ok }
	servers, p := l.o.Servers(), l.o.Policy
	p.Continue = l.inPass()
	victims := l.plan(ctx, servers, sessions, p, now, skip)
	if len(victims) == 0 {
		if len(notListed) == 0 && len(closing) == 0 {
			l.setPass(false)
		}
		return l.o.Tick
	}
	if !p.Continue {
		// Beyond the tolerance: a pass starts, and goes down to the fair share.
		p.Continue = true
		victims = l.plan(ctx, servers, sessions, p, now, skip)
	}
	l.setPass(true)
	v := victims[0]
	err := l.o.Close(ctx, v)
	switch {
	case err == nil:
		*lastClose = time.Now()
		closing[v.ID] = true
		l.o.Stats.count(l.o.Backend, v.Server)
		l.o.Logger.Info("rebalance: closed a session", "backend", l.o.Backend, "server", v.Server, "id", v.ID,
			"age", now.Sub(v.Since).Round(time.Millisecond), "idle", now.Sub(v.LastActive).Round(time.Millisecond),
			"surplus_left", len(victims)-1)
		return time.Duration(float64(interval) * (1 + Jitter*rand.Float64()))
	case errors.Is(err, ErrNotListed):
		notListed[v.ID] = now.Add(NotListedRetry)
		return 0 // another victim at once: nothing was closed
	case ctx.Err() != nil:
		return 0
	case errors.Is(err, ErrGone):
		// Ending already (or about to), but maybe still listed for a while: leave it alone
		// and take another at once, rather than pick it again and again.
		notListed[v.ID] = now.Add(NotListedRetry)
		return 0
	default:
		l.o.Logger.Warn("rebalance: could not close a session", "backend", l.o.Backend, "server", v.Server, "id", v.ID, "err", err)
		return l.o.Tick
	}
}

// Stats counts rebalancing closes by backend and server, and says which backends are
// rebalancing now. It is safe for concurrent use and outlives reloads.
type Stats struct {
	mu     sync.Mutex
	closes map[[2]string]uint64
	active map[string]bool
}

// NewStats returns empty Stats.
func NewStats() *Stats {
	return &Stats{closes: map[[2]string]uint64{}, active: map[string]bool{}}
}

// Closes returns how many sessions rebalancing closed on the server of the backend.
func (s *Stats) Closes(backend, server string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closes[[2]string{backend, server}]
}

// Active reports whether the backend has a rebalance in progress: a surplus is being closed.
func (s *Stats) Active(backend string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[backend]
}

func (s *Stats) count(backend, server string) {
	s.mu.Lock()
	s.closes[[2]string{backend, server}]++
	s.mu.Unlock()
}

func (s *Stats) setActive(backend string, on bool) {
	s.mu.Lock()
	s.active[backend] = on
	s.mu.Unlock()
}
