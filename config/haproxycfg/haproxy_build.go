package haproxycfg

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/amqplb/amqplb/config"
)

// hapStats is what a stats or exporter section says.
type hapStats struct {
	enabled     val[bool] // any stats directive enables the page
	uri         val[string]
	auth        []string
	authLine    int
	realm       val[string]
	refresh     val[time.Duration]
	hideVersion val[bool]
	metrics     val[string]
	admin       val[bool] // stats admin if TRUE
}

// statsKeywords are the proxy keywords a stats section may have that
// only shape HAProxy's HTTP handling; they are ignored with a warning.
var statsKeywords = map[string]bool{
	"log": true, "no": true, "option": true, "timeout": true, "maxconn": true, "description": true,
	"monitor-uri": true, "compression": true, "errorfile": true, "http-response": true, "http-after-response": true,
	"capture": true, "unique-id-format": true, "unique-id-header": true, "balance": true, "retries": true,
	"tcp-request": true, "id": true, "enabled": true, "http-reuse": true, "cookie": true, "default": true,
	"http-check": true, "errorloc": true, "errorfiles": true, "http-error": true, "log-format": true,
	"contimeout": true, "clitimeout": true, "srvtimeout": true, "default-server": true, "bind-process": true,
}

// statsSection reads a section that serves HAProxy's stats page or
// Prometheus exporter.
func (p *hapParser) statsSection(px *hapProxy) {
	st := &hapStats{}
	px.stats = st
	px.back = false
	if px.addr != "" {
		p.bind(px, hapDirective{line: px.line, args: []string{"bind", px.addr}})
	}
	var exporter []hapDirective
	for _, d := range px.body {
		switch kw := d.args[0]; kw {
		case "mode":
		case "bind":
			p.bind(px, d)
		case "acl":
			p.acl(px, d)
		case "stats":
			p.statsDirective(st, d)
		case "http-request":
			if slices.Contains(d.args, "prometheus-exporter") {
				exporter = append(exporter, d)
			} else {
				p.ignored(d, "amqplb's stats listener takes no HTTP rules")
			}
		default:
			if len(d.args) == 2 && kw == "no" && d.args[1] == "log" {
				continue // amqplb does not log requests to its stats listener either
			}
			if statsKeywords[kw] || proxyIgnored[kw] != "" {
				p.warnf(d.line, "ignored: %s (HTTP settings of a stats section; amqplb's stats listener has its own)", keyword(d))
			} else {
				p.unknown(d, px.hapSection)
			}
		}
	}
	for _, d := range exporter {
		p.exporter(px, st, d)
	}
	p.unusedACLs(px)
}

func (p *hapParser) statsDirective(st *hapStats, d hapDirective) {
	sub, ok := p.arg(d, 1, "a setting (enable, uri, auth...)")
	if !ok {
		return
	}
	enable := true
	switch sub {
	case "enable":
	case "uri":
		if s, ok := p.arg(d, 2, "a path"); ok && p.last(d, 2) {
			st.uri = at(s, d.line)
		}
	case "auth":
		if s, ok := p.arg(d, 2, "user:password"); ok && p.last(d, 2) {
			if u, _, ok := strings.Cut(s, ":"); !ok || u == "" {
				p.errorf(d.line, "stats auth %s: expected user:password", s)
				return
			}
			st.auth = append(st.auth, s)
			if st.authLine == 0 {
				st.authLine = d.line
			}
		}
	case "realm":
		if s, ok := p.arg(d, 2, "a realm"); ok {
			// HAProxy takes the first word; a realm with blanks escapes them.
			st.realm = at(s, d.line)
		}
	case "refresh":
		if t, ok := p.timeArg(d, 2, "stats refresh"); ok {
			st.refresh = t
		}
	case "hide-version":
		st.hideVersion = at(true, d.line)
	case "admin":
		// stats admin if TRUE: the page's buttons for everyone who passes auth. Any other
		// condition (LOCALHOST, an ACL) cannot be judged per request here: read-only.
		if len(d.args) == 4 && d.args[2] == "if" && d.args[3] == "TRUE" {
			st.admin = at(true, d.line)
		} else {
			p.warnf(d.line, "ignored: %s (amqplb's stats listener takes stats admin if TRUE only; the page stays read-only, and the admin API on admin.listen changes server state)", strings.Join(d.args, " "))
		}
	case "show-legends", "show-node", "show-desc", "show-modules", "scope", "http-request", "bind-process", "maxconn", "timeout":
		p.ignored(d, "amqplb's status page has its own layout")
	case "disable":
		st.enabled = val[bool]{}
		enable = false
	default:
		p.errorf(d.line, "unknown stats setting %q", sub)
		return
	}
	if enable && !st.enabled.set() {
		st.enabled = at(true, d.line)
	}
}

