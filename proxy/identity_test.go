package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
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

// accessLogLine waits for the fixture's first access-log line and returns it.
func accessLogLine(t *testing.T, fx *fixture) string {
	t.Helper()
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
	return line
}

// acceptAnyLogin is a broker that logs in any mechanism and response, opens any vhost, then
// echoes: testenv.FakeAMQP takes PLAIN only, and the proxy must read AMQPLAIN and EXTERNAL too.
func acceptAnyLogin(c net.Conn) {
	r := bufio.NewReader(c)
	if _, err := io.ReadFull(r, make([]byte, 8)); err != nil {
		return
	}
	start := &amqpwire.ConnectionStart{VersionMinor: 9, Mechanisms: "AMQPLAIN PLAIN EXTERNAL", Locales: "en_US"}
	if amqpwire.WriteMethod(c, 0, start) != nil {
		return
	}
	if _, _, err := amqpwire.ReadMethod(r, 0); err != nil { // Start-Ok
		return
	}
	if amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60}) != nil {
		return
	}
	for range 2 { // Tune-Ok, Open
		if _, _, err := amqpwire.ReadMethod(r, 0); err != nil {
			return
		}
	}
	if amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionOpenOk{}) != nil {
		return
	}
	_, _ = io.Copy(c, r)
}

// amqplainResponse is AMQPLAIN's response: a field table without its length prefix, holding
// LOGIN and PASSWORD as long strings.
func amqplainResponse(user, password string) string {
	var b []byte
	for _, kv := range [][2]string{{"LOGIN", user}, {"PASSWORD", password}} {
		b = append(b, byte(len(kv[0])))
		b = append(b, kv[0]...)
		b = append(b, 'S')
		b = binary.BigEndian.AppendUint32(b, uint32(len(kv[1])))
		b = append(b, kv[1]...)
	}
	return string(b)
}

