package haproxycfg

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/amqplb/amqplb/config"
)

// hapResolvers is a resolvers section: the nameservers a server-template asks and how often.
type hapResolvers struct {
	name        string
	line        int
	nameservers []string
	holdValid   val[time.Duration]
	retry       val[time.Duration] // timeout retry
	retries     val[int]           // resolve_retries
}

// hapTemplate is what a server-template line adds to its hapServer.
type hapTemplate struct {
	count     int
	resolvers val[string]
	initAddr  val[string]
}

// resolversSection reads a resolvers section. nameserver, hold valid, timeout retry and
// resolve_retries are used; the other directives are accepted and warned about.
func (p *hapParser) resolversSection(s *hapSection) {
	r := &hapResolvers{name: s.name, line: s.line}
	if p.resolvers == nil {
		p.resolvers = map[string]*hapResolvers{}
	}
	if old, dup := p.resolvers[s.name]; dup {
		p.errorf(s.line, "resolvers %s: already defined at line %d", s.name, old.line)
	}
	p.resolvers[s.name] = r
	for _, d := range s.body {
		switch d.args[0] {
		case "nameserver":
			addr, ok := p.arg(d, 2, "a name and an address")
			if !ok {
				continue
			}
			addr = strings.TrimPrefix(strings.TrimPrefix(addr, "udp@"), "ipv4@")
			if strings.HasPrefix(addr, "tcp@") {
				p.warnf(d.line, "nameserver %s: amqplb asks over UDP (then TCP for long answers), as any resolver", d.args[1])
				addr = strings.TrimPrefix(addr, "tcp@")
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = net.JoinHostPort(addr, "53")
			}
			host, _, _ := net.SplitHostPort(addr)
			if _, err := netip.ParseAddr(host); err != nil {
				p.errorf(d.line, "nameserver %s: %q is not an IP address", d.args[1], d.args[2])
				continue
			}
			r.nameservers = append(r.nameservers, addr)
		case "parse-resolv-conf":
			// No nameserver: the system's resolver, which reads resolv.conf.
		case "hold":
			which, ok := p.arg(d, 1, "a status and a period")
			if !ok {
				continue
			}
			t, ok := p.timeArg(d, 2, "hold "+which)
			if !ok {
				continue
			}
			if which == "valid" {
				r.holdValid = t
			} else {
				p.warnf(d.line, "ignored: hold %s (a failed resolution keeps the servers until one succeeds; a name that no longer exists removes them at once)", which)
			}
		case "resolve_retries":
			if n, ok := p.intArg(d, 1); ok {
				r.retries = n
			}
		case "timeout":
			which, _ := p.arg(d, 1, "resolve or retry and a time")
			switch which {
			case "retry":
				if t, ok := p.timeArg(d, 2, "timeout retry"); ok {
					r.retry = t
				}
			case "resolve":
				p.ignored(d, "a server-template is resolved every hold valid")
			default:
				p.unknown(d, s)
			}
		case "accepted_payload_size", "resolve-opts":
			p.ignored(d, "Go's resolver sets its own")
		default:
			p.unknown(d, s)
		}
	}
}

