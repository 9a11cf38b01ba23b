package haproxycfg

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/amqplb/amqplb/config"
)

// haproxy.cfg import: a haproxy.cfg as RabbitMQ users write it is mapped to
// the Config its TOML equivalent would give, then validated like TOML, with
// every message naming the line of the directive it is about. amqplb
// convert prints that TOML (Convert).
//
// Rules, so that a converted file surprises nobody:
//   - Whatever the file does not say gets amqplb's default, not HAProxy's
//     (HAProxy's are often not expressible, e.g. no connect timeout at all).
//     So an imported backend redispatches unless it says no option redispatch.
//   - A directive amqplb honours is mapped; one that makes no difference to a
//     layer-4 balancer (process management, tuning, log formats) is ignored
//     with a warning saying why; one that changes what reaches which broker
//     and cannot be honoured (content switching, rate limits, stick tables)
//     is an error. An unknown keyword is
//     an error. Forms HAProxy 2.x itself rejects but that RabbitMQ guides
//     still show (listen NAME ADDR:PORT, contimeout/clitimeout/srvtimeout,
//     redispatch, timeouts over 24.8 days, nbproc) are accepted with a
//     warning that HAProxy would refuse them.
//   - mode tcp maps to frontend mode "tcp": HAProxy passes bytes through, so
//     does the import. Switch to "amqp" in the converted TOML to gate on the
//     AMQP 0-9-1 protocol header.
//   - mode http outside a stats section (the management UI) maps to mode
//     "tcp" too, with a warning: the section's HTTP-only directives are
//     ignored, each with a warning saying what is lost (see haproxy_http.go),
//     and option httpchk with http-check send/expect becomes the http check,
//     as it does on any backend that does not serve AMQP.
//   - listen NAME becomes a frontend and a backend both named NAME. A proxy
//     with several addresses (several bind lines or bind a,b) becomes one
//     frontend per address: the first is NAME, the next NAME-2, NAME-3...
//     bind ... ssl crt FILE|DIR [ca-file F] [verify V] becomes the
//     frontend's tls; accept-proxy its accept_proxy.
//   - acl NAME src ADDR... and tcp-request connection|session|content
//     accept|reject [if|unless COND] become the frontend's acl and
//     tcp_request (content rules are applied when the connection is
//     accepted: with source-address ACLs the result is the same). An ACL on
//     anything but src is an error only when a rule uses it.
//   - A section in mode http that only serves HAProxy's stats page (stats
//     enable, uri, auth, realm, refresh, hide-version) or its Prometheus
//     exporter (http-request use-service prometheus-exporter if { path P })
//     becomes a [[stats]] listener serving amqplb's status page and metrics.
//     When such a listener (or a frontend) takes the port of admin.listen,
//     the admin server is turned off, with a warning.
//   - Health checks are per backend in amqplb; the first checked server's
//     inter, fastinter, downinter, rise and fall apply, and a server that
//     disagrees is warned about. A plain check is HAProxy's TCP connect,
//     except on a backend that serves AMQP (a server on port 5672 or 5671,
//     or a frontend binding one of them): there it is upgraded on purpose
//     to amqp-probe (protocol header, then Connection.Start), which takes
//     out brokers that accept connections but do not answer, with a warning
//     saying how to keep the TCP check (option tcp-check without steps). A
//     full AMQP login ("amqp") needs credentials a haproxy.cfg does not have.
//     option tcp-check with tcp-check send/expect steps becomes type "tcp"
//     with those steps, except that the usual AMQP recipe (send the 0-9-1
//     protocol header, expect anything) becomes amqp-probe.
//   - timeout client and timeout server become the backend's idle_timeout:
//     HAProxy closes a session when either side has been idle for its
//     timeout, amqplb when both have been for idle_timeout, so the smaller is
//     taken (warned when they differ). timeout tunnel, which HAProxy applies
//     instead of both once a TCP session is established, wins when set.
//     timeout client-fin and server-fin become half_close_timeout likewise.
//   - Server options that amqplb has per backend (send-proxy, on-marked-down,
//     on-marked-up, slowstart) are taken from the first server; ssl, verify,
//     ca-file, sni str(NAME), crt and port are per server.
//   - A disabled server starts with weight 0 (amqplb has no maintenance at
//     start); the admin API can give it a weight.

