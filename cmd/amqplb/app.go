package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/balancer"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/discovery"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/amqplb/amqplb/proxy"
	"github.com/amqplb/amqplb/rebalance"
)

// app is the running process: its frontends (whose listeners survive reloads), the current
// generation of backends and monitors, and the admin server. Only run's goroutine changes it.
type app struct {
	trim   trimmer // run's goroutine only
	file   string
	load   func(string) (*config.Config, error) // haproxycfg.Load with the command line's overrides
	log    *slog.Logger
	global *proxy.Limiter

	// checks is what every generation's health monitors found, by server: it outlives reloads.
	checks *healthcheck.Statuses
	// rebal counts rebalancing closes and says which backends rebalance now: it outlives
	// reloads too.
	rebal *rebalance.Stats

	// discStats counts discovery refreshes across reloads. watchers are the backends' running
	// discoveries, by backend name (discMu guards the map for the admin API's readers; only
	// run's goroutine replaces it). A watcher that finds new members signals rediscover, and
	// run's goroutine re-applies the running configuration with them (applyDiscovered).
	discStats  *discovery.Stats
	discMu     sync.Mutex
	watchers   map[string]*watcher
	rediscover chan struct{}
	// templates are the backends' running [[backend.server_template]] resolutions, by
	// templateID (guarded by discMu like watchers); they signal rediscover too.
	templates map[string]*template

	gen       atomic.Pointer[generation]
	mu        sync.Mutex              // guards frontends and retired for readers outside run's goroutine
	frontends []*proxy.Frontend       // current, in config order
	fopts     []proxy.FrontendOptions // the options of frontends, which a discovery change keeps
	retired   []*proxy.Frontend       // removed by a reload; their sessions run to their end
	serving   errgroup.Group          // every frontend's accept loop
	admin     *admin.Server
	adminDone chan error
	stats     []*statsListener // read-only stats listeners ([[stats]]), in config order
	// socket serves HAProxy's runtime API ([admin] socket); nil without one. socketCfg is the
	// [admin] it was built from, so that a reload rebuilds it only when its keys change.
	socket     *admin.Socket
	socketCfg  config.Admin
	socketDone chan error
	stopping   atomic.Bool
}

// generation is what one configuration builds apart from listeners: backends with their servers,
// routes and health monitors. A reload builds a new one, reusing servers whose backend and name
// (and address) are unchanged so they keep their state and counters, and, since every
// generation's monitors share app.checks (keyed by server), their check history.
type generation struct {
	// loaded is the configuration as read from the file; cfg is loaded with the discovered
	// servers added (withDiscovered), which is what the generation runs.
	loaded   *config.Config
	cfg      *config.Config
	backends []*backend.Backend
	byName   map[string]*backend.Backend
	routes   map[string]*proxy.Route
	monitors []*healthcheck.Monitor
	// rebalancers are the backends' rebalance loops, by backend name: only backends whose
	// health check has a management API have one.
	rebalancers map[string]*rebalance.Loop
	updates     []func() // new options for servers kept from the previous generation, applied on commit
}

// servers returns every server of every backend.
func (g *generation) servers() []*backend.Server {
	var out []*backend.Server
	for _, b := range g.backends {
		out = append(out, b.Servers...)
	}
	return out
}

// start starts the generation's health monitors and rebalance loops.
func (g *generation) start() {
	for _, m := range g.monitors {
		m.Start()
	}
	for _, l := range g.rebalancers {
		l.Start()
	}
}

// stop stops what start started and waits for it.
func (g *generation) stop() {
	for _, l := range g.rebalancers {
		l.Stop()
	}
	for _, m := range g.monitors {
		m.Stop()
	}
}

// serving returns the backends some frontend sends connections to.
func (g *generation) serving() []*backend.Backend {
	var out []*backend.Backend
	seen := map[string]bool{}
	for _, f := range g.cfg.Frontends {
		if b := g.byName[f.Backend]; b != nil && !seen[f.Backend] {
			seen[f.Backend] = true
			out = append(out, b)
		}
	}
	return out
}

