package healthcheck

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// redisLike answers each line it reads, as a Redis server does: "+PONG" to "PING", an error to
// anything else. With hangup it closes the connection after its first answer.
func redisLike(hangup bool) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			answer := "-ERR unknown command\r\n"
			if line == "PING\r\n" {
				answer = "+PONG\r\n"
			}
			if _, err := io.WriteString(c, answer); err != nil || hangup {
				return
			}
		}
	}
}

// flood writes 70 KiB that match nothing, then waits for the client to go.
func flood(c net.Conn) {
	if _, err := c.Write(bytes.Repeat([]byte("x"), 70<<10)); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
}

func send(data string) TCPStep { return TCPStep{Action: TCPSend, Data: data} }

func expectStep(match, pattern string) TCPStep {
	return TCPStep{Action: TCPExpect, Match: match, Pattern: pattern}
}

func notExpect(match, pattern string) TCPStep {
	return TCPStep{Action: TCPExpect, Match: match, Pattern: pattern, Negate: true}
}

// amqpProbe is the usual AMQP recipe of haproxy.cfg files: send the protocol header, expect
// the start of Connection.Start (a method frame on channel 0, class 10, method 10, 0-9).
var amqpProbe = []TCPStep{
	{Action: TCPSendBinary, Data: "414d515000000901"},
	{Action: TCPExpect, Match: MatchBinary, Pattern: "000a000a0009"},
}

func TestTCPCheckSteps(t *testing.T) {
	pingPong := []TCPStep{send("PING\r\n"), expectStep(MatchString, "+PONG")}
	tests := []struct {
		name    string
		handler func(net.Conn)
		steps   []TCPStep
		ok      bool
		kind    string
		reason  string // the whole reason
		fast    bool   // decided well before the timeout
	}{
		{name: "send, expect string", handler: redisLike(false), steps: pingPong, ok: true,
			reason: "tcp-check passed (2 steps)", fast: true},
		{name: "explicit connect", handler: redisLike(false), ok: true, fast: true,
			steps:  append([]TCPStep{{Action: TCPConnect}}, pingPong...),
			reason: "tcp-check passed (3 steps)"},
		{name: "connect only", handler: testenv.Silent, steps: []TCPStep{{Action: TCPConnect}}, ok: true,
			reason: "TCP connect ok", fast: true},
		{name: "mismatch until timeout", handler: redisLike(false), kind: FailTimeout,
			steps:  []TCPStep{send("HELLO\r\n"), expectStep(MatchString, "+PONG")},
			reason: `tcp-check step 2 (expect string "+PONG"): timeout after 300ms, got "-ERR unknown command\r\n"`},
		{name: "mismatch then close", handler: redisLike(true), kind: FailProtocol, fast: true,
			steps:  []TCPStep{send("HELLO\r\n"), expectStep(MatchString, "+PONG")},
			reason: `tcp-check step 2 (expect string "+PONG"): connection closed by broker, got "-ERR unknown command\r\n"`},
		{name: "silent", handler: testenv.Silent, steps: pingPong, kind: FailTimeout,
			reason: `tcp-check step 2 (expect string "+PONG"): timeout after 300ms, got nothing`},
		{name: "closed at once", handler: testenv.Hangup, kind: FailReset, fast: true,
			steps:  []TCPStep{expectStep(MatchString, "+OK")},
			reason: `tcp-check step 1 (expect string "+OK"): connection closed by broker, got nothing`},
		{name: "two expects see the same reply", handler: redisLike(false), ok: true, fast: true,
			steps:  []TCPStep{send("PING\r\n"), expectStep(MatchString, "+PO"), expectStep(MatchString, "NG\r\n")},
			reason: "tcp-check passed (3 steps)"},
		{name: "a send starts a new reply", handler: redisLike(false), kind: FailTimeout,
			steps: []TCPStep{send("PING\r\n"), expectStep(MatchString, "+PONG"), send("HELLO\r\n"),
				expectStep(MatchString, "+PONG")},
			reason: `tcp-check step 4 (expect string "+PONG"): timeout after 300ms, got "-ERR unknown command\r\n"`},
		{name: "rstring", handler: redisLike(false), ok: true, fast: true,
			steps:  []TCPStep{send("PING\r\n"), expectStep(MatchRString, `^\+P[O0]NG\r\n$`)},
			reason: "tcp-check passed (2 steps)"},
		{name: "rstring mismatch", handler: redisLike(true), kind: FailProtocol, fast: true,
			steps:  []TCPStep{send("PING\r\n"), expectStep(MatchRString, `^-ERR`)},
			reason: `tcp-check step 2 (expect rstring "^-ERR"): connection closed by broker, got "+PONG\r\n"`},
		{name: "AMQP recipe, binary", handler: (&testenv.FakeAMQP{}).Handle, steps: amqpProbe, ok: true, fast: true,
			reason: "tcp-check passed (2 steps)"},
		{name: "rbinary, any case", handler: (&testenv.FakeAMQP{}).Handle, ok: true, fast: true,
			steps:  []TCPStep{amqpProbe[0], expectStep(MatchRBinary, `^010000[0-9a-f]{8}000A000a0009`)},
			reason: "tcp-check passed (2 steps)"},
		{name: "binary mismatch shows hex", handler: redisLike(true), kind: FailProtocol, fast: true,
			steps:  []TCPStep{send("PING\r\n"), expectStep(MatchBinary, "2d455252")},
			reason: `tcp-check step 2 (expect binary 2D455252): connection closed by broker, got 2B504F4E470D0A`},
		{name: "negate passes when closed without a match", handler: redisLike(true), ok: true, fast: true,
			steps:  []TCPStep{send("PING\r\n"), notExpect(MatchString, "-ERR")},
			reason: "tcp-check passed (2 steps)"},
		{name: "negate fails at once on a match", handler: redisLike(false), kind: FailProtocol, fast: true,
			steps:  []TCPStep{send("HELLO\r\n"), notExpect(MatchRString, "^-ERR")},
			reason: `tcp-check step 2 (expect ! rstring "^-ERR"): matched, got "-ERR unknown command\r\n"`},
		{name: "negate still times out", handler: redisLike(false), kind: FailTimeout,
			steps:  []TCPStep{send("PING\r\n"), notExpect(MatchString, "-ERR")},
			reason: `tcp-check step 2 (expect ! string "-ERR"): timeout after 300ms, got "+PONG\r\n"`},
		{name: "64 KiB without a match", handler: flood, kind: FailProtocol, fast: true,
			steps:  []TCPStep{expectStep(MatchString, "+PONG")},
			reason: `tcp-check step 1 (expect string "+PONG"): no match in 64 KiB, got "` + strings.Repeat("x", 64) + `"...`},
		{name: "negated, 64 KiB without a match", handler: flood, ok: true, fast: true,
			steps:  []TCPStep{notExpect(MatchString, "-ERR")},
			reason: "tcp-check passed (1 step)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testenv.StartFakeBroker(t, tt.handler)
			c, err := NewTCPChecker(testTimeout, tt.steps)
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			res := checkWithin(t, c, b.Addr(), testTimeout)
			if res.OK != tt.ok || res.Kind != tt.kind || res.Reason != tt.reason || res.Code != 0 {
				t.Errorf("got OK=%v Kind=%q Reason=%q\nwant OK=%v Kind=%q Reason=%q", res.OK, res.Kind, res.Reason, tt.ok, tt.kind, tt.reason)
			}
			if took := time.Since(begin); tt.fast && took > testTimeout/2 {
				t.Errorf("took %v, want a verdict before the %v timeout", took, testTimeout)
			}
		})
	}
}

