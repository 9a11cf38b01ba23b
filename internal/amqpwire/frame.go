// Package amqpwire owns the wire format of AMQP 0-9-1 that amqplb itself speaks: the protocol
// header, frames, field tables and the methods of the connection class (Start .. Close-Ok), which
// is all a health check or a header gate needs.
//
// It is hand-written rather than borrowed from github.com/rabbitmq/amqp091-go because that client
// folds the broker's reply into a few sentinel errors (ErrCredentials, ErrVhost) and hides the
// reply code and text the broker sent, which is exactly what the status page must show.
//
// The package only encodes and decodes; it does no I/O of its own beyond the io.Reader and
// io.Writer it is given, keeps no state, and never panics on malformed input: every decoding
// error is returned, wrapping ErrMalformed.
package amqpwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProtocolHeader is the 8-byte header an AMQP 0-9-1 client sends first.
const ProtocolHeader = "AMQP\x00\x00\x09\x01"

// Frame types.
const (
	FrameMethod    = 1
	FrameHeader    = 2
	FrameBody      = 3
	FrameHeartbeat = 8
)

// FrameEnd is the octet that ends every frame.
const FrameEnd = 0xCE

// Sizes of frames, in bytes, counting the 7-byte header and the frame-end octet as frame_max does.
const (
	// FrameMinSize is the frame size every peer must accept before Tune (spec: frame-min-size).
	FrameMinSize = 4096
	// DefaultMaxFrameSize is RabbitMQ's default frame_max, used when ReadFrame is given 0.
	DefaultMaxFrameSize = 131072
	// frameOverhead is the header (type, channel, size) plus the frame-end octet.
	frameOverhead = 8
)

// ErrMalformed is wrapped by every error about bytes that are not valid AMQP 0-9-1.
var ErrMalformed = errors.New("malformed AMQP frame")

// Frame is one AMQP frame. Payload is the frame's payload without the frame-end octet.
type Frame struct {
	// Type is one of FrameMethod, FrameHeader, FrameBody or FrameHeartbeat.
	Type uint8
	// Channel is 0 for the connection, or the channel number.
	Channel uint16
	// Payload is the payload; ReadFrame allocates a new one for every frame.
	Payload []byte
}

// HeaderError is returned by ReadFrame when the peer sent a protocol header ("AMQP" and four
// octets) where a frame was expected. A broker does that when it does not speak the protocol the
// client asked for: RabbitMQ answers an unsupported header with its own and closes, an AMQP 1.0
// broker answers with the 1.0 header.
type HeaderError struct {
	// Header is the header as received. If the peer closed after fewer than 8 octets, the rest
	// are zero.
	Header [8]byte
}

// Protocol names the protocol the header asks for, such as "AMQP 0-9-1", "AMQP 1.0.0",
// "AMQP 1.0.0 (SASL)" or "AMQP 1.0.0 (TLS)".
func (e *HeaderError) Protocol() string {
	id, major, minor, rev := e.Header[4], e.Header[5], e.Header[6], e.Header[7]
	switch {
	case id == 0 && major == 0:
		return fmt.Sprintf("AMQP %d-%d-%d", major, minor, rev)
	case id == 0:
		return fmt.Sprintf("AMQP %d.%d.%d", major, minor, rev)
	case id == 1 && major == 1:
		// Pre-0-9-1 layout: "AMQP" 1 1 major minor, as in 0-8.
		return fmt.Sprintf("AMQP %d-%d", minor, rev)
	case id == 2:
		return fmt.Sprintf("AMQP %d.%d.%d (TLS)", major, minor, rev)
	case id == 3:
		return fmt.Sprintf("AMQP %d.%d.%d (SASL)", major, minor, rev)
	}
	return fmt.Sprintf("AMQP %d.%d.%d (protocol id %d)", major, minor, rev, id)
}

func (e *HeaderError) Error() string {
	return "peer sent the protocol header of " + e.Protocol() + " instead of a frame"
}

