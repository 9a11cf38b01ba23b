package rebalance

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// sessionsOn makes n sessions on server, the k-th accepted at t0+k s and last active at
// t0+(100-k) s (so the later ones have been idle the longest), with ids from base.
func sessionsOn(server string, n int, base uint64) []Session {
	out := make([]Session, n)
	for k := range out {
		out[k] = Session{ID: base + uint64(k), Server: server, Since: t0.Add(time.Duration(k) * time.Second),
			LastActive: t0.Add(time.Duration(100-k) * time.Second)}
	}
	return out
}

func up(name string, w int) Server { return Server{Name: name, Weight: w, Eligible: true} }

// perServer counts the victims by server, as "a=2 b=1".
func perServer(v []Session) string {
	n := map[string]int{}
	for _, s := range v {
		n[s.Server]++
	}
	var keys []string
	for k := range n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n[k]))
	}
	return strings.Join(parts, " ")
}

func TestPlan(t *testing.T) {
	now := t0.Add(200 * time.Second)
	cat := func(l ...[]Session) []Session { return slices.Concat(l...) }
	for _, tt := range []struct {
		name     string
		servers  []Server
		sessions []Session
		p        Policy
		want     string // victims per server
	}{
		{"balanced", []Server{up("a", 1), up("b", 1), up("c", 1)},
			cat(sessionsOn("a", 30, 0), sessionsOn("b", 30, 100), sessionsOn("c", 30, 200)), Policy{Tolerance: 0.1}, ""},
		{"node back: 45/45/0, tolerance 0", []Server{up("a", 1), up("b", 1), up("c", 1)},
			cat(sessionsOn("a", 45, 0), sessionsOn("b", 45, 100)), Policy{}, "a=15 b=15"},
		{"node back: beyond tolerance 10%, down to the fair share", []Server{up("a", 1), up("b", 1), up("c", 1)},
			cat(sessionsOn("a", 45, 0), sessionsOn("b", 45, 100)), Policy{Tolerance: 0.1}, "a=15 b=15"},
		{"within tolerance", []Server{up("a", 1), up("b", 1), up("c", 1)},
			cat(sessionsOn("a", 33, 0), sessionsOn("b", 33, 100), sessionsOn("c", 24, 200)), Policy{Tolerance: 0.1}, ""},
		{"within tolerance, a pass under way goes on to the fair share", []Server{up("a", 1), up("b", 1), up("c", 1)},
			cat(sessionsOn("a", 33, 0), sessionsOn("b", 33, 100), sessionsOn("c", 24, 200)), Policy{Tolerance: 0.1, Continue: true}, "a=3 b=3"},
		{"one server beyond tolerance starts a pass for all", []Server{up("a", 1), up("b", 1), up("c", 1)},
			cat(sessionsOn("a", 34, 0), sessionsOn("b", 32, 100), sessionsOn("c", 24, 200)), Policy{Tolerance: 0.1}, "a=4 b=2"},
		{"weights: 2:1 wants 60/30", []Server{up("a", 1), up("b", 2)},
			cat(sessionsOn("a", 60, 0), sessionsOn("b", 30, 100)), Policy{}, "a=30"},
		{"effective weight 0 takes nothing", []Server{up("a", 1), up("b", 0)},
			cat(sessionsOn("a", 60, 0)), Policy{}, ""},
		{"ineligible server does not count", []Server{up("a", 1), up("b", 1), {Name: "c", Weight: 1}},
			cat(sessionsOn("a", 45, 0), sessionsOn("b", 45, 100)), Policy{}, ""},
		{"sessions on an ineligible server are left alone", []Server{up("a", 1), {Name: "b", Weight: 1}},
			cat(sessionsOn("a", 10, 0), sessionsOn("b", 40, 100)), Policy{}, ""},
		{"backups count only without an eligible primary", []Server{up("a", 1), up("b", 1), {Name: "k", Weight: 1, Eligible: true, Backup: true}},
			cat(sessionsOn("a", 20, 0), sessionsOn("k", 20, 100)), Policy{}, "a=10"},
		{"only backups eligible", []Server{{Name: "a", Weight: 1}, {Name: "k", Weight: 1, Eligible: true, Backup: true}, {Name: "l", Weight: 1, Eligible: true, Backup: true}},
			cat(sessionsOn("k", 20, 0)), Policy{}, "k=10"},
		{"min_age protects young sessions", []Server{up("a", 1), up("b", 1)},
			cat(sessionsOn("a", 20, 0)), Policy{MinAge: 200*time.Second - 3*time.Second}, "a=4"}, // since ≤ t0+3s: 4 sessions
		{"no server", nil, sessionsOn("a", 5, 0), Policy{}, ""},
		{"connecting sessions are ignored", []Server{up("a", 1), up("b", 1)},
			cat(sessionsOn("", 10, 0), sessionsOn("a", 2, 100)), Policy{}, "a=1"},
		{"odd total rounds the share up", []Server{up("a", 1), up("b", 1)},
			cat(sessionsOn("a", 3, 0)), Policy{}, "a=1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.servers, tt.sessions, tt.p, now, nil)
			if perServer(got) != tt.want {
				t.Errorf("victims %q, want %q", perServer(got), tt.want)
			}
			for _, v := range got {
				if now.Sub(v.Since) < tt.p.MinAge {
					t.Errorf("victim %d is younger than min_age", v.ID)
				}
			}
		})
	}
}

