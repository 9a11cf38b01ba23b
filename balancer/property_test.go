package balancer

import (
	"net/netip"
	"testing"

	"github.com/amqplb/amqplb/backend"
	"pgregory.net/rapid"
)

// candidate reports whether servers[i] may be picked in the given tier.
func candidate(s *backend.Server, i int, skip uint64, backup bool) bool {
	return s.Backup() == backup && !(i < 64 && skip&(1<<i) != 0) && s.Eligible()
}

// wantTier returns which tier a pick must come from, or ok=false when Pick must return nil.
func wantTier(servers []*backend.Server, skip uint64) (backup, ok bool) {
	for _, backup := range [2]bool{false, true} {
		for i, s := range servers {
			if candidate(s, i, skip, backup) {
				return backup, true
			}
		}
	}
	return false, false
}

func drawServers(t *rapid.T) []*backend.Server {
	n := rapid.IntRange(0, 70).Draw(t, "n")
	servers := make([]*backend.Server, n)
	for i := range servers {
		w := rapid.IntRange(0, 4).Draw(t, "weight")
		if rapid.IntRange(0, 9).Draw(t, "heavy") == 0 {
			w = backend.MaxWeight
		}
		s := backend.NewServer(backend.ServerOptions{
			Name:           serverName(i),
			Weight:         w,
			Backup:         rapid.IntRange(0, 3).Draw(t, "backup") == 0,
			MaxConnections: rapid.IntRange(0, 3).Draw(t, "maxConn"),
		})
		// Mostly up, so that picks are interesting.
		if st := rapid.IntRange(0, 6).Draw(t, "state"); st <= int(backend.StateMaint) {
			s.SetState(backend.State(st))
		}
		for range rapid.IntRange(0, 4).Draw(t, "acquire") {
			s.Acquire() // fails, harmlessly, once full
		}
		servers[i] = s
	}
	return servers
}

func drawSkip(t *rapid.T, label string) uint64 {
	switch rapid.IntRange(0, 2).Draw(t, label+"kind") {
	case 0:
		return 0
	case 1:
		return 1 << rapid.IntRange(0, 63).Draw(t, label+"bit")
	}
	return rapid.Uint64().Draw(t, label)
}

// TestPropertyNeverIneligible: for random server sets, no policy returns an ineligible,
// skipped or wrong-tier server, and each returns nil only when no server may be picked.
// first and leastconn also return exactly the server their rule names.
func TestPropertyNeverIneligible(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		servers := drawServers(t)
		for _, pn := range Names() {
			p, err := New(pn)
			if err != nil {
				t.Fatal(err)
			}
			for k := range 4 {
				skip := drawSkip(t, "skip")
				c := netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "client")))
				got := p.Pick(servers, c, skip)
				backup, ok := wantTier(servers, skip)
				if !ok {
					if got != nil {
						t.Fatalf("%s pick %d: got %s, want nil", pn, k, name(got))
					}
					continue
				}
				if got == nil {
					t.Fatalf("%s pick %d: got nil, want a server (backup=%v)", pn, k, backup)
				}
				i := indexOf(servers, got)
				if !candidate(got, i, skip, backup) {
					t.Fatalf("%s pick %d: got %s (index %d, state %s, weight %d, full %v, backup %v, skip %b), want backup=%v",
						pn, k, got.Name(), i, got.State(), got.EffectiveWeight(), got.Full(), got.Backup(), skip, backup)
				}
				switch pn {
				case NameFirst:
					for j := range i {
						if candidate(servers[j], j, skip, backup) {
							t.Fatalf("first: got index %d, but %d is a candidate", i, j)
						}
					}
				case NameLeastConn:
					a, w := got.ActiveConnections(), int64(got.EffectiveWeight())
					for j, s := range servers {
						if candidate(s, j, skip, backup) && s.ActiveConnections()*w < a*int64(s.EffectiveWeight()) {
							t.Fatalf("leastconn: got %s (%d/%d), but %s has %d/%d",
								got.Name(), a, w, s.Name(), s.ActiveConnections(), s.EffectiveWeight())
						}
					}
				}
			}
		}
	})
}

func indexOf(servers []*backend.Server, s *backend.Server) int {
	for i, x := range servers {
		if x == s {
			return i
		}
	}
	return -1
}
