package syslog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// listen returns a UDP socket on 127.0.0.1 and a function that reads the next datagram (or
// fails the test after a second).
func listen(t *testing.T) (string, func() string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String(), reader(t, pc)
}

func reader(t *testing.T, pc net.PacketConn) func() string {
	return func() string {
		t.Helper()
		buf := make([]byte, 64<<10)
		pc.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no datagram: %v", err)
		}
		return string(buf[:n])
	}
}

func newHandler(t *testing.T, addr, facility, level string) *Handler {
	t.Helper()
	h, err := New(addr, facility, level)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

var lineRE = regexp.MustCompile(`^<(\d+)>([A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d) (\S+) amqplb\[(\d+)\]: (.*)$`)

// parse splits a line into PRI, timestamp, host, pid and the message with its attributes.
func parse(t *testing.T, line string) (pri int, stamp, host, pid, rest string) {
	t.Helper()
	m := lineRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not an RFC 3164 line: %q", line)
	}
	pri, _ = strconv.Atoi(m[1])
	return pri, m[2], m[3], m[4], m[5]
}

func TestLineFormat(t *testing.T) {
	addr, next := listen(t)
	h := newHandler(t, addr, "local0", "info")
	log := slog.New(h)

	at := time.Date(2026, 3, 7, 9, 5, 3, 0, time.Local)
	r := slog.NewRecord(at, slog.LevelInfo, "session closed", 0)
	r.AddAttrs(slog.String("frontend", "amqp"), slog.Int("bytes", 1234), slog.Duration("took", 1500*time.Millisecond),
		slog.String("reason", "client closed"), slog.String("empty", ""), slog.Bool("ok", true),
		slog.Any("err", errors.New("read: connection reset")))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	line := next()
	pri, stamp, host, pid, rest := parse(t, line)
	if pri != 16*8+6 {
		t.Errorf("PRI = %d, want %d (local0.info)", pri, 16*8+6)
	}
	if stamp != "Mar  7 09:05:03" {
		t.Errorf("timestamp = %q, want %q", stamp, "Mar  7 09:05:03")
	}
	if want := hostname(); host != want || strings.Contains(host, ".") {
		t.Errorf("host = %q, want %q without a domain", host, want)
	}
	if pid != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid = %s, want %d", pid, os.Getpid())
	}
	want := `session closed frontend=amqp bytes=1234 took=1.5s reason="client closed" empty="" ok=true err="read: connection reset"`
	if rest != want {
		t.Errorf("message =\n%s\nwant\n%s", rest, want)
	}

	// Severities of the four slog levels, and attributes from With and groups.
	sub := log.With("component", "admin").WithGroup("req")
	for _, c := range []struct {
		level slog.Level
		sev   int
	}{{slog.LevelInfo, 6}, {slog.LevelWarn, 4}, {slog.LevelError, 3}, {slog.LevelError + 4, 3}} {
		sub.Log(context.Background(), c.level, "multi\nline", "path", "/x", slog.Group("g", "a", 1))
		pri, _, _, _, rest := parse(t, next())
		if pri != 16*8+c.sev {
			t.Errorf("level %v: PRI %d, want %d", c.level, pri, 16*8+c.sev)
		}
		if want := "multi line component=admin req.path=/x req.g.a=1"; rest != want {
			t.Errorf("level %v: message %q, want %q", c.level, rest, want)
		}
	}
}

func TestFacilityAndLevelFilter(t *testing.T) {
	addr, next := listen(t)
	for _, c := range []struct {
		facility, level string
		code            int
		pass, drop      []slog.Level
	}{
		{"kern", "debug", 0, []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}, nil},
		{"daemon", "info", 3, []slog.Level{slog.LevelInfo, slog.LevelWarn, slog.LevelError}, []slog.Level{slog.LevelDebug}},
		{"local7", "notice", 23, []slog.Level{slog.LevelWarn, slog.LevelError}, []slog.Level{slog.LevelDebug, slog.LevelInfo}},
		{"auth2", "warning", 10, []slog.Level{slog.LevelWarn, slog.LevelError}, []slog.Level{slog.LevelDebug, slog.LevelInfo}},
		{"user", "err", 1, []slog.Level{slog.LevelError}, []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn}},
		{"local0", "crit", 16, nil, []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}},
		{"", "", 16, []slog.Level{slog.LevelDebug}, nil}, // defaults: local0, everything
	} {
		h := newHandler(t, addr, c.facility, c.level)
		log := slog.New(h)
		for _, l := range c.drop {
			if h.Enabled(context.Background(), l) {
				t.Errorf("%s.%s: %v enabled", c.facility, c.level, l)
			}
			h.Handle(context.Background(), slog.NewRecord(time.Now(), l, "dropped", 0)) // filtered here too
		}
		for _, l := range c.pass {
			if !h.Enabled(context.Background(), l) {
				t.Errorf("%s.%s: %v not enabled", c.facility, c.level, l)
			}
			log.Log(context.Background(), l, "kept")
			pri, _, _, _, rest := parse(t, next())
			if want := c.code*8 + Severity(l); pri != want || rest != "kept" {
				t.Errorf("%s.%s: %v sent as <%d> %q, want <%d> kept", c.facility, c.level, l, pri, rest, want)
			}
		}
	}
	// Nothing else arrived: the dropped records were not sent.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer pc.Close()
	h := newHandler(t, pc.LocalAddr().String(), "local0", "err")
	h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelWarn, "dropped", 0))
	h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelError, "sent", 0))
	if _, _, _, _, rest := parse(t, reader(t, pc)()); rest != "sent" {
		t.Errorf("first datagram = %q, want the error record only", rest)
	}
}

