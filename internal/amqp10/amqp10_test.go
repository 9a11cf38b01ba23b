package amqp10

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// b concatenates its parts: an int is one octet, a string or []byte its octets.
func b(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			out = append(out, byte(p))
		case string:
			out = append(out, p...)
		case []byte:
			out = append(out, p...)
		default:
			panic(fmt.Sprintf("b: %T", p))
		}
	}
	return out
}

func u32(n int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }

func str8(s string) []byte  { return b(0xa1, len(s), s) }
func sym8(s string) []byte  { return b(0xa3, len(s), s) }
func vbin8(s string) []byte { return b(0xa0, len(s), s) }

// list8 and list32 encode a list of the already encoded elements.
func list8(elems ...[]byte) []byte {
	body := bytes.Join(elems, nil)
	return b(0xc0, len(body)+1, len(elems), body)
}

func map8(elems ...[]byte) []byte {
	l := list8(elems...)
	l[0] = 0xc1
	return l
}

func list32(elems ...[]byte) []byte {
	body := bytes.Join(elems, nil)
	return b(0xd0, u32(len(body)+4), u32(len(elems)), body)
}

// frame wraps a body in an AMQP frame header of type typ on channel 0.
func frame(typ int, body []byte) []byte { return b(u32(8+len(body)), 2, typ, 0, 0, body) }

// performative encodes a performative with a smallulong descriptor.
func performative(code int, list []byte) []byte { return b(0x00, 0x53, code, list) }

// sameValue compares values, taking an empty list of items for a nil one.
func sameValue(a, b Value) bool {
	if a.Kind != b.Kind || a.Num != b.Num || !bytes.Equal(a.Bytes, b.Bytes) || len(a.Items) != len(b.Items) {
		return false
	}
	for i := range a.Items {
		if !sameValue(a.Items[i], b.Items[i]) {
			return false
		}
	}
	return true
}