// The longest idle go first, and the servers take turns by surplus left.
func TestPlanOrder(t *testing.T) {
	now := t0.Add(200 * time.Second)
	sessions := slices.Concat(sessionsOn("a", 6, 0), sessionsOn("b", 4, 100))
	got := Plan([]Server{up("a", 1), up("b", 1), up("c", 1)}, sessions, Policy{}, now, nil)
	// total 10, share 3.33 → limit 4: a has 2 too many, b none.
	var ids []uint64
	for _, v := range got {
		ids = append(ids, v.ID)
	}
	// a's sessions: LastActive is earliest for the highest k.
	if fmt.Sprint(ids) != "[5 4]" {
		t.Errorf("victims %v, want [5 4] (oldest LastActive first)", ids)
	}
	sessions = slices.Concat(sessionsOn("a", 8, 0), sessionsOn("b", 6, 100))
	got = Plan([]Server{up("a", 1), up("b", 1), up("c", 1)}, sessions, Policy{}, now, nil)
	// total 14, limit 5: a 3, b 1. Turns: a (3 left), a (2 > 1), a (1 = 1, by name), b.
	var order []string
	for _, v := range got {
		order = append(order, v.Server)
	}
	if strings.Join(order, "") != "aaab" {
		t.Errorf("order %v, want a a a b (most surplus left first, ties by name)", order)
	}
}

// Closing sessions count toward the total, not toward their server, and are never chosen;
// skipped ones count but are not chosen.
func TestPlanClosingAndSkip(t *testing.T) {
	now := t0.Add(200 * time.Second)
	servers := []Server{up("a", 1), up("b", 1), up("c", 1)}
	sessions := slices.Concat(sessionsOn("a", 45, 0), sessionsOn("b", 45, 100))
	for i := range 10 {
		sessions[i].Closing = true // 10 of a's are on their way out
	}
	got := Plan(servers, sessions, Policy{}, now, func(id uint64) bool { return id >= 100 && id < 140 })
	// total 90, share 30: a counts 35 → 5; b counts 45 → 15, but only 5 may be chosen.
	if perServer(got) != "a=5 b=5" {
		t.Errorf("victims %q, want a=5 b=5", perServer(got))
	}
	for _, v := range got {
		if v.Closing || (v.ID >= 100 && v.ID < 140) {
			t.Errorf("victim %d was closing or skipped", v.ID)
		}
	}
}

// Repeated plans with closes that reconnect round robin converge on the fair share.
func TestPlanConverges(t *testing.T) {
	now := t0.Add(200 * time.Second)
	servers := []Server{up("a", 1), up("b", 1), up("c", 1)}
	count := map[string]int{"a": 45, "b": 45, "c": 0}
	rr := 0
	names := []string{"a", "b", "c"}
	for range 200 {
		var sessions []Session
		for _, n := range names {
			sessions = append(sessions, sessionsOn(n, count[n], uint64(len(sessions)))...)
		}
		v := Plan(servers, sessions, Policy{}, now, nil)
		if len(v) == 0 {
			break
		}
		count[v[0].Server]--
		count[names[rr%3]]++ // the client comes back through round robin
		rr++
	}
	if count["a"] != 30 || count["b"] != 30 || count["c"] != 30 {
		t.Errorf("counts %v, want 30 each", count)
	}
}

// Sticky sessions (consumers of exclusive or auto-delete queues) go after every other one,
// however long they have been idle.
func TestPlanClosesStickySessionsLast(t *testing.T) {
	now := t0.Add(200 * time.Second)
	a := sessionsOn("a", 4, 0)
	a[2].Sticky, a[3].Sticky = true, true // the longest idle
	got := Plan([]Server{up("a", 1), up("b", 1)}, a, Policy{}, now, nil)
	if len(got) != 2 || got[0].Sticky || got[1].Sticky {
		t.Fatalf("victims %+v, want the two non-sticky sessions", got)
	}
	got = Plan([]Server{up("a", 1), up("b", 1), up("c", 1), up("d", 1)}, a, Policy{}, now, nil)
	if len(got) != 3 || got[0].Sticky || got[1].Sticky || !got[2].Sticky {
		t.Fatalf("victims %+v, want the non-sticky ones first", got)
	}
}
