package haproxycfg

import (
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/amqplb/amqplb/config"
)

// hapACL is an acl of a proxy: all the acl lines with its name.
type hapACL struct {
	name      string
	lines     []int
	criterion string // "src", another fetch, or "mixed"
	entries   []string
	used      bool
	anonymous bool
	sniKind   string // for req_ssl_sni: str, end or beg
}

// predefinedACLs are HAProxy's built-in ACLs that match on the source, as
// HAProxy 2.6 defines them.
var predefinedACLs = map[string][]string{
	"TRUE":      {"0.0.0.0/0", "::/0"},
	"FALSE":     nil,
	"LOCALHOST": {"127.0.0.1/8", "::1"},
}

// hapTerm is one term of an HAProxy condition.
type hapTerm struct {
	acl string
	not bool
}

// hapRule is a tcp-request accept or reject rule.
type hapRule struct {
	line   int
	layer  string // connection, session, content
	action string
	unless bool
	cond   [][]hapTerm // nil: always
}

// acl reads acl NAME CRITERION [FLAGS] VALUE...
func (p *hapParser) acl(px *hapProxy, d hapDirective) {
	name, ok := p.arg(d, 1, "a name and a criterion")
	if !ok {
		return
	}
	if !config.ValidACLName(name) {
		p.errorf(d.line, "acl %s: a name has only letters, digits and _ . : -", name)
		return
	}
	crit, ok := p.arg(d, 2, "a criterion (e.g. src)")
	if !ok {
		return
	}
	if isSNIFetch(crit) {
		kind, names, ok := p.sniValues(d, d.args[3:])
		if !ok {
			return
		}
		p.addACL(px, name, crit, names, d.line).sniKind = kind
		return
	}
	entries, ok := p.aclValues(d, crit, d.args[3:])
	if !ok {
		return
	}
	p.addACL(px, name, crit, entries, d.line)
}

func (p *hapParser) addACL(px *hapProxy, name, crit string, entries []string, line int) *hapACL {
	a := px.acls[name]
	if a == nil {
		a = &hapACL{name: name, criterion: crit}
		px.acls[name] = a
		px.aclOrder = append(px.aclOrder, name)
	} else if a.criterion != crit {
		a.criterion = "mixed"
	}
	a.lines = append(a.lines, line)
	a.entries = append(a.entries, entries...)
	return a
}

// aclValues reads the flags and values of an acl; for src it checks them
// and reads -f files.
func (p *hapParser) aclValues(d hapDirective, crit string, args []string) ([]string, bool) {
	var vals []string
	src := crit == "src"
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || len(a) < 2 {
			vals = append(vals, args[i:]...)
			break
		}
		switch a {
		case "--":
			vals = append(vals, args[i+1:]...)
			i = len(args)
		case "-i", "-n", "-M":
		case "-m", "-u":
			if i+1 >= len(args) {
				p.errorf(d.line, "acl: flag %s needs an argument", a)
				return nil, false
			}
			i++
			if a == "-m" && src && args[i] != "ip" {
				p.errorf(d.line, "acl: src -m %s: only -m ip matches addresses", args[i])
				return nil, false
			}
		case "-f":
			if i+1 >= len(args) {
				p.errorf(d.line, "acl: flag -f needs a file")
				return nil, false
			}
			i++
			if !src {
				vals = append(vals, "-f "+args[i])
				continue
			}
			data, err := os.ReadFile(args[i])
			if err != nil {
				p.errorf(d.line, "acl: -f %s: %v", args[i], err)
				return nil, false
			}
			for _, l := range strings.Split(string(data), "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					vals = append(vals, strings.Fields(l)[0])
				}
			}
		default:
			if src {
				p.errorf(d.line, "acl: flag %s is not supported with src", a)
				return nil, false
			}
		}
	}
	if src {
		for _, v := range vals {
			if _, err := config.ParseACLEntry(v); err != nil {
				p.errorf(d.line, "acl src: %v", err)
				return nil, false
			}
		}
	}
	return vals, true
}

