package healthcheck

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amqplb/amqplb/internal/amqpwire"
)

// AMQPChecker passes a server that completes an AMQP 0-9-1 handshake: protocol header,
// Connection.Start (version 0-9, offering PLAIN), Start-Ok, Tune, Tune-Ok, Open of VHost and
// Open-Ok. It then closes with Connection.Close 200 and waits for Close-Ok, so the broker logs a
// clean close rather than "client unexpectedly closed TCP connection".
//
// A Connection.Close from the broker at any step fails the check with the broker's reply code
// and text (403 ACCESS_REFUSED for a refused login, 530 NOT_ALLOWED for a missing vhost or
// missing permissions, 541 INTERNAL_ERROR, 320 CONNECTION_FORCED) and is answered with Close-Ok.
// A broker that opens but never confirms the close fails too: the check ends within Timeout.
type AMQPChecker struct {
	// VHost is the virtual host to open; "" means "/".
	VHost string
	// Username and Password log in with SASL PLAIN; both empty mean guest/guest, RabbitMQ's
	// default account (which it accepts from loopback only).
	Username, Password string
	// Timeout bounds the whole check, connect included; 0 means DefaultTimeout.
	Timeout time.Duration
	// OnTune, if set, is called with the heartbeat the broker proposes in Connection.Tune (0 for
	// none), so that amqplb can warn when a fixed idle timeout would cut idle clients.
	OnTune func(heartbeat time.Duration)
}

// Check implements Checker.
func (c *AMQPChecker) Check(ctx context.Context, t Target) Result {
	return run(ctx, t, timeoutOr(c.Timeout), "AMQP handshake ok", c.handshake)
}

func (c *AMQPChecker) credentials() (user, pass string) {
	if c.Username == "" && c.Password == "" {
		return "guest", "guest"
	}
	return c.Username, c.Password
}

func (c *AMQPChecker) vhost() string {
	if c.VHost == "" {
		return "/"
	}
	return c.VHost
}

// connectionName is shown by RabbitMQ's management UI and logs for the check's connections.
const connectionName = "amqplb health check"

func (c *AMQPChecker) handshake(cv *conversation) error {
	start, err := cv.start()
	if err != nil {
		return err
	}
	if !start.HasMechanism("PLAIN") {
		return failf(FailAuth, 0, "broker does not offer SASL PLAIN (offers %q)", start.Mechanisms)
	}
	user, pass := c.credentials()
	if err := cv.send(amqpwire.PlainStartOk(user, pass, amqpwire.ClientProperties("amqplb", connectionName))); err != nil {
		return err
	}
	m, err := cv.await(amqpwire.MethodTune)
	if err != nil {
		return err
	}
	tune := m.(*amqpwire.ConnectionTune)
	if c.OnTune != nil {
		c.OnTune(time.Duration(tune.Heartbeat) * time.Second)
	}
	// Heartbeat 0: the connection lives for milliseconds.
	if err := cv.send(&amqpwire.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax},
		&amqpwire.ConnectionOpen{VirtualHost: c.vhost()}); err != nil {
		return err
	}
	if _, err := cv.await(amqpwire.MethodOpenOk); err != nil {
		return err
	}
	if err := cv.send(&amqpwire.ConnectionClose{ReplyCode: amqpwire.ReplySuccess, ReplyText: connectionName}); err != nil {
		return err
	}
	_, err = cv.await(amqpwire.MethodCloseOk)
	return err
}

