package rebalance

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/internal/testenv"
)

// fakeBackend holds sessions on servers a, b and c; a closed session's client comes back at
// once, round robin over the three.
type fakeBackend struct {
	mu       sync.Mutex
	sessions map[uint64]Session
	next     uint64
	rr       int
	closes   []time.Time
	victims  []Session
	fail     map[uint64]error // Close returns this once for the id
}

func newFakeBackend(counts map[string]int, since time.Time) *fakeBackend {
	f := &fakeBackend{sessions: map[uint64]Session{}, fail: map[uint64]error{}}
	for _, name := range []string{"a", "b", "c"} {
		for range counts[name] {
			f.add(name, since)
		}
	}
	return f
}

func (f *fakeBackend) add(server string, since time.Time) {
	f.next++
	f.sessions[f.next] = Session{ID: f.next, Server: server, Since: since, LastActive: since}
}

func (f *fakeBackend) list() []Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Session, 0, len(f.sessions))
	for _, s := range f.sessions {
		out = append(out, s)
	}
	return out
}

func (f *fakeBackend) close(_ context.Context, s Session) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := f.fail[s.ID]; ok {
		delete(f.fail, s.ID)
		return err
	}
	if _, ok := f.sessions[s.ID]; !ok {
		return ErrGone
	}
	delete(f.sessions, s.ID)
	f.closes = append(f.closes, time.Now())
	f.victims = append(f.victims, s)
	f.add([]string{"a", "b", "c"}[f.rr%3], time.Now())
	f.rr++
	return nil
}

func (f *fakeBackend) counts() map[string]int {
	n := map[string]int{}
	for _, s := range f.list() {
		n[s.Server]++
	}
	return n
}

func threeUp() []Server { return []Server{up("a", 1), up("b", 1), up("c", 1)} }

func TestLoopRebalancesAtRate(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFakeBackend(map[string]int{"a": 15, "b": 15}, time.Now().Add(-time.Hour))
	stats := NewStats()
	const rate = 50.0
	l := New(Options{Backend: "bk", Policy: Policy{MinAge: 0}, Rate: rate, Enabled: true, Tick: 20 * time.Millisecond,
		Servers: threeUp, Sessions: f.list, Close: f.close, Stats: stats})
	l.Start()
	defer l.Stop()
	testenv.Eventually(t, 10*time.Second, func() error {
		if c := f.counts(); c["a"] != 10 || c["b"] != 10 || c["c"] != 10 {
			return fmt.Errorf("counts %v, want 10 each", c)
		}
		if stats.Active("bk") {
			return fmt.Errorf("still active")
		}
		return nil
	})
	l.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 1; i < len(f.closes); i++ {
		if gap := f.closes[i].Sub(f.closes[i-1]); gap < time.Duration(float64(time.Second)/rate) {
			t.Errorf("closes %d and %d %v apart, under 1/rate", i-1, i, gap)
		}
	}
	var total uint64
	for _, s := range []string{"a", "b", "c"} {
		total += stats.Closes("bk", s)
	}
	if total != uint64(len(f.closes)) || total == 0 {
		t.Errorf("stats count %d closes, the backend saw %d", total, len(f.closes))
	}
}

// Sessions younger than min_age are never closed: the reconnected ones stay where they land.
func TestLoopMinAge(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFakeBackend(map[string]int{"a": 12}, time.Now().Add(-time.Hour))
	l := New(Options{Backend: "bk", Policy: Policy{MinAge: time.Hour}, Rate: 100, Enabled: true, Tick: 10 * time.Millisecond,
		Servers: threeUp, Sessions: f.list, Close: f.close})
	l.Start()
	// Share 4: a's 8 surplus close; the reconnects (to a, b, c in turn) are young and stay.
	testenv.Eventually(t, 10*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.victims) < 8 {
			return fmt.Errorf("%d closes", len(f.victims))
		}
		return nil
	})
	l.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.victims {
		if time.Since(v.Since) < time.Hour {
			t.Errorf("closed session %d, younger than min_age", v.ID)
		}
	}
	if len(f.victims) > 11 {
		t.Errorf("%d closes; only the 12 old sessions could go, and never all", len(f.victims))
	}
}

// Without Enabled nothing closes until Trigger; a dry run closes nothing; a not-listed session
// is left for later and another is closed. In a synctest bubble: the 100 ms with nothing closed
// are ten of the loop's ticks, each run to its end before the clock moves on, and the
// NotListedRetry that ends the pass costs no real time.
func TestLoopTrigger(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		f := newFakeBackend(map[string]int{"a": 6}, time.Now().Add(-time.Hour))
		stats := NewStats()
		l := New(Options{Backend: "bk", Rate: 100, Tick: 10 * time.Millisecond, Servers: threeUp, Sessions: f.list,
			Close: f.close, Stats: stats})
		l.Start()
		defer l.Stop()
		plan := l.Trigger(true)
		if len(plan) != 4 {
			t.Fatalf("dry run plans %d closes, want 4", len(plan))
		}
		f.mu.Lock()
		f.fail[plan[0].ID] = ErrNotListed
		f.mu.Unlock()
		if err := testenv.Poll(100*time.Millisecond, func() error {
			if len(f.list()) != 6 || f.counts()["a"] != 6 {
				return nil
			}
			return fmt.Errorf("waiting")
		}); err == nil {
			t.Fatal("a disabled loop closed sessions before any trigger")
		}
		if got := l.Trigger(false); len(got) != 4 {
			t.Fatalf("trigger plans %d closes, want 4", len(got))
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if c := f.counts(); c["a"] > 2 || stats.Active("bk") {
				return fmt.Errorf("counts %v, active %v", c, stats.Active("bk"))
			}
			return nil
		})
	})
}

func TestStopWithoutStart(t *testing.T) {
	l := New(Options{Rate: 1, Servers: threeUp, Sessions: func() []Session { return nil }})
	l.Stop()
	l.Stop()
}

// A pass started beyond the tolerance goes on to the fair share: with round-robin reconnects
// (a third land back on the busy servers) a pass that stopped at the tolerance's edge would
// leave 33/33/24 with 0.10.
func TestLoopPassGoesToFairShare(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFakeBackend(map[string]int{"a": 45, "b": 45}, time.Now().Add(-time.Hour))
	stats := NewStats()
	l := New(Options{Backend: "bk", Policy: Policy{Tolerance: 0.1}, Rate: 500, Enabled: true, Tick: 5 * time.Millisecond,
		Servers: threeUp, Sessions: f.list, Close: f.close, Stats: stats})
	l.Start()
	defer l.Stop()
	testenv.Eventually(t, 20*time.Second, func() error {
		if c := f.counts(); c["a"] != 30 || c["b"] != 30 || c["c"] != 30 || stats.Active("bk") {
			return fmt.Errorf("counts %v, active %v; want 30 each, pass over", c, stats.Active("bk"))
		}
		return nil
	})
}
