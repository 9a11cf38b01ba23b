package admin

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// The runtime socket: HAProxy's runtime API ("stats socket"), its text protocol on a UNIX
// socket, answering the commands an operator (or socat, Ansible's haproxy module, a monitoring
// plugin) drives an L4 load balancer for RabbitMQ with. It reads what the HTTP API reads and
// changes servers through the same functions (changeAdmin, changeWeight), so both behave and
// log alike.

// Level is a runtime socket's access level, HAProxy's "level user|operator|admin".
type Level int

// The levels, least privileged first.
const (
	// LevelUser reads counters and state; it changes nothing.
	LevelUser Level = iota + 1
	// LevelOperator also sees the sessions; HAProxy's default level.
	LevelOperator
	// LevelAdmin changes servers and closes sessions.
	LevelAdmin
)

// String returns user, operator or admin.
func (l Level) String() string {
	switch l {
	case LevelUser:
		return "user"
	case LevelAdmin:
		return "admin"
	}
	return "operator"
}

// ParseLevel maps "user", "operator" or "admin" to a Level.
func ParseLevel(s string) (Level, error) {
	switch s {
	case "user":
		return LevelUser, nil
	case "operator":
		return LevelOperator, nil
	case "admin":
		return LevelAdmin, nil
	}
	return 0, fmt.Errorf("unknown level %q (want user, operator or admin)", s)
}

// Runtime socket limits. HAProxy's defaults: a CLI session idle for 10 s is closed ("stats
// timeout"), at most 10 at once ("stats maxconn"; more wait to be accepted).
const (
	socketTimeout  = 10 * time.Second
	socketMaxConns = 10
	maxCommandLen  = 16 << 10 // HAProxy's buffer size: a longer command closes the session
)

// SocketOptions configures a Socket.
type SocketOptions struct {
	// Path is where the UNIX socket is created.
	Path string
	// Mode is the socket file's permissions; 0 leaves what the umask gives.
	Mode os.FileMode
	// UID and GID own the socket file; -1 leaves the process's own.
	UID, GID int
	// Level is what the socket's clients may do; 0 means LevelOperator, HAProxy's default.
	Level Level
	// Options gives the data callbacks (Backends, Frontends, Checks, Sessions, CloseSession,
	// CloseSessions), Logger and Version, as the admin Server takes them; Listen, Token,
	// Serving, Ready and the rebalance callbacks are not used.
	Options
}

// Socket serves HAProxy's runtime API on a UNIX socket. Build it with NewSocket, then Listen,
// Serve, and Close.
type Socket struct {
	view  *view
	opts  SocketOptions
	start time.Time

	mu     sync.Mutex
	ln     *net.UnixListener
	file   os.FileInfo // the socket file Listen made: Close removes it only if it is still ours
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewSocket builds a Socket; nothing is bound until Listen.
func NewSocket(o SocketOptions) *Socket {
	if o.Level == 0 {
		o.Level = LevelOperator
	}
	src := source{backends: o.Backends, frontends: o.Frontends, checks: o.Checks, sessions: o.Sessions}
	return &Socket{
		view:  newView(src, o.Logger, "runtime", o.Version, false),
		opts:  o,
		start: time.Now(),
		conns: map[net.Conn]struct{}{},
	}
}

// Path returns the socket's path.
func (s *Socket) Path() string { return s.opts.Path }

// Listen creates the socket. As HAProxy does, it binds a temporary name, applies the mode and
// owner, then renames it over Path: the socket never exists with looser permissions, and a
// stale socket left by a dead process (or the one of the process being replaced) is replaced
// atomically.
func (s *Socket) Listen() error {
	if s.opts.Path == "" {
		return errors.New("runtime socket: no path")
	}
	tmp := fmt.Sprintf("%s.%d.tmp", s.opts.Path, os.Getpid())
	_ = os.Remove(tmp) // left by a crash of a process with our pid
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return fmt.Errorf("runtime socket %s: %w", s.opts.Path, err)
	}
	// The file is removed by Close, and only while it is still ours.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) error {
		ln.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("runtime socket %s: %w", s.opts.Path, err)
	}
	if s.opts.Mode != 0 {
		if err := os.Chmod(tmp, s.opts.Mode); err != nil {
			return fail(err)
		}
	}
	if s.opts.UID >= 0 || s.opts.GID >= 0 {
		if err := os.Chown(tmp, s.opts.UID, s.opts.GID); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, s.opts.Path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(s.opts.Path)
	if err != nil {
		ln.Close()
		return fmt.Errorf("runtime socket %s: %w", s.opts.Path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ln, s.file = ln, fi
	return nil
}

// Serve accepts clients until Close, then returns nil.
func (s *Socket) Serve() error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return errors.New("runtime socket: Serve before Listen")
	}
	s.view.log.Info("runtime socket listening", "path", s.opts.Path, "level", s.opts.Level.String())
	slots := make(chan struct{}, socketMaxConns)
	for {
		slots <- struct{}{}
		c, err := ln.Accept()
		if err != nil {
			<-slots
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("runtime socket %s: accept: %w", s.opts.Path, err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-slots
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
				<-slots
				s.wg.Done()
			}()
			s.session(c)
		}()
	}
}