// newApp builds everything from cfg and binds every listener (frontends and admin), so that a
// bind error is reported before anything serves.
func newApp(cfg *config.Config, log *slog.Logger, load func(string) (*config.Config, error)) (*app, error) {
	a := &app{file: cfg.File, load: load, log: log, global: proxy.NewLimiter(cfg.Global.MaxConnections),
		checks: healthcheck.NewStatuses(), rebal: rebalance.NewStats(),
		discStats: discovery.NewStats(), rediscover: make(chan struct{}, 1)}
	if err := a.startDiscovery(cfg); err != nil {
		return nil, err
	}
	loaded := cfg
	cfg = a.withDiscovered(loaded)
	g, err := a.build(cfg, nil)
	if err != nil {
		a.stopDiscovery()
		return nil, err
	}
	g.loaded = loaded
	for _, fc := range cfg.Frontends {
		o, err := a.frontendOptions(cfg, fc)
		if err != nil {
			a.closeListeners()
			return nil, err
		}
		a.fopts = append(a.fopts, o)
		f := proxy.NewFrontend(o, g.routes[fc.Backend])
		if err := f.Listen(); err != nil {
			a.closeListeners()
			return nil, err
		}
		a.frontends = append(a.frontends, f)
	}
	for _, sc := range cfg.Stats {
		st, err := a.newStats(sc, cfg.Admin.VHostLabels)
		if err != nil {
			a.closeListeners()
			return nil, err
		}
		a.stats = append(a.stats, st)
	}
	if cfg.Admin.Listen != "" {
		if a.admin, err = a.newAdmin(cfg.Admin); err != nil {
			a.closeListeners()
			return nil, err
		}
	}
	if cfg.Admin.Socket != "" {
		if a.socket, err = a.newSocket(cfg.Admin); err != nil {
			a.closeListeners()
			if a.admin != nil {
				_ = a.admin.Shutdown(context.Background())
			}
			return nil, err
		}
		a.socketCfg = cfg.Admin
	}
	a.gen.Store(g)
	return a, nil
}

// adminOptions are the callbacks through which the admin server and the runtime socket read
// and change the running process: both go through the same ones, so they behave alike.
func (a *app) adminOptions(c config.Admin) admin.Options {
	return admin.Options{
		Listen:        c.Listen,
		Token:         c.Token,
		Backends:      func() []*backend.Backend { return a.gen.Load().backends },
		Serving:       func() []*backend.Backend { return a.gen.Load().serving() },
		Frontends:     a.frontendStats,
		Checks:        a.checks.Status,
		RefuseReasons: proxy.RefuseReasons(),
		CloseSessions: func(s *backend.Server) int { return a.endSessions(s, proxy.EndDrained) },
		Sessions:      a.sessions,
		CloseSession:  a.closeSession,
		CloseSessionGracefully: func(id uint64) bool {
			return a.closeGracefully(id, proxy.EndClosedByAdmin, "closed by amqplb admin")
		},
		Rebalance:       a.rebalanceNow,
		Rebalancing:     a.rebal.Active,
		RebalanceCloses: a.rebal.Closes,
		Discovery:       a.discoveryStatus,
		VHostLabels:     c.VHostLabels,
		Ready:           func() bool { return !a.stopping.Load() },
		Logger:          a.log,
		Version:         buildVersion(),
	}
}

// socketOptions builds the runtime socket's options from [admin]; it looks up the socket's
// owner, so amqplb -c reports an unknown user or group.
func socketOptions(c config.Admin) (admin.SocketOptions, error) {
	o := admin.SocketOptions{Path: c.Socket, UID: -1, GID: -1}
	var err error
	if o.Level, err = admin.ParseLevel(orDefault(c.SocketLevel, config.DefaultSocketLevel)); err != nil {
		return o, fmt.Errorf("admin.socket_level: %w", err)
	}
	if c.SocketMode != "" {
		if o.Mode, err = config.ParseSocketMode(c.SocketMode); err != nil {
			return o, fmt.Errorf("admin.socket_mode: %w", err)
		}
	}
	if c.SocketUser != "" {
		u, err := user.Lookup(c.SocketUser)
		if err != nil {
			if u, err = user.LookupId(c.SocketUser); err != nil {
				return o, fmt.Errorf("admin.socket_user %q: no such user", c.SocketUser)
			}
		}
		o.UID, _ = strconv.Atoi(u.Uid)
	}
	if c.SocketGroup != "" {
		g, err := user.LookupGroup(c.SocketGroup)
		if err != nil {
			if g, err = user.LookupGroupId(c.SocketGroup); err != nil {
				return o, fmt.Errorf("admin.socket_group %q: no such group", c.SocketGroup)
			}
		}
		o.GID, _ = strconv.Atoi(g.Gid)
	}
	return o, nil
}

