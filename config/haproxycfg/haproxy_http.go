package haproxycfg

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/amqplb/amqplb/config"
)

// mode http sections: a listen, frontend or backend in mode http that does
// not only serve HAProxy's stats page (the RabbitMQ management UI on 15672,
// typically) is served as mode tcp: amqplb relays its connections to the
// servers as they come. option httpchk and http-check send/expect become
// the backend's http check; every directive that only shapes HTTP is
// ignored with a warning saying what the user loses.

// hapHTTPReq is the request of an HTTP check, as option httpchk and
// http-check send write it.
type hapHTTPReq struct {
	method, uri, version, host string
	headers                    []hapHeader
	line                       int // of the directive that set it
}

type hapHeader struct{ name, value string }

// hapHTTPRule is an http-check send or expect rule.
type hapHTTPRule struct {
	line int
	send bool // send, else expect
	// send: the request's parts it sets ("" keeps what option httpchk says).
	req hapHTTPReq
	// expect: the match, as config.HTTPCheck's.
	match, pattern string
	negate         bool
	// port is http-check connect port N.
	port int
}

// httpMeaning says, for the directives that only shape HTTP, what ignoring
// them means in a mode http section served as TCP. The key is a keyword or
// "option NAME" or "timeout NAME", as proxyIgnored's.
var httpMeaning = map[string]string{
	"option forwardfor":         "no X-Forwarded-For: amqplb passes TCP; the PROXY protocol (send-proxy) carries the client's address to servers that accept it, which RabbitMQ's management listener does not",
	"option originalto":         "no X-Original-To: amqplb passes TCP",
	"cookie":                    "no cookie persistence: use balance source for sticky clients",
	"option httplog":            "amqplb logs one line per TCP connection, not one per HTTP request",
	"option http-server-close":  "amqplb relays each client connection to one server as it is: keep-alive is the client's and the server's",
	"option httpclose":          "amqplb relays each client connection to one server as it is: keep-alive is the client's and the server's",
	"option http-keep-alive":    "amqplb relays each client connection to one server as it is: keep-alive is the client's and the server's",
	"option forceclose":         "amqplb relays each client connection to one server as it is: keep-alive is the client's and the server's",
	"option prefer-last-server": "amqplb relays each client connection to one server for its whole life",
	"timeout http-request":      "amqplb reads no requests: a slow client is bounded only by idle_timeout",
	"timeout http-keep-alive":   "amqplb reads no requests: an idle keep-alive connection is bounded only by idle_timeout",
	"http-request":              "amqplb reads no requests: they reach the servers unchanged, and a deny, auth or redirect rule here is not enforced",
	"http-response":             "amqplb reads no responses: they reach the clients unchanged",
	"http-after-response":       "amqplb reads no responses: they reach the clients unchanged",
	"compression":               "amqplb reads no responses: they are compressed only if the server compresses them",
	"http-reuse":                "each client connection gets a server connection of its own",
	"errorfile":                 "amqplb sends no HTTP error pages: with no server up, a connection is closed",
	"errorfiles":                "amqplb sends no HTTP error pages: with no server up, a connection is closed",
	"errorloc":                  "amqplb sends no HTTP error pages: with no server up, a connection is closed",
	"errorloc302":               "amqplb sends no HTTP error pages: with no server up, a connection is closed",
	"errorloc303":               "amqplb sends no HTTP error pages: with no server up, a connection is closed",
	"http-error":                "amqplb sends no HTTP error pages: with no server up, a connection is closed",
	"redirect":                  "amqplb reads no requests: no redirect is made, requests reach the servers unchanged",
	"http-send-name-header":     "amqplb does not rewrite requests: the servers get no header naming them",
	"capture":                   "amqplb reads no HTTP: nothing is captured for the log",
	"monitor-uri":               "amqplb reads no requests; it serves /healthz on admin.listen",
	"unique-id-format":          "amqplb reads no HTTP: requests get no unique id",
	"unique-id-header":          "amqplb reads no HTTP: requests get no unique id",
}

