package config

import (
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks a Config that an importer built from a file in another
// syntax, as Parse checks the one it decodes: it returns the errors and the
// warnings found, in the order found, each naming c.File and the line that
// lines gives for the value it is about (lines may be nil). reported holds
// the paths (see Lines.Of) of the values the importer has already reported
// as wrong, so that a required value given wrongly is not also called
// missing, and "frontend" when the lack of frontends has been reported.
// minParkAfter is the shortest positive park_after.
const minParkAfter = 100 * time.Millisecond

func Validate(c *Config, lines *Lines, reported map[string]bool) (errs, warnings []*Error) {
	p := &problems{file: c.File}
	var m map[string]int
	if lines != nil {
		m = lines.m
	}
	if reported == nil {
		reported = map[string]bool{}
	}
	validate(c, p, m, reported)
	return p.errs, p.warnings
}

// validate checks the decoded c, reporting to p with the lines from lines
// (see keyLines, or an importer's; may be nil). bad holds the paths the
// decoder or the importer has already reported.
func validate(c *Config, p *problems, lines map[string]int, bad map[string]bool) {
	v := &validator{problems: p, lines: lines, bad: bad}
	v.global(c)
	backends := map[string]int{} // name → index of the first definition
	for i := range c.Backends {
		v.backend(i, &c.Backends[i], backends)
	}
	if len(c.Frontends) == 0 && !v.bad["frontend"] {
		p.errorf(0, "no frontend defined (add a [[frontend]] with name, bind and backend)")
	}
	frontends := map[string]int{}
	used := map[string]bool{}
	var binds []bindUse
	v.notNegative("admin.vhost_labels", "admin", "vhost_labels", c.Admin.VHostLabels)
	if c.Admin.Listen != "" {
		if a, ok := v.hostPort(v.line("admin.listen"), "admin", "listen", c.Admin.Listen, false); ok {
			binds = append(binds, bindUse{addr: a, raw: c.Admin.Listen, owner: "admin.listen"})
		}
	}
	v.adminSocket(&c.Admin)
	for i := range c.Frontends {
		f := &c.Frontends[i]
		path := fmt.Sprintf("frontend.%d", i)
		label := elemLabel("frontend", i, f.Name)
		if f.Name == "" && !v.bad[path+".name"] {
			p.errorf(v.line(path), "%s: name is required", label)
		} else if first, dup := frontends[f.Name]; dup && f.Name != "" {
			p.errorf(v.line(path+".name"), "duplicate frontend %q%s", f.Name, v.firstAt(fmt.Sprintf("frontend.%d.name", first)))
		} else {
			frontends[f.Name] = i
		}
		if f.Bind == "" && !v.bad[path+".bind"] {
			p.errorf(v.line(path), "%s: bind is required", label)
		} else if f.Bind == "" {
			// Written with the wrong type: reported by the decoder.
		} else if a, ok := v.hostPort(v.line(path+".bind"), label, "bind", f.Bind, false); ok {
			v.bindFree(path+".bind", label, f.Bind, a, &binds)
		}
		if f.Backend == "" && !v.bad[path+".backend"] {
			p.errorf(v.line(path), "%s: backend is required", label)
		} else if _, ok := backends[f.Backend]; !ok && f.Backend != "" {
			p.errorf(v.line(path+".backend"), "%s: backend %q is not defined", label, f.Backend)
		} else {
			used[f.Backend] = true
		}
		v.oneOf(path+".mode", label, "mode", f.Mode, modes)
		v.protocols(path+".protocols", label, f)
		v.notNegative(path+".max_connections", label, "max_connections", f.MaxConnections)
		v.frontendTLS(path+".tls", label, f.TLS)
		v.rules(path, label, f.ACL, f.TCPRequest)
		v.notNegativeDuration(path+".inspect_delay", label, "inspect_delay", f.InspectDelay)
		if f.ParkAfter > 0 && f.ParkAfter < minParkAfter {
			// The sweeper looks at every session each quarter of it: below this it costs more
			// than parking saves.
			v.errorf(v.line(path+".park_after"), "%s: park_after %s is below %s (0 means 1 s; negative, never)",
				label, FormatDuration(f.ParkAfter), FormatDuration(minParkAfter))
		}
		for j, r := range f.Routes {
			rpath := fmt.Sprintf("%s.route.%d", path, j)
			rlabel := label + ": " + elemLabel("route", j, "")
			switch {
			case r.Backend == "" && !v.bad[rpath+".backend"]:
				p.errorf(v.line(rpath), "%s: backend is required", rlabel)
			case r.Backend != "":
				if _, ok := backends[r.Backend]; !ok {
					p.errorf(v.line(rpath+".backend"), "%s: backend %q is not defined", rlabel, r.Backend)
				} else {
					used[r.Backend] = true
				}
			}
			if len(r.SNI)+len(r.SNISuffix)+len(r.SNIPrefix) == 0 {
				p.errorf(v.line(rpath), "%s: sni, sni_suffix or sni_prefix is required", rlabel)
			}
			if f.Mode != "tcp" || f.TLS != nil {
				p.errorf(v.line(rpath), "%s: routing on the TLS ClientHello needs mode = \"tcp\" and no tls (the client's TLS goes through to the broker)", rlabel)
			}
		}
	}
	v.stats(c, &binds)
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.Name != "" && !used[b.Name] && len(c.Frontends) > 0 && backends[b.Name] == i {
			p.warnf(v.line(fmt.Sprintf("backend.%d", i)), "backend %q is not used by any frontend", b.Name)
		}
	}
}

