package amqpwire

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
)

// Table is an AMQP field table. Values decode to these Go types, and these encode back:
//
//	't' bool      'b' int8     'B' uint8    's' int16   'u' uint16
//	'I' int32     'i' uint32   'l' int64    'f' float32 'd' float64
//	'D' Decimal   'S' string   'x' []byte   'A' []any   'T' time.Time (seconds, UTC)
//	'F' Table     'V' nil
//
// These are the types RabbitMQ uses (its errata to the 0-9-1 spec); an unknown type is an error,
// since its length, and so everything after it, cannot be known. Encoding also accepts int (as
// 'l') and map[string]any (as 'F'). Keys are encoded in sorted order, so an encoding is stable.
type Table map[string]any

// Decimal is the 'D' field type: Value × 10^-Scale.
type Decimal struct {
	// Scale is the number of decimal digits after the point.
	Scale uint8
	// Value is the unscaled value.
	Value int32
}

// maxNesting bounds how deep tables and arrays may nest, so hostile input cannot make decoding
// recurse without limit.
const maxNesting = 32

// decoder reads AMQP data types from a method payload. The first error sticks: later reads
// return zero values, and callers check err once at the end.
type decoder struct {
	buf []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

// take returns the next n octets, or nil and an error if fewer remain.
func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.buf)-d.off {
		d.fail("%s of %d octets at offset %d overruns the %d-octet payload", what, n, d.off, len(d.buf))
		return nil
	}
	b := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

func (d *decoder) u8() uint8 {
	if b := d.take(1, "octet"); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.take(2, "short"); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4, "long"); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8, "longlong"); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) shortstr() string {
	n := d.u8()
	return string(d.take(int(n), "shortstr"))
}

func (d *decoder) longbytes(what string) []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.buf)-d.off) {
		d.fail("%s of %d octets at offset %d overruns the %d-octet payload", what, n, d.off, len(d.buf))
		return nil
	}
	return d.take(int(n), what)
}

func (d *decoder) longstr() string { return string(d.longbytes("longstr")) }

func (d *decoder) table(depth int) Table {
	raw := d.longbytes("table")
	if d.err != nil {
		return nil
	}
	if depth > maxNesting {
		d.fail("tables nested deeper than %d", maxNesting)
		return nil
	}
	sub := decoder{buf: raw}
	t := Table{}
	for sub.err == nil && sub.off < len(sub.buf) {
		k := sub.shortstr()
		v := sub.field(depth)
		if sub.err == nil {
			t[k] = v
		}
	}
	if sub.err != nil {
		d.err = sub.err
		return nil
	}
	return t
}

func (d *decoder) array(depth int) []any {
	raw := d.longbytes("array")
	if d.err != nil {
		return nil
	}
	if depth > maxNesting {
		d.fail("arrays nested deeper than %d", maxNesting)
		return nil
	}
	sub := decoder{buf: raw}
	a := []any{}
	for sub.err == nil && sub.off < len(sub.buf) {
		v := sub.field(depth)
		if sub.err == nil {
			a = append(a, v)
		}
	}
	if sub.err != nil {
		d.err = sub.err
		return nil
	}
	return a
}

// field reads a type octet and the value it announces.
func (d *decoder) field(depth int) any {
	typ := d.u8()
	if d.err != nil {
		return nil
	}
	switch typ {
	case 't':
		return d.u8() != 0
	case 'b':
		return int8(d.u8())
	case 'B':
		return d.u8()
	case 's':
		return int16(d.u16())
	case 'u':
		return d.u16()
	case 'I':
		return int32(d.u32())
	case 'i':
		return d.u32()
	case 'l':
		return int64(d.u64())
	case 'f':
		return math.Float32frombits(d.u32())
	case 'd':
		return math.Float64frombits(d.u64())
	case 'D':
		scale := d.u8()
		return Decimal{Scale: scale, Value: int32(d.u32())}
	case 'S':
		return d.longstr()
	case 'x':
		return slices.Clone(d.longbytes("byte array"))
	case 'A':
		return d.array(depth + 1)
	case 'T':
		return time.Unix(int64(d.u64()), 0).UTC()
	case 'F':
		return d.table(depth + 1)
	case 'V':
		return nil
	}
	d.fail("unknown field type %q (0x%02x) at offset %d", rune(typ), typ, d.off-1)
	return nil
}

