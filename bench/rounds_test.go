package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// fakeWorkload records the order of its runs and answers from a per-target script.
type fakeWorkload struct {
	mu    sync.Mutex
	order []string
	// fail maps a target name to the error its runs return.
	fail map[string]error
	// cancelAfter, when set, is called after this many runs.
	cancelAfter int
	cancel      context.CancelFunc
}

func (f *fakeWorkload) Name() string { return "fake" }

func (f *fakeWorkload) Run(ctx context.Context, t Target, progress io.Writer) (Figures, error) {
	f.mu.Lock()
	f.order = append(f.order, t.Name)
	n := len(f.order)
	f.mu.Unlock()
	fmt.Fprintf(progress, "run %s\n", t.Name)
	if f.cancel != nil && n == f.cancelAfter {
		f.cancel()
	}
	if err := f.fail[t.Name]; err != nil {
		return nil, err
	}
	return Figures{{Name: "rate", Unit: "msg/s", Value: float64(n), Higher: true}}, nil
}

func TestRunRoundsAlternates(t *testing.T) {
	targets := []Target{{"a", "127.0.0.1:1"}, {"b", "127.0.0.1:2"}, {"c", "127.0.0.1:3"}}
	w := &fakeWorkload{fail: map[string]error{
		"b": &UnreachableError{Target: targets[1], Err: errors.New("connection refused")},
	}}
	var progress strings.Builder
	rep := RunRounds(context.Background(), targets, 3, w, &progress)

	if got, want := strings.Join(w.order, " "), "a b c a b c a b c"; got != want {
		t.Fatalf("order = %q, want %q", got, want)
	}
	if rep.Workload != "fake" || len(rep.Targets) != 3 {
		t.Fatalf("report header: %q %v", rep.Workload, rep.Targets)
	}
	// a ran 1st, 4th and 7th; c 3rd, 6th and 9th.
	for name, want := range map[string][]float64{"a": {1, 4, 7}, "c": {3, 6, 9}} {
		rounds := rep.Rounds[name]
		if len(rounds) != 3 {
			t.Fatalf("%s: %d rounds", name, len(rounds))
		}
		for i, rd := range rounds {
			v, ok := rd.Figures.Get("rate")
			if !ok || v != want[i] || rd.Round != i+1 || rd.Failed() {
				t.Errorf("%s round %d = %+v, want rate %v", name, i+1, rd, want[i])
			}
		}
	}
	for i, rd := range rep.Rounds["b"] {
		if !rd.Failed() || !rd.Unreachable || len(rd.Figures) != 0 || rd.Round != i+1 {
			t.Errorf("b round %d = %+v, want an unreachable round without figures", i+1, rd)
		}
	}
	if st := rep.Status("b"); !st.Down() || st.Unreachable != 3 {
		t.Errorf("status of b = %+v", st)
	}
	if !strings.Contains(progress.String(), "== fake round 2/3: b (127.0.0.1:2)") {
		t.Errorf("progress lacks the round headers:\n%s", progress.String())
	}
}

func TestRunRoundsOtherErrorAndCancel(t *testing.T) {
	targets := []Target{{"a", "x:1"}, {"b", "x:2"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &fakeWorkload{fail: map[string]error{"b": errors.New("declare: access refused")}, cancelAfter: 3, cancel: cancel}
	rep := RunRounds(ctx, targets, 5, w, nil)

	if got := strings.Join(w.order, " "); got != "a b a" {
		t.Fatalf("order = %q, want the run to stop at the cancelled round", got)
	}
	b := rep.Rounds["b"]
	if len(b) != 1 || !b[0].Failed() || b[0].Unreachable {
		t.Errorf("b = %+v, want one failed (not unreachable) round", b)
	}
	a := rep.Rounds["a"]
	if len(a) != 2 || a[0].Failed() || !a[1].Failed() || !strings.Contains(a[1].Error, "interrupted") {
		t.Errorf("a = %+v, want a good round then an interrupted one", a)
	}
}

func TestCheckTargets(t *testing.T) {
	if err := CheckTargets(nil); err == nil {
		t.Error("no targets accepted")
	}
	if err := CheckTargets([]Target{{"a", "h:1"}, {"a", "h:2"}}); err == nil {
		t.Error("duplicate names accepted")
	}
	if err := CheckTargets([]Target{{"a", "h:1"}, {"b", "h:1"}}); err != nil {
		t.Error(err)
	}
}