// httpIgnoredWhy is the reason given for an HTTP directive ignored in a
// mode http section that has no more precise one.
const httpIgnoredWhy = "amqplb passes the connections through as TCP and reads no HTTP"

// ignoredHTTP warns that the HTTP directive d (keyword k) is ignored, with
// what that means in a mode http section; it reports whether px is one.
func (p *hapParser) ignoredHTTP(px *hapProxy, d hapDirective, k string) bool {
	if !px.httpMode {
		return false
	}
	why, ok := httpMeaning[k]
	if !ok {
		why = httpIgnoredWhy
	}
	p.ignored(d, why)
	return true
}

// modeHTTP warns that the mode http section px is served as mode tcp, on
// its mode line when the section writes one, else on the section's line.
func (p *hapParser) modeHTTP(px *hapProxy) {
	line := px.line
	if m := px.opts.mode; m.line > px.line && m.line <= px.end {
		line = m.line
	}
	amqp := ""
	for _, b := range px.binds {
		if isAMQPPort(addrPort(b.addr)) {
			amqp = fmt.Sprintf("; it binds AMQP port %d, where HAProxy in mode http would have refused every AMQP client", addrPort(b.addr))
			break
		}
	}
	p.warnf(line, `%s: mode http is served as mode "tcp": amqplb relays the connections to the servers as they come, reading no HTTP (no header is added or rewritten, no request is routed, logged or refused on its content)%s`, sectionName(px.hapSection), amqp)
}