// hapDirective is one non-blank line of a haproxy.cfg, split into words.
type hapDirective struct {
	line int
	args []string
}

// hapSection is a section header and the directives under it.
type hapSection struct {
	kind    string // global, defaults, listen, frontend, backend
	name    string
	from    string // the named defaults section it inherits ("from NAME")
	line    int
	end     int    // last line of the section
	addr    string // listen NAME ADDR (before HAProxy 1.5)
	body    []hapDirective
	skipped bool // a section amqplb has no use for
}

// hapSections are the section keywords; the value is false for those whose
// content amqplb ignores entirely.
var hapSections = map[string]bool{
	"global": true, "defaults": true, "listen": true, "frontend": true, "backend": true,
	"userlist": false, "peers": false, "resolvers": true, "mailers": false, "cache": false,
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
	clientFin      val[time.Duration]
	serverFin      val[time.Duration]
	checkTimeout   val[time.Duration]
	retries        val[int]
	redispatch     val[bool]
	keepalive      val[time.Duration]
	tcpCheck       val[bool]
	httpCheck      val[bool]
	httpReq        hapHTTPReq // option httpchk's request
	httpRules      []hapHTTPRule
	dontLogNull    val[bool]
	defaultBackend val[string]
	checkSteps     []hapStep  // tcp-check rules
	server         serverOpts // default-server
}

// serverOpts are the settings of a server line, or of default-server.
type serverOpts struct {
	check, backup, disabled                val[bool]
	inter, fastinter, downinter, slowstart val[time.Duration]
	rise, fall, weight, maxconn, checkPort val[int]
	sendProxy, onMarkedDown, onMarkedUp    val[string]
	ssl, checkSSL, checkSendProxy          val[bool]
	verify, caFile, sni, verifyHost, crt   val[string]
	// checkAddr is addr: amqplb ignores the address, but as with port,
	// checks then do not take the server's ssl and send-proxy.
	checkAddr val[string]
	// agent-check and its settings.
	agentCheck           val[bool]
	agentPort            val[int]
	agentInter           val[time.Duration]
	agentAddr, agentSend val[string]
}

type hapBind struct {
	addr        string // "" when it could not be parsed (reported)
	line        int
	tls         *config.TLS
	acceptProxy bool
	maxconn     val[int]
}

type hapServer struct {
	name, addr string
	line       int
	opts       serverOpts
	// tmpl is set for a server-template line: name is its prefix.
	tmpl *hapTemplate
	// portLine is the line of the port option of the server line or its
	// default-server, 0 without one (a tcp-check connect port, which
	// checks copies to opts.checkPort, is not one).
	portLine int
}

// hapProxy is a listen, frontend or backend section being read.
type hapProxy struct {
	*hapSection
	front, back bool
	stats       *hapStats // set for a stats or exporter section
	opts        proxyOpts
	ownSteps    bool // tcp-check rules written in this section
	// ownHTTPRules: http-check rules written in this section.
	ownHTTPRules bool
	// httpMode: the section is in mode http (and is not a stats section).
	httpMode bool
	// connect is the tcp-check connect rule that checks start with, when
	// the checks are a tcp-check script that has one (set by checks).
	connect  *hapStep
	binds    []hapBind
	servers  []hapServer
	acls     map[string]*hapACL
	aclOrder []string
	rules    []hapRule
	// The tcp-request content rules of a backend section (not a listen), compiled with its
	// ACLs, and their lines.
	backACL       map[string][]string
	backRules     []config.TCPRule
	backRuleLines []int
	useBackend    val[string]
	sniRoutes     []hapSNIRoute      // use_backend B if { req_ssl_sni … }
	inspectDelay  val[time.Duration] // tcp-request inspect-delay
}

type hapParser struct {
	problems
	cfg      *config.Config
	lines    map[string]int
	bad      map[string]bool
	defaults proxyOpts
	named    map[string]proxyOpts
	crtBase  string
	caBase   string
	// serverVerify is global ssl-server-verify: the verify of servers
	// that do not say.
	serverVerify val[string]
	sections     []*hapSection
	proxies      []*hapProxy
	reported     map[string]bool // errors about a defaults line, reported once
	// resolvers are the resolvers sections, by name.
	resolvers map[string]*hapResolvers
	// owners maps a table path of the Config (frontend.0, backend.1,
	// stats.0) to the section it comes from, for Convert.
	owners map[string]*hapSection
}

