package amqpwire

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// ClassConnection is the class id of the connection.* methods.
const ClassConnection = 10

// Method ids of the connection class.
const (
	MethodStart     = 10
	MethodStartOk   = 11
	MethodSecure    = 20
	MethodSecureOk  = 21
	MethodTune      = 30
	MethodTuneOk    = 31
	MethodOpen      = 40
	MethodOpenOk    = 41
	MethodClose     = 50
	MethodCloseOk   = 51
	MethodBlocked   = 60
	MethodUnblocked = 61
)

// Reply codes a broker puts in Connection.Close (spec constants; RabbitMQ's text follows them).
const (
	ReplySuccess          = 200
	ReplyConnectionForced = 320
	ReplyInvalidPath      = 402
	ReplyAccessRefused    = 403
	ReplyNotFound         = 404
	ReplyFrameError       = 501
	ReplySyntaxError      = 502
	ReplyCommandInvalid   = 503
	ReplyChannelError     = 504
	ReplyUnexpectedFrame  = 505
	ReplyResourceError    = 506
	ReplyNotAllowed       = 530
	ReplyNotImplemented   = 540
	ReplyInternalError    = 541
)

// Method is an AMQP method: the payload of a method frame. The connection-class methods are the
// types of this package; any other decodes as *UnknownMethod.
type Method interface {
	// MethodID returns the class and method ids.
	MethodID() (class, method uint16)
	encode(e *encoder)
	decode(d *decoder)
}

// MethodName names a method as the spec does, "Connection.Start", or by its ids, "20.10", for
// a method outside the connection class.
func MethodName(class, method uint16) string {
	if class == ClassConnection {
		switch method {
		case MethodStart:
			return "Connection.Start"
		case MethodStartOk:
			return "Connection.Start-Ok"
		case MethodSecure:
			return "Connection.Secure"
		case MethodSecureOk:
			return "Connection.Secure-Ok"
		case MethodTune:
			return "Connection.Tune"
		case MethodTuneOk:
			return "Connection.Tune-Ok"
		case MethodOpen:
			return "Connection.Open"
		case MethodOpenOk:
			return "Connection.Open-Ok"
		case MethodClose:
			return "Connection.Close"
		case MethodCloseOk:
			return "Connection.Close-Ok"
		case MethodBlocked:
			return "Connection.Blocked"
		case MethodUnblocked:
			return "Connection.Unblocked"
		}
	}
	return fmt.Sprintf("%d.%d", class, method)
}

// Name returns MethodName of m's ids.
func Name(m Method) string { return MethodName(m.MethodID()) }

// AppendMethod appends the payload of a method frame carrying m (ids, then arguments) to buf.
func AppendMethod(buf []byte, m Method) ([]byte, error) {
	class, method := m.MethodID()
	e := encoder{buf: binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(buf, class), method)}
	m.encode(&e)
	if e.err != nil {
		return buf, fmt.Errorf("encode %s: %w", MethodName(class, method), e.err)
	}
	return e.buf, nil
}

// DecodeMethod decodes the payload of a method frame. A method outside the connection class
// decodes as *UnknownMethod with its arguments undecoded. Trailing octets after the arguments are
// an error.
func DecodeMethod(payload []byte) (Method, error) {
	d := decoder{buf: payload}
	class, method := d.u16(), d.u16()
	if d.err != nil {
		return nil, fmt.Errorf("%w: method payload of %d octets is too short", ErrMalformed, len(payload))
	}
	m := newMethod(class, method)
	m.decode(&d)
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d octets after the arguments", len(d.buf)-d.off)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode %s: %w", MethodName(class, method), d.err)
	}
	return m, nil
}