func TestDecodeTypes(t *testing.T) {
	i64 := func(n int64) uint64 { return uint64(n) }
	uuid := []byte("0123456789abcdef")
	ulong := func(n uint64) Value { return Value{Kind: KindUlong, Num: n} }
	for _, tc := range []struct {
		name string
		in   []byte
		want Value
	}{
		{"null", b(0x40), Value{}},
		{"true", b(0x41), Value{Kind: KindBool, Num: 1}},
		{"false", b(0x42), Value{Kind: KindBool}},
		{"boolean 1", b(0x56, 1), Value{Kind: KindBool, Num: 1}},
		{"boolean 0", b(0x56, 0), Value{Kind: KindBool}},
		{"ubyte", b(0x50, 0xff), Value{Kind: KindUbyte, Num: 255}},
		{"ushort", b(0x60, 0xff, 0xfe), Value{Kind: KindUshort, Num: 0xfffe}},
		{"uint", b(0x70, 0xde, 0xad, 0xbe, 0xef), Value{Kind: KindUint, Num: 0xdeadbeef}},
		{"smalluint", b(0x52, 7), Value{Kind: KindUint, Num: 7}},
		{"uint0", b(0x43), Value{Kind: KindUint}},
		{"ulong", b(0x80, 1, 2, 3, 4, 5, 6, 7, 8), ulong(0x0102030405060708)},
		{"smallulong", b(0x53, 0x10), ulong(0x10)},
		{"ulong0", b(0x44), ulong(0)},
		{"byte", b(0x51, 0xff), Value{Kind: KindByte, Num: i64(-1)}},
		{"short", b(0x61, 0x80, 0), Value{Kind: KindShort, Num: i64(-32768)}},
		{"int", b(0x71, 0xff, 0xff, 0xff, 0xfe), Value{Kind: KindInt, Num: i64(-2)}},
		{"smallint", b(0x54, 0x80), Value{Kind: KindInt, Num: i64(-128)}},
		{"long", b(0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd), Value{Kind: KindLong, Num: i64(-3)}},
		{"smalllong", b(0x55, 0x7f), Value{Kind: KindLong, Num: 127}},
		{"float", b(0x72, 0x3f, 0xc0, 0, 0), Value{Kind: KindFloat, Num: uint64(math.Float32bits(1.5))}},
		{"double", b(0x82, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18), Value{Kind: KindDouble, Num: math.Float64bits(math.Pi)}},
		{"decimal32", b(0x74, 1, 2, 3, 4), Value{Kind: KindDecimal32, Bytes: b(1, 2, 3, 4)}},
		{"decimal64", b(0x84, "12345678"), Value{Kind: KindDecimal64, Bytes: []byte("12345678")}},
		{"decimal128", b(0x94, uuid), Value{Kind: KindDecimal128, Bytes: uuid}},
		{"char", b(0x73, 0, 1, 0xf6, 0), Value{Kind: KindChar, Num: 0x1f600}},
		{"timestamp", b(0x83, 0, 0, 1, 0x8b, 0xcf, 0xe5, 0x68, 0), Value{Kind: KindTimestamp, Num: 0x18bcfe56800}},
		{"uuid", b(0x98, uuid), Value{Kind: KindUUID, Bytes: uuid}},
		{"vbin8", b(0xa0, 3, 0, 1, 2), Value{Kind: KindBinary, Bytes: b(0, 1, 2)}},
		{"vbin8 empty", b(0xa0, 0), Value{Kind: KindBinary, Bytes: []byte{}}},
		{"vbin32", b(0xb0, u32(2), 9, 8), Value{Kind: KindBinary, Bytes: b(9, 8)}},
		{"str8", str8("héllo"), Value{Kind: KindString, Bytes: []byte("héllo")}},
		{"str32", b(0xb1, u32(2), "hi"), Value{Kind: KindString, Bytes: []byte("hi")}},
		{"sym8", sym8("PLAIN"), Value{Kind: KindSymbol, Bytes: []byte("PLAIN")}},
		{"sym32", b(0xb3, u32(4), "EXTE"), Value{Kind: KindSymbol, Bytes: []byte("EXTE")}},
		{"list0", b(0x45), Value{Kind: KindList}},
		{"list8", list8(b(0x40), b(0x52, 1)), Value{Kind: KindList, Items: []Value{{}, {Kind: KindUint, Num: 1}}}},
		{"list8 empty", b(0xc0, 1, 0), Value{Kind: KindList}},
		{"list32", list32(b(0x41), list8()), Value{Kind: KindList, Items: []Value{{Kind: KindBool, Num: 1}, {Kind: KindList}}}},
		{"map8", b(0xc1, 5, 2, sym8("k"), 0x42), Value{Kind: KindMap, Items: []Value{{Kind: KindSymbol, Bytes: []byte("k")}, {Kind: KindBool}}}},
		{"map32", b(0xd1, u32(4+4), u32(2), 0x50, 1, 0x50, 2), Value{Kind: KindMap, Items: []Value{{Kind: KindUbyte, Num: 1}, {Kind: KindUbyte, Num: 2}}}},
		{"array8", b(0xe0, 5, 3, 0x52, 1, 2, 3), Value{Kind: KindArray, Items: []Value{{Kind: KindUint, Num: 1}, {Kind: KindUint, Num: 2}, {Kind: KindUint, Num: 3}}}},
		{"array8 empty", b(0xe0, 2, 0, 0xa3), Value{Kind: KindArray}},
		{"array8 of nulls", b(0xe0, 2, 1, 0x40), Value{Kind: KindArray, Items: []Value{{}}}},
		{"array32 of sym8", b(0xf0, u32(4+1+6+10), u32(2), 0xa3, 5, "PLAIN", 9, "ANONYMOUS"),
			Value{Kind: KindArray, Items: []Value{{Kind: KindSymbol, Bytes: []byte("PLAIN")}, {Kind: KindSymbol, Bytes: []byte("ANONYMOUS")}}}},
		{"array of arrays", b(0xe0, 10, 2, 0xe0, 2, 1, 0x43, 4, 2, 0x50, 7, 8),
			Value{Kind: KindArray, Items: []Value{
				{Kind: KindArray, Items: []Value{{Kind: KindUint}}},
				{Kind: KindArray, Items: []Value{{Kind: KindUbyte, Num: 7}, {Kind: KindUbyte, Num: 8}}}}}},
		{"array described", b(0xe0, 5, 2, 0x00, 0x53, 0x1d, 0x45),
			Value{Kind: KindArray, Items: []Value{
				{Kind: KindDescribed, Items: []Value{ulong(0x1d), {Kind: KindList}}},
				{Kind: KindDescribed, Items: []Value{ulong(0x1d), {Kind: KindList}}}}}},
		{"described", b(0x00, 0x53, 0x1d, 0x45), Value{Kind: KindDescribed, Items: []Value{ulong(0x1d), {Kind: KindList}}}},
		{"described by symbol", b(0x00, sym8("amqp:error:list"), 0x45),
			Value{Kind: KindDescribed, Items: []Value{{Kind: KindSymbol, Bytes: []byte("amqp:error:list")}, {Kind: KindList}}}},
		{"described twice", b(0x00, 0x44, 0x00, 0x44, 0x40),
			Value{Kind: KindDescribed, Items: []Value{ulong(0), {Kind: KindDescribed, Items: []Value{ulong(0), {}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rest, err := decode(b(tc.in, 0xee), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !sameValue(got, tc.want) || !bytes.Equal(rest, []byte{0xee}) {
				t.Fatalf("got %+v rest %x, want %+v rest ee", got, rest, tc.want)
			}
			for i := range tc.in { // every truncation is an error
				if _, _, err := decode(tc.in[:i], 0); !errors.Is(err, ErrMalformed) {
					t.Fatalf("truncated to %d: err %v", i, err)
				}
			}
		})
	}
}

func TestValueAccessors(t *testing.T) {
	if n, ok := (Value{Kind: KindUshort, Num: 9}).Uint(); !ok || n != 9 {
		t.Error("Uint of ushort")
	}
	if _, ok := (Value{Kind: KindInt}).Uint(); ok {
		t.Error("Uint of int")
	}
	if n, ok := (Value{Kind: KindShort, Num: uint64(math.MaxUint64)}).Int(); !ok || n != -1 {
		t.Error("Int of short")
	}
	if v, ok := (Value{Kind: KindBool, Num: 1}).Bool(); !ok || !v {
		t.Error("Bool")
	}
	if f, ok := (Value{Kind: KindFloat, Num: uint64(math.Float32bits(-2.5))}).Float(); !ok || f != -2.5 {
		t.Error("Float")
	}
	if f, ok := (Value{Kind: KindDouble, Num: math.Float64bits(1e300)}).Float(); !ok || f != 1e300 {
		t.Error("Float of double")
	}
	if _, ok := (Value{}).Float(); ok {
		t.Error("Float of null")
	}
	if KindUUID.String() != "uuid" || Kind(200).String() != "kind(200)" {
		t.Error("Kind.String")
	}
}

// nest wraps v in n lists (list8 while it fits, list32 beyond).
func nest(v []byte, n int) []byte {
	for range n {
		if len(v) < 250 {
			v = list8(v)
		} else {
			v = list32(v)
		}
	}
	return v
}

func TestDecodeMalformed(t *testing.T) {
	arrays := b(0x40)
	for range 40 {
		arrays = b(0xe0, len(arrays)+1, 1, arrays)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown code", b(0x57)},
		{"reserved code", b(0xa2, 0)},
		{"unknown compound", b(0xc2, 1, 0)},
		{"boolean 2", b(0x56, 2)},
		{"vbin8 overrun", b(0xa0, 4, 1, 2, 3)},
		{"str32 overrun", b(0xb1, 0xff, 0xff, 0xff, 0xff, "abc")},
		{"list8 overrun", b(0xc0, 9, 1, 0x40)},
		{"list8 count beyond octets", b(0xc0, 2, 5, 0x40)},
		{"list32 count beyond octets", b(0xd0, u32(5), 0xff, 0xff, 0xff, 0xff, 0x40)},
		{"list8 size zero", b(0xc0, 0)},
		{"list32 size below 4", b(0xd0, u32(3), 0, 0, 0)},
		{"list8 trailing octets", b(0xc0, 3, 1, 0x40, 0x40)},
		{"list8 element overruns list", b(0xc0, 2, 1, 0x50, 0x07)},
		{"map odd", b(0xc1, 2, 1, 0x40)},
		{"map32 huge", b(0xd1, u32(4), 0xff, 0xff, 0xff, 0xfe)},
		{"array count beyond octets", b(0xe0, 2, 3, 0x40)},
		{"array32 huge count", b(0xf0, u32(5), 0x7f, 0xff, 0xff, 0xff, 0x40)},
		{"array short element", b(0xe0, 4, 2, 0x50, 1)},
		{"array trailing octets", b(0xe0, 4, 1, 0x50, 1, 2)},
		{"array without constructor", b(0xe0, 1, 0)},
		{"array bad constructor", b(0xe0, 2, 1, 0x57)},
		{"array two descriptors", b(0xe0, 7, 1, 0x00, 0x44, 0x00, 0x44, 0x40, 0x40)},
		{"array descriptor only", b(0xe0, 3, 0, 0x00, 0x44)},
		{"described without value", b(0x00, 0x53, 0x10)},
		{"described without descriptor", b(0x00)},
		{"nested lists", nest(b(0x40), 40)},
		{"nested arrays", arrays},
		{"nested descriptors", b(bytes.Repeat([]byte{0}, 40), 0x40)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v, _, err := decode(tc.in, 0); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %+v, err %v", v, err)
			}
		})
	}
	if _, _, err := decode(nest(b(0x40), maxDepth-1), 0); err != nil {
		t.Fatalf("%d nested lists: %v", maxDepth-1, err)
	}
}

// TestAllocationBound decodes inputs built to allocate the most and checks the bytes allocated
// stay within a constant times the input's size.
func TestAllocationBound(t *testing.T) {
	many := func(code byte, n int) []byte { return bytes.Repeat([]byte{code}, n) }
	desc := b(0x00, 0xb3, u32(200), strings.Repeat("d", 200), 0x40) // described nulls
	inner := b(2, 1, 0x40)                                          // an array8 of one null, after its constructor
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"list of nulls", b(0xd0, u32(4+4000), u32(4000), many(0x40, 4000))},
		{"array of described nulls", b(0xf0, u32(4+len(desc)), u32(len(desc)), desc)},
		{"array of arrays", b(0xf0, u32(4+1+1000*3), u32(1000), 0xe0, bytes.Repeat(inner, 1000))},
		{"map of empty lists", b(0xd1, u32(4+4000), u32(4000), many(0x45, 4000))},
		{"nested", nest(b(0xd0, u32(4+1000), u32(1000), many(0x40, 1000)), maxDepth-2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decode(tc.in, 0); err != nil {
				t.Fatal(err)
			}
			const runs = 20
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range runs {
				decode(tc.in, 0)
			}
			runtime.ReadMemStats(&after)
			perByte := float64(after.TotalAlloc-before.TotalAlloc) / runs / float64(len(tc.in))
			t.Logf("%d octets, %.0f bytes allocated per octet", len(tc.in), perByte)
			if perByte > 256 {
				t.Errorf("%.0f bytes allocated per input octet", perByte)
			}
		})
	}
}