func TestTCPCheckCanceled(t *testing.T) {
	b := testenv.StartFakeBroker(t, testenv.Silent)
	c, err := NewTCPChecker(time.Minute, []TCPStep{send("PING\r\n"), expectStep(MatchString, "+PONG")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	res := c.Check(ctx, Target{Addr: b.Addr()})
	if want := `tcp-check step 2 (expect string "+PONG"): check canceled, got nothing`; res.OK || res.Reason != want {
		t.Errorf("got %+v, want reason %q", res, want)
	}
	waitIdle(t, b)
}

func TestTCPCheckValidation(t *testing.T) {
	tests := []struct {
		steps []TCPStep
		err   string
	}{
		{[]TCPStep{{Action: "recv"}}, `tcp-check step 1: unknown action "recv" (want connect, send, send-binary or expect)`},
		{[]TCPStep{send("PING\r\n"), {Action: TCPConnect}}, "tcp-check step 2: connect is allowed as the first step only"},
		{[]TCPStep{{Action: TCPSend}}, "tcp-check step 1: send needs data"},
		{[]TCPStep{{Action: TCPSendBinary, Data: "414"}}, `tcp-check step 1: send-binary data "414" is not hex: encoding/hex: odd length hex string`},
		{[]TCPStep{{Action: TCPSendBinary, Data: "41zz"}}, `tcp-check step 1: send-binary data "41zz" is not hex: encoding/hex: invalid byte: U+007A 'z'`},
		{[]TCPStep{send("x"), expectStep(MatchString, "")}, "tcp-check step 2: expect needs a pattern"},
		{[]TCPStep{send("x"), expectStep("regex", "a")}, `tcp-check step 2: unknown match "regex" (want string, binary, rstring or rbinary)`},
		{[]TCPStep{send("x"), expectStep("", "a")}, `tcp-check step 2: unknown match "" (want string, binary, rstring or rbinary)`},
		{[]TCPStep{send("x"), expectStep(MatchBinary, "+PONG")}, `tcp-check step 2: expect binary pattern "+PONG" is not hex`},
		{[]TCPStep{send("x"), expectStep(MatchRString, "(+PONG")}, "tcp-check step 2: bad rstring pattern: error parsing regexp: missing argument to repetition operator: `+`"},
		{[]TCPStep{send("x"), expectStep(MatchRBinary, "[0-9")}, "tcp-check step 2: bad rbinary pattern: error parsing regexp: missing closing ]"},
	}
	for _, tt := range tests {
		_, err := NewTCPChecker(0, tt.steps)
		if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("%+v: err = %v, want %q", tt.steps, err, tt.err)
		}
		if _, err2 := NewChecker(KindTCP, Options{Steps: tt.steps}); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("NewChecker: err = %v, want %v", err2, err)
		}
	}
	if _, err := NewChecker(KindAMQP, Options{Steps: amqpProbe}); err == nil || !strings.Contains(err.Error(), `need health check type "tcp"`) {
		t.Errorf("steps with type amqp: err = %v", err)
	}

	// A literal checker compiles its steps at each check; a bad one fails the check.
	b := testenv.StartFakeBroker(t, redisLike(false))
	good := &TCPChecker{Timeout: testTimeout, Steps: []TCPStep{send("PING\r\n"), expectStep(MatchString, "+PONG")}}
	expect(t, checkWithin(t, good, b.Addr(), testTimeout), true, 0, "tcp-check passed (2 steps)")
	bad := &TCPChecker{Timeout: testTimeout, Steps: []TCPStep{{Action: "recv"}}}
	if res := checkWithin(t, bad, b.Addr(), testTimeout); res.OK || res.Kind != FailOther || !strings.HasPrefix(res.Reason, "tcp-check step 1: unknown action") {
		t.Errorf("bad literal steps: %+v", res)
	}
}