func newMethod(class, method uint16) Method {
	if class == ClassConnection {
		switch method {
		case MethodStart:
			return &ConnectionStart{}
		case MethodStartOk:
			return &ConnectionStartOk{}
		case MethodSecure:
			return &ConnectionSecure{}
		case MethodSecureOk:
			return &ConnectionSecureOk{}
		case MethodTune:
			return &ConnectionTune{}
		case MethodTuneOk:
			return &ConnectionTuneOk{}
		case MethodOpen:
			return &ConnectionOpen{}
		case MethodOpenOk:
			return &ConnectionOpenOk{}
		case MethodClose:
			return &ConnectionClose{}
		case MethodCloseOk:
			return &ConnectionCloseOk{}
		case MethodBlocked:
			return &ConnectionBlocked{}
		case MethodUnblocked:
			return &ConnectionUnblocked{}
		}
	}
	return &UnknownMethod{Class: class, Method: method}
}

// UnknownMethod is a method this package does not decode; Args holds its raw arguments.
type UnknownMethod struct {
	// Class and Method are the ids.
	Class, Method uint16
	// Args are the undecoded arguments.
	Args []byte
}

// MethodID implements Method.
func (m *UnknownMethod) MethodID() (uint16, uint16) { return m.Class, m.Method }
func (m *UnknownMethod) encode(e *encoder)          { e.buf = append(e.buf, m.Args...) }
func (m *UnknownMethod) decode(d *decoder) {
	m.Args = append([]byte(nil), d.take(len(d.buf)-d.off, "arguments")...)
}

// ConnectionStart (10.10) is the broker's first method: its version, properties and the SASL
// mechanisms and locales it offers.
type ConnectionStart struct {
	// VersionMajor and VersionMinor are the protocol version: 0 and 9 for 0-9-1.
	VersionMajor, VersionMinor uint8
	// ServerProperties describe the broker (product, version, capabilities, cluster_name ...).
	ServerProperties Table
	// Mechanisms is a space-separated list of SASL mechanisms, such as "PLAIN AMQPLAIN".
	Mechanisms string
	// Locales is a space-separated list of locales, such as "en_US".
	Locales string
}

// MethodID implements Method.
func (*ConnectionStart) MethodID() (uint16, uint16) { return ClassConnection, MethodStart }
func (m *ConnectionStart) encode(e *encoder) {
	e.u8(m.VersionMajor)
	e.u8(m.VersionMinor)
	e.table(m.ServerProperties, 0)
	e.longstr(m.Mechanisms)
	e.longstr(m.Locales)
}
func (m *ConnectionStart) decode(d *decoder) {
	m.VersionMajor = d.u8()
	m.VersionMinor = d.u8()
	m.ServerProperties = d.table(0)
	m.Mechanisms = d.longstr()
	m.Locales = d.longstr()
}

// HasMechanism reports whether the broker offers the SASL mechanism name.
func (m *ConnectionStart) HasMechanism(name string) bool {
	for mech := range strings.FieldsSeq(m.Mechanisms) {
		if mech == name {
			return true
		}
	}
	return false
}

// ConnectionStartOk (10.11) is the client's answer to Start: its properties and its credentials
// for the chosen mechanism.
type ConnectionStartOk struct {
	// ClientProperties describe the client; see ClientProperties.
	ClientProperties Table
	// Mechanism is the chosen SASL mechanism.
	Mechanism string
	// Response is the mechanism's response; see PlainResponse.
	Response string
	// Locale is the chosen locale.
	Locale string
}

// MethodID implements Method.
func (*ConnectionStartOk) MethodID() (uint16, uint16) { return ClassConnection, MethodStartOk }
func (m *ConnectionStartOk) encode(e *encoder) {
	e.table(m.ClientProperties, 0)
	e.shortstr(m.Mechanism)
	e.longstr(m.Response)
	e.shortstr(m.Locale)
}
func (m *ConnectionStartOk) decode(d *decoder) {
	m.ClientProperties = d.table(0)
	m.Mechanism = d.shortstr()
	m.Response = d.longstr()
	m.Locale = d.shortstr()
}

// ConnectionSecure (10.20) is a SASL challenge from the broker.
type ConnectionSecure struct {
	// Challenge is the mechanism's challenge.
	Challenge string
}

// MethodID implements Method.
func (*ConnectionSecure) MethodID() (uint16, uint16) { return ClassConnection, MethodSecure }
func (m *ConnectionSecure) encode(e *encoder)        { e.longstr(m.Challenge) }
func (m *ConnectionSecure) decode(d *decoder)        { m.Challenge = d.longstr() }

