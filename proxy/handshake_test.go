package proxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/balancer"
	"github.com/amqplb/amqplb/internal/amqpwire"
	"github.com/amqplb/amqplb/internal/testenv"
)

// startFirst runs a frontend whose "first" policy always tries the servers in order.
func startFirst(t *testing.T, r Route, addrs ...string) *fixture {
	p, err := balancer.New("first")
	if err != nil {
		t.Fatal(err)
	}
	r.Policy = p
	return start(t, FrontendOptions{Mode: ModeAMQP}, r, addrs...)
}

// dropAfterStartOk is a broker that dies in the middle of a handshake: it sends Start, reads
// Start-Ok, then resets the connection.
func dropAfterStartOk(c net.Conn) {
	var h [8]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return
	}
	start := &amqpwire.ConnectionStart{VersionMinor: 9, Mechanisms: "PLAIN", Locales: "en_US"}
	if amqpwire.WriteMethod(c, 0, start) != nil {
		return
	}
	_, _ = amqpwire.ReadFrame(c, 0)
	_ = c.(*net.TCPConn).SetLinger(0)
}

func TestHandshakeMovesOnWhenABrokerDiesMidway(t *testing.T) {
	dying := testenv.StartFakeBroker(t, dropAfterStartOk)
	good := echoBroker(t)
	var passive atomic.Int64
	fx := startFirst(t, Route{Retries: 3, Redispatch: true,
		OnConnectFailure: func(*backend.Server, error) { passive.Add(1) }}, dying.Addr(), good.Addr())
	c := amqpConnect(t, fx.addr())
	echoes(t, c, "after the failover")
	if dying.Accepted() != 1 || good.Accepted() != 1 {
		t.Errorf("dying broker accepted %d, good %d; want 1 and 1", dying.Accepted(), good.Accepted())
	}
	// Once client bytes reached the broker, a failure may be the client's doing: the health
	// checks judge the broker, not the session.
	if passive.Load() != 0 {
		t.Errorf("a mid-handshake failure was reported as a connect failure (%d)", passive.Load())
	}
}

func TestHandshakeMovesOnWhenOpenIsRefused(t *testing.T) {
	// A node shutting down answers Open with 541 after Start-Ok and Tune went fine.
	closing := &testenv.FakeAMQP{OpenClose: &amqpwire.ConnectionClose{ReplyCode: 541, ReplyText: "INTERNAL_ERROR - vhost / is down"}}
	refuser := testenv.StartFakeBroker(t, closing.Handle)
	good := echoBroker(t)
	var passive atomic.Int64
	fx := startFirst(t, Route{Retries: 3, Redispatch: true,
		OnConnectFailure: func(*backend.Server, error) { passive.Add(1) }}, refuser.Addr(), good.Addr())
	c := amqpConnect(t, fx.addr())
	echoes(t, c, "replayed Start-Ok, Tune-Ok and Open")
	waitFor(t, "the refusing broker's Close acknowledged", func() bool { return closing.ClosesAcknowledged() == 1 })
	if passive.Load() != 0 {
		t.Errorf("a broker's refusal was reported as a connect failure (%d); a client could eject brokers", passive.Load())
	}
}

func TestARefusalEverywhereReachesTheClient(t *testing.T) {
	var fakes []*testenv.FakeAMQP
	var addrs []string
	for range 3 {
		f := &testenv.FakeAMQP{Username: "someone", Password: "else"}
		fakes = append(fakes, f)
		addrs = append(addrs, testenv.StartFakeBroker(t, f.Handle).Addr())
	}
	fx := startFirst(t, Route{Retries: 3, Redispatch: true}, addrs...)
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = clientHandshake(c)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("handshake = %v, want the broker's 403", err)
	}
	// A wrong password costs one retry on another broker, not all of them.
	waitFor(t, "two refusals, both acknowledged", func() bool {
		tried := 0
		for _, f := range fakes {
			tried += f.ClosesAcknowledged()
		}
		return tried == 2
	})
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("after the refusal the client connection is not closed: %v", err)
	}
}

// The broker's reply code of a refusal that reaches the client is in the access-log line.
func TestARefusalEverywhereLogsItsCloseCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		fake func() *testenv.FakeAMQP
		code string
	}{
		// Refuses Start-Ok: the client logs in as guest.
		{"login", func() *testenv.FakeAMQP { return &testenv.FakeAMQP{Username: "someone", Password: "else"} }, "403"},
		// Refuses Open: the client opens "/".
		{"vhost", func() *testenv.FakeAMQP { return &testenv.FakeAMQP{VHosts: []string{"orders"}} }, "530"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var addrs []string
			for range 2 {
				addrs = append(addrs, testenv.StartFakeBroker(t, tc.fake().Handle).Addr())
			}
			fx := startFirst(t, Route{Retries: 3, Redispatch: true}, addrs...)
			c, err := net.Dial("tcp", fx.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := clientHandshake(c); err == nil || !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("handshake = %v, want the broker's %s", err, tc.code)
			}
			line := accessLogLine(t, fx)
			for _, kv := range []string{"end=connect_failed", " user=guest", " close_code=" + tc.code} {
				if !strings.Contains(line, kv) {
					t.Errorf("access log line lacks %q: %s", kv, line)
				}
			}
		})
	}
}

// A refusal that a failover got past is not the session's: its line has no close_code.
func TestARefusalTheSessionGotPastLogsNoCloseCode(t *testing.T) {
	closing := &testenv.FakeAMQP{OpenClose: &amqpwire.ConnectionClose{ReplyCode: 541, ReplyText: "INTERNAL_ERROR - vhost / is down"}}
	refuser := testenv.StartFakeBroker(t, closing.Handle)
	good := echoBroker(t)
	fx := startFirst(t, Route{Retries: 3, Redispatch: true}, refuser.Addr(), good.Addr())
	c := amqpConnect(t, fx.addr())
	echoes(t, c, "moved on")
	if s := fx.f.Sessions(); len(s) != 1 || s[0].Identity.CloseCode != 0 {
		t.Errorf("sessions = %+v, want one without a close code", s)
	}
	c.Close()
	if line := accessLogLine(t, fx); !strings.Contains(line, "end=client_closed") || strings.Contains(line, "close_code") {
		t.Errorf("access log line = %s, want end=client_closed and no close_code", line)
	}
}