// exporter reads http-request use-service prometheus-exporter [if COND].
func (p *hapParser) exporter(px *hapProxy, st *hapStats, d hapDirective) {
	if len(d.args) < 3 || d.args[1] != "use-service" || d.args[2] != "prometheus-exporter" {
		p.ignored(d, "amqplb's stats listener takes no HTTP rules")
		return
	}
	path := ""
	switch {
	case len(d.args) == 3:
		p.warnf(d.line, "HAProxy serves the Prometheus exporter on every path here; amqplb serves its metrics at /metrics")
		path = "/metrics"
	case len(d.args) > 4 && d.args[3] == "if":
		path = p.metricsPath(px, d.args[4:])
		if path == "" {
			p.warnf(d.line, "the condition %q is not a path match: amqplb serves its metrics at /metrics", strings.Join(d.args[4:], " "))
			path = "/metrics"
		}
	default:
		p.warnf(d.line, "the condition %q is not a path match: amqplb serves its metrics at /metrics", strings.Join(d.args[3:], " "))
		path = "/metrics"
	}
	st.metrics = at(path, d.line)
}

// metricsPath returns the path a condition matches when it is one path
// match, { path P } or { path_beg P } or an acl of that kind; else "".
func (p *hapParser) metricsPath(px *hapProxy, words []string) string {
	pathOf := func(crit string, vals []string) string {
		if (crit == "path" || crit == "path_beg") && len(vals) == 1 && strings.HasPrefix(vals[0], "/") {
			return vals[0]
		}
		return ""
	}
	switch {
	case len(words) == 4 && words[0] == "{" && words[3] == "}":
		return pathOf(words[1], words[2:3])
	case len(words) == 1:
		if a := px.acls[words[0]]; a != nil {
			a.used = true
			return pathOf(a.criterion, a.entries)
		}
	}
	return ""
}

// hapUse is a frontend sending to a backend: what the backend's settings
// depend on.
type hapUse struct {
	client, clientFin val[time.Duration]
	ports             []int // the ports it listens on
}

