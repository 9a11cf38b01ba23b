package haproxycfg

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/amqplb/amqplb/config"
)

// tuning is why most ignored keywords are ignored.
const tuning = "HAProxy tuning that amqplb does not need"

// globalIgnored are the global keywords that make no difference to amqplb,
// with why; prefixes end in "." or "-".
var globalIgnored = map[string]string{
	"daemon":        "amqplb runs in the foreground; let the service manager run it",
	"master-worker": "amqplb is one process that reloads its file on SIGHUP",
	"nbproc":        "amqplb is one process using every core; HAProxy 2.5+ rejects nbproc",
	"nbthread":      "Go schedules on every core", "thread-groups": "Go schedules on every core",
	"cpu-map": "Go schedules on every core", "numa-cpu-mapping": "Go schedules on every core",
	"chroot":            "amqplb does not chroot; confine it with the service manager",
	"pidfile":           "amqplb writes no pid file; the service manager tracks it",
	"ulimit-n":          "set the open-file limit in the service manager (LimitNOFILE)",
	"fd-hard-limit":     "set the open-file limit in the service manager (LimitNOFILE)",
	"log-tag":           "amqplb's syslog lines are tagged amqplb",
	"log-send-hostname": "amqplb's syslog lines carry the host name",
	"description":       "amqplb's status page has its own title", "node": "amqplb's status page has its own title",
	"spread-checks": "amqplb spreads its checks itself", "maxsslconn": "global maxconn bounds every connection",
	"maxpipes": "Go manages its splice pipes", "maxzlibmem": "amqplb compresses nothing",
	"quiet": "amqplb prints its warnings when it starts", "zero-warning": "amqplb prints its warnings when it starts",
	"debug": "use log_level = \"debug\"", "noepoll": "Go picks its own poller", "nopoll": "Go picks its own poller",
	"nosplice": "amqplb always splices", "nogetaddrinfo": "Go has its own resolver",
	"server-state-file": "servers start from the file's state", "server-state-base": "servers start from the file's state",
	"localpeer": "amqplb has no peers", "setenv": "environment changes are not applied; set variables in the service manager",
	"presetenv":                      "environment changes are not applied; set variables in the service manager",
	"unsetenv":                       "environment changes are not applied; set variables in the service manager",
	"resetenv":                       "environment changes are not applied; set variables in the service manager",
	"expose-experimental-directives": "amqplb has none", "insecure-fork-wanted": "amqplb forks nothing",
	"insecure-setuid-wanted": "amqplb forks nothing", "busy-polling": tuning, "set-dumpable": tuning,
	"strict-limits": tuning, "ssl-dh-param-file": "amqplb uses Go's TLS (ECDHE)", "ssl-load-extra-files": "amqplb reads the files named",
	"issuers-chain-path": "put the chain in the crt file", "ssl-skip-self-issued-ca": "put the chain in the crt file",
	"h1-case-adjust": "needs mode http", "h1-case-adjust-file": "needs mode http",
	"grace": "amqplb stops accepting at once on SIGTERM and drains for drain_timeout", "external-check": "external checks are not supported",
	"mworker-max-reloads": "amqplb is one process", "unix-bind": "amqplb listens on TCP only", "cluster-secret": tuning,
	"tune.": tuning, "ssl-default-": goTLS,
	"ssl-mode-async": "amqplb uses Go's TLS", "ssl-engine": "amqplb uses Go's TLS", "ssl-propquery": "amqplb uses Go's TLS",
	"ssl-provider": "amqplb uses Go's TLS", "ssl-provider-path": "amqplb uses Go's TLS", "httpclient.": "amqplb has no HTTP client",
	"profiling.": "Go has its own profiler", "numa": tuning, "max-spread-checks": "amqplb spreads its checks itself",
	"hash-balance-factor": tuning, "pp2-never-send-local": "checks send a PROXY LOCAL header only to brokers that support it",
}

// globalRefused are global keywords whose behaviour amqplb cannot give.
var globalRefused = map[string]string{
	"maxconnrate": "rate limits are not supported", "maxsessrate": "rate limits are not supported",
	"maxsslrate": "rate limits are not supported", "lua-load": "Lua is not supported",
	"lua-load-per-thread": "Lua is not supported", "lua-prepend-path": "Lua is not supported",
}

