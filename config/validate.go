package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validate checks the decoded c, reporting to p with the lines from lines
// (see keyLines; nil when the config did not come from TOML). bad holds the
// paths the decoder has already reported.
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
	if c.Admin.Listen != "" {
		if a, ok := v.hostPort(v.line("admin.listen"), "admin", "listen", c.Admin.Listen, false); ok {
			binds = append(binds, bindUse{addr: a, raw: c.Admin.Listen, owner: "admin.listen"})
		}
	}
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
			owner := label
			for _, b := range binds {
				if b.addr.conflicts(a) {
					if b.addr == a {
						p.errorf(v.line(path+".bind"), "%s: bind %s is already used by %s", label, f.Bind, b.owner)
					} else {
						p.errorf(v.line(path+".bind"), "%s: bind %s overlaps %s of %s", label, f.Bind, b.raw, b.owner)
					}
					break
				}
			}
			binds = append(binds, bindUse{addr: a, raw: f.Bind, owner: owner})
		}
		if f.Backend == "" && !v.bad[path+".backend"] {
			p.errorf(v.line(path), "%s: backend is required", label)
		} else if _, ok := backends[f.Backend]; !ok && f.Backend != "" {
			p.errorf(v.line(path+".backend"), "%s: backend %q is not defined", label, f.Backend)
		} else {
			used[f.Backend] = true
		}
		v.oneOf(path+".mode", label, "mode", f.Mode, modes)
		v.notNegative(path+".max_connections", label, "max_connections", f.MaxConnections)
		if t := f.TLS; t != nil {
			l := v.line(path + ".tls")
			switch {
			case t.Cert == "" && t.Key == "":
				p.errorf(l, "%s: tls: cert and key are required", label)
			case t.Key == "":
				p.errorf(l, "%s: tls: key is required when cert is set", label)
			case t.Cert == "":
				p.errorf(l, "%s: tls: cert is required when key is set", label)
			}
		}
	}
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

func (v *validator) global(c *Config) {
	g := &c.Global
	v.notNegative("global.max_connections", "global", "max_connections", g.MaxConnections)
	v.notNegativeDuration("global.drain_timeout", "global", "drain_timeout", g.DrainTimeout)
	v.oneOf("global.log_level", "global", "log_level", g.LogLevel, logLevels)
	v.oneOf("global.log_format", "global", "log_format", g.LogFormat, logFormats)
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
	v.notNegativeDuration(path+".idle_timeout", label, "idle_timeout", b.IdleTimeout)
	v.notNegativeDuration(path+".tcp_keepalive", label, "tcp_keepalive", b.TCPKeepalive)
	v.oneOf(path+".send_proxy", label, "send_proxy", b.SendProxy, sendProxies)
	v.oneOf(path+".on_marked_down", label, "on_marked_down", b.OnMarkedDown, onMarkedDowns)
	v.notNegativeDuration(path+".slowstart", label, "slowstart", b.Slowstart)
	if b.IdleTimeout > 0 && b.IdleTimeout < 2*AMQPHeartbeat {
		v.warnf(v.line(path+".idle_timeout"), "%s: idle_timeout %s is shorter than twice the %s AMQP heartbeat; idle clients will be cut",
			label, formatDuration(b.IdleTimeout), formatDuration(AMQPHeartbeat))
	}
	v.healthCheck(path+".health_check", label, &b.HealthCheck)

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
	}
	switch len(b.Servers) {
	case 0:
		v.warnf(v.line(path), "%s has no servers; its frontends will refuse every connection", label)
	case 1:
		v.warnf(v.line(path), "%s has only one server; there is nothing to fail over to", label)
	}
}

func (v *validator) healthCheck(path, backendLabel string, h *HealthCheck) {
	label := backendLabel + ": health_check"
	if !v.oneOf(path+".type", label, "type", h.Type, checkTypes) {
		return
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

// oneOf reports whether s is allowed, reporting it if not.
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
		v.errorf(v.line(path), "%s: %s %s must not be negative", label, key, formatDuration(d))
	}
}

func (v *validator) positiveDuration(path, label, key string, d time.Duration) {
	if d <= 0 {
		v.errorf(v.line(path), "%s: %s must be greater than 0, not %s", label, key, formatDuration(d))
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

// formatDuration writes d as a TOML duration string would: "1m", not "1m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