// build turns the proxies read into stats listeners, frontends and
// backends.
func (p *hapParser) build() {
	c := p.cfg
	uses := map[string][]hapUse{} // backend name → the frontends sending to it
	type bindAt struct {
		addr string
		line int
	}
	var binds []bindAt
	for _, px := range p.proxies {
		if px.stats != nil {
			for _, b := range p.buildStats(px) {
				binds = append(binds, bindAt{b.addr, b.line})
			}
			continue
		}
		if !px.front {
			if len(px.rules) > 0 {
				px.backACL, px.backRules, px.backRuleLines, _ = p.frontendRules(px)
			}
			p.unusedACLs(px)
			continue
		}
		acl, rules, ruleLines, _ := p.frontendRules(px)
		p.unusedACLs(px)
		backend := at(px.name, px.line)
		switch {
		case px.useBackend.set():
			backend = px.useBackend
			if d := px.opts.defaultBackend; d.set() && d.v != backend.v {
				p.warnf(d.line, "%s: default_backend %s is not used: use_backend %s (line %d) always applies", sectionName(px.hapSection), d.v, backend.v, backend.line)
			}
		case px.opts.defaultBackend.set():
			backend = px.opts.defaultBackend
		case !px.back:
			backend = val[string]{}
		}
		if len(px.binds) == 0 {
			if px.kind == "frontend" {
				p.errorf(px.line, "frontend %s has no bind line", px.name)
			}
			continue // a listen without bind is a backend only
		}
		if backend.v == "" {
			p.errorf(px.line, "frontend %s has no default_backend", px.name)
		}
		use := hapUse{client: px.opts.clientTimeout, clientFin: px.opts.clientFin}
		for _, b := range px.binds {
			if n := addrPort(b.addr); n > 0 && !slices.Contains(use.ports, n) {
				use.ports = append(use.ports, n)
			}
		}
		uses[backend.v] = append(uses[backend.v], use)
		if len(px.binds) > 1 && px.opts.maxconn.set() && px.opts.maxconn.v > 0 {
			p.warnf(px.opts.maxconn.line, "%s: maxconn %d now applies to each of its %d addresses, which become separate frontends",
				sectionName(px.hapSection), px.opts.maxconn.v, len(px.binds))
		}
		for k, b := range px.binds {
			i := len(c.Frontends)
			path := fmt.Sprintf("frontend.%d", i)
			p.owners[path] = px.hapSection
			f := config.DefaultFrontend()
			f.Name = px.name
			f.Mode = "tcp"
			p.setLine(path, px.line)
			p.setLine(path+".name", px.line)
			if k > 0 {
				f.Name = fmt.Sprintf("%s-%d", px.name, k+1)
				p.setLine(path, b.line)
				p.setLine(path+".name", b.line)
				p.warnf(b.line, "%s: bind %s becomes frontend %q (amqplb has one address per frontend)", sectionName(px.hapSection), b.addr, f.Name)
			}
			if m := px.opts.mode; m.set() {
				p.setLine(path+".mode", m.line)
			}
			f.Bind = b.addr
			if b.addr == "" {
				p.bad[path+".bind"] = true
			} else {
				binds = append(binds, bindAt{b.addr, b.line})
			}
			p.setLine(path+".bind", b.line)
			f.Backend = backend.v
			if backend.v == "" {
				p.bad[path+".backend"] = true
			}
			p.setLine(path+".backend", backend.line)
			if m := px.opts.maxconn; m.set() {
				f.MaxConnections = m.v
				p.setLine(path+".max_connections", m.line)
			}
			if b.maxconn.set() {
				f.MaxConnections = b.maxconn.v
				p.setLine(path+".max_connections", b.line)
			}
			if b.tls != nil {
				t := *b.tls
				f.TLS = &t
				p.setLine(path+".tls", b.line)
			}
			f.AcceptProxy = b.acceptProxy
			if b.acceptProxy {
				p.setLine(path+".accept_proxy", b.line)
			}
			if v := px.opts.dontLogNull; v.set() {
				f.DontLogNull = v.v
				p.setLine(path+".dont_log_null", v.line)
			}
			if len(acl) > 0 {
				f.ACL = make(map[string][]string, len(acl))
				for name, e := range acl {
					f.ACL[name] = slices.Clone(e)
					if a := px.acls[name]; len(a.lines) > 0 {
						p.setLine(path+".acl."+name, a.lines[0])
					} else {
						p.setLine(path+".acl."+name, ruleLines[0])
					}
				}
				p.setLine(path+".acl", px.acls[px.aclOrder[0]].firstLine(ruleLines[0]))
			}
			if len(rules) > 0 {
				f.TCPRequest = slices.Clone(rules)
				p.setLine(path+".tcp_request", ruleLines[0])
				for j, l := range ruleLines {
					p.setLine(fmt.Sprintf("%s.tcp_request.%d", path, j), l)
				}
			}
			p.frontendRoutes(px, &f, path)
			c.Frontends = append(c.Frontends, f)
		}
	}
	for _, px := range p.proxies {
		if px.stats != nil || !px.back || px.kind == "listen" && len(px.servers) == 0 && (px.opts.defaultBackend.set() || px.useBackend.set()) {
			continue
		}
		p.backend(px, uses[px.name])
	}
	// A listener on the admin server's port would keep amqplb from
	// starting: the admin server gives way.
	for _, b := range binds {
		if config.BindsConflict(b.addr, config.DefaultAdminListen) {
			c.Admin.Listen = ""
			p.setLine("admin.listen", b.line)
			p.warnf(b.line, "admin.listen %s is turned off: bind %s takes its port (set [admin] listen to another address in the converted TOML to keep /healthz, /readyz and the admin API)", config.DefaultAdminListen, b.addr)
			break
		}
	}
}

func (a *hapACL) firstLine(fallback int) int {
	if len(a.lines) > 0 {
		return a.lines[0]
	}
	return fallback
}

