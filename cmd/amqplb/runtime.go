package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/amqplb/amqplb/internal/syslog"
	"github.com/amqplb/amqplb/internal/tlsfiles"
	"github.com/amqplb/amqplb/proxy"
)

// This file turns the parts of a configuration that name files or need compiling (TLS
// certificates, tcp-request rules, tcp-check scripts, syslog targets) into the values the
// packages take. Each function fails with a message naming the frontend, backend or server, so
// that `amqplb -c` reports a missing certificate as `haproxy -c` does.

// frontendTLS loads the certificate of a frontend that terminates TLS; nil without tls.
func frontendTLS(fc config.Frontend) (*tls.Config, error) {
	if fc.TLS == nil {
		return nil, nil
	}
	t := fc.TLS
	c, err := tlsfiles.ServerConfig(t.Cert, t.Key, t.CA, t.Verify)
	if err != nil {
		return nil, fmt.Errorf("frontend %s: %w", fc.Name, err)
	}
	return c, nil
}

// serverTLS loads the client TLS configuration for a server spoken to over TLS; nil without tls.
func serverTLS(bc config.Backend, sc config.Server) (*tls.Config, error) {
	if sc.TLS == nil {
		return nil, nil
	}
	t := sc.TLS
	host, _, err := net.SplitHostPort(sc.Address)
	if err != nil {
		host = sc.Address
	}
	c, err := tlsfiles.ClientConfig(t.CA, t.Verify, t.ServerName, t.Cert, t.Key, host)
	if err != nil {
		return nil, fmt.Errorf("backend %s: server %s: %w", bc.Name, sc.Name, err)
	}
	return c, nil
}

// frontendRules compiles a frontend's tcp_request rules over its ACLs: the connection layer
// (judging the connecting peer) and the content layer (judging the client, from the PROXY
// header behind accept_proxy).
func frontendRules(fc config.Frontend) (connection, content []proxy.Rule, err error) {
	label := "frontend " + fc.Name
	if connection, err = compileRules(label, fc.ACL, fc.TCPRules(config.RuleLayerConnection)); err != nil {
		return nil, nil, err
	}
	if content, err = compileRules(label, fc.ACL, fc.TCPRules(config.RuleLayerContent)); err != nil {
		return nil, nil, err
	}
	return connection, content, nil
}

// compileRules compiles the rules of one layer (of a frontend or a backend, named by label)
// over its ACLs.
func compileRules(label string, acl map[string][]string, list []config.TCPRule) ([]proxy.Rule, error) {
	if len(list) == 0 {
		return nil, nil
	}
	acls := make(map[string][]netip.Prefix, len(acl))
	for name, entries := range acl {
		for _, e := range entries {
			p, err := config.ParseACLEntry(e)
			if err != nil {
				return nil, fmt.Errorf("%s: acl %s: %w", label, name, err)
			}
			acls[name] = append(acls[name], p)
		}
	}
	var rules []proxy.Rule
	for i, r := range list {
		cond, err := r.Condition()
		if err != nil {
			return nil, fmt.Errorf("%s: tcp_request (%s) %d: %w", label, r.Layer, i+1, err)
		}
		for _, g := range cond.Or {
			for _, t := range g {
				if _, ok := acls[t.ACL]; !ok {
					return nil, fmt.Errorf("%s: tcp_request (%s) %d: acl %q is not defined", label, r.Layer, i+1, t.ACL)
				}
			}
		}
		rule := proxy.Rule{Reject: r.Action == "reject"}
		if len(cond.Or) > 0 || cond.Negate {
			rule.Match = func(a netip.Addr) bool {
				return cond.Match(func(name string) bool {
					for _, p := range acls[name] {
						if p.Contains(a) {
							return true
						}
					}
					return false
				})
			}
		}
		rules = append(rules, rule)
	}
	return rules, nil
}

// sendProxyVersion maps send_proxy to the PROXY protocol version.
func sendProxyVersion(s string) int {
	switch s {
	case "v1":
		return 1
	case "v2":
		return 2
	}
	return 0
}

