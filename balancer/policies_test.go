package balancer

import (
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/amqplb/amqplb/backend"
)

func pickNames(p Policy, servers []*backend.Server, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(name(p.Pick(servers, client, 0)))
	}
	return b.String()
}

func TestRoundRobinNginxSequence(t *testing.T) {
	servers := build(t, up(5), up(1), up(1))
	p := mustNew(t, NameRoundRobin)
	// nginx's example for weights 5,1,1, twice: the state returns to zero after each cycle.
	if got, want := pickNames(p, servers, 14), "aabacaa"+"aabacaa"; got != want {
		t.Fatalf("sequence = %s, want %s", got, want)
	}
}

func TestRoundRobinProportions(t *testing.T) {
	tests := []struct {
		weights []int
		skip    uint64
	}{
		{weights: []int{1, 1, 1}},
		{weights: []int{3, 2, 1, 0}},
		{weights: []int{256, 1, 7, 13}},
		{weights: []int{4, 9, 2}, skip: 0b010},
	}
	for _, tt := range tests {
		specs := make([]srv, len(tt.weights))
		cycle := 0
		for i, w := range tt.weights {
			specs[i] = up(w)
			if tt.skip&(1<<i) == 0 {
				cycle += w
			}
		}
		servers := build(t, specs...)
		p := mustNew(t, NameRoundRobin)
		for c := 1; c <= 3; c++ {
			counts := map[*backend.Server]int{}
			for range cycle {
				counts[p.Pick(servers, client, tt.skip)]++
			}
			for i, s := range servers {
				want := tt.weights[i]
				if tt.skip&(1<<i) != 0 {
					want = 0
				}
				if counts[s] != want {
					t.Errorf("weights %v skip %b cycle %d: %s picked %d times, want %d", tt.weights, tt.skip, c, s.Name(), counts[s], want)
				}
			}
		}
	}
}

func TestRoundRobinSpreadsHeavyServer(t *testing.T) {
	// Smooth: the heavy server never gets more than its share in a row.
	servers := build(t, up(2), up(1), up(1), up(1), up(1))
	if got := pickNames(mustNew(t, NameRoundRobin), servers, 6); strings.Contains(got, "aa") {
		t.Fatalf("sequence %s has a's turns bunched", got)
	}
}

func TestFirst(t *testing.T) {
	servers := build(t, srv{weight: 1, maxConn: 2}, srv{weight: 1, maxConn: 1}, up(1), srv{weight: 1, backup: true})
	p := mustNew(t, NameFirst)
	// Fill in order: a takes 2, b takes 1, then c takes the rest.
	var got strings.Builder
	for range 5 {
		s := p.Pick(servers, client, 0)
		got.WriteString(name(s))
		if !s.Acquire() {
			t.Fatalf("Acquire on %s failed", name(s))
		}
	}
	if got.String() != "aabcc" {
		t.Fatalf("fill order = %s, want aabcc", got.String())
	}
	// A freed slot on a sends the next connection back to a.
	servers[0].Release()
	if s := p.Pick(servers, client, 0); s != servers[0] {
		t.Fatalf("after release on a: Pick = %s, want a", name(s))
	}
	if s := p.Pick(servers, client, 0b001); s != servers[2] {
		t.Fatalf("with a skipped (b full): Pick = %s, want c", name(s))
	}
	servers[2].SetState(backend.StateDown)
	if s := p.Pick(servers, client, 0b001); s != servers[3] {
		t.Fatalf("with a skipped, b full, c down: Pick = %s, want backup d", name(s))
	}
}