type validator struct {
	*problems
	lines map[string]int
	// bad holds the paths of keys the decoder reported (wrong type), so
	// that a required key written wrongly is not also called missing.
	bad map[string]bool
}

func (v *validator) line(path string) int { return lineOf(v.lines, path) }

// firstAt says where a duplicated name was first defined, when known.
func (v *validator) firstAt(path string) string {
	if l := v.line(path); l > 0 {
		return fmt.Sprintf(" (first defined at line %d)", l)
	}
	return ""
}

// socketLevels are the values of admin.socket_level, HAProxy's stats socket levels.
var socketLevels = []string{"user", "operator", "admin"}

// adminSocket checks the runtime socket's keys; the user and group are looked up by amqplb -c
// and at start.
func (v *validator) adminSocket(a *Admin) {
	v.oneOf("admin.socket_level", "admin", "socket_level", a.SocketLevel, socketLevels)
	if a.SocketMode != "" && !v.bad["admin.socket_mode"] {
		if _, err := ParseSocketMode(a.SocketMode); err != nil {
			v.errorf(v.line("admin.socket_mode"), "admin: socket_mode: %v", err)
		}
	}
	if a.Socket == "" {
		for k, val := range map[string]string{"socket_mode": a.SocketMode, "socket_user": a.SocketUser, "socket_group": a.SocketGroup} {
			if val != "" {
				v.warnf(v.line("admin."+k), "admin: %s has no effect without admin.socket", k)
			}
		}
	}
}

// ParseSocketMode reads admin.socket_mode: permission bits in octal, as chmod and HAProxy's
// stats socket mode take them ("660", "0660").
func ParseSocketMode(s string) (os.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("%q is not a file mode (octal permission bits such as 660)", s)
	}
	return os.FileMode(n), nil
}

func (v *validator) global(c *Config) {
	g := &c.Global
	v.notNegative("global.max_connections", "global", "max_connections", g.MaxConnections)
	v.notNegativeDuration("global.drain_timeout", "global", "drain_timeout", g.DrainTimeout)
	v.oneOf("global.log_level", "global", "log_level", g.LogLevel, logLevels)
	v.oneOf("global.log_format", "global", "log_format", g.LogFormat, logFormats)
	for i, t := range g.Log {
		path := fmt.Sprintf("global.log.%d", i)
		label := "global: " + elemLabel("log", i, "")
		if t.Address == "" && !v.bad[path+".address"] {
			v.errorf(v.line(path), "%s: address is required (host:port of a syslog server, UDP, or the path of a local syslog socket)", label)
		} else if strings.HasPrefix(t.Address, "/") {
			// A local syslog socket (/dev/log): whether it exists is known when amqplb starts.
		} else if t.Address != "" {
			v.hostPort(v.line(path+".address"), label, "address", t.Address, true)
		}
		v.oneOf(path+".facility", label, "facility", t.Facility, syslogFacilities)
		v.oneOf(path+".level", label, "level", t.Level, syslogSeverities)
	}
}

func (v *validator) frontendTLS(path, label string, t *TLS) {
	if t == nil {
		return
	}
	label += ": tls"
	if t.Cert == "" && !v.bad[path+".cert"] {
		v.errorf(v.line(path), "%s: cert is required (a PEM file with the certificate chain, or a directory of them)", label)
	}
	if v.oneOf(path+".verify", label, "verify", t.Verify, tlsVerifies) {
		switch {
		case t.Verify != "none" && t.CA == "":
			v.errorf(v.line(path+".verify"), "%s: verify %q needs ca, the CA bundle that client certificates are checked against", label, t.Verify)
		case t.Verify == "none" && t.CA != "":
			v.warnf(v.line(path+".ca"), `%s: ca has no effect with verify = "none" (no client certificate is asked for)`, label)
		}
	}
}

