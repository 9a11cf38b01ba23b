package healthcheck

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Actions of a TCPStep, as HAProxy's tcp-check keywords.
const (
	// TCPConnect is the connect, allowed as the first step only; without it the connect is
	// implicit. It connects as every check does (check port, PROXY header, TLS).
	TCPConnect = "connect"
	// TCPSend writes Data as it is (text; escapes are the configuration's to decode).
	TCPSend = "send"
	// TCPSendBinary writes the bytes Data spells in hex ("414d5150" is "AMQP").
	TCPSendBinary = "send-binary"
	// TCPExpect reads until Pattern matches what was read (see TCPStep).
	TCPExpect = "expect"
)

// How a TCPExpect step matches its Pattern against what was read.
const (
	// MatchString: Pattern is a substring of the text read.
	MatchString = "string"
	// MatchBinary: Pattern is hex, and those bytes are a substring of what was read.
	MatchBinary = "binary"
	// MatchRString: Pattern is a Go regular expression (RE2 syntax) matching the text read.
	MatchRString = "rstring"
	// MatchRBinary: Pattern is a Go regular expression matching the hex of what was read,
	// written in uppercase as HAProxy does ("414D5150"); it matches case-insensitively, so a
	// lowercase pattern works too.
	MatchRBinary = "rbinary"
)

// maxExpectRead bounds what an expect step reads: it fails (or, negated, passes) when that
// much came without a match.
const maxExpectRead = 64 << 10

// TCPStep is one step of a tcp-check script, as HAProxy's "tcp-check" lines: after the connect,
// the steps run in order; a send writes its data and an expect reads until its pattern
// matches. The data an expect matches against is everything read since the last send, so two
// expects in a row see the same reply.
//
// An expect fails when the check times out, when the server closes the connection without a
// match, or when 64 KiB came without one. Negate inverts it, as HAProxy's
// "expect !": it fails as soon as the pattern matches and passes once the server closed the
// connection (or 64 KiB came) without a match; a timeout still fails it.
type TCPStep struct {
	// Action is TCPConnect, TCPSend, TCPSendBinary or TCPExpect.
	Action string
	// Data is what a send writes: text for TCPSend, hex for TCPSendBinary.
	Data string
	// Match says how an expect matches: MatchString, MatchBinary, MatchRString or MatchRBinary.
	Match string
	// Pattern is what an expect looks for, read as Match says.
	Pattern string
	// Negate makes an expect pass when the pattern does not match and fail when it does.
	Negate bool
}

// TCPChecker passes a server that accepts a TCP connection (with its PROXY header and TLS
// handshake, if it has them) and then passes every step of Steps. Without steps it only
// connects, which a hung or booting broker still lets it do; prefer AMQPChecker for brokers.
//
// Make it with NewTCPChecker (or NewChecker), which checks and compiles the steps once; a
// TCPChecker written as a literal compiles them at every check, and a bad step fails the
// check. Steps must not change once the checker is in use.
type TCPChecker struct {
	// Timeout bounds the whole check, connect and steps; 0 means DefaultTimeout.
	Timeout time.Duration
	// Steps is the tcp-check script; none means a connect only.
	Steps []TCPStep

	// script is Steps, compiled by NewTCPChecker.
	script []tcpStep
}

// NewTCPChecker returns a TCPChecker running steps, or an error naming the first invalid step
// (1-based, as HAProxy counts): an unknown action or match, a connect after the first step,
// data or a pattern that is missing or not hex where hex is wanted, or a regular expression
// that does not compile.
func NewTCPChecker(timeout time.Duration, steps []TCPStep) (*TCPChecker, error) {
	script, err := compileSteps(steps)
	if err != nil {
		return nil, err
	}
	return &TCPChecker{Timeout: timeout, Steps: steps, script: script}, nil
}

// Check implements Checker.
func (c *TCPChecker) Check(ctx context.Context, t Target) Result {
	timeout := timeoutOr(c.Timeout)
	script := c.script
	if script == nil && len(c.Steps) > 0 {
		var err error
		if script, err = compileSteps(c.Steps); err != nil {
			at := time.Now()
			return Result{Kind: FailOther, Reason: err.Error(), At: at, Duration: max(time.Since(at), 1)}
		}
	}
	talks := false
	for _, st := range script {
		talks = talks || st.action != TCPConnect
	}
	if !talks {
		return run(ctx, t, timeout, "TCP connect ok", nil)
	}
	n := "steps"
	if len(script) == 1 {
		n = "step"
	}
	return run(ctx, t, timeout, fmt.Sprintf("tcp-check passed (%d %s)", len(script), n), func(cv *conversation) error {
		return runSteps(cv, script)
	})
}

// tcpStep is a TCPStep ready to run.
type tcpStep struct {
	n      int    // 1-based position in the script
	what   string // the step as a person reads it: `expect string "+PONG"`
	action string
	data   []byte         // send, send-binary
	match  string         // expect
	needle []byte         // expect string, binary
	re     *regexp.Regexp // expect rstring, rbinary
	negate bool
}