// condition reads a condition (the words after if or unless), defining
// the anonymous ACLs it has ({ src ... }).
func (p *hapParser) condition(px *hapProxy, d hapDirective, words []string) ([][]hapTerm, bool) {
	var or [][]hapTerm
	var group []hapTerm
	not := false
	anon := 0
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "||" || w == "or":
			if len(group) == 0 || not {
				p.errorf(d.line, "%s: %q has no term before it", keyword(d), w)
				return nil, false
			}
			or = append(or, group)
			group = nil
			continue
		case w == "!":
			not = !not
			continue
		case w == "{":
			end := i + 1
			for end < len(words) && words[end] != "}" {
				end++
			}
			if end == len(words) || end < i+2 {
				p.errorf(d.line, "%s: unterminated or empty { ... } in the condition", keyword(d))
				return nil, false
			}
			name := ""
			for name == "" || px.acls[name] != nil {
				anon++
				name = fmt.Sprintf("anonymous-%d", d.line)
				if anon > 1 {
					name = fmt.Sprintf("%s-%d", name, anon)
				}
			}
			crit := words[i+1]
			entries, ok := p.aclValues(d, crit, words[i+2:end])
			if !ok {
				return nil, false
			}
			a := p.addACL(px, name, crit, entries, d.line)
			a.anonymous = true
			group = append(group, hapTerm{acl: name, not: not})
			not = false
			i = end
			continue
		}
		for strings.HasPrefix(w, "!") {
			not = !not
			w = w[1:]
		}
		if !config.ValidACLName(w) {
			p.errorf(d.line, "%s: %q is not an ACL name", keyword(d), w)
			return nil, false
		}
		if px.acls[w] == nil {
			entries, ok := predefinedACLs[w]
			if !ok {
				p.errorf(d.line, "%s: acl %q is not defined (define it with acl %s src ... before this line)", keyword(d), w, w)
				return nil, false
			}
			a := p.addACL(px, w, "src", entries, 0)
			a.lines = nil
		}
		group = append(group, hapTerm{acl: w, not: not})
		not = false
	}
	if len(group) == 0 || not {
		p.errorf(d.line, "%s: the condition is empty or ends with an operator", keyword(d))
		return nil, false
	}
	return append(or, group), true
}

// tcpRequest reads tcp-request connection|session|content accept|reject
// [if|unless COND], and ignores inspect-delay.
func (p *hapParser) tcpRequest(px *hapProxy, d hapDirective) {
	layer, ok := p.arg(d, 1, "connection, session or content")
	if !ok {
		return
	}
	switch layer {
	case "inspect-delay":
		if v, ok := p.timeArg(d, 2, "tcp-request inspect-delay"); ok {
			px.inspectDelay = v
		}
		return
	case "connection", "session", "content":
	default:
		p.errorf(d.line, "tcp-request %s is not supported (connection, session and content are)", layer)
		return
	}
	if px.kind == "defaults" {
		p.errorf(d.line, "tcp-request rules in a defaults section are not supported; write them in the frontend")
		return
	}
	if !px.front && layer != "content" {
		p.errorf(d.line, "%s in section %q: a backend takes tcp-request content rules only (as in HAProxy)", keyword(d), sectionName(px.hapSection))
		return
	}
	action, ok := p.arg(d, 2, "an action (accept or reject)")
	if !ok {
		return
	}
	if action != "accept" && action != "reject" {
		p.errorf(d.line, "tcp-request %s %s: only accept and reject are supported", layer, action)
		return
	}
	if helloOnly(px, d.args[3:]) && action == "accept" && layer == "content" {
		// HAProxy waits (inspect-delay) for a ClientHello, then accepts; without one it
		// accepts too once the delay is over. amqplb waits for it only to route on its server
		// name, and accepts either way: the same.
		p.warnf(d.line, "%s accept if { req_ssl_hello_type 1 }: amqplb waits for the TLS ClientHello (up to inspect-delay) when it routes on its server name, and accepts either way; nothing to add", keyword(d))
		return
	}
	r := hapRule{line: d.line, layer: layer, action: action}
	if len(d.args) > 3 {
		switch d.args[3] {
		case "if", "unless":
			r.unless = d.args[3] == "unless"
			if len(d.args) == 4 {
				p.errorf(d.line, "%s: %s needs a condition", keyword(d), d.args[3])
				return
			}
			cond, ok := p.condition(px, d, d.args[4:])
			if !ok {
				return
			}
			r.cond = cond
		default:
			p.errorf(d.line, "%s %s: unexpected %q (expected if or unless)", keyword(d), action, d.args[3])
			return
		}
	}
	if layer == "content" && px.front {
		p.warnf(d.line, "tcp-request content %s: amqplb evaluates content rules on the client address once it is known (at accept, or after the PROXY header with accept-proxy), without waiting for data", action)
	}
	px.rules = append(px.rules, r)
}

// layerOrder is the order in which HAProxy runs the tcp-request layers.
var layerOrder = map[string]int{"connection": 0, "session": 1, "content": 2}

// ruleLayer is the TCPRule.Layer of a tcp-request layer: session rules,
// which run after the PROXY header as content rules do, join them.
func ruleLayer(hapLayer string) string {
	if hapLayer == "connection" {
		return config.RuleLayerConnection
	}
	return config.RuleLayerContent
}