// checker builds the health checker of a backend. onTune, if not nil, hears the heartbeat the
// brokers propose (AMQP checks).
func checker(bc config.Backend, onTune func(time.Duration)) (healthcheck.Checker, error) {
	h := bc.HealthCheck
	steps := make([]healthcheck.TCPStep, 0, len(h.TCPCheck))
	for _, s := range h.TCPCheck {
		steps = append(steps, healthcheck.TCPStep{Action: s.Action, Data: s.Data, Match: s.Match, Pattern: s.Pattern, Negate: s.Negate})
	}
	var hc *healthcheck.HTTPChecker
	if x := h.HTTP; x != nil {
		hc = &healthcheck.HTTPChecker{Method: x.Method, Path: x.Path, Host: x.Host, Match: x.Match, Pattern: x.Pattern, Negate: x.Negate}
		if len(x.Headers) > 0 {
			hc.Header = http.Header{}
			for k, v := range x.Headers {
				hc.Header.Set(k, v)
			}
		}
	}
	c, err := healthcheck.NewChecker(h.Type, healthcheck.Options{
		Timeout:  h.Timeout,
		VHost:    h.VHost,
		Username: h.Username,
		Password: h.Password,
		Steps:    steps,
		HTTP:     hc,
		OnTune:   onTune,
	})
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", bc.Name, err)
	}
	return c, nil
}

// heartbeatWarner returns an OnTune hook that warns, once, when the backend's fixed idle_timeout
// is shorter than twice the heartbeat its brokers propose: RabbitMQ's clients then go idle for
// longer than the balancer allows, and are cut (config warns the same against RabbitMQ's
// default 60 s; this is what the brokers really say).
func heartbeatWarner(log *slog.Logger, bc config.Backend) func(time.Duration) {
	idle := bc.IdleTimeout
	if idle <= 0 { // none, or "heartbeat"
		return nil
	}
	var once sync.Once
	return func(hb time.Duration) {
		if hb > 0 && idle < 2*hb {
			once.Do(func() {
				log.Warn("idle_timeout is shorter than twice the heartbeat the brokers propose: idle clients will be cut; "+
					`idle_timeout = "heartbeat" follows each session's own heartbeat`,
					"backend", bc.Name, "idle_timeout", idle, "heartbeat", hb)
			})
		}
	}
}

