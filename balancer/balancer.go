// Package balancer owns the load-balancing policies that choose which server of a backend gets
// a new client connection: roundrobin (smooth weighted, as nginx), leastconn, first, source
// (weighted rendezvous hashing of the client address) and random (weighted power of two choices).
//
// A policy is pure: it reads the servers' state, weight and load through their methods and
// returns one of them. It never changes a server (the session takes the slot with Acquire), does
// no I/O, takes no lock shared between backends and allocates nothing per pick. There is no
// package-level mutable state: each backend gets its own Policy value from New, and a reload
// builds new ones.
package balancer

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/amqplb/amqplb/backend"
)

// Policy picks one server for a new connection. Implementations are safe for concurrent use.
type Policy interface {
	// Pick returns an eligible server (s.Eligible()) from servers, or nil when none is.
	//
	// servers is the backend's full, fixed list in configuration order; the same Policy value is
	// always called with the same slice (one Policy per backend; a reload makes a new one).
	// client is the client's address (used by "source"; may be the zero netip.Addr).
	// skip: bit i set means servers[i] must not be picked (servers this connection already failed
	// on); servers at index >= 64 are never skipped.
	//
	// Backup servers are considered only when no non-backup server is eligible and unskipped;
	// the policy then runs among the eligible, unskipped backups.
	Pick(servers []*backend.Server, client netip.Addr, skip uint64) *backend.Server
}

// The policy names accepted by New, as written in the configuration's "balance" key.
const (
	NameRoundRobin = "roundrobin"
	NameLeastConn  = "leastconn"
	NameFirst      = "first"
	NameSource     = "source"
	NameRandom     = "random"
)

// Names returns the policy names New accepts, in documentation order.
func Names() []string {
	return []string{NameRoundRobin, NameLeastConn, NameFirst, NameSource, NameRandom}
}

// New returns a fresh policy by its configuration name. Each backend needs its own value:
// roundrobin and leastconn keep per-backend state.
func New(name string) (Policy, error) {
	switch name {
	case NameRoundRobin:
		return new(RoundRobin), nil
	case NameLeastConn:
		return new(LeastConn), nil
	case NameFirst:
		return First{}, nil
	case NameSource:
		return new(Source), nil
	case NameRandom:
		return Random{}, nil
	}
	return nil, fmt.Errorf("unknown balance policy %q (want one of %s)", name, strings.Join(Names(), ", "))
}

// weightOf returns the effective weight of servers[i] if it may be picked in the given tier
// (backup or not), or 0 if it may not: it is in the other tier, skipped, or not eligible.
// Eligible and EffectiveWeight are separate atomic reads, so an operator can set the weight to
// 0 between them; callers treat 0 as "not a candidate", which keeps that race harmless.
func weightOf(s *backend.Server, i int, skip uint64, backup bool) int64 {
	if s.Backup() != backup || (i < 64 && skip&(1<<uint(i)) != 0) || !s.Eligible() {
		return 0
	}
	return int64(s.EffectiveWeight())
}

// lessLoaded reports whether active connections a at weight wa is a strictly lower load than b
// at wb, comparing a/wa < b/wb without division (as HAProxy does). Weights are > 0.
func lessLoaded(a, wa, b, wb int64) bool { return a*wb < b*wa }