// bits reads a packed octet of bit fields.
func (d *decoder) bits() uint8 { return d.u8() }

// encoder appends AMQP data types to buf. The first error sticks.
type encoder struct {
	buf []byte
	err error
}

func (e *encoder) u8(v uint8)   { e.buf = append(e.buf, v) }
func (e *encoder) u16(v uint16) { e.buf = binary.BigEndian.AppendUint16(e.buf, v) }
func (e *encoder) u32(v uint32) { e.buf = binary.BigEndian.AppendUint32(e.buf, v) }
func (e *encoder) u64(v uint64) { e.buf = binary.BigEndian.AppendUint64(e.buf, v) }

func (e *encoder) shortstr(s string) {
	if len(s) > math.MaxUint8 {
		if e.err == nil {
			e.err = fmt.Errorf("amqpwire: shortstr of %d octets exceeds 255: %.20q (cut)", len(s), s)
		}
		return
	}
	e.u8(uint8(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) longstr(s string) {
	if uint64(len(s)) > math.MaxUint32 {
		if e.err == nil {
			e.err = fmt.Errorf("amqpwire: longstr of %d octets is too long", len(s))
		}
		return
	}
	e.u32(uint32(len(s)))
	e.buf = append(e.buf, s...)
}

// sized writes a 4-octet length, then what fn appends, then fills in the length.
func (e *encoder) sized(fn func()) {
	at := len(e.buf)
	e.u32(0)
	fn()
	n := len(e.buf) - at - 4
	if uint64(n) > math.MaxUint32 {
		if e.err == nil {
			e.err = fmt.Errorf("amqpwire: field of %d octets is too long", n)
		}
		return
	}
	binary.BigEndian.PutUint32(e.buf[at:], uint32(n))
}

func (e *encoder) table(t Table, depth int) {
	if depth > maxNesting {
		if e.err == nil {
			e.err = fmt.Errorf("amqpwire: tables nested deeper than %d", maxNesting)
		}
		return
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.sized(func() {
		for _, k := range keys {
			e.shortstr(k)
			e.field(k, t[k], depth)
		}
	})
}

func (e *encoder) field(key string, v any, depth int) {
	switch v := v.(type) {
	case bool:
		e.u8('t')
		if v {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case int8:
		e.u8('b')
		e.u8(uint8(v))
	case uint8:
		e.u8('B')
		e.u8(v)
	case int16:
		e.u8('s')
		e.u16(uint16(v))
	case uint16:
		e.u8('u')
		e.u16(v)
	case int32:
		e.u8('I')
		e.u32(uint32(v))
	case uint32:
		e.u8('i')
		e.u32(v)
	case int64:
		e.u8('l')
		e.u64(uint64(v))
	case int:
		e.u8('l')
		e.u64(uint64(int64(v)))
	case float32:
		e.u8('f')
		e.u32(math.Float32bits(v))
	case float64:
		e.u8('d')
		e.u64(math.Float64bits(v))
	case Decimal:
		e.u8('D')
		e.u8(v.Scale)
		e.u32(uint32(v.Value))
	case string:
		e.u8('S')
		e.longstr(v)
	case []byte:
		e.u8('x')
		e.u32(uint32(len(v)))
		e.buf = append(e.buf, v...)
	case []any:
		if depth+1 > maxNesting {
			if e.err == nil {
				e.err = fmt.Errorf("amqpwire: arrays nested deeper than %d", maxNesting)
			}
			return
		}
		e.u8('A')
		e.sized(func() {
			for _, x := range v {
				e.field(key, x, depth+1)
			}
		})
	case time.Time:
		e.u8('T')
		e.u64(uint64(v.Unix()))
	case Table:
		e.u8('F')
		e.table(v, depth+1)
	case map[string]any:
		e.u8('F')
		e.table(Table(v), depth+1)
	case nil:
		e.u8('V')
	default:
		if e.err == nil {
			e.err = fmt.Errorf("amqpwire: field %q: no AMQP field type for Go type %T", key, v)
		}
	}
}