// ReadFrame reads one frame from r. A frame larger than maxSize octets (counting header and
// frame end, as frame_max does) is refused before its payload is read; maxSize 0 means
// DefaultMaxFrameSize. A protocol header in place of a frame gives a *HeaderError; other invalid
// bytes give an error wrapping ErrMalformed. An EOF before the first octet is io.EOF, within a
// frame io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, maxSize uint32) (Frame, error) {
	f, _, err := ReadFrameRaw(r, maxSize)
	return f, err
}

// ReadFrameRaw is ReadFrame that also returns the frame's octets as read, header and frame end
// included (what AppendFrame of the frame would give), in the one buffer its Payload is a part
// of: for a proxy that passes the frame on as it came.
func ReadFrameRaw(r io.Reader, maxSize uint32) (Frame, []byte, error) {
	if maxSize == 0 {
		maxSize = DefaultMaxFrameSize
	}
	var h [7]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, nil, err
	}
	if string(h[:4]) == "AMQP" {
		e := &HeaderError{}
		copy(e.Header[:], h[:])
		// The eighth octet completes the header; a peer that closes before sending it still
		// told us enough.
		_, _ = io.ReadFull(r, e.Header[7:])
		return Frame{}, nil, e
	}
	f := Frame{Type: h[0], Channel: binary.BigEndian.Uint16(h[1:3])}
	switch f.Type {
	case FrameMethod, FrameHeader, FrameBody, FrameHeartbeat:
	default:
		return Frame{}, nil, fmt.Errorf("%w: invalid frame type %d (octets % x)", ErrMalformed, f.Type, h[:])
	}
	size := binary.BigEndian.Uint32(h[3:7])
	if uint64(size)+frameOverhead > uint64(maxSize) {
		return Frame{}, nil, fmt.Errorf("%w: frame of %d octets exceeds the limit of %d", ErrMalformed, uint64(size)+frameOverhead, maxSize)
	}
	buf := make([]byte, len(h)+int(size)+1)
	copy(buf, h[:])
	if _, err := io.ReadFull(r, buf[len(h):]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, nil, err
	}
	if end := buf[len(buf)-1]; end != FrameEnd {
		return Frame{}, nil, fmt.Errorf("%w: frame end octet is 0x%02x, want 0x%02x", ErrMalformed, end, FrameEnd)
	}
	f.Payload = buf[len(h) : len(buf)-1 : len(buf)-1]
	return f, buf, nil
}

// AppendFrame appends the encoding of f to buf.
func AppendFrame(buf []byte, f Frame) []byte {
	buf = append(buf, f.Type)
	buf = binary.BigEndian.AppendUint16(buf, f.Channel)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(f.Payload)))
	buf = append(buf, f.Payload...)
	return append(buf, FrameEnd)
}

// WriteFrame writes f to w in a single Write.
func WriteFrame(w io.Writer, f Frame) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, len(f.Payload)+frameOverhead), f))
	return err
}

// AppendMethodFrame appends a method frame carrying m on channel ch to buf.
func AppendMethodFrame(buf []byte, ch uint16, m Method) ([]byte, error) {
	start := len(buf)
	buf = append(buf, FrameMethod, byte(ch>>8), byte(ch), 0, 0, 0, 0)
	buf, err := AppendMethod(buf, m)
	if err != nil {
		return buf[:start], err
	}
	binary.BigEndian.PutUint32(buf[start+3:], uint32(len(buf)-start-7))
	return append(buf, FrameEnd), nil
}

// WriteMethod writes m as a method frame on channel ch in a single Write.
func WriteMethod(w io.Writer, ch uint16, m Method) error {
	buf, err := AppendMethodFrame(make([]byte, 0, 256), ch, m)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// ReadMethod reads one frame and decodes it as a method. A frame that is not a method frame is
// an error wrapping ErrMalformed; use ReadFrame to accept heartbeats or content frames.
func ReadMethod(r io.Reader, maxSize uint32) (ch uint16, m Method, err error) {
	f, err := ReadFrame(r, maxSize)
	if err != nil {
		return 0, nil, err
	}
	if f.Type != FrameMethod {
		return f.Channel, nil, fmt.Errorf("%w: frame type %d on channel %d where a method was expected", ErrMalformed, f.Type, f.Channel)
	}
	m, err = DecodeMethod(f.Payload)
	return f.Channel, m, err
}