// rules checks a frontend's acl and tcp_request.
func (v *validator) rules(path, label string, acl map[string][]string, rules []TCPRule) {
	names := make([]string, 0, len(acl))
	for name := range acl {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		apath := path + ".acl." + name
		if !ValidACLName(name) {
			v.errorf(v.line(apath), "%s: acl %q: a name has only letters, digits and _ . : -", label, name)
		}
		for _, e := range acl[name] {
			if _, err := ParseACLEntry(e); err != nil {
				v.errorf(v.line(apath), "%s: acl %q: %v", label, name, err)
			}
		}
	}
	used := map[string]bool{}
	for i, r := range rules {
		rpath := fmt.Sprintf("%s.tcp_request.%d", path, i)
		rlabel := label + ": " + elemLabel("tcp_request", i, "")
		if r.Action == "" && !v.bad[rpath+".action"] {
			v.errorf(v.line(rpath), "%s: action is required (accept or reject)", rlabel)
		} else if r.Action != "" {
			v.oneOf(rpath+".action", rlabel, "action", r.Action, ruleActions)
		}
		if !v.bad[rpath+".layer"] {
			v.oneOf(rpath+".layer", rlabel, "layer", r.Layer, ruleLayers)
		}
		if r.If != "" && r.Unless != "" {
			v.errorf(v.line(rpath+".unless"), "%s: set if or unless, not both", rlabel)
			continue
		}
		key, expr := "if", r.If
		if r.Unless != "" {
			key, expr = "unless", r.Unless
		}
		if expr == "" {
			continue
		}
		c, err := ParseCondition(expr)
		if err != nil {
			v.errorf(v.line(rpath+"."+key), "%s: %s %q: %v", rlabel, key, expr, err)
			continue
		}
		for _, g := range c.Or {
			for _, t := range g {
				used[t.ACL] = true
				if _, ok := acl[t.ACL]; !ok {
					v.errorf(v.line(rpath+"."+key), "%s: %s: acl %q is not defined (define it in acl)", rlabel, key, t.ACL)
				}
			}
		}
	}
	for _, name := range names {
		if !used[name] {
			v.warnf(v.line(path+".acl."+name), "%s: acl %q is not used by any tcp_request rule", label, name)
		}
	}
}

func (v *validator) stats(c *Config, binds *[]bindUse) {
	names := map[string]int{}
	for i := range c.Stats {
		s := &c.Stats[i]
		path := fmt.Sprintf("stats.%d", i)
		label := elemLabel("stats", i, s.Name)
		if s.Name == "" && !v.bad[path+".name"] {
			v.errorf(v.line(path), "%s: name is required", label)
		} else if first, dup := names[s.Name]; dup && s.Name != "" {
			v.errorf(v.line(path+".name"), "duplicate stats %q%s", s.Name, v.firstAt(fmt.Sprintf("stats.%d.name", first)))
		} else {
			names[s.Name] = i
		}
		if s.Bind == "" && !v.bad[path+".bind"] {
			v.errorf(v.line(path), "%s: bind is required", label)
		} else if s.Bind != "" {
			if a, ok := v.hostPort(v.line(path+".bind"), label, "bind", s.Bind, false); ok {
				v.bindFree(path+".bind", label, s.Bind, a, binds)
			}
		}
		for _, k := range []struct{ key, val string }{{"uri", s.URI}, {"metrics", s.Metrics}} {
			if k.val != "" && !strings.HasPrefix(k.val, "/") {
				v.errorf(v.line(path+"."+k.key), "%s: %s %q must start with /", label, k.key, k.val)
			}
		}
		switch {
		case s.URI == "" && s.Metrics == "":
			v.errorf(v.line(path), "%s: serves nothing: set uri (the status page) or metrics (Prometheus), or both", label)
		case s.URI == s.Metrics:
			v.errorf(v.line(path+".metrics"), "%s: uri and metrics are both %q", label, s.URI)
		}
		for _, a := range s.Auth {
			if user, _, ok := strings.Cut(a, ":"); !ok || user == "" {
				v.errorf(v.line(path+".auth"), "%s: auth %q is not user:password", label, a)
			}
		}
		v.notNegativeDuration(path+".refresh", label, "refresh", s.Refresh)
		switch {
		case s.Admin && s.URI == "":
			v.warnf(v.line(path+".admin"), "%s: admin has no effect without uri (there is no page)", label)
		case s.Admin && len(s.Auth) == 0:
			v.warnf(v.line(path+".admin"), "%s: admin without auth: anyone who reaches %s can drain and stop servers", label, s.Bind)
		}
	}
}

// bindFree reports a listen address that another listener already has,
// and adds it to binds.
func (v *validator) bindFree(path, label, raw string, a bindAddr, binds *[]bindUse) {
	for _, b := range *binds {
		if b.addr.conflicts(a) {
			if b.addr == a {
				v.errorf(v.line(path), "%s: bind %s is already used by %s", label, raw, b.owner)
			} else {
				v.errorf(v.line(path), "%s: bind %s overlaps %s of %s", label, raw, b.raw, b.owner)
			}
			break
		}
	}
	*binds = append(*binds, bindUse{addr: a, raw: raw, owner: label})
}

