package balancer

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/amqplb/amqplb/backend"
)

// benchServers returns n up servers with varied weights and some load.
func benchServers(tb testing.TB, n int) []*backend.Server {
	specs := make([]srv, n)
	for i := range specs {
		specs[i] = srv{weight: 1 + i%4, active: i % 3}
	}
	return build(tb, specs...)
}

var benchClients = func() (c [256]netip.Addr) {
	for i := range c {
		c[i] = netip.AddrFrom4([4]byte{10, 1, 2, byte(i)})
	}
	return c
}()

func BenchmarkPick(b *testing.B) {
	for _, pn := range Names() {
		b.Run(pn, func(b *testing.B) {
			for _, n := range []int{3, 16} {
				b.Run(fmt.Sprint(n), func(b *testing.B) {
					servers := benchServers(b, n)
					p := mustNew(b, pn)
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						if p.Pick(servers, benchClients[i&255], 0) == nil {
							b.Fatal("nil pick")
						}
						i++
					}
				})
			}
		})
	}
}

// BenchmarkPickParallel shows contention: roundrobin's per-Policy mutex, leastconn's counter.
func BenchmarkPickParallel(b *testing.B) {
	for _, pn := range Names() {
		b.Run(pn, func(b *testing.B) {
			servers := benchServers(b, 16)
			p := mustNew(b, pn)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					p.Pick(servers, benchClients[i&255], 0)
					i++
				}
			})
		})
	}
}

// TestPickAllocs asserts what the benchmarks report: no allocation per pick.
func TestPickAllocs(t *testing.T) {
	for _, pn := range Names() {
		for _, n := range []int{3, 16, 70} {
			servers := benchServers(t, n)
			servers[0].SetState(backend.StateDown)
			p := mustNew(t, pn)
			i := 0
			allocs := testing.AllocsPerRun(1000, func() {
				p.Pick(servers, benchClients[i&255], uint64(i&2))
				i++
			})
			if allocs != 0 {
				t.Errorf("%s over %d servers: %.1f allocs per Pick, want 0", pn, n, allocs)
			}
		}
	}
}