// buildStats adds the stats listeners of px, one per address, and returns
// the binds it used.
func (p *hapParser) buildStats(px *hapProxy) []hapBind {
	st := px.stats
	if len(px.binds) == 0 {
		p.errorf(px.line, "%s has no bind line", sectionName(px.hapSection))
		return nil
	}
	var used []hapBind
	for k, b := range px.binds {
		i := len(p.cfg.Stats)
		path := fmt.Sprintf("stats.%d", i)
		p.owners[path] = px.hapSection
		s := config.DefaultStats()
		s.Name = px.name
		line := px.line
		if k > 0 {
			s.Name = fmt.Sprintf("%s-%d", px.name, k+1)
			line = b.line
		}
		p.setLine(path, line)
		p.setLine(path+".name", line)
		s.Bind = b.addr
		p.setLine(path+".bind", b.line)
		if b.addr == "" {
			p.bad[path+".bind"] = true
		} else {
			used = append(used, b)
		}
		if b.tls != nil {
			p.errorf(b.line, "%s: TLS on a stats listener is not supported", sectionName(px.hapSection))
		}
		if b.acceptProxy {
			p.errorf(b.line, "%s: accept-proxy on a stats listener is not supported", sectionName(px.hapSection))
		}
		if b.maxconn.set() {
			p.warnf(b.line, "ignored: bind option maxconn on a stats listener (the global maxconn does not count it either)")
		}
		s.URI = ""
		if st.enabled.set() {
			s.URI = haproxyStatsURI
			p.setLine(path+".uri", st.enabled.line)
			put(p, &s.URI, st.uri, path+".uri")
			if len(st.auth) > 0 {
				s.Auth = slices.Clone(st.auth)
				p.setLine(path+".auth", st.authLine)
			}
			put(p, &s.Realm, st.realm, path+".realm")
			put(p, &s.Refresh, st.refresh, path+".refresh")
			if st.hideVersion.set() {
				s.HideVersion = true
				p.setLine(path+".hide_version", st.hideVersion.line)
			}
			put(p, &s.Admin, st.admin, path+".admin")
		}
		put(p, &s.Metrics, st.metrics, path+".metrics")
		p.cfg.Stats = append(p.cfg.Stats, s)
	}
	return used
}

