package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// haproxy.cfg import: a haproxy.cfg as RabbitMQ users write it is mapped to
// the Config its TOML equivalent would give, then validated like TOML, with
// every message naming the line of the directive it is about.
//
// Rules, so that a converted file surprises nobody:
//   - Whatever the file does not say gets amqplb's default, not HAProxy's
//     (HAProxy's are often not expressible, e.g. no connect timeout at all).
//     So an imported backend redispatches unless it says no option redispatch.
//   - A directive amqplb honours is mapped; one that makes no difference to a
//     layer-4 balancer (logging, process management, tuning) is ignored with
//     a warning; one that changes what reaches which broker and cannot be
//     honoured (ACL routing, rate limits, stick tables, mode http) is an
//     error. An unknown keyword is an error.
//   - mode tcp maps to frontend mode "tcp": HAProxy passes bytes through, so
//     does the import. Switch to "amqp" in the converted TOML to gate on the
//     AMQP 0-9-1 protocol header.
//   - listen NAME becomes a frontend and a backend both named NAME. A proxy
//     with several addresses (several bind lines or bind a,b) becomes one
//     frontend per address: the first is NAME, the next NAME-2, NAME-3...
//   - A section that only serves HAProxy's stats page or Prometheus exporter
//     (listen stats with mode http and stats enable) is skipped with one
//     warning: amqplb serves both on admin.listen.
//   - Health checks are per backend in amqplb: check on any server enables
//     an AMQP handshake check (option tcp-check: a TCP connect); the first
//     checked server's inter, fastinter, downinter, rise and fall apply, and
//     a server that disagrees is warned about.
//   - timeout client and timeout server become the backend's idle_timeout:
//     HAProxy closes a session when either side has been idle for its
//     timeout, amqplb when both have been for idle_timeout, so the smaller is
//     taken (warned when they differ). timeout tunnel, which HAProxy applies
//     instead of both once a TCP session is established, wins when set.
//   - A disabled server starts with weight 0 (amqplb has no maintenance at
//     start); the admin API can give it a weight.

// hapDirective is one non-blank line of a haproxy.cfg, split into words.
type hapDirective struct {
	line int
	args []string
}

// hapSection is a section header and the directives under it.
type hapSection struct {
	kind string // global, defaults, listen, frontend, backend
	name string
	from string // the named defaults section it inherits ("from NAME")
	line int
	body []hapDirective
}

// hapSections are the section keywords; the value is false for those whose
// content amqplb ignores entirely.
var hapSections = map[string]bool{
	"global": true, "defaults": true, "listen": true, "frontend": true, "backend": true,
	"userlist": false, "peers": false, "resolvers": false, "mailers": false, "cache": false,
	"http-errors": false, "ring": false, "program": false, "log-forward": false,
	"crt-store": false, "traces": false, "acme": false,
}

// val is a setting that a haproxy.cfg may write, with the line it was
// written on (0: not written).
type val[T any] struct {
	v    T
	line int
}

func (x val[T]) set() bool { return x.line > 0 }

func at[T any](v T, line int) val[T] { return val[T]{v: v, line: line} }

// proxyOpts are the settings a defaults section passes on to the proxies
// after it, and that a proxy may override.
type proxyOpts struct {
	mode           val[string]
	maxconn        val[int]
	balance        val[string]
	connectTimeout val[time.Duration]
	clientTimeout  val[time.Duration]
	serverTimeout  val[time.Duration]
	tunnelTimeout  val[time.Duration]
	checkTimeout   val[time.Duration]
	retries        val[int]
	redispatch     val[bool]
	keepalive      val[time.Duration]
	tcpCheck       val[bool]
	httpCheck      val[bool]
	defaultBackend val[string]
	server         serverOpts // default-server
}

// serverOpts are the settings of a server line, or of default-server.
type serverOpts struct {
	check, backup, disabled                val[bool]
	inter, fastinter, downinter, slowstart val[time.Duration]
	rise, fall, weight, maxconn            val[int]
	sendProxy, onMarkedDown                val[string]
}

type hapBind struct {
	addr        string // "" when it could not be parsed (reported)
	line        int
	tls         *TLS
	acceptProxy bool
	maxconn     val[int]
}

type hapServer struct {
	name, addr string
	line       int
	opts       serverOpts
}

// hapProxy is a listen, frontend or backend section being read.
type hapProxy struct {
	*hapSection
	front, back bool
	opts        proxyOpts
	binds       []hapBind
	servers     []hapServer
}

type hapParser struct {
	problems
	cfg      *Config
	lines    map[string]int
	bad      map[string]bool
	defaults proxyOpts
	named    map[string]proxyOpts
	crtBase  string
	proxies  []*hapProxy
	reported map[string]bool // errors about a defaults line, reported once
}

