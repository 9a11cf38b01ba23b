package amqp10

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"time"
)

// Descriptor codes, in domain 0x00000000, of the performatives and the error type.
const (
	CodeOpen           = 0x10
	CodeBegin          = 0x11
	CodeAttach         = 0x12
	CodeFlow           = 0x13
	CodeTransfer       = 0x14
	CodeDisposition    = 0x15
	CodeDetach         = 0x16
	CodeEnd            = 0x17
	CodeClose          = 0x18
	CodeError          = 0x1d
	CodeSASLMechanisms = 0x40
	CodeSASLInit       = 0x41
	CodeSASLChallenge  = 0x42
	CodeSASLResponse   = 0x43
	CodeSASLOutcome    = 0x44
)

// symbolic maps the symbolic descriptors of the types above to their codes.
var symbolic = map[string]uint64{
	"amqp:open:list": CodeOpen, "amqp:begin:list": CodeBegin, "amqp:attach:list": CodeAttach,
	"amqp:flow:list": CodeFlow, "amqp:transfer:list": CodeTransfer,
	"amqp:disposition:list": CodeDisposition, "amqp:detach:list": CodeDetach,
	"amqp:end:list": CodeEnd, "amqp:close:list": CodeClose, "amqp:error:list": CodeError,
	"amqp:sasl-mechanisms:list": CodeSASLMechanisms, "amqp:sasl-init:list": CodeSASLInit,
	"amqp:sasl-challenge:list": CodeSASLChallenge, "amqp:sasl-response:list": CodeSASLResponse,
	"amqp:sasl-outcome:list": CodeSASLOutcome,
}

// descriptor returns the numeric code of a descriptor: a ulong, or a symbol naming one of the
// types above.
func descriptor(d Value) (uint64, error) {
	switch d.Kind {
	case KindUlong:
		return d.Num, nil
	case KindSymbol:
		if code, ok := symbolic[string(d.Bytes)]; ok {
			return code, nil
		}
		return 0, malformed("unknown descriptor %q", d.Bytes)
	}
	return 0, malformed("descriptor is a %v", d.Kind)
}

// Performative decodes the performative at the start of a frame body: a described list. It
// returns the descriptor's code and the list's fields, and ignores the octets that follow the
// list (a transfer's payload). A symbolic descriptor that names a performative, SASL frame or
// error ("amqp:open:list") is returned as that type's code; any other is an error. The fields
// alias body; those of a sasl-init or sasl-response hold the credentials, which ParseSASLInit
// does not.
func Performative(body []byte) (code uint64, fields []Value, err error) {
	if len(body) == 0 || body[0] != 0x00 {
		return 0, nil, malformed("frame body is not a described type")
	}
	d, rest, err := decode(body[1:], 1)
	if err != nil {
		return 0, nil, err
	}
	if code, err = descriptor(d); err != nil {
		return 0, nil, err
	}
	if len(rest) == 0 {
		return 0, nil, errShort
	}
	if c := rest[0]; c != 0x45 && c != 0xc0 && c != 0xd0 {
		return 0, nil, malformed("performative %#x has format code %#02x, not a list", code, c)
	}
	l, _, err := decode(rest, 1)
	if err != nil {
		return 0, nil, err
	}
	return code, l.Items, nil
}

// expect decodes body as the performative want.
func expect(body []byte, want uint64) ([]Value, error) {
	code, fields, err := Performative(body)
	if err == nil && code != want {
		err = malformed("descriptor %#x, want %#x", code, want)
	}
	return fields, err
}

// field returns fields[i], or null if the list is shorter.
func field(fields []Value, i int) Value {
	if i < len(fields) {
		return fields[i]
	}
	return Value{}
}

// text returns field i, a string or symbol as k says, or "" if it is null.
func text(fields []Value, i int, k Kind) (string, error) {
	switch v := field(fields, i); v.Kind {
	case KindNull:
		return "", nil
	case k:
		return string(v.Bytes), nil
	default:
		return "", malformed("field %d is a %v, not a %v", i, v.Kind, k)
	}
}

// unsigned returns field i, an unsigned integer of at most maxVal, or def if it is null.
func unsigned(fields []Value, i int, maxVal, def uint64) (uint64, error) {
	v := field(fields, i)
	if v.Kind == KindNull {
		return def, nil
	}
	if n, ok := v.Uint(); ok && n <= maxVal {
		return n, nil
	}
	return 0, malformed("field %d is a %v of %d, not an unsigned integer up to %d", i, v.Kind, v.Num, maxVal)
}