// newSocket builds the runtime socket of c and creates its file.
func (a *app) newSocket(c config.Admin) (*admin.Socket, error) {
	o, err := socketOptions(c)
	if err != nil {
		return nil, err
	}
	o.Options = a.adminOptions(c)
	s := admin.NewSocket(o)
	if err := s.Listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// serveSocket runs s until it is closed; stopSocket closes the running one and waits.
func (a *app) serveSocket(s *admin.Socket) {
	a.socket = s
	a.socketDone = make(chan error, 1)
	go func() { a.socketDone <- s.Serve() }()
}

func (a *app) stopSocket() error {
	if a.socket == nil {
		return nil
	}
	err := a.socket.Close()
	if serr := <-a.socketDone; err == nil {
		err = serr
	}
	a.socket = nil
	return err
}

// socketChanged reports whether a reload from old to c must rebuild the runtime socket.
func socketChanged(old, c config.Admin) bool {
	return old.Socket != c.Socket || old.SocketMode != c.SocketMode || old.SocketUser != c.SocketUser ||
		old.SocketGroup != c.SocketGroup || old.SocketLevel != c.SocketLevel
}

// newAdmin builds the admin server for c and binds its listener.
func (a *app) newAdmin(c config.Admin) (*admin.Server, error) {
	srv := admin.New(a.adminOptions(c))
	if err := srv.Listen(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if c.Token == "" && !loopbackOnly(c.Listen) {
		a.log.Warn("the admin API listens beyond loopback without a token: anyone who reaches it can drain servers",
			"listen", c.Listen)
	}
	return srv, nil
}

// serveAdmin runs srv until it is shut down; stopAdmin waits for that.
func (a *app) serveAdmin(srv *admin.Server) {
	a.admin = srv
	a.adminDone = make(chan error, 1)
	go func() { a.adminDone <- srv.Serve() }()
}

func (a *app) stopAdmin() error {
	if a.admin == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.admin.Shutdown(ctx)
	err := <-a.adminDone
	a.admin = nil
	return err
}

// reloadAdmin applies a changed [admin]. A new address is bound before the old listener closes;
// on the same address the old server has to go first, so the admin API (never the proxy) is
// unavailable for a moment.
func (a *app) reloadAdmin(old, c config.Admin) {
	if old == c {
		return
	}
	var next *admin.Server
	var err error
	if c.Listen != "" && c.Listen != old.Listen {
		if next, err = a.newAdmin(c); err != nil {
			a.log.Error("reload: the new admin listener failed; keeping the old one", "err", err)
			return
		}
	}
	if err := a.stopAdmin(); err != nil {
		a.log.Warn("admin server stopped with an error", "err", err)
	}
	if c.Listen != "" && next == nil {
		if next, err = a.newAdmin(c); err != nil {
			a.log.Error("reload: the admin API could not be restarted", "err", err)
			return
		}
	}
	if next != nil {
		a.serveAdmin(next)
	}
}

func (a *app) closeListeners() {
	a.stopDiscovery()
	for _, f := range a.frontends {
		_ = f.Close()
	}
	for _, st := range a.stats {
		st.stop()
	}
	if a.socket != nil && a.socketDone == nil {
		_ = a.socket.Close() // never served: a failed start
	}
}

// frontendOptions builds a frontend's options; it loads its TLS certificate, so a reload picks
// up a renewed one.
func (a *app) frontendOptions(cfg *config.Config, fc config.Frontend) (proxy.FrontendOptions, error) {
	mode, _ := proxy.ParseMode(fc.Mode) // validated by config
	o := proxy.FrontendOptions{
		Name:           fc.Name,
		Bind:           fc.Bind,
		Mode:           mode,
		MaxConnections: fc.MaxConnections,
		Global:         a.global,
		Logger:         a.log,
		AccessLog:      cfg.Global.AccessLog,
		DontLogNull:    fc.DontLogNull,
		AcceptProxy:    fc.AcceptProxy,
	}
	for _, p := range fc.Protocols {
		bit, err := proxy.ParseProtocol(p) // validated by config
		if err != nil {
			return o, err
		}
		o.Protocols |= bit
	}
	var err error
	if o.TLS, err = frontendTLS(fc); err != nil {
		return o, err
	}
	if o.Rules, o.ContentRules, err = frontendRules(fc); err != nil {
		return o, err
	}
	o.InspectDelay = fc.InspectDelay
	o.ParkAfter = fc.ParkAfter
	for _, r := range fc.Routes {
		o.SNIRoutes = append(o.SNIRoutes, proxy.SNIRoute{Names: r.SNI, Suffixes: r.SNISuffix, Prefixes: r.SNIPrefix, Backend: r.Backend})
	}
	return o, nil
}

// build makes a generation from cfg. Servers of prev whose backend, name and address are the
// same are reused (and updated), so they keep their state and counters.
func (a *app) build(cfg *config.Config, prev *generation) (*generation, error) {
	g := &generation{cfg: cfg, byName: map[string]*backend.Backend{}, routes: map[string]*proxy.Route{},
		rebalancers: map[string]*rebalance.Loop{}}
	for _, bc := range cfg.Backends {
		b := &backend.Backend{Name: bc.Name}
		var old *backend.Backend
		if prev != nil {
			old = prev.byName[bc.Name]
		}
		for _, sc := range bc.Servers {
			tlsConf, err := serverTLS(bc, sc)
			if err != nil {
				return nil, err
			}
			o := backend.ServerOptions{
				Name: sc.Name, Address: sc.Address, Weight: sc.Weight, Backup: sc.Backup,
				MaxConnections: sc.MaxConnections, Slowstart: bc.Slowstart,
				CheckPort: sc.CheckPort, TLS: tlsConf, SendProxy: sendProxyVersion(bc.ServerSendProxy(sc)),
				CheckWithoutTLS: !sc.CheckTLS, CheckWithoutProxy: !sc.CheckSendProxy,
			}
			var s *backend.Server
			if old != nil {
				if prev := old.Server(sc.Name); prev != nil && prev.Address() == sc.Address {
					s = prev
					g.updates = append(g.updates, func() { prev.Update(o) })
				}
			}
			if s == nil {
				s = backend.NewServer(o)
			}
			b.Servers = append(b.Servers, s)
		}
		policy, err := balancer.New(bc.Balance)
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		checker, err := checker(bc, heartbeatWarner(a.log, bc))
		if err != nil {
			return nil, err
		}
		mo := healthcheck.MonitorOptions{
			Backend:  bc.Name,
			Servers:  b.Servers,
			Statuses: a.checks,
			Checker:  checker,
			Policy: healthcheck.Policy{
				RiseFall:     healthcheck.RiseFall{Rise: bc.HealthCheck.Rise, Fall: bc.HealthCheck.Fall},
				Interval:     bc.HealthCheck.Interval,
				FastInterval: bc.HealthCheck.FastInterval,
				DownInterval: bc.HealthCheck.DownInterval,
			},
			Timeout: bc.HealthCheck.Timeout,
			Logger:  a.log,
		}
		if m := bc.HealthCheck.Management; m != nil {
			mo.Management = &healthcheck.ManagementOptions{
				Port: m.Port, Alarms: m.Alarms, EjectOnAlarm: m.EjectOnAlarm,
				Username: bc.HealthCheck.Username, Password: bc.HealthCheck.Password,
			}
			for i, sc := range bc.Servers {
				if sc.ManagementPort > 0 {
					if mo.Management.ServerPorts == nil {
						mo.Management.ServerPorts = map[*backend.Server]int{}
					}
					mo.Management.ServerPorts[b.Servers[i]] = sc.ManagementPort
				}
			}
		}
		mo.Agents = agents(bc, b)
		downShut, upShut := bc.OnMarkedDown == "shutdown-sessions", bc.OnMarkedUp == "shutdown-backup-sessions"
		if downShut || upShut {
			mo.OnTransition = func(s *backend.Server, from, to backend.State, _ healthcheck.CheckResult) {
				switch {
				case to == backend.StateDown && downShut:
					a.closeSessions(s, "server down: closed its sessions")
				case to == backend.StateUp && upShut && !s.Backup():
					a.closeSessionsOnBackups(b)
				}
			}
		}
		mon := healthcheck.NewMonitor(mo)
		g.monitors = append(g.monitors, mon)
		g.backends = append(g.backends, b)
		g.byName[bc.Name] = b
		if l := a.newRebalancer(bc, b); l != nil {
			g.rebalancers[bc.Name] = l
		}
		rules, err := compileRules("backend "+bc.Name, bc.ACL, bc.Rules())
		if err != nil {
			return nil, err
		}
		g.routes[bc.Name] = &proxy.Route{
			Backend:            b,
			Rules:              rules,
			Policy:             policy,
			ConnectTimeout:     bc.ConnectTimeout,
			Retries:            bc.Retries,
			Redispatch:         bc.Redispatch,
			IdleTimeout:        max(bc.IdleTimeout, 0),
			IdleHeartbeat:      bc.IdleTimeout == config.IdleHeartbeat,
			IdleTimeoutDefault: bc.IdleTimeoutDefault,
			HalfCloseTimeout:   bc.HalfCloseTimeout,
			KeepAlive:          keepAlive(bc.TCPKeepalive),
			OnConnectFailure:   mon.Suspect,
			Others:             g.routes, // filled in by this loop: every backend's route
		}
	}
	return g, nil
}

// closeSessions ends every session on s, in every frontend (on_marked_down = shutdown-sessions,
// on_marked_up = shutdown-backup-sessions), and logs msg if there were any.
func (a *app) closeSessions(s *backend.Server, msg string) {
	if n := a.endSessions(s, proxy.EndServerDown); n > 0 {
		a.log.Warn(msg, "server", s.Name(), "sessions", n)
	}
}

// endSessions ends every session on s, in every frontend, with the given end reason, and
// returns how many it ended.
func (a *app) endSessions(s *backend.Server, reason proxy.Reason) int {
	n := 0
	for _, f := range a.allFrontends() {
		n += f.CloseSessions(s, reason)
	}
	return n
}

func (a *app) allFrontends() []*proxy.Frontend {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append(append([]*proxy.Frontend(nil), a.frontends...), a.retired...)
}

// sessions returns every open session of every frontend, retired ones included, for the
// admin API and amqplb_vhost_sessions.
func (a *app) sessions() []admin.Session {
	var out []admin.Session
	for _, f := range a.allFrontends() {
		for _, s := range f.Sessions() {
			out = append(out, adminSession(&s))
		}
	}
	return out
}

// adminSession flattens a proxy session snapshot for admin. A refused session stays listed
// while the client gets the broker's Close, so its CloseCode goes along.
func adminSession(s *proxy.SessionInfo) admin.Session {
	id := &s.Identity
	return admin.Session{
		ID: s.ID, Frontend: s.Frontend, Client: s.Client, Via: s.Via, Backend: s.Backend, Server: s.Server,
		Protocol: id.Protocol, Mechanism: id.Mechanism, User: id.User, VHost: id.VHost,
		ConnectionName: id.ConnectionName, ClientProduct: id.ClientProduct, ClientVersion: id.ClientVersion,
		ClientPlatform: id.ClientPlatform, ChannelMax: id.ChannelMax, FrameMax: id.FrameMax, Heartbeat: id.Heartbeat,
		CloseCode: id.CloseCode, BytesToServer: s.BytesToServer, BytesToClient: s.BytesToClient, Since: s.Since,
	}
}

// closeSession ends the session with the given id, in whichever frontend has it.
func (a *app) closeSession(id uint64) bool {
	for _, f := range a.allFrontends() {
		if f.CloseSession(id) {
			return true
		}
	}
	return false
}

// closeGracefully ends the session with the given id as a broker would (proxy's
// CloseGracefully), in whichever frontend has it.
func (a *app) closeGracefully(id uint64, r proxy.Reason, text string) bool {
	for _, f := range a.allFrontends() {
		if f.CloseGracefully(id, r, text) {
			return true
		}
	}
	return false
}

func (a *app) frontendStats() []admin.FrontendStats {
	a.mu.Lock()
	fs := append([]*proxy.Frontend(nil), a.frontends...)
	a.mu.Unlock()
	out := make([]admin.FrontendStats, 0, len(fs))
	for _, f := range fs {
		st := f.Stats()
		out = append(out, admin.FrontendStats{Name: f.Name(), Active: st.Active, Total: st.Total, Refused: st.Refused, Parked: st.Parked})
	}
	return out
}

// describe lists "name=addr" for the log.
func (a *app) describe() string {
	var parts []string
	for _, f := range a.frontends {
		parts = append(parts, fmt.Sprintf("%s=%s", f.Name(), f.Addr()))
	}
	for _, st := range a.stats {
		parts = append(parts, fmt.Sprintf("stats:%s=%s", st.cfg.Name, st.srv.Addr()))
	}
	if a.admin != nil {
		parts = append(parts, fmt.Sprintf("admin=%s", a.admin.Addr()))
	}
	return strings.Join(parts, " ")
}

// run serves until ctx is cancelled (SIGTERM/SIGINT), reloading on every value from hup, then
// drains: frontends stop accepting, /readyz turns 503, and sessions get up to drain_timeout
// before they are closed.
func (a *app) run(ctx context.Context, hup <-chan os.Signal) error {
	a.gen.Load().start()
	for _, w := range a.watchers {
		w.w.Start()
	}
	for _, t := range a.templates {
		t.t.Start()
	}
	for _, f := range a.frontends {
		a.serving.Go(f.Serve)
	}
	for _, st := range a.stats {
		st.serve()
	}
	if a.admin != nil {
		a.serveAdmin(a.admin)
	}
	if a.socket != nil {
		a.serveSocket(a.socket)
	}
	trim := time.NewTicker(trimEvery)
	defer trim.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-trim.C:
			a.trimMemory()
		case <-hup:
			a.reload()
		case <-a.rediscover:
			a.applyDiscovered()
		}
	}
	return a.shutdown()
}