func TestIdentityReachesTheLogAndTheSessionList(t *testing.T) {
	for _, tc := range []struct {
		mechanism, response string
		broker              func(net.Conn)
	}{
		{"PLAIN", amqpwire.PlainResponse("alice", "s3cret-pw"), (&testenv.FakeAMQP{Echo: true, VHosts: []string{"orders"}}).Handle},
		// testenv.FakeAMQP refuses AMQPLAIN.
		{"AMQPLAIN", amqplainResponse("alice", "s3cret-pw"), acceptAnyLogin},
	} {
		t.Run(tc.mechanism, func(t *testing.T) {
			fb := testenv.StartFakeBroker(t, tc.broker)
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
			line := accessLogLine(t, fx)
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

// With EXTERNAL the user is the subject of the client certificate the TLS frontend verified,
// whatever the response claims; without a certificate it is nobody.
func TestExternalUserIsTheClientCertificateSubject(t *testing.T) {
	pki := newPKI(t)
	pair, err := tls.LoadX509KeyPair(pki.files.ClientCert, pki.files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	subject := cert.Subject.String() // CN=amqplb-test-client
	startOk := &amqpwire.ConnectionStartOk{ClientProperties: amqpwire.ClientProperties("test", ""),
		Mechanism: "EXTERNAL", Response: "CN=admin", Locale: "en_US"}
	tuneOk, open := &amqpwire.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072}, &amqpwire.ConnectionOpen{VirtualHost: "/"}
	fb := testenv.StartFakeBroker(t, acceptAnyLogin)

	for _, tc := range []struct {
		name string
		fo   FrontendOptions
		dial func(t *testing.T, addr string) (net.Conn, error)
		user string
	}{
		{"tls", FrontendOptions{Mode: ModeAMQP, TLS: pki.server(t, "required")},
			func(t *testing.T, addr string) (net.Conn, error) { return tls.Dial("tcp", addr, pki.client(t, true)) }, subject},
		{"plain", FrontendOptions{Mode: ModeAMQP},
			func(_ *testing.T, addr string) (net.Conn, error) { return net.Dial("tcp", addr) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := start(t, tc.fo, Route{}, fb.Addr())
			c, err := tc.dial(t, fx.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := handshakeAs(c, startOk, tuneOk, open); err != nil {
				t.Fatal(err)
			}
			echoes(t, c, "external")
			if s := fx.f.Sessions(); len(s) != 1 || s[0].Identity.Mechanism != "EXTERNAL" || s[0].Identity.User != tc.user {
				t.Fatalf("sessions = %+v, want one with mechanism EXTERNAL and user %q", s, tc.user)
			}
			c.Close()
			// slog quotes a value holding '=', and an empty one.
			want := " user=" + strconv.Quote(tc.user) + " "
			if line := accessLogLine(t, fx); !strings.Contains(line, want) || strings.Contains(line, "admin") {
				t.Errorf("access log line = %s\nwant %s and not the response's claim", line, want)
			}
		})
	}
}

// In tcp mode nothing is parsed: an AMQP handshake through it leaves the session without an
// identity and the access-log line without any of its keys.
func TestTCPModeParsesNoIdentity(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeTCP}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	props := amqpwire.Table{"product": "pika", "version": "1.3.2", "connection_name": "billing-worker-7"}
	err = handshakeAs(c, &amqpwire.ConnectionStartOk{ClientProperties: props, Mechanism: "PLAIN",
		Response: amqpwire.PlainResponse("alice", "s3cret-pw"), Locale: "en_US"},
		&amqpwire.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 30}, &amqpwire.ConnectionOpen{VirtualHost: "/"})
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, c, "opaque")
	if s := fx.f.Sessions(); len(s) != 1 || s[0].Identity != (Identity{}) {
		t.Fatalf("sessions = %+v, want one without an identity", s)
	}
	c.Close()
	line := accessLogLine(t, fx)
	if !strings.Contains(line, "end=client_closed") {
		t.Errorf("access log line lacks end=client_closed: %s", line)
	}
	for _, k := range []string{"protocol", "mechanism", "user", "vhost", "connection_name", "client_product", "heartbeat", "close_code"} {
		if strings.Contains(line, " "+k+"=") {
			t.Errorf("a tcp-mode access log line has %s: %s", k, line)
		}
	}
	for _, v := range []string{"alice", "billing-worker-7", "pika", "s3cret"} {
		if strings.Contains(fx.logs.String(), v) {
			t.Errorf("a tcp-mode session logged %q:\n%s", v, fx.logs)
		}
	}
}

// A Start-Ok that is not a frame (a bad frame-end octet) or whose client-properties table
// overruns its frame ends the session as bad_handshake before it reaches a broker, and the
// frontend goes on serving.
func TestMalformedFramesEndAsBadHandshake(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	good, err := amqpwire.AppendMethodFrame(nil, 0, amqpwire.PlainStartOk("guest", "guest", amqpwire.ClientProperties("test", "")))
	if err != nil {
		t.Fatal(err)
	}
	badEnd := bytes.Clone(good)
	badEnd[len(badEnd)-1] = 0
	overrun := bytes.Clone(good)
	// After the frame header (7 octets) and the method id (4): the table's length.
	binary.BigEndian.PutUint32(overrun[11:], uint32(len(good)))
	for i, bad := range [][]byte{badEnd, overrun} {
		c, err := net.Dial("tcp", fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(testenv.AMQPHeader); err != nil {
			t.Fatal(err)
		}
		if _, err := amqpwire.ReadFrame(c, 0); err != nil { // Start
			t.Fatal(err)
		}
		if _, err := c.Write(bad); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c)
		c.Close()
		waitFor(t, "the refusal counted", func() bool { return fx.f.Stats().Refused["bad_handshake"] == uint64(i+1) })
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := strings.Count(fx.logs.String(), "end=bad_handshake"); n != 2 {
			return fmt.Errorf("%d end=bad_handshake lines, want 2:\n%s", n, fx.logs)
		}
		return nil
	})
	echoes(t, amqpConnect(t, fx.addr()), "still serving")
}

// idle_timeout = "heartbeat" without a negotiated heartbeat: the fallback idle timeout ends
// the session, as idle_timeout.
func TestHeartbeatIdleFallsBackWithoutAHeartbeat(t *testing.T) {
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{IdleHeartbeat: true, IdleTimeoutDefault: 200 * time.Millisecond}, fb.Addr())
	c := amqpConnect(t, fx.addr()) // Tune-Ok with heartbeat 0
	expectClosed(t, c)
	line := accessLogLine(t, fx)
	for _, kv := range []string{"end=idle_timeout", "heartbeat=0s"} {
		if !strings.Contains(line, kv) {
			t.Errorf("access log line lacks %s: %s", kv, line)
		}
	}
}