func (v *validator) backend(i int, b *Backend, names map[string]int) {
	path := fmt.Sprintf("backend.%d", i)
	label := elemLabel("backend", i, b.Name)
	if b.Name == "" && !v.bad[path+".name"] {
		v.errorf(v.line(path), "%s: name is required", label)
	} else if first, dup := names[b.Name]; dup && b.Name != "" {
		v.errorf(v.line(path+".name"), "duplicate backend %q%s", b.Name, v.firstAt(fmt.Sprintf("backend.%d.name", first)))
	} else {
		names[b.Name] = i
	}
	v.oneOf(path+".balance", label, "balance", b.Balance, balances)
	v.positiveDuration(path+".connect_timeout", label, "connect_timeout", b.ConnectTimeout)
	v.notNegative(path+".retries", label, "retries", b.Retries)
	if b.IdleTimeout != IdleHeartbeat {
		v.notNegativeDuration(path+".idle_timeout", label, "idle_timeout", b.IdleTimeout)
	}
	v.notNegativeDuration(path+".idle_timeout_default", label, "idle_timeout_default", b.IdleTimeoutDefault)
	v.notNegativeDuration(path+".tcp_keepalive", label, "tcp_keepalive", b.TCPKeepalive)
	v.oneOf(path+".send_proxy", label, "send_proxy", b.SendProxy, sendProxies)
	v.oneOf(path+".on_marked_down", label, "on_marked_down", b.OnMarkedDown, onMarkedDowns)
	v.oneOf(path+".on_marked_up", label, "on_marked_up", b.OnMarkedUp, onMarkedUps)
	v.notNegativeDuration(path+".half_close_timeout", label, "half_close_timeout", b.HalfCloseTimeout)
	v.notNegativeDuration(path+".slowstart", label, "slowstart", b.Slowstart)
	// A backend checked over HTTP serves HTTP (the management UI), whose clients have no
	// heartbeat to outlast.
	if b.IdleTimeout > 0 && b.IdleTimeout < 2*AMQPHeartbeat && b.HealthCheck.Type != "http" {
		v.warnf(v.line(path+".idle_timeout"), "%s: idle_timeout %s is shorter than twice the %s AMQP heartbeat; idle clients will be cut",
			label, FormatDuration(b.IdleTimeout), FormatDuration(AMQPHeartbeat))
	}
	v.healthCheck(path+".health_check", label, &b.HealthCheck)
	v.rules(path, label, b.ACL, b.Rules())
	if r := b.Rebalance; r != nil {
		v.rebalance(path+".rebalance", label, r, b.Balance)
	}
	if d := b.Discovery; d != nil {
		v.discovery(path+".discovery", label, d)
	}

	templates := map[string]int{} // slot name → template index
	for j := range b.ServerTemplates {
		v.serverTemplate(fmt.Sprintf("%s.server_template.%d", path, j), label, j, &b.ServerTemplates[j], templates, b.ServerTemplates)
	}

	servers := map[string]int{}
	for j := range b.Servers {
		s := &b.Servers[j]
		spath := fmt.Sprintf("%s.server.%d", path, j)
		slabel := label + ": " + elemLabel("server", j, s.Name)
		if s.Name == "" && !v.bad[spath+".name"] {
			v.errorf(v.line(spath), "%s: name is required", slabel)
		} else if first, dup := servers[s.Name]; dup && s.Name != "" {
			v.errorf(v.line(spath+".name"), "%s: duplicate server %q%s", label, s.Name, v.firstAt(fmt.Sprintf("%s.server.%d.name", path, first)))
		} else {
			servers[s.Name] = j
			if t, ok := templates[s.Name]; ok {
				v.errorf(v.line(spath+".name"), "%s: server %q has the name of a slot of server_template %q%s", label, s.Name,
					b.ServerTemplates[t].Prefix, v.firstAt(fmt.Sprintf("%s.server_template.%d.prefix", path, t)))
			}
		}
		if s.Address == "" && !v.bad[spath+".address"] {
			v.errorf(v.line(spath), "%s: address is required", slabel)
		} else if s.Address != "" {
			v.hostPort(v.line(spath+".address"), slabel, "address", s.Address, true)
		}
		if s.Weight < 0 || s.Weight > MaxWeight {
			v.errorf(v.line(spath+".weight"), "%s: weight %d out of range 0..%d", slabel, s.Weight, MaxWeight)
		}
		v.notNegative(spath+".max_connections", slabel, "max_connections", s.MaxConnections)
		if s.CheckPort < 0 || s.CheckPort > 65535 {
			v.errorf(v.line(spath+".check_port"), "%s: check_port %d out of range 0..65535", slabel, s.CheckPort)
		}
		if _, written := v.lines[spath+".management_port"]; (written || s.ManagementPort != 0) && (s.ManagementPort < 1 || s.ManagementPort > 65535) {
			v.errorf(v.line(spath+".management_port"), "%s: management_port %d out of range 1..65535", slabel, s.ManagementPort)
		} else if s.ManagementPort != 0 && b.HealthCheck.Management == nil {
			v.warnf(v.line(spath+".management_port"), "%s: management_port has no effect without health_check.management", slabel)
		}
		if s.CheckTLS && s.TLS == nil {
			v.errorf(v.line(spath+".check_tls"), "%s: check_tls needs tls (checks speak TLS with the server's tls settings)", slabel)
		}
		v.oneOf(spath+".send_proxy", slabel, "send_proxy", s.SendProxy, serverSendProxies)
		if s.CheckSendProxy && b.ServerSendProxy(*s) == "" {
			v.errorf(v.line(spath+".check_send_proxy"), "%s: check_send_proxy needs a send_proxy, the server's or the backend's (the PROXY header's version)", slabel)
		}
		if a := s.Agent; a != nil {
			if a.Port < 1 || a.Port > 65535 {
				v.errorf(v.line(spath+".agent"), "%s: agent: port %d out of range 1..65535 (the agent's port is required)", slabel, a.Port)
			}
			if a.Interval <= 0 {
				v.errorf(v.line(spath+".agent"), "%s: agent: interval must be above 0", slabel)
			}
			if _, _, err := net.SplitHostPort(a.Address); err == nil || strings.ContainsAny(a.Address, "/ []") {
				v.errorf(v.line(spath+".agent"), "%s: agent: address %q must be a host alone (the port is port)", slabel, a.Address)
			}
		}
		if t := s.TLS; t != nil {
			tl := slabel + ": tls"
			v.oneOf(spath+".tls.verify", tl, "verify", t.Verify, serverVerifies)
			if t.Key != "" && t.Cert == "" {
				v.errorf(v.line(spath+".tls.key"), "%s: key needs cert (the client certificate)", tl)
			}
		}
	}
	switch {
	case b.Discovery != nil, len(b.ServerTemplates) > 0:
		// The servers come from the cluster or DNS; a backend with none written is the usual case.
	case len(b.Servers) == 0:
		v.warnf(v.line(path), "%s has no servers; its frontends will refuse every connection", label)
	case len(b.Servers) == 1:
		v.warnf(v.line(path), "%s has only one server; there is nothing to fail over to", label)
	}
}