// parseHAProxy imports data written in haproxy.cfg syntax; file names the
// data in messages. Like config.Parse, it returns every problem found.
func parseHAProxy(file string, data []byte) (*config.Config, *config.Lines, error) {
	p := importHAProxy(file, data)
	if err := p.err(); err != nil {
		return nil, nil, err
	}
	p.cfg.Warnings = p.warningStrings()
	return p.cfg, config.NewLines(p.lines), nil
}

// haproxyStatsURI is where HAProxy serves its stats page when stats is
// enabled without a stats uri; the import keeps it.
const haproxyStatsURI = "/haproxy?stats"

// nothingToServe is the one error about a haproxy.cfg that has no line: the
// file has no section that accepts connections.
const nothingToServe = "no listen or frontend section with a bind line: nothing to serve"

// importHAProxy reads and validates data, keeping what it found for
// Convert.
func importHAProxy(file string, data []byte) *hapParser {
	p := &hapParser{
		problems: problems{file: file},
		cfg:      config.DefaultConfig(),
		lines:    map[string]int{},
		bad:      map[string]bool{},
		named:    map[string]proxyOpts{},
		reported: map[string]bool{},
		owners:   map[string]*hapSection{},
	}
	p.cfg.File = file
	p.sections = p.split(string(data))
	for _, s := range p.sections {
		switch {
		case s.skipped:
		case s.kind == "global":
			for _, d := range s.body {
				p.global(d)
			}
		case s.kind == "defaults":
			p.defaultsSection(s)
		case s.kind == "resolvers":
			p.resolversSection(s)
		default:
			p.proxySection(s)
		}
	}
	p.build()
	p.checkText(reflect.ValueOf(p.cfg).Elem(), "")
	if len(p.cfg.Frontends) == 0 && len(p.errs) == 0 {
		p.errorf(0, "%s", nothingToServe)
	}
	if len(p.cfg.Frontends) == 0 {
		p.bad["frontend"] = true // reported here, or its cause was
	}
	errs, warnings := config.Validate(p.cfg, config.NewLines(p.lines), p.bad)
	p.errs = append(p.errs, errs...)
	p.warnings = append(p.warnings, warnings...)
	return p
}

// checkText reports the strings of the Config that are not UTF-8 text,
// which TOML cannot hold (HAProxy takes any bytes). v is at path (see
// config.Lines.Of).
func (p *hapParser) checkText(v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.String:
		if !utf8.ValidString(v.String()) {
			p.bad[path] = true
			p.errorf(p.lineOf(path), "%q is not UTF-8 text", v.String())
		}
	case reflect.Pointer:
		if !v.IsNil() {
			p.checkText(v.Elem(), path)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if name != "" && name != "-" {
				p.checkText(v.Field(i), join(path, name))
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			p.checkText(v.Index(i), join(path, strconv.Itoa(i)))
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key().String()
			if !utf8.ValidString(k) {
				p.errorf(p.lineOf(path), "%q is not UTF-8 text", k)
			}
			p.checkText(iter.Value(), join(path, k))
		}
	}
}

// split cuts src into sections of words, reporting lines it cannot split
// and directives outside any section.
func (p *hapParser) split(src string) []*hapSection {
	var secs []*hapSection
	var cur *hapSection
	skipping := false
	lines := strings.Split(src, "\n")
	for i, raw := range lines {
		n := i + 1
		args, err := splitWords(raw)
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
			if cur != nil {
				cur.end = n
			}
			continue
		}
		cur = &hapSection{kind: kw, line: n, end: n}
		secs = append(secs, cur)
		if !supported {
			cur.name = strings.Join(args[1:], " ")
			cur.skipped = true
			p.warnf(n, "ignored: section %s (amqplb has no use for it)", strings.Join(args, " "))
			skipping = true
			continue
		}
		skipping = false
		rest := args[1:]
		if kw != "global" && len(rest) > 0 && rest[0] != "from" {
			cur.name, rest = rest[0], rest[1:]
		}
		if len(rest) >= 2 && rest[0] == "from" && kw != "global" {
			cur.from, rest = rest[1], rest[2:]
		}
		if len(rest) == 1 && (kw == "listen" || kw == "frontend") && cur.name != "" {
			// listen NAME ADDR:PORT, from before HAProxy 1.5.
			cur.addr, rest = rest[0], nil
			p.warnf(n, "%s %s %s: the address is read as bind %s (HAProxy 2.x rejects an address on the section line)", kw, cur.name, cur.addr, cur.addr)
		}
		switch {
		case len(rest) > 0:
			p.errorf(n, "%s: unexpected %q after the section name", kw, strings.Join(rest, " "))
		case cur.name == "" && kw != "global" && kw != "defaults":
			p.errorf(n, "%s needs a name", kw)
			cur.skipped, skipping = true, true // its lines would only add noise
		}
	}
	return secs
}