// SASLMechanisms is the sasl-mechanisms frame a server sends first.
type SASLMechanisms struct {
	Mechanisms []string // the mechanisms the server offers, such as "PLAIN" and "ANONYMOUS"
}

// ParseSASLMechanisms decodes a sasl-mechanisms frame body.
func ParseSASLMechanisms(body []byte) (SASLMechanisms, error) {
	fields, err := expect(body, CodeSASLMechanisms)
	if err != nil {
		return SASLMechanisms{}, err
	}
	v := field(fields, 0)
	if v.Kind != KindArray {
		s, err := text(fields, 0, KindSymbol)
		if err != nil || v.Kind == KindNull {
			return SASLMechanisms{}, err
		}
		return SASLMechanisms{Mechanisms: []string{s}}, nil
	}
	m := SASLMechanisms{Mechanisms: make([]string, len(v.Items))}
	for i, e := range v.Items {
		if e.Kind != KindSymbol {
			return SASLMechanisms{}, malformed("mechanism %d is a %v, not a symbol", i, e.Kind)
		}
		m.Mechanisms[i] = string(e.Bytes)
	}
	return m, nil
}

// SASLInit is the sasl-init frame a client sends to pick a mechanism. It keeps no credentials:
// of the initial response it keeps only the user name of a PLAIN one.
type SASLInit struct {
	Mechanism string // such as "PLAIN", "ANONYMOUS", "EXTERNAL" or "AMQPLAIN"
	// User is the authentication identity (authcid) of a PLAIN initial response
	// ("authzid NUL authcid NUL passwd", RFC 4616), and empty for any other mechanism (an
	// ANONYMOUS response is a trace string, not a user) or a PLAIN response lacking two NULs.
	User     string
	Hostname string // the host name the client connected to, if it says
}

// ParseSASLInit decodes a sasl-init frame body.
func ParseSASLInit(body []byte) (SASLInit, error) {
	fields, err := expect(body, CodeSASLInit)
	if err != nil {
		return SASLInit{}, err
	}
	var s SASLInit
	if s.Mechanism, err = text(fields, 0, KindSymbol); err != nil {
		return SASLInit{}, err
	}
	if s.Hostname, err = text(fields, 2, KindString); err != nil {
		return SASLInit{}, err
	}
	switch resp := field(fields, 1); resp.Kind {
	case KindBinary:
		if s.Mechanism != "PLAIN" {
			break
		}
		if i := bytes.IndexByte(resp.Bytes, 0); i >= 0 {
			authcid := resp.Bytes[i+1:]
			if j := bytes.IndexByte(authcid, 0); j >= 0 {
				s.User = string(authcid[:j])
			}
		}
	case KindNull:
	default:
		return SASLInit{}, malformed("initial response is a %v, not binary", resp.Kind)
	}
	return s, nil
}

// Outcome codes of a sasl-outcome.
const (
	SASLOK      = 0 // authentication succeeded
	SASLAuth    = 1 // the credentials were rejected
	SASLSys     = 2 // a system error, unlikely to go away
	SASLSysPerm = 3 // a system error that will not go away
	SASLSysTemp = 4 // a transient system error
)

// SASLOutcome is the sasl-outcome frame that ends the SASL exchange.
type SASLOutcome struct {
	Code uint8 // SASLOK .. SASLSysTemp
}

// ParseSASLOutcome decodes a sasl-outcome frame body. The code is mandatory: a sasl-outcome
// without one is an error, never taken for SASLOK.
func ParseSASLOutcome(body []byte) (SASLOutcome, error) {
	fields, err := expect(body, CodeSASLOutcome)
	if err != nil {
		return SASLOutcome{}, err
	}
	if field(fields, 0).Kind == KindNull {
		return SASLOutcome{}, malformed("sasl-outcome without a code")
	}
	code, err := unsigned(fields, 0, math.MaxUint8, 0)
	return SASLOutcome{Code: uint8(code)}, err
}

// Open is the open performative that starts a connection.
type Open struct {
	ContainerID  string
	Hostname     string
	MaxFrameSize uint32        // 4294967295 if the peer leaves it out
	ChannelMax   uint16        // 65535 if the peer leaves it out
	IdleTimeout  time.Duration // whole milliseconds; 0 if the peer sets none
}