func (v *validator) healthCheck(path, backendLabel string, h *HealthCheck) {
	label := backendLabel + ": health_check"
	if !v.oneOf(path+".type", label, "type", h.Type, checkTypes) {
		return
	}
	if len(h.TCPCheck) > 0 && h.Type != "tcp" {
		v.errorf(v.line(path+".tcp_check"), `%s: tcp_check needs type = "tcp", not %q`, label, h.Type)
	} else {
		v.tcpCheck(path+".tcp_check", label, h.TCPCheck)
	}
	if h.HTTP != nil && h.Type != "http" {
		v.errorf(v.line(path+".http"), `%s: http needs type = "http", not %q`, label, h.Type)
	} else if h.HTTP != nil {
		v.httpCheck(path+".http", label+": http", h.HTTP)
	}
	if h.Type == "none" {
		v.warnf(v.line(path+".type"), `%s: type "none": servers are never checked, so a dead broker stays in rotation`, label)
		return
	}
	v.positiveDuration(path+".interval", label, "interval", h.Interval)
	v.positiveDuration(path+".fast_interval", label, "fast_interval", h.FastInterval)
	v.positiveDuration(path+".down_interval", label, "down_interval", h.DownInterval)
	v.positiveDuration(path+".timeout", label, "timeout", h.Timeout)
	for _, k := range []struct {
		key string
		n   int
	}{{"rise", h.Rise}, {"fall", h.Fall}} {
		if k.n < 1 {
			v.errorf(v.line(path+"."+k.key), "%s: %s %d must be at least 1", label, k.key, k.n)
		}
	}
	if h.PasswordEnv != "" {
		if _, written := v.lines[path+".password"]; written {
			v.errorf(v.line(path+".password_env"), "%s: set password or password_env, not both", label)
		} else if pw, ok := os.LookupEnv(h.PasswordEnv); !ok {
			v.errorf(v.line(path+".password_env"), "%s: password_env %q is not set in the environment", label, h.PasswordEnv)
		} else {
			h.Password = pw
		}
	}
	if m := h.Management; m != nil {
		if m.Port < 1 || m.Port > 65535 {
			v.errorf(v.line(path+".management"), "%s: management: port %d out of range 1..65535", label, m.Port)
		}
		if m.EjectOnAlarm && !m.Alarms {
			v.warnf(v.line(path+".management"), "%s: management: eject_on_alarm has no effect without alarms = true", label)
		}
	}
}

