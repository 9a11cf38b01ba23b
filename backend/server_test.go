package backend

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

func TestStateCombinesHealthAndOperator(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Address: "127.0.0.1:1", Weight: 1})
	steps := []struct {
		do   func()
		want State
	}{
		{func() {}, StateUp},
		{func() { s.SetHealth(false) }, StateDown},
		{func() { s.SetAdmin(AdminDrain) }, StateDrain}, // the operator's word wins over health
		{func() { s.SetHealth(true) }, StateDrain},
		{func() { s.SetAdmin(AdminMaint) }, StateMaint},
		{func() { s.SetAdmin(AdminReady) }, StateUp}, // back to what the checks say
		{func() { s.SetHealth(false) }, StateDown},
		{func() { s.SetState(StateUp) }, StateUp},
	}
	for i, st := range steps {
		st.do()
		if got := s.State(); got != st.want {
			t.Fatalf("step %d: state %v, want %v", i, got, st.want)
		}
	}
	if got := s.Transitions(StateDown); got != 2 {
		t.Errorf("transitions to down = %d, want 2", got)
	}
	if got := s.Transitions(StateUp); got != 2 {
		t.Errorf("transitions to up = %d, want 2", got)
	}
	// Setting the same health again is not a transition.
	s.SetHealth(true)
	if got := s.Transitions(StateUp); got != 2 {
		t.Errorf("a repeated up counted as a transition: %d", got)
	}
}

func TestEligible(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Weight: 1, MaxConnections: 1})
	if !s.Eligible() {
		t.Fatal("a fresh server is not eligible")
	}
	if !s.Acquire() {
		t.Fatal("first slot refused")
	}
	if s.Eligible() || s.Acquire() {
		t.Error("a full server is eligible or gave a second slot")
	}
	s.Release()
	if !s.MarkSuspect() || s.Eligible() {
		t.Error("a suspect server is eligible")
	}
	if s.MarkSuspect() {
		t.Error("MarkSuspect reported a new suspicion twice")
	}
	s.SetHealth(true) // a passing check clears the suspicion
	if s.Suspect() || !s.Eligible() {
		t.Error("a passing check did not clear suspect")
	}
	s.SetWeight(0)
	if s.Eligible() {
		t.Error("a weight-0 server is eligible")
	}
	s.SetWeight(1000)
	if s.Weight() != MaxWeight {
		t.Errorf("weight clamped to %d, want %d", s.Weight(), MaxWeight)
	}
}

func TestSlowstartRampsTheWeight(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Weight: 100, Slowstart: time.Hour})
	if w := s.EffectiveWeight(); w != 100 {
		t.Fatalf("a server up since start ramps: %d", w)
	}
	s.SetHealth(false)
	s.SetHealth(true)
	if w := s.EffectiveWeight(); w != 1 {
		t.Errorf("just recovered: effective weight %d, want 1", w)
	}
	s.upSince.Store(time.Now().Add(-30 * time.Minute).UnixNano())
	if w := s.EffectiveWeight(); w < 49 || w > 51 {
		t.Errorf("half way: effective weight %d, want about 50", w)
	}
	s.upSince.Store(time.Now().Add(-2 * time.Hour).UnixNano())
	if w := s.EffectiveWeight(); w != 100 {
		t.Errorf("after the ramp: effective weight %d, want 100", w)
	}
}

func TestCheckResultsAreKeptAndCounted(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Weight: 1})
	if s.LastCheck() != nil {
		t.Fatal("a check result before any check")
	}
	s.SetCheck(CheckResult{OK: true, Reason: "AMQP handshake ok", Duration: 3 * time.Millisecond})
	s.SetCheck(CheckResult{OK: false, Kind: FailAuth, Code: 403, Reason: "403 ACCESS_REFUSED", Duration: 2 * time.Second})
	s.CountFailure("no such kind")
	if lc := s.LastCheck(); lc.Code != 403 || lc.OK {
		t.Errorf("last check = %+v", lc)
	}
	f := s.Failures()
	if f[FailAuth] != 1 || f[FailOther] != 1 {
		t.Errorf("failures = %v", f)
	}
	h := s.CheckDurations()
	if h.Count != 2 || h.Buckets[0.005] != 1 || h.Buckets[2.5] != 2 || h.Buckets[1] != 1 {
		t.Errorf("histogram = %+v", h)
	}
}

func TestAcquireIsExactUnderContention(t *testing.T) {
	s := NewServer(ServerOptions{Name: "a", Weight: 1, MaxConnections: 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.Acquire() {
				mu.Lock()
				got++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got != 10 || s.ActiveConnections() != 10 || s.TotalConnections() != 0 {
		t.Errorf("granted %d slots (active %d, total %d), want 10 slots and no session yet", got, s.ActiveConnections(), s.TotalConnections())
	}
}

func TestDialCountsErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := NewServer(ServerOptions{Name: "a", Address: addr, Weight: 1})
	c, err := s.Dial(context.Background(), DialOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ln.Close()
	_, err = s.Dial(context.Background(), DialOptions{Timeout: time.Second})
	var op *net.OpError
	if !errors.As(err, &op) || s.ConnectErrors() != 1 {
		t.Errorf("dial to a closed port: err %v, connect errors %d", err, s.ConnectErrors())
	}
}

func TestParseAdmin(t *testing.T) {
	for _, in := range []string{"ready", "drain", "maint"} {
		a, err := ParseAdmin(in)
		if err != nil || a.String() != in {
			t.Errorf("ParseAdmin(%q) = %v, %v", in, a, err)
		}
	}
	if _, err := ParseAdmin("up"); err == nil {
		t.Error(`ParseAdmin("up") accepted`)
	}
}
