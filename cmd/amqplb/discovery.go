package main

import (
	"context"
	"slices"
	"time"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/discovery"
)

// watcher is a backend's running discovery and the settings it was built from: a reload keeps
// it when they are unchanged.
type watcher struct {
	key discoveryKey
	w   *discovery.Watcher
}

// discoveryKey is what makes two [backend.discovery] the same watcher. The password is part of
// it: a rotated password_env takes effect on reload.
type discoveryKey struct {
	management         string
	interval, timeout  time.Duration
	username, password string
}

func keyOf(bc config.Backend) discoveryKey {
	d := bc.Discovery
	k := discoveryKey{management: d.Management, interval: d.Interval, timeout: d.Timeout, username: d.User, password: d.Password}
	if d.User == "" { // the health check's credentials, as documented
		k.username, k.password = bc.HealthCheck.Username, bc.HealthCheck.Password
	}
	return k
}

// newWatcher builds the watcher of bc, starting from the members in initial.
func (a *app) newWatcher(bc config.Backend, initial []discovery.Member) (*watcher, error) {
	k := keyOf(bc)
	w, err := discovery.New(discovery.Options{
		Backend: bc.Name, Seed: k.management, Username: k.username, Password: k.password,
		Interval: k.interval, Timeout: k.timeout, Initial: initial,
		// After every refresh, not only on a change: applyDiscovered compares with what runs,
		// so an apply that failed is tried again at the next refresh.
		OnRefresh: func([]discovery.Member, bool) { a.rediscovered() },
		Stats:     a.discStats, Logger: a.log,
	})
	if err != nil {
		return nil, err
	}
	return &watcher{key: k, w: w}, nil
}

// rediscovered tells run's goroutine that some backend's members were read. It never blocks:
// one pending signal covers any number of refreshes, since the re-apply reads every watcher.
func (a *app) rediscovered() {
	select {
	case a.rediscover <- struct{}{}:
	default:
	}
}

// startDiscovery builds the watchers of cfg's backends and reads each cluster once, so that
// the first generation has the discovered servers. A cluster that does not answer leaves its
// backend with its static servers for now (logged); its watcher retries soon.
func (a *app) startDiscovery(cfg *config.Config) error {
	a.watchers = map[string]*watcher{}
	for _, bc := range cfg.Backends {
		if bc.Discovery == nil {
			continue
		}
		w, err := a.newWatcher(bc, nil)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*bc.Discovery.Timeout+time.Second)
		if err := w.w.Refresh(ctx); err == nil {
			a.log.Info("discovery: cluster members read", "backend", bc.Name, "nodes", memberNames(w.w.Members()))
		}
		cancel()
		a.watchers[bc.Name] = w
	}
	return a.startTemplates(cfg)
}

// syncDiscovery makes the watchers those of cfg after a reload: unchanged ones keep running,
// changed ones are replaced (starting from the members the old one knew), removed ones stop.
func (a *app) syncDiscovery(cfg *config.Config) {
	next := map[string]*watcher{}
	var stop []*watcher
	for _, bc := range cfg.Backends {
		if bc.Discovery == nil {
			continue
		}
		old := a.watchers[bc.Name]
		if old != nil && old.key == keyOf(bc) {
			next[bc.Name] = old
			continue
		}
		var initial []discovery.Member
		if old != nil {
			initial = old.w.Members()
		}
		w, err := a.newWatcher(bc, initial)
		if err != nil { // validated by config; never reached
			a.log.Error("reload: discovery not started", "backend", bc.Name, "err", err)
			continue
		}
		w.w.Start()
		next[bc.Name] = w
	}
	a.discMu.Lock()
	for name, w := range a.watchers {
		if next[name] != w {
			stop = append(stop, w)
		}
	}
	a.watchers = next
	a.discMu.Unlock()
	for _, w := range stop {
		w.w.Stop()
	}
	a.syncTemplates(cfg)
}

// stopDiscovery stops every watcher.
func (a *app) stopDiscovery() {
	a.discMu.Lock()
	ws := a.watchers
	a.watchers = nil
	a.discMu.Unlock()
	for _, w := range ws {
		w.w.Stop()
	}
	a.stopTemplates()
}

// members returns what backend's watcher found, and whether it has one.
func (a *app) members(backend string) ([]discovery.Member, bool) {
	a.discMu.Lock()
	w := a.watchers[backend]
	a.discMu.Unlock()
	if w == nil {
		return nil, false
	}
	return w.w.Members(), true
}