func TestNames(t *testing.T) {
	if len(Facilities) != 24 || Facilities[16] != "local0" || Facilities[15] != "cron2" {
		t.Errorf("facilities = %v", Facilities)
	}
	for i, l := range Levels {
		if n, err := ParseLevel(l); err != nil || n != i {
			t.Errorf("ParseLevel(%q) = %d, %v", l, n, err)
		}
	}
	addr, _ := listen(t)
	for _, c := range []struct{ facility, level string }{
		{"local8", "info"}, {"LOCAL0", "info"}, {"local0", "warn"}, {"local0", "error"}, {"local0", "information"}, {"bogus", ""},
	} {
		if h, err := New(addr, c.facility, c.level); err == nil {
			h.Close()
			t.Errorf("New(%q, %q) accepted", c.facility, c.level)
		} else if !strings.Contains(err.Error(), "unknown syslog") {
			t.Errorf("New(%q, %q): %v", c.facility, c.level, err)
		}
	}
	for _, a := range []string{"", "tcp@127.0.0.1:514", "127.0.0.1:notaport", "unix@relative/path", "no-such-host.invalid:514"} {
		if h, err := New(a, "", ""); err == nil {
			h.Close()
			t.Errorf("New(%q) accepted", a)
		}
	}
}

func TestAddressForms(t *testing.T) {
	for _, c := range []struct{ in, network, addr string }{
		{"127.0.0.1:514", "udp", "127.0.0.1:514"},
		{"127.0.0.1", "udp", "127.0.0.1:514"},
		{"localhost", "udp", "localhost:514"},
		{"[::1]:1514", "udp", "[::1]:1514"},
		{"::1", "udp", "[::1]:514"},
		{"[::1]", "udp", "[::1]:514"},
		{"udp@10.0.0.1:514", "udp", "10.0.0.1:514"},
		{"ipv4@10.0.0.1", "udp4", "10.0.0.1:514"},
		{"udp6@[::1]:514", "udp6", "[::1]:514"},
		{"/dev/log", "unixgram", "/dev/log"},
		{"unix@/dev/log", "unixgram", "/dev/log"},
	} {
		network, addr, err := splitAddress(c.in)
		if err != nil || network != c.network || addr != c.addr {
			t.Errorf("splitAddress(%q) = %s %s %v, want %s %s", c.in, network, addr, err, c.network, c.addr)
		}
	}
}

// A local socket (/dev/log) gets lines without the host name, as syslog(3) writes them.
func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	pc, err := net.ListenPacket("unixgram", path)
	if err != nil {
		t.Fatalf("unix datagram socket: %v", err)
	}
	defer pc.Close()
	h := newHandler(t, path, "daemon", "")
	slog.New(h).Warn("hello", "k", "v")
	line := reader(t, pc)()
	if !regexp.MustCompile(`^<28>[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d amqplb\[\d+\]: hello k=v$`).MatchString(line) {
		t.Errorf("line = %q", line)
	}
}

func TestLongLineCut(t *testing.T) {
	addr, next := listen(t)
	h := newHandler(t, addr, "", "")
	slog.New(h).Info(strings.Repeat("é", MaxLine)) // two bytes a rune: the cut falls inside one
	line := next()
	if len(line) > MaxLine || len(line) < MaxLine-1 || !utf8.ValidString(line) {
		t.Errorf("long line: %d bytes, valid UTF-8 %v", len(line), utf8.ValidString(line))
	}
}

// Sends that fail are counted, never returned and never block: nothing listens on the port,
// and the socket is closed.
func TestDropsCounted(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close() // ICMP port unreachable makes later writes fail
	h := newHandler(t, addr, "", "")
	log := slog.New(h)
	start := time.Now()
	for i := range 20 {
		log.Info("into the void", "i", i)
	}
	if h.Drops() == 0 {
		t.Error("no drop counted while nothing listens")
	}
	h.Close()
	before := h.Drops()
	if err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelError, "after close", 0)); err != nil {
		t.Errorf("Handle after Close = %v, want nil", err)
	}
	if h.Drops() != before+1 {
		t.Errorf("drops after Close = %d, want %d", h.Drops(), before+1)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("22 failing sends took %v", d)
	}
}

func TestMulti(t *testing.T) {
	addr, next := listen(t)
	sl := newHandler(t, addr, "local0", "warning")
	var buf bytes.Buffer
	text := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})

	if Multi(nil, text) != slog.Handler(text) {
		t.Error("Multi of one handler is not that handler")
	}
	m := Multi(text, sl, nil)
	for _, c := range []struct {
		l    slog.Level
		want bool
	}{{slog.LevelDebug, false}, {slog.LevelInfo, true}, {slog.LevelError, true}} {
		if got := m.Enabled(context.Background(), c.l); got != c.want {
			t.Errorf("Enabled(%v) = %v", c.l, got)
		}
	}
	log := slog.New(m).With("component", "proxy")
	log.Info("only text")
	log.Warn("both", "n", 1)
	if _, _, _, _, rest := parse(t, next()); rest != "both component=proxy n=1" {
		t.Errorf("syslog got %q", rest)
	}
	out := buf.String()
	if !strings.Contains(out, `msg="only text" component=proxy`) || !strings.Contains(out, "msg=both component=proxy n=1") {
		t.Errorf("text handler got %q", out)
	}
	// A debug-level syslog target sees debug records that standard error (at info) does not.
	dbg := newHandler(t, addr, "local1", "debug")
	slog.New(Multi(text, dbg)).Debug("debug only")
	if pri, _, _, _, rest := parse(t, next()); pri != 17*8+7 || rest != "debug only" {
		t.Errorf("debug record = <%d> %q", pri, rest)
	}
	if strings.Contains(buf.String(), "debug only") {
		t.Error("the info-level text handler got a debug record")
	}
}