func lookupPrefixed(m map[string]string, kw string) (string, bool) {
	if why, ok := m[kw]; ok {
		return why, true
	}
	for k, why := range m {
		if strings.HasSuffix(k, ".") || strings.HasSuffix(k, "-") {
			if strings.HasPrefix(kw, k) {
				return why, true
			}
		}
	}
	return "", false
}

func (p *hapParser) global(d hapDirective) {
	g := &p.cfg.Global
	switch kw := d.args[0]; kw {
	case "maxconn":
		if n, ok := p.intArg(d, 1); ok {
			g.MaxConnections = n.v
			p.lines["global.max_connections"] = d.line
		}
	case "hard-stop-after":
		if t, ok := p.timeArg(d, 1, kw); ok {
			g.DrainTimeout = t.v
			p.lines["global.drain_timeout"] = d.line
		}
	case "crt-base", "ca-base":
		if s, ok := p.arg(d, 1, "a directory"); ok && p.last(d, 1) {
			if kw == "crt-base" {
				p.crtBase = s
			} else {
				p.caBase = s
			}
		}
	case "ssl-server-verify":
		if s, ok := p.arg(d, 1, "none or required"); ok && p.last(d, 1) {
			if s != "none" && s != "required" {
				p.errorf(d.line, "ssl-server-verify %s: expected none or required", s)
				return
			}
			p.serverVerify = at(s, d.line)
		}
	case "user", "uid", "group", "gid":
		if s, ok := p.arg(d, 1, "a name or a number"); ok && p.last(d, 1) {
			if kw == "user" || kw == "uid" {
				g.User = s
				p.lines["global.user"] = d.line
			} else {
				g.Group = s
				p.lines["global.group"] = d.line
			}
		}
	case "log":
		p.globalLog(d)
	case "stats":
		if len(d.args) > 1 && d.args[1] == "socket" {
			p.statsSocket(d)
		} else if len(d.args) > 1 && (d.args[1] == "timeout" || d.args[1] == "maxconn") {
			p.ignored(d, "amqplb's runtime socket closes a session idle for 10s and serves 10 at once, HAProxy's defaults")
		} else {
			p.ignored(d, "amqplb's stats listeners take no process-wide settings")
		}
	default:
		if why, ok := lookupPrefixed(globalRefused, kw); ok {
			p.errorf(d.line, "%s: %s", kw, why)
		} else if why, ok := lookupPrefixed(globalIgnored, kw); ok {
			p.ignored(d, why)
		} else {
			p.unknown(d, &hapSection{kind: "global"})
		}
	}
}

// statsSocket maps global stats socket ADDR [mode M] [user|uid U] [group|gid G] [level L] to
// [admin] socket*: the runtime API on a UNIX socket. amqplb serves one; a TCP or abstract
// address, or a second socket, is ignored with a warning.
func (p *hapParser) statsSocket(d hapDirective) {
	addr, ok := p.arg(d, 2, "an address (a UNIX socket path)")
	if !ok {
		return
	}
	a := &p.cfg.Admin
	path := strings.TrimPrefix(addr, "unix@")
	switch {
	case !strings.Contains(path, "/") || strings.Contains(path, "@"):
		p.warnf(d.line, "ignored: stats socket %s (amqplb serves the runtime API on a UNIX socket path only)", addr)
		return
	case a.Socket != "":
		p.warnf(d.line, "ignored: stats socket %s (amqplb serves one runtime socket: %s, line %d)", addr, a.Socket, p.lines["admin.socket"])
		return
	}
	a.Socket = path
	p.setLine("admin.socket", d.line)
	for i := 3; i < len(d.args); i++ {
		kw := d.args[i]
		switch kw {
		case "mode", "user", "uid", "group", "gid", "level", "process", "thread", "maxconn", "name", "severity-output",
			"backlog", "id", "nice":
			if i+1 >= len(d.args) {
				p.errorf(d.line, "stats socket: %s needs a value", kw)
				return
			}
		}
		switch kw {
		case "mode":
			a.SocketMode = d.args[i+1]
			p.setLine("admin.socket_mode", d.line)
			if _, err := config.ParseSocketMode(a.SocketMode); err != nil {
				p.bad["admin.socket_mode"] = true
				p.errorf(d.line, "stats socket: mode: %v", err)
			}
		case "user", "uid":
			a.SocketUser = d.args[i+1]
			p.setLine("admin.socket_user", d.line)
		case "group", "gid":
			a.SocketGroup = d.args[i+1]
			p.setLine("admin.socket_group", d.line)
		case "level":
			a.SocketLevel = d.args[i+1]
			p.setLine("admin.socket_level", d.line)
		case "process", "thread", "maxconn", "name", "severity-output", "backlog", "id", "nice":
			p.warnf(d.line, "ignored: stats socket option %s %s", kw, d.args[i+1])
		case "expose-fd":
			// expose-fd listeners hands the listeners to a new process on reload; amqplb
			// reloads in place.
			if i+1 < len(d.args) {
				i++
			}
			p.warnf(d.line, "ignored: stats socket option expose-fd (amqplb reloads in place, with SIGHUP)")
			continue
		default:
			p.warnf(d.line, "ignored: stats socket option %s", kw)
			continue
		}
		i++
	}
}

