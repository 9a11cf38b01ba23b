package amqp10

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Kind is the AMQP 1.0 type of a decoded Value.
type Kind uint8

// The kinds of Value. The zero Kind is KindNull, so a missing field reads as null.
const (
	KindNull Kind = iota
	KindBool
	KindUbyte
	KindUshort
	KindUint
	KindUlong
	KindByte
	KindShort
	KindInt
	KindLong
	KindFloat
	KindDouble
	KindDecimal32
	KindDecimal64
	KindDecimal128
	KindChar
	KindTimestamp
	KindUUID
	KindBinary
	KindString
	KindSymbol
	KindList
	KindMap
	KindArray
	KindDescribed
)

var kindNames = [...]string{"null", "boolean", "ubyte", "ushort", "uint", "ulong", "byte", "short",
	"int", "long", "float", "double", "decimal32", "decimal64", "decimal128", "char", "timestamp",
	"uuid", "binary", "string", "symbol", "list", "map", "array", "described"}

// String returns the type's name as the specification spells it.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Value is one decoded AMQP 1.0 value. It aliases the bytes it was decoded from.
type Value struct {
	Kind Kind
	// Num holds a boolean (0 or 1), an unsigned integer, a signed integer as the two's
	// complement bits of an int64 (so is a timestamp, in milliseconds since the Unix epoch), a
	// char's UTF-32 code point, or the IEEE 754 bits of a float (math.Float32bits) or double.
	Num uint64
	// Bytes holds the octets of a binary, string, symbol, uuid or decimal.
	Bytes []byte
	// Items holds the elements of a list or array, the keys and values of a map alternating,
	// or a described value's descriptor followed by the value.
	Items []Value
}

// Bool returns a boolean's value; ok is false for any other kind.
func (v Value) Bool() (b, ok bool) { return v.Num != 0, v.Kind == KindBool }

// Uint returns the value of a ubyte, ushort, uint or ulong; ok is false for any other kind.
func (v Value) Uint() (uint64, bool) {
	return v.Num, v.Kind >= KindUbyte && v.Kind <= KindUlong
}

// Int returns the value of a byte, short, int or long; ok is false for any other kind.
func (v Value) Int() (int64, bool) {
	return int64(v.Num), v.Kind >= KindByte && v.Kind <= KindLong
}

// Float returns the value of a float or double; ok is false for any other kind.
func (v Value) Float() (float64, bool) {
	switch v.Kind {
	case KindFloat:
		return float64(math.Float32frombits(uint32(v.Num))), true
	case KindDouble:
		return math.Float64frombits(v.Num), true
	}
	return 0, false
}

// maxDepth bounds the nesting of compound and described values.
const maxDepth = 32

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
}

var errShort = malformed("value truncated")

// decode decodes the value at the start of b and returns it with the bytes that follow it.
// It rejects lists, maps and arrays whose size disagrees with their elements and arrays with more
// elements than octets (possible only for elements of zero width, such as null). It does not
// check that strings are UTF-8 or symbols ASCII.
func decode(b []byte, depth int) (Value, []byte, error) {
	if depth >= maxDepth {
		return Value{}, nil, malformed("nesting deeper than %d", maxDepth)
	}
	if len(b) == 0 {
		return Value{}, nil, errShort
	}
	if b[0] != 0x00 {
		return decodeData(b[0], b[1:], depth)
	}
	d, rest, err := decode(b[1:], depth+1)
	if err != nil {
		return Value{}, nil, err
	}
	v, rest, err := decode(rest, depth+1)
	if err != nil {
		return Value{}, nil, err
	}
	return Value{Kind: KindDescribed, Items: []Value{d, v}}, rest, nil
}

// fixed maps the format codes of fixed-width types to their kind; the width follows from the
// code's high nibble.
var fixed = map[byte]Kind{
	0x40: KindNull, 0x41: KindBool, 0x42: KindBool, 0x43: KindUint, 0x44: KindUlong,
	0x50: KindUbyte, 0x51: KindByte, 0x52: KindUint, 0x53: KindUlong, 0x54: KindInt,
	0x55: KindLong, 0x56: KindBool, 0x60: KindUshort, 0x61: KindShort, 0x70: KindUint,
	0x71: KindInt, 0x72: KindFloat, 0x73: KindChar, 0x74: KindDecimal32, 0x80: KindUlong,
	0x81: KindLong, 0x82: KindDouble, 0x83: KindTimestamp, 0x84: KindDecimal64,
	0x94: KindDecimal128, 0x98: KindUUID,
}

// sized maps the format codes of the types that start with a size to their kind.
var sized = map[byte]Kind{
	0xa0: KindBinary, 0xa1: KindString, 0xa3: KindSymbol, 0xb0: KindBinary, 0xb1: KindString,
	0xb3: KindSymbol, 0xc0: KindList, 0xc1: KindMap, 0xd0: KindList, 0xd1: KindMap,
	0xe0: KindArray, 0xf0: KindArray,
}

