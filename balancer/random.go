package balancer

import (
	"math/rand/v2"
	"net/netip"

	"github.com/amqplb/amqplb/backend"
)

// Random is the power of two choices, weighted: it draws two candidates independently, each with
// probability proportional to its effective weight, and takes the one with fewer active
// connections relative to weight (the first draw on a tie, so idle servers are picked in
// proportion to their weights). It uses math/rand/v2's top-level functions, which need no lock.
// It is stateless.
type Random struct{}

// Pick implements Policy.
func (Random) Pick(servers []*backend.Server, _ netip.Addr, skip uint64) *backend.Server {
	for _, backup := range [2]bool{false, true} { // active servers, then backups
		var total int64
		for i, s := range servers {
			total += weightOf(s, i, skip, backup)
		}
		if total == 0 {
			continue
		}
		// Two points on the line of cumulative weights; the servers under them are the draws.
		ra, rb := rand.Int64N(total), rand.Int64N(total)
		var a, b, last *backend.Server
		var wa, wb, wlast, sum int64
		for i, s := range servers {
			w := weightOf(s, i, skip, backup)
			if w == 0 {
				continue
			}
			sum += w
			last, wlast = s, w
			if a == nil && ra < sum {
				a, wa = s, w
			}
			if b == nil && rb < sum {
				b, wb = s, w
			}
			if a != nil && b != nil {
				break
			}
		}
		// Weights or states changed since the first pass so a point fell past the end: take the
		// last candidate rather than fail (this skews only that pick).
		if a == nil {
			a, wa = last, wlast
		}
		if b == nil {
			b, wb = last, wlast
		}
		if a == nil {
			continue // every candidate left meanwhile
		}
		if a != b && lessLoaded(b.ActiveConnections(), wb, a.ActiveConnections(), wa) {
			return b
		}
		return a
	}
	return nil
}
