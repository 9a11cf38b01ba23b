package amqpwire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// rabbitStart is a Connection.Start as RabbitMQ 3.13 sends it, plus a field of every type.
func rabbitStart() *ConnectionStart {
	return &ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: Table{
			"capabilities": Table{
				"publisher_confirms":           true,
				"exchange_exchange_bindings":   true,
				"basic.nack":                   true,
				"consumer_cancel_notify":       true,
				"connection.blocked":           true,
				"consumer_priorities":          true,
				"authentication_failure_close": true,
				"per_consumer_qos":             true,
				"direct_reply_to":              true,
			},
			"cluster_name": "rabbit@amqplb-test",
			"copyright":    "Copyright (c) 2007-2024 Broadcom Inc and/or its subsidiaries",
			"information":  "Licensed under the MPL 2.0. Website: https://rabbitmq.com",
			"platform":     "Erlang/OTP 26.2.5",
			"product":      "RabbitMQ",
			"version":      "3.13.7",
			"types": Table{
				"b": int8(-3), "B": uint8(250), "s": int16(-300), "u": uint16(65000),
				"I": int32(-70000), "i": uint32(4000000000), "l": int64(-1 << 40),
				"f": float32(1.5), "d": math.Pi, "D": Decimal{Scale: 2, Value: -12345},
				"x": []byte{0, 1, 2}, "A": []any{"a", int32(1), []any{}, Table{"k": nil}},
				"T": time.Unix(1700000000, 0).UTC(), "V": nil, "F": Table{},
			},
		},
		Mechanisms: "AMQPLAIN PLAIN",
		Locales:    "en_US",
	}
}

func TestMethodRoundTrip(t *testing.T) {
	methods := []Method{
		rabbitStart(),
		PlainStartOk("guest", "secret", ClientProperties("amqplb", "amqplb health check")),
		&ConnectionSecure{Challenge: "x"},
		&ConnectionSecureOk{Response: "y"},
		&ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60},
		&ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072},
		&ConnectionOpen{VirtualHost: "/", Insist: true},
		&ConnectionOpenOk{},
		&ConnectionClose{ReplyCode: 403, ReplyText: "ACCESS_REFUSED - Login was refused", FailedClass: 10, FailedMethod: 11},
		&ConnectionCloseOk{},
		&ConnectionBlocked{Reason: "low on memory"},
		&ConnectionUnblocked{},
		&UnknownMethod{Class: 20, Method: 10, Args: []byte{0}},
	}
	for _, m := range methods {
		t.Run(Name(m), func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteMethod(&buf, 0, m); err != nil {
				t.Fatal(err)
			}
			ch, got, err := ReadMethod(&buf, FrameMinSize)
			if err != nil {
				t.Fatal(err)
			}
			if ch != 0 || !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip on channel %d:\n got %#v\nwant %#v", ch, got, m)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d octets left after the frame", buf.Len())
			}
		})
	}
}

// TestStartOkWire pins the exact encoding of what the health check sends, so a change to the
// encoder that still round-trips cannot silently change the wire.
func TestStartOkWire(t *testing.T) {
	m := PlainStartOk("u", "p", Table{"capabilities": Table{"authentication_failure_close": true}})
	got, err := AppendMethod(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 10, 0, 11, // Connection.Start-Ok
		0, 0, 0, 0x31, // client-properties: 49 octets
		12, 'c', 'a', 'p', 'a', 'b', 'i', 'l', 'i', 't', 'i', 'e', 's', 'F', 0, 0, 0, 0x1f,
		28, 'a', 'u', 't', 'h', 'e', 'n', 't', 'i', 'c', 'a', 't', 'i', 'o', 'n', '_', 'f', 'a', 'i', 'l', 'u', 'r', 'e', '_', 'c', 'l', 'o', 's', 'e', 't', 1,
		5, 'P', 'L', 'A', 'I', 'N',
		0, 0, 0, 4, 0, 'u', 0, 'p',
		5, 'e', 'n', '_', 'U', 'S',
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Start-Ok payload\n got % x\nwant % x", got, want)
	}
	if !m.ClientProperties["capabilities"].(Table)["authentication_failure_close"].(bool) {
		t.Fatal("capability missing")
	}
	caps := ClientProperties("amqplb", "")["capabilities"].(Table)
	if caps["authentication_failure_close"] != true {
		t.Fatal("ClientProperties does not advertise authentication_failure_close")
	}
}

func TestPlainResponse(t *testing.T) {
	u, p, ok := ParsePlainResponse(PlainResponse("guest", "pa ss"))
	if !ok || u != "guest" || p != "pa ss" {
		t.Fatalf("got %q %q %v", u, p, ok)
	}
	if _, _, ok := ParsePlainResponse("guest"); ok {
		t.Fatal("a response without NULs parsed")
	}
}

