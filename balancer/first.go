package balancer

import (
	"net/netip"

	"github.com/amqplb/amqplb/backend"
)

// First picks the first candidate in configuration order, as HAProxy's "first": servers fill up
// in order to their max_connections (a full server is not eligible, so the next one takes the
// overflow), which keeps the fewest brokers busy. Weights only matter in that 0 excludes a
// server. It is stateless.
type First struct{}

// Pick implements Policy.
func (First) Pick(servers []*backend.Server, _ netip.Addr, skip uint64) *backend.Server {
	for _, backup := range [2]bool{false, true} { // active servers, then backups
		for i, s := range servers {
			if weightOf(s, i, skip, backup) > 0 {
				return s
			}
		}
	}
	return nil
}
