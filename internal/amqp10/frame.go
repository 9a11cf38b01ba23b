// Package amqp10 reads and writes the few AMQP 1.0 frames amqplb looks at while it relays a
// connection's opening: the protocol headers, the SASL frames and the open and close
// performatives. It never holds or returns a password.
//
// Decoding follows the OASIS AMQP 1.0 specification (part 1, types; part 2, transport; part 5,
// SASL). It never panics on malformed input, bounds nesting, checks every size and count against
// the octets that remain, and allocates at most a small constant times the input's size. Every
// decoding error wraps ErrMalformed. Decoded values alias the input.
package amqp10

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// HeaderLen is the length of a protocol header.
const HeaderLen = 8

// The protocol headers: plain AMQP, SASL, and TLS, which this package names but does not support.
var (
	HeaderAMQP = [HeaderLen]byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}
	HeaderSASL = [HeaderLen]byte{'A', 'M', 'Q', 'P', 3, 1, 0, 0}
	HeaderTLS  = [HeaderLen]byte{'A', 'M', 'Q', 'P', 2, 1, 0, 0}
)

// Frame types.
const (
	TypeAMQP = 0
	TypeSASL = 1
)

// MinMaxFrameSize is the largest frame a peer may send before open has negotiated
// max-frame-size, and the limit ReadFrame applies when it is given none.
const MinMaxFrameSize = 512

// ErrMalformed is wrapped by every error about octets that break the specification.
var ErrMalformed = errors.New("malformed AMQP 1.0 frame")

// Frame is one frame as read from the wire. Body and Raw share one buffer.
type Frame struct {
	Type    uint8  // TypeAMQP or TypeSASL
	Channel uint16 // ignored in SASL frames
	Body    []byte // the octets after the extended header; empty for a heartbeat
	Raw     []byte // the whole frame as read, size field included
}

// ReadFrame reads one frame of at most maxSize octets (MinMaxFrameSize if maxSize <= 0). A frame
// whose size is below 8 or above maxSize, or whose data offset is below 2 or beyond its size, is
// an error wrapping ErrMalformed. An EOF before the first octet is io.EOF, within a frame
// io.ErrUnexpectedEOF. A frame with an empty body is a heartbeat and is returned like any other.
func ReadFrame(r io.Reader, maxSize int) (Frame, error) {
	if maxSize <= 0 {
		maxSize = MinMaxFrameSize
	}
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	size, doff := binary.BigEndian.Uint32(h[:]), uint32(h[4])
	switch {
	case size < 8:
		return Frame{}, malformed("frame size %d below 8", size)
	case uint64(size) > uint64(maxSize):
		return Frame{}, malformed("frame size %d above the maximum %d", size, maxSize)
	case doff < 2:
		return Frame{}, malformed("data offset %d below 2", doff)
	case doff*4 > size:
		return Frame{}, malformed("data offset %d beyond frame size %d", doff, size)
	}
	// A large frame's buffer grows as its octets arrive, so that a peer merely claiming a
	// size does not get it allocated.
	n := int(size)
	raw := append(make([]byte, 0, min(n, 64<<10)), h[:]...)
	for len(raw) < n {
		if len(raw) == cap(raw) {
			raw = slices.Grow(raw, min(n-len(raw), len(raw)))
		}
		got, err := io.ReadFull(r, raw[len(raw):min(cap(raw), n)])
		raw = raw[:len(raw)+got]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
	return Frame{Type: h[5], Channel: binary.BigEndian.Uint16(h[6:]), Body: raw[doff*4:], Raw: raw}, nil
}

// beginFrame appends the header of a frame of type typ on channel 0 whose size is yet unknown.
func beginFrame(buf []byte, typ byte) ([]byte, int) {
	return append(buf, 0, 0, 0, 0, 2, typ, 0, 0), len(buf)
}

// endFrame fills in the size of the frame that starts at buf[start].
func endFrame(buf []byte, start int) []byte {
	binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start))
	return buf
}

// appendVar appends a binary, string or symbol with format code code8 (the 32-bit code is
// code8+0x10).
func appendVar(buf []byte, code8 byte, s string) []byte {
	if len(s) <= 0xff {
		buf = append(buf, code8, byte(len(s)))
	} else {
		buf = binary.BigEndian.AppendUint32(append(buf, code8+0x10), uint32(len(s)))
	}
	return append(buf, s...)
}

// beginList appends the head of a list32 of count elements whose size is yet unknown.
func beginList(buf []byte, count int) ([]byte, int) {
	return append(buf, 0xd0, 0, 0, 0, 0, 0, 0, 0, byte(count)), len(buf)
}

// endList fills in the size of the list that starts at buf[start], shrinking it to a list8 if
// it fits.
func endList(buf []byte, start int) []byte {
	size := len(buf) - start - 5
	if size-3 > 0xff {
		binary.BigEndian.PutUint32(buf[start+1:], uint32(size))
		return buf
	}
	buf[start], buf[start+1], buf[start+2] = 0xc0, byte(size-3), buf[start+8]
	return buf[:start+3+copy(buf[start+3:], buf[start+9:])]
}

// AppendClose appends a complete AMQP frame on channel 0 carrying a close performative. Unless
// condition is empty, the close carries an error with that condition (a symbol such as
// "amqp:connection:forced") and description; with no condition there is no error, and the
// description is dropped.
func AppendClose(buf []byte, condition, description string) []byte {
	buf, frame := beginFrame(buf, TypeAMQP)
	buf = append(buf, 0x00, 0x53, CodeClose)
	if condition == "" {
		return endFrame(append(buf, 0x45), frame)
	}
	buf, list := beginList(buf, 1)
	buf = append(buf, 0x00, 0x53, CodeError)
	buf, errList := beginList(buf, 2)
	buf = appendVar(buf, 0xa3, condition)
	buf = appendVar(buf, 0xa1, description)
	buf = endList(buf, errList)
	return endFrame(endList(buf, list), frame)
}

// AppendSASLOutcome appends a complete SASL frame carrying a sasl-outcome with the given code
// (SASLOK .. SASLSysTemp) and no additional data.
func AppendSASLOutcome(buf []byte, code uint8) []byte {
	buf, frame := beginFrame(buf, TypeSASL)
	buf = append(buf, 0x00, 0x53, CodeSASLOutcome, 0xc0, 3, 1, 0x50, code)
	return endFrame(buf, frame)
}

// String describes the frame without its body.
func (f Frame) String() string {
	return fmt.Sprintf("frame type %d channel %d, %d octets", f.Type, f.Channel, len(f.Raw))
}