// serverTemplate reads server-template PREFIX NUM|1-NUM FQDN:PORT [options]: a hapServer that
// build turns into a [[backend.server_template]].
func (p *hapParser) serverTemplate(px *hapProxy, d hapDirective) {
	prefix, ok := p.arg(d, 1, "a prefix, a number and an address")
	if !ok {
		return
	}
	num, ok := p.arg(d, 2, "a number of servers and an address")
	if !ok {
		return
	}
	addr, ok := p.arg(d, 3, "an address")
	if !ok {
		return
	}
	count := 0
	if lo, hi, isRange := strings.Cut(num, "-"); isRange {
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		switch {
		case err1 != nil || err2 != nil || b < a:
			p.errorf(d.line, "server-template %s: invalid range %q", prefix, num)
			return
		case a != 1:
			p.errorf(d.line, "server-template %s: range %q: amqplb numbers a template's servers from 1", prefix, num)
			return
		}
		count = b
	} else if n, err := strconv.Atoi(num); err != nil || n < 1 {
		p.errorf(d.line, "server-template %s: invalid number of servers %q", prefix, num)
		return
	} else {
		count = n
	}
	s := hapServer{name: prefix, line: d.line, opts: px.opts.server, tmpl: &hapTemplate{count: count}}
	a, err := hapAddr(addr)
	if err != nil {
		p.errorf(d.line, "server-template %s: %v", prefix, err)
	}
	s.addr = a
	// resolvers and init-addr mean something here: take them out before the server options.
	args := slices.Clone(d.args[:4])
	for i := 4; i < len(d.args); i++ {
		switch d.args[i] {
		case "resolvers", "init-addr":
			if i+1 >= len(d.args) {
				p.errorf(d.line, "server option %s needs an argument", d.args[i])
				continue
			}
			if d.args[i] == "resolvers" {
				s.tmpl.resolvers = at(d.args[i+1], d.line)
			} else {
				s.tmpl.initAddr = at(d.args[i+1], d.line)
			}
			i++
		default:
			args = append(args, d.args[i])
		}
	}
	p.serverParams(&s.opts, hapDirective{line: d.line, args: args}, 4)
	s.portLine = s.opts.checkPort.line
	if v := s.tmpl.initAddr; v.set() {
		for _, m := range strings.Split(v.v, ",") {
			switch m {
			case "none", "libc":
			case "last":
				p.warnf(d.line, "server-template %s: init-addr last: amqplb keeps no server state file; it resolves the name at start", prefix)
			default:
				p.warnf(d.line, "server-template %s: init-addr %s: amqplb starts with the addresses the name resolves to, none when it does not", prefix, m)
			}
		}
		if !slices.Contains(strings.Split(v.v, ","), "none") {
			p.warnf(d.line, "server-template %s: init-addr %s: when the name does not resolve at start, amqplb starts with no servers (init-addr none) where HAProxy would refuse to start", prefix, v.v)
		}
	}
	px.servers = append(px.servers, s)
}

// templateOf turns server s, a server-template, into the [[backend.server_template]] at path.
func (p *hapParser) templateOf(label, path string, s hapServer, sv config.Server, b *config.Backend) config.ServerTemplate {
	t := config.DefaultServerTemplate()
	t.Prefix, t.Count, t.Address = s.name, s.tmpl.count, s.addr
	t.Weight, t.Backup, t.MaxConnections, t.CheckPort = sv.Weight, sv.Backup, sv.MaxConnections, sv.CheckPort
	for _, k := range []string{"", ".prefix", ".count", ".address"} {
		p.setLine(path+k, s.line)
	}
	for k, ok := range map[string]bool{".weight": s.opts.weight.set(), ".backup": s.opts.backup.set(),
		".max_connections": s.opts.maxconn.set(), ".check_port": s.opts.checkPort.set()} {
		if ok {
			p.setLine(path+k, s.line)
		}
	}
	if s.addr == "" {
		p.bad[path+".address"] = true
	}
	if sv.TLS != nil {
		p.errorf(s.opts.ssl.line, "%s: server-template %s: ssl is not supported on a server-template; write server lines", label, s.name)
	}
	if b.ServerSendProxy(sv) != b.SendProxy {
		p.errorf(s.line, "%s: server-template %s: its send-proxy must be the backend's (that of its first server)", label, s.name)
	}
	if v := s.tmpl.resolvers; v.set() {
		r := p.resolvers[v.v]
		if r == nil {
			p.errorf(v.line, "%s: server-template %s: no resolvers section named %q", label, s.name, v.v)
			return t
		}
		t.Nameservers = slices.Clone(r.nameservers)
		if r.holdValid.set() {
			t.ResolveInterval = r.holdValid.v
			p.setLine(path+".resolve_interval", r.holdValid.line)
		}
		if r.retry.set() || r.retries.set() {
			retry, retries := time.Second, 3 // HAProxy's defaults
			if r.retry.set() {
				retry = r.retry.v
			}
			if r.retries.set() {
				retries = max(r.retries.v, 1)
			}
			t.ResolveTimeout = retry * time.Duration(retries)
			p.setLine(path+".resolve_timeout", max(r.retry.line, r.retries.line))
		}
		if len(t.Nameservers) > 0 {
			p.setLine(path+".nameservers", r.line)
		}
	} else {
		p.warnf(s.line, "%s: server-template %s has no resolvers: amqplb asks the system's resolver every %s (HAProxy resolves it once, at start)",
			label, s.name, config.FormatDuration(t.ResolveInterval))
	}
	return t
}
