package balancer

import (
	"encoding/binary"
	"math"
	"net/netip"
	"sync/atomic"

	"github.com/amqplb/amqplb/backend"
)

// Source sends a client address to the same server for as long as the set of candidates stays
// the same. It uses weighted rendezvous (highest random weight) hashing: every server scores
// weight / -ln(u), with u uniform in (0,1) derived from a hash of the client address and the
// server's name, and the highest score wins. When a server leaves (down, drained, skipped or
// removed from the configuration) only its own clients move, and they spread over the others in
// proportion to weight; when it returns, only those clients come back.
//
// The hash is fixed (no per-process seed) and keyed by server name, so the mapping also
// survives a reload or restart that keeps the names. IPv4 and IPv4-mapped IPv6 forms of an
// address hash alike; the zero address is hashed like any other. The zero value is ready to use.
type Source struct {
	keys atomic.Pointer[[]uint64] // hash of each server's name by index; built on the first pick
}

// Pick implements Policy.
func (p *Source) Pick(servers []*backend.Server, client netip.Addr, skip uint64) *backend.Server {
	keys := p.serverKeys(servers)
	ck := clientKey(client)
	for _, backup := range [2]bool{false, true} { // active servers, then backups
		var best *backend.Server
		var bestScore float64
		for i, s := range servers {
			w := weightOf(s, i, skip, backup)
			if w == 0 {
				continue
			}
			h := mix64(ck ^ keys[i])
			u := (float64(h>>11) + 0.5) * 0x1p-53 // in (0,1), so -ln(u) > 0
			score := float64(w) / -math.Log(u)
			if best == nil || score > bestScore {
				best, bestScore = s, score
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// serverKeys returns the name hashes of servers, computing them once per Policy. Names never
// change and the slice is fixed, so a racing first pick at worst computes them twice.
func (p *Source) serverKeys(servers []*backend.Server) []uint64 {
	if k := p.keys.Load(); k != nil && len(*k) == len(servers) {
		return *k
	}
	k := make([]uint64, len(servers))
	for i, s := range servers {
		id := s.Name()
		if id == "" {
			id = s.Address()
		}
		k[i] = mix64(fnv1a(id))
	}
	p.keys.Store(&k)
	return k
}

// clientKey hashes the 16-byte form of an address (IPv4 maps into IPv6), ignoring any zone.
func clientKey(a netip.Addr) uint64 {
	b := a.As16()
	return mix64(binary.BigEndian.Uint64(b[:8]) ^ mix64(binary.BigEndian.Uint64(b[8:])^0x9e3779b97f4a7c15))
}

// fnv1a is the 64-bit FNV-1a hash of s.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finalizer: every input bit affects every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
