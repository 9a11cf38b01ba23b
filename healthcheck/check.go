// Package healthcheck owns the active checks of brokers: checkers that ask a server whether it
// really serves AMQP (a full handshake, a probe of the first reply, a TCP connect, or a
// tcp-check send/expect script as HAProxy's), or whatever else a backend serves answers HTTP
// as expected (HAProxy's option httpchk, for the management UI), optionally with the node's alarms from its
// management API, and a node's maintenance mode (rabbitmq-upgrade drain) as the other nodes'
// management APIs tell it (KindMaintenance: the server drains, its health stays); the Result
// they give, with the broker's own reply code, a failure kind and a short human reason; the rise/fall rules that turn results into state changes; the Monitor
// that schedules the checks of a backend's servers, takes in passive failures
// (Monitor.Suspect) and changes the servers' health; and what the checks know of each server
// (Statuses): its last check, its failures by kind (the Fail constants) and the histogram of
// its check durations, which the admin API and the metrics read. It also runs HAProxy's agent
// checks (MonitorOptions.Agents): an agent's line (ParseAgentReply) sets the server's admin
// state, weight, connection cap and agent health, and its last answer is in Statuses too.
//
// A checker checks a Target: an address and, for a backend.Server, a dial function that goes
// through Server.Dial, so a check connects to the server's check port, sends the PROXY header
// the server's sessions get and does the TLS handshake of a TLS server, exactly like a session
// (the Monitor builds these targets). A TLS handshake that fails fails the check, with the
// reason ("TLS handshake: x509: certificate signed by unknown authority").
//
// A checker does one check and returns; it keeps no state between checks, holds no connection
// open afterwards and leaves no goroutine behind. What a check learns that the next check needs
// (the broker's version, which says whether a PROXY v2 LOCAL header is accepted) travels in
// the Result and is kept by the Monitor, per server. Policy is the pure core of the monitor:
// given a server's Health and a result, the next Health and when to check again. The package
// changes a backend.Server only through its health, maintenance and suspect methods (SetHealth,
// SetMaintenance, MarkSuspect, ClearSuspect), and for an agent's answer through SetAdmin,
// SetWeight, SetMaxConnections and SetAgentHealth: the server knows whether it is up and eligible, never why; the
// why stays here, in Statuses. It never touches sessions (it calls MonitorOptions.OnTransition
// for that), balancing or the admin API.
package healthcheck

import (
	"context"
	"fmt"
	"net"
	"time"
)

// DefaultTimeout bounds a whole check when a checker's Timeout is zero.
const DefaultTimeout = time.Second

// Result is the outcome of one check.
type Result struct {
	// OK reports whether the server passed.
	OK bool
	// Kind classifies a failure for metrics and the admin API: one of FailureKinds
	// (FailTimeout, FailRefused, FailReset, FailAuth for a 403, FailVHost for a 530,
	// FailClosed for another Close from the broker, FailProtocol, FailAlarm, FailOther).
	// It is empty when OK.
	Kind string
	// Reason is short and human, for the status page and logs: "AMQP handshake ok",
	// "connection refused", "timeout after 500ms waiting for Connection.Start",
	// "broker closed: 403 ACCESS_REFUSED - Login was refused ...".
	Reason string
	// Code is the reply code of a Connection.Close the broker sent (403, 530, 541, 320 ...),
	// or 0 if it sent none.
	Code int
	// Duration is how long the check took, connect included.
	Duration time.Duration
	// At is when the check started.
	At time.Time
	// BrokerVersion is the "version" server property of the broker's Connection.Start
	// ("3.12.4"), when the check got that far (AMQP and amqp-probe checks), else "".
	BrokerVersion string

	// detail says, for the log, how a KindMaintenance result was found.
	detail string
}

