package amqp10

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// encode re-encodes a decoded value in its widest encoding (list32, str32, a ulong as 0x80 ...),
// so a value decoded from it must equal the original.
func encode(buf []byte, v Value) []byte {
	if v.Kind == KindDescribed {
		return encode(encode(append(buf, 0x00), v.Items[0]), v.Items[1])
	}
	code, data := encodeData(v)
	return append(append(buf, code), data...)
}

// encodeData returns the format code of v (for a described value, its descriptor's prefix
// included) and its data.
func encodeData(v Value) (code byte, data []byte) {
	fixed := map[Kind]byte{KindBool: 0x56, KindUbyte: 0x50, KindUshort: 0x60, KindUint: 0x70,
		KindUlong: 0x80, KindByte: 0x51, KindShort: 0x61, KindInt: 0x71, KindLong: 0x81,
		KindFloat: 0x72, KindDouble: 0x82, KindChar: 0x73, KindTimestamp: 0x83}
	widths := map[byte]int{0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8}
	switch v.Kind {
	case KindNull:
		return 0x40, nil
	case KindDecimal32:
		return 0x74, v.Bytes
	case KindDecimal64:
		return 0x84, v.Bytes
	case KindDecimal128:
		return 0x94, v.Bytes
	case KindUUID:
		return 0x98, v.Bytes
	case KindBinary, KindString, KindSymbol:
		code := map[Kind]byte{KindBinary: 0xb0, KindString: 0xb1, KindSymbol: 0xb3}[v.Kind]
		return code, append(binary.BigEndian.AppendUint32(nil, uint32(len(v.Bytes))), v.Bytes...)
	case KindList, KindMap:
		var items []byte
		for _, e := range v.Items {
			items = encode(items, e)
		}
		return map[Kind]byte{KindList: 0xd0, KindMap: 0xd1}[v.Kind], compound(len(v.Items), nil, items)
	case KindArray:
		ctor := []byte{0x40}
		var items []byte
		for i, e := range v.Items {
			var desc []byte
			if e.Kind == KindDescribed {
				desc = encode([]byte{0x00}, e.Items[0])
				e = e.Items[1]
			}
			c, d := encodeData(e)
			if i == 0 {
				ctor = append(desc, c)
			}
			items = append(items, d...)
		}
		return 0xf0, compound(len(v.Items), ctor, items)
	}
	code = fixed[v.Kind]
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], v.Num)
	return code, n[8-widths[code>>4]:]
}

func compound(count int, ctor, items []byte) []byte {
	size := 4 + len(ctor) + len(items)
	out := binary.BigEndian.AppendUint32(nil, uint32(size))
	out = binary.BigEndian.AppendUint32(out, uint32(count))
	return append(append(out, ctor...), items...)
}

// seeds are frames and bodies of every kind the tests build.
func seeds() [][]byte {
	out := [][]byte{protonOpen, protonSASLInit, AppendClose(nil, "amqp:connection:forced", "bye"),
		AppendClose(nil, "", ""), AppendSASLOutcome(nil, SASLAuth), frame(TypeAMQP, nil), HeaderSASL[:]}
	for _, body := range [][]byte{
		performative(CodeSASLMechanisms, list8(b(0xe0, 18, 2, 0xa3, 5, "PLAIN", 9, "ANONYMOUS"))),
		performative(CodeSASLInit, list32(b(0xb3, u32(5), "PLAIN"), b(0xb0, u32(4), "\x00u\x00p"))),
		performative(CodeClose, list8(b(0x00, sym8("amqp:error:list"), list8(sym8("c"), str8("d"), b(0xc1, 1, 0))))),
		performative(CodeOpen, list8(str8("c"), b(0x40), b(0x52, 0xff), b(0x50, 3), b(0x43))),
		b(0x00, 0x53, 0x10, 0xd1, u32(8), u32(2), 0x50, 1, 0x50, 2),
		b(0x00, 0x53, 0x10, 0xc0, 40, 6, 0x98, "0123456789abcdef", 0x83, 0, 0, 1, 0x8b, 0xcf, 0xe5, 0x68, 0,
			0x73, 0, 1, 0xf6, 0, 0x74, 1, 2, 3, 4, 0x55, 0x7f, 0xe0, 5, 2, 0x00, 0x53, 0x1d, 0x45),
	} {
		out = append(out, body, frame(TypeSASL, body))
	}
	return out
}