// globalLog maps a global log line: log TARGET [len N] [format F]
// [sample R:S] FACILITY [LEVEL [MINLEVEL]].
func (p *hapParser) globalLog(d hapDirective) {
	target, ok := p.arg(d, 1, "a target (an address, stdout or stderr)")
	if !ok {
		return
	}
	rest := d.args[2:]
	var notes []string
	for len(rest) >= 2 {
		switch rest[0] {
		case "len":
			notes = append(notes, "len "+rest[1]+" (lines are not cut)")
		case "format":
			if rest[1] != "rfc3164" {
				notes = append(notes, "format "+rest[1]+" (amqplb sends RFC 3164 lines)")
			}
		case "sample":
			notes = append(notes, "sample "+rest[1]+" (every line is sent)")
		default:
			goto facility
		}
		rest = rest[2:]
	}
facility:
	kind, addr := logTarget(target)
	switch kind {
	case "global":
		p.warnf(d.line, "ignored: log global (only proxies can refer to the global log targets)")
		return
	case "stderr":
		// amqplb logs to standard error anyway.
		return
	case "stdout":
		p.warnf(d.line, "ignored: log %s (amqplb logs to standard error, not standard output)", target)
		return
	case "other":
		p.warnf(d.line, "ignored: log %s (only UDP syslog servers, stdout and stderr are supported; amqplb logs to standard error)", target)
		return
	}
	if len(rest) == 0 {
		p.errorf(d.line, "log %s needs a facility (e.g. local0)", target)
		return
	}
	t := config.LogTarget{Address: addr, Facility: rest[0], Level: config.DefaultLogTargetLevel}
	if len(rest) > 1 {
		t.Level = rest[1]
	}
	if len(rest) > 2 {
		notes = append(notes, "minimum level "+rest[2]+" (every line up to the level is sent)")
	}
	if len(rest) > 3 {
		p.errorf(d.line, "log: unexpected %q after the level", strings.Join(rest[3:], " "))
		return
	}
	for _, n := range notes {
		p.warnf(d.line, "ignored: log option %s", n)
	}
	i := len(p.cfg.Global.Log)
	p.cfg.Global.Log = append(p.cfg.Global.Log, t)
	path := fmt.Sprintf("global.log.%d", i)
	p.setLine(path, d.line)
	for _, k := range []string{"address", "facility", "level"} {
		p.setLine(path+"."+k, d.line)
	}
}

