package healthcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/testenv"
)

// logLine is one record a logRecorder kept.
type logLine struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// logRecorder is a slog.Handler that keeps every record, for tests to read.
type logRecorder struct {
	mu    sync.Mutex
	lines []logLine
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l := logLine{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, l)
	h.mu.Unlock()
	return nil
}

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// forServer returns the lines about the named server.
func (h *logRecorder) forServer(name string) []logLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logLine
	for _, l := range h.lines {
		if l.attrs["server"] == name {
			out = append(out, l)
		}
	}
	return out
}

// transition is one call of OnTransition, with when it came and the server's failure counts
// at that moment.
type transition struct {
	server   string
	from, to backend.State
	result   CheckResult
	failures map[string]uint64
	at       time.Time
}

// transitions records OnTransition calls of a Monitor that keeps its statuses in st.
type transitions struct {
	st   *Statuses
	mu   sync.Mutex
	list []transition
}

func newTransitions(st *Statuses) *transitions { return &transitions{st: st} }

func (tr *transitions) record(s *backend.Server, from, to backend.State, r CheckResult) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.list = append(tr.list, transition{server: s.Name(), from: from, to: to, result: r,
		failures: tr.st.Status(s).Failures, at: time.Now()})
}

func (tr *transitions) of(name string) []transition {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []transition
	for _, t := range tr.list {
		if t.server == name {
			out = append(out, t)
		}
	}
	return out
}

// switchable is a fake broker behaviour that a test can change while the broker runs; a
// connection keeps the behaviour it was accepted with.
type switchable struct {
	h atomic.Pointer[func(net.Conn)]
}

func newSwitchable(h func(net.Conn)) *switchable {
	s := &switchable{}
	s.set(h)
	return s
}

func (s *switchable) set(h func(net.Conn)) { s.h.Store(&h) }

func (s *switchable) Handle(c net.Conn) { (*s.h.Load())(c) }

func newServer(name, addr string) *backend.Server {
	return backend.NewServer(backend.ServerOptions{Name: name, Address: addr, Weight: 1})
}

