package admin

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/amqplb/amqplb/backend"
)

// cliCommand is one runtime-socket command: its keywords, the help line (HAProxy 2.6's where
// amqplb does what it says), the level it needs (checked by the command, as in HAProxy, so
// that the help lists every command) and its handler, which gets every word of the command.
type cliCommand struct {
	words []string
	usage string
	run   func(cs *cliSession, args []string, out *bytes.Buffer)
}

// Messages that clients match on, HAProxy 2.6's word for word.
const (
	msgPermissionDenied = "Permission denied\n"
	msgRequireServer    = "Require 'backend/server'.\n"
	msgNoSuchServer     = "No such server.\n"
	msgNoSuchBackend    = "No such backend.\n"
)

// cliCommands is filled by init: the handlers refer to the table (help).
var cliCommands []cliCommand

func init() {
	cliCommands = []cliCommand{
		{[]string{"disable", "server"}, "disable server (DEPRECATED)             : disable a server for maintenance (use 'set server' instead)", cmdDisableServer},
		{[]string{"enable", "server"}, "enable server  (DEPRECATED)             : enable a disabled server (use 'set server' instead)", cmdEnableServer},
		{[]string{"get", "weight"}, "get weight <bk>/<srv>                   : report a server's current weight", cmdGetWeight},
		{[]string{"operator"}, "operator                                : lower the level of the current CLI session to operator", cmdLowerLevel(LevelOperator)},
		{[]string{"set", "maxconn", "server"}, "set maxconn server <bk>/<srv>           : change a server's maxconn setting", cmdSetMaxconnServer},
		{[]string{"set", "server"}, "set server <bk>/<srv> [opts]            : change a server's state or weight", cmdSetServer},
		{[]string{"set", "weight"}, "set weight <bk>/<srv>  (DEPRECATED)     : change a server's weight (use 'set server' instead)", cmdSetWeight},
		{[]string{"show", "backend"}, "show backend                            : list backends in the current running config", cmdShowBackend},
		{[]string{"show", "cli", "level"}, "show cli level                          : display the level of the current CLI session", cmdShowCLILevel},
		{[]string{"show", "info"}, "show info                               : report information about the running process", cmdShowInfo},
		{[]string{"show", "servers", "state"}, "show servers state [<backend>]          : dump volatile server information (all or for a single backend)", cmdShowServersState},
		{[]string{"show", "sess"}, "show sess [id]                          : report the list of current sessions or dump this exact session", cmdShowSess},
		{[]string{"show", "stat"}, "show stat [no-maint|up]*                : report counters for each proxy and server", cmdShowStat},
		{[]string{"shutdown", "session"}, "shutdown session [id]                   : kill a specific session", cmdShutdownSession},
		{[]string{"shutdown", "sessions", "server"}, "shutdown sessions server <bk>/<srv>     : kill sessions on a server", cmdShutdownSessionsServer},
		{[]string{"user"}, "user                                    : lower the level of the current CLI session to user", cmdLowerLevel(LevelUser)},
	}
}

// cliAlways are the help lines HAProxy always ends its help with.
const cliAlways = "  help [<command>]                        : list matching or all commands\n" +
	"  prompt                                  : toggle interactive mode with prompt\n" +
	"  quit                                    : disconnect\n"

// run answers one command line into out (without the terminating empty line).
func (cs *cliSession) run(line string, out *bytes.Buffer) {
	args := splitArgs(line)
	if len(args) > 0 {
		switch args[0] {
		case "prompt":
			if len(args) == 1 {
				cs.prompt = !cs.prompt
				return
			}
		case "quit":
			if len(args) == 1 {
				cs.quit = true
				return
			}
		case "help":
			usage(out, args[1:], true)
			return
		}
	}
	for i := range cliCommands {
		c := &cliCommands[i]
		if len(args) >= len(c.words) && slices.Equal(args[:len(c.words)], c.words) {
			c.run(cs, args, out)
			return
		}
	}
	usage(out, args, false)
}