// backend adds the backend of px; clients are the frontends that use it.
func (p *hapParser) backend(px *hapProxy, clients []hapUse) {
	i := len(p.cfg.Backends)
	path := fmt.Sprintf("backend.%d", i)
	p.owners[path] = px.hapSection
	label := fmt.Sprintf("backend %q", px.name)
	o := px.opts
	b := config.DefaultBackend()
	b.Name = px.name
	p.setLine(path, px.line)
	p.setLine(path+".name", px.line)
	put(p, &b.Balance, o.balance, path+".balance")
	put(p, &b.ConnectTimeout, o.connectTimeout, path+".connect_timeout")
	put(p, &b.Retries, o.retries, path+".retries")
	put(p, &b.Redispatch, o.redispatch, path+".redispatch")
	put(p, &b.TCPKeepalive, o.keepalive, path+".tcp_keepalive")

	// Idle timeout: tunnel if set, else the smallest of the server timeout
	// and the client timeouts of the frontends using this backend.
	if t := o.tunnelTimeout; t.set() {
		b.IdleTimeout = t.v
		p.setLine(path+".idle_timeout", t.line)
	} else {
		var clientTimeouts []val[time.Duration]
		for _, u := range clients {
			clientTimeouts = append(clientTimeouts, u.client)
		}
		p.smallest(label, path+".idle_timeout", &b.IdleTimeout, "timeout server", o.serverTimeout, "timeout client", clientTimeouts,
			"one idle_timeout per backend (no traffic either way)")
	}
	var fins []val[time.Duration]
	for _, u := range clients {
		fins = append(fins, u.clientFin)
	}
	p.smallest(label, path+".half_close_timeout", &b.HalfCloseTimeout, "timeout server-fin", o.serverFin, "timeout client-fin", fins,
		"one half_close_timeout per backend")

	// Servers without a port get the one their frontends listen on, as
	// HAProxy connects to the port the client connected to.
	var ports []int
	for _, u := range clients {
		for _, n := range u.ports {
			if !slices.Contains(ports, n) {
				ports = append(ports, n)
			}
		}
	}
	for k := range px.servers {
		s := &px.servers[k]
		if s.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(s.addr); err != nil && strings.Contains(err.Error(), "missing port") {
			if len(ports) == 1 {
				s.addr = net.JoinHostPort(s.addr, strconv.Itoa(ports[0]))
			} else if len(ports) > 1 {
				p.errorf(s.line, "%s: server %q has no port, and the frontends using this backend listen on several (%s): write the port", label, s.name, joinInts(ports))
				s.addr = ""
			}
		}
	}

	p.checks(px, label, path, &b, clients)

	// tcp-request content rules of a backend section: evaluated once the backend is chosen.
	if len(px.backRules) > 0 {
		b.ACL = px.backACL
		for name := range px.backACL {
			if a := px.acls[name]; a != nil && len(a.lines) > 0 {
				p.setLine(path+".acl."+name, a.lines[0])
			} else {
				p.setLine(path+".acl."+name, px.backRuleLines[0])
			}
		}
		p.setLine(path+".tcp_request", px.backRuleLines[0])
		for j, r := range px.backRules {
			b.TCPRequest = append(b.TCPRequest, config.BackendRule{Action: r.Action, If: r.If, Unless: r.Unless})
			p.setLine(fmt.Sprintf("%s.tcp_request.%d", path, j), px.backRuleLines[j])
		}
	}

	// Per-server settings that amqplb has per backend: the first server's
	// apply.
	if len(px.servers) > 0 {
		s0 := px.servers[0]
		if v := s0.opts.sendProxy; v.set() {
			b.SendProxy = v.v
			p.setLine(path+".send_proxy", v.line)
		}
		if v := s0.opts.onMarkedDown; v.set() {
			b.OnMarkedDown = v.v
			p.setLine(path+".on_marked_down", v.line)
		}
		if v := s0.opts.onMarkedUp; v.set() {
			b.OnMarkedUp = v.v
			p.setLine(path+".on_marked_up", v.line)
		}
		if v := s0.opts.slowstart; v.set() {
			b.Slowstart = v.v
			p.setLine(path+".slowstart", v.line)
		}
		for _, s := range px.servers[1:] {
			same := func(s string) string { return s }
			agree(p, label, &s, &s0, "on-marked-down", s.opts.onMarkedDown, s0.opts.onMarkedDown, same)
			agree(p, label, &s, &s0, "on-marked-up", s.opts.onMarkedUp, s0.opts.onMarkedUp, same)
			agree(p, label, &s, &s0, "slowstart", s.opts.slowstart, s0.opts.slowstart, config.FormatDuration)
		}
	}

	for _, s := range px.servers {
		sp := fmt.Sprintf("%s.server.%d", path, len(b.Servers))
		if s.tmpl != nil {
			sp = fmt.Sprintf("%s.server_template.%d.server", path, len(b.ServerTemplates)) // lines only
		}
		sv := config.DefaultServer()
		sv.Name, sv.Address = s.name, s.addr
		p.setLine(sp, s.line)
		p.setLine(sp+".name", s.line)
		p.setLine(sp+".address", s.line)
		if s.addr == "" {
			p.bad[sp+".address"] = true
		}
		put(p, &sv.Weight, s.opts.weight, sp+".weight")
		if s.opts.disabled.v {
			sv.Weight = 0
			p.warnf(s.opts.disabled.line, "%s: server %q is disabled: it starts with weight 0 (amqplb has no maintenance at start; give it a weight over the admin API)", label, s.name)
		}
		sv.Backup = s.opts.backup.v
		if s.opts.backup.set() {
			p.setLine(sp+".backup", s.opts.backup.line)
		}
		put(p, &sv.MaxConnections, s.opts.maxconn, sp+".max_connections")
		if v := s.opts.checkPort; v.set() {
			sv.CheckPort = v.v
			p.setLine(sp+".check_port", v.line)
		}
		if t := p.serverTLS(label, &s); t != nil {
			sv.TLS = t
			p.setLine(sp+".tls", s.opts.ssl.line)
		}
		if v := s.opts.sendProxy; v.v != b.SendProxy {
			// The backend has the first server's; the others that differ say theirs.
			sv.SendProxy = cmp.Or(v.v, "none")
			p.setLine(sp+".send_proxy", cmp.Or(v.line, s.line))
		}
		p.checkTransport(label, sp, &s, &sv, px.connect, b.ServerSendProxy(sv))
		if s.tmpl != nil {
			tp := fmt.Sprintf("%s.server_template.%d", path, len(b.ServerTemplates))
			b.ServerTemplates = append(b.ServerTemplates, p.templateOf(label, tp, s, sv, &b))
			continue
		}
		p.serverAgent(label, sp, &s, &sv)
		b.Servers = append(b.Servers, sv)
	}
	p.cfg.Backends = append(p.cfg.Backends, b)
}