// serverTemplate checks [[backend.server_template]] number j of a backend; names collects the
// slot names of the backend's templates.
func (v *validator) serverTemplate(path, backendLabel string, j int, t *ServerTemplate, names map[string]int, all []ServerTemplate) {
	label := backendLabel + ": " + elemLabel("server_template", j, t.Prefix)
	if t.Prefix == "" && !v.bad[path+".prefix"] {
		v.errorf(v.line(path), "%s: prefix is required (the servers are named prefix1..prefixN)", label)
	}
	if _, written := v.lines[path+".count"]; t.Count == 0 && !written && !v.bad[path+".count"] {
		v.errorf(v.line(path), "%s: count is required (the most servers the name may give)", label)
	} else if t.Count < 1 || t.Count > MaxTemplateCount {
		v.errorf(v.line(path+".count"), "%s: count %d out of range 1..%d", label, t.Count, MaxTemplateCount)
	} else if t.Prefix != "" {
		for i := 1; i <= t.Count; i++ {
			n := fmt.Sprintf("%s%d", t.Prefix, i)
			if first, dup := names[n]; dup {
				v.errorf(v.line(path+".prefix"), "%s: slot %q is also one of %s%s", label, n, elemLabel("server_template", first, all[first].Prefix),
					v.firstAt(fmt.Sprintf("%s.prefix", strings.TrimSuffix(path, fmt.Sprint(j))+fmt.Sprint(first))))
				break
			}
			names[n] = j
		}
	}
	if t.Address == "" && !v.bad[path+".address"] {
		v.errorf(v.line(path), "%s: address is required (host:port; the host is resolved)", label)
	} else if t.Address != "" {
		v.hostPort(v.line(path+".address"), label, "address", t.Address, true)
	}
	v.positiveDuration(path+".resolve_interval", label, "resolve_interval", t.ResolveInterval)
	v.positiveDuration(path+".resolve_timeout", label, "resolve_timeout", t.ResolveTimeout)
	for _, ns := range t.Nameservers {
		host, port, err := net.SplitHostPort(ns)
		if err != nil || net.ParseIP(host) == nil || port == "" {
			v.errorf(v.line(path+".nameservers"), "%s: nameserver %q must be ip:port", label, ns)
		}
	}
	if t.Weight < 0 || t.Weight > MaxWeight {
		v.errorf(v.line(path+".weight"), "%s: weight %d out of range 0..%d", label, t.Weight, MaxWeight)
	}
	v.notNegative(path+".max_connections", label, "max_connections", t.MaxConnections)
	if t.CheckPort < 0 || t.CheckPort > 65535 {
		v.errorf(v.line(path+".check_port"), "%s: check_port %d out of range 0..65535", label, t.CheckPort)
	}
}

// discovery checks [backend.discovery] and, with password_env, reads the password.
func (v *validator) discovery(path, backendLabel string, d *Discovery) {
	label := backendLabel + ": discovery"
	if d.Management == "" && !v.bad[path+".management"] {
		v.errorf(v.line(path), "%s: management is required (the base URL of a node's management API, e.g. \"http://rabbit1:15672\")", label)
	} else if d.Management != "" {
		u, err := url.Parse(d.Management)
		switch {
		case err != nil:
			v.errorf(v.line(path+".management"), "%s: management: %v", label, err)
		case u.Scheme != "http" && u.Scheme != "https":
			v.errorf(v.line(path+".management"), "%s: management %q must start with http:// or https://", label, d.Management)
		case u.Host == "" || u.Hostname() == "":
			v.errorf(v.line(path+".management"), "%s: management %q has no host", label, d.Management)
		case u.User != nil:
			// A URL is logged and shown in the admin API: a password in it would leak there.
			v.errorf(v.line(path+".management"), "%s: management must not hold a user or password; use user and password_env", label)
		case u.RawQuery != "" || u.Fragment != "":
			v.errorf(v.line(path+".management"), "%s: management %q must not have a query or fragment", label, d.Management)
		}
	}
	v.positiveDuration(path+".interval", label, "interval", d.Interval)
	v.positiveDuration(path+".timeout", label, "timeout", d.Timeout)
	_, pwWritten := v.lines[path+".password"]
	switch {
	case d.PasswordEnv != "" && pwWritten:
		v.errorf(v.line(path+".password_env"), "%s: set password or password_env, not both", label)
	case d.PasswordEnv != "":
		if pw, ok := os.LookupEnv(d.PasswordEnv); !ok {
			v.errorf(v.line(path+".password_env"), "%s: password_env %q is not set in the environment", label, d.PasswordEnv)
		} else {
			d.Password = pw
		}
	}
	if d.User == "" && (pwWritten || d.PasswordEnv != "") {
		v.errorf(v.line(path), "%s: password or password_env needs user (without user, the health check's username and password are used)", label)
	}
}

// rebalance checks [backend.rebalance]. It needs no management API: without one amqplb closes
// the sessions itself.
func (v *validator) rebalance(path, backendLabel string, r *Rebalance, balance string) {
	label := backendLabel + ": rebalance"
	if r.Enabled && (balance == "source" || balance == "first") {
		v.warnf(v.line(path+".enabled"), "%s: with balance %q a closed client reconnects to the same server, so rebalancing cannot move it and only closes sessions (use roundrobin, leastconn or random)", label, balance)
	}
	if r.Tolerance < 0 || math.IsNaN(r.Tolerance) || math.IsInf(r.Tolerance, 0) {
		v.errorf(v.line(path+".tolerance"), "%s: tolerance %v must be a number of at least 0", label, r.Tolerance)
	}
	if _, err := ParseRate(r.Rate); err != nil {
		v.errorf(v.line(path+".rate"), "%s: rate: %v", label, err)
	}
	v.notNegativeDuration(path+".min_age", label, "min_age", r.MinAge)
}

