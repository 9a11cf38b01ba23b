package amqpwire

import (
	"testing"
	"time"
)

// identityKeys are the client properties a balancer keeps (proxy's identity).
var identityKeys = []string{"connection_name", "product", "version", "platform"}

// startOkSeeds are Start-Ok payloads with every field type among their client properties.
func startOkSeeds(t testing.TB) [][]byte {
	props := ClientProperties("amqplb", "orders-1")
	props["version"] = []byte("1.2.3")
	props["platform"] = int16(7)
	props["all"] = Table{
		"t": true, "b": int8(-1), "B": uint8(1), "s": int16(-2), "u": uint16(2), "I": int32(-3),
		"i": uint32(3), "l": int64(-4), "f": float32(1.5), "d": 2.5, "D": Decimal{Scale: 2, Value: 314},
		"S": "text", "x": []byte{0, 1}, "A": []any{"a", int32(1), Table{"n": nil}}, "T": time.Unix(1700000000, 0).UTC(),
		"V": nil,
	}
	var seeds [][]byte
	for _, m := range []*ConnectionStartOk{
		PlainStartOk("guest", "guest", props),
		PlainStartOk("u", "p", Table{}),
		{ClientProperties: Table{"product": Table{"nested": "x"}}, Mechanism: "AMQPLAIN", Response: "\x05LOGINS\x00\x00\x00\x01u", Locale: "en_US"},
	} {
		b, err := AppendMethod(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// DecodeStartOk agrees with DecodeMethod on every seed, on every truncation of it and with
// bytes flipped: the same error, or the same mechanism, response and properties.
func TestDecodeStartOkAgreesWithDecodeMethod(t *testing.T) {
	for _, seed := range startOkSeeds(t) {
		for n := 0; n <= len(seed); n++ {
			compareStartOk(t, seed[:n])
		}
		for i := 4; i < len(seed); i++ {
			b := append([]byte(nil), seed...)
			b[i] ^= 0xff
			compareStartOk(t, b)
		}
	}
	props := make([]string, len(identityKeys))
	_, _, err := DecodeStartOk(seedTune(t), identityKeys, props)
	if err == nil {
		t.Error("DecodeStartOk took a Connection.Tune")
	}
}

func seedTune(t testing.TB) []byte {
	b, err := AppendMethod(nil, &ConnectionTune{ChannelMax: 1, FrameMax: 4096, Heartbeat: 60})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compareStartOk fails t unless DecodeStartOk and DecodeMethod agree on payload (when its ids
// are Start-Ok's).
func compareStartOk(t testing.TB, payload []byte) {
	t.Helper()
	if len(payload) >= 4 && (payload[0] != 0 || payload[1] != byte(ClassConnection) || payload[2] != 0 || payload[3] != byte(MethodStartOk)) {
		return
	}
	props := make([]string, len(identityKeys))
	mech, resp, err := DecodeStartOk(payload, identityKeys, props)
	m, merr := DecodeMethod(payload)
	switch {
	case (err == nil) != (merr == nil):
		t.Fatalf("% x: DecodeStartOk error %v, DecodeMethod error %v", payload, err, merr)
	case err != nil:
		if err.Error() != merr.Error() {
			t.Fatalf("% x: errors differ:\n%v\n%v", payload, err, merr)
		}
		return
	}
	so := m.(*ConnectionStartOk)
	if mech != so.Mechanism || resp != so.Response {
		t.Fatalf("% x: mechanism, response %q %q; DecodeMethod %q %q", payload, mech, resp, so.Mechanism, so.Response)
	}
	for i, k := range identityKeys {
		if want := PropertyString(so.ClientProperties[k]); props[i] != want {
			t.Fatalf("% x: property %s = %q, DecodeMethod's %q", payload, k, props[i], want)
		}
	}
}

// FuzzDecodeStartOk: DecodeStartOk accepts and refuses exactly what DecodeMethod does, and
// keeps the same values.
func FuzzDecodeStartOk(f *testing.F) {
	for _, s := range startOkSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload []byte) { compareStartOk(t, payload) })
}

func BenchmarkDecodeStartOk(b *testing.B) {
	payload := startOkSeeds(b)[0]
	b.Run("DecodeMethod", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, _ := DecodeMethod(payload)
			_ = PropertyString(m.(*ConnectionStartOk).ClientProperties["product"])
		}
	})
	b.Run("DecodeStartOk", func(b *testing.B) {
		b.ReportAllocs()
		props := make([]string, len(identityKeys))
		for b.Loop() {
			_, _, _ = DecodeStartOk(payload, identityKeys, props)
		}
	})
}