// withDiscovered returns cfg with every discovery backend's servers: those written in the file,
// then one per discovered member that no written server already has by name or address (a
// written server wins: it is how a node gets settings of its own); then, for a backend with
// server templates, one server per filled slot (see templateServers). cfg itself is not
// changed.
func (a *app) withDiscovered(cfg *config.Config) *config.Config {
	out := *cfg
	out.Backends = slices.Clone(cfg.Backends)
	for i := range out.Backends {
		bc := &out.Backends[i]
		if bc.Discovery != nil {
			members, _ := a.members(bc.Name)
			servers := slices.Clone(bc.Servers)
			for _, m := range members {
				if slices.ContainsFunc(bc.Servers, func(s config.Server) bool { return s.Name == m.Node || s.Address == m.Address() }) {
					continue
				}
				servers = append(servers, discoveredServer(*bc, m))
			}
			bc.Servers = servers
		}
		if len(bc.ServerTemplates) > 0 {
			bc.Servers = append(slices.Clip(bc.Servers), a.templateServers(*bc)...)
		}
	}
	return &out
}

// discoveredServer is the server of a discovered member: the defaults of [[backend.server]],
// with the derived defaults a file would get, and the node's management port when the
// health check reads the management API on another port (nodes sharing a host).
func discoveredServer(bc config.Backend, m discovery.Member) config.Server {
	s := config.DefaultServer()
	s.Name, s.Address = m.Node, m.Address()
	s.CheckSendProxy = bc.SendProxy != ""
	if mg := bc.HealthCheck.Management; mg != nil && m.ManagementPort != 0 && m.ManagementPort != mg.Port {
		s.ManagementPort = m.ManagementPort
	}
	return s
}

// sameServers reports whether a and b have the same servers in every backend.
func sameServers(a, b *config.Config) bool {
	return slices.EqualFunc(a.Backends, b.Backends, func(x, y config.Backend) bool {
		return x.Name == y.Name && slices.EqualFunc(x.Servers, y.Servers, func(s, t config.Server) bool {
			return s.Name == t.Name && s.Address == t.Address && s.ManagementPort == t.ManagementPort
		})
	})
}

// applyDiscovered re-applies the running configuration with the servers the watchers found now,
// as a reload would (servers kept keep their state, removed ones get no new sessions while
// theirs run on), without reading the file. Nothing happens when no backend's servers changed.
func (a *app) applyDiscovered() {
	old := a.gen.Load()
	cfg := a.withDiscovered(old.loaded)
	if sameServers(old.cfg, cfg) {
		return
	}
	if err := a.apply(old.loaded, cfg, a.fopts); err != nil {
		a.log.Error("discovery: the new servers could not be applied; the running ones stay", "err", err)
		return
	}
	for i, bc := range cfg.Backends {
		added, removed := diffServers(old.cfg.Backends, bc)
		if len(added)+len(removed) > 0 {
			a.log.Info("discovery: servers changed", "backend", bc.Name, "added", added, "removed", removed,
				"servers", len(cfg.Backends[i].Servers))
		}
	}
}

// diffServers returns the names of the servers of bc that the backend of the same name in old
// lacks, and those it has that bc lacks.
func diffServers(old []config.Backend, bc config.Backend) (added, removed []string) {
	var prev []config.Server
	for _, o := range old {
		if o.Name == bc.Name {
			prev = o.Servers
		}
	}
	has := func(list []config.Server, s config.Server) bool {
		return slices.ContainsFunc(list, func(t config.Server) bool { return t.Name == s.Name && t.Address == s.Address })
	}
	for _, s := range bc.Servers {
		if !has(prev, s) {
			added = append(added, s.Name+"="+s.Address)
		}
	}
	for _, s := range prev {
		if !has(bc.Servers, s) {
			removed = append(removed, s.Name+"="+s.Address)
		}
	}
	return added, removed
}

func memberNames(ms []discovery.Member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Node+"="+m.Address())
	}
	return out
}

// discoveryStatus is admin's view of backend's discovery.
func (a *app) discoveryStatus(backend string) (admin.Discovery, bool) {
	a.discMu.Lock()
	w := a.watchers[backend]
	a.discMu.Unlock()
	if w == nil {
		return admin.Discovery{}, false
	}
	st := w.w.Status()
	ok, failed := a.discStats.Refreshes(backend)
	d := admin.Discovery{Management: st.Seed, Source: st.Source, OK: st.Error == "" && !st.SucceededAt.IsZero(), Error: st.Error,
		Refreshes: ok, Failures: failed, Nodes: make([]admin.DiscoveredNode, 0, len(st.Members))}
	if !st.RefreshedAt.IsZero() {
		t := st.RefreshedAt.UTC()
		d.RefreshedAt = &t
	}
	if !st.SucceededAt.IsZero() {
		t := st.SucceededAt.UTC()
		d.SucceededAt = &t
	}
	for _, m := range st.Members {
		d.Nodes = append(d.Nodes, admin.DiscoveredNode{Name: m.Node, Address: m.Address(), ManagementPort: m.ManagementPort, Running: m.Running})
	}
	return d, true
}
