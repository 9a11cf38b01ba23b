package haproxycfg

import (
	"fmt"
	"slices"
	"strings"

	"github.com/amqplb/amqplb/config"
)

// hapSNIRoute is a use_backend B if { req_ssl_sni … } of a frontend.
type hapSNIRoute struct {
	line  int
	route config.Route
}

// isSNIFetch reports whether crit is the fetch of the ClientHello's server name.
func isSNIFetch(crit string) bool { return crit == "req_ssl_sni" || crit == "req.ssl_sni" }

// isHelloFetch reports whether crit is the fetch of the ClientHello's presence
// (req_ssl_hello_type 1), which amqplb's SNI routing waits for anyway.
func isHelloFetch(crit string) bool {
	return crit == "req_ssl_hello_type" || crit == "req.ssl_hello_type"
}

// sniValues reads the flags and names of a req_ssl_sni match: -i (amqplb compares
// case-insensitively anyway), -m str|end|beg; it returns the match kind and the names.
func (p *hapParser) sniValues(d hapDirective, args []string) (kind string, names []string, ok bool) {
	kind = "str"
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-i":
		case a == "-m":
			if i+1 >= len(args) {
				p.errorf(d.line, "%s: -m needs a match method", keyword(d))
				return "", nil, false
			}
			i++
			if !slices.Contains([]string{"str", "end", "beg"}, args[i]) {
				p.errorf(d.line, "%s: req_ssl_sni -m %s: only -m str, end and beg are supported", keyword(d), args[i])
				return "", nil, false
			}
			kind = args[i]
		case a == "--":
			names = append(names, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(names) == 0:
			p.errorf(d.line, "%s: req_ssl_sni flag %s is not supported (-i and -m str|end|beg are)", keyword(d), a)
			return "", nil, false
		default:
			names = append(names, a)
		}
	}
	if len(names) == 0 {
		p.errorf(d.line, "%s: req_ssl_sni needs at least one name", keyword(d))
		return "", nil, false
	}
	return kind, names, true
}

// addSNI adds names matched by kind to r.
func addSNI(r *config.Route, kind string, names []string) {
	switch kind {
	case "end":
		r.SNISuffix = append(r.SNISuffix, names...)
	case "beg":
		r.SNIPrefix = append(r.SNIPrefix, names...)
	default:
		r.SNI = append(r.SNI, names...)
	}
}

// sniRoute reads use_backend backend if COND, where COND ORs terms on the ClientHello's server
// name: { req_ssl_sni [-i] [-m str|end|beg] NAME… } or the names of acls on req_ssl_sni; a term
// ANDed with req_ssl_hello_type 1 is taken as it is (amqplb reads the ClientHello anyway). Any
// other condition is content switching amqplb does not do, and reported.
func (p *hapParser) sniRoute(px *hapProxy, d hapDirective, backend string, words []string) (hapSNIRoute, bool) {
	unsupported := func() (hapSNIRoute, bool) {
		p.errorf(d.line, "use_backend %s %s: content switching is not supported, except on the TLS server name (use_backend B if { req_ssl_sni -i NAME }); use_backend without a condition (or default_backend) is",
			backend, strings.Join(words, " "))
		return hapSNIRoute{}, false
	}
	if len(words) < 2 || words[0] != "if" {
		return unsupported()
	}
	r := hapSNIRoute{line: d.line, route: config.Route{Backend: backend}}
	terms := 0
	for i := 1; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "||" || w == "or":
			continue
		case w == "{":
			end := i + 1
			for end < len(words) && words[end] != "}" {
				end++
			}
			if end == len(words) || end < i+2 {
				return unsupported()
			}
			crit := words[i+1]
			switch {
			case isSNIFetch(crit):
				kind, names, ok := p.sniValues(d, words[i+2:end])
				if !ok {
					return hapSNIRoute{}, false
				}
				addSNI(&r.route, kind, names)
				terms++
			case isHelloFetch(crit):
			default:
				return unsupported()
			}
			i = end
		default:
			a := px.acls[w]
			if a == nil || !(isSNIFetch(a.criterion) || isHelloFetch(a.criterion)) {
				return unsupported()
			}
			a.used = true
			if isSNIFetch(a.criterion) {
				addSNI(&r.route, a.sniKind, a.entries)
				terms++
			}
		}
	}
	if terms == 0 {
		return unsupported()
	}
	return r, true
}

// frontendRoutes puts the SNI routes and inspect-delay of px into f (at path).
func (p *hapParser) frontendRoutes(px *hapProxy, f *config.Frontend, path string) {
	if v := px.inspectDelay; v.set() && len(px.sniRoutes) > 0 {
		f.InspectDelay = v.v
		p.setLine(path+".inspect_delay", v.line)
	} else if v.set() {
		p.warnf(v.line, "ignored: tcp-request inspect-delay (amqplb waits for data only to route on the TLS server name: use_backend B if { req_ssl_sni … })")
	}
	for j, r := range px.sniRoutes {
		f.Routes = append(f.Routes, r.route)
		rp := fmt.Sprintf("%s.route.%d", path, j)
		p.setLine(rp, r.line)
		p.setLine(rp+".backend", r.line)
	}
	if len(px.sniRoutes) > 0 {
		p.setLine(path+".route", px.sniRoutes[0].line)
	}
}

// helloOnly reports whether words are if { req_ssl_hello_type 1 }, or if ACL where ACL is an acl
// on req_ssl_hello_type 1.
func helloOnly(px *hapProxy, words []string) bool {
	switch {
	case len(words) == 5 && words[0] == "if" && words[1] == "{" && isHelloFetch(words[2]) && words[3] == "1" && words[4] == "}":
		return true
	case len(words) == 2 && words[0] == "if":
		if a := px.acls[words[1]]; a != nil && isHelloFetch(a.criterion) && slices.Equal(a.entries, []string{"1"}) {
			a.used = true
			return true
		}
	}
	return false
}
