package haproxycfg

import (
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/amqplb/amqplb/config"
)

// goTLS is why TLS tuning options are ignored.
const goTLS = "amqplb uses Go's TLS defaults: TLS 1.2 and later, modern ciphers"

// bindIgnored are bind options that make no difference to amqplb, with
// whether they take an argument, and why they are ignored.
var bindIgnored = map[string]struct {
	arg bool
	why string
}{
	"defer-accept": {false, tuning}, "tfo": {false, tuning}, "v4v6": {false, "a wildcard address takes IPv4 and IPv6"},
	"v6only": {false, "a wildcard address takes IPv4 and IPv6"}, "no-sslv3": {false, goTLS}, "no-tlsv10": {false, goTLS},
	"no-tlsv11": {false, goTLS}, "no-tlsv12": {false, goTLS}, "no-tlsv13": {false, goTLS}, "force-tlsv12": {false, goTLS},
	"force-tlsv13": {false, goTLS}, "no-tls-tickets": {false, goTLS}, "prefer-client-ciphers": {false, goTLS},
	"strict-sni": {false, "a client without a matching name gets the first certificate"},
	"allow-0rtt": {false, goTLS}, "no-ca-names": {false, goTLS}, "ssl-min-ver": {true, goTLS}, "ssl-max-ver": {true, goTLS},
	"ciphers": {true, goTLS}, "ciphersuites": {true, goTLS}, "curves": {true, goTLS}, "ecdhe": {true, goTLS},
	"alpn": {true, "AMQP needs no ALPN"}, "npn": {true, "AMQP needs no NPN"}, "sigalgs": {true, goTLS},
	"client-sigalgs": {true, goTLS}, "tls-ticket-keys": {true, goTLS}, "name": {true, "amqplb names frontends after their section"},
	"id": {true, "amqplb names frontends after their section"}, "backlog": {true, tuning}, "process": {true, "amqplb is one process"},
	"thread": {true, "Go schedules on every core"}, "nice": {true, tuning}, "mss": {true, tuning}, "tcp-ut": {true, tuning},
	"level": {true, "for stats sockets"}, "severity-output": {true, "for stats sockets"}, "user": {true, "for UNIX sockets"},
	"group": {true, "for UNIX sockets"}, "uid": {true, "for UNIX sockets"}, "gid": {true, "for UNIX sockets"},
	"mode": {true, "for UNIX sockets"}, "expose-fd": {true, "amqplb hands no sockets over on reload"},
	"ssl_fc": {false, ""}, "shards": {true, tuning}, "idle-ping": {true, tuning},
}

// bindRefused are bind options whose behaviour amqplb cannot give, with
// whether they take an argument.
var bindRefused = map[string]struct {
	arg bool
	why string
}{
	"crt-list":              {true, "certificate lists are not supported; use crt DIR"},
	"crl-file":              {true, "certificate revocation lists are not supported"},
	"ca-verify-file":        {true, "not supported; use ca-file"},
	"ca-sign-file":          {true, "generated certificates are not supported"},
	"ca-sign-pass":          {true, "generated certificates are not supported"},
	"generate-certificates": {false, "generated certificates are not supported"},
	"ca-ignore-err":         {true, "client certificates with errors are refused"},
	"crt-ignore-err":        {true, "client certificates with errors are refused"},
	"transparent":           {false, "transparent proxying is not supported"},
	"interface":             {true, "binding to an interface is not supported; bind its address"},
	"namespace":             {true, "network namespaces are not supported"},
	"quic-cc-algo":          {true, "QUIC is not supported"},
	"proto":                 {true, "only TCP is supported"},
	"verifyhost":            {true, "not supported"},
}

