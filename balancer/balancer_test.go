package balancer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/amqplb/amqplb/backend"
)

// srv describes a test server.
type srv struct {
	weight  int
	state   backend.State
	backup  bool
	maxConn int
	active  int // slots taken with Acquire
}

// up is an eligible server of the given weight.
func up(w int) srv { return srv{weight: w} }

// build makes servers named a, b, c, ... from specs.
func build(t testing.TB, specs ...srv) []*backend.Server {
	t.Helper()
	out := make([]*backend.Server, len(specs))
	for i, sp := range specs {
		s := backend.NewServer(backend.ServerOptions{
			Name:           serverName(i),
			Address:        fmt.Sprintf("127.0.0.1:%d", 5672+i),
			Weight:         sp.weight,
			Backup:         sp.backup,
			MaxConnections: sp.maxConn,
		})
		s.SetState(sp.state)
		for range sp.active {
			if !s.Acquire() {
				t.Fatalf("server %d: Acquire failed for active=%d maxConn=%d", i, sp.active, sp.maxConn)
			}
		}
		out[i] = s
	}
	return out
}

func serverName(i int) string {
	if i < 26 {
		return string(rune('a' + i))
	}
	return fmt.Sprintf("s%d", i)
}

func mustNew(t testing.TB, name string) Policy {
	t.Helper()
	p, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func name(s *backend.Server) string {
	if s == nil {
		return "<nil>"
	}
	return s.Name()
}

var client = netip.MustParseAddr("192.0.2.10")

func TestNew(t *testing.T) {
	for _, n := range Names() {
		p, err := New(n)
		if err != nil || p == nil {
			t.Errorf("New(%q) = %v, %v", n, p, err)
		}
	}
	_, err := New("weighted")
	if err == nil {
		t.Fatal(`New("weighted") succeeded`)
	}
	for _, n := range Names() {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %q", err, n)
		}
	}
	// Each call returns independent state.
	a, b := mustNew(t, NameRoundRobin), mustNew(t, NameRoundRobin)
	if a == b {
		t.Error("New returned the same roundrobin value twice")
	}
}

// TestEligibility runs every policy over cases of which servers may be picked.
func TestEligibility(t *testing.T) {
	full := srv{weight: 1, maxConn: 2, active: 2}
	tests := []struct {
		name    string
		servers []srv
		skip    uint64
		allowed string // names that may be picked; "" means Pick must return nil
		all     bool   // every allowed server must be picked at least once (not for first/source)
	}{
		{name: "empty", servers: nil, allowed: ""},
		{name: "single", servers: []srv{up(1)}, allowed: "a", all: true},
		{name: "weight 0 never", servers: []srv{up(1), up(0), up(3)}, allowed: "ac", all: true},
		{
			name: "down drain maint full never",
			servers: []srv{
				{weight: 1, state: backend.StateDown}, up(1), {weight: 1, state: backend.StateDrain},
				{weight: 1, state: backend.StateMaint}, full, up(2),
			},
			allowed: "bf", all: true,
		},
		{name: "not full yet", servers: []srv{{weight: 1, maxConn: 2, active: 1}, full}, allowed: "a", all: true},
		{name: "backups unused while active eligible", servers: []srv{{weight: 5, backup: true}, up(1)}, allowed: "b", all: true},
		{
			name:    "backups when no active eligible",
			servers: []srv{{weight: 1, state: backend.StateDown}, {weight: 2, backup: true}, up(0), {weight: 1, backup: true}, full},
			allowed: "bd", all: true,
		},
		{
			name:    "ineligible backups never",
			servers: []srv{{weight: 1, state: backend.StateDown}, {weight: 1, backup: true, state: backend.StateDrain}, {weight: 1, backup: true}},
			allowed: "c", all: true,
		},
		{name: "skip", servers: []srv{up(5), up(1), up(1)}, skip: 0b001, allowed: "bc", all: true},
		{name: "skip several", servers: []srv{up(5), up(1), up(1)}, skip: 0b101, allowed: "b", all: true},
		{name: "skipped actives fall back to backups", servers: []srv{up(1), {weight: 1, backup: true}}, skip: 0b01, allowed: "b", all: true},
		{name: "skip everything", servers: []srv{up(1), {weight: 1, backup: true}}, skip: 0b11, allowed: ""},
		{name: "skip bits past the list", servers: []srv{up(1)}, skip: ^uint64(1), allowed: "a", all: true},
		{
			name:    "all ineligible",
			servers: []srv{{weight: 1, state: backend.StateDown}, up(0), full, {weight: 1, backup: true, state: backend.StateMaint}},
			allowed: "",
		},
	}
	for _, tt := range tests {
		for _, pn := range Names() {
			t.Run(tt.name+"/"+pn, func(t *testing.T) {
				servers := build(t, tt.servers...)
				p := mustNew(t, pn)
				seen := map[string]int{}
				for i := range 200 {
					// Vary the client so that "source" can reach more than one server.
					c := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
					got := p.Pick(servers, c, tt.skip)
					if tt.allowed == "" {
						if got != nil {
							t.Fatalf("Pick = %s, want nil", name(got))
						}
						continue
					}
					if got == nil || !strings.Contains(tt.allowed, got.Name()) {
						t.Fatalf("Pick = %s, want one of %q", name(got), tt.allowed)
					}
					seen[got.Name()]++
				}
				if tt.all && pn != NameFirst && pn != NameSource {
					for _, r := range tt.allowed {
						if seen[string(r)] == 0 {
							t.Errorf("%c never picked (picks %v)", r, seen)
						}
					}
				}
			})
		}
	}
}