func TestReadFrameErrors(t *testing.T) {
	valid := AppendFrame(nil, Frame{Type: FrameHeartbeat})
	tests := []struct {
		name    string
		in      []byte
		max     uint32
		wantErr error
		wantMsg string
	}{
		{"empty", nil, 0, io.EOF, ""},
		{"short header", valid[:3], 0, io.ErrUnexpectedEOF, ""},
		{"no frame end", valid[:7], 0, io.ErrUnexpectedEOF, ""},
		{"bad frame end", append(valid[:7:7], 0x00), 0, ErrMalformed, "frame end"},
		{"bad type", []byte("HTTP/1.1 400 Bad Request\r\n"), 0, ErrMalformed, "invalid frame type 72"},
		{"too large", []byte{1, 0, 0, 0, 0, 0x10, 0x00}, FrameMinSize, ErrMalformed, "exceeds the limit of 4096"},
		{"huge size", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff}, 0, ErrMalformed, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.in), tt.max)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

func TestReadFrameHeader(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"AMQP\x00\x01\x00\x00", "AMQP 1.0.0"},
		{"AMQP\x03\x01\x00\x00", "AMQP 1.0.0 (SASL)"},
		{"AMQP\x02\x01\x00\x00", "AMQP 1.0.0 (TLS)"},
		{ProtocolHeader, "AMQP 0-9-1"},
		{"AMQP\x01\x01\x08\x00", "AMQP 8-0"},
		{"AMQP\x00\x00\x09", "AMQP 0-9-0"}, // peer closed after 7 octets
	}
	for _, tt := range tests {
		_, err := ReadFrame(strings.NewReader(tt.in), 0)
		var he *HeaderError
		if !errors.As(err, &he) {
			t.Fatalf("%q: err = %v, want a *HeaderError", tt.in, err)
		}
		if got := he.Protocol(); got != tt.want {
			t.Errorf("%q: Protocol() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDecodeMethodErrors(t *testing.T) {
	start, err := AppendMethod(nil, rabbitStart())
	if err != nil {
		t.Fatal(err)
	}
	// A table with a field of unknown type 'Z'.
	unknown := []byte{0, 10, 0, 10, 0, 9, 0, 0, 0, 4, 1, 'k', 'Z', 0, 0, 0, 0, 0, 0, 0, 0, 0}
	// A table whose length runs past the payload.
	overrun := []byte{0, 10, 0, 10, 0, 9, 0xff, 0xff, 0xff, 0xff}
	// A table nested deeper than maxNesting.
	deep := []byte{}
	for range maxNesting + 2 {
		deep = append([]byte{'F', 0, 0, 0, byte(len(deep) + 2), 1, 'k'}, deep...)
	}
	deep = append([]byte{0, 10, 0, 11, 0, 0, 0, byte(len(deep) + 2), 1, 'k'}, deep...)
	tests := []struct {
		name    string
		in      []byte
		wantMsg string
	}{
		{"empty", nil, "too short"},
		{"truncated Start", start[:len(start)-3], "overruns"},
		{"trailing octets", append(start[:len(start):len(start)], 0), "after the arguments"},
		{"unknown field type", unknown, "unknown field type 'Z'"},
		{"table overrun", overrun, "overruns"},
		{"too deep", deep, "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMethod(tt.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("DecodeMethod = %v, %v; want ErrMalformed containing %q", m, err, tt.wantMsg)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, m := range []Method{
		&ConnectionOpen{VirtualHost: strings.Repeat("v", 256)},
		&ConnectionStartOk{ClientProperties: Table{"k": struct{}{}}},
	} {
		if _, err := AppendMethod(nil, m); err == nil {
			t.Errorf("%s %+v encoded without error", Name(m), m)
		}
		if err := WriteMethod(io.Discard, 0, m); err == nil {
			t.Errorf("WriteMethod %s encoded without error", Name(m))
		}
	}
}

func TestHasMechanism(t *testing.T) {
	s := &ConnectionStart{Mechanisms: "AMQPLAIN PLAIN  EXTERNAL"}
	if !s.HasMechanism("PLAIN") || !s.HasMechanism("EXTERNAL") || s.HasMechanism("PLAI") {
		t.Fatal("HasMechanism is wrong")
	}
}

func TestMethodName(t *testing.T) {
	if got := MethodName(10, 10); got != "Connection.Start" {
		t.Errorf("got %q", got)
	}
	if got := MethodName(60, 40); got != "60.40" {
		t.Errorf("got %q", got)
	}
}