// splitWords splits one line into words as HAProxy 2.6 does: blanks
// separate words, # starts a comment, '...' is literal, and outside single
// quotes a backslash escapes a blank, #, \, ' and ", and writes \r, \n, \t
// and \xHH as the bytes they name (any other backslash stays). Inside
// "...", $NAME, ${NAME} and ${NAME-default} expand from the environment
// (to nothing when NAME is unset, as HAProxy does). A carriage return or a
// NUL ends the line.
func splitWords(s string) ([]string, string) {
	if i := strings.IndexAny(s, "\r\x00"); i >= 0 {
		s = s[:i]
	}
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
		case c == '\\':
			inWord = true
			next := byte(0)
			if i+1 < len(s) {
				next = s[i+1]
			}
			switch next {
			case ' ', '\\', '#', '\'', '"':
				cur.WriteByte(next)
				i++
			case 'r':
				cur.WriteByte('\r')
				i++
			case 'n':
				cur.WriteByte('\n')
				i++
			case 't':
				cur.WriteByte('\t')
				i++
			case '$':
				// Only inside "..." where $ would expand; elsewhere the
				// backslash stays.
				if quote == '"' {
					cur.WriteByte('$')
					i++
				} else {
					cur.WriteByte('\\')
				}
			case 'x':
				if i+3 >= len(s) || !isHex(s[i+2]) || !isHex(s[i+3]) {
					return nil, "invalid \\x escape in " + strconv.Quote(s[i:]) + ` (write \xHH, two hex digits)`
				}
				b, _ := strconv.ParseUint(s[i+2:i+4], 16, 8)
				cur.WriteByte(byte(b))
				i += 3
			default:
				cur.WriteByte('\\')
			}
		case quote == '"' && c == '"':
			quote = 0
		case quote == '"' && c == '$':
			val, n, err := expandVar(s[i:])
			if err != "" {
				return nil, err
			}
			cur.WriteString(val)
			i += n - 1
			inWord = true
		case quote == '"':
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
			inWord = true
		case c == '#':
			i = len(s)
		case c == ' ' || c == '\t' || c == '\v' || c == '\f':
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

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// expandVar expands the variable at the start of s ("$NAME", "${NAME}",
// "${NAME-default}"), returning its value and the bytes it took.
func expandVar(s string) (string, int, string) {
	i := 1
	brace := i < len(s) && s[i] == '{'
	if brace {
		i++
	}
	start := i
	if i >= len(s) || !(s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
		if i < len(s) && s[i] == '.' {
			return "", 0, "HAProxy's pseudo-variables (${.FILE}, ${.LINE}...) are not supported"
		}
		return "", 0, "invalid variable name after $ in " + strconv.Quote(s) + ` (write "\$" for a dollar sign)`
	}
	for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	name := s[start:i]
	val, set := os.LookupEnv(name)
	if !brace {
		return val, i, ""
	}
	if i < len(s) && s[i] == '-' {
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", 0, "unterminated ${ in " + strconv.Quote(s)
		}
		if !set {
			val = s[i+1 : i+end]
		}
		return val, i + end + 1, ""
	}
	if i >= len(s) || s[i] != '}' {
		return "", 0, "unterminated ${ in " + strconv.Quote(s)
	}
	return val, i + 1, ""
}

// maxHAProxyTime is the longest time HAProxy 2.6 accepts, 2^31-1 ms.
const maxHAProxyTime = (1<<31 - 1) * time.Millisecond

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

// leadingTime reads the time at the start of s as HAProxy 2.6's parse_time_err does: digits,
// then an optional unit (us, ms, s, m, h, d; none is ms). rest is what follows, which HAProxy
// ignores with a warning ("5sx", "3h`", and also "1.5s", read as 1 ms). ok is false without
// digits.
func leadingTime(s string) (d time.Duration, rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, s, false
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, s, false
	}
	unit, j := time.Millisecond, i
	switch {
	case strings.HasPrefix(s[i:], "us"):
		unit, j = time.Microsecond, i+2
	case strings.HasPrefix(s[i:], "ms"):
		unit, j = time.Millisecond, i+2
	case strings.HasPrefix(s[i:], "s"):
		unit, j = time.Second, i+1
	case strings.HasPrefix(s[i:], "m"):
		unit, j = time.Minute, i+1
	case strings.HasPrefix(s[i:], "h"):
		unit, j = time.Hour, i+1
	case strings.HasPrefix(s[i:], "d"):
		unit, j = 24*time.Hour, i+1
	}
	if n > int64(1<<63-1)/int64(unit) {
		return 0, s, false
	}
	return time.Duration(n) * unit, s[j:], true
}