// has reports whether the session has level l, writing HAProxy's refusal if not.
func (cs *cliSession) has(l Level, out *bytes.Buffer) bool {
	if cs.level < l {
		out.WriteString(msgPermissionDenied)
		return false
	}
	return true
}

// usage writes HAProxy 2.6's answer to help (isHelp) or to an unknown command: the commands
// whose first words match, or the closest ones by HAProxy's word fingerprints, or all.
func usage(out *bytes.Buffer, args []string, isHelp bool) {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	// length is the largest number of leading words some command matches exactly.
	length := 0
	for _, c := range cliCommands {
		for i, w := range c.words {
			if arg(i) == "" || w != arg(i) {
				break
			}
			length = max(length, i+1)
		}
	}
	switch {
	case isHelp:
		out.WriteString("The following commands are valid at this level:\n")
	case length == 0 && arg(0) == "":
		out.WriteString("Unknown command. Please enter one of the following commands only:\n")
	default:
		out.WriteString("Unknown command, but maybe one of the following ones is a better match:\n")
	}
	prefixed := func(c cliCommand) bool {
		for i := 0; i < length; i++ {
			if i >= len(c.words) || c.words[i] != arg(i) {
				return false
			}
		}
		return true
	}
	const maxMatches = 5
	type match struct {
		c    *cliCommand
		dist int
	}
	var matches []match
	if arg(length) != "" {
		for i := range cliCommands {
			c := &cliCommands[i]
			if !prefixed(*c) || length > len(c.words) {
				continue
			}
			var ws, ls [1024]byte
			total := 0
			for i := length; i < 5 && arg(i) != ""; i++ {
				fingerprint(&ws, arg(i))
				total += len(arg(i))
			}
			for _, w := range c.words[length:] {
				fingerprint(&ls, w)
				total += len(w)
			}
			dist := 0
			for i := range ws {
				d := int(ws[i]) - int(ls[i])
				dist += max(d, -d)
			}
			if dist >= 5*total/2 || len(matches) == maxMatches && dist >= matches[maxMatches-1].dist {
				continue
			}
			// Insert after the ones at least as close: ties keep the table's order.
			at := len(matches)
			for at > 0 && matches[at-1].dist > dist {
				at--
			}
			matches = slices.Insert(matches, at, match{c, dist})
			if len(matches) > maxMatches {
				matches = matches[:maxMatches]
			}
		}
	}
	var lines []string
	if len(matches) > 0 {
		for _, m := range matches {
			if m.dist > 5*matches[0].dist/2 {
				break // much farther than the best: unlikely candidates
			}
			lines = append(lines, m.c.usage)
		}
	} else {
		for _, c := range cliCommands {
			if prefixed(c) {
				lines = append(lines, c.usage)
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		out.WriteString("  " + l + "\n")
	}
	out.WriteString(cliAlways)
}

// fingerprint adds word to fp as HAProxy's update_word_fingerprint does: which letters it has,
// and how often each pair of adjacent letter classes (a-z, digit, other, begin/end) occurs.
func fingerprint(fp *[1024]byte, word string) {
	class := func(c byte) int {
		switch {
		case c >= 'a' && c <= 'z':
			return int(c-'a') + 1
		case c >= 'A' && c <= 'Z':
			return int(c-'A') + 1
		case c >= '0' && c <= '9':
			return 27
		}
		return 28
	}
	from := 28 // begin
	for i := 0; i < len(word); i++ {
		to := class(word[i])
		fp[to] = 1
		fp[32*from+to]++
		from = to
	}
	fp[32*from+28]++ // end
}

// findServer resolves "backend/server" as HAProxy's CLI does, or writes its error.
func (cs *cliSession) findServer(spec string, out *bytes.Buffer) (*backend.Backend, *backend.Server) {
	bname, sname, ok := strings.Cut(spec, "/")
	if !ok || sname == "" {
		out.WriteString(msgRequireServer)
		return nil, nil
	}
	b := cs.s.view.backend(bname)
	if b == nil {
		out.WriteString(msgNoSuchBackend)
		return nil, nil
	}
	srv := b.Server(sname)
	if srv == nil {
		out.WriteString(msgNoSuchServer)
		return nil, nil
	}
	return b, srv
}

// backend returns the backend named name, or nil.
func (v *view) backend(name string) *backend.Backend {
	for _, b := range v.backends() {
		if b != nil && b.Name == name {
			return b
		}
	}
	return nil
}

// arg returns args[i], or "" past the end (HAProxy's unused argument slots are empty strings).
func arg(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}

// setAdmin changes a server's operator state through the path the HTTP API takes.
func (cs *cliSession) setAdmin(b *backend.Backend, srv *backend.Server, a backend.Admin) {
	changeAdmin(cs.s.view.log, cs.slogAttrs(), b, srv, a, false, nil)
}

func cmdDisableServer(cs *cliSession, args []string, out *bytes.Buffer) {
	if !cs.has(LevelAdmin, out) {
		return
	}
	if b, srv := cs.findServer(arg(args, 2), out); srv != nil {
		cs.setAdmin(b, srv, backend.AdminMaint)
	}
}

func cmdEnableServer(cs *cliSession, args []string, out *bytes.Buffer) {
	if !cs.has(LevelAdmin, out) {
		return
	}
	if b, srv := cs.findServer(arg(args, 2), out); srv != nil {
		cs.setAdmin(b, srv, backend.AdminReady)
	}
}

func cmdSetServer(cs *cliSession, args []string, out *bytes.Buffer) {
	if !cs.has(LevelAdmin, out) {
		return
	}
	b, srv := cs.findServer(arg(args, 2), out)
	if srv == nil {
		return
	}
	switch arg(args, 3) {
	case "state":
		a, err := backend.ParseAdmin(arg(args, 4))
		if err != nil {
			out.WriteString("'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n")
			return
		}
		cs.setAdmin(b, srv, a)
	case "weight":
		cs.setWeight(b, srv, arg(args, 4), out)
	case "addr", "agent", "agent-addr", "agent-port", "agent-send", "check-addr", "check-port", "fqdn", "health", "ssl":
		// Valid in HAProxy, not in amqplb: say so rather than pretend.
		fmt.Fprintf(out, "'set server <srv> %s' is not supported by amqplb (only state and weight).\n", arg(args, 3))
	default:
		out.WriteString("usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | agent-send | check-addr | check-port | fqdn | health | ssl | state | weight\n")
	}
}

func cmdSetWeight(cs *cliSession, args []string, out *bytes.Buffer) {
	if !cs.has(LevelAdmin, out) {
		return
	}
	if b, srv := cs.findServer(arg(args, 2), out); srv != nil {
		cs.setWeight(b, srv, arg(args, 3), out)
	}
}

// setWeight applies "N" or "N%" (of the configured weight) as HAProxy's
// server_parse_weight_change_request does, messages included (two of them without a newline,
// as in HAProxy).
func (cs *cliSession) setWeight(b *backend.Backend, srv *backend.Server, s string, out *bytes.Buffer) {
	if s == "" {
		out.WriteString("Require <weight> or <weight%>.\n")
		return
	}
	w, rest, ok := strtol(s)
	switch {
	case !ok:
		out.WriteString("Empty weight string empty or preceded by garbage")
		return
	case rest == "%":
		if w < 0 {
			out.WriteString("Relative weight must be positive.\n")
			return
		}
		w = min(int64(srv.InitialWeight())*min(w, 25600)/100, backend.MaxWeight)
	case w < 0 || w > backend.MaxWeight:
		fmt.Fprintf(out, "Absolute weight can only be between 0 and %d inclusive.\n", backend.MaxWeight)
		return
	case rest != "":
		out.WriteString("Trailing garbage in weight string")
		return
	}
	changeWeight(cs.s.view.log, cs.slogAttrs(), b, srv, int(w))
}

// strtol reads a leading decimal number as C's strtol(s, &end, 10) does: blanks, a sign, digits
// (saturating). ok is false when there are no digits; rest is what follows them.
func strtol(s string) (n int64, rest string, ok bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] >= '\t' && s[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		if n < (1<<63-1)/10 {
			n = n*10 + int64(s[i]-'0')
		}
		i++
	}
	if i == start {
		return 0, s, false
	}
	if neg {
		n = -n
	}
	return n, s[i:], true
}

func cmdGetWeight(cs *cliSession, args []string, out *bytes.Buffer) {
	if _, srv := cs.findServer(arg(args, 2), out); srv != nil {
		fmt.Fprintf(out, "%d (initial %d)\n", srv.Weight(), srv.InitialWeight())
	}
}

func cmdSetMaxconnServer(cs *cliSession, args []string, out *bytes.Buffer) {
	if !cs.has(LevelAdmin, out) {
		return
	}
	b, srv := cs.findServer(arg(args, 3), out)
	if srv == nil {
		return
	}
	s := arg(args, 4)
	if s == "" {
		out.WriteString("Require <maxconn>.\n")
		return
	}
	n, rest, ok := strtol(s)
	switch {
	case !ok:
		out.WriteString("maxconn string empty or preceded by garbage")
		return
	case rest != "":
		out.WriteString("Trailing garbage in maxconn string")
		return
	}
	n = min(max(n, 0), 1<<31-1)
	old := srv.MaxConnections()
	srv.SetMaxConnections(int(n))
	cs.s.view.log.Info("admin: server maxconn set", append(cs.slogAttrs(), "backend", b.Name, "server", srv.Name(),
		"from", old, "to", n)...)
}

func cmdShutdownSessionsServer(cs *cliSession, args []string, out *bytes.Buffer) {
	if !cs.has(LevelAdmin, out) {
		return
	}
	b, srv := cs.findServer(arg(args, 3), out)
	if srv == nil {
		return
	}
	n := 0 // no CloseSessions: no sessions to close
	if cs.s.opts.CloseSessions != nil {
		n = cs.s.opts.CloseSessions(srv)
	}
	cs.s.view.log.Info("admin: server sessions shut down", append(cs.slogAttrs(), "backend", b.Name, "server", srv.Name(),
		"sessions_closed", n)...)
}

func cmdShutdownSession(cs *cliSession, args []string, out *bytes.Buffer) {
	if !cs.has(LevelAdmin, out) {
		return
	}
	id, err := strconv.ParseUint(arg(args, 2), 0, 64)
	if err != nil || id == 0 {
		out.WriteString("Session pointer expected (use 'show sess').\n")
		return
	}
	if cs.s.opts.CloseSession == nil || !cs.s.opts.CloseSession(id) {
		out.WriteString("No such session (use 'show sess').\n")
		return
	}
	cs.s.view.log.Info("admin: session closed", append(cs.slogAttrs(), "id", id)...)
}

func cmdShowBackend(cs *cliSession, args []string, out *bytes.Buffer) {
	out.WriteString("# name\n")
	for _, b := range cs.s.view.backends() {
		if b != nil {
			out.WriteString(b.Name + "\n")
		}
	}
}

func cmdShowCLILevel(cs *cliSession, args []string, out *bytes.Buffer) {
	out.WriteString(cs.level.String() + "\n")
}

// cmdLowerLevel is "operator" and "user": the session keeps the lower of its level and l.
func cmdLowerLevel(l Level) func(cs *cliSession, args []string, out *bytes.Buffer) {
	return func(cs *cliSession, args []string, out *bytes.Buffer) {
		if cs.has(l, out) {
			cs.level = l
		}
	}
}
