package healthcheck

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/internal/amqpwire"
	"github.com/amqplb/amqplb/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Only the real-broker test uses HTTP (testenv's management API calls); its idle
		// keep-alive connections are not ours.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

const (
	testTimeout = 300 * time.Millisecond
	// margin is how late past its timeout a check may return (scheduling under -race on a
	// loaded machine, not the check's own slack).
	margin = 500 * time.Millisecond
)

// checkWithin checks the plain TCP address addr with c, as checkTarget does.
func checkWithin(t *testing.T, c Checker, addr string, timeout time.Duration) Result {
	t.Helper()
	return checkTarget(t, c, Target{Addr: addr}, timeout)
}

// checkTarget runs c.Check and fails the test if it overruns timeout + margin.
func checkTarget(t *testing.T, c Checker, tgt Target, timeout time.Duration) Result {
	t.Helper()
	begin := time.Now()
	res := c.Check(context.Background(), tgt)
	if took := time.Since(begin); took > timeout+margin {
		t.Errorf("check took %v, timeout %v", took, timeout)
	}
	if res.Duration <= 0 || res.Duration > time.Since(begin) || res.At.Before(begin) {
		t.Errorf("Duration %v / At %v inconsistent with a check started at %v", res.Duration, res.At, begin)
	}
	return res
}

func expect(t *testing.T, res Result, ok bool, code int, words ...string) {
	t.Helper()
	if res.OK != ok || res.Code != code {
		t.Errorf("got OK=%v Code=%d (%q), want OK=%v Code=%d", res.OK, res.Code, res.Reason, ok, code)
	}
	for _, w := range words {
		if !strings.Contains(res.Reason, w) {
			t.Errorf("reason %q lacks %q", res.Reason, w)
		}
	}
}