// checkTransport sets whether the checks of server s (sv, at path sp)
// speak TLS and send a PROXY header, as HAProxy decides: as the traffic
// does when the server line has neither port nor addr, else not; check-ssl
// and check-send-proxy force them, no-check-ssl turns TLS off. connect is
// the tcp-check connect that starts the checks, if any: without default,
// it connects in plain TCP with no PROXY header. sendProxy is the
// server's send_proxy (its own, or the backend's).
func (p *hapParser) checkTransport(label, sp string, s *hapServer, sv *config.Server, connect *hapStep, sendProxy string) {
	o := s.opts
	if connect != nil && !connect.deflt {
		p.setLine(sp+".check_tls", connect.line)
		p.setLine(sp+".check_send_proxy", connect.line)
		key := fmt.Sprintf("%d:connect:%s", connect.line, label)
		if (o.ssl.v || sendProxy != "") && !p.reported[key] {
			p.reported[key] = true
			p.warnf(connect.line, "%s: tcp-check connect without default checks in plain TCP with no PROXY header, as in HAProxy, though server %q has ssl or send-proxy: check_tls and check_send_proxy are false (write tcp-check connect default to check the way the traffic goes)", label, s.name)
		}
		return
	}
	// HAProxy's tcp-check connect port is not the server's port: the
	// port option alone (or addr) stops checks taking the traffic's
	// transport. checks has copied a connect port into checkPort; the
	// server line's own is in portLine.
	implicit := s.portLine == 0 && !o.checkAddr.set()
	// why is the line that makes the traffic's settings apply or not.
	why := func(l int) int {
		if !implicit {
			return max(s.portLine, o.checkAddr.line)
		}
		return l
	}
	switch {
	case o.checkSSL.set():
		sv.CheckTLS = o.checkSSL.v && sv.TLS != nil // else reported by serverTLS
		p.setLine(sp+".check_tls", o.checkSSL.line)
	case o.ssl.v:
		sv.CheckTLS = implicit
		p.setLine(sp+".check_tls", why(o.ssl.line))
	}
	switch {
	case o.checkSendProxy.v && sendProxy == "":
		p.warnf(o.checkSendProxy.line, "%s: server %q: check-send-proxy without send-proxy: HAProxy would send a PROXY header on checks only; amqplb's checks send one only with the server's send_proxy, so these send none", label, s.name)
	case o.checkSendProxy.v:
		sv.CheckSendProxy = true
		p.setLine(sp+".check_send_proxy", o.checkSendProxy.line)
	case sendProxy != "":
		// no-check-send-proxy only undoes check-send-proxy, as in HAProxy.
		sv.CheckSendProxy = implicit
		p.setLine(sp+".check_send_proxy", why(o.sendProxy.line))
	}
}