// startMonitor starts a monitor that is stopped when the test ends (in a synctest bubble,
// before the bubble ends).
func startMonitor(t *testing.T, o MonitorOptions) *Monitor {
	t.Helper()
	if o.Backend == "" {
		o.Backend = "rabbitmq"
	}
	m := NewMonitor(o)
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

func healthy() func(net.Conn) { return (&testenv.FakeAMQP{}).Handle }

// refusedErr returns the error of a dial to a port nothing listens on, as a session sees it.
func refusedErr(t *testing.T) error {
	t.Helper()
	c, err := net.Dial("tcp", testenv.FreeAddr(t))
	if err == nil {
		c.Close()
		t.Fatal("dial to a dead port succeeded")
	}
	return fmt.Errorf("dial server x: %w", err)
}

// The monitor tests below run in a synctest bubble, on its fake clock: their brokers are
// pipeNet's, their intervals and timeouts are exact and a "nothing happened meanwhile" is a
// statement about fake time, not a bet on the scheduler.

func TestMonitorFallAndRise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pn pipeNet
		sw := newSwitchable(healthy())
		b := pn.listen("rmq1:5672", sw.Handle)
		s := newServer("rmq1", b.Addr())
		st := NewStatuses()
		logs, tr := &logRecorder{}, newTransitions(st)
		const (
			inter   = 40 * time.Millisecond
			fast    = 20 * time.Millisecond
			timeout = 50 * time.Millisecond
		)
		startMonitor(t, MonitorOptions{
			Servers: []*backend.Server{s}, Checker: pn.checker(&AMQPChecker{}), Statuses: st,
			Policy:  Policy{RiseFall: RiseFall{Rise: 2, Fall: 3}, Interval: inter, FastInterval: fast, DownInterval: 30 * time.Millisecond},
			Timeout: timeout, Logger: slog.New(logs), OnTransition: tr.record,
		})

		// A healthy broker stays up, check after check.
		testenv.Eventually(t, 2*time.Second, settled("three checks", func() bool { return b.Accepted() >= 3 }))
		if c := st.Last(s); s.State() != backend.StateUp || c == nil || !c.OK || c.Reason != "AMQP handshake ok" {
			t.Fatalf("healthy broker: state %v, last check %+v", s.State(), c)
		}
		if n := len(logs.forServer("rmq1")); n != 0 {
			t.Errorf("%d log lines while healthy, want none", n)
		}

		// Silent: down after exactly fall failed checks.
		sw.set(testenv.Silent)
		switched := time.Now()
		testenv.Eventually(t, 3*time.Second, settled("down once silent", func() bool { return s.State() == backend.StateDown }))
		trs := tr.of("rmq1")
		if len(trs) != 1 || trs[0].from != backend.StateUp || trs[0].to != backend.StateDown {
			t.Fatalf("transitions %+v, want one up→down", trs)
		}
		took := trs[0].at.Sub(switched)
		// Each failed check waits its whole timeout; the first starts within an interval, the
		// others a fast interval after the previous one ended.
		if took < 3*timeout || took > inter+3*timeout+2*fast+time.Second {
			t.Errorf("down %v after turning silent", took)
		}
		if got := trs[0].failures[FailTimeout]; got != 3 {
			t.Errorf("went down after %d failed checks, want fall = 3", got)
		}
		if r := trs[0].result; r.OK || r.Kind != FailTimeout || !strings.Contains(r.Reason, "timeout after 50ms waiting for Connection.Start") {
			t.Errorf("transition result %+v", r)
		}
		lines := logs.forServer("rmq1")
		if len(lines) != 1 {
			t.Fatalf("%d log lines, want 1: %+v", len(lines), lines)
		}
		l := lines[0]
		want := map[string]string{"backend": "rabbitmq", "server": "rmq1", "address": b.Addr(), "from": "up", "to": "down",
			"code": "0", "kind": "timeout", "checks": "3/3 checks failed", "servers_up": "0/1"}
		for k, v := range want {
			if l.attrs[k] != v {
				t.Errorf("log attr %s = %q, want %q", k, l.attrs[k], v)
			}
		}
		if l.level != slog.LevelWarn || l.msg != "server down" || !strings.Contains(l.attrs["reason"], "timeout after 50ms waiting for Connection.Start") {
			t.Errorf("log line %+v", l)
		}

		// Healthy again: up after rise passes.
		sw.set(healthy())
		testenv.Eventually(t, 3*time.Second, settled("up once healthy", func() bool { return s.State() == backend.StateUp }))
		time.Sleep(5 * inter) // and it stays up, without more transitions
		synctest.Wait()
		trs = tr.of("rmq1")
		if len(trs) != 2 || trs[1].from != backend.StateDown || trs[1].to != backend.StateUp || !trs[1].result.OK {
			t.Fatalf("transitions %+v, want up→down then down→up", trs)
		}
		lines = logs.forServer("rmq1")
		if len(lines) != 2 {
			t.Fatalf("%d log lines, want 2: %+v", len(lines), lines)
		}
		if l := lines[1]; l.level != slog.LevelInfo || l.msg != "server up" || l.attrs["checks"] != "2/2 checks passed" ||
			l.attrs["reason"] != "AMQP handshake ok" || l.attrs["from"] != "down" || l.attrs["to"] != "up" {
			t.Errorf("log line %+v", l)
		}
		if n := s.Transitions(backend.StateDown); n != 1 {
			t.Errorf("server counted %d transitions to down, want 1", n)
		}
	})
}