// parseHAProxy imports data written in haproxy.cfg syntax; file names the
// data in messages. Like Parse, it returns every problem found.
func parseHAProxy(file string, data []byte) (*Config, error) {
	p := &hapParser{
		problems: problems{file: file},
		cfg:      &Config{File: file},
		lines:    map[string]int{},
		bad:      map[string]bool{},
		named:    map[string]proxyOpts{},
		reported: map[string]bool{},
	}
	p.cfg.setDefaults()
	for _, s := range p.split(string(data)) {
		switch s.kind {
		case "global":
			for _, d := range s.body {
				p.global(d)
			}
		case "defaults":
			p.defaultsSection(s)
		default:
			p.proxySection(s)
		}
	}
	p.build()
	if len(p.cfg.Frontends) == 0 && len(p.errs) == 0 {
		p.errorf(0, "no listen or frontend section with a bind line: nothing to serve")
	}
	if len(p.cfg.Frontends) == 0 {
		p.bad["frontend"] = true // reported here, or its cause was
	}
	validate(p.cfg, &p.problems, p.lines, p.bad)
	if err := p.err(); err != nil {
		return nil, err
	}
	p.cfg.Warnings = p.warningStrings()
	return p.cfg, nil
}

// split cuts src into sections of words, reporting lines it cannot split
// and directives outside any section.
func (p *hapParser) split(src string) []*hapSection {
	var secs []*hapSection
	var cur *hapSection
	skipping := false
	for i, raw := range strings.Split(src, "\n") {
		n := i + 1
		args, err := splitWords(strings.TrimRight(raw, "\r"))
		if err != "" {
			p.errorf(n, "%s", err)
			continue
		}
		if len(args) == 0 {
			continue
		}
		kw := args[0]
		supported, isSection := hapSections[kw]
		if !isSection {
			switch {
			case skipping:
			case cur == nil:
				p.errorf(n, "%s is outside any section (start with global, defaults, listen, frontend or backend)", kw)
			default:
				cur.body = append(cur.body, hapDirective{line: n, args: args})
			}
			continue
		}
		if !supported {
			p.warnf(n, "ignored: section %s (amqplb has no use for it)", strings.Join(args, " "))
			cur, skipping = nil, true
			continue
		}
		skipping = false
		cur = &hapSection{kind: kw, line: n}
		rest := args[1:]
		if kw != "global" && len(rest) > 0 && rest[0] != "from" {
			cur.name, rest = rest[0], rest[1:]
		}
		if len(rest) >= 2 && rest[0] == "from" && kw != "global" {
			cur.from, rest = rest[1], rest[2:]
		}
		switch {
		case len(rest) > 0:
			p.errorf(n, "%s: unexpected %q after the section name", kw, strings.Join(rest, " "))
		case cur.name == "" && kw != "global" && kw != "defaults":
			p.errorf(n, "%s needs a name", kw)
			cur, skipping = nil, true // its lines would only add noise
			continue
		}
		secs = append(secs, cur)
	}
	return secs
}

// splitWords splits one line into words as HAProxy does: blanks separate
// words, # starts a comment, \ escapes the next character, '...' is
// literal, and "..." or a bare word expands ${NAME} from the environment
// (to nothing when NAME is unset, as HAProxy does).
func splitWords(s string) ([]string, string) {
	var args []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case quote == '"' && c == '"':
			quote = 0
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, "unterminated ${ in " + strconv.Quote(s[i:])
			}
			cur.WriteString(os.Getenv(s[i+2 : i+end]))
			i += end
			inWord = true
		case quote == '"':
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
			inWord = true
		case c == '#':
			i = len(s)
		case c == ' ' || c == '\t':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Sprintf("unmatched %c quote", quote)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, ""
}