func TestAMQPChecker(t *testing.T) {
	tests := []struct {
		name    string
		fake    *testenv.FakeAMQP
		handler func(net.Conn) // instead of fake
		checker AMQPChecker
		ok      bool
		code    int
		kind    string // backend failure kind; "" when ok
		words   []string
		// acked: the fake sent Close and the checker answered Close-Ok.
		acked bool
	}{
		{name: "healthy", fake: &testenv.FakeAMQP{Username: "guest", Password: "guest"},
			ok: true, words: []string{"AMQP handshake ok"}},
		{name: "healthy custom vhost and user", fake: &testenv.FakeAMQP{Username: "u", Password: "p", VHosts: []string{"v1"}},
			checker: AMQPChecker{VHost: "v1", Username: "u", Password: "p"}, ok: true},
		{name: "wrong password", fake: &testenv.FakeAMQP{Username: "guest", Password: "guest"},
			checker: AMQPChecker{Username: "guest", Password: "wrong"}, code: 403, kind: FailAuth, acked: true,
			words: []string{"broker closed: 403 ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"}},
		{name: "unknown vhost", fake: &testenv.FakeAMQP{},
			checker: AMQPChecker{VHost: "nope"}, code: 530, kind: FailVHost, acked: true,
			words: []string{"broker closed: 530 NOT_ALLOWED - vhost nope not found"}},
		{name: "internal error at open", fake: &testenv.FakeAMQP{OpenClose: &amqpwire.ConnectionClose{ReplyCode: 541, ReplyText: "INTERNAL_ERROR"}},
			code: 541, kind: FailClosed, acked: true, words: []string{"broker closed: 541 INTERNAL_ERROR"}},
		{name: "forced at open", fake: &testenv.FakeAMQP{OpenClose: &amqpwire.ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"}},
			code: 320, kind: FailClosed, acked: true, words: []string{"320 CONNECTION_FORCED"}},
		{name: "slow tune", fake: &testenv.FakeAMQP{TuneDelay: 5 * time.Second}, kind: FailTimeout,
			words: []string{"timeout after 300ms waiting for Connection.Tune"}},
		{name: "no PLAIN", fake: &testenv.FakeAMQP{Mechanisms: "AMQPLAIN EXTERNAL"}, kind: FailAuth,
			words: []string{"does not offer SASL PLAIN", "AMQPLAIN EXTERNAL"}},
		{name: "silent", handler: testenv.Silent, kind: FailTimeout,
			words: []string{"timeout after 300ms waiting for Connection.Start"}},
		{name: "garbage", handler: testenv.AMQPGarbage, kind: FailProtocol,
			words: []string{"not an AMQP 0-9-1 broker", `"HTTP/1.1"`}},
		{name: "AMQP 1.0", handler: testenv.AMQP10Header, kind: FailProtocol,
			words: []string{"not an AMQP 0-9-1 broker: replied AMQP 1.0.0 header"}},
		{name: "reset", handler: testenv.AMQPReset, kind: FailReset,
			words: []string{"connection reset by broker waiting for Connection.Start"}},
		// Closing with our header unread may reach us as a FIN or as a reset: either is right.
		{name: "hangup", handler: testenv.Hangup, kind: FailReset,
			words: []string{"by broker"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.handler
			if tt.fake != nil {
				h = tt.fake.Handle
			}
			b := testenv.StartFakeBroker(t, h)
			c := tt.checker
			c.Timeout = testTimeout
			res := checkWithin(t, &c, b.Addr(), testTimeout)
			expect(t, res, tt.ok, tt.code, tt.words...)
			if res.Kind != tt.kind {
				t.Errorf("Kind = %q, want %q", res.Kind, tt.kind)
			}
			// Let the fake finish reading what the checker sent, then stop it, which waits
			// for its handler, so its counters are final.
			waitIdle(t, b)
			b.Close()
			if tt.fake == nil {
				return
			}
			if got, want := tt.fake.CleanCloses(), map[bool]int{true: 1}[tt.ok]; got != want {
				t.Errorf("fake saw %d clean closes (Close, then Close-Ok), want %d", got, want)
			}
			if got, want := tt.fake.ClosesAcknowledged(), map[bool]int{true: 1}[tt.acked]; got != want {
				t.Errorf("checker answered %d of the fake's Close with Close-Ok, want %d", got, want)
			}
			if n := tt.fake.LoginsDropped(); n != 0 {
				t.Errorf("%d logins dropped: the checker did not advertise authentication_failure_close", n)
			}
		})
	}
}

func TestProbeChecker(t *testing.T) {
	tests := []struct {
		name    string
		handler func(net.Conn)
		ok      bool
		words   []string
	}{
		// The probe does not log in, so a broker refusing the login still passes.
		{"healthy", (&testenv.FakeAMQP{Username: "x", Password: "y"}).Handle, true, []string{"Connection.Start received"}},
		{"silent", testenv.Silent, false, []string{"timeout after 300ms waiting for Connection.Start"}},
		{"AMQP 1.0", testenv.AMQP10Header, false, []string{"replied AMQP 1.0.0 header"}},
		{"garbage", testenv.AMQPGarbage, false, []string{"not an AMQP 0-9-1 broker"}},
		{"reset", testenv.AMQPReset, false, []string{"reset"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testenv.StartFakeBroker(t, tt.handler)
			res := checkWithin(t, &ProbeChecker{Timeout: testTimeout}, b.Addr(), testTimeout)
			expect(t, res, tt.ok, 0, tt.words...)
		})
	}
}

func TestTCPChecker(t *testing.T) {
	b := testenv.StartFakeBroker(t, testenv.Silent)
	expect(t, checkWithin(t, &TCPChecker{Timeout: testTimeout}, b.Addr(), testTimeout), true, 0, "TCP connect ok")
}

func TestDeadPort(t *testing.T) {
	addr := testenv.FreeAddr(t)
	for _, c := range []Checker{&AMQPChecker{Timeout: testTimeout}, &ProbeChecker{Timeout: testTimeout}, &TCPChecker{Timeout: testTimeout}} {
		res := checkWithin(t, c, addr, testTimeout)
		if res.OK || res.Reason != "connection refused" || res.Code != 0 || res.Kind != FailRefused {
			t.Errorf("%T: got %+v, want a failure with reason \"connection refused\"", c, res)
		}
	}
}

func TestContextBoundsCheck(t *testing.T) {
	b := testenv.StartFakeBroker(t, testenv.Silent)
	c := &AMQPChecker{Timeout: time.Minute}

	// An earlier context deadline wins over Timeout and is the one the reason names.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	res := c.Check(ctx, Target{Addr: b.Addr()})
	if took := time.Since(begin); took > 100*time.Millisecond+margin {
		t.Errorf("check took %v past a 100ms context deadline", took)
	}
	expect(t, res, false, 0, "timeout after 100ms waiting for Connection.Start")

	// Cancelling the context ends the check at once.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	begin = time.Now()
	res = c.Check(ctx, Target{Addr: b.Addr()})
	if took := time.Since(begin); took > 50*time.Millisecond+margin {
		t.Errorf("check took %v after its context was cancelled at 50ms", took)
	}
	expect(t, res, false, 0, "check canceled waiting for Connection.Start")
}

// TestNoFDLeak runs 1,000 checks of each outcome that opens a connection and wants the process
// to hold no more fds than before.
func TestNoFDLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 checks")
	}
	fake := &testenv.FakeAMQP{Username: "guest", Password: "guest"}
	b := testenv.StartFakeBroker(t, fake.Handle)
	good := &AMQPChecker{Timeout: time.Second}
	bad := &AMQPChecker{Timeout: time.Second, Password: "wrong", Username: "guest"}
	settle := func() int {
		waitIdle(t, b)
		return countFDs(t)
	}
	expect(t, good.Check(context.Background(), Target{Addr: b.Addr()}), true, 0) // warm up: epoll fd etc.
	before := settle()
	for i := range 1000 {
		c := good
		if i%2 == 1 {
			c = bad
		}
		if res := c.Check(context.Background(), Target{Addr: b.Addr()}); res.OK != (c == good) {
			t.Fatalf("check %d: %+v", i, res)
		}
	}
	if after := settle(); after > before+2 {
		t.Errorf("%d fds open before 1,000 checks, %d after", before, after)
	}
	if got := fake.CleanCloses(); got != 501 {
		t.Errorf("fake saw %d clean closes, want 501", got)
	}
}