// Target is what a checker checks: one server.
type Target struct {
	// Addr is the host:port the check connects to. The management API is asked on its host.
	Addr string
	// Dial, if set, opens the check's connection, bounded by ctx; the Monitor's goes through
	// backend.Server.Dial (check port, PROXY header, TLS). Nil means a plain TCP connect to
	// Addr.
	Dial func(ctx context.Context) (net.Conn, error)
	// SendProxy is the PROXY protocol version Dial writes first (0 for none), so a failure
	// can say that the broker may not expect one.
	SendProxy int
	// ManagementPort is the server's own management API port (on Addr's host); 0 means
	// ManagementOptions.Port.
	ManagementPort int
}

// dial opens the check's connection to t.
func (t Target) dial(ctx context.Context) (net.Conn, error) {
	if t.Dial != nil {
		return t.Dial(ctx)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", t.Addr)
}

// Checker checks one server. Check is bounded as a whole by ctx and by the checker's own
// timeout, whichever ends first, and always returns a Result (never blocks past them).
// Checkers are safe for concurrent use.
type Checker interface {
	Check(ctx context.Context, t Target) Result
}

// Kinds of checker, as named by the health_check.type configuration key.
const (
	// KindAMQP is a full AMQP handshake up to Connection.Open-Ok, then a clean close.
	KindAMQP = "amqp"
	// KindAMQPProbe sends the protocol header and waits for Connection.Start only.
	KindAMQPProbe = "amqp-probe"
	// KindTCP only connects, or runs Options.Steps (tcp-check) after the connect.
	KindTCP = "tcp"
	// KindHTTP sends an HTTP/1.1 request and judges the response (Options.HTTP).
	KindHTTP = "http"
	// KindNone checks nothing: the server is always up.
	KindNone = "none"
)

// Options configure a checker made by NewChecker. Zero values mean the checker's defaults.
type Options struct {
	// Timeout bounds a whole check (connect included); 0 means DefaultTimeout.
	Timeout time.Duration
	// VHost, Username and Password are used by KindAMQP; see AMQPChecker.
	VHost, Username, Password string
	// Steps is the tcp-check script of KindTCP (see TCPStep); none means a connect only. It
	// is an error with another kind.
	Steps []TCPStep
	// HTTP is the request and the expected response of KindHTTP (see HTTPChecker; its
	// Timeout is Options.Timeout); nil means GET / expecting a 2xx or 3xx status. It is an
	// error with another kind.
	HTTP *HTTPChecker
	// OnTune, with KindAMQP, is called with the heartbeat each broker proposes in
	// Connection.Tune; see AMQPChecker.
	OnTune func(heartbeat time.Duration)
}

// NewChecker returns the checker of the given kind (one of the Kind constants; "" means
// KindAMQP). For KindNone it returns a nil Checker: the server is always up and nothing is
// checked. Invalid tcp-check steps are an error naming the step.
func NewChecker(kind string, o Options) (Checker, error) {
	if len(o.Steps) > 0 && kind != KindTCP {
		return nil, fmt.Errorf("tcp-check steps need health check type %q, not %q", KindTCP, kind)
	}
	if o.HTTP != nil && kind != KindHTTP {
		return nil, fmt.Errorf("an HTTP request needs health check type %q, not %q", KindHTTP, kind)
	}
	switch kind {
	case KindAMQP, "":
		return &AMQPChecker{VHost: o.VHost, Username: o.Username, Password: o.Password, Timeout: o.Timeout, OnTune: o.OnTune}, nil
	case KindAMQPProbe:
		return &ProbeChecker{Timeout: o.Timeout}, nil
	case KindTCP:
		return NewTCPChecker(o.Timeout, o.Steps)
	case KindHTTP:
		var h HTTPChecker
		if o.HTTP != nil {
			h = *o.HTTP
		}
		h.Timeout = o.Timeout
		return NewHTTPChecker(h)
	case KindNone:
		return nil, nil
	}
	return nil, fmt.Errorf("unknown health check type %q (want %s, %s, %s, %s or %s)", kind, KindAMQP, KindAMQPProbe, KindTCP, KindHTTP, KindNone)
}

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultTimeout
	}
	return d
}