// httpchk reads option httpchk [[METH] URI [VER]]: VER may carry headers
// after \r\n ("HTTP/1.0\r\nAuthorization:\ Basic\ ..."), as files written
// for HAProxy before 2.2 do. HAProxy's defaults are OPTIONS / HTTP/1.0.
func (p *hapParser) httpchk(d hapDirective, args []string) hapHTTPReq {
	r := hapHTTPReq{method: "OPTIONS", uri: "/", line: d.line}
	switch len(args) {
	case 0:
	case 1:
		r.uri = args[0]
	case 2:
		r.method, r.uri = args[0], args[1]
	case 3:
		r.method, r.uri = args[0], args[1]
		lines := strings.Split(strings.ReplaceAll(args[2], "\r\n", "\n"), "\n")
		r.version = lines[0]
		for _, l := range lines[1:] {
			if l == "" {
				continue
			}
			name, value, ok := strings.Cut(l, ":")
			if !ok {
				p.errorf(d.line, "option httpchk: header %q is not NAME: VALUE", l)
				return hapHTTPReq{method: "OPTIONS", uri: "/", line: d.line}
			}
			r.addHeader(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	default:
		p.errorf(d.line, "option httpchk takes at most 3 arguments (method, URI, version), not %d (escape blanks with \\)", len(args))
	}
	return r
}

// addHeader adds a header to r; Host is r.host.
func (r *hapHTTPReq) addHeader(name, value string) {
	if strings.EqualFold(name, "host") {
		r.host = value
		return
	}
	r.headers = append(r.headers, hapHeader{name, value})
}

// httpCheckRule reads an http-check rule: send, expect, connect, comment,
// and the ones amqplb does without.
func (p *hapParser) httpCheckRule(px *hapProxy, d hapDirective) {
	if px.kind != "defaults" && !px.back {
		p.warnf(d.line, "ignored: %s in section %q (it applies to backends)", keyword(d), sectionName(px.hapSection))
		return
	}
	sub, ok := p.arg(d, 1, "an action (send, expect, connect...)")
	if !ok {
		return
	}
	r := hapHTTPRule{line: d.line}
	var rest []string
	for i := 2; i < len(d.args); i++ {
		if d.args[i] == "comment" && i+1 < len(d.args) {
			i++
			continue
		}
		rest = append(rest, d.args[i])
	}
	switch sub {
	case "comment":
		return // only names the rule in HAProxy's messages
	case "send":
		r.send = true
		for i := 0; i < len(rest); i++ {
			opt := rest[i]
			if i+1 >= len(rest) {
				p.errorf(d.line, "http-check send %s needs an argument", opt)
				return
			}
			i++
			switch opt {
			case "meth":
				r.req.method = rest[i]
			case "uri":
				r.req.uri = rest[i]
			case "ver":
				r.req.version = rest[i]
			case "hdr":
				if i+1 >= len(rest) {
					p.errorf(d.line, "http-check send hdr %s needs a value", rest[i])
					return
				}
				r.req.addHeader(rest[i], rest[i+1])
				i++
			case "body":
				p.warnf(d.line, "ignored: http-check send body (amqplb's http check sends no body)")
			case "uri-lf", "body-lf":
				p.errorf(d.line, "http-check send %s: log-format expressions are not supported; write the %s as it is", opt, strings.TrimSuffix(opt, "-lf"))
				return
			default:
				p.errorf(d.line, "http-check send %s is not supported (meth, uri, ver, hdr and body are)", opt)
				return
			}
		}
	case "expect":
		m, ok := p.httpExpect(d, rest)
		if !ok {
			return
		}
		r.match, r.pattern, r.negate = m.Match, m.Pattern, m.Negate
	case "connect":
		for i := 0; i < len(rest); i++ {
			switch rest[i] {
			case "default", "linger":
			case "port":
				n := 0
				if i+1 < len(rest) {
					n, _ = strconv.Atoi(rest[i+1])
				}
				if n < 1 || n > 65535 {
					p.errorf(d.line, "http-check connect port needs a port number in 1..65535")
					return
				}
				r.port = n
				i++
			default:
				p.errorf(d.line, "http-check connect %s is not supported (amqplb's checks connect as the server lines say: use port, check-ssl and check-send-proxy there)", rest[i])
				return
			}
		}
		if r.port == 0 {
			return // the check connects anyway
		}
	case "disable-on-404":
		p.ignored(d, "a 404 fails the check like any status the check does not expect")
		return
	case "send-state":
		p.ignored(d, "amqplb's checks send no X-Haproxy-Server-State header")
		return
	case "set-var", "unset-var":
		p.ignored(d, "amqplb's checks have no variables")
		return
	default:
		p.errorf(d.line, "http-check %s is not supported (send, expect and connect are)", sub)
		return
	}
	if !px.ownHTTPRules {
		px.opts.httpRules = nil
		px.ownHTTPRules = true
	}
	px.opts.httpRules = append(px.opts.httpRules, r)
}

// httpExpect reads the arguments of http-check expect: [options] [!] MATCH
// PATTERN, where MATCH is status, rstatus, string or rstring.
func (p *hapParser) httpExpect(d hapDirective, args []string) (config.HTTPCheck, bool) {
	var h config.HTTPCheck
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "!":
			h.Negate = !h.Negate
		case "min-recv", "ok-status", "error-status", "tout-status", "on-success", "on-error", "status-code":
			if i+1 >= len(args) {
				p.errorf(d.line, "http-check expect %s needs an argument", a)
				return h, false
			}
			p.warnf(d.line, "ignored: http-check expect %s %s (amqplb's check passes or fails, with its own reason)", a, args[i+1])
			i++
		case "status", "rstatus", "string", "rstring":
			if i+2 != len(args) {
				p.errorf(d.line, "http-check expect %s needs one pattern (quote it or escape blanks with \\)", a)
				return h, false
			}
			h.Match, h.Pattern = a, args[i+1]
			if a == "rstatus" || a == "rstring" {
				if _, err := regexp.Compile(h.Pattern); err != nil {
					p.errorf(d.line, "http-check expect %s %s: %v", a, h.Pattern, err)
					return h, false
				}
			}
			return h, true
		case "hdr", "fhdr", "custom":
			p.errorf(d.line, "http-check expect %s is not supported (status, rstatus, string and rstring are)", a)
			return h, false
		default:
			p.errorf(d.line, "http-check expect %s: expected status, rstatus, string or rstring", a)
			return h, false
		}
	}
	p.errorf(d.line, "http-check expect needs a match and a pattern (e.g. status 200)")
	return h, false
}