// runnable builds, and throws away, everything of cfg that reads files or compiles, so that a
// configuration that cannot run fails `amqplb -c` and a reload, not only a start. Each problem is
// reported as FILE:LINE: message, with the line from lines.
func runnable(cfg *config.Config, lines *config.Lines) error {
	var msgs []string
	report := func(path string, err error) {
		if l := lines.Of(path); l > 0 {
			msgs = append(msgs, fmt.Sprintf("%s:%d: %v", cfg.File, l, err))
		} else {
			msgs = append(msgs, fmt.Sprintf("%s: %v", cfg.File, err))
		}
	}
	for i, fc := range cfg.Frontends {
		if _, err := frontendTLS(fc); err != nil {
			report(fmt.Sprintf("frontend.%d.tls", i), err)
		}
		if _, _, err := frontendRules(fc); err != nil {
			report(fmt.Sprintf("frontend.%d.tcp_request", i), err)
		}
	}
	for i, bc := range cfg.Backends {
		for j, sc := range bc.Servers {
			if _, err := serverTLS(bc, sc); err != nil {
				report(fmt.Sprintf("backend.%d.server.%d.tls", i, j), err)
			}
		}
		if _, err := checker(bc, nil); err != nil {
			report(fmt.Sprintf("backend.%d.health_check", i), err)
		}
	}
	for i, lt := range cfg.Global.Log {
		path := fmt.Sprintf("global.log.%d", i)
		if _, err := syslog.ParseFacility(orDefault(lt.Facility, "local0")); err != nil {
			report(path, fmt.Errorf("global.log %s: %w", lt.Address, err))
		}
		if _, err := syslog.ParseLevel(orDefault(lt.Level, "debug")); err != nil {
			report(path, fmt.Errorf("global.log %s: %w", lt.Address, err))
		}
	}
	if cfg.Global.User != "" || cfg.Global.Group != "" {
		if _, _, err := lookupIDs(cfg.Global.User, cfg.Global.Group); err != nil {
			report("global.user", err)
		}
	}
	if cfg.Admin.Socket != "" {
		if _, err := socketOptions(cfg.Admin); err != nil {
			report("admin.socket", err)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// syslogHandlers opens the syslog targets of g. A target that cannot be opened (no /dev/log
// here, a host name that does not resolve) is skipped with a problem for the log, as HAProxy
// starts without it too: logging must not keep the proxy from serving.
func syslogHandlers(g config.Global) (hs []*syslog.Handler, problems []error) {
	for _, lt := range g.Log {
		h, err := syslog.New(lt.Address, lt.Facility, lt.Level)
		if err != nil {
			problems = append(problems, fmt.Errorf("global.log %s: %w", lt.Address, err))
			continue
		}
		hs = append(hs, h)
	}
	return hs, problems
}

// withSyslog returns a logger writing to base's handler and to every syslog handler.
func withSyslog(base *slog.Logger, hs []*syslog.Handler) *slog.Logger {
	if len(hs) == 0 {
		return base
	}
	all := []slog.Handler{base.Handler()}
	for _, h := range hs {
		all = append(all, h)
	}
	return slog.New(syslog.Multi(all...))
}

// closeSessionsOnBackups ends the sessions of the backup servers of b (on_marked_up =
// shutdown-backup-sessions), so that their clients reconnect to the server that came up.
func (a *app) closeSessionsOnBackups(b *backend.Backend) {
	for _, s := range b.Servers {
		if s.Backup() {
			a.closeSessions(s, "server up: closed the sessions of a backup server")
		}
	}
}

// statsListener is a running read-only stats listener and the configuration it came from:
// its [[stats]] and [admin] vhost_labels (its metrics have amqplb_vhost_sessions).
type statsListener struct {
	cfg    config.Stats
	labels int
	srv    *admin.StatsServer
	done   chan error
}

// statsKey identifies what a stats listener is built from.
func statsKey(c config.Stats, vhostLabels int) string { return fmt.Sprint(c, vhostLabels) }

// newStats builds a stats listener for c, with vhostLabels ([admin] vhost_labels), and binds it.
func (a *app) newStats(c config.Stats, vhostLabels int) (*statsListener, error) {
	users := map[string]string{}
	for _, up := range c.Auth {
		u, p, _ := strings.Cut(up, ":")
		users[u] = p
	}
	srv := admin.NewStats(admin.StatsOptions{
		Name:            c.Name,
		Listen:          c.Bind,
		URI:             c.URI,
		Users:           users,
		Realm:           c.Realm,
		Refresh:         c.Refresh,
		HideVersion:     c.HideVersion,
		Metrics:         c.Metrics,
		Admin:           c.Admin,
		CloseSessions:   func(s *backend.Server) int { return a.endSessions(s, proxy.EndDrained) },
		Backends:        func() []*backend.Backend { return a.gen.Load().backends },
		Frontends:       a.frontendStats,
		Checks:          a.checks.Status,
		RefuseReasons:   proxy.RefuseReasons(),
		Sessions:        a.sessions,
		VHostLabels:     vhostLabels,
		Rebalancing:     a.rebal.Active,
		RebalanceCloses: a.rebal.Closes,
		Discovery:       a.discoveryStatus,
		Logger:          a.log,
		Version:         buildVersion(),
	})
	if err := srv.Listen(); err != nil {
		return nil, fmt.Errorf("stats %s: %w", c.Name, err)
	}
	return &statsListener{cfg: c, labels: vhostLabels, srv: srv}, nil
}

func (st *statsListener) serve() {
	st.done = make(chan error, 1)
	go func() { st.done <- st.srv.Serve() }()
}

// stop shuts the listener down and waits for it.
func (st *statsListener) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = st.srv.Shutdown(ctx)
	if st.done != nil {
		<-st.done
		st.done = nil
	}
}

// reloadStats applies changed [[stats]] listeners. Unchanged ones keep serving. A listener on a
// new address is bound before the old one stops, and if that fails the old one stays; on the
// same address the old one has to stop first, so that page is unavailable for a moment. Stats
// listeners never hold up a reload of the proxy: a failure is logged. A changed vhostLabels
// ([admin] vhost_labels) restarts them all.
func (a *app) reloadStats(next []config.Stats, vhostLabels int) {
	old := map[string]*statsListener{} // by configuration
	oldBinds := map[string]*statsListener{}
	for _, st := range a.stats {
		old[statsKey(st.cfg, st.labels)] = st
	}
	var out []*statsListener
	var fresh []config.Stats
	for _, c := range next {
		if st, ok := old[statsKey(c, vhostLabels)]; ok {
			delete(old, statsKey(c, vhostLabels))
			out = append(out, st)
			continue
		}
		fresh = append(fresh, c)
	}
	for _, st := range old {
		oldBinds[st.cfg.Bind] = st
	}
	var later []config.Stats // their address is still held by a listener that goes
	for _, c := range fresh {
		if _, busy := oldBinds[c.Bind]; busy {
			later = append(later, c)
			continue
		}
		st, err := a.newStats(c, vhostLabels)
		if err != nil {
			a.log.Error("reload: a stats listener could not start", "err", err)
			for _, o := range old {
				if o.cfg.Name == c.Name {
					delete(old, statsKey(o.cfg, o.labels)) // keep serving the old one
					out = append(out, o)
					break
				}
			}
			continue
		}
		st.serve()
		out = append(out, st)
	}
	for _, st := range old {
		st.stop()
	}
	for _, c := range later {
		st, err := a.newStats(c, vhostLabels)
		if err != nil {
			a.log.Error("reload: a stats listener could not be restarted", "err", err)
			continue
		}
		st.serve()
		out = append(out, st)
	}
	a.stats = out
}

// dropPrivileges switches the process to g.User and g.Group (HAProxy's user and group) once
// the listeners are bound: it needs root for that, and does nothing without a user. The
// supplementary groups are cleared. Go applies it to every thread of the process.
func dropPrivileges(g config.Global) error {
	if g.User == "" && g.Group == "" {
		return nil
	}
	uid, gid, err := lookupIDs(g.User, g.Group)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		if (uid < 0 || uid == os.Geteuid()) && gid == os.Getegid() {
			return nil // already that user
		}
		return fmt.Errorf("global user/group %q/%q: amqplb is not running as root, so it cannot switch to them", g.User, g.Group)
	}
	return setIDs(uid, gid)
}

// lookupIDs resolves a user and a group, names or numbers; group "" means the user's primary
// group, and user "" leaves the user as it is (uid -1).
func lookupIDs(userName, groupName string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			if u, err = user.LookupId(userName); err != nil {
				return 0, 0, fmt.Errorf("global user %q: no such user", userName)
			}
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			if g, err = user.LookupGroupId(groupName); err != nil {
				return 0, 0, fmt.Errorf("global group %q: no such group", groupName)
			}
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if gid < 0 {
		gid = os.Getegid()
	}
	return uid, gid, nil
}

// agents returns the agent checks of the servers of bc that have one (b.Servers in bc's order);
// an agent without an address of its own is on the host of its server's address.
func agents(bc config.Backend, b *backend.Backend) map[*backend.Server]healthcheck.AgentOptions {
	var out map[*backend.Server]healthcheck.AgentOptions
	for i, sc := range bc.Servers {
		a := sc.Agent
		if a == nil {
			continue
		}
		host := a.Address
		if host == "" {
			host, _, _ = net.SplitHostPort(sc.Address)
		}
		if out == nil {
			out = map[*backend.Server]healthcheck.AgentOptions{}
		}
		out[b.Servers[i]] = healthcheck.AgentOptions{
			Address: net.JoinHostPort(host, strconv.Itoa(a.Port)), Interval: a.Interval, Send: a.Send,
		}
	}
	return out
}
