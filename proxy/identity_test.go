package proxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/amqpwire"
	"github.com/amqplb/amqplb/internal/testenv"
)

// handshakeAs runs a client handshake on c with the given Start-Ok, Tune-Ok and Open.
func handshakeAs(c net.Conn, startOk *amqpwire.ConnectionStartOk, tuneOk *amqpwire.ConnectionTuneOk, open *amqpwire.ConnectionOpen) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	read := func() error {
		f, err := amqpwire.ReadFrame(c, 0)
		if err != nil {
			return err
		}
		m, err := amqpwire.DecodeMethod(f.Payload)
		if cl, ok := m.(*amqpwire.ConnectionClose); ok {
			return fmt.Errorf("broker closed: %d %s", cl.ReplyCode, cl.ReplyText)
		}
		return err
	}
	write := func(ms ...amqpwire.Method) error {
		var buf []byte
		for _, m := range ms {
			var err error
			if buf, err = amqpwire.AppendMethodFrame(buf, 0, m); err != nil {
				return err
			}
		}
		_, err := c.Write(buf)
		return err
	}
	if _, err := c.Write(testenv.AMQPHeader); err != nil {
		return err
	}
	if err := read(); err != nil {
		return err
	}
	if err := write(startOk); err != nil {
		return err
	}
	if err := read(); err != nil {
		return err
	}
	if err := write(tuneOk, open); err != nil {
		return err
	}
	return read()
}

func TestIdentityReachesTheLogAndTheSessionList(t *testing.T) {
	// The fake broker logs in with PLAIN only; AMQPLAIN's user is read by amqpwire.SASLUser
	// (tested there) and through real RabbitMQ in e2e.
	for _, tc := range []struct{ mechanism, response string }{
		{"PLAIN", amqpwire.PlainResponse("alice", "s3cret-pw")},
	} {
		t.Run(tc.mechanism, func(t *testing.T) {
			fb := testenv.StartFakeBroker(t, (&testenv.FakeAMQP{Echo: true, VHosts: []string{"orders"}}).Handle)
			fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
			c, err := net.Dial("tcp", fx.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			props := amqpwire.Table{"product": "pika", "version": "1.3.2", "platform": "Python 3.11", "connection_name": "billing-worker-7"}
			err = handshakeAs(c,
				&amqpwire.ConnectionStartOk{ClientProperties: props, Mechanism: tc.mechanism, Response: tc.response, Locale: "en_US"},
				&amqpwire.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 30},
				&amqpwire.ConnectionOpen{VirtualHost: "orders"})
			if err != nil {
				t.Fatal(err)
			}
			echoes(t, c, "ping")
			var got SessionInfo
			for _, s := range fx.f.Sessions() {
				got = s
			}
			want := Identity{Protocol: ProtoAMQP091, Mechanism: tc.mechanism, User: "alice", VHost: "orders",
				ConnectionName: "billing-worker-7", ClientProduct: "pika", ClientVersion: "1.3.2", ClientPlatform: "Python 3.11",
				ChannelMax: 2047, FrameMax: 131072, Heartbeat: 30 * time.Second}
			if got.Identity != want || got.Frontend != "fe" || got.Server != "a" || got.Backend != "test" || got.ID == 0 ||
				!got.Upstream.IsValid() || got.LastActive.Before(got.Since) {
				t.Fatalf("session = %+v\nwant identity %+v", got, want)
			}
			if !fx.f.CloseSession(got.ID) {
				t.Fatal("CloseSession did not find the session")
			}
			expectClosed(t, c)
			var line string
			testenv.Eventually(t, 5*time.Second, func() error {
				for _, l := range strings.Split(fx.logs.String(), "\n") {
					if strings.Contains(l, "msg=session") {
						line = l
						return nil
					}
				}
				return fmt.Errorf("no access-log line in:\n%s", fx.logs)
			})
			for _, kv := range []string{"end=closed_by_admin", "protocol=amqp-0-9-1", "user=alice", "vhost=orders",
				"connection_name=billing-worker-7", "client_product=pika", "heartbeat=30s"} {
				if !strings.Contains(line, kv) {
					t.Errorf("access log line lacks %s: %s", kv, line)
				}
			}
			if strings.Contains(fx.logs.String(), "s3cret") {
				t.Errorf("the password reached the log:\n%s", fx.logs)
			}
			if strings.Contains(fmt.Sprintf("%+v", fx.f.Sessions()), "s3cret") {
				t.Error("the password reached the session list")
			}
		})
	}
}

func TestHeartbeatIdleTimeout(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{IdleHeartbeat: true, IdleTimeoutDefault: time.Hour}, fb.Addr())
	silent, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// A heartbeat of 1 s: the session carries nothing and must end after 3 s.
	if err := handshakeAs(silent, amqpwire.PlainStartOk("guest", "guest", nil),
		&amqpwire.ConnectionTuneOk{ChannelMax: 1, FrameMax: 4096, Heartbeat: 1}, &amqpwire.ConnectionOpen{VirtualHost: "/"}); err != nil {
		t.Fatal(err)
	}
	// Without a heartbeat the default (an hour) applies: this one outlives the silent one.
	quiet := amqpConnect(t, fx.addr())
	expectClosed(t, silent)
	echoes(t, quiet, "still here")
	testenv.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(fx.logs.String(), "end=heartbeat_timeout") {
			return fmt.Errorf("no end=heartbeat_timeout in:\n%s", fx.logs)
		}
		return nil
	})
}

func TestMalformedStartOkEndsAsBadHandshake(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A PLAIN response without its NUL separators.
	err = handshakeAs(c, &amqpwire.ConnectionStartOk{Mechanism: "PLAIN", Response: "nonsense"},
		&amqpwire.ConnectionTuneOk{}, &amqpwire.ConnectionOpen{VirtualHost: "/"})
	if err == nil {
		t.Fatal("the handshake went through")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if fx.f.Stats().Refused["bad_handshake"] != 1 || !strings.Contains(fx.logs.String(), "end=bad_handshake") {
			return fmt.Errorf("refused %v, log:\n%s", fx.f.Stats().Refused, fx.logs)
		}
		return nil
	})
}

func TestEndAsNamesTheReasonOfALaterClose(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	c := amqpConnect(t, fx.addr())
	s := fx.f.Sessions()[0]
	if !fx.f.EndAs(s.ID, EndRebalanced) || fx.f.EndAs(s.ID+1000, EndRebalanced) {
		t.Fatal("EndAs did not find the session, or found one that does not exist")
	}
	echoes(t, c, "still open")
	c.Close()
	testenv.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(fx.logs.String(), "end=rebalanced") {
			return fmt.Errorf("no end=rebalanced in:\n%s", fx.logs)
		}
		return nil
	})
}