// ProbeChecker passes a server that answers the AMQP 0-9-1 protocol header with a valid
// Connection.Start. It is lighter than AMQPChecker (no login, no vhost) but sees less: a broker
// whose vhost is down, or that refuses logins, still passes. It closes the TCP connection after
// Start, which RabbitMQ logs as a connection closed during the handshake.
type ProbeChecker struct {
	// Timeout bounds the whole check, connect included; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Check implements Checker.
func (c *ProbeChecker) Check(ctx context.Context, t Target) Result {
	return run(ctx, t, timeoutOr(c.Timeout), "AMQP Connection.Start received", func(cv *conversation) error {
		_, err := cv.start()
		return err
	})
}

// failure is a failed check: its Result's Kind, Reason and Code.
type failure struct {
	kind   string
	reason string
	code   int
}

func (f *failure) Error() string { return f.reason }

// failf returns a failure of the given kind (one of FailureKinds) and broker code.
func failf(kind string, code int, format string, args ...any) error {
	return &failure{kind: kind, reason: fmt.Sprintf(format, args...), code: code}
}

// closeKind classifies a Connection.Close from the broker by its reply code.
func closeKind(code int) string {
	switch code {
	case amqpwire.ReplyAccessRefused:
		return FailAuth
	case amqpwire.ReplyNotAllowed:
		return FailVHost
	}
	return FailClosed
}

// run connects to t and, if talk is not nil, lets it talk to the server, all within timeout
// and ctx. It closes the connection and stops watching ctx before it returns.
func run(ctx context.Context, t Target, timeout time.Duration, okReason string, talk func(*conversation) error) Result {
	at := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	cv := &conversation{ctx: ctx, budget: deadline.Sub(at), sendProxy: t.SendProxy}
	err := cv.dialAndTalk(t, deadline, talk)
	res := Result{At: at, Duration: time.Since(at), BrokerVersion: cv.version}
	var f *failure
	switch {
	case err == nil:
		res.OK, res.Reason = true, okReason
	case errors.As(err, &f):
		res.Kind, res.Reason, res.Code = f.kind, f.reason, f.code
	default:
		res.Kind, res.Reason = FailOther, err.Error()
	}
	return res
}

func (cv *conversation) dialAndTalk(t Target, deadline time.Time, talk func(*conversation) error) error {
	nc, err := t.dial(cv.ctx)
	if err != nil {
		return dialFailure(cv.ctx, err, cv.budget)
	}
	defer nc.Close()
	if talk == nil {
		return nil
	}
	if err := nc.SetDeadline(deadline); err != nil {
		return failf(FailOther, 0, "set deadline: %v", err)
	}
	// Cancelling ctx (not only its deadline) must end blocked I/O too. Wait for the callback
	// if it started, so no goroutine outlives the check.
	done := make(chan struct{})
	stop := context.AfterFunc(cv.ctx, func() {
		defer close(done)
		_ = nc.SetDeadline(time.Unix(1, 0))
	})
	defer func() {
		if !stop() {
			<-done
		}
	}()
	cv.nc, cv.r = nc, bufio.NewReader(nc)
	return talk(cv)
}

// conversation is one check's AMQP exchange with a server on channel 0.
type conversation struct {
	ctx    context.Context
	budget time.Duration
	// sendProxy is the PROXY protocol version written before the conversation (0 for none).
	sendProxy int
	nc        net.Conn
	r         *bufio.Reader
	wbuf      []byte
	// version is the broker's "version" server property, once Connection.Start came.
	version string
}

// start sends the protocol header and reads Connection.Start, checking that the server speaks
// AMQP 0-9-1.
func (cv *conversation) start() (*amqpwire.ConnectionStart, error) {
	if _, err := io.WriteString(cv.nc, amqpwire.ProtocolHeader); err != nil {
		return nil, cv.ioFailure(err, "sending the protocol header")
	}
	// Frames are at least 8 octets, so this waits for nothing a valid reply lacks; it keeps
	// the first octets to name what a server that is not an AMQP broker said instead.
	// Peek consumes the read error it meets (a reset, say), so keep it for the reason.
	first, peekErr := cv.r.Peek(8)
	first = append([]byte(nil), first...)
	f, err := amqpwire.ReadFrame(cv.r, amqpwire.DefaultMaxFrameSize)
	if err != nil && peekErr != nil && !errors.Is(err, amqpwire.ErrMalformed) {
		err = peekErr
	}
	var he *amqpwire.HeaderError
	switch {
	case errors.As(err, &he) && he.Protocol() == "AMQP 0-9-1" && cv.sendProxy != 0:
		// What RabbitMQ answers a PROXY header when its proxy_protocol is off.
		return nil, failf(FailProtocol, 0, "broker refused the PROXY v%d header (is proxy_protocol enabled on the broker?)", cv.sendProxy)
	case errors.As(err, &he) && he.Protocol() == "AMQP 0-9-1":
		return nil, failf(FailProtocol, 0, "broker refused the AMQP 0-9-1 protocol header")
	case errors.As(err, &he):
		return nil, failf(FailProtocol, 0, "not an AMQP 0-9-1 broker: replied %s header", he.Protocol())
	case errors.Is(err, amqpwire.ErrMalformed):
		return nil, failf(FailProtocol, 0, "not an AMQP 0-9-1 broker: replied %s", quoteBytes(first))
	case err != nil:
		return nil, cv.ioFailure(err, "waiting for Connection.Start")
	case f.Type != amqpwire.FrameMethod || f.Channel != 0:
		return nil, failf(FailProtocol, 0, "not an AMQP 0-9-1 broker: first frame is of type %d on channel %d", f.Type, f.Channel)
	}
	m, err := amqpwire.DecodeMethod(f.Payload)
	if err != nil {
		return nil, failf(FailProtocol, 0, "not an AMQP 0-9-1 broker: %v", err)
	}
	switch m := m.(type) {
	case *amqpwire.ConnectionStart:
		if m.VersionMajor != 0 || m.VersionMinor != 9 {
			return nil, failf(FailProtocol, 0, "not an AMQP 0-9-1 broker: Connection.Start offers version %d-%d", m.VersionMajor, m.VersionMinor)
		}
		cv.version = brokerVersion(m.ServerProperties)
		return m, nil
	case *amqpwire.ConnectionClose:
		return nil, cv.closedByBroker(m)
	default:
		return nil, failf(FailProtocol, 0, "protocol error: %s waiting for Connection.Start", amqpwire.Name(m))
	}
}

// send writes methods on channel 0 in one write.
func (cv *conversation) send(ms ...amqpwire.Method) error {
	buf := cv.wbuf[:0]
	for _, m := range ms {
		var err error
		if buf, err = amqpwire.AppendMethodFrame(buf, 0, m); err != nil {
			return failf(FailOther, 0, "%v", err)
		}
	}
	cv.wbuf = buf
	if _, err := cv.nc.Write(buf); err != nil {
		return cv.ioFailure(err, "sending "+amqpwire.Name(ms[0]))
	}
	return nil
}

// await reads the next connection method, which must be the one with id method. A
// Connection.Close from the broker is answered with Close-Ok and fails the check with its code.
func (cv *conversation) await(method uint16) (amqpwire.Method, error) {
	want := amqpwire.MethodName(amqpwire.ClassConnection, method)
	for {
		f, err := amqpwire.ReadFrame(cv.r, amqpwire.DefaultMaxFrameSize)
		if err != nil {
			return nil, cv.ioFailure(err, "waiting for "+want)
		}
		if f.Type == amqpwire.FrameHeartbeat {
			continue
		}
		if f.Type != amqpwire.FrameMethod || f.Channel != 0 {
			return nil, failf(FailProtocol, 0, "protocol error: frame of type %d on channel %d waiting for %s", f.Type, f.Channel, want)
		}
		m, err := amqpwire.DecodeMethod(f.Payload)
		if err != nil {
			return nil, failf(FailProtocol, 0, "protocol error waiting for %s: %v", want, err)
		}
		class, id := m.MethodID()
		switch {
		case class == amqpwire.ClassConnection && id == method:
			return m, nil
		case class == amqpwire.ClassConnection && id == amqpwire.MethodClose:
			return nil, cv.closedByBroker(m.(*amqpwire.ConnectionClose))
		case class == amqpwire.ClassConnection && (id == amqpwire.MethodBlocked || id == amqpwire.MethodUnblocked):
			continue // a resource alarm does not stop a broker from serving consumers
		case class == amqpwire.ClassConnection && id == amqpwire.MethodSecure:
			return nil, failf(FailProtocol, 0, "broker sent Connection.Secure waiting for %s: PLAIN takes no challenge", want)
		}
		return nil, failf(FailProtocol, 0, "protocol error: %s waiting for %s", amqpwire.Name(m), want)
	}
}

// closedByBroker answers the broker's Close with Close-Ok, as the protocol asks, and returns
// the failure carrying its reply code and text.
func (cv *conversation) closedByBroker(cl *amqpwire.ConnectionClose) error {
	_ = amqpwire.WriteMethod(cv.nc, 0, &amqpwire.ConnectionCloseOk{})
	return failf(closeKind(int(cl.ReplyCode)), int(cl.ReplyCode), "broker closed: %s", cl)
}

// ioFailure turns an I/O error during step (such as "waiting for Connection.Tune") into a
// failure whose reason says what happened in words.
func (cv *conversation) ioFailure(err error, step string) error {
	var he *amqpwire.HeaderError
	switch {
	case errors.Is(cv.ctx.Err(), context.Canceled):
		return failf(FailOther, 0, "check canceled %s", step)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return failf(FailTimeout, 0, "timeout after %s %s", roundBudget(cv.budget), step)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failf(FailReset, 0, "connection closed by broker %s", step)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return failf(FailReset, 0, "connection reset by broker %s", step)
	case errors.As(err, &he):
		return failf(FailProtocol, 0, "protocol error: broker sent the %s protocol header %s", he.Protocol(), step)
	case errors.Is(err, amqpwire.ErrMalformed):
		return failf(FailProtocol, 0, "protocol error %s: %v", step, err)
	}
	return failf(FailOther, 0, "%s: %v", step, unwrapOp(err))
}

// dialFailure names why a connect failed: the TCP connect, or, through backend.Server.Dial,
// the PROXY header or the TLS handshake after it.
func dialFailure(ctx context.Context, err error, budget time.Duration) error {
	if step, inner := greetStep(err); step != "" {
		return greetFailure(ctx, step, inner, budget)
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return failf(FailRefused, 0, "connection refused")
	case errors.Is(ctx.Err(), context.Canceled):
		return failf(FailOther, 0, "check canceled while connecting")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), ctx.Err() != nil:
		return failf(FailTimeout, 0, "timeout after %s connecting", roundBudget(budget))
	case errors.Is(err, syscall.EHOSTUNREACH):
		return failf(FailOther, 0, "no route to host")
	case errors.Is(err, syscall.ENETUNREACH):
		return failf(FailOther, 0, "network is unreachable")
	case errors.As(err, &dnsErr):
		return failf(FailOther, 0, "cannot resolve %s: %s", dnsErr.Name, dnsErr.Err)
	}
	return failf(FailOther, 0, "connect: %v", unwrapOp(err))
}