// frontendRules turns the rules of px into the acl and tcp_request of its
// frontends. ok is false when they cannot be (reported).
func (p *hapParser) frontendRules(px *hapProxy) (acl map[string][]string, rules []config.TCPRule, lines []int, ok bool) {
	ok = true
	// HAProxy runs each layer's rules apart, connection, then session,
	// then content: within a layer the first matching rule decides (accept
	// ends the layer, reject closes), and a connection is refused when any
	// layer rejects. amqplb has the connection layer, and one content
	// layer that takes the session rules, then the content rules, each in
	// file order. That list decides as HAProxy's two do unless a session
	// accept is followed by a content reject.
	ordered := make([]hapRule, 0, len(px.rules))
	for l := 0; l < 3; l++ {
		for _, r := range px.rules {
			if layerOrder[r.layer] == l {
				ordered = append(ordered, r)
			}
		}
	}
	for _, a := range ordered {
		if a.layer != "session" || a.action != "accept" {
			continue
		}
		for _, r := range ordered {
			if r.layer == "content" && r.action == "reject" {
				p.errorf(a.line, "tcp-request session accept: HAProxy still applies the tcp-request content rules (line %d) to the sessions it accepts; amqplb evaluates session and content rules as one layer, where the first matching rule decides, so a session accept followed by a content reject is not supported (write both as tcp-request content rules, in the order that decides as you want)",
					r.line)
				ok = false
				break
			}
		}
	}
	for _, r := range ordered {
		rule := config.TCPRule{Layer: ruleLayer(r.layer), Action: r.action}
		if r.cond != nil {
			c := config.Condition{}
			for _, g := range r.cond {
				var terms []config.CondTerm
				for _, t := range g {
					a := px.acls[t.acl]
					a.used = true
					if a.criterion != "src" {
						what := "matches " + a.criterion
						if a.criterion == "mixed" {
							what = "mixes src with other criteria"
						}
						at := ""
						if len(a.lines) > 0 && !a.anonymous {
							at = fmt.Sprintf(" (line %d)", a.lines[0])
						}
						p.errorf(r.line, "tcp-request %s %s: acl %q%s %s; amqplb's rules match the client address only (src)", r.layer, r.action, t.acl, at, what)
						ok = false
						continue
					}
					if acl == nil {
						acl = map[string][]string{}
					}
					acl[t.acl] = a.entries
					terms = append(terms, config.CondTerm{ACL: t.acl, Not: t.not})
				}
				c.Or = append(c.Or, terms)
			}
			if r.unless {
				rule.Unless = c.String()
			} else {
				rule.If = c.String()
			}
		}
		rules = append(rules, rule)
		lines = append(lines, r.line)
	}
	return acl, rules, lines, ok
}

// unusedACLs warns about the ACLs of px that nothing uses.
func (p *hapParser) unusedACLs(px *hapProxy) {
	for _, name := range px.aclOrder {
		a := px.acls[name]
		if a.used || a.anonymous {
			continue
		}
		for _, l := range a.lines {
			p.warnf(l, "ignored: acl %s (no rule uses it)", name)
		}
	}
}

// hapStep is a tcp-check rule.
type hapStep struct {
	line int
	step config.TCPCheckStep
	port int // tcp-check connect port N
	// deflt is tcp-check connect default: the connection takes the
	// server's check settings (TLS, PROXY header); without it HAProxy
	// connects in plain TCP, with no PROXY header.
	deflt bool
}

// amqpHeader is the AMQP 0-9-1 protocol header.
const amqpHeader = "AMQP\x00\x00\x09\x01"