// decodeData decodes the data of a value whose format code is c.
func decodeData(c byte, b []byte, depth int) (Value, []byte, error) {
	if c == 0x45 { // list0
		return Value{Kind: KindList}, b, nil
	}
	if k, ok := fixed[c]; ok {
		w := [...]int{0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}[c>>4]
		if len(b) < w {
			return Value{}, nil, errShort
		}
		v := Value{Kind: k}
		switch {
		case c == 0x41:
			v.Num = 1
		case c == 0x56 && b[0] > 1:
			return Value{}, nil, malformed("boolean octet %#x", b[0])
		case w > 8 || k == KindDecimal32 || k == KindDecimal64:
			v.Bytes = b[:w]
		case w > 0:
			var n uint64
			for _, x := range b[:w] {
				n = n<<8 | uint64(x)
			}
			if k >= KindByte && k <= KindLong { // sign-extend
				n = uint64(int64(n<<(64-8*w)) >> (64 - 8*w))
			}
			v.Num = n
		}
		return v, b[w:], nil
	}
	// The remaining types start with a size of one octet (0xa0, 0xc0, 0xe0 ..) or four (0xb0 ..).
	k, ok := sized[c]
	if !ok {
		return Value{}, nil, malformed("unknown format code %#02x", c)
	}
	w := 1
	if c&0x10 != 0 {
		w = 4
	}
	if len(b) < w {
		return Value{}, nil, errShort
	}
	size := readN(b, w)
	if size > uint64(len(b)-w) {
		return Value{}, nil, malformed("size %d overruns the %d octets left", size, len(b)-w)
	}
	data, rest := b[w:w+int(size)], b[w+int(size):]
	if k == KindBinary || k == KindString || k == KindSymbol {
		return Value{Kind: k, Bytes: data}, rest, nil
	}
	if len(data) < w {
		return Value{}, nil, malformed("%v shorter than its count", k)
	}
	n, data := readN(data, w), data[w:]
	if n > uint64(len(data)) {
		return Value{}, nil, malformed("count %d exceeds the %d octets left", n, len(data))
	}
	var v Value
	var err error
	switch {
	case k == KindArray:
		v, err = decodeArray(data, int(n), depth)
	case k == KindMap && n%2 != 0:
		err = malformed("map of odd count %d", n)
	default:
		v, err = decodeItems(k, data, int(n), depth)
	}
	if err != nil {
		return Value{}, nil, err
	}
	return v, rest, nil
}

// readN reads a big-endian size or count of w (1 or 4) octets.
func readN(b []byte, w int) uint64 {
	if w == 1 {
		return uint64(b[0])
	}
	return uint64(binary.BigEndian.Uint32(b))
}

// decodeItems decodes the n values of a list or map, which must fill data exactly.
func decodeItems(k Kind, data []byte, n, depth int) (Value, error) {
	v := Value{Kind: k, Items: make([]Value, n)}
	for i := range v.Items {
		var err error
		if v.Items[i], data, err = decode(data, depth+1); err != nil {
			return Value{}, err
		}
	}
	if len(data) != 0 {
		return Value{}, malformed("%d octets after the last element of a %v", len(data), k)
	}
	return v, nil
}

// decodeArray decodes the constructor and the n elements of an array, which must fill data
// exactly. An array's constructor may carry one descriptor, which then describes every element.
func decodeArray(data []byte, n, depth int) (Value, error) {
	if depth+1 >= maxDepth {
		return Value{}, malformed("nesting deeper than %d", maxDepth)
	}
	if len(data) == 0 {
		return Value{}, errShort
	}
	var desc *Value
	if data[0] == 0x00 {
		d, rest, err := decode(data[1:], depth+1)
		if err != nil {
			return Value{}, err
		}
		desc, data = &d, rest
		if len(data) == 0 {
			return Value{}, errShort
		}
		if data[0] == 0x00 {
			return Value{}, malformed("array constructor with more than one descriptor")
		}
	}
	c, data := data[0], data[1:]
	v := Value{Kind: KindArray, Items: make([]Value, n)}
	var pairs []Value
	if desc != nil {
		pairs = make([]Value, 2*n)
	}
	for i := range v.Items {
		e, rest, err := decodeData(c, data, depth+1)
		if err != nil {
			return Value{}, err
		}
		data = rest
		if desc != nil {
			pairs[2*i], pairs[2*i+1] = *desc, e
			e = Value{Kind: KindDescribed, Items: pairs[2*i : 2*i+2 : 2*i+2]}
		}
		v.Items[i] = e
	}
	if len(data) != 0 {
		return Value{}, malformed("%d octets after the last element of an array", len(data))
	}
	return v, nil
}