// ConnectionSecureOk (10.21) answers a SASL challenge.
type ConnectionSecureOk struct {
	// Response is the answer to the challenge.
	Response string
}

// MethodID implements Method.
func (*ConnectionSecureOk) MethodID() (uint16, uint16) { return ClassConnection, MethodSecureOk }
func (m *ConnectionSecureOk) encode(e *encoder)        { e.longstr(m.Response) }
func (m *ConnectionSecureOk) decode(d *decoder)        { m.Response = d.longstr() }

// ConnectionTune (10.30) is the broker's proposal of connection limits; 0 means no limit (for
// Heartbeat: no heartbeats).
type ConnectionTune struct {
	// ChannelMax is the highest channel number the broker allows.
	ChannelMax uint16
	// FrameMax is the largest frame, in octets, the broker accepts.
	FrameMax uint32
	// Heartbeat is the heartbeat interval in seconds the broker wants.
	Heartbeat uint16
}

// MethodID implements Method.
func (*ConnectionTune) MethodID() (uint16, uint16) { return ClassConnection, MethodTune }
func (m *ConnectionTune) encode(e *encoder) {
	e.u16(m.ChannelMax)
	e.u32(m.FrameMax)
	e.u16(m.Heartbeat)
}
func (m *ConnectionTune) decode(d *decoder) {
	m.ChannelMax, m.FrameMax, m.Heartbeat = d.u16(), d.u32(), d.u16()
}

// ConnectionTuneOk (10.31) is the client's choice of connection limits.
type ConnectionTuneOk struct {
	// ChannelMax is the highest channel number the client will use; 0 means no limit.
	ChannelMax uint16
	// FrameMax is the largest frame, in octets, the client accepts; 0 means no limit.
	FrameMax uint32
	// Heartbeat is the heartbeat interval in seconds; 0 turns heartbeats off.
	Heartbeat uint16
}

// MethodID implements Method.
func (*ConnectionTuneOk) MethodID() (uint16, uint16) { return ClassConnection, MethodTuneOk }
func (m *ConnectionTuneOk) encode(e *encoder) {
	e.u16(m.ChannelMax)
	e.u32(m.FrameMax)
	e.u16(m.Heartbeat)
}
func (m *ConnectionTuneOk) decode(d *decoder) {
	m.ChannelMax, m.FrameMax, m.Heartbeat = d.u16(), d.u32(), d.u16()
}

// ConnectionOpen (10.40) opens the connection to a virtual host.
type ConnectionOpen struct {
	// VirtualHost is the vhost's name, such as "/".
	VirtualHost string
	// Capabilities is reserved-1 (deprecated); send "".
	Capabilities string
	// Insist is reserved-2 (deprecated); send false.
	Insist bool
}

// MethodID implements Method.
func (*ConnectionOpen) MethodID() (uint16, uint16) { return ClassConnection, MethodOpen }
func (m *ConnectionOpen) encode(e *encoder) {
	e.shortstr(m.VirtualHost)
	e.shortstr(m.Capabilities)
	if m.Insist {
		e.u8(1)
	} else {
		e.u8(0)
	}
}
func (m *ConnectionOpen) decode(d *decoder) {
	m.VirtualHost = d.shortstr()
	m.Capabilities = d.shortstr()
	m.Insist = d.bits()&1 != 0
}

// ConnectionOpenOk (10.41) confirms Open: the connection is ready for channels.
type ConnectionOpenOk struct {
	// KnownHosts is reserved-1 (deprecated); brokers send "".
	KnownHosts string
}

// MethodID implements Method.
func (*ConnectionOpenOk) MethodID() (uint16, uint16) { return ClassConnection, MethodOpenOk }
func (m *ConnectionOpenOk) encode(e *encoder)        { e.shortstr(m.KnownHosts) }
func (m *ConnectionOpenOk) decode(d *decoder)        { m.KnownHosts = d.shortstr() }