func TestMonitorFirstResultDecides(t *testing.T) {
	t.Run("dead from the start", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// The live broker answers a little slowly, so the dead one's refusal is the first
			// result: a failure does not hold the others down.
			var pn pipeNet
			live := pn.listen("live:5672", (&testenv.FakeAMQP{TuneDelay: 50 * time.Millisecond}).Handle)
			sLive, sDead := newServer("live", live.Addr()), newServer("dead", "dead:5672")
			st := NewStatuses()
			logs, tr := &logRecorder{}, newTransitions(st)
			begin := time.Now()
			// fall × interval is 3 s: the dead server must not wait for it.
			startMonitor(t, MonitorOptions{
				Servers: []*backend.Server{sLive, sDead}, Checker: pn.checker(&AMQPChecker{}), Statuses: st,
				Policy:  Policy{RiseFall: RiseFall{Rise: 2, Fall: 3}, Interval: time.Second},
				Timeout: 500 * time.Millisecond, Logger: slog.New(logs), OnTransition: tr.record,
			})
			testenv.Eventually(t, 2*time.Second, settled("both checked", func() bool {
				return st.Last(sLive) != nil && st.Last(sDead) != nil && sDead.State() == backend.StateDown
			}))
			trs := tr.of("dead")
			if len(trs) != 1 || trs[0].to != backend.StateDown || trs[0].result.Kind != FailRefused {
				t.Fatalf("dead server transitions %+v, want one to down by a refused connection", trs)
			}
			if took := trs[0].at.Sub(begin); took > 500*time.Millisecond {
				t.Errorf("dead server down after %v", took)
			}
			if sLive.State() != backend.StateUp || !sLive.Eligible() {
				t.Errorf("live server is %v", sLive.State())
			}
			if trs := tr.of("live"); len(trs) != 0 {
				t.Errorf("live server transitions %+v", trs)
			}
			lines := logs.forServer("dead")
			if len(lines) != 1 || lines[0].attrs["checks"] != "first check failed" || lines[0].attrs["reason"] != "connection refused" {
				t.Errorf("dead server log %+v", lines)
			}
		})
	})

	t.Run("hung until the first result of another", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var pn pipeNet
			live := pn.listen("live:5672", healthy())
			hung := pn.listen("hung:5672", testenv.Silent)
			sLive, sHung := newServer("live", live.Addr()), newServer("hung", hung.Addr())
			st := NewStatuses()
			logs, tr := &logRecorder{}, newTransitions(st)
			startMonitor(t, MonitorOptions{
				Servers: []*backend.Server{sHung, sLive}, Checker: pn.checker(&AMQPChecker{}), Statuses: st,
				Policy:  Policy{Interval: time.Second},
				Timeout: 500 * time.Millisecond, Logger: slog.New(logs), OnTransition: tr.record,
			})
			// The live server's result comes first; the hung one is down from then on, though
			// its own check is still waiting.
			testenv.Eventually(t, 400*time.Millisecond, settled("hung server down", func() bool { return sHung.State() == backend.StateDown }))
			if c := st.Last(sHung); c != nil {
				t.Fatalf("hung server has a result already: %+v", c)
			}
			if sLive.State() != backend.StateUp {
				t.Errorf("live server is %v", sLive.State())
			}
			lines := logs.forServer("hung")
			if len(lines) != 1 || lines[0].attrs["reason"] != "not checked yet" {
				t.Errorf("hung server log %+v", lines)
			}
			// Its own first result (a timeout) keeps it down: no second transition.
			testenv.Eventually(t, 2*time.Second, settled("hung server's first result", func() bool { return st.Last(sHung) != nil }))
			if c := st.Last(sHung); c.OK || c.Kind != FailTimeout || sHung.State() != backend.StateDown {
				t.Errorf("hung server: %v, %+v", sHung.State(), c)
			}
			// Being held until its first check is not an incident: OnTransition hears nothing.
			if trs := tr.of("hung"); len(trs) != 0 {
				t.Errorf("hung server transitions %+v, want none", trs)
			}
		})
	})

	t.Run("slow but healthy comes up with its first result", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var pn pipeNet
			live := pn.listen("live:5672", healthy())
			slow := pn.listen("slow:5672", (&testenv.FakeAMQP{TuneDelay: 150 * time.Millisecond}).Handle)
			sLive, sSlow := newServer("live", live.Addr()), newServer("slow", slow.Addr())
			st := NewStatuses()
			tr := newTransitions(st)
			startMonitor(t, MonitorOptions{
				Servers: []*backend.Server{sLive, sSlow}, Checker: pn.checker(&AMQPChecker{}), Statuses: st,
				Policy:  Policy{RiseFall: RiseFall{Rise: 3}, Interval: time.Hour},
				Timeout: time.Second, Logger: slog.New(&logRecorder{}), OnTransition: tr.record,
			})
			testenv.Eventually(t, 2*time.Second, settled("slow server checked", func() bool { return st.Last(sSlow) != nil }))
			// With rise 3 applied to its first result the server would stay down for the hour
			// until the next check.
			testenv.Eventually(t, time.Second, settled("slow server up after one passed check (rise 3 does not apply to the first)",
				func() bool { return sSlow.State() == backend.StateUp }))
			// Held back until its first check, quietly: OnTransition (which may shut sessions
			// down) hears only of it coming up.
			trs := tr.of("slow")
			if len(trs) != 1 || trs[0].to != backend.StateUp {
				t.Errorf("slow server transitions %+v, want only up", trs)
			}
		})
	})
}

func TestMonitorHungServerDoesNotDelayOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pn pipeNet
		hung := pn.listen("hung:5672", testenv.Silent)
		live := pn.listen("live:5672", healthy())
		m := NewMonitor(MonitorOptions{
			Servers: []*backend.Server{newServer("hung", hung.Addr()), newServer("live", live.Addr())},
			Checker: pn.checker(&AMQPChecker{}), Policy: Policy{Interval: 20 * time.Millisecond},
			Timeout: 5 * time.Second, Logger: slog.New(&logRecorder{}),
		})
		m.Start()
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if n := live.Accepted(); n < 8 {
			t.Errorf("live server checked %d times in 500ms at a 20ms interval next to a hung one", n)
		}
		if n := hung.Accepted(); n != 1 {
			t.Errorf("hung server checked %d times, want 1 (still hanging)", n)
		}
		// Stop ends the hung check at once and closes its connection.
		begin := time.Now()
		m.Stop()
		if took := time.Since(begin); took > 500*time.Millisecond {
			t.Errorf("Stop took %v with a check hanging", took)
		}
		hung.waitIdle(t)
		live.waitIdle(t)
	})
}

func TestMonitorSuspect(t *testing.T) {
	err := refusedErr(t)

	t.Run("skipped at once, one check, cleared when it passes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// The slow Tune keeps the check going while the Suspect calls come in.
			var pn pipeNet
			b := pn.listen("rmq1:5672", (&testenv.FakeAMQP{TuneDelay: 100 * time.Millisecond}).Handle)
			s := newServer("rmq1", b.Addr())
			st := NewStatuses()
			tr := newTransitions(st)
			m := startMonitor(t, MonitorOptions{
				Servers: []*backend.Server{s}, Checker: pn.checker(&AMQPChecker{}), Statuses: st,
				Policy:  Policy{RiseFall: RiseFall{Fall: 10}, Interval: time.Hour},
				Timeout: 2 * time.Second, Logger: slog.New(&logRecorder{}), OnTransition: tr.record,
			})
			testenv.Eventually(t, 2*time.Second, settled("first check", func() bool { return st.Last(s) != nil }))
			checks := b.Accepted()
			for range 5 {
				m.Suspect(s, err)
			}
			if s.Eligible() || !s.Suspect() || s.State() != backend.StateUp {
				t.Fatalf("after Suspect: eligible %v, suspect %v, state %v; want skipped but up", s.Eligible(), s.Suspect(), s.State())
			}
			testenv.Eventually(t, 2*time.Second, settled("suspect cleared", func() bool { return !s.Suspect() }))
			if !s.Eligible() {
				t.Error("not eligible after a passed check")
			}
			time.Sleep(300 * time.Millisecond)
			synctest.Wait()
			if got := b.Accepted() - checks; got != 1 {
				t.Errorf("5 Suspect calls caused %d checks, want 1", got)
			}
			if got := m.Status(s).Failures[FailPassive]; got != 5 {
				t.Errorf("%d passive failures counted, want 5", got)
			}
			if trs := tr.of("rmq1"); len(trs) != 0 {
				t.Errorf("transitions %+v", trs)
			}
		})
	})

	t.Run("passive failures count toward fall", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var pn pipeNet
			b := pn.listen("rmq1:5672", (&testenv.FakeAMQP{TuneDelay: 100 * time.Millisecond}).Handle)
			s := newServer("rmq1", b.Addr())
			st := NewStatuses()
			logs, tr := &logRecorder{}, newTransitions(st)
			m := startMonitor(t, MonitorOptions{
				Servers: []*backend.Server{s}, Checker: pn.checker(&AMQPChecker{}), Statuses: st,
				Policy:  Policy{RiseFall: RiseFall{Rise: 2, Fall: 3}, Interval: time.Hour, FastInterval: 20 * time.Millisecond},
				Timeout: 2 * time.Second, Logger: slog.New(logs), OnTransition: tr.record,
			})
			testenv.Eventually(t, 2*time.Second, settled("first check", func() bool { return st.Last(s) != nil }))
			m.Suspect(s, err)
			m.Suspect(s, err)
			if s.State() != backend.StateUp {
				t.Fatalf("down after 2 of fall 3 failures")
			}
			m.Suspect(s, err)
			if s.State() != backend.StateDown {
				t.Fatalf("state %v after fall = 3 failed connections, want down", s.State())
			}
			lines := logs.forServer("rmq1")
			if len(lines) != 1 || lines[0].attrs["checks"] != "3/3 checks failed (3 passive)" ||
				lines[0].attrs["reason"] != "client connection failed: connection refused" || lines[0].attrs["kind"] != FailPassive {
				t.Errorf("log %+v", lines)
			}
			// The broker is fine: rise passed checks, at the fast interval, bring it back.
			testenv.Eventually(t, 2*time.Second, settled("up again", func() bool { return s.State() == backend.StateUp }))
			if s.Suspect() || !s.Eligible() {
				t.Errorf("suspect %v, eligible %v after coming back", s.Suspect(), s.Eligible())
			}
			if trs := tr.of("rmq1"); len(trs) != 2 || trs[0].result.Kind != FailPassive || trs[1].to != backend.StateUp {
				t.Errorf("transitions %+v", trs)
			}
		})
	})

	t.Run("checks off: cleared after down_interval", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newServer("rmq1", "127.0.0.1:1")
			s.SetHealth(false) // left down by an earlier configuration
			logs := &logRecorder{}
			m := startMonitor(t, MonitorOptions{Servers: []*backend.Server{s}, Policy: Policy{DownInterval: 100 * time.Millisecond}, Logger: slog.New(logs)})
			if s.State() != backend.StateUp {
				t.Fatalf("with checks off the server is %v, want up", s.State())
			}
			if lines := logs.forServer("rmq1"); len(lines) != 1 || lines[0].attrs["reason"] != "health checks off" {
				t.Errorf("log %+v", lines)
			}
			begin := time.Now()
			m.Suspect(s, err)
			if s.Eligible() {
				t.Fatal("eligible right after Suspect")
			}
			time.Sleep(30 * time.Millisecond)
			m.Suspect(s, err) // a later failure restarts the wait
			// Not cleared a moment before down_interval has passed since the last failure.
			time.Sleep(100*time.Millisecond - time.Nanosecond)
			synctest.Wait()
			if s.Eligible() {
				t.Errorf("suspect cleared %v after the first of two failures 30ms apart, want ≥ 100ms after the last", time.Since(begin))
			}
			testenv.Eventually(t, 2*time.Second, settled("suspect cleared", func() bool { return s.Eligible() }))
			if took := time.Since(begin); took < 130*time.Millisecond {
				t.Errorf("suspect cleared %v after the first of two failures 30ms apart, want ≥ 100ms after the last", took)
			}
			if s.State() != backend.StateUp || m.Status(s).Failures[FailPassive] != 2 {
				t.Errorf("state %v, failures %v", s.State(), m.Status(s).Failures)
			}
		})
	})
}

