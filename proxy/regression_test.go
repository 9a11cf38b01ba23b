package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/amqp10"
	"github.com/amqplb/amqplb/internal/testenv"
)

// An AMQP 1.0 client sent to brokers that do not serve 1.0 (RabbitMQ 3 without
// rabbitmq_amqp1_0 answers the SASL header with its 0-9-1 one) gets that answer, and the
// brokers are not held responsible: no client can eject a broker by speaking another protocol.
func TestAMQP10ToA091OnlyBrokerIsNotAFailure(t *testing.T) {
	// As RabbitMQ 3 answers a header it does not serve: with its own, then it closes.
	only091 := testenv.StartFakeBroker(t, func(c net.Conn) {
		var h [8]byte
		if _, err := io.ReadFull(c, h[:]); err == nil && h != [8]byte(testenv.AMQPHeader) {
			_, _ = c.Write(testenv.AMQPHeader)
		}
	})
	var passive atomic.Int64
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{Retries: 3, Redispatch: true,
		OnConnectFailure: func(*backend.Server, error) { passive.Add(1) }}, only091.Addr(), only091.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(amqp10.HeaderSASL[:]); err != nil {
		t.Fatal(err)
	}
	if got := expectClosed(t, c); !bytes.Equal(got, testenv.AMQPHeader) {
		t.Errorf("the client got %q, want the broker's 0-9-1 header", got)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(fx.logs.String(), "end=connect_failed") {
			return fmt.Errorf("no end=connect_failed in:\n%s", fx.logs)
		}
		return nil
	})
	if n := passive.Load(); n != 0 {
		t.Errorf("%d passive failures reported for brokers that only do not speak AMQP 1.0", n)
	}
}

// A handshake failover that has no dial left still gives the client the broker's refusal, and
// never logs in twice on the broker that refused.
func TestFailoverWithoutRetriesKeepsTheBrokersRefusal(t *testing.T) {
	refusing := &testenv.FakeAMQP{Username: "someone", Password: "else"}
	b := testenv.StartFakeBroker(t, refusing.Handle)
	for _, tc := range []struct {
		name    string
		retries int
		addrs   []string
	}{
		{"no retries left", 0, []string{b.Addr(), b.Addr()}},
		{"one server", 3, []string{b.Addr()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.Accepted()
			fx := startFirst(t, Route{Retries: tc.retries, Redispatch: true}, tc.addrs...)
			c, err := net.Dial("tcp", fx.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = clientHandshake(c)
			if err == nil || !strings.Contains(err.Error(), "403") {
				t.Fatalf("handshake error %v, want the broker's 403", err)
			}
			testenv.Eventually(t, 5*time.Second, func() error {
				if !strings.Contains(fx.logs.String(), "end=connect_failed") {
					return fmt.Errorf("no end=connect_failed in:\n%s", fx.logs)
				}
				return nil
			})
			if n := b.Accepted() - before; tc.name == "one server" && n != 1 {
				t.Errorf("the refusing broker saw %d logins, want 1", n)
			}
		})
	}
}

// Behind a balancer that sends PROXY headers, its health probe (the header, then close) is not
// a client that said something: with dont_log_null a TLS frontend logs nothing for it.
func TestDontLogNullProxyProbeOnATLSFrontend(t *testing.T) {
	fb := echoBroker(t)
	pki := newPKI(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, DontLogNull: true, AcceptProxy: true, TLS: pki.server(t, "none")},
		Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(proxyHeader(t, 2, "192.0.2.7:1234", "192.0.2.1:5671")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	expectClosed(t, c)
	c.Close()
	testenv.Eventually(t, 5*time.Second, func() error {
		if st := fx.f.Stats(); st.Active != 0 || st.Refused["tls_handshake"] != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if strings.Contains(fx.logs.String(), "msg=session") || strings.Contains(fx.logs.String(), "TLS handshake failed") {
		t.Errorf("a probe that sent only a PROXY header was logged:\n%s", fx.logs)
	}
}
