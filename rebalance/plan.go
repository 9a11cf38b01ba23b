// Package rebalance owns deciding which sessions to close, and pacing the closes, so that a
// backend's sessions spread over its servers by weight again after a server comes back, joins or
// gets more weight. Plan is a pure function from plain snapshots (Server, Session) to victims;
// a Loop runs one backend's rebalancing on its own goroutine: it plans, asks its Close callback
// to end one victim at a time at no more than Options.Rate, and counts the closes in Stats.
//
// It must not touch sockets: ending a session is the caller's job (amqplb asks the broker,
// through its management API, to close the connection: see Management). It imports nothing of
// amqplb; cmd/amqplb feeds it servers, sessions and the closer.
package rebalance

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Server is what planning needs of one server of a backend.
type Server struct {
	// Name identifies the server in its backend (Session.Server).
	Name string
	// Weight is the weight new connections use now (backend.Server.EffectiveWeight).
	Weight int
	// Eligible reports whether the server may take new connections (backend.Server.Eligible).
	Eligible bool
	// Backup servers count only when no eligible server is a non-backup one.
	Backup bool
}

// Session is what planning needs of one open session.
type Session struct {
	// ID identifies the session in the process.
	ID uint64
	// Server is the name of the server the session is relayed to; "" while it connects.
	Server string
	// Since is when the session was accepted; LastActive is when it last moved a byte.
	Since, LastActive time.Time
	// Upstream is amqplb's own address on the server connection (the broker's peer_host and
	// peer_port for it), for the closer; planning does not read it.
	Upstream netip.AddrPort
	// Closing marks a session whose close has been asked for but that is still open: it
	// counts toward the backend's total, not toward its server's, and is not chosen again.
	Closing bool
	// Sticky marks a session that consumes from an exclusive or auto-delete queue, which its
	// close would delete: such sessions are chosen after all others (Options.Sticky).
	Sticky bool
}

// Policy is how far planning goes.
type Policy struct {
	// Tolerance: a rebalance starts when a server holds more than ceil((1 + Tolerance) × its
	// fair share) sessions. A pass under way (Continue) closes down to the fair share itself.
	Tolerance float64
	// MinAge: sessions younger than this are never chosen.
	MinAge time.Duration
	// Continue marks a pass under way: servers are closed down to ceil(fair share), not to the
	// tolerance's limit. Without it a backend whose reconnecting clients land anywhere (round
	// robin sends a third of them back to the busy servers) would stop at the edge of the
	// tolerance, e.g. 33/33/24 with 0.10, where one pass reaches 30/30/30.
	Continue bool
}

// Plan returns the sessions to close now, in the order to close them. When no server holds
// more than ceil((1 + p.Tolerance) × its fair share) and p.Continue is false, there are none;
// otherwise they take every server down to ceil(its fair share): one at a time from the
// server with the largest surplus left, and on each server sticky sessions last and the
// session idle the longest first (oldest LastActive, then oldest Since, then lowest ID).
//
// The fair share of a server is the backend's sessions × its weight / the total weight, over
// the eligible servers with a weight above zero (the backups only when no non-backup one is
// eligible): where new connections go. Sessions on other servers are left alone and not
// counted. Sessions younger than p.MinAge, marked Closing, or for which skip (which may be nil)
// returns true are never chosen, so a server may keep more than its share when too few of its
// sessions can go. Plan has no side effects.
func Plan(servers []Server, sessions []Session, p Policy, now time.Time, skip func(uint64) bool) []Session {
	targets := map[string]int{} // name → weight
	primary := slices.ContainsFunc(servers, func(s Server) bool { return s.Eligible && s.Weight > 0 && !s.Backup })
	totalWeight := 0
	for _, s := range servers {
		if s.Eligible && s.Weight > 0 && s.Backup != primary {
			if _, dup := targets[s.Name]; !dup {
				targets[s.Name] = s.Weight
				totalWeight += s.Weight
			}
		}
	}
	if totalWeight == 0 {
		return nil
	}
	total := 0
	count := map[string]int{}
	candidates := map[string][]Session{}
	for _, s := range sessions {
		if _, ok := targets[s.Server]; !ok {
			continue
		}
		total++
		if s.Closing {
			continue
		}
		count[s.Server]++
		if now.Sub(s.Since) >= p.MinAge && (skip == nil || !skip(s.ID)) {
			candidates[s.Server] = append(candidates[s.Server], s)
		}
	}
	tol := p.Tolerance
	if tol < 0 || math.IsNaN(tol) || math.IsInf(tol, 0) {
		tol = 0
	}
	type pile struct {
		name    string
		surplus int
		victims []Session
	}
	// The epsilon keeps a share like 30.000000000000004 from allowing 31.
	limit := func(w int, tol float64) int {
		return int(math.Ceil((1+tol)*float64(total)*float64(w)/float64(totalWeight) - 1e-9))
	}
	if !p.Continue {
		over := false
		for name, w := range targets {
			over = over || count[name] > limit(w, tol)
		}
		if !over {
			return nil
		}
	}
	var piles []*pile
	for name, w := range targets {
		surplus := count[name] - limit(w, 0)
		if surplus <= 0 || len(candidates[name]) == 0 {
			continue
		}
		c := candidates[name]
		slices.SortFunc(c, func(a, b Session) int {
			return cmp.Or(boolOrder(a.Sticky, b.Sticky), a.LastActive.Compare(b.LastActive), a.Since.Compare(b.Since), cmp.Compare(a.ID, b.ID))
		})
		piles = append(piles, &pile{name: name, surplus: surplus, victims: c[:min(surplus, len(c))]})
	}
	var out []Session
	for {
		// The pile with the most surplus left goes next; ties by server name, so the order is
		// stable.
		var next *pile
		for _, p := range piles {
			if len(p.victims) > 0 && (next == nil || p.surplus > next.surplus || (p.surplus == next.surplus && p.name < next.name)) {
				next = p
			}
		}
		if next == nil {
			return out
		}
		out = append(out, next.victims[0])
		next.victims = next.victims[1:]
		next.surplus--
	}
}

// boolOrder orders false before true.
func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
