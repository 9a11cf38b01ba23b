package healthcheck

import (
	"testing"
	"time"
)

func TestPolicyNext(t *testing.T) {
	const (
		inter = 2 * time.Second
		fast  = 500 * time.Millisecond
		down  = 5 * time.Second
	)
	p := Policy{RiseFall: RiseFall{Rise: 2, Fall: 3}, Interval: inter, FastInterval: fast, DownInterval: down}
	up, dn := Health{Up: true}, Health{}
	tests := []struct {
		name    string
		policy  Policy
		start   Health
		results string // '+' passed, '-' failed
		want    Health
		wait    time.Duration
	}{
		{"up stays up", p, up, "+++", Health{Up: true, Passes: 3}, inter},
		{"one failure is pending", p, up, "-", Health{Up: true, Fails: 1}, fast},
		{"fall-1 failures still up", p, up, "--", Health{Up: true, Fails: 2}, fast},
		{"fall failures go down", p, up, "---", Health{Fails: 3}, down},
		{"a pass resets the failures", p, up, "--+--", Health{Up: true, Fails: 2}, fast},
		{"down stays down", p, dn, "----", Health{Fails: 3}, down},
		{"one pass while down is pending", p, dn, "-+", Health{Passes: 1}, fast},
		{"rise passes come up", p, dn, "++", Health{Up: true, Passes: 2}, inter},
		{"a failure resets the passes", p, dn, "+-+", Health{Passes: 1}, fast},
		{"flapping never changes", p, up, "-+-+-+", Health{Up: true, Passes: 1}, inter},
		{"counters saturate", p, dn, "----------", Health{Fails: 3}, down},
		{"defaults: rise 2, fall 3, 2s", Policy{}, up, "---", Health{Fails: 3}, DefaultInterval},
		{"fast and down default to interval", Policy{Interval: time.Second}, up, "-", Health{Up: true, Fails: 1}, time.Second},
		{"rise 1 fall 1", Policy{RiseFall: RiseFall{Rise: 1, Fall: 1}}, up, "-+", Health{Up: true, Passes: 1}, DefaultInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.start
			var wait time.Duration
			for _, r := range tt.results {
				h, wait = tt.policy.Next(h, r == '+')
			}
			if h != tt.want || wait != tt.wait {
				t.Errorf("after %q: %+v, wait %v; want %+v, wait %v", tt.results, h, wait, tt.want, tt.wait)
			}
		})
	}
}

// TestPolicyTransitionsOnce checks that a run of equal results changes the state at most once,
// at exactly the threshold.
func TestPolicyTransitionsOnce(t *testing.T) {
	for rise := 1; rise <= 4; rise++ {
		for fall := 1; fall <= 4; fall++ {
			p := Policy{RiseFall: RiseFall{Rise: rise, Fall: fall}}
			h := Health{Up: true}
			for i := 1; i <= 10; i++ {
				prev := h
				h, _ = p.Next(h, false)
				if changed := prev.Up != h.Up; changed != (i == fall) {
					t.Fatalf("rise %d fall %d: failure %d changed=%v", rise, fall, i, changed)
				}
			}
			for i := 1; i <= 10; i++ {
				prev := h
				h, _ = p.Next(h, true)
				if changed := prev.Up != h.Up; changed != (i == rise) {
					t.Fatalf("rise %d fall %d: pass %d changed=%v", rise, fall, i, changed)
				}
			}
		}
	}
}