// smallest sets dst to the smallest of own and the frontends' times,
// warning about the ones not taken.
func (p *hapParser) smallest(label, path string, dst *time.Duration, ownName string, own val[time.Duration], otherName string, others []val[time.Duration], why string) {
	type cand struct {
		name string
		t    val[time.Duration]
	}
	var cands []cand
	if own.set() {
		cands = append(cands, cand{ownName, own})
	}
	for _, t := range others {
		if t.set() && !slices.ContainsFunc(cands, func(c cand) bool { return c.t == t }) {
			cands = append(cands, cand{otherName, t})
		}
	}
	if len(cands) == 0 {
		return
	}
	least := cands[0]
	for _, c := range cands[1:] {
		if c.t.v < least.t.v {
			least = c
		}
	}
	*dst = least.t.v
	p.setLine(path, least.t.line)
	for _, c := range cands {
		if c.t.v != least.t.v {
			p.warnf(c.t.line, "%s: %s %s is not used: amqplb has %s and takes the smaller of %s and %s, %s (line %d)",
				label, c.name, config.FormatDuration(c.t.v), why, otherName, ownName, config.FormatDuration(least.t.v), least.t.line)
		}
	}
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// isAMQPPort reports whether n is the AMQP 0-9-1 port, plain or TLS.
func isAMQPPort(n int) bool { return n == 5672 || n == 5671 }

// servesAMQP reports whether the servers of px speak AMQP as far as the
// file tells: a server or a frontend on an AMQP port, and no check sent to
// another port.
func servesAMQP(px *hapProxy, clients []hapUse) (bool, string) {
	for _, s := range px.servers {
		if s.opts.check.v && s.opts.checkPort.set() && !isAMQPPort(s.opts.checkPort.v) {
			return false, ""
		}
	}
	for _, s := range px.servers {
		// 5671 without ssl is TLS passed through (routed on the server name, say): a plain
		// AMQP probe would fail there, so it keeps HAProxy's TCP check.
		if n := addrPort(s.addr); n == 5672 || n == 5671 && s.opts.ssl.v {
			return true, fmt.Sprintf("server %s is on port %d", s.name, n)
		}
	}
	for _, u := range clients {
		for _, n := range u.ports {
			if n == 5672 {
				return true, fmt.Sprintf("its frontend listens on port %d", n)
			}
		}
	}
	return false, ""
}

// checks sets the backend's health check.
func (p *hapParser) checks(px *hapProxy, label, path string, b *config.Backend, clients []hapUse) {
	o := px.opts
	var firstChecked *hapServer
	for k := range px.servers {
		if px.servers[k].opts.check.v {
			firstChecked = &px.servers[k]
			break
		}
	}
	steps := o.checkSteps
	if len(steps) > 0 && !o.tcpCheck.v {
		key := fmt.Sprintf("%d:tcp-check", steps[0].line)
		if !p.reported[key] {
			p.reported[key] = true
			p.warnf(steps[0].line, "ignored: tcp-check rules without option tcp-check (HAProxy ignores them too)")
		}
		steps = nil
	}
	if len(steps) > 0 && steps[0].step.Action == "connect" {
		px.connect = &steps[0]
	}
	if len(o.httpRules) > 0 && !o.httpCheck.v {
		p.ignoreHTTPRules(px, "http-check rules without option httpchk; HAProxy ignores them too")
	}
	if firstChecked == nil {
		b.HealthCheck.Type = "none"
		if o.tcpCheck.v || o.httpCheck.v {
			l := max(o.tcpCheck.line, o.httpCheck.line)
			p.warnf(l, "%s: no server has check, so servers are not checked", label)
		}
		return
	}
	h := &b.HealthCheck
	hp := path + ".health_check"
	p.setLine(hp, firstChecked.opts.check.line)
	p.setLine(hp+".type", firstChecked.opts.check.line)
	amqp, why := servesAMQP(px, clients)
	switch {
	case o.tcpCheck.v:
		if o.httpCheck.v {
			p.ignoreHTTPRules(px, fmt.Sprintf("option tcp-check, line %d, makes the check a tcp-check", o.tcpCheck.line))
		}
		if line, ok := amqpRecipe(steps); ok {
			h.Type = "amqp-probe"
			p.setLine(hp+".type", line)
			p.warnf(line, `%s: this tcp-check sends the AMQP 0-9-1 protocol header and expects a reply: amqplb checks with its AMQP probe instead (type "amqp-probe": the header, then a valid Connection.Start)`, label)
			break
		}
		h.Type = "tcp"
		p.setLine(hp+".type", o.tcpCheck.line)
		for k, st := range steps {
			if st.step.Action == "connect" {
				if k > 0 {
					p.errorf(st.line, "%s: tcp-check connect after other steps is not supported (a check makes one connection)", label)
					continue
				}
				// The check connects anyway; a port is every server's
				// check_port, as HAProxy's connect port wins over port.
				if st.port > 0 {
					for j := range px.servers {
						px.servers[j].opts.checkPort = at(st.port, st.line)
					}
				}
				continue
			}
			p.setLine(fmt.Sprintf("%s.tcp_check.%d", hp, len(h.TCPCheck)), st.line)
			h.TCPCheck = append(h.TCPCheck, st.step)
		}
		if len(h.TCPCheck) > 0 {
			p.setLine(hp+".tcp_check", o.tcpCheck.line)
		}
	case o.httpCheck.v && (px.httpMode || !amqp):
		// What HAProxy does: one HTTP request per check, in mode http
		// or tcp alike.
		p.httpCheck(px, label, hp, h)
	default:
		h.Type = "tcp"
		if amqp {
			h.Type = "amqp-probe"
		}
		switch {
		case o.httpCheck.v:
			// An AMQP listener answers no HTTP: HAProxy's check there
			// fails as soon as the broker answers, or never sees it.
			p.warnf(o.httpCheck.line, `%s: option httpchk: the servers serve AMQP, so the check is an AMQP probe (type "amqp-probe": the protocol header, then a valid Connection.Start) because %s; to check a port that serves HTTP, write type = "http" and check_port in the converted TOML`, label, why)
			p.ignoreHTTPRules(px, "the check of this AMQP backend is an AMQP probe")
		case amqp:
			p.warnf(firstChecked.opts.check.line, `%s: check is upgraded from HAProxy's TCP connect to an AMQP probe (type "amqp-probe": the protocol header, then a valid Connection.Start) because %s, so that a broker that accepts connections but does not answer is taken out; to keep a plain TCP check write "option tcp-check" in this section, or type = "tcp" in the converted TOML`, label, why)
		}
	}
	put(p, &h.Timeout, o.checkTimeout, hp+".timeout")
	fo := firstChecked.opts
	durs := []struct {
		key, opt string
		get      func(serverOpts) val[time.Duration]
		dst      *time.Duration
	}{
		{"interval", "inter", func(s serverOpts) val[time.Duration] { return s.inter }, &h.Interval},
		{"fast_interval", "fastinter", func(s serverOpts) val[time.Duration] { return s.fastinter }, &h.FastInterval},
		{"down_interval", "downinter", func(s serverOpts) val[time.Duration] { return s.downinter }, &h.DownInterval},
	}
	for _, f := range durs {
		if v := f.get(fo); v.set() {
			*f.dst = v.v
			p.setLine(hp+"."+f.key, v.line)
		}
	}
	// A fast interval longer than the interval would slow a pending
	// state change down instead of speeding it up.
	if !fo.fastinter.set() && fo.inter.set() && fo.inter.v < h.FastInterval {
		h.FastInterval = fo.inter.v
	}
	ints := []struct {
		key string
		get func(serverOpts) val[int]
		dst *int
	}{
		{"rise", func(s serverOpts) val[int] { return s.rise }, &h.Rise},
		{"fall", func(s serverOpts) val[int] { return s.fall }, &h.Fall},
	}
	for _, f := range ints {
		if v := f.get(fo); v.set() {
			*f.dst = v.v
			p.setLine(hp+"."+f.key, v.line)
		}
	}
	for k := range px.servers {
		s := &px.servers[k]
		if !s.opts.check.v {
			p.warnf(s.line, "%s: server %q has no check, but amqplb checks every server of a backend whose other servers are checked", label, s.name)
			continue
		}
		if s == firstChecked {
			continue
		}
		for _, f := range durs {
			agree(p, label, s, firstChecked, f.opt, f.get(s.opts), f.get(fo), config.FormatDuration)
		}
		agree(p, label, s, firstChecked, "rise", s.opts.rise, fo.rise, strconv.Itoa)
		agree(p, label, s, firstChecked, "fall", s.opts.fall, fo.fall, strconv.Itoa)
	}
}

// agree warns when server s sets opt to another value than server first,
// whose value amqplb uses for the whole backend.
func agree[T comparable](p *hapParser, label string, s, first *hapServer, opt string, got, want val[T], show func(T) string) {
	if got.v == want.v && got.set() == want.set() {
		return
	}
	has := "has no " + opt
	if got.set() {
		has = "has " + opt + " " + show(got.v)
	}
	firstHas := "none"
	if want.set() {
		firstHas = show(want.v)
	}
	p.warnf(s.line, "%s: server %q %s but server %q (line %d) has %s; amqplb has one value per backend and takes the first server's",
		label, s.name, has, first.name, first.line, firstHas)
}

// serverAgent maps agent-check and its agent-port, agent-addr, agent-inter
// and agent-send to the server's agent; the settings without agent-check
// are not used, as in HAProxy.
func (p *hapParser) serverAgent(label, sp string, s *hapServer, sv *config.Server) {
	o := s.opts
	if !o.agentCheck.v {
		for _, l := range []int{o.agentPort.line, o.agentAddr.line, o.agentInter.line, o.agentSend.line} {
			if l == s.line {
				p.warnf(l, "%s: server %q: agent options without agent-check are not used (as in HAProxy)", label, s.name)
				break
			}
		}
		return
	}
	if !o.agentPort.set() {
		p.errorf(o.agentCheck.line, "%s: server %q: agent-check needs agent-port (the agent's port)", label, s.name)
		return
	}
	a := &config.Agent{Port: o.agentPort.v, Address: o.agentAddr.v, Interval: config.DefaultAgentInterval, Send: o.agentSend.v}
	if o.agentInter.set() {
		a.Interval = o.agentInter.v
	}
	sv.Agent = a
	p.setLine(sp+".agent", o.agentCheck.line)
}