// httpCheck makes h the backend's http check from option httpchk (o.httpReq)
// and the http-check rules; hp is the health check's path.
func (p *hapParser) httpCheck(px *hapProxy, label, hp string, h *config.HealthCheck) {
	o := px.opts
	req := o.httpReq
	h.Type = "http"
	p.setLine(hp+".type", o.httpCheck.line)
	hc := config.DefaultHTTPCheck()
	lines := map[string]int{"method": req.line, "path": req.line}
	var sent, expected *hapHTTPRule
	for k := range o.httpRules {
		r := &o.httpRules[k]
		switch {
		case r.port > 0:
			for j := range px.servers {
				px.servers[j].opts.checkPort = at(r.port, r.line)
			}
		case r.send && sent != nil:
			p.errorf(r.line, "%s: a second http-check send is not supported (amqplb's check sends one request; first at line %d)", label, sent.line)
		case r.send:
			sent = r
		case expected != nil:
			p.errorf(r.line, "%s: a second http-check expect is not supported (amqplb's check has one expect rule; first at line %d)", label, expected.line)
		default:
			expected = r
		}
	}
	if sent != nil {
		// http-check send overrides what option httpchk says, and adds headers.
		s := sent.req
		for _, f := range []struct {
			key string
			src string
			dst *string
		}{{"method", s.method, &req.method}, {"path", s.uri, &req.uri}, {"version", s.version, &req.version}, {"host", s.host, &req.host}} {
			if f.src != "" {
				*f.dst = f.src
				lines[f.key] = sent.line
			}
		}
		req.headers = append(slices.Clone(req.headers), s.headers...)
		if len(s.headers) > 0 {
			lines["headers"] = sent.line
		}
	}
	if len(req.headers) > 0 && lines["headers"] == 0 {
		lines["headers"] = req.line
	}
	hc.Method, hc.Path, hc.Host = req.method, req.uri, req.host
	if req.host != "" && lines["host"] == 0 {
		lines["host"] = req.line
	}
	if v := req.version; v != "" && v != "HTTP/1.1" {
		p.warnf(max(lines["version"], req.line), "%s: the http check sends HTTP/1.1 with a Host header, not %s", label, v)
	}
	for _, hd := range req.headers {
		if hc.Headers == nil {
			hc.Headers = map[string]string{}
		}
		for k := range hc.Headers {
			if strings.EqualFold(k, hd.name) {
				p.warnf(lines["headers"], "%s: http check header %s is sent once, with its last value", label, hd.name)
				delete(hc.Headers, k)
			}
		}
		hc.Headers[hd.name] = hd.value
	}
	if expected != nil {
		hc.Match, hc.Pattern, hc.Negate = expected.match, expected.pattern, expected.negate
		for _, k := range []string{"match", "pattern", "negate"} {
			lines[k] = expected.line
		}
	}
	h.HTTP = &hc
	p.setLine(hp+".http", req.line)
	for k, l := range lines {
		if l > 0 && k != "version" {
			p.setLine(hp+".http."+k, l)
		}
	}
}

// ignoreHTTPRules warns that the http-check rules of px are not used,
// saying why.
func (p *hapParser) ignoreHTTPRules(px *hapProxy, why string) {
	for _, r := range px.opts.httpRules {
		key := fmt.Sprintf("%d:http-check", r.line)
		if p.reported[key] {
			continue
		}
		p.reported[key] = true
		what := "expect"
		switch {
		case r.send:
			what = "send"
		case r.port > 0:
			what = "connect"
		}
		p.warnf(r.line, "ignored: http-check %s (%s)", what, why)
	}
}

// isHTTPOnly reports whether the keyword k (or "option NAME", "timeout
// NAME") only shapes HTTP.
func isHTTPOnly(k string) bool {
	_, ok := httpMeaning[k]
	return ok || strings.HasPrefix(proxyIgnored[k], "needs mode http") || proxyRefused[k] == "needs mode http"
}
