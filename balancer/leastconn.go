package balancer

import (
	"net/netip"
	"sync/atomic"

	"github.com/amqplb/amqplb/backend"
)

// LeastConn picks the candidate with the fewest active connections relative to its weight
// (active_a*weight_b < active_b*weight_a). Among equally loaded servers the first one found wins,
// and the scan starts at a rotating index so that equal servers take turns. It is lock-free.
// The zero value is ready to use.
type LeastConn struct {
	next atomic.Uint64 // rotates the scan's starting index
}

// Pick implements Policy.
func (p *LeastConn) Pick(servers []*backend.Server, _ netip.Addr, skip uint64) *backend.Server {
	n := len(servers)
	if n == 0 {
		return nil
	}
	start := int((p.next.Add(1) - 1) % uint64(n))
	for _, backup := range [2]bool{false, true} { // active servers, then backups
		var best *backend.Server
		var bestActive, bestWeight int64
		for k := range n {
			i := start + k
			if i >= n {
				i -= n
			}
			s := servers[i]
			w := weightOf(s, i, skip, backup)
			if w == 0 {
				continue
			}
			a := s.ActiveConnections()
			if best == nil || lessLoaded(a, w, bestActive, bestWeight) {
				best, bestActive, bestWeight = s, a, w
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}