// ParseOpen decodes an open frame body. It does not insist on the mandatory container-id: a
// missing one reads as "", and the broker is left to refuse it.
func ParseOpen(body []byte) (Open, error) {
	fields, err := expect(body, CodeOpen)
	if err != nil {
		return Open{}, err
	}
	var o Open
	if o.ContainerID, err = text(fields, 0, KindString); err != nil {
		return Open{}, err
	}
	if o.Hostname, err = text(fields, 1, KindString); err != nil {
		return Open{}, err
	}
	n, err := unsigned(fields, 2, math.MaxUint32, math.MaxUint32)
	if err != nil {
		return Open{}, err
	}
	o.MaxFrameSize = uint32(n)
	if n, err = unsigned(fields, 3, math.MaxUint16, math.MaxUint16); err != nil {
		return Open{}, err
	}
	o.ChannelMax = uint16(n)
	if n, err = unsigned(fields, 4, math.MaxUint32, 0); err != nil {
		return Open{}, err
	}
	o.IdleTimeout = time.Duration(n) * time.Millisecond
	return o, nil
}

// VHost returns the virtual host RabbitMQ (the AMQP 1.0 plugin of 3.x and 4.x's native AMQP
// 1.0 alike) gives a connection opened with o: NAME if the hostname is "vhost:NAME", exactly as
// written (so "vhost:" names the vhost ""), and "/" for any other hostname or none. "/" assumes
// the broker's default vhost is left at "/" (settings default_vhost, and in 3.x
// rabbitmq_amqp1_0.default_vhost, in 4.x amqp1_0_default_vhost, change it).
func (o Open) VHost() string {
	if name, ok := strings.CutPrefix(o.Hostname, "vhost:"); ok {
		return name
	}
	return "/"
}

// Close is the close performative that ends a connection.
type Close struct {
	Condition   string // the error's condition, such as "amqp:connection:forced"; "" without error
	Description string
}

// ParseClose decodes a close frame body.
func ParseClose(body []byte) (Close, error) {
	fields, err := expect(body, CodeClose)
	if err != nil {
		return Close{}, err
	}
	e := field(fields, 0)
	if e.Kind == KindNull {
		return Close{}, nil
	}
	if e.Kind != KindDescribed {
		return Close{}, malformed("close error is a %v, not described", e.Kind)
	}
	code, err := descriptor(e.Items[0])
	if err != nil {
		return Close{}, err
	}
	if code != CodeError || e.Items[1].Kind != KindList {
		return Close{}, malformed("close error is %#x %v, not an error list", code, e.Items[1].Kind)
	}
	var c Close
	if c.Condition, err = text(e.Items[1].Items, 0, KindSymbol); err != nil {
		return Close{}, err
	}
	if c.Description, err = text(e.Items[1].Items, 1, KindString); err != nil {
		return Close{}, err
	}
	return c, nil
}

// AppendCloseFrame appends a whole AMQP frame on channel 0 carrying a close performative: with
// an error of condition c.Condition and description c.Description, or without error when
// c.Condition is "". A condition of 256 octets or more, or a description of 4 GiB, panics:
// callers pass short constants.
func AppendCloseFrame(buf []byte, c Close) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 2, TypeAMQP, 0, 0) // size (below), doff 2, type, channel 0
	buf = append(buf, 0x00, 0x53, CodeClose)         // described by smallulong 0x18
	if c.Condition == "" {
		buf = append(buf, 0x45) // list0: no error
	} else {
		if len(c.Condition) > 255 {
			panic("amqp10: close condition too long")
		}
		var e []byte
		e = append(e, 0x00, 0x53, CodeError, 0xd0, 0, 0, 0, 0, 0, 0, 0, 2) // error: list32, size and count below
		e = append(e, 0xa3, byte(len(c.Condition)))                        // sym8
		e = append(e, c.Condition...)
		e = append(e, 0xb1, 0, 0, 0, 0) // str32
		binary.BigEndian.PutUint32(e[len(e)-4:], uint32(len(c.Description)))
		e = append(e, c.Description...)
		binary.BigEndian.PutUint32(e[4:], uint32(len(e)-8)) // the error list's size: after its size field
		// close's fields: a list32 of one element, the error.
		buf = append(buf, 0xd0, 0, 0, 0, 0, 0, 0, 0, 1)
		binary.BigEndian.PutUint32(buf[len(buf)-8:], uint32(4+len(e)))
		buf = append(buf, e...)
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start))
	return buf
}