func TestMonitorMaint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pn pipeNet
		b := pn.listen("rmq1:5672", healthy())
		s := newServer("rmq1", b.Addr())
		s.SetAdmin(backend.AdminMaint)
		m := startMonitor(t, MonitorOptions{
			Servers: []*backend.Server{s}, Checker: pn.checker(&AMQPChecker{}),
			Policy: Policy{Interval: 20 * time.Millisecond}, Logger: slog.New(&logRecorder{}),
		})
		time.Sleep(200 * time.Millisecond)
		m.Suspect(s, nil) // wakes the loop, which still does not check
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		if n := b.Accepted(); n != 0 || m.Status(s).Last != nil {
			t.Fatalf("%d checks in maintenance, want none", n)
		}

		// Checks resume when maintenance ends; drain is still checked.
		s.SetAdmin(backend.AdminDrain)
		testenv.Eventually(t, time.Second, settled("checks in drain", func() bool { return b.Accepted() >= 3 }))
		s.SetAdmin(backend.AdminReady)
		n := b.Accepted()
		testenv.Eventually(t, time.Second, settled("checks when ready", func() bool { return b.Accepted() >= n+3 }))

		s.SetAdmin(backend.AdminMaint)
		synctest.Wait() // a check in flight ends at once: the pipe broker answers in no time
		n = b.Accepted()
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if got := b.Accepted() - n; got != 0 {
			t.Errorf("%d checks in maintenance, want none", got)
		}
	})
}

