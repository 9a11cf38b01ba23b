package config

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ToTOML writes c as an amqplb.toml file that Parse reads back to the same
// Config (File and Warnings aside). Every key is written, defaults included,
// so that the file documents itself; lists and tables that are empty are
// left out. When PasswordEnv is set the password itself is not written.
func ToTOML(c *Config) []byte { return writeTOML(c, nil) }

// Notes are the comments ToAnnotatedTOML writes into a file converted from
// another syntax: where each key came from, and what was said about the
// lines of each section.
type Notes struct {
	// File is the source file that the comments after keys name.
	File string
	// Lines gives the line of File each key comes from, by path (see
	// Lines.Of; only a path's own line, not an enclosing one's, is used).
	// A key without one gets no comment.
	Lines *Lines
	// Before maps a table's path ("global", "frontend.0",
	// "backend.1.health_check") to the comment lines written before its
	// header.
	Before map[string][]string
	// Header are the comment lines at the top of the file.
	Header []string
}

// ToAnnotatedTOML is ToTOML with the comments n gives; an empty comment
// line is written as a bare "#".
func ToAnnotatedTOML(c *Config, n *Notes) []byte { return writeTOML(c, n) }

type tomlWriter struct {
	buf   bytes.Buffer
	notes *Notes
	path  string // of the table being written
}

func writeTOML(c *Config, n *Notes) []byte {
	w := &tomlWriter{notes: n}
	if n != nil {
		for _, l := range n.Header {
			w.comment(l)
		}
	}
	g := c.Global
	w.table("[global]", "global")
	w.int("max_connections", g.MaxConnections)
	w.duration("drain_timeout", g.DrainTimeout)
	w.str("log_level", g.LogLevel)
	w.str("log_format", g.LogFormat)
	w.bool("access_log", g.AccessLog)
	if g.User != "" {
		w.str("user", g.User)
	}
	if g.Group != "" {
		w.str("group", g.Group)
	}
	if len(g.Log) > 0 {
		w.array("log", len(g.Log), func(i int) string {
			t := g.Log[i]
			return inline("address", tomlQuote(t.Address), "facility", tomlQuote(t.Facility), "level", tomlQuote(t.Level))
		})
	}

	w.table("[admin]", "admin")
	w.str("listen", c.Admin.Listen)
	w.str("token", c.Admin.Token)

	for i, s := range c.Stats {
		w.table("[[stats]]", fmt.Sprintf("stats.%d", i))
		w.str("name", s.Name)
		w.str("bind", s.Bind)
		w.str("uri", s.URI)
		if len(s.Auth) > 0 {
			w.line("auth", quoteList(s.Auth))
		}
		w.str("realm", s.Realm)
		w.duration("refresh", s.Refresh)
		w.bool("hide_version", s.HideVersion)
		w.str("metrics", s.Metrics)
	}

	for i, f := range c.Frontends {
		w.table("[[frontend]]", fmt.Sprintf("frontend.%d", i))
		w.str("name", f.Name)
		w.str("bind", f.Bind)
		w.str("backend", f.Backend)
		w.str("mode", f.Mode)
		w.int("max_connections", f.MaxConnections)
		if t := f.TLS; t != nil {
			w.line("tls", inline("cert", tomlQuote(t.Cert), "key", tomlQuote(t.Key), "ca", tomlQuote(t.CA), "verify", tomlQuote(t.Verify)))
		}
		w.bool("accept_proxy", f.AcceptProxy)
		w.bool("dont_log_null", f.DontLogNull)
		if len(f.ACL) > 0 {
			names := make([]string, 0, len(f.ACL))
			for k := range f.ACL {
				names = append(names, k)
			}
			slices.Sort(names)
			w.buf.WriteString("acl = {")
			for k, name := range names {
				if k > 0 {
					w.buf.WriteByte(',')
				}
				fmt.Fprintf(&w.buf, " %s = %s", tomlKey(name), quoteList(f.ACL[name]))
			}
			w.buf.WriteString(" }")
			w.note("acl")
		}
		if len(f.TCPRequest) > 0 {
			w.array("tcp_request", len(f.TCPRequest), func(i int) string {
				r := f.TCPRequest[i]
				kv := []string{"layer", tomlQuote(r.Layer), "action", tomlQuote(r.Action)}
				if r.If != "" {
					kv = append(kv, "if", tomlQuote(r.If))
				}
				if r.Unless != "" {
					kv = append(kv, "unless", tomlQuote(r.Unless))
				}
				return inline(kv...)
			})
		}
	}

	for i, b := range c.Backends {
		bpath := fmt.Sprintf("backend.%d", i)
		w.table("[[backend]]", bpath)
		w.str("name", b.Name)
		w.str("balance", b.Balance)
		w.duration("connect_timeout", b.ConnectTimeout)
		w.int("retries", b.Retries)
		w.bool("redispatch", b.Redispatch)
		w.duration("idle_timeout", b.IdleTimeout)
		w.duration("tcp_keepalive", b.TCPKeepalive)
		w.str("send_proxy", b.SendProxy)
		w.str("on_marked_down", b.OnMarkedDown)
		w.str("on_marked_up", b.OnMarkedUp)
		w.duration("half_close_timeout", b.HalfCloseTimeout)
		w.duration("slowstart", b.Slowstart)

		h := b.HealthCheck
		w.table("[backend.health_check]", bpath+".health_check")
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
		if len(h.TCPCheck) > 0 {
			w.array("tcp_check", len(h.TCPCheck), func(i int) string {
				st := h.TCPCheck[i]
				kv := []string{"action", tomlQuote(st.Action)}
				if st.Data != "" {
					kv = append(kv, "data", tomlQuote(st.Data))
				}
				if st.Match != "" {
					kv = append(kv, "match", tomlQuote(st.Match))
				}
				if st.Pattern != "" {
					kv = append(kv, "pattern", tomlQuote(st.Pattern))
				}
				if st.Negate {
					kv = append(kv, "negate", "true")
				}
				return inline(kv...)
			})
		}

		for j, s := range b.Servers {
			w.table("[[backend.server]]", fmt.Sprintf("%s.server.%d", bpath, j))
			w.str("name", s.Name)
			w.str("address", s.Address)
			w.int("weight", s.Weight)
			w.bool("backup", s.Backup)
			w.int("max_connections", s.MaxConnections)
			w.int("check_port", s.CheckPort)
			if t := s.TLS; t != nil {
				w.line("tls", inline("verify", tomlQuote(t.Verify), "ca", tomlQuote(t.CA), "server_name", tomlQuote(t.ServerName),
					"cert", tomlQuote(t.Cert), "key", tomlQuote(t.Key)))
			}
			w.bool("check_tls", s.CheckTLS)
			w.bool("check_send_proxy", s.CheckSendProxy)
		}
	}
	return w.buf.Bytes()
}

