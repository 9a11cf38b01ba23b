package testenv

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/amqplb/amqplb/internal/amqpwire"
)

// FakeAMQP is a fake AMQP 0-9-1 broker behaviour for StartFakeBroker: it speaks the connection
// handshake for real (through internal/amqpwire) and can be told to fail it the ways a RabbitMQ
// node does, with the node's own reply codes and texts. It counts what happened, so a test can
// see that a client closed cleanly. The zero value accepts any credentials and the vhost "/".
//
// For a broker that never answers, use Silent. Use its Handle method as the handler:
//
//	fake := &testenv.FakeAMQP{Username: "guest", Password: "guest"}
//	b := testenv.StartFakeBroker(t, fake.Handle)
type FakeAMQP struct {
	// Username and Password are the only credentials accepted; an empty Username accepts any.
	// A refused login is answered, as RabbitMQ does, with Close 403 if the client advertised
	// the authentication_failure_close capability, and by dropping the connection otherwise.
	Username, Password string
	// VHosts lists the vhosts that exist; nil means only "/". Open of another is answered
	// with Close 530 NOT_ALLOWED, as RabbitMQ does.
	VHosts []string
	// TuneDelay delays Connection.Tune after Start-Ok, like a broker busy authenticating.
	// The delay ends early if the client goes away.
	TuneDelay time.Duration
	// OpenClose, if set, answers Connection.Open instead of Open-Ok, such as 541 INTERNAL_ERROR
	// or 320 CONNECTION_FORCED.
	OpenClose *amqpwire.ConnectionClose
	// Mechanisms is what Connection.Start offers; "" means "AMQPLAIN PLAIN".
	Mechanisms string
	// Heartbeat is what Connection.Tune proposes; 0 means 60 s, RabbitMQ's default.
	Heartbeat time.Duration
	// Echo, after Open-Ok, copies every byte back to the client instead of waiting for
	// Connection.Close: proxy tests use it to check what flows after the handshake.
	Echo bool

	opened      atomic.Int64
	cleanCloses atomic.Int64
	refusedTCP  atomic.Int64
	closesAcked atomic.Int64
}

// Opened returns how many connections got Connection.Open-Ok.
func (f *FakeAMQP) Opened() int { return int(f.opened.Load()) }

// CleanCloses returns how many connections the client ended cleanly: it sent Connection.Close
// after Open-Ok and the fake answered Close-Ok.
func (f *FakeAMQP) CleanCloses() int { return int(f.cleanCloses.Load()) }

// ClosesAcknowledged returns how many Connection.Close the fake sent (refused login, unknown
// vhost, OpenClose) were answered by the client with Close-Ok.
func (f *FakeAMQP) ClosesAcknowledged() int { return int(f.closesAcked.Load()) }

// LoginsDropped returns how many refused logins were answered by dropping the connection
// because the client did not advertise authentication_failure_close.
func (f *FakeAMQP) LoginsDropped() int { return int(f.refusedTCP.Load()) }

// fakeStartProperties are server-properties as RabbitMQ sends them (abridged).
func fakeStartProperties() amqpwire.Table {
	return amqpwire.Table{
		"capabilities": amqpwire.Table{
			"authentication_failure_close": true,
			"connection.blocked":           true,
			"publisher_confirms":           true,
		},
		"cluster_name": "rabbit@fake",
		"product":      "RabbitMQ",
		"version":      "3.13.7",
		"platform":     "Erlang/OTP 26.2.5",
	}
}