func (p *hapParser) bind(px *hapProxy, d hapDirective) {
	spec, ok := p.arg(d, 1, "an address")
	if !ok {
		return
	}
	b := hapBind{line: d.line}
	var crts []string
	var ca, verify string
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
			if c := next(); c != "" {
				crts = append(crts, c)
			}
		case "ca-file":
			ca = next()
		case "verify":
			switch verify = next(); verify {
			case "none", "optional", "required", "":
			default:
				p.errorf(d.line, "bind option verify %s: expected none, optional or required", verify)
				bad = true
			}
		case "accept-proxy":
			b.acceptProxy = true
		case "maxconn":
			s := next()
			n, ok := p.number(d.line, "bind option maxconn", s)
			if !ok || n < 0 {
				if s != "" {
					p.errorf(d.line, "bind option maxconn needs a whole number, not %q", s)
				}
				bad = true
				continue
			}
			b.maxconn = at(n, d.line)
		default:
			if r, ok := bindRefused[opt]; ok {
				p.errorf(d.line, "bind option %s: %s", opt, r.why)
				bad = true
				if r.arg {
					next()
				}
				continue
			}
			if ig, ok := bindIgnored[opt]; ok {
				if ig.arg {
					next()
				}
				why := ""
				if ig.why != "" {
					why = " (" + ig.why + ")"
				}
				p.warnf(d.line, "ignored: bind option %s%s", opt, why)
				continue
			}
			p.errorf(d.line, "bind option %s is not supported", opt)
			bad = true
		}
	}
	switch {
	case ssl && len(crts) == 1:
		b.tls = &config.TLS{Cert: p.base(p.crtBase, crts[0]), CA: p.base(p.caBase, ca), Verify: config.DefaultTLSVerify}
		if verify != "" {
			b.tls.Verify = verify
		}
	case ssl && len(crts) == 0:
		p.errorf(d.line, "bind %s ssl needs crt FILE (or crt DIR)", spec)
		bad = true
	case ssl:
		p.errorf(d.line, "bind %s: more than one crt: amqplb takes one, a file or a directory of them", spec)
		bad = true
	case len(crts) > 0 || ca != "" || verify != "":
		p.errorf(d.line, "bind %s has TLS options but not ssl", spec)
		bad = true
	}
	for _, a := range strings.Split(spec, ",") {
		nb := b
		addr, err := hapAddr(a)
		switch {
		case err != nil:
			p.errorf(d.line, "bind %v", err)
			addr = ""
		case !strings.Contains(addr, ":"):
			p.errorf(d.line, "bind %s: an address needs a port (e.g. :5672)", a)
			addr = ""
		case bad:
			addr = ""
		}
		nb.addr = addr
		px.binds = append(px.binds, nb)
	}
}

// base puts a relative file name under dir (crt-base, ca-base).
func (p *hapParser) base(dir, file string) string {
	if file == "" || dir == "" || filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(dir, file)
}

// serverIgnored are server options amqplb does without, with whether they
// take an argument, and why.
var serverIgnored = map[string]struct {
	arg bool
	why string
}{
	"id":     {true, "amqplb names servers"},
	"cookie": {true, "no cookie persistence: use balance source for sticky clients"}, "maxqueue": {true, "amqplb has no queue"}, "minconn": {true, "amqplb has no dynamic maxconn"},
	"resolvers":      {true, "amqplb re-resolves host names itself"},
	"resolve-prefer": {true, "amqplb re-resolves host names itself"}, "resolve-opts": {true, "amqplb re-resolves host names itself"},
	"resolve-net": {true, "amqplb re-resolves host names itself"},
	"init-addr":   {true, "amqplb resolves host names when it starts and again before each connection"},
	"observe":     {true, "amqplb counts connection failures itself"}, "on-error": {true, "amqplb counts connection failures itself"},
	"error-limit": {true, "amqplb counts connection failures itself"}, "pool-max-conn": {true, "needs mode http"},
	"pool-purge-delay": {true, "needs mode http"}, "pool-low-conn": {true, "needs mode http"}, "max-reuse": {true, "needs mode http"},
	"tcp-ut": {true, tuning}, "proto": {true, "amqplb speaks TCP to servers"}, "log-proto": {true, "for log servers"},
	"ws":        {true, "needs mode http"},
	"check-sni": {true, "checks use the server's TLS settings"}, "check-alpn": {true, "checks use the server's TLS settings"},
	"check-proto": {true, "checks use the server's TLS settings"}, "check-via-socks4": {false, "SOCKS is not supported"},
	"ssl-min-ver": {true, goTLS}, "ssl-max-ver": {true, goTLS}, "ciphers": {true, goTLS}, "ciphersuites": {true, goTLS},
	"alpn": {true, "AMQP needs no ALPN"}, "npn": {true, "AMQP needs no NPN"}, "curves": {true, goTLS}, "sigalgs": {true, goTLS},
	"client-sigalgs": {true, goTLS}, "ssl-reuse": {false, goTLS}, "no-ssl-reuse": {false, goTLS},
	"non-stick": {false, "stick tables are not used"}, "tfo": {false, tuning}, "no-tls-tickets": {false, goTLS},
	"tls-tickets": {false, goTLS}, "no-sslv3": {false, goTLS}, "no-tlsv10": {false, goTLS}, "no-tlsv11": {false, goTLS},
	"no-tlsv12": {false, goTLS}, "no-tlsv13": {false, goTLS}, "force-tlsv12": {false, goTLS}, "force-tlsv13": {false, goTLS},
	"no-verifyhost": {false, "the name is checked when verify is required"}, "allow-0rtt": {false, goTLS},
	"enabled": {false, "servers are enabled unless disabled"},
	"shard":   {true, tuning}, "hash-key": {true, "amqplb's source balancing has its own hash"},
}

