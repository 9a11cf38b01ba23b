package proxy

import (
	"errors"
	"fmt"
)

// Reason is why a session ended: the access log's end key. Some reasons are refusals (the
// client was turned away before it reached a broker); those are also counted under their label
// in amqplb_frontend_refused_total{reason}.
type Reason uint8

// The end reasons. The order is the order of Reasons.
const (
	EndClientClosed     Reason = iota // the client closed (or reset) its connection
	EndServerClosed                   // the broker closed (or reset) its connection
	EndIdleTimeout                    // nothing moved either way for idle_timeout
	EndServerDown                     // the server was marked down and on_marked_down shut its sessions
	EndShutdown                       // amqplb stopped and drain_timeout ran out
	EndDrained                        // the admin API ended the server's sessions ("shutdown_sessions")
	EndConnectFailed                  // refused: every dial failed
	EndRefusedMaxConn                 // refused: a max_connections limit was reached
	EndNoServer                       // refused: no server was available
	EndBadHeader                      // refused: not an AMQP protocol header amqplb accepts
	EndHandshake                      // refused: the client's handshake took longer than handshake_timeout
	EndDenied                         // refused: a tcp-request rule rejected the client
	EndBadProxy                       // refused: the PROXY header was missing, malformed or late
	EndTLSHandshake                   // refused: the TLS handshake failed or timed out
	EndBadHandshake                   // refused: a handshake frame did not decode (AMQP mode)
	EndHeartbeatTimeout               // nothing moved either way for 3 heartbeats (idle_timeout = "heartbeat")
	EndClosedByAdmin                  // POST /api/v1/sessions/{id}/close ended it
	EndRebalanced                     // rebalancing asked its broker to close it (Frontend.EndAs)
	EndNoResources                    // amqplb ran out of what it needed to go on (file descriptors)
	numReasons
)

// reasonNames holds each reason's end name and, for a refusal, its refused_total label.
var reasonNames = [numReasons]struct{ end, refused string }{
	EndClientClosed:     {"client_closed", ""},
	EndServerClosed:     {"server_closed", ""},
	EndIdleTimeout:      {"idle_timeout", ""},
	EndServerDown:       {"server_down", ""},
	EndShutdown:         {"shutdown", ""},
	EndDrained:          {"drained", ""},
	EndConnectFailed:    {"connect_failed", "connect_failed"},
	EndRefusedMaxConn:   {"refused_maxconn", "maxconn"},
	EndNoServer:         {"no_server", "no_server"},
	EndBadHeader:        {"bad_header", "bad_header"},
	EndHandshake:        {"handshake_timeout", "handshake_timeout"},
	EndDenied:           {"denied", "denied"},
	EndBadProxy:         {"bad_proxy", "bad_proxy"},
	EndTLSHandshake:     {"tls_handshake", "tls_handshake"},
	EndBadHandshake:     {"bad_handshake", "bad_handshake"},
	EndHeartbeatTimeout: {"heartbeat_timeout", ""},
	EndClosedByAdmin:    {"closed_by_admin", ""},
	EndRebalanced:       {"rebalanced", ""},
	EndNoResources:      {"no_resources", ""},
}

// String returns the reason as the access log writes it (end=...).
func (r Reason) String() string {
	if r >= numReasons {
		return fmt.Sprintf("reason(%d)", uint8(r))
	}
	return reasonNames[r].end
}

// Refusal returns the label the reason is counted under in amqplb_frontend_refused_total, and
// false when the reason is not a refusal.
func (r Reason) Refusal() (string, bool) {
	if r >= numReasons || reasonNames[r].refused == "" {
		return "", false
	}
	return reasonNames[r].refused, true
}

// Reasons lists every end reason, in a fixed order.
func Reasons() []Reason {
	out := make([]Reason, numReasons)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

// refusalOrder is the order of the refused_total labels: the order they were introduced in,
// which the metrics and the API keep.
var refusalOrder = [...]Reason{EndRefusedMaxConn, EndBadHeader, EndHandshake, EndNoServer, EndConnectFailed,
	EndDenied, EndBadProxy, EndTLSHandshake, EndBadHandshake}

// RefuseReasons lists every label of amqplb_frontend_refused_total{reason} (and of the API's
// refused counts), in a fixed order. admin receives this list; it keeps no copy.
func RefuseReasons() []string {
	out := make([]string, len(refusalOrder))
	for i, r := range refusalOrder {
		out[i], _ = r.Refusal()
	}
	return out
}

// refusalIndex maps a refusal to its index in RefuseReasons (-1 if it is none).
var refusalIndex = func() (idx [numReasons]int) {
	for i := range idx {
		idx[i] = -1
	}
	for i, r := range refusalOrder {
		idx[r] = i
	}
	return idx
}()

// endError is how every stage of a session reports that the session must end: the reason, the
// cause (nil when there is none), and the warning to log for a refusal. The session's run
// records, counts and logs it in one place.
type endError struct {
	reason Reason
	cause  error
	// warn is the message of the rate-limited warning; "" logs none.
	warn string
	// quietIfNull drops the warning of a client that sent nothing, with DontLogNull.
	quietIfNull bool
	// attrs are extra attributes of the warning.
	attrs []any
}

func (e *endError) Error() string {
	if e.cause == nil {
		return e.reason.String()
	}
	return e.reason.String() + ": " + e.cause.Error()
}

func (e *endError) Unwrap() error { return e.cause }

// ended is a session end without a warning.
func ended(r Reason, cause error) *endError { return &endError{reason: r, cause: cause} }

// refused is a refusal with its warning.
func refused(r Reason, warn string, cause error, attrs ...any) *endError {
	return &endError{reason: r, cause: cause, warn: warn, attrs: attrs}
}

// quiet drops the warning when the client sent nothing and DontLogNull is set.
func (e *endError) quiet() *endError {
	e.quietIfNull = true
	return e
}

// reasonOf returns the reason err carries, or EndClientClosed for an error of another kind.
func reasonOf(err error) (*endError, Reason) {
	var e *endError
	if errors.As(err, &e) {
		return e, e.reason
	}
	return nil, EndClientClosed
}