func TestLeastConnPicksLeastLoaded(t *testing.T) {
	tests := []struct {
		name    string
		servers []srv
		want    string
	}{
		{name: "fewest", servers: []srv{{weight: 1, active: 3}, {weight: 1, active: 1}, {weight: 1, active: 2}}, want: "b"},
		{name: "relative to weight", servers: []srv{{weight: 4, active: 3}, {weight: 1, active: 1}}, want: "a"},
		{name: "relative to weight 2", servers: []srv{{weight: 2, active: 5}, {weight: 1, active: 2}}, want: "b"},
		{name: "idle wins", servers: []srv{{weight: 10, active: 1}, {weight: 1}}, want: "b"},
		{name: "least loaded is full", servers: []srv{{weight: 1, active: 1, maxConn: 1}, {weight: 1, active: 5}}, want: "b"},
		{name: "least loaded is skipped", servers: []srv{{weight: 1, active: 9}, {weight: 1}, {weight: 1, active: 4}}, want: "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := build(t, tt.servers...)
			p := mustNew(t, NameLeastConn)
			skip := uint64(0)
			if tt.name == "least loaded is skipped" {
				skip = 0b010
			}
			for range 10 {
				if got := name(p.Pick(servers, client, skip)); got != tt.want {
					t.Fatalf("Pick = %s, want %s", got, tt.want)
				}
			}
		})
	}
}

func TestLeastConnRotatesTies(t *testing.T) {
	servers := build(t, up(1), up(1), up(1), srv{weight: 1, active: 1})
	p := mustNew(t, NameLeastConn)
	counts := map[string]int{}
	for range 300 {
		counts[name(p.Pick(servers, client, 0))]++
	}
	// Without rotation a would take every pick. The scan start cycles over 4 indexes, so a gets
	// the starts at a and d: 150, b and c 75 each.
	if counts["a"] != 150 || counts["b"] != 75 || counts["c"] != 75 || counts["d"] != 0 {
		t.Fatalf("counts = %v, want a:150 b:75 c:75", counts)
	}
}

// TestLeastConnBalancesLoad holds every connection it picks: the load must follow the weights.
func TestLeastConnBalancesLoad(t *testing.T) {
	servers := build(t, up(3), up(1), up(2))
	p := mustNew(t, NameLeastConn)
	for range 600 {
		p.Pick(servers, client, 0).Acquire()
	}
	for i, want := range []int64{300, 100, 200} {
		if got := servers[i].ActiveConnections(); got != want {
			t.Errorf("%s: %d active, want %d", servers[i].Name(), got, want)
		}
	}
}

func TestRandomFollowsWeights(t *testing.T) {
	weights := []int{5, 3, 1, 1, 0}
	specs := make([]srv, len(weights))
	total := 0
	for i, w := range weights {
		specs[i] = up(w)
		total += w
	}
	servers := build(t, specs...)
	p := mustNew(t, NameRandom)
	const n = 30000
	counts := map[*backend.Server]int{}
	for range n {
		counts[p.Pick(servers, client, 0)]++
	}
	for i, s := range servers {
		got, want := float64(counts[s])/n, float64(weights[i])/float64(total)
		// The standard deviation of a share is at most 0.003 here; 0.03 is ten of them.
		if math.Abs(got-want) > 0.03 {
			t.Errorf("%s: share %.3f, want %.3f±0.03", s.Name(), got, want)
		}
	}
	if counts[servers[4]] != 0 {
		t.Errorf("weight-0 server picked %d times", counts[servers[4]])
	}
}

func TestRandomPrefersLessLoaded(t *testing.T) {
	// a is far busier; it is picked only when both draws land on it: 1/4 of the time.
	servers := build(t, srv{weight: 1, active: 100}, up(1))
	p := mustNew(t, NameRandom)
	const n = 20000
	a := 0
	for range n {
		if p.Pick(servers, client, 0) == servers[0] {
			a++
		}
	}
	if share := float64(a) / n; share < 0.20 || share > 0.30 {
		t.Fatalf("busy server's share %.3f, want about 0.25", share)
	}
}

// TestRandomBalancesLoad holds every connection it picks: the load must follow the weights.
func TestRandomBalancesLoad(t *testing.T) {
	servers := build(t, up(3), up(1), up(2))
	p := mustNew(t, NameRandom)
	const n = 6000
	for range n {
		p.Pick(servers, client, 0).Acquire()
	}
	for i, w := range []float64{3, 1, 2} {
		got, want := float64(servers[i].ActiveConnections())/n, w/6
		if math.Abs(got-want) > 0.03 {
			t.Errorf("%s: share %.3f, want %.3f±0.03", servers[i].Name(), got, want)
		}
	}
}