func TestReadFrame(t *testing.T) {
	body := performative(CodeOpen, list8(str8("c")))
	ext := b(u32(12+len(body)), 3, 0, 0, 5, 0xaa, 0xbb, 0xcc, 0xdd, body) // extended header
	for _, tc := range []struct {
		name    string
		in      []byte
		typ     uint8
		channel uint16
		body    []byte
	}{
		{"open", frame(TypeAMQP, body), TypeAMQP, 0, body},
		{"heartbeat", frame(TypeAMQP, nil), TypeAMQP, 0, nil},
		{"sasl", frame(TypeSASL, body), TypeSASL, 0, body},
		{"extended header", ext, TypeAMQP, 5, body},
		{"doff equals size", b(u32(12), 3, 0, 0, 1, 9, 9, 9, 9), TypeAMQP, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ReadFrame(bytes.NewReader(b(tc.in, "next")), 0)
			if err != nil {
				t.Fatal(err)
			}
			if f.Type != tc.typ || f.Channel != tc.channel || !bytes.Equal(f.Body, tc.body) || !bytes.Equal(f.Raw, tc.in) {
				t.Fatalf("got %+v", f)
			}
			for i := range tc.in {
				_, err := ReadFrame(bytes.NewReader(tc.in[:i]), 0)
				if want := io.ErrUnexpectedEOF; i == 0 && err != io.EOF || i > 0 && err != want {
					t.Fatalf("truncated to %d: %v", i, err)
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   []byte
		max  int
	}{
		{"size 7", b(u32(7), 2, 0, 0, 0), 0},
		{"size 0", b(u32(0), 2, 0, 0, 0), 0},
		{"size above max", frame(0, make([]byte, 100)), 100},
		{"size above default", frame(0, make([]byte, MinMaxFrameSize)), 0},
		{"size 4GiB", b(0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0), 1 << 20},
		{"doff 0", b(u32(8), 0, 0, 0, 0), 0},
		{"doff 1", b(u32(8), 1, 0, 0, 0), 0},
		{"doff beyond size", b(u32(12), 4, 0, 0, 0, 1, 2, 3, 4), 0},
		{"protocol header", HeaderAMQP[:], 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f, err := ReadFrame(bytes.NewReader(tc.in), tc.max); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, err %v", f, err)
			}
		})
	}
	if f, err := ReadFrame(bytes.NewReader(frame(0, make([]byte, 92))), 100); err != nil || len(f.Raw) != 100 {
		t.Fatalf("frame of exactly max: %v %v", f, err)
	}
	big := frame(0, bytes.Repeat([]byte("0123456789"), 100000))
	if f, err := ReadFrame(bytes.NewReader(big), len(big)); err != nil || !bytes.Equal(f.Raw, big) || len(f.Body) != len(big)-8 {
		t.Fatalf("large frame: %v %v", f, err)
	}
	// A peer claiming a huge frame gets no huge buffer before it sends the octets.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(bytes.NewReader(b(0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, "short")), math.MaxInt)
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF || after.TotalAlloc-before.TotalAlloc > 1<<20 {
		t.Fatalf("huge claim: %v, %d bytes allocated", err, after.TotalAlloc-before.TotalAlloc)
	}
}

func TestPerformative(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		code   uint64
		fields int
	}{
		{"smallulong", performative(CodeOpen, list8(str8("c"))), CodeOpen, 1},
		{"ulong", b(0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x18, 0x45), CodeClose, 0},
		{"ulong0", b(0x00, 0x44, 0x45), 0, 0},
		{"symbol", b(0x00, sym8("amqp:sasl-outcome:list"), list8(b(0x50, 0))), CodeSASLOutcome, 1},
		{"list32", performative(CodeBegin, list32(b(0x40), b(0x43))), CodeBegin, 2},
		{"payload ignored", b(performative(CodeTransfer, list8(b(0x43))), "payload\x00\xff"), CodeTransfer, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, fields, err := Performative(tc.in)
			if err != nil || code != tc.code || len(fields) != tc.fields {
				t.Fatalf("got %#x %v %v", code, fields, err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not described", list8()},
		{"no descriptor", b(0x00)},
		{"no list", b(0x00, 0x53, 0x10)},
		{"unknown symbol", b(0x00, sym8("amqp:nope:list"), 0x45)},
		{"string descriptor", b(0x00, str8("amqp:open:list"), 0x45)},
		{"uint descriptor", b(0x00, 0x52, 0x10, 0x45)},
		{"not a list", b(0x00, 0x53, 0x10, 0x40)},
		{"map", b(0x00, 0x53, 0x10, 0xc1, 1, 0)},
		{"bad list", b(0x00, 0x53, 0x10, 0xc0, 5, 1, 0x40)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Performative(tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

// protonOpen is an open frame shaped as qpid-proton sends it: a UUID container-id, a hostname,
// max-frame-size, channel-max and idle-time-out, nulls for the locales and capabilities, and
// properties naming the product.
var protonOpen = frame(TypeAMQP, performative(CodeOpen, list8(
	str8("9a4d1c62-7a8e-4b6e-9f0b-2f9c7c3c5e11"),
	str8("vhost:orders"),
	b(0x70, 0, 1, 0, 0),
	b(0x60, 0x7f, 0xff),
	b(0x70, 0, 0, 0x75, 0x30),
	b(0x40), b(0x40), b(0x40),
	b(0xe0, 18, 1, 0xa3, 15, "ANONYMOUS-RELAY"),
	map8(sym8("product"), str8("qpid-proton"), sym8("version"), str8("0.39.0")),
)))

func TestParseOpen(t *testing.T) {
	f, err := ReadFrame(bytes.NewReader(protonOpen), 0)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseOpen(f.Body)
	want := Open{ContainerID: "9a4d1c62-7a8e-4b6e-9f0b-2f9c7c3c5e11", Hostname: "vhost:orders",
		MaxFrameSize: 65536, ChannelMax: 32767, IdleTimeout: 30 * time.Second}
	if err != nil || o != want || o.VHost() != "orders" {
		t.Fatalf("got %+v %v", o, err)
	}
	defaults := Open{ContainerID: "c", MaxFrameSize: math.MaxUint32, ChannelMax: math.MaxUint16}
	for _, tc := range []struct {
		name  string
		in    []byte
		want  Open
		vhost string
	}{
		{"trailing omitted", performative(CodeOpen, list8(str8("c"))), defaults, "/"},
		{"nulls", performative(CodeOpen, list8(str8("c"), b(0x40), b(0x40), b(0x40), b(0x40), b(0x40))), defaults, "/"},
		{"list0", performative(CodeOpen, b(0x45)), Open{MaxFrameSize: math.MaxUint32, ChannelMax: math.MaxUint16}, "/"},
		{"small encodings", performative(CodeOpen, list8(str8("c"), str8("broker.example"), b(0x52, 0xff), b(0x50, 3), b(0x43))),
			Open{ContainerID: "c", Hostname: "broker.example", MaxFrameSize: 255, ChannelMax: 3}, "/"},
		{"empty vhost", performative(CodeOpen, list8(str8("c"), str8("vhost:"))), Open{ContainerID: "c", Hostname: "vhost:", MaxFrameSize: math.MaxUint32, ChannelMax: math.MaxUint16}, ""},
		{"vhost slash", performative(CodeOpen, list8(str8("c"), str8("vhost:/"))), Open{ContainerID: "c", Hostname: "vhost:/", MaxFrameSize: math.MaxUint32, ChannelMax: math.MaxUint16}, "/"},
		{"vhost case", performative(CodeOpen, list8(str8("c"), str8("VHOST:x"))), Open{ContainerID: "c", Hostname: "VHOST:x", MaxFrameSize: math.MaxUint32, ChannelMax: math.MaxUint16}, "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOpen(tc.in)
			if err != nil || o != tc.want || o.VHost() != tc.vhost {
				t.Fatalf("got %+v (vhost %q) %v", o, o.VHost(), err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"wrong descriptor", performative(CodeClose, b(0x45))},
		{"container-id a symbol", performative(CodeOpen, list8(sym8("c")))},
		{"hostname a symbol", performative(CodeOpen, list8(str8("c"), sym8("vhost:x")))},
		{"max-frame-size a long", performative(CodeOpen, list8(str8("c"), b(0x40), b(0x55, 1)))},
		{"max-frame-size too big", performative(CodeOpen, list8(str8("c"), b(0x40), b(0x80, 0, 0, 0, 1, 0, 0, 0, 0)))},
		{"channel-max too big", performative(CodeOpen, list8(str8("c"), b(0x40), b(0x40), b(0x70, 0, 1, 0, 0)))},
		{"idle-time-out a string", performative(CodeOpen, list8(str8("c"), b(0x40), b(0x40), b(0x40), str8("1")))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if o, err := ParseOpen(tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %+v, err %v", o, err)
			}
		})
	}
}

// protonSASLInit is a sasl-init frame shaped as qpid-proton sends it for PLAIN.
var protonSASLInit = frame(TypeSASL, performative(CodeSASLInit, list8(
	sym8("PLAIN"), vbin8("\x00guest\x00s3cret"), str8("localhost"))))

func TestParseSASLInit(t *testing.T) {
	f, err := ReadFrame(bytes.NewReader(protonSASLInit), 0)
	if err != nil || f.Type != TypeSASL {
		t.Fatal(f, err)
	}
	s, err := ParseSASLInit(f.Body)
	if want := (SASLInit{Mechanism: "PLAIN", User: "guest", Hostname: "localhost"}); err != nil || s != want {
		t.Fatalf("got %+v %v", s, err)
	}
	// The password shows in no exported field and no formatting.
	out := fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s)
	rv := reflect.ValueOf(s)
	for i := range rv.NumField() {
		out += fmt.Sprint(rv.Field(i).Interface())
	}
	out += fmt.Sprintf("%v %+v", f, &f)
	if strings.Contains(out, "s3cret") {
		t.Fatalf("password in %q", out)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want SASLInit
	}{
		{"plain with authzid", performative(CodeSASLInit, list8(sym8("PLAIN"), vbin8("adm\x00bob\x00pw\x00x"))),
			SASLInit{Mechanism: "PLAIN", User: "bob"}},
		{"plain empty user", performative(CodeSASLInit, list8(sym8("PLAIN"), vbin8("\x00\x00p"))), SASLInit{Mechanism: "PLAIN"}},
		{"plain one NUL", performative(CodeSASLInit, list8(sym8("PLAIN"), vbin8("\x00user"))), SASLInit{Mechanism: "PLAIN"}},
		{"plain no NUL", performative(CodeSASLInit, list8(sym8("PLAIN"), vbin8("user"))), SASLInit{Mechanism: "PLAIN"}},
		{"plain no response", performative(CodeSASLInit, list8(sym8("PLAIN"))), SASLInit{Mechanism: "PLAIN"}},
		{"plain null response", performative(CodeSASLInit, list8(sym8("PLAIN"), b(0x40), str8("h"))), SASLInit{Mechanism: "PLAIN", Hostname: "h"}},
		{"plain lowercase", performative(CodeSASLInit, list8(sym8("plain"), vbin8("\x00u\x00p"))), SASLInit{Mechanism: "plain"}},
		{"anonymous", performative(CodeSASLInit, list8(sym8("ANONYMOUS"), vbin8("\x00trace\x00x\x00"))), SASLInit{Mechanism: "ANONYMOUS"}},
		{"external", performative(CodeSASLInit, list8(sym8("EXTERNAL"), b(0xa0, 0))), SASLInit{Mechanism: "EXTERNAL"}},
		{"sym32 and vbin32", performative(CodeSASLInit, list32(b(0xb3, u32(5), "PLAIN"), b(0xb0, u32(4), "\x00u\x00p"))), SASLInit{Mechanism: "PLAIN", User: "u"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSASLInit(tc.in)
			if err != nil || s != tc.want {
				t.Fatalf("got %+v %v", s, err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"wrong descriptor", performative(CodeSASLResponse, list8(b(0xa0, 0)))},
		{"mechanism a string", performative(CodeSASLInit, list8(str8("PLAIN")))},
		{"response a string", performative(CodeSASLInit, list8(sym8("PLAIN"), str8("\x00u\x00p")))},
		{"hostname a symbol", performative(CodeSASLInit, list8(sym8("PLAIN"), b(0x40), sym8("h")))},
		{"truncated", protonSASLInit[8 : len(protonSASLInit)-1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := ParseSASLInit(tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %+v, err %v", s, err)
			}
		})
	}
}

func TestParseSASLMechanismsAndOutcome(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want []string
	}{
		{"array", performative(CodeSASLMechanisms, list8(b(0xe0, 18, 2, 0xa3, 5, "PLAIN", 9, "ANONYMOUS"))), []string{"PLAIN", "ANONYMOUS"}},
		{"symbol", performative(CodeSASLMechanisms, list8(sym8("EXTERNAL"))), []string{"EXTERNAL"}},
		{"empty array", performative(CodeSASLMechanisms, list8(b(0xe0, 2, 0, 0xa3))), []string{}},
		{"null", performative(CodeSASLMechanisms, list8(b(0x40))), nil},
		{"omitted", performative(CodeSASLMechanisms, b(0x45)), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseSASLMechanisms(tc.in)
			if err != nil || !reflect.DeepEqual(m.Mechanisms, tc.want) {
				t.Fatalf("got %q %v", m.Mechanisms, err)
			}
		})
	}
	for _, in := range [][]byte{
		performative(CodeSASLInit, list8(sym8("PLAIN"))),
		performative(CodeSASLMechanisms, list8(str8("PLAIN"))),
		performative(CodeSASLMechanisms, list8(b(0xe0, 3, 1, 0x50, 1))),
	} {
		if m, err := ParseSASLMechanisms(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: got %+v, err %v", in, m, err)
		}
	}
	for _, tc := range []struct {
		in   []byte
		want uint8
	}{
		{performative(CodeSASLOutcome, list8(b(0x50, 0))), SASLOK},
		{performative(CodeSASLOutcome, list8(b(0x50, 1), vbin8("hi"))), SASLAuth},
		{b(0x00, sym8("amqp:sasl-outcome:list"), list8(b(0x50, 4))), SASLSysTemp},
	} {
		if o, err := ParseSASLOutcome(tc.in); err != nil || o.Code != tc.want {
			t.Errorf("%x: got %+v %v", tc.in, o, err)
		}
	}
	for _, in := range [][]byte{
		performative(CodeSASLOutcome, b(0x45)),
		performative(CodeSASLOutcome, list8(b(0x40))),
		performative(CodeSASLOutcome, list8(b(0x70, 0, 0, 1, 0))),
		performative(CodeSASLOutcome, list8(b(0x51, 0))),
		performative(CodeSASLInit, list8(b(0x50, 0))),
	} {
		if o, err := ParseSASLOutcome(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: got %+v, err %v", in, o, err)
		}
	}
}

func TestParseClose(t *testing.T) {
	errList := func(elems ...[]byte) []byte { return b(0x00, 0x53, CodeError, list8(elems...)) }
	for _, tc := range []struct {
		name string
		in   []byte
		want Close
	}{
		{"list0", performative(CodeClose, b(0x45)), Close{}},
		{"null error", performative(CodeClose, list8(b(0x40))), Close{}},
		{"condition only", performative(CodeClose, list8(errList(sym8("amqp:internal-error")))), Close{Condition: "amqp:internal-error"}},
		{"all fields", performative(CodeClose, list8(errList(sym8("amqp:connection:forced"), str8("bye"), b(0xc1, 1, 0)))),
			Close{Condition: "amqp:connection:forced", Description: "bye"}},
		{"null description", performative(CodeClose, list8(errList(sym8("c"), b(0x40), b(0x40)))), Close{Condition: "c"}},
		{"symbolic error", performative(CodeClose, list8(b(0x00, sym8("amqp:error:list"), list8(sym8("c"), str8("d"))))),
			Close{Condition: "c", Description: "d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseClose(tc.in)
			if err != nil || c != tc.want {
				t.Fatalf("got %+v %v", c, err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"wrong descriptor", performative(CodeOpen, b(0x45))},
		{"error not described", performative(CodeClose, list8(list8(sym8("c"))))},
		{"error wrong descriptor", performative(CodeClose, list8(b(0x00, 0x53, CodeOpen, list8(sym8("c")))))},
		{"error unknown symbol", performative(CodeClose, list8(b(0x00, sym8("x"), list8(sym8("c")))))},
		{"error not a list", performative(CodeClose, list8(b(0x00, 0x53, CodeError, sym8("c"))))},
		{"condition a string", performative(CodeClose, list8(errList(str8("c"))))},
		{"description a symbol", performative(CodeClose, list8(errList(sym8("c"), sym8("d"))))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := ParseClose(tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %+v, err %v", c, err)
			}
		})
	}
}

func TestAppendRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, c := range []Close{
		{},
		{Condition: "amqp:connection:forced", Description: "backend gone"},
		{Condition: "amqp:connection:forced"},
		{Condition: "amqp:internal-error", Description: long},
		{Condition: long, Description: "d"},
		{Condition: "c", Description: strings.Repeat("y", 246)}, // the largest list8
		{Condition: "c", Description: strings.Repeat("y", 247)}, // the smallest list32
	} {
		buf := AppendClose([]byte("prefix"), c.Condition, c.Description)
		if string(buf[:6]) != "prefix" {
			t.Fatal("prefix lost")
		}
		f, err := ReadFrame(bytes.NewReader(buf[6:]), 1<<16)
		if err != nil || f.Type != TypeAMQP || f.Channel != 0 || len(f.Raw) != len(buf)-6 {
			t.Fatalf("%+v: %v %v", c, f, err)
		}
		got, err := ParseClose(f.Body)
		if err != nil || got != c {
			t.Fatalf("%+v: got %+v %v", c, got, err)
		}
	}
	if got := AppendClose(nil, "amqp:connection:forced", "bye"); !bytes.Equal(got, frame(TypeAMQP, performative(CodeClose,
		list8(b(0x00, 0x53, CodeError, list8(sym8("amqp:connection:forced"), str8("bye"))))))) {
		t.Fatalf("AppendClose = %x", got)
	}
	for code := range uint8(6) {
		buf := AppendSASLOutcome(nil, code)
		f, err := ReadFrame(bytes.NewReader(buf), 0)
		if err != nil || f.Type != TypeSASL {
			t.Fatal(f, err)
		}
		if o, err := ParseSASLOutcome(f.Body); err != nil || o.Code != code {
			t.Fatalf("code %d: got %+v %v", code, o, err)
		}
	}
	if got, want := AppendSASLOutcome(nil, SASLAuth), frame(TypeSASL, performative(CodeSASLOutcome, list8(b(0x50, 1)))); !bytes.Equal(got, want) {
		t.Fatalf("AppendSASLOutcome = %x, want %x", got, want)
	}
}

// AppendCloseFrame writes what ReadFrame and ParseClose read back.
func TestAppendCloseFrameRoundTrip(t *testing.T) {
	for _, c := range []Close{{}, {Condition: "amqp:connection:forced", Description: "amqplb rebalance"}} {
		raw := AppendCloseFrame([]byte("x"), c)[1:]
		f, err := ReadFrame(bytes.NewReader(raw), len(raw))
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if f.Type != TypeAMQP || f.Channel != 0 || len(f.Raw) != len(raw) {
			t.Fatalf("%+v: frame %+v", c, f)
		}
		got, err := ParseClose(f.Body)
		if err != nil || got != c {
			t.Errorf("ParseClose = %+v, %v; want %+v", got, err, c)
		}
	}
}