// tcpCheckRule reads a tcp-check rule.
func (p *hapParser) tcpCheckRule(px *hapProxy, d hapDirective) {
	if px.kind != "defaults" && !px.back {
		p.warnf(d.line, "ignored: %s in section %q (it applies to backends)", keyword(d), sectionName(px.hapSection))
		return
	}
	sub, ok := p.arg(d, 1, "an action (connect, send, send-binary or expect)")
	if !ok {
		return
	}
	st := hapStep{line: d.line}
	args := d.args[2:]
	// comment C may follow any rule.
	var rest []string
	for i := 0; i < len(args); i++ {
		if args[i] == "comment" && i+1 < len(args) && sub != "comment" {
			i++
			continue
		}
		rest = append(rest, args[i])
	}
	switch sub {
	case "comment":
		return // only names the step in HAProxy's messages
	case "connect":
		st.step = config.TCPCheckStep{Action: "connect"}
		for i := 0; i < len(rest); i++ {
			switch rest[i] {
			case "default":
				st.deflt = true
			case "linger":
			case "port":
				if i+1 >= len(rest) {
					p.errorf(d.line, "tcp-check connect port needs a number")
					return
				}
				i++
				n, err := strconv.Atoi(rest[i])
				if err != nil || n < 1 || n > 65535 {
					p.errorf(d.line, "tcp-check connect port %s: a port number in 1..65535", rest[i])
					return
				}
				st.port = n
			default:
				p.errorf(d.line, "tcp-check connect %s is not supported (amqplb's checks connect as the server lines say: use port, check-ssl and check-send-proxy there)", rest[i])
				return
			}
		}
	case "send", "send-binary":
		if len(rest) != 1 {
			p.errorf(d.line, "tcp-check %s needs one argument, the data (quote it or escape blanks with \\)", sub)
			return
		}
		data := rest[0]
		if sub == "send-binary" {
			if _, err := hex.DecodeString(data); err != nil || data == "" {
				p.errorf(d.line, "tcp-check send-binary %s: not hex bytes", data)
				return
			}
		} else if !utf8.ValidString(data) {
			sub, data = "send-binary", hex.EncodeToString([]byte(data))
		}
		st.step = config.TCPCheckStep{Action: sub, Data: data}
	case "expect":
		s, ok := p.expect(d, rest)
		if !ok {
			return
		}
		st.step = s
	default:
		p.errorf(d.line, "tcp-check %s is not supported (connect, send, send-binary and expect are)", sub)
		return
	}
	if !px.ownSteps {
		px.opts.checkSteps = nil
		px.ownSteps = true
	}
	px.opts.checkSteps = append(px.opts.checkSteps, st)
}

// expect reads the arguments of tcp-check expect.
func (p *hapParser) expect(d hapDirective, args []string) (config.TCPCheckStep, bool) {
	st := config.TCPCheckStep{Action: "expect"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "!":
			st.Negate = !st.Negate
		case "string", "binary", "rstring", "rbinary":
			if i+1 >= len(args) {
				p.errorf(d.line, "tcp-check expect %s needs a pattern", a)
				return st, false
			}
			i++
			st.Match, st.Pattern = a, args[i]
		case "string-lf", "binary-lf":
			p.errorf(d.line, "tcp-check expect %s: log-format patterns are not supported", a)
			return st, false
		case "min-recv", "ok-status", "error-status", "tout-status", "on-success", "on-error", "status-code":
			if i+1 >= len(args) {
				p.errorf(d.line, "tcp-check expect %s needs an argument", a)
				return st, false
			}
			i++
			p.warnf(d.line, "ignored: tcp-check expect %s (amqplb reports its own check status)", a)
		default:
			p.errorf(d.line, "tcp-check expect: unexpected %q (expected [!] string|binary|rstring|rbinary PATTERN)", a)
			return st, false
		}
	}
	if st.Match == "" {
		p.errorf(d.line, "tcp-check expect needs a match: [!] string|binary|rstring|rbinary PATTERN")
		return st, false
	}
	switch st.Match {
	case "string":
		if !utf8.ValidString(st.Pattern) {
			st.Match, st.Pattern = "binary", hex.EncodeToString([]byte(st.Pattern))
		}
	case "binary":
		if _, err := hex.DecodeString(st.Pattern); err != nil || st.Pattern == "" {
			p.errorf(d.line, "tcp-check expect binary %s: not hex bytes", st.Pattern)
			return st, false
		}
	case "rstring", "rbinary":
		if !utf8.ValidString(st.Pattern) {
			p.errorf(d.line, "tcp-check expect %s: the pattern is not valid UTF-8", st.Match)
			return st, false
		}
		if _, err := regexp.Compile(st.Pattern); err != nil {
			p.errorf(d.line, "tcp-check expect %s %q: Go's regular expressions (RE2) cannot read it: %v", st.Match, st.Pattern, err)
			return st, false
		}
	}
	return st, true
}

// amqpRecipe reports whether steps are the usual AMQP check recipe: send
// the AMQP 0-9-1 protocol header (as text or hex), then expect anything;
// an explicit connect may come first. It returns the line of the send.
func amqpRecipe(steps []hapStep) (int, bool) {
	if len(steps) > 0 && steps[0].step.Action == "connect" && steps[0].port == 0 {
		steps = steps[1:]
	}
	if len(steps) != 2 || steps[1].step.Action != "expect" {
		return 0, false
	}
	s := steps[0].step
	switch {
	case s.Action == "send" && s.Data == amqpHeader:
	case s.Action == "send-binary" && strings.EqualFold(s.Data, hex.EncodeToString([]byte(amqpHeader))):
	default:
		return 0, false
	}
	return steps[0].line, true
}
