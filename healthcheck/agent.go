package healthcheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/amqplb/amqplb/backend"
)

// maxAgentWeight is the largest percentage HAProxy takes (100 × its largest weight).
const maxAgentWeight = 25600

// maxAgentLine bounds what is read of an agent's answer; HAProxy reads one buffer.
const maxAgentLine = 1024

// AgentOptions configure the agent check of one server (HAProxy's agent-check).
type AgentOptions struct {
	// Address is the agent's host:port.
	Address string
	// Interval is the time between two questions; 0 means DefaultAgentInterval.
	Interval time.Duration
	// Send is written to the agent once connected; "" sends nothing.
	Send string
}

// DefaultAgentInterval is HAProxy's agent-inter default.
const DefaultAgentInterval = 2 * time.Second

// AgentReply is an agent's answer, parsed as HAProxy parses it: words separated by spaces, tabs
// or commas, up to a "#" after which the rest of the line is a reason. Words it does not know
// are ignored; of two words of the same sort the last one counts.
type AgentReply struct {
	// Health is "up", "down", "fail" or "stopped"; "" when the agent said none.
	Health string
	// Admin is "ready", "drain" or "maint"; "" when the agent said none.
	Admin string
	// Weight is the percentage of the server's initial weight ("75%"); -1 when none.
	Weight int
	// MaxConn is the server's new connection cap ("maxconn:30"; 0 means none); -1 when none.
	MaxConn int
	// Reason is the text after "#", trimmed.
	Reason string
}

// Empty reports whether the reply says nothing amqplb applies.
func (r AgentReply) Empty() bool {
	return r.Health == "" && r.Admin == "" && r.Weight < 0 && r.MaxConn < 0
}

// ParseAgentReply parses one line from an agent. Only the first line counts.
func ParseAgentReply(line string) AgentReply {
	r := AgentReply{Weight: -1, MaxConn: -1}
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		line = line[:i]
	}
	if words, reason, ok := strings.Cut(line, "#"); ok {
		line, r.Reason = words, strings.TrimSpace(reason)
	}
	for _, w := range strings.FieldsFunc(line, func(c rune) bool { return c == ' ' || c == '\t' || c == ',' }) {
		lw := strings.ToLower(w)
		switch {
		case lw == "up" || lw == "down" || lw == "fail" || lw == "stopped":
			r.Health = lw
		case lw == "ready" || lw == "drain" || lw == "maint":
			r.Admin = lw
		case lw[0] >= '0' && lw[0] <= '9' && strings.Contains(lw, "%"):
			// As HAProxy: a word starting with a digit and holding a "%" is a weight; the
			// number must be followed by the "%".
			// HAProxy refuses a relative weight above 25600%.
			if n, rest, ok := leadingInt(lw); ok && strings.HasPrefix(rest, "%") && n <= maxAgentWeight {
				r.Weight = n
			}
		case strings.HasPrefix(lw, "maxconn:"):
			if n, _, ok := leadingInt(lw[len("maxconn:"):]); ok && n <= math.MaxInt32 {
				r.MaxConn = n
			}
		}
	}
	return r
}

// leadingInt reads the decimal number s starts with, and returns what follows it.
func leadingInt(s string) (n int, rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(s[:i])
	return n, s[i:], err == nil
}

// AgentResult is what the Monitor keeps of a server's last agent check.
type AgentResult struct {
	// OK reports whether the agent answered.
	OK bool
	// Reply is the agent's line as it came (trimmed), when it answered.
	Reply string
	// Error says why the agent could not be asked, when it could not; the server is left as
	// it was.
	Error string
	// Duration is how long the question took, connect included.
	Duration time.Duration
	// At is when it finished.
	At time.Time
}

// askAgent connects to the agent, writes send and reads one line.
func askAgent(ctx context.Context, addr, send string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			return "", err
		}
	}
	line, err := bufio.NewReader(io.LimitReader(c, maxAgentLine)).ReadString('\n')
	switch {
	case err == nil, errors.Is(err, io.EOF) && line != "":
		// An agent may close the connection instead of ending the line.
		return strings.TrimSpace(line), nil
	case errors.Is(err, io.EOF):
		return "", errors.New("agent closed the connection without answering")
	}
	return "", err
}

// agentLoop asks l's agent every interval until the monitor stops.
func (m *Monitor) agentLoop(l *serverLoop, o AgentOptions) {
	defer m.wg.Done()
	interval := o.Interval
	if interval <= 0 {
		interval = DefaultAgentInterval
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	last := ""
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(m.ctx, m.timeout)
		start := time.Now()
		line, err := askAgent(ctx, o.Address, o.Send)
		cancel()
		if m.ctx.Err() != nil {
			return
		}
		r := AgentResult{OK: err == nil, Reply: line, Duration: time.Since(start), At: time.Now()}
		if err != nil {
			r.Error = agentError(err, m.timeout)
			if last != "\x00" {
				m.log.Warn("agent check failed", "backend", m.backend, "server", l.s.Name(),
					"agent", o.Address, "error", r.Error)
			}
			last = "\x00"
		} else {
			if line != last {
				m.log.Info("agent answered", "backend", m.backend, "server", l.s.Name(),
					"agent", o.Address, "reply", line)
			}
			last = line
			m.applyAgent(l, ParseAgentReply(line), line)
		}
		m.statuses.RecordAgent(l.s, r)
		timer.Reset(interval)
	}
}

// agentError says in a few words why an agent could not be asked.
func agentError(err error, timeout time.Duration) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("timeout after %v", timeout)
	}
	return unwrapOp(err).Error()
}

// applyAgent applies an agent's reply to l's server as HAProxy does: the admin state first,
// then the weight (a percentage of the initial weight), the connection cap, and last the
// agent's health, which takes the server down while it says down, fail or stopped.
func (m *Monitor) applyAgent(l *serverLoop, r AgentReply, line string) {
	s := l.s
	if r.Admin != "" {
		if a, err := backend.ParseAdmin(r.Admin); err == nil {
			s.SetAdmin(a)
		}
	}
	if r.Weight >= 0 {
		s.SetWeight(s.InitialWeight() * r.Weight / 100)
	}
	if r.MaxConn >= 0 {
		s.SetMaxConnections(r.MaxConn)
	}
	if r.Health == "" {
		return
	}
	up := r.Health == "up"
	l.mu.Lock()
	defer l.mu.Unlock()
	from, to := s.SetAgentHealth(up)
	if (from == backend.StateDown) == (to == backend.StateDown) {
		return
	}
	reason := "agent says " + line
	level, msg := slog.LevelWarn, "server down"
	if !up {
		from, to = backend.StateUp, backend.StateDown
	} else {
		from, to = backend.StateDown, backend.StateUp
		level, msg = slog.LevelInfo, "server up"
	}
	m.log.Log(context.Background(), level, msg, "backend", m.backend, "server", s.Name(),
		"address", s.Address(), "from", from.String(), "to", to.String(), "reason", reason)
	if m.onTransition != nil {
		m.onTransition(s, from, to, CheckResult{OK: up, Reason: reason, At: time.Now()})
	}
}