// Handle serves one connection. It returns when the handshake ends or the client goes away.
func (f *FakeAMQP) Handle(c net.Conn) {
	r := bufio.NewReader(c)
	if !readHeader(r) {
		return
	}
	mechs := f.Mechanisms
	if mechs == "" {
		mechs = "AMQPLAIN PLAIN"
	}
	start := &amqpwire.ConnectionStart{VersionMajor: 0, VersionMinor: 9, ServerProperties: fakeStartProperties(), Mechanisms: mechs, Locales: "en_US"}
	if amqpwire.WriteMethod(c, 0, start) != nil {
		return
	}
	m, ok := readMethod(r)
	if !ok {
		return
	}
	startOk, ok := m.(*amqpwire.ConnectionStartOk)
	if !ok {
		return
	}
	user, pass, _ := amqpwire.ParsePlainResponse(startOk.Response)
	if startOk.Mechanism != "PLAIN" || (f.Username != "" && (user != f.Username || pass != f.Password)) {
		caps, _ := startOk.ClientProperties["capabilities"].(amqpwire.Table)
		if caps["authentication_failure_close"] != true {
			f.refusedTCP.Add(1)
			return
		}
		f.closeWith(c, r, &amqpwire.ConnectionClose{ReplyCode: amqpwire.ReplyAccessRefused,
			ReplyText: "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."})
		return
	}
	if f.TuneDelay > 0 && !waitUnlessGone(c, r, f.TuneDelay) {
		return
	}
	if amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: f.tuneHeartbeat()}) != nil {
		return
	}
	if m, ok = readMethod(r); !ok {
		return
	}
	if _, ok := m.(*amqpwire.ConnectionTuneOk); !ok {
		return
	}
	if m, ok = readMethod(r); !ok {
		return
	}
	open, ok := m.(*amqpwire.ConnectionOpen)
	if !ok {
		return
	}
	vhosts := f.VHosts
	if vhosts == nil {
		vhosts = []string{"/"}
	}
	switch {
	case f.OpenClose != nil:
		f.closeWith(c, r, f.OpenClose)
		return
	case !slices.Contains(vhosts, open.VirtualHost):
		f.closeWith(c, r, &amqpwire.ConnectionClose{ReplyCode: amqpwire.ReplyNotAllowed,
			ReplyText: "NOT_ALLOWED - vhost " + open.VirtualHost + " not found", FailedClass: 10, FailedMethod: 40})
		return
	}
	if amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionOpenOk{}) != nil {
		return
	}
	f.opened.Add(1)
	if f.Echo {
		buf := make([]byte, 32<<10)
		_, _ = io.CopyBuffer(struct{ io.Writer }{c}, r, buf)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, c)
		return
	}
	if m, ok = readMethod(r); !ok {
		return
	}
	if _, ok := m.(*amqpwire.ConnectionClose); !ok {
		return
	}
	if amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionCloseOk{}) != nil {
		return
	}
	f.cleanCloses.Add(1)
	// Like RabbitMQ, leave closing the socket to the client, within bounds.
	waitUnlessGone(c, r, time.Second)
}

// closeWith sends Close and waits (briefly) for the client's Close-Ok, as a broker does.
func (f *FakeAMQP) closeWith(c net.Conn, r *bufio.Reader, cl *amqpwire.ConnectionClose) {
	if amqpwire.WriteMethod(c, 0, cl) != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if m, ok := readMethod(r); ok {
		if _, ok := m.(*amqpwire.ConnectionCloseOk); ok {
			f.closesAcked.Add(1)
		}
	}
}

// readHeader reads the client's 8-byte protocol header.
func readHeader(r io.Reader) bool {
	var h [8]byte
	_, err := io.ReadFull(r, h[:])
	return err == nil
}

// readMethod reads the next method frame, skipping heartbeats.
func readMethod(r io.Reader) (amqpwire.Method, bool) {
	for {
		f, err := amqpwire.ReadFrame(r, amqpwire.DefaultMaxFrameSize)
		if err != nil {
			return nil, false
		}
		if f.Type == amqpwire.FrameHeartbeat {
			continue
		}
		if f.Type != amqpwire.FrameMethod {
			return nil, false
		}
		m, err := amqpwire.DecodeMethod(f.Payload)
		return m, err == nil
	}
}

// waitUnlessGone waits d, or less if the client closes the connection first; it reports
// whether the client is still there. Bytes the client sends meanwhile are discarded.
func waitUnlessGone(c net.Conn, r io.Reader, d time.Duration) bool {
	deadline := time.Now().Add(d)
	_ = c.SetReadDeadline(deadline)
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	_, err := io.Copy(io.Discard, r)
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// AMQPGarbage answers the protocol header with bytes that are not an AMQP frame (an HTTP
// error, as a web server on the wrong port would), then waits for the client to close.
func AMQPGarbage(c net.Conn) {
	if !readHeader(c) {
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
}

// AMQP10Header answers the protocol header with AMQP 1.0's and closes, as an AMQP 1.0-only
// broker does.
func AMQP10Header(c net.Conn) {
	if !readHeader(c) {
		return
	}
	_, _ = io.WriteString(c, "AMQP\x00\x01\x00\x00")
}

// AMQPReset reads the protocol header and resets the connection (SO_LINGER 0, then close), so
// the client gets ECONNRESET rather than EOF.
func AMQPReset(c net.Conn) {
	if !readHeader(c) {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (f *FakeAMQP) tuneHeartbeat() uint16 {
	if f.Heartbeat <= 0 {
		return 60
	}
	return uint16(f.Heartbeat / time.Second)
}