// FuzzReadFrame reads frames from arbitrary bytes and decodes what they carry. Nothing may
// panic; a frame read must be as long as it says, its body a suffix of it.
func FuzzReadFrame(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			fr, err := ReadFrame(r, 4096)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if int(binary.BigEndian.Uint32(fr.Raw)) != len(fr.Raw) || !bytes.HasSuffix(fr.Raw, fr.Body) || len(fr.Raw)-len(fr.Body) < 8 {
				t.Fatalf("inconsistent frame %x / %x", fr.Raw, fr.Body)
			}
			parseAll(t, fr.Body)
		}
	})
}

// parseAll runs every parser over body and checks their errors.
func parseAll(t *testing.T, body []byte) {
	t.Helper()
	errs := []error{}
	_, _, err := Performative(body)
	errs = append(errs, err)
	_, err = ParseOpen(body)
	errs = append(errs, err)
	_, err = ParseClose(body)
	errs = append(errs, err)
	_, err = ParseSASLInit(body)
	errs = append(errs, err)
	_, err = ParseSASLMechanisms(body)
	errs = append(errs, err)
	_, err = ParseSASLOutcome(body)
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error not wrapping ErrMalformed: %v", err)
		}
	}
}

// FuzzPerformative decodes arbitrary bodies. A performative that decodes must encode (in the
// widest encodings) to one that decodes to the same fields.
func FuzzPerformative(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
		if len(s) > 8 {
			f.Add(s[8:])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parseAll(t, data)
		code, fields, err := Performative(data)
		if err != nil {
			return
		}
		list := Value{Kind: KindList, Items: fields}
		again := encode(b(0x00, 0x80, binary.BigEndian.AppendUint64(nil, code)), list)
		code2, fields2, err := Performative(again)
		if err != nil || code2 != code || !sameValue(Value{Kind: KindList, Items: fields2}, list) {
			t.Fatalf("re-encoded %x as %x: %#x %+v, %v", data, again, code2, fields2, err)
		}
	})
}

// FuzzParseSASLInit parses arbitrary bodies, and sasl-inits built from arbitrary parts, whose
// user must be the PLAIN authcid and whose password must show nowhere.
func FuzzParseSASLInit(f *testing.F) {
	f.Add(protonSASLInit[8:], "PLAIN", "", "guest", "guest", "localhost")
	f.Add([]byte{}, "PLAIN", "admin", "bob", "pw", "")
	f.Add([]byte{0}, "ANONYMOUS", "", "trace", "", "h")
	f.Fuzz(func(t *testing.T, body []byte, mech, authzid, authcid, passwd, host string) {
		parseAll(t, body)
		resp := authzid + "\x00" + authcid + "\x00" + passwd
		built := performative(CodeSASLInit, list32(b(0xb3, u32(len(mech)), mech), b(0xb0, u32(len(resp)), resp), b(0xb1, u32(len(host)), host)))
		s, err := ParseSASLInit(built)
		if err != nil {
			t.Fatal(err)
		}
		clean := !strings.Contains(authzid+authcid, "\x00")
		switch {
		case s.Mechanism != mech || s.Hostname != host,
			mech == "PLAIN" && clean && s.User != authcid,
			mech != "PLAIN" && s.User != "":
			t.Fatalf("got %+v", s)
		}
		if len(passwd) >= 8 && !strings.Contains(mech+host+authzid+authcid, passwd) &&
			strings.Contains(s.Mechanism+s.User+s.Hostname, passwd) {
			t.Fatalf("password %q in %+v", passwd, s)
		}
	})
}

// FuzzParseOpen parses arbitrary bodies, and opens built from arbitrary fields.
func FuzzParseOpen(f *testing.F) {
	f.Add(protonOpen[8:], "container", "vhost:orders", uint32(65536), uint16(2047), uint32(60000))
	f.Add([]byte{}, "", "", uint32(0), uint16(0), uint32(0))
	f.Fuzz(func(t *testing.T, body []byte, id, host string, maxFrame uint32, channelMax uint16, idle uint32) {
		parseAll(t, body)
		built := performative(CodeOpen, list32(b(0xb1, u32(len(id)), id), b(0xb1, u32(len(host)), host),
			b(0x70, u32(int(maxFrame))), b(0x60, int(channelMax>>8), int(channelMax)), b(0x70, u32(int(idle)))))
		o, err := ParseOpen(built)
		if err != nil {
			t.Fatal(err)
		}
		if o.ContainerID != id || o.Hostname != host || o.MaxFrameSize != maxFrame || o.ChannelMax != channelMax ||
			o.IdleTimeout.Milliseconds() != int64(idle) {
			t.Fatalf("got %+v", o)
		}
		if name, ok := strings.CutPrefix(host, "vhost:"); ok && o.VHost() != name || !ok && o.VHost() != "/" {
			t.Fatalf("VHost of %q = %q", host, o.VHost())
		}
	})
}
