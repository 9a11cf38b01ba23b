package balancer

import (
	"net/netip"
	"sync"

	"github.com/amqplb/amqplb/backend"
)

// RoundRobin is nginx's smooth weighted round-robin: at each pick every candidate's current
// weight grows by its effective weight, the largest is picked and loses the total. Weights 5,1,1
// give a,a,b,a,c,a,a: exact proportions over a cycle, with the heavy server's turns spread out
// rather than bunched. The zero value is ready to use.
type RoundRobin struct {
	mu      sync.Mutex
	current []int64 // current weight per server index; sized on the first pick
}

// Pick implements Policy.
func (p *RoundRobin) Pick(servers []*backend.Server, _ netip.Addr, skip uint64) *backend.Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.current) != len(servers) {
		p.current = make([]int64, len(servers))
	}
	cur := p.current
	for _, backup := range [2]bool{false, true} { // active servers, then backups
		var total int64
		best := -1
		for i, s := range servers {
			w := weightOf(s, i, skip, backup)
			if w == 0 {
				continue
			}
			cur[i] += w
			total += w
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		if best >= 0 {
			cur[best] -= total
			return servers[best]
		}
	}
	return nil
}
