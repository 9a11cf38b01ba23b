package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/proxy"
	"github.com/amqplb/amqplb/rebalance"
)

// rebalanceText is the reason a rebalanced client reads: "CONNECTION_FORCED - amqplb
// rebalance", from its broker (asked through the management API, X-Reason) or from amqplb.
const rebalanceText = "amqplb rebalance"

// newRebalancer builds the rebalance loop of backend b. A session is closed by its broker,
// asked through the management API when the backend's health check has one, or else by amqplb
// itself, with the same Connection.Close at a frame boundary (proxy's CloseGracefully). The
// loop rebalances on its own only with [backend.rebalance] enabled; otherwise POST
// .../rebalance drives it, with the table's settings or their defaults.
func (a *app) newRebalancer(bc config.Backend, b *backend.Backend) *rebalance.Loop {
	rc := config.DefaultRebalance()
	if bc.Rebalance != nil {
		rc = *bc.Rebalance
	}
	rate, err := config.ParseRate(rc.Rate)
	if err != nil {
		rate = 2 // validated by config; never reached
	}
	closeBy := func(_ context.Context, s rebalance.Session) error { return a.closeRebalanced(s) }
	var sticky func(context.Context) (map[netip.AddrPort]bool, error)
	if m := bc.HealthCheck.Management; m != nil {
		mgmt := rebalance.NewManagement(bc.HealthCheck.Username, bc.HealthCheck.Password, 5*time.Second)
		portOf := managementPorts(bc, m.Port)
		closeBy = a.managementCloser(mgmt, b, portOf)
		sticky = func(ctx context.Context) (map[netip.AddrPort]bool, error) {
			if len(b.Servers) == 0 {
				return nil, nil
			}
			bases, _ := managementBases(b, b.Servers[0], portOf)
			return mgmt.Sticky(ctx, bases)
		}
	}
	return rebalance.New(rebalance.Options{
		Backend:  b.Name,
		Policy:   rebalance.Policy{Tolerance: rc.Tolerance, MinAge: rc.MinAge},
		Rate:     rate,
		Enabled:  rc.Enabled,
		Servers:  func() []rebalance.Server { return rebalanceServers(b) },
		Sessions: func() []rebalance.Session { return a.rebalanceSessions(b.Name) },
		Sticky:   sticky,
		Close:    closeBy,
		Stats:    a.rebal,
		Logger:   a.log,
	})
}

// closeRebalanced closes s gracefully itself (proxy's CloseGracefully), as a rebalance close.
func (a *app) closeRebalanced(s rebalance.Session) error {
	if !a.closeGracefully(s.ID, proxy.EndRebalanced, rebalanceText) {
		return rebalance.ErrGone
	}
	return nil
}

// managementPorts returns each server's management port: its own management_port, else the
// backend's (port).
func managementPorts(bc config.Backend, port int) func(*backend.Server) int {
	ports := map[string]int{}
	for _, sc := range bc.Servers {
		ports[sc.Name] = port
		if sc.ManagementPort > 0 {
			ports[sc.Name] = sc.ManagementPort
		}
	}
	return func(s *backend.Server) int {
		if p, ok := ports[s.Name()]; ok {
			return p
		}
		return port
	}
}

// managementCloser closes a session of b by asking its broker, through the management API on
// its server's management port, to close the connection.
func (a *app) managementCloser(mgmt *rebalance.Management, b *backend.Backend, portOf func(*backend.Server) int) func(context.Context, rebalance.Session) error {
	return func(ctx context.Context, s rebalance.Session) error {
		srv := b.Server(s.Server)
		if srv == nil {
			return rebalance.ErrGone
		}
		if srv.SendProxy() != 0 {
			// The broker lists the client's address from the PROXY header, not amqplb's
			// upstream one: it cannot be found there. amqplb closes it itself.
			return a.closeRebalanced(s)
		}
		bases, port := managementBases(b, srv, portOf)
		conn, err := mgmt.Find(ctx, bases, s.Upstream, port)
		if errors.Is(err, rebalance.ErrNotListed) || ctx.Err() != nil {
			return err
		} else if err != nil {
			// No management API answers (down, or refusing our credentials): amqplb closes
			// the session itself, the same way the broker would.
			a.log.Warn("rebalance: management API unavailable, amqplb closes the session itself",
				"backend", b.Name, "server", s.Server, "id", s.ID, "err", err)
			return a.closeRebalanced(s)
		}
		// The access log must say why the broker closed it: record the reason first.
		if !a.endAs(s.ID, proxy.EndRebalanced) {
			return rebalance.ErrGone
		}
		return mgmt.Delete(ctx, conn)
	}
}

// managementBases returns the management API base URLs to ask about a connection to srv: its
// own host first, then the other servers' hosts (any node of a cluster lists every
// connection), each on its management port; and srv's AMQP port, which the broker lists as the
// connection's.
func managementBases(b *backend.Backend, srv *backend.Server, portOf func(*backend.Server) int) ([]string, int) {
	base := func(s *backend.Server) string {
		host, _, err := net.SplitHostPort(s.Address())
		if err != nil {
			return ""
		}
		return (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(portOf(s)))}).String()
	}
	out := []string{base(srv)}
	for _, s := range b.Servers {
		if u := base(s); s != srv && u != "" && u != out[0] {
			dup := false
			for _, o := range out {
				dup = dup || o == u
			}
			if !dup {
				out = append(out, u)
			}
		}
	}
	_, p, _ := net.SplitHostPort(srv.Address())
	n, _ := strconv.Atoi(p)
	return out, n
}

func rebalanceServers(b *backend.Backend) []rebalance.Server {
	out := make([]rebalance.Server, 0, len(b.Servers))
	for _, s := range b.Servers {
		out = append(out, rebalance.Server{Name: s.Name(), Weight: s.EffectiveWeight(), Eligible: s.Eligible(), Backup: s.Backup()})
	}
	return out
}

// rebalanceSessions returns the open sessions of the backend that reached a server, in every
// frontend.
func (a *app) rebalanceSessions(backendName string) []rebalance.Session {
	var out []rebalance.Session
	for _, f := range a.allFrontends() {
		for _, s := range f.Sessions() {
			if s.Backend == backendName && s.Server != "" {
				out = append(out, rebalance.Session{ID: s.ID, Server: s.Server, Since: s.Since, LastActive: s.LastActive, Upstream: s.Upstream})
			}
		}
	}
	return out
}

// endAs records r as the end reason of the session with the given id, in whichever frontend
// has it.
func (a *app) endAs(id uint64, r proxy.Reason) bool {
	for _, f := range a.allFrontends() {
		if f.EndAs(id, r) {
			return true
		}
	}
	return false
}

// rebalanceNow is admin's Options.Rebalance.
func (a *app) rebalanceNow(name string, dryRun bool) ([]admin.RebalanceVictim, error) {
	l := a.gen.Load().rebalancers[name]
	if l == nil {
		return nil, fmt.Errorf("%w: no backend %s", admin.ErrRebalanceUnavailable, name)
	}
	var out []admin.RebalanceVictim
	for _, v := range l.Trigger(dryRun) {
		out = append(out, admin.RebalanceVictim{ID: v.ID, Server: v.Server, Since: v.Since.UTC(), LastActive: v.LastActive.UTC()})
	}
	return out, nil
}