// table starts a table whose key path is path.
func (w *tomlWriter) table(header, path string) {
	if w.buf.Len() > 0 {
		w.buf.WriteByte('\n')
	}
	w.path = path
	if w.notes != nil {
		for _, l := range w.notes.Before[path] {
			w.comment(l)
		}
	}
	w.buf.WriteString(header)
	w.note("")
}

func (w *tomlWriter) comment(s string) {
	if s == "" {
		w.buf.WriteString("#\n")
		return
	}
	for _, l := range strings.Split(s, "\n") {
		w.buf.WriteString("# " + commentText(l) + "\n")
	}
}

// commentText makes s fit in a TOML comment: UTF-8, no control characters
// but tabs. Messages quote words of the source, which may have any bytes.
func commentText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return '\uFFFD'
		}
		return r
	}, s)
}

// note ends a line, with a comment naming the source line of key (of the
// table itself when key is "") when known.
func (w *tomlWriter) note(key string) {
	if w.notes != nil {
		if l := w.notes.Lines.own(joinPath(w.path, key)); l > 0 {
			fmt.Fprintf(&w.buf, "  # %s:%d", w.notes.File, l)
		}
	}
	w.buf.WriteByte('\n')
}

func (w *tomlWriter) line(key, value string) {
	fmt.Fprintf(&w.buf, "%s = %s", key, value)
	w.note(key)
}

// array writes an array of n inline tables, one per line.
func (w *tomlWriter) array(key string, n int, elem func(i int) string) {
	fmt.Fprintf(&w.buf, "%s = [", key)
	w.note(key)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&w.buf, "  %s,", elem(i))
		w.note(fmt.Sprintf("%s.%d", key, i))
	}
	w.buf.WriteString("]\n")
}

// str writes s as a TOML basic string.
func (w *tomlWriter) str(key, s string) { w.line(key, tomlQuote(s)) }

func (w *tomlWriter) int(key string, n int)   { w.line(key, strconv.Itoa(n)) }
func (w *tomlWriter) bool(key string, b bool) { w.line(key, strconv.FormatBool(b)) }
func (w *tomlWriter) duration(key string, d time.Duration) {
	w.line(key, strconv.Quote(FormatDuration(d)))
}

// inline writes an inline table of key, value pairs (values already in
// TOML).
func inline(kv ...string) string {
	parts := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" = "+kv[i+1])
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = tomlQuote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// tomlKey writes k as a TOML key: bare when it can be, quoted otherwise.
func tomlKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBareKeyChar(k[i]) {
			return tomlQuote(k)
		}
	}
	return k
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
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