// ConnectionClose (10.50) closes the connection, from either side, with a reply code and text
// (such as 403 "ACCESS_REFUSED - Login was refused ...") and the method that caused it, if any.
type ConnectionClose struct {
	// ReplyCode is one of the Reply* codes; 200 for a normal close.
	ReplyCode uint16
	// ReplyText is human-readable; RabbitMQ starts it with the code's name.
	ReplyText string
	// FailedClass and FailedMethod are the ids of the method that caused the close, or 0
	// (the spec's class-id and method-id).
	FailedClass, FailedMethod uint16
}

// MethodID implements Method.
func (*ConnectionClose) MethodID() (uint16, uint16) { return ClassConnection, MethodClose }
func (m *ConnectionClose) encode(e *encoder) {
	e.u16(m.ReplyCode)
	e.shortstr(m.ReplyText)
	e.u16(m.FailedClass)
	e.u16(m.FailedMethod)
}
func (m *ConnectionClose) decode(d *decoder) {
	m.ReplyCode = d.u16()
	m.ReplyText = d.shortstr()
	m.FailedClass, m.FailedMethod = d.u16(), d.u16()
}

// String returns "403 ACCESS_REFUSED - ...": the code and the text, as a status page shows them.
func (m *ConnectionClose) String() string { return fmt.Sprintf("%d %s", m.ReplyCode, m.ReplyText) }

// ConnectionCloseOk (10.51) confirms a Close; after it the peer closes the socket.
type ConnectionCloseOk struct{}

// MethodID implements Method.
func (*ConnectionCloseOk) MethodID() (uint16, uint16) { return ClassConnection, MethodCloseOk }
func (*ConnectionCloseOk) encode(*encoder)            {}
func (*ConnectionCloseOk) decode(*decoder)            {}

// ConnectionBlocked (10.60) is RabbitMQ's notice that it stopped reading from publishers (a
// resource alarm); sent only to clients that advertise the connection.blocked capability.
type ConnectionBlocked struct {
	// Reason says why, such as "low on memory".
	Reason string
}

// MethodID implements Method.
func (*ConnectionBlocked) MethodID() (uint16, uint16) { return ClassConnection, MethodBlocked }
func (m *ConnectionBlocked) encode(e *encoder)        { e.shortstr(m.Reason) }
func (m *ConnectionBlocked) decode(d *decoder)        { m.Reason = d.shortstr() }

// ConnectionUnblocked (10.61) says a ConnectionBlocked is over.
type ConnectionUnblocked struct{}

// MethodID implements Method.
func (*ConnectionUnblocked) MethodID() (uint16, uint16) { return ClassConnection, MethodUnblocked }
func (*ConnectionUnblocked) encode(*encoder)            {}
func (*ConnectionUnblocked) decode(*decoder)            {}

// PlainResponse returns the SASL PLAIN response for username and password: "\x00user\x00pass".
func PlainResponse(username, password string) string {
	return "\x00" + username + "\x00" + password
}

// ParsePlainResponse splits a SASL PLAIN response into its username and password (the
// authorization identity before the first NUL is ignored); ok is false if it is not one.
func ParsePlainResponse(resp string) (username, password string, ok bool) {
	_, rest, ok := strings.Cut(resp, "\x00")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "\x00")
}

// ClientProperties returns client-properties for Start-Ok naming product and, if not empty,
// connectionName (shown by RabbitMQ's management UI and logs). They advertise the capability
// authentication_failure_close, without which RabbitMQ answers a refused login by dropping the
// TCP connection instead of sending Close 403, and connection.blocked as false, since amqplb
// never publishes.
func ClientProperties(product, connectionName string) Table {
	t := Table{
		"product":  product,
		"platform": "Go",
		"capabilities": Table{
			"authentication_failure_close": true,
			"connection.blocked":           false,
		},
	}
	if connectionName != "" {
		t["connection_name"] = connectionName
	}
	return t
}

// PlainStartOk returns a Start-Ok that logs in with SASL PLAIN, locale en_US.
func PlainStartOk(username, password string, props Table) *ConnectionStartOk {
	return &ConnectionStartOk{
		ClientProperties: props,
		Mechanism:        "PLAIN",
		Response:         PlainResponse(username, password),
		Locale:           "en_US",
	}
}