// Close stops accepting, ends the open sessions, waits for them, and removes the socket file
// unless another process (or a newer Socket on the same path) has replaced it since.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ln, file := s.ln, s.file
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	var err error
	if ln != nil {
		err = ln.Close()
	}
	s.wg.Wait()
	if file != nil {
		if fi, serr := os.Lstat(s.opts.Path); serr == nil && os.SameFile(fi, file) {
			_ = os.Remove(s.opts.Path)
		}
	}
	return err
}

// cliSession is one client of the socket: its level (which "operator" and "user" lower) and
// whether it is in interactive mode.
type cliSession struct {
	s      *Socket
	level  Level
	prompt bool
	quit   bool
}

// session runs HAProxy's CLI protocol on c: read a command (up to a newline or an unescaped
// ';'), answer it followed by an empty line (or "\n> " in interactive mode), and, outside
// interactive mode, close once no command is left in what the client sent.
func (s *Socket) session(c net.Conn) {
	cs := &cliSession{s: s, level: s.opts.Level}
	r := bufio.NewReaderSize(c, 4096)
	var out bytes.Buffer
	for {
		_ = c.SetReadDeadline(time.Now().Add(socketTimeout))
		line, err := readCommand(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.view.log.Debug("runtime socket: session ended", "err", err)
			}
			return
		}
		out.Reset()
		cs.run(line, &out)
		if cs.quit {
			return
		}
		switch {
		case cs.prompt:
			out.WriteString("\n> ")
		default:
			out.WriteString("\n")
		}
		_ = c.SetWriteDeadline(time.Now().Add(socketTimeout))
		if _, err := c.Write(out.Bytes()); err != nil {
			return
		}
		if !cs.prompt && r.Buffered() == 0 {
			return
		}
	}
}

// errTooLong ends a session whose command does not fit HAProxy's buffer.
var errTooLong = errors.New("command too long")

// readCommand reads one command: the bytes up to a newline or a ';' that no backslash escapes,
// without the separator and a trailing carriage return. EOF before a separator is an error, as
// in HAProxy: a command without its newline is not run.
func readCommand(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		switch c {
		case '\\':
			b = append(b, c)
			n, err := r.ReadByte()
			if err != nil {
				return "", err
			}
			b = append(b, n)
		case '\n', ';':
			return strings.TrimSuffix(string(b), "\r"), nil
		default:
			b = append(b, c)
		}
		if len(b) > maxCommandLen {
			return "", errTooLong
		}
	}
}

// splitArgs cuts a command into words as HAProxy's CLI does: blanks (space, tab) separate
// words, a backslash makes the next byte part of the word (a blank, a ';', a backslash).
func splitArgs(line string) []string {
	var args []string
	var cur []byte
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\':
			inWord = true
			if i+1 < len(line) {
				i++
				cur = append(cur, line[i])
			}
		case c == ' ' || c == '\t':
			if inWord {
				args = append(args, string(cur))
				cur, inWord = cur[:0], false
			}
		default:
			cur = append(cur, c)
			inWord = true
		}
	}
	if inWord {
		args = append(args, string(cur))
	}
	return args
}

// slogAttrs are the attributes every runtime-socket mutation is logged with.
func (cs *cliSession) slogAttrs() []any {
	return []any{"via", "runtime socket", "socket", cs.s.opts.Path}
}
