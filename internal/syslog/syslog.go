// Package syslog owns amqplb's logging to syslog daemons: a slog.Handler that sends each
// record as one RFC 3164 line in a datagram (UDP to host:port, or a local unix datagram socket
// such as /dev/log), as HAProxy's `log ADDR [FACILITY [LEVEL]]` does, and Multi, which fans
// records out to several handlers (standard error and every log target).
//
// It imports only the standard library. A Handler never blocks its caller for long and never
// fails a log call: a datagram that cannot be sent is dropped and counted (Drops).
package syslog

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Facilities are the syslog facility names in code order (kern is 0, local7 is 23), as
// HAProxy lists them.
var Facilities = []string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "auth2", "ftp", "ntp", "audit", "alert", "cron2",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// Levels are the syslog severity names in code order (emerg is 0, debug is 7).
var Levels = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// Severities of the slog levels.
const (
	sevErr     = 3
	sevWarning = 4
	sevInfo    = 6
	sevDebug   = 7
)

// DefaultFacility and DefaultLevel apply when New gets empty names: local0, and every
// severity (HAProxy's defaults for a `log ADDR` line without them).
const (
	DefaultFacility = "local0"
	DefaultLevel    = "debug"
)

// DefaultPort is the port of an address given without one.
const DefaultPort = "514"

// MaxLine is the longest line sent, in bytes, header included (HAProxy's default `len`, the
// limit of RFC 3164); longer lines are cut.
const MaxLine = 1024

// Tag is the program name in each line.
const Tag = "amqplb"

// writeTimeout bounds one send: a full socket buffer drops the line rather than hold up the
// goroutine that logs (often a session's).
const writeTimeout = 50 * time.Millisecond

// ParseFacility returns the code of a facility name (see Facilities).
func ParseFacility(name string) (int, error) {
	for i, f := range Facilities {
		if name == f {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown syslog facility %q (want one of %s)", name, strings.Join(Facilities, " "))
}

// ParseLevel returns the code of a severity name (see Levels).
func ParseLevel(name string) (int, error) {
	for i, l := range Levels {
		if name == l {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown syslog level %q (want one of %s)", name, strings.Join(Levels, " "))
}

// Severity returns the syslog severity of an slog level: debug below Info, info below Warn,
// warning below Error, err from Error up.
func Severity(l slog.Level) int {
	switch {
	case l < slog.LevelInfo:
		return sevDebug
	case l < slog.LevelWarn:
		return sevInfo
	case l < slog.LevelError:
		return sevWarning
	default:
		return sevErr
	}
}

// Handler is an slog.Handler that sends records to a syslog daemon. Build it with New; the
// handlers that WithAttrs and WithGroup return share its socket and its drop count. It is
// safe for concurrent use.
type Handler struct {
	out    *sender
	attrs  string // preformatted " key=value" of WithAttrs, with their groups
	prefix string // the open groups, "g1.g2." for the keys that follow
}

// sender is the part of a Handler that its derived handlers share.
type sender struct {
	conn     net.Conn
	facility int
	level    int    // the least severe severity sent
	host     string // " HOSTNAME", empty on a local socket
	pid      string
	drops    atomic.Uint64
}

// New returns a Handler sending to address: host:port over UDP (port 514 when missing;
// "udp4@"/"ipv4@" or "udp6@"/"ipv6@" choose the family, "udp@" is accepted), or the path of a
// unix datagram socket ("/dev/log"; "unix@" is accepted). facility and level are names from
// Facilities and Levels; empty means DefaultFacility and DefaultLevel. The address is resolved
// once, here.
func New(address, facility, level string) (*Handler, error) {
	if facility == "" {
		facility = DefaultFacility
	}
	if level == "" {
		level = DefaultLevel
	}
	fac, err := ParseFacility(facility)
	if err != nil {
		return nil, err
	}
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	network, addr, err := splitAddress(address)
	if err != nil {
		return nil, err
	}
	s := &sender{facility: fac, level: lvl, pid: strconv.Itoa(os.Getpid())}
	if network == "unixgram" {
		s.conn, err = net.Dial(network, addr)
	} else {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr(network, addr); err == nil {
			s.conn, err = net.DialUDP(network, nil, ua)
		}
		s.host = " " + hostname()
	}
	if err != nil {
		return nil, fmt.Errorf("syslog %s: %w", address, err)
	}
	return &Handler{out: s}, nil
}

// splitAddress returns the network and address to dial for a log target.
func splitAddress(address string) (network, addr string, err error) {
	network, addr = "udp", address
	if p, rest, ok := strings.Cut(address, "@"); ok {
		switch p {
		case "udp":
		case "udp4", "ipv4":
			network = "udp4"
		case "udp6", "ipv6":
			network = "udp6"
		case "unix":
			network = "unixgram"
		default:
			return "", "", fmt.Errorf("syslog address %q: unknown prefix %q (want udp@, udp4@, udp6@, ipv4@, ipv6@ or unix@)", address, p+"@")
		}
		addr = rest
	}
	if strings.HasPrefix(addr, "/") {
		return "unixgram", addr, nil
	}
	if network == "unixgram" {
		return "", "", fmt.Errorf("syslog address %q: a unix socket wants an absolute path", address)
	}
	if addr == "" {
		return "", "", fmt.Errorf("syslog address %q: no host", address)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		// No port: a host name, an IPv4 address, or an IPv6 one with or without brackets.
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), DefaultPort)
	}
	return network, addr, nil
}

// hostname returns this machine's name without its domain, as RFC 3164 wants it.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	return h
}

// Close closes the socket. Records handled afterwards are dropped.
func (h *Handler) Close() error { return h.out.conn.Close() }

// Drops returns how many lines could not be sent, by this handler and those derived from it.
func (h *Handler) Drops() uint64 { return h.out.drops.Load() }

// Enabled reports whether records of level l are at least as severe as the handler's level.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return Severity(l) <= h.out.level
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	b := []byte(h.attrs)
	for _, a := range attrs {
		b = appendAttr(b, h.prefix, a)
	}
	h2 := *h
	h2.attrs = string(b)
	return &h2
}