// Prefixes of backend.Server.Dial's errors for the steps after the TCP connect.
const (
	tlsPrefix   = "TLS handshake: "
	proxyPrefix = "send PROXY header: "
)

// greetStep finds, in err's chain, the error of the step of backend.Server.Dial after the
// TCP connect that failed: it returns the step's name ("TLS handshake" or "PROXY header") and
// the error it wraps, or "" when the TCP connect itself failed.
func greetStep(err error) (step string, inner error) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch msg := e.Error(); {
		case strings.HasPrefix(msg, tlsPrefix):
			return "TLS handshake", errors.Unwrap(e)
		case strings.HasPrefix(msg, proxyPrefix):
			return "PROXY header", errors.Unwrap(e)
		}
	}
	return "", nil
}

// greetFailure names why the TLS handshake or the PROXY header write failed. A TLS failure
// that is not a timeout or a hang-up (an unknown authority, a wrong name, a server that does
// not speak TLS) is a protocol failure whose reason starts with "TLS handshake: ".
func greetFailure(ctx context.Context, step string, err error, budget time.Duration) error {
	if err == nil {
		err = errors.New("failed")
	}
	during := "in the " + step
	if step == "PROXY header" {
		during = "sending the PROXY header"
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return failf(FailOther, 0, "check canceled %s", during)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return failf(FailTimeout, 0, "timeout after %s %s", roundBudget(budget), during)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failf(FailReset, 0, "connection closed by broker %s", during)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return failf(FailReset, 0, "connection reset by broker %s", during)
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) && cve.Err != nil {
		// "x509: certificate signed by unknown authority" says it all; drop "tls: failed to
		// verify certificate: ".
		err = cve.Err
	}
	return failf(FailProtocol, 0, "%s: %v", step, unwrapOp(err))
}

// unwrapOp drops the "dial tcp 127.0.0.1:1->127.0.0.1:5672:" prefix of a *net.OpError: the
// status page shows the address already.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func roundBudget(d time.Duration) time.Duration {
	if d >= time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d
}

// quoteBytes shows what a non-AMQP server sent, as a Go string literal ("HTTP/1.1").
func quoteBytes(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	return strconv.Quote(string(b))
}
