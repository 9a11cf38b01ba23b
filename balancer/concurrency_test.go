package balancer

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/amqplb/amqplb/backend"
)

// TestConcurrentPicks runs many pickers while another goroutine changes weights, states and
// load. Run with -race. Server a always stays eligible, so no pick may return nil; h stays in
// maintenance, so no pick may return it.
func TestConcurrentPicks(t *testing.T) {
	for _, pn := range Names() {
		t.Run(pn, func(t *testing.T) {
			servers := build(t, up(1), up(2), up(3), srv{weight: 1, maxConn: 2}, up(1),
				srv{weight: 2, backup: true}, srv{weight: 1, backup: true}, srv{weight: 1, state: backend.StateMaint})
			p := mustNew(t, pn)
			var stop atomic.Bool
			var mutator sync.WaitGroup
			mutator.Go(func() {
				for i := 0; !stop.Load(); i++ {
					s := servers[1+i%6]
					switch i % 4 {
					case 0:
						s.SetWeight(i % 5)
					case 1:
						s.SetState(backend.State(i % 3)) // up, down, drain
					case 2:
						if s.Acquire() {
							s.Release()
						}
					case 3:
						s.SetState(backend.StateUp)
					}
				}
			})
			var pickers sync.WaitGroup
			for g := range 8 {
				pickers.Go(func() {
					for i := range 2000 {
						got := p.Pick(servers, clientN(g*2000+i), uint64(i%3)<<1)
						if got == nil || got == servers[7] {
							t.Errorf("Pick = %s", name(got))
							return
						}
						if got.Acquire() {
							got.Release()
						}
					}
				})
			}
			pickers.Wait()
			stop.Store(true)
			mutator.Wait()
		})
	}
}