// logTarget classifies an HAProxy log target; for a UDP syslog server it
// returns its host:port (port 514 by default), for a local syslog socket its
// absolute path.
func logTarget(t string) (kind, addr string) {
	switch t {
	case "global", "stdout", "stderr":
		return t, ""
	case "fd@1":
		return "stdout", ""
	case "fd@2":
		return "stderr", ""
	}
	if strings.HasPrefix(t, "/") {
		return "unix", t
	}
	if strings.HasPrefix(t, "unix@/") {
		return "unix", strings.TrimPrefix(t, "unix@")
	}
	if strings.Contains(t, "/") || strings.HasPrefix(t, "abns@") {
		return "other", "" // a relative socket path, an abstract socket
	}
	if i := strings.Index(t, "@"); i >= 0 {
		switch t[:i] {
		case "udp", "udp4", "udp6", "ipv4", "ipv6":
			t = t[i+1:]
		default:
			return "other", ""
		}
	}
	t = expandAddr(t)
	if a, err := netip.ParseAddr(strings.Trim(t, "[]")); err == nil {
		return "udp", net.JoinHostPort(a.String(), "514")
	}
	host, port := t, "514"
	if i := strings.LastIndexByte(t, ':'); i >= 0 {
		host, port = t[:i], t[i+1:]
	}
	return "udp", net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// inherited returns the settings a section starts from: the latest
// defaults, or the named one it says it is from.
func (p *hapParser) inherited(s *hapSection) proxyOpts {
	if s.from == "" {
		return p.defaults
	}
	o, ok := p.named[s.from]
	if !ok {
		p.errorf(s.line, "%s: defaults section %q is not defined before it", sectionName(s), s.from)
	}
	return o
}

func (p *hapParser) defaultsSection(s *hapSection) {
	o := proxyOpts{} // each defaults section starts afresh
	if s.from != "" {
		o = p.inherited(s)
	}
	px := &hapProxy{hapSection: s, opts: o}
	px.httpMode = sectionMode(s, o.mode.v) == "http"
	for _, d := range s.body {
		p.proxyDirective(px, d)
	}
	p.defaults = px.opts
	if s.name != "" {
		p.named[s.name] = px.opts
	}
}

// isStatsSection reports whether a section in mode http only serves
// HAProxy's stats page or Prometheus exporter: it has stats directives or
// the exporter, and no servers or backend to send connections to.
func isStatsSection(s *hapSection, mode string) bool {
	if mode != "http" || s.kind == "backend" {
		return false
	}
	stats := false
	for _, d := range s.body {
		switch d.args[0] {
		case "stats":
			stats = true
		case "http-request":
			if slices.Contains(d.args, "prometheus-exporter") {
				stats = true
			}
		case "server", "default_backend", "use_backend", "server-template", "dispatch":
			return false
		}
	}
	return stats
}

// sectionMode returns the mode of section s: its own mode line's, else
// inherited, the mode of its defaults.
func sectionMode(s *hapSection, inherited string) string {
	mode := inherited
	for _, d := range s.body {
		if d.args[0] == "mode" && len(d.args) > 1 {
			mode = d.args[1]
		}
	}
	return mode
}

func (p *hapParser) proxySection(s *hapSection) {
	for _, d := range s.body {
		if d.args[0] == "disabled" && len(d.args) == 1 {
			p.warnf(d.line, "ignored: section %s (disabled)", sectionName(s))
			s.skipped = true
			return
		}
	}
	px := &hapProxy{hapSection: s, opts: p.inherited(s), acls: map[string]*hapACL{}}
	px.front = s.kind != "backend"
	px.back = s.kind != "frontend"
	mode := sectionMode(s, px.opts.mode.v)
	if isStatsSection(s, mode) {
		p.statsSection(px)
		p.proxies = append(p.proxies, px)
		return
	}
	if s.addr != "" {
		p.bind(px, hapDirective{line: s.line, args: []string{"bind", s.addr}})
	}
	px.httpMode = mode == "http"
	for _, d := range s.body {
		p.proxyDirective(px, d)
	}
	if px.httpMode {
		p.modeHTTP(px)
	}
	p.proxies = append(p.proxies, px)
}

// proxyIgnored are the proxy keywords (and options, as "option X") that
// make no difference to amqplb, with why.
var proxyIgnored = map[string]string{
	"log-format": "amqplb writes its own access-log line", "log-format-sd": "amqplb writes its own access-log line",
	"error-log-format": "amqplb writes its own access-log line", "log-tag": "amqplb's syslog lines are tagged amqplb",
	"description": "amqplb's status page has its own text", "id": "amqplb names proxies, not numbers",
	"enabled": "sections are enabled unless disabled", "errorfile": "needs mode http", "errorloc": "needs mode http",
	"errorloc302": "needs mode http", "errorloc303": "needs mode http", "errorfiles": "needs mode http",
	"unique-id-format": "needs mode http", "unique-id-header": "needs mode http", "capture": "needs mode http",
	"monitor-uri": "needs mode http; amqplb serves /healthz on admin.listen", "monitor": "needs mode http",
	"compression": "needs mode http", "http-reuse": "needs mode http",
	"http-check": "amqplb does not check over HTTP", "http-request": "needs mode http", "http-response": "needs mode http",
	"http-after-response": "needs mode http", "http-error": "needs mode http", "email-alert": "amqplb sends no mail",
	"hash-type": "amqplb's source balancing has its own hash", "fullconn": "amqplb has no dynamic maxconn",
	"cookie": "needs mode http", "load-server-state-from-file": "servers start from the file's state",
	"max-keep-alive-queue": "needs mode http", "bind-process": "amqplb is one process", "backlog": tuning,
	"option tcplog":         "amqplb writes its own access-log line per session",
	"option httplog":        "needs mode http",
	"option dontlog-normal": "amqplb logs every session", "option log-separate-errors": "amqplb logs every session",
	"option log-health-checks": "amqplb logs server state changes", "option logasap": "amqplb logs a session when it ends",
	"option splice-auto": "amqplb always splices", "option splice-request": "amqplb always splices",
	"option splice-response": "amqplb always splices", "option tcp-smart-accept": tuning, "option tcp-smart-connect": tuning,
	"option nolinger": tuning, "option socket-stats": "amqplb counts per frontend and server",
	"option contstats": "amqplb counts bytes as they pass", "option independent-streams": "amqplb has one idle_timeout for both directions",
	"option http-server-close": "needs mode http", "option httpclose": "needs mode http",
	"option http-keep-alive": "needs mode http", "option forwardfor": "needs mode http",
	"option http-buffer-request": "needs mode http", "option forceclose": "needs mode http",
	"option http-pretend-keepalive": "needs mode http", "option http-no-delay": "needs mode http", "option originalto": "needs mode http",
	"option abortonclose": "amqplb has no queue", "option allbackups": "amqplb uses its backups when no other server is up",
	"option prefer-last-server": "needs mode http", "option persist": "persistence needs cookies (mode http)",
	"option checkcache": "needs mode http", "option http-use-htx": "needs mode http",
	"option http-ignore-probes": "needs mode http", "option accept-invalid-http-request": "needs mode http",
	"option accept-invalid-http-response": "needs mode http", "option disable-h2-upgrade": "needs mode http",
	"option idle-close-on-response": "needs mode http", "option http-restrict-req-hdr-names": "needs mode http",
	"option h1-case-adjust-bogus-client": "needs mode http", "option h1-case-adjust-bogus-server": "needs mode http",
	"option log-health-check": "amqplb logs server state changes", "option http-use-proxy-header": "needs mode http",
	"timeout queue": "amqplb has no queue: a connection finds a server or is refused", "timeout http-request": "needs mode http",
	"timeout http-keep-alive": "needs mode http", "timeout tarpit": "needs mode http",
	"tcp-request inspect-delay": "amqplb's rules look at the client address only, which needs no data",
	"clitcpka-idle":             "amqplb has one keepalive period, tcp_keepalive", "clitcpka-intvl": "amqplb has one keepalive period, tcp_keepalive",
	"clitcpka-cnt": "amqplb has one keepalive period, tcp_keepalive", "srvtcpka-idle": "amqplb has one keepalive period, tcp_keepalive",
	"srvtcpka-intvl": "amqplb has one keepalive period, tcp_keepalive", "srvtcpka-cnt": "amqplb has one keepalive period, tcp_keepalive",
}

// proxyRefused are the proxy keywords (and options) whose behaviour amqplb
// cannot give, with why.
var proxyRefused = map[string]string{
	"use-server":            "content switching is not supported",
	"tcp-response":          "response rules are not supported",
	"stick-table":           "stick tables are not supported (balance source gives affinity)",
	"stick":                 "stick tables are not supported (balance source gives affinity)",
	"stick-store":           "stick tables are not supported",
	"persist":               "persistence is not supported",
	"force-persist":         "persistence is not supported",
	"ignore-persist":        "persistence is not supported",
	"source":                "choosing the source address is not supported",
	"rate-limit":            "rate limits are not supported",
	"dispatch":              "not supported; use server lines",
	"filter":                "filters are not supported",
	"external-check":        "external checks are not supported",
	"declare":               "not supported",
	"redirect":              "needs mode http",
	"transparent":           "transparent proxying is not supported",
	"http-send-name-header": "needs mode http",

	"option transparent":    "transparent proxying is not supported",
	"option ssl-hello-chk":  "only AMQP and TCP checks are supported",
	"option mysql-check":    "only AMQP and TCP checks are supported",
	"option pgsql-check":    "only AMQP and TCP checks are supported",
	"option redis-check":    "only AMQP and TCP checks are supported",
	"option smtpchk":        "only AMQP and TCP checks are supported",
	"option ldap-check":     "only AMQP and TCP checks are supported",
	"option spop-check":     "only AMQP and TCP checks are supported",
	"option external-check": "only AMQP and TCP checks are supported",
}

// proxyDirective applies one directive of a defaults, listen, frontend or
// backend section to px.
func (p *hapParser) proxyDirective(px *hapProxy, d hapDirective) {
	o := &px.opts
	kw := d.args[0]
	isDefaults := px.kind == "defaults"
	// wrongSide reports a directive that only the other side of a proxy
	// uses; HAProxy ignores it with a warning too.
	wrongSide := func(needFront bool) bool {
		if isDefaults || needFront && px.front || !needFront && px.back {
			return false
		}
		side := "backends"
		if needFront {
			side = "frontends"
		}
		p.warnf(d.line, "ignored: %s in section %q (it applies to %s)", keyword(d), sectionName(px.hapSection), side)
		return true
	}
	switch kw {
	case "mode":
		if m, ok := p.arg(d, 1, "tcp or http"); ok && p.last(d, 1) {
			if m != "tcp" && m != "http" {
				p.errorf(d.line, "mode %s: expected tcp or http", m)
				return
			}
			o.mode = at(m, d.line)
		}
	case "bind":
		if isDefaults || !px.front {
			p.errorf(d.line, "bind is not allowed in section %q", sectionName(px.hapSection))
			return
		}
		p.bind(px, d)
	case "server":
		if isDefaults || !px.back {
			p.errorf(d.line, "server is not allowed in section %q", sectionName(px.hapSection))
			return
		}
		p.server(px, d)
	case "server-template":
		if isDefaults || !px.back {
			p.errorf(d.line, "server-template is not allowed in section %q", sectionName(px.hapSection))
			return
		}
		p.serverTemplate(px, d)
	case "default-server":
		if !isDefaults && !px.back {
			p.errorf(d.line, "default-server is not allowed in section %q", sectionName(px.hapSection))
			return
		}
		p.serverParams(&o.server, d, 1)
	case "default_backend":
		if !isDefaults && !px.front {
			p.errorf(d.line, "default_backend is not allowed in section %q", sectionName(px.hapSection))
			return
		}
		if b, ok := p.arg(d, 1, "a backend name"); ok && p.last(d, 1) {
			o.defaultBackend = at(b, d.line)
		}
	case "use_backend":
		if isDefaults || !px.front {
			p.errorf(d.line, "use_backend is not allowed in section %q", sectionName(px.hapSection))
			return
		}
		b, ok := p.arg(d, 1, "a backend name")
		if !ok {
			return
		}
		if len(d.args) > 2 {
			if r, ok := p.sniRoute(px, d, b, d.args[2:]); ok {
				px.sniRoutes = append(px.sniRoutes, r)
			}
			return
		}
		if px.useBackend.set() {
			p.warnf(d.line, "ignored: use_backend %s (use_backend %s, line %d, always applies before it)", b, px.useBackend.v, px.useBackend.line)
			return
		}
		px.useBackend = at(b, d.line)
	case "maxconn":
		if !wrongSide(true) {
			if n, ok := p.intArg(d, 1); ok {
				o.maxconn = n
			}
		}
	case "balance":
		if !wrongSide(false) {
			p.balance(o, d, px.httpMode)
		}
	case "retries":
		if !wrongSide(false) {
			if n, ok := p.intArg(d, 1); ok {
				o.retries = n
			}
		}
	case "contimeout", "clitimeout", "srvtimeout": // before HAProxy 1.5
		name := map[string]string{"contimeout": "connect", "clitimeout": "client", "srvtimeout": "server"}[kw]
		p.warnf(d.line, "%s is read as timeout %s (HAProxy 2.1+ rejects %s)", kw, name, kw)
		p.timeout(px, hapDirective{line: d.line, args: append([]string{"timeout", name}, d.args[1:]...)}, wrongSide)
	case "redispatch": // before HAProxy 1.5
		if !wrongSide(false) && p.last(d, 0) {
			p.warnf(d.line, "redispatch is read as option redispatch (HAProxy 2.1+ rejects redispatch)")
			o.redispatch = at(true, d.line)
		}
	case "timeout":
		p.timeout(px, d, wrongSide)
	case "option", "no", "default":
		if len(d.args) == 2 && d.args[0] == "no" && d.args[1] == "log" {
			p.ignored(d, "amqplb's access log is for every frontend: global.access_log")
			return
		}
		p.option(px, d, wrongSide)
	case "log":
		p.proxyLog(d)
	case "tcp-check":
		p.tcpCheckRule(px, d)
	case "http-check":
		p.httpCheckRule(px, d)
	case "acl":
		if isDefaults {
			p.errorf(d.line, "acl is not allowed in section %q", sectionName(px.hapSection))
			return
		}
		p.acl(px, d)
	case "tcp-request":
		p.tcpRequest(px, d)
	case "stats":
		if px.httpMode && !isDefaults {
			p.ignored(d, "amqplb serves its status page on admin.listen or a [[stats]] listener, not in a section whose servers get the requests")
		} else if isDefaults {
			p.ignored(d, "amqplb reads stats settings in the mode http section that serves the page")
		} else {
			p.ignored(d, "outside a mode http section HAProxy ignores it too")
		}
	default:
		k := keyword(d)
		if isHTTPOnly(k) && p.ignoredHTTP(px, d, k) || isHTTPOnly(kw) && p.ignoredHTTP(px, d, kw) {
			return
		}
		if why, ok := proxyRefused[k]; ok {
			p.errorf(d.line, "%s: %s", k, why)
		} else if why, ok := proxyIgnored[k]; ok {
			p.ignored(d, why)
		} else if why, ok := proxyIgnored[kw]; ok {
			p.ignored(d, why)
		} else if why, ok := proxyRefused[kw]; ok {
			p.errorf(d.line, "%s: %s", k, why)
		} else {
			p.unknown(d, px.hapSection)
		}
	}
}

// proxyLog handles log in a proxy: log global sends the proxy's lines to
// the global targets, which is what amqplb does.
func (p *hapParser) proxyLog(d hapDirective) {
	if len(d.args) == 2 && d.args[1] == "global" {
		return
	}
	p.ignored(d, "amqplb sends every line to standard error and the global log targets")
}

var hapBalances = []string{"roundrobin", "static-rr", "leastconn", "first", "source", "random"}

func (p *hapParser) balance(o *proxyOpts, d hapDirective, httpMode bool) {
	b, ok := p.arg(d, 1, "an algorithm")
	if !ok {
		return
	}
	if httpMode && (b == "uri" || b == "url_param" || strings.HasPrefix(b, "hdr(")) {
		// These hash what a request says; a mode http section served as TCP has no request
		// to read, and spreading its clients evenly is what remains.
		p.warnf(d.line, "balance %s is imported as roundrobin (amqplb reads no requests to hash)", b)
		o.balance = at("roundrobin", d.line)
		return
	}
	if len(d.args) > 2 {
		p.errorf(d.line, "balance %s: arguments (%s) are not supported", b, strings.Join(d.args[2:], " "))
		return
	}
	switch {
	case b == "static-rr":
		p.warnf(d.line, "balance static-rr is imported as roundrobin (weights changed at run time take effect at once)")
		b = "roundrobin"
	case strings.HasPrefix(b, "random(") && strings.HasSuffix(b, ")"):
		if draws := b[len("random(") : len(b)-1]; draws != "2" {
			p.warnf(d.line, "balance %s is imported as random, which draws 2 servers and takes the less loaded", b)
		}
		b = "random"
	case !slices.Contains(hapBalances, b):
		p.errorf(d.line, "balance %s is not supported; use one of %s", b, strings.Join(hapBalances, ", "))
		return
	}
	o.balance = at(b, d.line)
}

func (p *hapParser) timeout(px *hapProxy, d hapDirective, wrongSide func(bool) bool) {
	o := &px.opts
	which, ok := p.arg(d, 1, "a kind (connect, client, server...)")
	if !ok {
		return
	}
	var dst *val[time.Duration]
	front := false
	switch which {
	case "connect":
		dst = &o.connectTimeout
	case "client":
		dst, front = &o.clientTimeout, true
	case "server":
		dst = &o.serverTimeout
	case "tunnel":
		dst = &o.tunnelTimeout
	case "check":
		dst = &o.checkTimeout
	case "client-fin":
		dst, front = &o.clientFin, true
	case "server-fin":
		dst = &o.serverFin
	default:
		if k := "timeout " + which; isHTTPOnly(k) && p.ignoredHTTP(px, d, k) {
			return
		}
		if why, ok := proxyIgnored["timeout "+which]; ok {
			p.ignored(d, why)
		} else {
			p.errorf(d.line, "unknown timeout %q in section %q", which, sectionName(px.hapSection))
		}
		return
	}
	if wrongSide(front) {
		return
	}
	if t, ok := p.timeArg(d, 2, "timeout "+which); ok {
		*dst = t
	}
}

func (p *hapParser) option(px *hapProxy, d hapDirective, wrongSide func(bool) bool) {
	o := &px.opts
	args := d.args
	negate := args[0] == "no"
	if args[0] == "no" || args[0] == "default" {
		args = args[1:]
		if len(args) == 0 || args[0] != "option" {
			p.unknown(d, px.hapSection)
			return
		}
	}
	if len(args) < 2 {
		p.errorf(d.line, "option needs a name")
		return
	}
	name := args[1]
	reset := d.args[0] == "default"
	switch name {
	case "redispatch":
		if wrongSide(false) {
			return
		}
		if len(args) > 2 {
			p.warnf(d.line, "ignored: option redispatch %s (amqplb retries the same server once, then redispatches)", args[2])
		}
		o.redispatch = at(!negate, d.line)
		if reset {
			o.redispatch = val[bool]{}
		}
	case "tcpka", "clitcpka", "srvtcpka":
		switch {
		case reset:
			o.keepalive = val[time.Duration]{}
		case negate && name == "tcpka":
			o.keepalive = at(time.Duration(0), d.line)
		case negate:
			p.warnf(d.line, "ignored: no option %s (amqplb sets TCP keepalive on both sides alike; no option tcpka turns it off)", name)
		case !o.keepalive.set() || o.keepalive.v == 0:
			o.keepalive = at(config.DefaultTCPKeepalive, d.line)
		}
	case "tcp-check":
		if !wrongSide(false) {
			o.tcpCheck = at(!negate && !reset, d.line)
		}
	case "httpchk":
		if wrongSide(false) {
			return
		}
		o.httpCheck = at(!negate && !reset, d.line)
		if o.httpCheck.v {
			// On a bad line (reported) the request is HAProxy's default, so that nothing
			// more is said about it.
			o.httpReq = p.httpchk(d, args[2:])
		}
	case "dontlognull":
		if !wrongSide(true) {
			o.dontLogNull = at(!negate, d.line)
			if reset {
				o.dontLogNull = val[bool]{}
			}
		}
	default:
		k := "option " + name
		if !negate && isHTTPOnly(k) && p.ignoredHTTP(px, d, k) {
			return
		}
		if why, ok := proxyRefused[k]; ok {
			if !negate && !reset {
				p.errorf(d.line, "%s: %s", k, why)
			}
		} else if why, ok := proxyIgnored[k]; ok {
			p.ignored(d, why)
		} else {
			p.errorf(d.line, "unknown option %q in section %q", name, sectionName(px.hapSection))
		}
	}
}

// expandAddr expands $NAME and ${NAME} in an address from the
// environment, as HAProxy does in addresses even outside quotes.
func expandAddr(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	return os.Expand(s, os.Getenv)
}

// hapAddr turns an HAProxy address into host:port: "*:5672" and ":5672"
// become ":5672", an IPv6 address gets brackets, ipv4@/ipv6@/tcp@ prefixes
// go (ipv4@:5672 becomes 0.0.0.0:5672, ipv6@:5672 [::]:5672). An address
// without a port is returned as it is, for the caller to complete or
// report.
func hapAddr(s string) (string, error) {
	orig := s
	s = expandAddr(s)
	if s == "" {
		return "", fmt.Errorf("address %q is empty", orig)
	}
	family := ""
	if i := strings.Index(s, "@"); i >= 0 {
		switch family = strings.ToLower(s[:i]); family {
		case "ipv4", "ipv6", "tcp", "tcp4", "tcp6":
			s = s[i+1:]
		default:
			return "", fmt.Errorf("address %s: only TCP addresses are supported", orig)
		}
	}
	if strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("address %s: UNIX sockets are not supported", orig)
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.HasSuffix(s, "]") {
		return s, nil
	}
	host, port := s[:i], s[i+1:]
	if strings.ContainsAny(port, "-+") {
		return "", fmt.Errorf("address %s: port ranges and offsets are not supported", orig)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "*" {
		host = ""
	}
	if host == "" {
		switch family {
		case "ipv4", "tcp4":
			host = "0.0.0.0"
		case "ipv6", "tcp6":
			host = "::"
		}
	}
	return net.JoinHostPort(host, port), nil
}

// addrPort returns the port of a host:port, or 0.
func addrPort(a string) int {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	return n
}