// WithGroup returns a handler that qualifies the keys of the attributes that follow with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxLine); return &b }}

// Handle sends r as one line: <PRI>Mmm dd hh:mm:ss HOSTNAME amqplb[PID]: msg key=value...
// It returns nil even when the line is dropped: logging must not fail the caller.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	if Severity(r.Level) > h.out.level {
		return nil
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b := (*bp)[:0]

	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(h.out.facility*8+Severity(r.Level)), 10)
	b = append(b, '>')
	b = t.Local().AppendFormat(b, time.Stamp)
	b = append(b, h.out.host...)
	b = append(b, ' ')
	b = append(b, Tag...)
	b = append(b, '[')
	b = append(b, h.out.pid...)
	b = append(b, "]: "...)
	b = appendMessage(b, r.Message)
	b = append(b, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		b = appendAttr(b, h.prefix, a)
		return true
	})
	if len(b) > MaxLine {
		b = trimPartialRune(b[:MaxLine])
	}
	*bp = b

	c := h.out.conn
	if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		h.out.drops.Add(1)
		return nil
	}
	if _, err := c.Write(b); err != nil {
		h.out.drops.Add(1)
	}
	return nil
}

// trimPartialRune drops an incomplete UTF-8 sequence that cutting b left at its end.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

// appendMessage appends msg on one line: line breaks and other control characters become
// spaces, since a syslog line ends at the first of them in many daemons.
func appendMessage(b []byte, msg string) []byte {
	for _, r := range msg {
		if unicode.IsControl(r) {
			r = ' '
		}
		b = utf8.AppendRune(b, r)
	}
	return b
}

// appendAttr appends " key=value" for a (with the group prefix), the way slog's text handler
// writes it: groups flattened to "group.key", values quoted when they need it, empty
// attributes left out.
func appendAttr(b []byte, prefix string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return b
		}
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range attrs {
			b = appendAttr(b, prefix, ga)
		}
		return b
	}
	b = append(b, ' ')
	b = appendString(b, prefix+a.Key)
	b = append(b, '=')
	if a.Value.Kind() == slog.KindTime {
		return appendString(b, a.Value.Time().Format(time.RFC3339Nano))
	}
	return appendString(b, a.Value.String())
}

// appendString appends s, quoted when it is empty or holds a space, '=', '"' or a character
// that does not print.
func appendString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == ' ' || r == '=' || r == '"' || r == utf8.RuneError || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// Multi returns a handler that passes each record to every handler of handlers that is
// enabled for its level (slog.NewMultiHandler), leaving out nil ones; with a single handler it
// returns that handler.
func Multi(handlers ...slog.Handler) slog.Handler {
	hs := make([]slog.Handler, 0, len(handlers))
	for _, h := range handlers {
		if h != nil {
			hs = append(hs, h)
		}
	}
	if len(hs) == 1 {
		return hs[0]
	}
	return slog.NewMultiHandler(hs...)
}
