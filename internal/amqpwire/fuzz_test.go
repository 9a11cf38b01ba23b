package amqpwire

import (
	"bytes"
	"testing"
)

// FuzzReadFrame feeds arbitrary bytes to ReadFrameRaw and DecodeMethod. Neither may panic, the
// raw frame is what was read and what AppendFrame encodes, and a method that decodes must encode again to bytes that decode to the same encoding (keys are
// sorted, so the encoding of a decoded method is canonical).
func FuzzReadFrame(f *testing.F) {
	for _, m := range []Method{
		rabbitStart(),
		PlainStartOk("guest", "guest", ClientProperties("amqplb", "x")),
		&ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60},
		&ConnectionOpen{VirtualHost: "/"},
		&ConnectionClose{ReplyCode: 530, ReplyText: "NOT_ALLOWED - vhost nope not found"},
		&ConnectionCloseOk{},
	} {
		b, err := AppendMethodFrame(nil, 0, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(AppendFrame(nil, Frame{Type: FrameHeartbeat}))
	f.Add([]byte("AMQP\x00\x01\x00\x00"))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 10, 0xce})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, raw, err := ReadFrameRaw(bytes.NewReader(data), FrameMinSize)
		if err != nil {
			return
		}
		if !bytes.Equal(raw, data[:len(raw)]) || !bytes.Equal(raw, AppendFrame(nil, fr)) {
			t.Fatalf("raw frame % x is not what was read (% x) or what AppendFrame gives", raw, data)
		}
		if fr.Type != FrameMethod {
			return
		}
		m, err := DecodeMethod(fr.Payload)
		if err != nil {
			return
		}
		enc1, err := AppendMethod(nil, m)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", m, err)
		}
		m2, err := DecodeMethod(enc1)
		if err != nil {
			t.Fatalf("re-encoding of %#v does not decode: %v", m, err)
		}
		enc2, err := AppendMethod(nil, m2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("encoding is not stable:\n% x\n% x", enc1, enc2)
		}
	})
}