func (a *app) shutdown() error {
	a.stopping.Store(true)
	notify(a.log, daemon.SdNotifyStopping)
	g := a.gen.Load()
	drain := g.cfg.Global.DrainTimeout
	a.log.Info("stopping: no new connections; draining sessions", "drain_timeout", drain)
	a.stopDiscovery() // servers no longer change: the drain is about the sessions there are
	for _, l := range g.rebalancers {
		l.Stop() // closing sessions to spread them makes no sense while they drain
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	var sg sync.WaitGroup
	for _, f := range a.allFrontends() {
		sg.Go(func() {
			if err := f.Shutdown(dctx); err != nil {
				a.log.Warn("drain timed out; remaining sessions closed", "frontend", f.Name())
			}
		})
	}
	sg.Wait()
	g.stop()
	err := a.serving.Wait()
	for _, st := range a.stats {
		st.stop()
	}
	if aerr := a.stopAdmin(); aerr != nil && err == nil {
		err = aerr
	}
	// Last: the runtime socket answers (show stat, show sess) during the drain, as HAProxy's
	// does during a soft stop. Closing it removes its file.
	if serr := a.stopSocket(); serr != nil && err == nil {
		err = serr
	}
	a.log.Info("stopped", "drained_in", time.Since(start).Round(time.Millisecond))
	return err
}

// reload re-reads the configuration file. An invalid file, or one whose new listeners cannot be
// bound, changes nothing. Otherwise it is applied (see apply), with the servers discovery found
// for the backends that keep their discovery, and the watchers follow the new file.
func (a *app) reload() {
	a.log.Info("SIGHUP: reloading", "config", a.file)
	cfg, err := a.load(a.file)
	if err != nil {
		a.log.Error("reload refused: the running configuration stays", "errors", strings.Split(err.Error(), "\n"))
		return
	}
	for _, w := range cfg.Warnings {
		a.log.Warn("config warning", "warning", w)
	}
	old := a.gen.Load()
	if err := a.apply(cfg, a.withDiscovered(cfg), nil); err != nil {
		a.log.Error("reload refused: the running configuration stays", "err", err)
		return
	}
	a.syncDiscovery(cfg)
	a.reloadAdmin(old.cfg.Admin, cfg.Admin)
	a.reloadStats(cfg.Stats, cfg.Admin.VHostLabels)
	if old.cfg.Global.User != cfg.Global.User || old.cfg.Global.Group != cfg.Global.Group {
		a.log.Warn("reload: global user and group changes take effect at the next start")
	}
	if fmt.Sprint(old.cfg.Global.Log) != fmt.Sprint(cfg.Global.Log) {
		a.log.Warn("reload: global.log (syslog targets) changes take effect at the next start")
	}
	a.log.Info("reloaded", "frontends", a.describe(), "backends", len(a.gen.Load().backends))
	notify(a.log, daemon.SdNotifyReady)
}

// apply builds a generation from cfg (loaded, the file's configuration, with the discovered
// servers) and commits it. An error (a TLS file, rule or listener that fails) changes nothing.
// keep, when not nil, are the frontends' options to keep as they are (a discovery change, which
// changes servers only, re-reads no file); otherwise they are built from cfg. Listeners whose
// bind is unchanged are kept (no refused connects), new ones are opened, removed ones stop
// accepting while their sessions go on; servers keep their state and counters; established
// sessions are never cut.
func (a *app) apply(loaded, cfg *config.Config, keep []proxy.FrontendOptions) error {
	old := a.gen.Load()
	g, err := a.build(cfg, old)
	if err != nil {
		return err
	}
	g.loaded = loaded
	// Open the listeners of new binds first: if one fails, nothing has changed yet.
	byBind := map[string]*proxy.Frontend{}
	for _, f := range a.frontends {
		byBind[f.Bind()] = f
	}
	var opened, next []*proxy.Frontend
	opts := keep
	if opts == nil {
		opts = make([]proxy.FrontendOptions, len(cfg.Frontends))
		for i, fc := range cfg.Frontends {
			if opts[i], err = a.frontendOptions(cfg, fc); err != nil {
				return err
			}
		}
	}
	for i, fc := range cfg.Frontends {
		o := opts[i]
		if f, ok := byBind[fc.Bind]; ok {
			next = append(next, f)
			continue
		}
		f := proxy.NewFrontend(o, g.routes[fc.Backend])
		if err := f.Listen(); err != nil {
			for _, n := range opened {
				_ = n.Close()
			}
			return err
		}
		opened = append(opened, f)
		next = append(next, f)
	}
	// The runtime socket last: once it is renamed over the old one's path, nothing fails.
	var sock *admin.Socket
	if cfg.Admin.Socket != "" && socketChanged(a.socketCfg, cfg.Admin) {
		if sock, err = a.newSocket(cfg.Admin); err != nil {
			for _, n := range opened {
				_ = n.Close()
			}
			return err
		}
	}
	// Commit: server options, monitors, then routes, then listeners.
	for _, u := range g.updates {
		u()
	}
	old.stop()
	// The old monitors are done: forget the check history of the servers this reload dropped.
	a.checks.Retain(g.servers())
	g.start()
	if int64(cfg.Global.MaxConnections) != a.global.Max() {
		// As at start: the new max_connections needs its file descriptors (up to the hard
		// limit now, as privileges may have been dropped).
		raiseFDLimit(a.log, cfg.Global.MaxConnections)
	}
	a.global.SetMax(cfg.Global.MaxConnections)
	kept := map[*proxy.Frontend]bool{}
	for i, fc := range cfg.Frontends {
		f := next[i]
		kept[f] = true
		if _, existed := byBind[fc.Bind]; existed {
			f.Update(opts[i], g.routes[fc.Backend])
		} else {
			a.serving.Go(f.Serve)
		}
	}
	a.mu.Lock()
	retired := a.retired[:0]
	for _, f := range a.retired {
		if f.Stats().Active > 0 {
			retired = append(retired, f) // still has sessions: keep it for the final drain
		}
	}
	a.retired = retired
	for _, f := range a.frontends {
		if !kept[f] {
			_ = f.Close()
			a.retired = append(a.retired, f)
		}
	}
	a.frontends = next
	a.fopts = opts
	a.mu.Unlock()
	a.gen.Store(g)
	if cfg.Admin.Socket == "" || sock != nil {
		// Replaced (the new file is already in place: the old socket leaves it) or removed.
		if err := a.stopSocket(); err != nil {
			a.log.Warn("runtime socket stopped with an error", "err", err)
		}
		a.socketCfg = cfg.Admin
	}
	if sock != nil {
		a.serveSocket(sock)
	}
	return nil
}

// loopbackOnly reports whether addr binds only to the loopback interface; used for a warning.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// keepAlive maps tcp_keepalive to proxy.Route.KeepAlive: the config's 0 turns keepalive off,
// which the route writes as a negative period (its 0 is Go's default).
func keepAlive(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