// tcpCheck checks the steps of a tcp check script.
func (v *validator) tcpCheck(path, label string, steps []TCPCheckStep) {
	for i, st := range steps {
		spath := fmt.Sprintf("%s.%d", path, i)
		slabel := label + ": " + elemLabel("tcp_check", i, "")
		l := v.line(spath)
		if st.Action == "" && !v.bad[spath+".action"] {
			v.errorf(l, "%s: action is required (connect, send, send-binary or expect)", slabel)
			continue
		}
		if !v.oneOf(spath+".action", slabel, "action", st.Action, stepActions) {
			continue
		}
		unused := func(keys ...string) {
			vals := map[string]bool{"data": st.Data != "", "match": st.Match != "", "pattern": st.Pattern != "", "negate": st.Negate}
			for _, k := range keys {
				if vals[k] {
					v.errorf(v.line(spath+"."+k), "%s: %s has no meaning with action %q", slabel, k, st.Action)
				}
			}
		}
		switch st.Action {
		case "connect":
			if i > 0 {
				v.errorf(l, "%s: connect can only be the first step (the check connects once)", slabel)
			}
			unused("data", "match", "pattern", "negate")
		case "send":
			if st.Data == "" {
				v.errorf(l, "%s: send needs data", slabel)
			}
			unused("match", "pattern", "negate")
		case "send-binary":
			if _, err := decodeHex(st.Data); err != nil || st.Data == "" {
				v.errorf(v.line(spath+".data"), "%s: send-binary data %q is not hex bytes (e.g. \"414d5150\")", slabel, st.Data)
			}
			unused("match", "pattern", "negate")
		case "expect":
			unused("data")
			if st.Pattern == "" {
				v.errorf(l, "%s: expect needs pattern", slabel)
			}
			if st.Match == "" && !v.bad[spath+".match"] {
				v.errorf(l, "%s: expect needs match (string, binary, rstring or rbinary)", slabel)
				continue
			}
			if !v.oneOf(spath+".match", slabel, "match", st.Match, stepMatches) || st.Pattern == "" {
				continue
			}
			switch st.Match {
			case "binary":
				if _, err := decodeHex(st.Pattern); err != nil {
					v.errorf(v.line(spath+".pattern"), "%s: binary pattern %q is not hex bytes", slabel, st.Pattern)
				}
			case "rstring", "rbinary":
				if _, err := regexp.Compile(st.Pattern); err != nil {
					v.errorf(v.line(spath+".pattern"), "%s: pattern %q: %v", slabel, st.Pattern, err)
				}
			}
		}
	}
}

// httpCheck checks the request and match of an http check.
func (v *validator) httpCheck(path, label string, h *HTTPCheck) {
	if !isHTTPToken(h.Method) {
		v.errorf(v.line(path+".method"), "%s: method %q is not an HTTP method (e.g. \"GET\")", label, h.Method)
	}
	if !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \t\r\n") {
		v.errorf(v.line(path+".path"), "%s: path %q must start with / and hold no blank (write a blank as %%20)", label, h.Path)
	}
	if strings.ContainsAny(h.Host, " \t\r\n") {
		v.errorf(v.line(path+".host"), "%s: host %q must hold no blank", label, h.Host)
	}
	names := make([]string, 0, len(h.Headers))
	for k := range h.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		switch {
		case !isHTTPToken(k):
			v.errorf(v.line(path+".headers"), "%s: header name %q is not an HTTP header name", label, k)
		case strings.EqualFold(k, "host"):
			v.errorf(v.line(path+".headers"), "%s: header Host: set host instead", label)
		case strings.EqualFold(k, "connection"), strings.EqualFold(k, "content-length"), strings.EqualFold(k, "transfer-encoding"):
			v.errorf(v.line(path+".headers"), "%s: header %s is the check's own (it sends no body and closes the connection)", label, k)
		case strings.ContainsAny(h.Headers[k], "\r\n"):
			v.errorf(v.line(path+".headers"), "%s: header %s has a line break", label, k)
		}
	}
	if h.Match == "" {
		if h.Pattern != "" || h.Negate {
			v.errorf(v.line(path), "%s: pattern and negate need match (status, rstatus, string or rstring)", label)
		}
		return
	}
	if !v.oneOf(path+".match", label, "match", h.Match, httpMatches) {
		return
	}
	if h.Pattern == "" {
		v.errorf(v.line(path+".match"), "%s: match %s needs pattern", label, h.Match)
		return
	}
	switch h.Match {
	case "status":
		if !validStatusList(h.Pattern) {
			v.errorf(v.line(path+".pattern"), "%s: status pattern %q: want codes 100..599 or ranges of them, separated by commas (e.g. \"200\", \"200-299,304\")", label, h.Pattern)
		}
	case "rstatus", "rstring":
		if _, err := regexp.Compile(h.Pattern); err != nil {
			v.errorf(v.line(path+".pattern"), "%s: pattern %q: %v", label, h.Pattern, err)
		}
	}
}