// leadingInt reads the number at the start of s as C's atol, which HAProxy 2.6 reads most
// numbers with, does: a sign and digits; rest is what follows, which HAProxy ignores
// ("10000`" is 10000). ok is false without digits (atol's 0, which amqplb refuses: "maxconn
// abc" meaning no limit is never what was meant).
func leadingInt(s string) (n int, rest string, ok bool) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return 0, s, false
	}
	n, err := strconv.Atoi(s[:j])
	if err != nil {
		return 0, s, false
	}
	return n, s[j:], true
}

// number reads s, the value of what (a keyword or option), as HAProxy reads it: a leading
// number, with a warning on line when something follows it. It reports a value without a
// leading number; the caller checks the range.
func (p *hapParser) number(line int, what, s string) (int, bool) {
	n, rest, ok := leadingInt(s)
	if !ok {
		return 0, false
	}
	if rest != "" {
		p.warnf(line, "%s %s: read as %d, as HAProxy 2.6 reads it (it ignores %q after the number)", what, s, n, rest)
	}
	return n, true
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
	n, ok := p.number(d.line, keyword(d), s)
	if !ok || n < 0 {
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

// time reads s as an HAProxy time for name, reporting a bad one and
// warning about one HAProxy 2.6 would refuse.
func (p *hapParser) time(line int, name, s string) (val[time.Duration], bool) {
	t, err := parseHAProxyTime(s)
	if err != nil {
		lt, rest, ok := leadingTime(s)
		if !ok {
			p.errorf(line, "%s: %v", name, err)
			return val[time.Duration]{}, false
		}
		t = lt
		lead := s[:len(s)-len(rest)]
		if strings.Trim(lead, "0123456789") == "" {
			lead += "ms" // a bare number
		}
		p.warnf(line, "%s %s: read as %s, as HAProxy 2.6 reads it (it ignores %q after the time, and says a later version will refuse it)", name, s, lead, rest)
	}
	if t > maxHAProxyTime {
		p.warnf(line, "%s %s: HAProxy 2.6 rejects times over 24.8 days (2147483647ms); amqplb accepts it", name, s)
	}
	return at(t, line), true
}

func (p *hapParser) timeArg(d hapDirective, i int, name string) (val[time.Duration], bool) {
	s, ok := p.arg(d, i, "a time")
	if !ok || !p.last(d, i) {
		return val[time.Duration]{}, false
	}
	return p.time(d.line, name, s)
}

// setLine records the line a key path of the Config comes from.
func (p *hapParser) setLine(path string, line int) {
	if line > 0 {
		p.lines[path] = line
	}
}

// put copies a setting the file wrote into dst and records its line for path; a setting the
// file did not write leaves dst (the default) alone.
func put[T any](p *hapParser, dst *T, v val[T], path string) {
	if v.set() {
		*dst = v.v
		p.setLine(path, v.line)
	}
}

// lineOf returns the line of the Config's value at path (see
// config.Lines.Of), or of its nearest enclosing table, or 0.
func (p *hapParser) lineOf(path string) int { return config.NewLines(p.lines).Of(path) }

// join appends key k to the path of a Config value (see config.Lines.Of).
func join(path, k string) string {
	if path == "" || k == "" {
		return path + k
	}
	return path + "." + k
}