// TestBackupReturn checks that backups serve while the active servers are down and stop
// serving once one comes back.
func TestBackupReturn(t *testing.T) {
	for _, pn := range Names() {
		t.Run(pn, func(t *testing.T) {
			servers := build(t, up(1), up(1), srv{weight: 1, backup: true})
			p := mustNew(t, pn)
			check := func(want ...string) {
				t.Helper()
				for range 20 {
					if got := name(p.Pick(servers, client, 0)); !slices.Contains(want, got) {
						t.Fatalf("Pick = %s, want one of %v", got, want)
					}
				}
			}
			check("a", "b")
			servers[0].SetState(backend.StateDown)
			check("b")
			servers[1].SetState(backend.StateMaint)
			check("c")
			servers[1].SetState(backend.StateUp)
			check("b")
		})
	}
}

// TestSkipBeyond64 checks that servers at index >= 64 are never skipped, whatever the bits say.
func TestSkipBeyond64(t *testing.T) {
	specs := make([]srv, 66)
	for i := range specs {
		specs[i] = srv{weight: 1, state: backend.StateDown}
	}
	specs[65] = up(1)
	servers := build(t, specs...)
	for _, pn := range Names() {
		if got := mustNew(t, pn).Pick(servers, client, ^uint64(0)); got != servers[65] {
			t.Errorf("%s: Pick = %s, want s65", pn, name(got))
		}
	}
}

// TestWeightChange checks that policies read the weight at each pick.
func TestWeightChange(t *testing.T) {
	for _, pn := range Names() {
		t.Run(pn, func(t *testing.T) {
			servers := build(t, up(1), up(1))
			p := mustNew(t, pn)
			servers[0].SetWeight(0)
			for range 20 {
				if got := p.Pick(servers, client, 0); got != servers[1] {
					t.Fatalf("after weight 0 on a: Pick = %s", name(got))
				}
			}
			servers[0].SetWeight(1)
			servers[1].SetWeight(0)
			for range 20 {
				if got := p.Pick(servers, client, 0); got != servers[0] {
					t.Fatalf("after weight 0 on b: Pick = %s", name(got))
				}
			}
		})
	}
}