// A reload gives the new Monitor the old one's Statuses and the servers it keeps: a kept
// server's verdict, last check and counts carry over, and a down server is not held for a
// first check all over again.
func TestMonitorKeepsStatusesAcrossAReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pn pipeNet
		up := pn.listen("up:5672", healthy())
		sUp, sDead := newServer("up", up.Addr()), newServer("dead", "dead:5672")
		st := NewStatuses()
		policy := Policy{RiseFall: RiseFall{Rise: 2, Fall: 2}, Interval: time.Second}
		old := NewMonitor(MonitorOptions{Servers: []*backend.Server{sUp, sDead}, Checker: pn.checker(&AMQPChecker{}),
			Statuses: st, Policy: policy, Logger: slog.New(&logRecorder{})})
		old.Start()
		testenv.Eventually(t, 2*time.Second, settled("both checked", func() bool {
			return st.Last(sUp) != nil && sDead.State() == backend.StateDown
		}))
		old.Stop()
		checks, refused := up.Accepted(), st.Status(sDead).Failures[FailRefused]

		// The new configuration keeps both servers and adds one whose broker answers late.
		slow := pn.listen("new:5672", (&testenv.FakeAMQP{TuneDelay: 500 * time.Millisecond}).Handle)
		sNew := newServer("new", slow.Addr())
		st.Retain([]*backend.Server{sUp, sDead, sNew})
		logs := &logRecorder{}
		m := startMonitor(t, MonitorOptions{Servers: []*backend.Server{sUp, sDead, sNew}, Checker: pn.checker(&AMQPChecker{}),
			Statuses: st, Policy: policy, Logger: slog.New(logs)})
		synctest.Wait()
		// The new server waits for its first check (a kept server passed before), the kept ones
		// keep their verdicts at once.
		if sUp.State() != backend.StateUp || sDead.State() != backend.StateDown || sNew.State() != backend.StateDown {
			t.Errorf("after the reload: up %v, dead %v, new %v", sUp.State(), sDead.State(), sNew.State())
		}
		if got := m.Status(sUp).Durations.Count; got < uint64(checks) {
			t.Errorf("kept server's histogram counts %d checks, want at least the %d before the reload", got, checks)
		}
		if got := m.Status(sDead).Failures[FailRefused]; got < refused {
			t.Errorf("kept server's refusals went from %d to %d", refused, got)
		}
		// A dead server kept across the reload needs rise passes, not one, to come back.
		pn.listen("dead:5672", healthy())
		testenv.Eventually(t, 2*time.Second, settled("a passed check of the kept down server", func() bool {
			c := st.Last(sDead)
			return c != nil && c.OK
		}))
		if sDead.State() != backend.StateDown {
			t.Errorf("kept down server up after one passed check, want rise = 2")
		}
		testenv.Eventually(t, 5*time.Second, settled("kept server up after rise checks", func() bool { return sDead.State() == backend.StateUp }))
		testenv.Eventually(t, 2*time.Second, settled("new server up", func() bool { return sNew.State() == backend.StateUp }))
		for _, l := range logs.forServer("up") {
			t.Errorf("kept up server logged %q %v", l.msg, l.attrs)
		}
	})
}

// fakeManagement is a RabbitMQ management API that answers local-alarms with the alarms set.
type fakeManagement struct {
	alarms     atomic.Pointer[[]string]
	partitions atomic.Pointer[[]string]
	srv        *httptest.Server
}

