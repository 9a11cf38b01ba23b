package config

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// ToTOML writes c as an amqplb.toml file that Parse reads back to the same
// Config (File and Warnings aside). Every key is written, defaults included,
// so that the file documents itself. When PasswordEnv is set the password
// itself is not written.
func ToTOML(c *Config) []byte {
	w := &tomlWriter{}
	g := c.Global
	w.table("[global]")
	w.int("max_connections", g.MaxConnections)
	w.duration("drain_timeout", g.DrainTimeout)
	w.str("log_level", g.LogLevel)
	w.str("log_format", g.LogFormat)
	w.bool("access_log", g.AccessLog)

	w.table("[admin]")
	w.str("listen", c.Admin.Listen)
	w.str("token", c.Admin.Token)

	for _, f := range c.Frontends {
		w.table("[[frontend]]")
		w.str("name", f.Name)
		w.str("bind", f.Bind)
		w.str("backend", f.Backend)
		w.str("mode", f.Mode)
		w.int("max_connections", f.MaxConnections)
		if f.TLS != nil {
			w.line("tls", fmt.Sprintf("{ cert = %s, key = %s }", strconv.Quote(f.TLS.Cert), strconv.Quote(f.TLS.Key)))
		}
		w.bool("accept_proxy", f.AcceptProxy)
	}

	for _, b := range c.Backends {
		w.table("[[backend]]")
		w.str("name", b.Name)
		w.str("balance", b.Balance)
		w.duration("connect_timeout", b.ConnectTimeout)
		w.int("retries", b.Retries)
		w.bool("redispatch", b.Redispatch)
		w.duration("idle_timeout", b.IdleTimeout)
		w.duration("tcp_keepalive", b.TCPKeepalive)
		w.str("send_proxy", b.SendProxy)
		w.str("on_marked_down", b.OnMarkedDown)
		w.duration("slowstart", b.Slowstart)

		h := b.HealthCheck
		w.table("[backend.health_check]")
		w.str("type", h.Type)
		w.duration("interval", h.Interval)
		w.duration("fast_interval", h.FastInterval)
		w.duration("down_interval", h.DownInterval)
		w.duration("timeout", h.Timeout)
		w.int("rise", h.Rise)
		w.int("fall", h.Fall)
		w.str("vhost", h.VHost)
		w.str("username", h.Username)
		if h.PasswordEnv != "" {
			w.str("password_env", h.PasswordEnv)
		} else {
			w.str("password", h.Password)
		}
		if m := h.Management; m != nil {
			w.line("management", fmt.Sprintf("{ port = %d, alarms = %t, eject_on_alarm = %t }", m.Port, m.Alarms, m.EjectOnAlarm))
		}

		for _, s := range b.Servers {
			w.table("[[backend.server]]")
			w.str("name", s.Name)
			w.str("address", s.Address)
			w.int("weight", s.Weight)
			w.bool("backup", s.Backup)
			w.int("max_connections", s.MaxConnections)
		}
	}
	return w.buf.Bytes()
}

type tomlWriter struct{ buf bytes.Buffer }

func (w *tomlWriter) table(header string) {
	if w.buf.Len() > 0 {
		w.buf.WriteByte('\n')
	}
	w.buf.WriteString(header + "\n")
}

func (w *tomlWriter) line(key, value string) { fmt.Fprintf(&w.buf, "%s = %s\n", key, value) }

// str writes s as a TOML basic string.
func (w *tomlWriter) str(key, s string) { w.line(key, tomlQuote(s)) }

func (w *tomlWriter) int(key string, n int)   { w.line(key, strconv.Itoa(n)) }
func (w *tomlWriter) bool(key string, b bool) { w.line(key, strconv.FormatBool(b)) }
func (w *tomlWriter) duration(key string, d time.Duration) {
	w.line(key, strconv.Quote(formatDuration(d)))
}

// tomlQuote quotes s as a TOML basic string. strconv.Quote is not used
// because its \x escapes are not TOML 1.0.
func tomlQuote(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