// parseHAProxyTime reads an HAProxy time: a number with an optional unit,
// us, ms, s, m, h or d; a bare number is milliseconds.
func parseHAProxyTime(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	units := map[string]time.Duration{
		"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour,
	}
	unit, ok := units[s[i:]]
	if i == 0 || !ok {
		return 0, fmt.Errorf("invalid time %q (a number with an optional unit us, ms, s, m, h or d; a bare number is milliseconds)", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > int64(1<<63-1)/int64(unit) {
		return 0, fmt.Errorf("time %q is too large", s)
	}
	return time.Duration(n) * unit, nil
}

// sectionName names a section in messages: "listen rabbitmq", "global".
func sectionName(s *hapSection) string {
	if s.name == "" {
		return s.kind
	}
	return s.kind + " " + s.name
}

// keyword is a directive's keyword as messages name it: with its first
// argument for the families that have one (option, timeout, stats...).
func keyword(d hapDirective) string {
	args := d.args
	if args[0] == "no" || args[0] == "default" {
		args = args[1:]
	}
	if len(args) > 1 {
		switch args[0] {
		case "option", "timeout", "stats", "tcp-request", "tcp-response", "tcp-check", "http-request", "http-response", "http-check":
			return args[0] + " " + args[1]
		}
	}
	if len(args) == 0 {
		return d.args[0]
	}
	return args[0]
}

func (p *hapParser) ignored(d hapDirective, why string) {
	if why != "" {
		why = " (" + why + ")"
	}
	p.warnf(d.line, "ignored: %s%s", keyword(d), why)
}

func (p *hapParser) unknown(d hapDirective, s *hapSection) {
	p.errorf(d.line, "unknown keyword %q in section %q", d.args[0], sectionName(s))
}

// arg returns the i'th argument of d, reporting its absence.
func (p *hapParser) arg(d hapDirective, i int, what string) (string, bool) {
	if i < len(d.args) {
		return d.args[i], true
	}
	p.errorf(d.line, "%s needs %s", keyword(d), what)
	return "", false
}

// intArg reads the i'th argument of d, the last, as a number >= 0.
func (p *hapParser) intArg(d hapDirective, i int) (val[int], bool) {
	s, ok := p.arg(d, i, "a number")
	if !ok || !p.last(d, i) {
		return val[int]{}, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		p.errorf(d.line, "%s: invalid number %q (a whole number, 0 or more)", keyword(d), s)
		return val[int]{}, false
	}
	return at(n, d.line), true
}

// last reports whether the i'th argument is d's last, reporting the rest:
// "timeout connect 5 s" must not quietly mean 5ms.
func (p *hapParser) last(d hapDirective, i int) bool {
	if len(d.args) > i+1 {
		p.errorf(d.line, "%s: unexpected %q after %q", keyword(d), strings.Join(d.args[i+1:], " "), d.args[i])
		return false
	}
	return true
}

func (p *hapParser) timeArg(d hapDirective, i int, name string) (val[time.Duration], bool) {
	s, ok := p.arg(d, i, "a time")
	if !ok || !p.last(d, i) {
		return val[time.Duration]{}, false
	}
	t, err := parseHAProxyTime(s)
	if err != nil {
		p.errorf(d.line, "%s: %v", name, err)
		return val[time.Duration]{}, false
	}
	return at(t, d.line), true
}

// globalIgnored are the global keywords that make no difference to amqplb,
// with why; prefixes end in ".".
var globalIgnored = map[string]string{
	"daemon": "amqplb runs in the foreground", "master-worker": "", "nbproc": "", "nbthread": "Go schedules on every core",
	"thread-groups": "", "cpu-map": "", "numa-cpu-mapping": "", "chroot": "", "pidfile": "", "user": "", "group": "",
	"uid": "", "gid": "", "ulimit-n": "", "log": "amqplb logs to standard error", "log-tag": "", "log-send-hostname": "",
	"stats": "amqplb serves /metrics and its status page on admin.listen", "description": "", "node": "",
	"spread-checks": "", "maxsslconn": "", "maxpipes": "", "maxzlibmem": "", "quiet": "", "zero-warning": "",
	"noepoll": "", "nopoll": "", "nosplice": "", "nogetaddrinfo": "", "server-state-file": "", "server-state-base": "",
	"localpeer": "", "setenv": "", "presetenv": "", "unsetenv": "", "resetenv": "", "expose-experimental-directives": "",
	"insecure-fork-wanted": "", "busy-polling": "", "set-dumpable": "", "strict-limits": "", "ca-base": "",
	"ssl-server-verify": "", "ssl-dh-param-file": "", "ssl-load-extra-files": "", "issuers-chain-path": "",
	"h1-case-adjust": "", "h1-case-adjust-file": "", "grace": "", "external-check": "", "mworker-max-reloads": "",
	"tune.": "", "ssl-default-": "", "ssl-mode-async": "", "ssl-engine": "", "httpclient.": "", "profiling.": "",
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
	case "crt-base":
		if s, ok := p.arg(d, 1, "a directory"); ok && p.last(d, 1) {
			p.crtBase = s
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
	for _, d := range s.body {
		p.proxyDirective(px, d)
	}
	p.defaults = px.opts
	if s.name != "" {
		p.named[s.name] = px.opts
	}
}

// isMonitoring reports whether a section only serves HAProxy's stats page
// or Prometheus exporter: it has stats directives or the exporter, and no
// servers or backend to send connections to.
func isMonitoring(s *hapSection) bool {
	monitoring := false
	for _, d := range s.body {
		switch d.args[0] {
		case "stats":
			monitoring = true
		case "http-request":
			if slices.Contains(d.args, "prometheus-exporter") {
				monitoring = true
			}
		case "server", "default_backend", "use_backend", "server-template":
			return false
		}
	}
	return monitoring
}

func (p *hapParser) proxySection(s *hapSection) {
	if isMonitoring(s) {
		p.warnf(s.line, "ignored: section %s (HAProxy's stats page; amqplb serves /metrics and its status page on admin.listen, %s)",
			sectionName(s), p.cfg.Admin.Listen)
		return
	}
	for _, d := range s.body {
		if d.args[0] == "disabled" {
			p.warnf(d.line, "ignored: section %s (disabled)", sectionName(s))
			return
		}
	}
	px := &hapProxy{hapSection: s, opts: p.inherited(s)}
	px.front = s.kind != "backend"
	px.back = s.kind != "frontend"
	for _, d := range s.body {
		p.proxyDirective(px, d)
	}
	if m := px.opts.mode; m.set() && m.v != "tcp" {
		key := fmt.Sprintf("%d:mode", m.line)
		if !p.reported[key] {
			p.reported[key] = true
			p.errorf(m.line, "mode %s: amqplb is a layer-4 load balancer; only mode tcp is supported (%s)", m.v, sectionName(s))
		}
	}
	p.proxies = append(p.proxies, px)
}

// proxyIgnored are the proxy keywords (and options, as "option X") that
// make no difference to amqplb, with why.
var proxyIgnored = map[string]string{
	"log": "amqplb logs to standard error", "log-format": "", "log-format-sd": "", "error-log-format": "",
	"log-tag": "", "description": "", "id": "", "enabled": "", "errorfile": "", "errorloc": "", "errorloc302": "",
	"errorloc303": "", "errorfiles": "", "unique-id-format": "", "unique-id-header": "", "capture": "",
	"monitor-uri": "", "compression": "", "http-reuse": "", "http-check": "the check is an AMQP handshake",
	"http-request": "needs mode http", "http-response": "needs mode http", "http-after-response": "needs mode http",
	"http-error": "", "email-alert": "", "acl": "nothing uses it", "hash-type": "", "fullconn": "",
	"cookie": "needs mode http", "load-server-state-from-file": "", "max-keep-alive-queue": "",
	"stats":         "amqplb serves /metrics and its status page on admin.listen",
	"option tcplog": "amqplb logs one line per session", "option httplog": "needs mode http",
	"option dontlognull": "", "option dontlog-normal": "", "option log-separate-errors": "",
	"option log-health-checks": "", "option logasap": "", "option splice-auto": "amqplb always splices",
	"option splice-request": "amqplb always splices", "option splice-response": "amqplb always splices",
	"option tcp-smart-accept": "", "option tcp-smart-connect": "", "option nolinger": "",
	"option socket-stats": "", "option contstats": "", "option independent-streams": "",
	"option http-server-close": "needs mode http", "option httpclose": "needs mode http",
	"option http-keep-alive": "needs mode http", "option forwardfor": "needs mode http",
	"option http-buffer-request": "needs mode http", "option forceclose": "needs mode http",
	"option http-pretend-keepalive": "needs mode http", "option http-no-delay": "", "option originalto": "needs mode http",
	"option abortonclose": "", "option allbackups": "amqplb uses its backups when no other server is up",
	"option prefer-last-server": "", "option persist": "", "option checkcache": "", "option http-use-htx": "",
	"option http-ignore-probes": "", "option accept-invalid-http-request": "", "option accept-invalid-http-response": "",
	"option disable-h2-upgrade": "", "option idle-close-on-response": "", "option http-restrict-req-hdr-names": "",
	"timeout queue": "amqplb has no queue", "timeout http-request": "needs mode http",
	"timeout http-keep-alive": "needs mode http", "timeout tarpit": "",
	"timeout client-fin":        "amqplb bounds half-closed sessions itself",
	"timeout server-fin":        "amqplb bounds half-closed sessions itself",
	"tcp-request inspect-delay": "", "tcp-check comment": "",
	"clitcpka-idle": "amqplb has one keepalive period, tcp_keepalive", "clitcpka-intvl": "amqplb has one keepalive period, tcp_keepalive",
	"clitcpka-cnt": "", "srvtcpka-idle": "amqplb has one keepalive period, tcp_keepalive",
	"srvtcpka-intvl": "amqplb has one keepalive period, tcp_keepalive", "srvtcpka-cnt": "",
}

// proxyRefused are the proxy keywords (and options) whose behaviour amqplb
// cannot give, with why.
var proxyRefused = map[string]string{
	"use_backend":     "content switching is not supported; use default_backend",
	"use-server":      "content switching is not supported",
	"tcp-request":     "connection rules are not supported",
	"tcp-response":    "response rules are not supported",
	"stick-table":     "stick tables are not supported (balance source gives affinity)",
	"stick":           "stick tables are not supported (balance source gives affinity)",
	"stick-store":     "stick tables are not supported",
	"persist":         "persistence is not supported",
	"force-persist":   "persistence is not supported",
	"ignore-persist":  "persistence is not supported",
	"source":          "choosing the source address is not supported",
	"rate-limit":      "rate limits are not supported",
	"dispatch":        "not supported; use server lines",
	"server-template": "not supported; write one server line per broker",
	"filter":          "filters are not supported",
	"external-check":  "external checks are not supported",
	"tcp-check":       "custom check scripts are not supported (the check is an AMQP handshake, or with option tcp-check a TCP connect)",
	"declare":         "not supported",
	"redirect":        "needs mode http",
	"transparent":     "transparent proxying is not supported",

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
	case "maxconn":
		if !wrongSide(true) {
			if n, ok := p.intArg(d, 1); ok {
				o.maxconn = n
			}
		}
	case "balance":
		if !wrongSide(false) {
			p.balance(o, d)
		}
	case "retries":
		if !wrongSide(false) {
			if n, ok := p.intArg(d, 1); ok {
				o.retries = n
			}
		}
	case "contimeout", "clitimeout", "srvtimeout": // before HAProxy 1.5
		name := map[string]string{"contimeout": "connect", "clitimeout": "client", "srvtimeout": "server"}[kw]
		p.timeout(px, hapDirective{line: d.line, args: append([]string{"timeout", name}, d.args[1:]...)}, wrongSide)
	case "timeout":
		p.timeout(px, d, wrongSide)
	case "option", "no", "default":
		p.option(px, d, wrongSide)
	case "tcp-check":
		sub, _ := p.arg(d, 1, "an action")
		switch sub {
		case "connect":
			if len(d.args) > 2 {
				p.errorf(d.line, "tcp-check connect: options (%s) are not supported", strings.Join(d.args[2:], " "))
			}
		case "comment", "":
			if sub == "comment" {
				p.ignored(d, "")
			}
		default:
			p.errorf(d.line, "%s: %s", keyword(d), proxyRefused["tcp-check"])
		}
	default:
		k := keyword(d)
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

var hapBalances = []string{"roundrobin", "static-rr", "leastconn", "first", "source", "random"}

func (p *hapParser) balance(o *proxyOpts, d hapDirective) {
	b, ok := p.arg(d, 1, "an algorithm")
	if !ok {
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
	default:
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
			o.keepalive = at(DefaultTCPKeepalive, d.line)
		}
	case "tcp-check":
		if !wrongSide(false) {
			o.tcpCheck = at(!negate && !reset, d.line)
		}
	case "httpchk":
		if !wrongSide(false) {
			o.httpCheck = at(!negate && !reset, d.line)
		}
	default:
		k := "option " + name
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

// hapAddr turns an HAProxy address into host:port: "*:5672" and ":5672"
// become ":5672", an IPv6 address gets brackets, ipv4@/ipv6@/tcp@ prefixes
// go. An address without a port is returned as it is, for the validator to
// report.
func hapAddr(s string) (string, error) {
	if i := strings.Index(s, "@"); i >= 0 {
		switch strings.ToLower(s[:i]) {
		case "ipv4", "ipv6", "tcp", "tcp4", "tcp6":
			s = s[i+1:]
		default:
			return "", fmt.Errorf("address %s: only TCP addresses are supported", s)
		}
	}
	if strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("address %s: UNIX sockets are not supported", s)
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.HasSuffix(s, "]") {
		return s, nil
	}
	host, port := s[:i], s[i+1:]
	if strings.ContainsAny(port, "-+") {
		return "", fmt.Errorf("address %s: port ranges and offsets are not supported", s)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "*" {
		host = ""
	}
	return net.JoinHostPort(host, port), nil
}

// bindFlags are bind options that make no difference to amqplb (false) or
// that need an argument (true), skipped with a warning.
var bindIgnored = map[string]bool{
	"defer-accept": false, "tfo": false, "v4v6": false, "v6only": false, "no-sslv3": false, "no-tlsv10": false,
	"no-tlsv11": false, "no-tls-tickets": false, "strict-sni": false, "prefer-client-ciphers": false,
	"allow-0rtt": false, "no-ca-names": false, "ssl-min-ver": true, "ssl-max-ver": true, "ciphers": true,
	"ciphersuites": true, "curves": true, "ecdhe": true, "alpn": true, "npn": true, "sigalgs": true,
	"client-sigalgs": true, "tls-ticket-keys": true, "name": true, "id": true, "backlog": true, "process": true,
	"thread": true, "nice": true, "mss": true, "tcp-ut": true, "level": true, "severity-output": true,
	"user": true, "group": true, "uid": true, "gid": true, "mode": true,
}

func (p *hapParser) bind(px *hapProxy, d hapDirective) {
	spec, ok := p.arg(d, 1, "an address")
	if !ok {
		return
	}
	b := hapBind{line: d.line}
	var crts []string
	ssl := false
	bad := false
	for i := 2; i < len(d.args); i++ {
		opt := d.args[i]
		next := func() string {
			if i+1 < len(d.args) {
				i++
				return d.args[i]
			}
			p.errorf(d.line, "bind option %s needs an argument", opt)
			bad = true
			return ""
		}
		switch opt {
		case "ssl":
			ssl = true
		case "crt":
			crts = append(crts, next())
		case "accept-proxy":
			b.acceptProxy = true
		case "maxconn":
			n, err := strconv.Atoi(next())
			if err != nil || n < 0 {
				p.errorf(d.line, "bind option maxconn needs a whole number")
				bad = true
			}
			b.maxconn = at(n, d.line)
		case "verify":
			if v := next(); v != "none" {
				p.errorf(d.line, "TLS not supported in haproxy.cfg import: bind option verify %s (client certificates)", v)
				bad = true
			}
		case "ca-file", "crl-file", "crt-list", "ca-verify-file", "ca-sign-file", "generate-certificates":
			p.errorf(d.line, "TLS not supported in haproxy.cfg import: bind option %s", opt)
			bad = true
			if opt != "generate-certificates" {
				next()
			}
		default:
			if hasArg, ok := bindIgnored[opt]; ok {
				if hasArg {
					next()
				}
				p.warnf(d.line, "ignored: bind option %s", opt)
				continue
			}
			p.errorf(d.line, "bind option %s is not supported", opt)
			bad = true
		}
	}
	switch {
	case ssl && len(crts) == 1:
		cert := crts[0]
		if p.crtBase != "" && !filepath.IsAbs(cert) {
			cert = filepath.Join(p.crtBase, cert)
		}
		if st, err := os.Stat(cert); err == nil && st.IsDir() {
			p.errorf(d.line, "TLS not supported in haproxy.cfg import: crt %s is a directory", cert)
			bad = true
		}
		// HAProxy reads the key from the same PEM, or else from PEM.key.
		key := cert
		if _, err := os.Stat(cert + ".key"); err == nil {
			key = cert + ".key"
		}
		b.tls = &TLS{Cert: cert, Key: key}
	case ssl && len(crts) == 0:
		p.errorf(d.line, "bind %s ssl needs crt FILE", spec)
		bad = true
	case ssl:
		p.errorf(d.line, "TLS not supported in haproxy.cfg import: more than one crt")
		bad = true
	case len(crts) > 0:
		p.errorf(d.line, "bind %s has crt but not ssl", spec)
		bad = true
	}
	for _, a := range strings.Split(spec, ",") {
		nb := b
		addr, err := hapAddr(a)
		if err != nil {
			p.errorf(d.line, "bind %v", err)
			addr = ""
		} else if bad {
			addr = ""
		}
		nb.addr = addr
		px.binds = append(px.binds, nb)
	}
}

// serverIgnored are server options amqplb does without (false) or that take
// an argument (true), skipped with a warning; serverRefused are refused.
var (
	serverIgnored = map[string]bool{
		"port": true, "addr": true, "id": true, "cookie": true, "maxqueue": true, "minconn": true,
		"resolvers": true, "resolve-prefer": true, "resolve-opts": true, "resolve-net": true, "init-addr": true,
		"observe": true, "on-error": true, "error-limit": true, "on-marked-up": true, "pool-max-conn": true,
		"pool-purge-delay": true, "pool-low-conn": true, "max-reuse": true, "tcp-ut": true, "proto": true,
		"log-proto": true, "ws": true, "agent-inter": true, "agent-port": true, "agent-addr": true, "agent-send": true,
		"non-stick": false, "tfo": false, "no-ssl": false, "no-check-ssl": false, "check-send-proxy": false,
		"no-tls-tickets": false, "no-verifyhost": false, "allow-0rtt": false, "enabled": false, "no-agent-check": false,
	}
	serverRefused = map[string]string{
		"ssl": "TLS to servers is not supported", "check-ssl": "TLS to servers is not supported",
		"crt": "TLS to servers is not supported", "ca-file": "TLS to servers is not supported",
		"verify": "TLS to servers is not supported", "sni": "TLS to servers is not supported",
		"send-proxy-v2-ssl": "PROXY v2 TLS fields are not supported", "send-proxy-v2-ssl-cn": "PROXY v2 TLS fields are not supported",
		"proxy-v2-options": "PROXY v2 options are not supported", "agent-check": "agent checks are not supported",
		"track": "tracking another server's checks is not supported", "redir": "needs mode http",
		"source": "choosing the source address is not supported", "usesrc": "choosing the source address is not supported",
		"namespace": "network namespaces are not supported",
	}
	serverRefusedArg = map[string]bool{
		"crt": true, "ca-file": true, "verify": true, "sni": true, "proxy-v2-options": true, "agent-check": false,
		"track": true, "redir": true, "source": true, "usesrc": true, "namespace": true,
	}
)

// serverParams applies the options of a server or default-server line,
// from args[from] on, to o.
func (p *hapParser) serverParams(o *serverOpts, d hapDirective, from int) {
	for i := from; i < len(d.args); i++ {
		opt := d.args[i]
		next := func() (string, bool) {
			if i+1 < len(d.args) {
				i++
				return d.args[i], true
			}
			p.errorf(d.line, "server option %s needs an argument", opt)
			return "", false
		}
		num := func(dst *val[int]) {
			if s, ok := next(); ok {
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					p.errorf(d.line, "server option %s: invalid number %q", opt, s)
					return
				}
				*dst = at(n, d.line)
			}
		}
		dur := func(dst *val[time.Duration]) {
			if s, ok := next(); ok {
				t, err := parseHAProxyTime(s)
				if err != nil {
					p.errorf(d.line, "server option %s: %v", opt, err)
					return
				}
				*dst = at(t, d.line)
			}
		}
		switch opt {
		case "check":
			o.check = at(true, d.line)
		case "no-check":
			o.check = at(false, d.line)
		case "backup":
			o.backup = at(true, d.line)
		case "no-backup":
			o.backup = at(false, d.line)
		case "disabled":
			o.disabled = at(true, d.line)
		case "send-proxy":
			o.sendProxy = at("v1", d.line)
		case "send-proxy-v2":
			o.sendProxy = at("v2", d.line)
		case "no-send-proxy", "no-send-proxy-v2":
			o.sendProxy = at("", d.line)
		case "inter":
			dur(&o.inter)
		case "fastinter":
			dur(&o.fastinter)
		case "downinter":
			dur(&o.downinter)
		case "slowstart":
			dur(&o.slowstart)
		case "rise":
			num(&o.rise)
		case "fall":
			num(&o.fall)
		case "weight":
			num(&o.weight)
		case "maxconn":
			num(&o.maxconn)
		case "on-marked-down":
			if s, ok := next(); ok {
				if s != "shutdown-sessions" {
					p.errorf(d.line, "server option on-marked-down %s is not supported; use shutdown-sessions", s)
					continue
				}
				o.onMarkedDown = at(s, d.line)
			}
		default:
			if why, ok := serverRefused[opt]; ok {
				p.errorf(d.line, "server option %s: %s", opt, why)
				if serverRefusedArg[opt] {
					next()
				}
				continue
			}
			hasArg, ok := serverIgnored[opt]
			if !ok {
				p.errorf(d.line, "unknown server option %q", opt)
				continue
			}
			why := ""
			switch opt {
			case "port", "addr":
				why = " (the check connects to the server's own address)"
			case "resolvers", "init-addr":
				why = " (amqplb re-resolves host names itself)"
			}
			if hasArg {
				if _, ok := next(); !ok {
					continue
				}
			}
			p.warnf(d.line, "ignored: server option %s%s", opt, why)
		}
	}
}

func (p *hapParser) server(px *hapProxy, d hapDirective) {
	name, ok := p.arg(d, 1, "a name and an address")
	if !ok {
		return
	}
	addr, ok := p.arg(d, 2, "an address")
	if !ok {
		return
	}
	s := hapServer{name: name, line: d.line, opts: px.opts.server}
	a, err := hapAddr(addr)
	if err != nil {
		p.errorf(d.line, "server %s: %v", name, err)
	}
	s.addr = a
	p.serverParams(&s.opts, d, 3)
	px.servers = append(px.servers, s)
}

func (p *hapParser) setLine(path string, line int) {
	if line > 0 {
		p.lines[path] = line
	}
}

// hapUse is a frontend sending to a backend, for the backend's idle timeout.
type hapUse struct {
	client val[time.Duration]
}

// build turns the proxies read into frontends and backends.
func (p *hapParser) build() {
	c := p.cfg
	uses := map[string][]hapUse{} // backend name → the frontends sending to it
	for _, px := range p.proxies {
		if !px.front {
			continue
		}
		backend := at(px.name, px.line)
		if px.opts.defaultBackend.set() {
			backend = px.opts.defaultBackend
		} else if !px.back {
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
		uses[backend.v] = append(uses[backend.v], hapUse{px.opts.clientTimeout})
		if len(px.binds) > 1 && px.opts.maxconn.set() && px.opts.maxconn.v > 0 {
			p.warnf(px.opts.maxconn.line, "%s: maxconn %d now applies to each of its %d addresses, which become separate frontends",
				sectionName(px.hapSection), px.opts.maxconn.v, len(px.binds))
		}
		for k, b := range px.binds {
			i := len(c.Frontends)
			path := fmt.Sprintf("frontend.%d", i)
			f := DefaultFrontend()
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
			f.Bind = b.addr
			if b.addr == "" {
				p.bad[path+".bind"] = true
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
			f.TLS = b.tls
			p.setLine(path+".tls", b.line)
			f.AcceptProxy = b.acceptProxy
			c.Frontends = append(c.Frontends, f)
		}
	}
	for _, px := range p.proxies {
		if !px.back || px.kind == "listen" && len(px.servers) == 0 && px.opts.defaultBackend.set() {
			continue
		}
		p.backend(px, uses[px.name])
	}
}

// backend adds the backend of px; clients are the client timeouts of the
// frontends that use it.
func (p *hapParser) backend(px *hapProxy, clients []hapUse) {
	i := len(p.cfg.Backends)
	path := fmt.Sprintf("backend.%d", i)
	label := fmt.Sprintf("backend %q", px.name)
	o := px.opts
	b := DefaultBackend()
	b.Name = px.name
	p.setLine(path, px.line)
	p.setLine(path+".name", px.line)
	if o.balance.set() {
		b.Balance = o.balance.v
		p.setLine(path+".balance", o.balance.line)
	}
	if o.connectTimeout.set() {
		b.ConnectTimeout = o.connectTimeout.v
		p.setLine(path+".connect_timeout", o.connectTimeout.line)
	}
	if o.retries.set() {
		b.Retries = o.retries.v
		p.setLine(path+".retries", o.retries.line)
	}
	if o.redispatch.set() {
		b.Redispatch = o.redispatch.v
		p.setLine(path+".redispatch", o.redispatch.line)
	}
	if o.keepalive.set() {
		b.TCPKeepalive = o.keepalive.v
		p.setLine(path+".tcp_keepalive", o.keepalive.line)
	}

	// Idle timeout: tunnel if set, else the smallest of the server timeout
	// and the client timeouts of the frontends using this backend.
	if t := o.tunnelTimeout; t.set() {
		b.IdleTimeout = t.v
		p.setLine(path+".idle_timeout", t.line)
	} else {
		type cand struct {
			name string
			t    val[time.Duration]
		}
		var cands []cand
		if o.serverTimeout.set() {
			cands = append(cands, cand{"timeout server", o.serverTimeout})
		}
		for _, u := range clients {
			if u.client.set() && !slices.ContainsFunc(cands, func(c cand) bool { return c.t == u.client }) {
				cands = append(cands, cand{"timeout client", u.client})
			}
		}
		if len(cands) > 0 {
			least := cands[0]
			for _, c := range cands[1:] {
				if c.t.v < least.t.v {
					least = c
				}
			}
			b.IdleTimeout = least.t.v
			p.setLine(path+".idle_timeout", least.t.line)
			for _, c := range cands {
				if c.t.v != least.t.v {
					p.warnf(c.t.line, "%s: %s %s is not used: amqplb has one idle_timeout per backend (no traffic either way) and takes the smaller of timeout client and timeout server, %s (line %d)",
						label, c.name, formatDuration(c.t.v), formatDuration(least.t.v), least.t.line)
				}
			}
		}
	}

	// Per-server settings that amqplb has per backend: the first server's
	// (the first checked server's for the checks) apply.
	first := func(pick func(serverOpts) bool) *hapServer {
		for k := range px.servers {
			if pick(px.servers[k].opts) {
				return &px.servers[k]
			}
		}
		return nil
	}
	firstChecked := first(func(s serverOpts) bool { return s.check.v })
	if firstChecked == nil {
		b.HealthCheck.Type = "none"
		if o.tcpCheck.v || o.httpCheck.v {
			l := max(o.tcpCheck.line, o.httpCheck.line)
			p.warnf(l, "%s: no server has check, so servers are not checked", label)
		}
	} else {
		h := &b.HealthCheck
		hp := path + ".health_check"
		p.setLine(hp+".type", firstChecked.line)
		switch {
		case o.tcpCheck.v:
			h.Type = "tcp"
			p.setLine(hp+".type", o.tcpCheck.line)
		case o.httpCheck.v:
			p.warnf(o.httpCheck.line, "%s: option httpchk is replaced by amqplb's AMQP handshake check", label)
		}
		if o.checkTimeout.set() {
			h.Timeout = o.checkTimeout.v
			p.setLine(hp+".timeout", o.checkTimeout.line)
		}
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
				agree(p, label, s, firstChecked, f.opt, f.get(s.opts), f.get(fo), formatDuration)
			}
			agree(p, label, s, firstChecked, "rise", s.opts.rise, fo.rise, strconv.Itoa)
			agree(p, label, s, firstChecked, "fall", s.opts.fall, fo.fall, strconv.Itoa)
		}
	}

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
		if v := s0.opts.slowstart; v.set() {
			b.Slowstart = v.v
			p.setLine(path+".slowstart", v.line)
		}
		for _, s := range px.servers[1:] {
			if s.opts.sendProxy.v != s0.opts.sendProxy.v {
				// A PROXY header to a server that does not expect one breaks
				// every connection: not something to guess.
				p.errorf(s.line, "%s: server %q and server %q (line %d) differ in send-proxy; amqplb sets send_proxy per backend",
					label, s.name, s0.name, s0.line)
			}
			agree(p, label, &s, &s0, "on-marked-down", s.opts.onMarkedDown, s0.opts.onMarkedDown, func(s string) string { return s })
			agree(p, label, &s, &s0, "slowstart", s.opts.slowstart, s0.opts.slowstart, formatDuration)
		}
	}

	for j, s := range px.servers {
		sp := fmt.Sprintf("%s.server.%d", path, j)
		sv := DefaultServer()
		sv.Name, sv.Address = s.name, s.addr
		p.setLine(sp, s.line)
		p.setLine(sp+".name", s.line)
		p.setLine(sp+".address", s.line)
		if s.addr == "" {
			p.bad[sp+".address"] = true
		}
		if s.opts.weight.set() {
			sv.Weight = s.opts.weight.v
			p.setLine(sp+".weight", s.opts.weight.line)
		}
		if s.opts.disabled.v {
			sv.Weight = 0
			p.warnf(s.opts.disabled.line, "%s: server %q is disabled: it starts with weight 0 (amqplb has no maintenance at start; give it a weight over the admin API)", label, s.name)
		}
		sv.Backup = s.opts.backup.v
		if s.opts.maxconn.set() {
			sv.MaxConnections = s.opts.maxconn.v
			p.setLine(sp+".max_connections", s.opts.maxconn.line)
		}
		b.Servers = append(b.Servers, sv)
	}
	p.cfg.Backends = append(p.cfg.Backends, b)
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