func startFakeManagement(t *testing.T) *fakeManagement {
	f := &fakeManagement{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "guest" || p != "guest" {
			w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
			http.Error(w, `{"error":"not_authorized","reason":"Login failed"}`, http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case alarmsPath:
		case "/api/overview":
			fmt.Fprint(w, `{"node":"rabbit@fake"}`)
			return
		case "/api/nodes/rabbit@fake":
			var parts []string
			if p := f.partitions.Load(); p != nil {
				parts = *p
			}
			b, _ := json.Marshal(map[string]any{"partitions": parts})
			w.Write(b)
			return
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		var alarms []string
		if a := f.alarms.Load(); a != nil {
			alarms = *a
		}
		if len(alarms) == 0 {
			fmt.Fprint(w, `{"status":"ok"}`)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		var list []string
		for _, a := range alarms {
			list = append(list, fmt.Sprintf(`{"node":"rabbit@fake","resource":%q}`, a))
		}
		fmt.Fprintf(w, `{"status":"failed","reason":"There are alarms in effect in the cluster","alarms":[%s]}`, strings.Join(list, ","))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeManagement) set(alarms ...string) { f.alarms.Store(&alarms) }

func (f *fakeManagement) partitioned(from ...string) { f.partitions.Store(&from) }

func (f *fakeManagement) port(t *testing.T) int {
	u, err := url.Parse(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestManagementChecker(t *testing.T) {
	b := testenv.StartFakeBroker(t, healthy())
	mgmt := startFakeManagement(t)
	port := mgmt.port(t)
	hung := testenv.StartFakeBroker(t, testenv.Silent) // accepts HTTP and never answers
	_, hungPort, _ := net.SplitHostPort(hung.Addr())
	hp, _ := strconv.Atoi(hungPort)
	_, deadPort, _ := net.SplitHostPort(testenv.FreeAddr(t))
	dp, _ := strconv.Atoi(deadPort)

	tests := []struct {
		name   string
		opts   ManagementOptions
		alarms []string
		ok     bool
		kind   string
		reason string
	}{
		{"no alarm", ManagementOptions{Port: port, Alarms: true}, nil, true, "", "AMQP handshake ok"},
		{"alarm shown, still up", ManagementOptions{Port: port, Alarms: true}, []string{"memory"}, true, "", "AMQP handshake ok; alarm: memory"},
		{"eject on alarm", ManagementOptions{Port: port, Alarms: true, EjectOnAlarm: true}, []string{"memory", "disk", "memory"}, false, FailAlarm, "AMQP handshake ok; alarm: memory, disk"},
		{"alarms not asked for", ManagementOptions{Port: port, EjectOnAlarm: true}, []string{"disk"}, true, "", "AMQP handshake ok"},
		{"wrong credentials", ManagementOptions{Port: port, Alarms: true, Username: "guest", Password: "x"}, nil, true, "", "AMQP handshake ok; management API: 401 Unauthorized"},
		{"API down", ManagementOptions{Port: dp, Alarms: true, EjectOnAlarm: true}, nil, true, "", "AMQP handshake ok; management API: connection refused"},
		{"API hung", ManagementOptions{Port: hp, Alarms: true, EjectOnAlarm: true}, nil, true, "", "AMQP handshake ok; management API: timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mgmt.set(tt.alarms...)
			mc := newManagementChecker(&AMQPChecker{}, tt.opts, testTimeout)
			res := checkWithin(t, mc, b.Addr(), testTimeout)
			if res.OK != tt.ok || res.Kind != tt.kind || res.Reason != tt.reason {
				t.Errorf("got OK=%v Kind=%q Reason=%q; want %v %q %q", res.OK, res.Kind, res.Reason, tt.ok, tt.kind, tt.reason)
			}
		})
	}
	waitIdle(t, hung)

	// A partition seen in the node's record is shown, and does not eject.
	mgmt.set()
	mgmt.partitioned("rabbit@other")
	pc := newManagementChecker(&AMQPChecker{}, ManagementOptions{Port: port, Alarms: true, EjectOnAlarm: true}, testTimeout)
	if res := checkWithin(t, pc, b.Addr(), testTimeout); !res.OK || res.Reason != "AMQP handshake ok; partitioned from rabbit@other" {
		t.Errorf("partitioned node: %+v", res)
	}
	mgmt.partitioned()

	// A failed main check keeps its kind; the alarm is still shown.
	mgmt.set("disk")
	mc := newManagementChecker(&AMQPChecker{}, ManagementOptions{Port: port, Alarms: true, EjectOnAlarm: true}, testTimeout)
	res := checkWithin(t, mc, testenv.FreeAddr(t), testTimeout)
	if res.OK || res.Kind != FailRefused || res.Reason != "connection refused; alarm: disk" {
		t.Errorf("dead broker: %+v", res)
	}
}

func TestMonitorManagement(t *testing.T) {
	b := testenv.StartFakeBroker(t, healthy())
	mgmt := startFakeManagement(t)
	mgmt.set("memory")
	s := newServer("rmq1", b.Addr())
	logs := &logRecorder{}
	m := startMonitor(t, MonitorOptions{
		Servers: []*backend.Server{s}, Checker: &AMQPChecker{},
		Policy:  Policy{RiseFall: RiseFall{Rise: 1, Fall: 2}, Interval: 20 * time.Millisecond},
		Timeout: time.Second, Management: &ManagementOptions{Port: mgmt.port(t), Alarms: true, EjectOnAlarm: true},
		Logger: slog.New(logs),
	})
	// The state changes before the transition is logged.
	testenv.Eventually(t, 2*time.Second, holds("ejected on alarm, logged", func() bool {
		return s.State() == backend.StateDown && len(logs.forServer("rmq1")) > 0
	}))
	if c := m.Status(s).Last; c.OK || c.Kind != FailAlarm || c.Reason != "AMQP handshake ok; alarm: memory" {
		t.Errorf("last check %+v", c)
	}
	if lines := logs.forServer("rmq1"); len(lines) != 1 || lines[0].attrs["kind"] != FailAlarm {
		t.Errorf("log %+v", lines)
	}
	mgmt.set()
	testenv.Eventually(t, 2*time.Second, holds("up when the alarm clears", func() bool { return s.State() == backend.StateUp }))
	if c := m.Status(s).Last; !c.OK || c.Reason != "AMQP handshake ok" {
		t.Errorf("last check %+v", c)
	}
}

// TestMonitorStopLeavesNothing stops a monitor with checks in every stage and wants no
// goroutine and no connection left behind.
func TestMonitorStopLeavesNothing(t *testing.T) {
	good := testenv.StartFakeBroker(t, healthy())
	hung := testenv.StartFakeBroker(t, testenv.Silent)
	slow := testenv.StartFakeBroker(t, (&testenv.FakeAMQP{TuneDelay: time.Hour}).Handle)
	mgmt := startFakeManagement(t)
	mgmt.set("disk")
	ignore := goleak.IgnoreCurrent()

	var servers []*backend.Server
	for i, b := range []*testenv.FakeBroker{good, hung, slow, good, hung} {
		servers = append(servers, newServer(fmt.Sprintf("s%d", i), b.Addr()))
	}
	m := NewMonitor(MonitorOptions{
		Servers: servers, Checker: &AMQPChecker{}, Policy: Policy{Interval: 5 * time.Millisecond},
		Timeout: 10 * time.Second, Management: &ManagementOptions{Port: mgmt.port(t), Alarms: true},
		Logger: slog.New(&logRecorder{}),
	})
	m.Start()
	// Checks in every stage: many done, some hanging, some waiting for a slow broker.
	testenv.Eventually(t, 5*time.Second, holds("checks of every broker", func() bool {
		return good.Accepted() >= 10 && hung.Accepted() >= 2 && slow.Accepted() >= 1
	}))
	for _, s := range servers {
		m.Suspect(s, nil)
	}
	begin := time.Now()
	m.Stop()
	if took := time.Since(begin); took > time.Second {
		t.Errorf("Stop took %v", took)
	}
	for _, b := range []*testenv.FakeBroker{good, hung, slow} {
		waitIdle(t, b)
	}
	servers[0].ClearSuspect() // the check the last Suspect asked for may have been cut short
	m.Suspect(servers[0], nil)
	if servers[0].Suspect() {
		t.Error("Suspect after Stop left the server suspect, with nothing left to clear it")
	}
	if good.Accepted() < 10 {
		t.Errorf("only %d checks of the good broker", good.Accepted())
	}
	goleak.VerifyNone(t, ignore)
}