func compileSteps(steps []TCPStep) ([]tcpStep, error) {
	script := make([]tcpStep, 0, len(steps))
	for i, s := range steps {
		st := tcpStep{n: i + 1, action: s.Action, match: s.Match, negate: s.Negate}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("tcp-check step %d: %s", st.n, fmt.Sprintf(format, args...))
		}
		switch s.Action {
		case TCPConnect:
			if i != 0 {
				return nil, bad("connect is allowed as the first step only")
			}
			st.what = "connect"
		case TCPSend:
			if s.Data == "" {
				return nil, bad("send needs data")
			}
			st.data = []byte(s.Data)
			st.what = "send " + quoteShort([]byte(s.Data), 40)
		case TCPSendBinary:
			b, err := hex.DecodeString(s.Data)
			if err != nil {
				return nil, bad("send-binary data %q is not hex: %v", s.Data, err)
			}
			if len(b) == 0 {
				return nil, bad("send-binary needs data")
			}
			st.data = b
			st.what = "send-binary " + hexShort(b, 20)
		case TCPExpect:
			if s.Pattern == "" {
				return nil, bad("expect needs a pattern")
			}
			var err error
			switch s.Match {
			case MatchString:
				st.needle = []byte(s.Pattern)
			case MatchBinary:
				if st.needle, err = hex.DecodeString(s.Pattern); err != nil {
					return nil, bad("expect binary pattern %q is not hex: %v", s.Pattern, err)
				}
			case MatchRString:
				if st.re, err = regexp.Compile(s.Pattern); err != nil {
					return nil, bad("bad rstring pattern: %v", err)
				}
			case MatchRBinary:
				if st.re, err = regexp.Compile("(?i)" + s.Pattern); err != nil {
					return nil, bad("bad rbinary pattern: %v", err)
				}
			default:
				return nil, bad("unknown match %q (want %s, %s, %s or %s)", s.Match, MatchString, MatchBinary, MatchRString, MatchRBinary)
			}
			neg := ""
			if s.Negate {
				neg = "! "
			}
			pattern := strconv.Quote(s.Pattern)
			if s.Match == MatchBinary {
				pattern = strings.ToUpper(s.Pattern)
			}
			st.what = "expect " + neg + s.Match + " " + pattern
		default:
			return nil, bad("unknown action %q (want %s, %s, %s or %s)", s.Action, TCPConnect, TCPSend, TCPSendBinary, TCPExpect)
		}
		script = append(script, st)
	}
	return script, nil
}

// matches reports whether the expect step's pattern matches in.
func (st *tcpStep) matches(in []byte) bool {
	switch st.match {
	case MatchString, MatchBinary:
		return bytes.Contains(in, st.needle)
	case MatchRString:
		return st.re.Match(in)
	case MatchRBinary:
		return st.re.MatchString(strings.ToUpper(hex.EncodeToString(in)))
	}
	return false
}

// got shows what an expect step read, as text or as hex as its match reads it.
func (st *tcpStep) got(in []byte) string {
	if len(in) == 0 {
		return "got nothing"
	}
	if st.match == MatchBinary || st.match == MatchRBinary {
		return "got " + hexShort(in, 32)
	}
	return "got " + quoteShort(in, 64)
}

// fail returns the step's failure: "tcp-check step 2 (expect string "+PONG"): words".
func (st *tcpStep) fail(kind, words string) error {
	return failf(kind, 0, "tcp-check step %d (%s): %s", st.n, st.what, words)
}

// ioFail names an I/O error of the step; in is what an expect read so far (nil for a send).
func (st *tcpStep) ioFail(cv *conversation, err error, in []byte) error {
	kind, words := FailOther, unwrapOp(err).Error()
	switch {
	case errors.Is(cv.ctx.Err(), context.Canceled):
		kind, words = FailOther, "check canceled"
	case errors.Is(err, os.ErrDeadlineExceeded):
		kind, words = FailTimeout, "timeout after "+roundBudget(cv.budget).String()
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		kind, words = FailReset, "connection reset by broker"
	}
	if st.action == TCPExpect {
		words += ", " + st.got(in)
	}
	return st.fail(kind, words)
}

// runSteps runs a compiled script on a connected conversation.
func runSteps(cv *conversation, script []tcpStep) error {
	var in []byte // read since the last send
	var buf []byte
	closed := false // the server closed its side: nothing more will come
	for i := range script {
		st := &script[i]
		switch st.action {
		case TCPSend, TCPSendBinary:
			in = in[:0]
			if _, err := cv.nc.Write(st.data); err != nil {
				return st.ioFail(cv, err, nil)
			}
		case TCPExpect:
			if buf == nil {
				buf = make([]byte, 4<<10)
			}
			for {
				if st.matches(in) {
					if st.negate {
						return st.fail(FailProtocol, "matched, "+st.got(in))
					}
					break
				}
				if closed || len(in) >= maxExpectRead {
					switch {
					case st.negate:
					case !closed:
						return st.fail(FailProtocol, fmt.Sprintf("no match in %d KiB, %s", maxExpectRead>>10, st.got(in)))
					case len(in) == 0:
						return st.fail(FailReset, "connection closed by broker, got nothing")
					default:
						return st.fail(FailProtocol, "connection closed by broker, "+st.got(in))
					}
					break
				}
				n, err := cv.nc.Read(buf[:min(len(buf), maxExpectRead-len(in))])
				in = append(in, buf[:n]...)
				switch {
				case errors.Is(err, io.EOF):
					closed = true
				case err != nil:
					return st.ioFail(cv, err, in)
				}
			}
		}
	}
	return nil
}

// quoteShort quotes b as a Go string, cut after limit bytes with "..." after the quote.
func quoteShort(b []byte, limit int) string {
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}

// hexShort writes b in uppercase hex, cut after limit bytes with "...".
func hexShort(b []byte, limit int) string {
	if len(b) > limit {
		return strings.ToUpper(hex.EncodeToString(b[:limit])) + "..."
	}
	return strings.ToUpper(hex.EncodeToString(b))
}