// serverRefused are server options whose behaviour amqplb cannot give,
// with whether they take an argument.
var serverRefused = map[string]struct {
	arg bool
	why string
}{
	"send-proxy-v2-ssl":    {false, "PROXY v2 TLS fields are not supported"},
	"send-proxy-v2-ssl-cn": {false, "PROXY v2 TLS fields are not supported"},
	"proxy-v2-options":     {true, "PROXY v2 options are not supported"},
	"track":                {true, "tracking another server's checks is not supported"},
	"redir":                {true, "needs mode http"},
	"source":               {true, "choosing the source address is not supported"},
	"usesrc":               {true, "choosing the source address is not supported"},
	"namespace":            {true, "network namespaces are not supported"},
	"crl-file":             {true, "certificate revocation lists are not supported"},
	"socks4":               {true, "SOCKS is not supported"},
	"set-proxy-v2-tlv-fmt": {true, "PROXY v2 TLVs are not supported"},
}

var sniStr = regexp.MustCompile(`^str\(([^()]*)\)$`)

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
				n, ok := p.number(d.line, "server option "+opt, s)
				if !ok || n < 0 {
					p.errorf(d.line, "server option %s: invalid number %q", opt, s)
					return
				}
				*dst = at(n, d.line)
			}
		}
		dur := func(dst *val[time.Duration]) {
			if s, ok := next(); ok {
				if t, ok := p.time(d.line, "server option "+opt, s); ok {
					*dst = t
				}
			}
		}
		str := func(dst *val[string]) {
			if s, ok := next(); ok {
				*dst = at(s, d.line)
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
		case "check-send-proxy":
			o.checkSendProxy = at(true, d.line)
		case "no-check-send-proxy":
			// Undocumented in HAProxy 2.6, but parsed: it resets
			// check-send-proxy; checks still send the header that
			// send-proxy implies without port or addr.
			o.checkSendProxy = at(false, d.line)
		case "addr":
			if s, ok := next(); ok {
				o.checkAddr = at(s, d.line)
				p.warnf(d.line, "ignored: server option addr %s (amqplb checks the server's own address; for another port use port); as with addr in HAProxy, checks use TLS or send a PROXY header only with check-ssl or check-send-proxy", s)
			}
		case "ssl":
			o.ssl = at(true, d.line)
		case "no-ssl":
			o.ssl = at(false, d.line)
		case "check-ssl":
			o.checkSSL = at(true, d.line)
		case "no-check-ssl":
			o.checkSSL = at(false, d.line)
		case "verify":
			if s, ok := next(); ok {
				if s != "none" && s != "required" {
					p.errorf(d.line, "server option verify %s: expected none or required", s)
					continue
				}
				o.verify = at(s, d.line)
			}
		case "ca-file":
			str(&o.caFile)
		case "crt":
			str(&o.crt)
		case "verifyhost":
			str(&o.verifyHost)
		case "sni":
			if s, ok := next(); ok {
				m := sniStr.FindStringSubmatch(s)
				if m == nil {
					p.errorf(d.line, "server option sni %s: only sni str(NAME) is supported (a fixed name)", s)
					continue
				}
				o.sni = at(m[1], d.line)
			}
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
		case "port":
			if s, ok := next(); ok {
				n, ok := p.number(d.line, "server option port", s)
				if !ok || n < 1 || n > 65535 {
					p.errorf(d.line, "server option port %s: a port number in 1..65535", s)
					continue
				}
				o.checkPort = at(n, d.line)
			}
		case "agent-check":
			o.agentCheck = at(true, d.line)
		case "no-agent-check":
			o.agentCheck = at(false, d.line)
		case "agent-port":
			if s, ok := next(); ok {
				n, ok := p.number(d.line, "server option agent-port", s)
				if !ok || n < 1 || n > 65535 {
					p.errorf(d.line, "server option agent-port %s: a port number in 1..65535", s)
					continue
				}
				o.agentPort = at(n, d.line)
			}
		case "agent-inter":
			dur(&o.agentInter)
		case "agent-addr":
			str(&o.agentAddr)
		case "agent-send":
			str(&o.agentSend)
		case "on-marked-down":
			if s, ok := next(); ok {
				if s != "shutdown-sessions" {
					p.errorf(d.line, "server option on-marked-down %s is not supported; use shutdown-sessions", s)
					continue
				}
				o.onMarkedDown = at(s, d.line)
			}
		case "on-marked-up":
			if s, ok := next(); ok {
				if s != "shutdown-backup-sessions" {
					p.errorf(d.line, "server option on-marked-up %s is not supported; use shutdown-backup-sessions", s)
					continue
				}
				o.onMarkedUp = at(s, d.line)
			}
		default:
			if r, ok := serverRefused[opt]; ok {
				p.errorf(d.line, "server option %s: %s", opt, r.why)
				if r.arg {
					next()
				}
				continue
			}
			ig, ok := serverIgnored[opt]
			if !ok {
				p.errorf(d.line, "unknown server option %q", opt)
				continue
			}
			if ig.arg {
				if _, ok := next(); !ok {
					continue
				}
			}
			p.warnf(d.line, "ignored: server option %s (%s)", opt, ig.why)
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
	s.portLine = s.opts.checkPort.line
	px.servers = append(px.servers, s)
}

// serverTLS returns the TLS settings of a server, or nil without ssl.
func (p *hapParser) serverTLS(label string, s *hapServer) *config.ServerTLS {
	o := s.opts
	if !o.ssl.v {
		if o.checkSSL.v {
			p.errorf(o.checkSSL.line, "%s: server %q: check-ssl without ssl: amqplb checks speak TLS with the server's tls settings; add ssl, or drop check-ssl", label, s.name)
		}
		for _, l := range []int{o.verify.line, o.caFile.line, o.crt.line, o.sni.line, o.verifyHost.line} {
			if l == s.line {
				p.warnf(l, "%s: server %q: TLS options without ssl are not used (as in HAProxy)", label, s.name)
				break
			}
		}
		return nil
	}
	t := &config.ServerTLS{Verify: config.DefaultServerTLSVerify}
	if p.serverVerify.set() {
		t.Verify = p.serverVerify.v
	}
	if o.verify.set() {
		t.Verify = o.verify.v
	}
	t.CA = p.base(p.caBase, o.caFile.v)
	t.Cert = p.base(p.crtBase, o.crt.v)
	t.ServerName = o.sni.v
	if o.verifyHost.set() {
		if o.sni.set() && o.sni.v != o.verifyHost.v {
			p.warnf(o.verifyHost.line, "%s: server %q: verifyhost %s differs from sni %s: amqplb sends and checks one name, server_name, and takes sni's", label, s.name, o.verifyHost.v, o.sni.v)
		} else {
			t.ServerName = o.verifyHost.v
		}
	}
	if t.Verify == "required" {
		if t.CA == "" {
			p.warnf(o.ssl.line, "%s: server %q: ssl verify required without ca-file: amqplb checks the certificate against the system's CA pool (HAProxy 2.6 refuses this)", label, s.name)
		}
		if t.ServerName == "" {
			// HAProxy checks only the chain when no name is given; so does "chain".
			t.Verify = "chain"
		}
	}
	return t
}