func clientN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestSourceStable(t *testing.T) {
	servers := build(t, up(1), up(1), up(1), up(1))
	p := mustNew(t, NameSource)
	for i := range 200 {
		c := clientN(i)
		first := p.Pick(servers, c, 0)
		for range 5 {
			if got := p.Pick(servers, c, 0); got != first {
				t.Fatalf("client %s: %s then %s", c, name(first), name(got))
			}
		}
		// Another Policy value (a reload) maps the client the same way.
		if got := mustNew(t, NameSource).Pick(servers, c, 0); got != first {
			t.Fatalf("client %s: %s, after reload %s", c, name(first), name(got))
		}
		// The IPv4-mapped IPv6 form is the same client.
		if got := p.Pick(servers, netip.AddrFrom16(c.As16()), 0); got != first {
			t.Fatalf("client %s: %s, as IPv4-mapped %s", c, name(first), name(got))
		}
	}
	if p.Pick(servers, netip.Addr{}, 0) == nil {
		t.Fatal("zero client address: Pick = nil")
	}
	if p.Pick(servers, netip.MustParseAddr("2001:db8::1%eth0"), 0) == nil {
		t.Fatal("zoned IPv6 client: Pick = nil")
	}
}

func TestSourceSpreadsByWeight(t *testing.T) {
	servers := build(t, up(1), up(1), up(2))
	p := mustNew(t, NameSource)
	const n = 20000
	counts := map[*backend.Server]int{}
	for i := range n {
		counts[p.Pick(servers, clientN(i), 0)]++
	}
	for i, want := range []float64{0.25, 0.25, 0.5} {
		if got := float64(counts[servers[i]]) / n; math.Abs(got-want) > 0.03 {
			t.Errorf("%s: share %.3f, want %.2f±0.03", servers[i].Name(), got, want)
		}
	}
}

// TestSourceMinimalDisruption removes one server three ways (down, skipped, gone from the list)
// and checks that only its clients move, that they spread over the rest, and that they return.
func TestSourceMinimalDisruption(t *testing.T) {
	servers := build(t, up(1), up(2), up(1), up(1), up(3))
	const n = 5000
	const gone = 2
	before := make([]*backend.Server, n)
	p := mustNew(t, NameSource)
	for i := range before {
		before[i] = p.Pick(servers, clientN(i), 0)
	}
	check := func(how string, pick func(c netip.Addr) *backend.Server) {
		t.Helper()
		moved := map[*backend.Server]int{}
		for i, was := range before {
			got := pick(clientN(i))
			switch {
			case was == servers[gone]:
				if got == nil || got == servers[gone] {
					t.Fatalf("%s: client %d still on %s", how, i, name(got))
				}
				moved[got]++
			case got != was:
				t.Fatalf("%s: client %d moved from %s to %s", how, i, name(was), name(got))
			}
		}
		// The orphans spread over every remaining server.
		for i, s := range servers {
			if i != gone && moved[s] == 0 {
				t.Errorf("%s: none of %s's clients went to %s", how, servers[gone].Name(), s.Name())
			}
		}
	}
	servers[gone].SetState(backend.StateDown)
	check("down", func(c netip.Addr) *backend.Server { return p.Pick(servers, c, 0) })
	servers[gone].SetState(backend.StateUp)
	check("skipped", func(c netip.Addr) *backend.Server { return p.Pick(servers, c, 1<<gone) })
	fewer := append(append([]*backend.Server{}, servers[:gone]...), servers[gone+1:]...)
	reloaded := mustNew(t, NameSource)
	check("removed", func(c netip.Addr) *backend.Server { return reloaded.Pick(fewer, c, 0) })
	for i, was := range before {
		if got := p.Pick(servers, clientN(i), 0); got != was {
			t.Fatalf("back up: client %d on %s, want %s", i, name(got), name(was))
		}
	}
}