// waitIdle waits until the fake broker has no connection open.
func waitIdle(t *testing.T, b *testenv.FakeBroker) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := b.Active(); n > 0 {
			return fmt.Errorf("fake broker still has %d connections open", n)
		}
		return nil
	})
}

// countFDs returns the number of open fds. It reads Linux's /proc/self/fd: elsewhere the test
// skips; on Linux a missing /proc fails it.
func countFDs(t *testing.T) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("counting open fds reads /proc/self/fd, which %s does not have", runtime.GOOS)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("cannot count fds: %v", err)
	}
	return len(ents)
}

func TestNewChecker(t *testing.T) {
	o := Options{Timeout: 2 * time.Second, VHost: "v", Username: "u", Password: "p"}
	for kind, want := range map[string]Checker{
		"amqp":       &AMQPChecker{VHost: "v", Username: "u", Password: "p", Timeout: 2 * time.Second},
		"":           &AMQPChecker{VHost: "v", Username: "u", Password: "p", Timeout: 2 * time.Second},
		"amqp-probe": &ProbeChecker{Timeout: 2 * time.Second},
		"tcp":        &TCPChecker{Timeout: 2 * time.Second},
	} {
		got, err := NewChecker(kind, o)
		if err != nil {
			t.Fatalf("%q: %v", kind, err)
		}
		if gs, ws := strings.TrimSpace(fmtChecker(got)), fmtChecker(want); gs != ws {
			t.Errorf("%q: got %s, want %s", kind, gs, ws)
		}
	}
	if c, err := NewChecker("none", o); c != nil || err != nil {
		t.Errorf("none: got %v, %v; want nil, nil", c, err)
	}
	if _, err := NewChecker("https", o); err == nil || !strings.Contains(err.Error(), `"https"`) {
		t.Errorf("unknown kind: err = %v", err)
	}
	// Without a request, the http check is GET /, passing on a 2xx or 3xx status.
	if c, err := NewChecker("http", o); err != nil || c.(*HTTPChecker).Timeout != 2*time.Second || c.(*HTTPChecker).compiled.path != "/" {
		t.Errorf("http: got %#v, %v", c, err)
	}
	c, err := NewChecker("tcp", Options{Timeout: time.Second, Steps: amqpProbe})
	if tc, ok := c.(*TCPChecker); err != nil || !ok || len(tc.Steps) != 2 || len(tc.script) != 2 || tc.Timeout != time.Second {
		t.Errorf("tcp with steps: got %#v, %v", c, err)
	}
	for _, kind := range []string{"amqp", "", "amqp-probe", "http", "none"} {
		if _, err := NewChecker(kind, Options{Steps: amqpProbe}); err == nil {
			t.Errorf("%q with tcp-check steps: no error", kind)
		}
	}
}

func fmtChecker(c Checker) string {
	switch c := c.(type) {
	case *AMQPChecker:
		return "amqp " + c.VHost + " " + c.Username + " " + c.Password + " " + c.Timeout.String()
	case *ProbeChecker:
		return "probe " + c.Timeout.String()
	case *TCPChecker:
		return "tcp " + c.Timeout.String() + " " + fmt.Sprint(len(c.Steps))
	}
	return "?"
}

func TestDefaults(t *testing.T) {
	c := &AMQPChecker{}
	if u, p := c.credentials(); u != "guest" || p != "guest" {
		t.Errorf("zero credentials = %q/%q, want guest/guest", u, p)
	}
	if c.vhost() != "/" || timeoutOr(c.Timeout) != DefaultTimeout {
		t.Errorf("zero vhost %q, timeout %v", c.vhost(), timeoutOr(c.Timeout))
	}
	c = &AMQPChecker{Username: "u"}
	if u, p := c.credentials(); u != "u" || p != "" {
		t.Errorf("credentials = %q/%q, want u and an empty password", u, p)
	}
}

// TestRealBroker checks a real RabbitMQ node of the test cluster (skipped without one).
func TestRealBroker(t *testing.T) {
	cluster := testenv.RequireCluster(t)
	addr := cluster.Nodes[0].AMQPAddr()
	const timeout = 5 * time.Second
	tests := []struct {
		name    string
		checker Checker
		ok      bool
		code    int
		words   []string
	}{
		{"valid credentials", &AMQPChecker{Username: "guest", Password: "guest", Timeout: timeout}, true, 0, []string{"AMQP handshake ok"}},
		{"wrong password", &AMQPChecker{Username: "guest", Password: "wrong", Timeout: timeout}, false, 403, []string{"ACCESS_REFUSED"}},
		{"unknown vhost", &AMQPChecker{VHost: "nope", Timeout: timeout}, false, 530, []string{"NOT_ALLOWED", "nope"}},
		{"probe", &ProbeChecker{Timeout: timeout}, true, 0, nil},
		{"tcp", &TCPChecker{Timeout: timeout}, true, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checkWithin(t, tt.checker, addr, timeout)
			t.Logf("%+v", res)
			expect(t, res, tt.ok, tt.code, tt.words...)
		})
	}
}