// validStatusList reports whether s lists HTTP status codes and ranges of them separated by
// commas ("200", "200-299,304"), as HAProxy's http-check expect status.
func validStatusList(s string) bool {
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		if !isRange {
			hi = lo
		}
		a, errA := strconv.Atoi(strings.TrimSpace(lo))
		b, errB := strconv.Atoi(strings.TrimSpace(hi))
		if errA != nil || errB != nil || a < 100 || b > 599 || a > b {
			return false
		}
	}
	return true
}

// isHTTPToken reports whether s is a non-empty HTTP token, as a method or header name is.
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// decodeHex reads bytes written in hex, either case, an even number of
// digits.
func decodeHex(s string) ([]byte, error) { return hex.DecodeString(s) }

// oneOf reports whether s is allowed, reporting it if not.
// protocols checks a frontend's protocols: known, not repeated, and only in mode amqp. None
// (or an empty list) means both.
func (v *validator) protocols(path, label string, f *Frontend) {
	if len(f.Protocols) == 0 {
		return // both
	}
	if f.Mode == "tcp" {
		v.errorf(v.line(path), "%s: protocols applies to mode amqp only; mode tcp relays any protocol", label)
		return
	}
	seen := map[string]bool{}
	for _, p := range f.Protocols {
		if !v.oneOf(path, label, "protocols", p, protocolNames) {
			continue
		}
		if seen[p] {
			v.errorf(v.line(path), "%s: protocols lists %q twice", label, p)
		}
		seen[p] = true
	}
}

// protocolNames are the values of a frontend's protocols.
var protocolNames = []string{"amqp-0-9-1", "amqp-1.0"}

func (v *validator) oneOf(path, label, key, s string, allowed []string) bool {
	if slices.Contains(allowed, s) {
		return true
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	v.errorf(v.line(path), "%s: %s %q is not one of %s", label, key, s, strings.Join(quoted, ", "))
	return false
}

func (v *validator) notNegative(path, label, key string, n int) {
	if n < 0 {
		v.errorf(v.line(path), "%s: %s %d must not be negative", label, key, n)
	}
}

func (v *validator) notNegativeDuration(path, label, key string, d time.Duration) {
	if d < 0 {
		v.errorf(v.line(path), "%s: %s %s must not be negative", label, key, FormatDuration(d))
	}
}

func (v *validator) positiveDuration(path, label, key string, d time.Duration) {
	if d <= 0 {
		v.errorf(v.line(path), "%s: %s must be greater than 0, not %s", label, key, FormatDuration(d))
	}
}

// hostPort checks that s is host:port with a port in 1..65535 (and a host,
// when needHost) and returns it normalised for comparing binds.
func (v *validator) hostPort(line int, label, key, s string, needHost bool) (bindAddr, bool) {
	example := "0.0.0.0:5672"
	if needHost {
		example = "10.0.0.5:5672"
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.errorf(line, "%s: %s %q is not host:port (e.g. %q)", label, key, s, example)
		return bindAddr{}, false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		v.errorf(line, "%s: %s %q: port must be a number in 1..65535", label, key, s)
		return bindAddr{}, false
	}
	if needHost && host == "" {
		v.errorf(line, "%s: %s %q has no host (e.g. %q)", label, key, s, example)
		return bindAddr{}, false
	}
	return normaliseBind(host, n), true
}

// bindAddr is a listen address normalised so that equal binds compare
// equal: "" / "0.0.0.0" / "::" become the wildcard, "localhost" 127.0.0.1.
type bindAddr struct {
	host     string
	port     int
	wildcard bool
}

func normaliseBind(host string, port int) bindAddr {
	switch strings.ToLower(host) {
	case "", "0.0.0.0", "::", "*":
		return bindAddr{port: port, wildcard: true}
	case "localhost":
		host = "127.0.0.1"
	}
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().String()
	}
	return bindAddr{host: strings.ToLower(host), port: port}
}

// BindsConflict reports whether listening on both host:port addresses a
// and b would fail with "address already in use": the same port, and the
// same host or either a wildcard ("", "0.0.0.0", "::", "*"). It is false
// when either is not host:port with a numeric port.
func BindsConflict(a, b string) bool {
	parse := func(s string) (bindAddr, bool) {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return bindAddr{}, false
		}
		n, err := strconv.Atoi(port)
		return normaliseBind(host, n), err == nil
	}
	x, ok1 := parse(a)
	y, ok2 := parse(b)
	return ok1 && ok2 && x.conflicts(y)
}

// conflicts reports whether listening on both a and b would fail with
// "address already in use": same port, and same host or either wildcard.
func (a bindAddr) conflicts(b bindAddr) bool {
	return a.port == b.port && (a.wildcard || b.wildcard || a.host == b.host)
}

type bindUse struct {
	addr  bindAddr
	raw   string
	owner string // `frontend "amqp"` or "admin.listen"
}

// FormatDuration writes d as ToTOML writes a duration, and as messages
// show one: "1m", not "1m0s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
