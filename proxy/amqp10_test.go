package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/amqp10"
	"github.com/amqplb/amqplb/internal/testenv"
)

// frame10 assembles an AMQP 1.0 frame of the given type (0 AMQP, 1 SASL) around body.
func frame10(typ byte, body []byte) []byte {
	f := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(f, uint32(8+len(body)))
	f[4], f[5] = 2, typ
	return append(f, body...)
}

// performative10 is a described list: descriptor code, then the encoded fields.
func performative10(code byte, fields ...[]byte) []byte {
	var items []byte
	for _, f := range fields {
		items = append(items, f...)
	}
	return append([]byte{0x00, 0x53, code, 0xc0, byte(1 + len(items)), byte(len(fields))}, items...)
}

func sym10(s string) []byte { return append([]byte{0xa3, byte(len(s))}, s...) }
func str10(s string) []byte { return append([]byte{0xa1, byte(len(s))}, s...) }
func bin10(s string) []byte { return append([]byte{0xa0, byte(len(s))}, s...) }
func uint10(v uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0x70}, v)
}
func ushort10(v uint16) []byte { return binary.BigEndian.AppendUint16([]byte{0x60}, v) }

// fakeBroker10 is the AMQP 1.0 side of RabbitMQ 4 as amqplb sees it: SASL header and
// mechanisms, an ok outcome, the AMQP header, an open; then it echoes.
func fakeBroker10(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var h [8]byte
	if _, err := io.ReadFull(c, h[:]); err != nil || h != amqp10.HeaderSASL {
		return
	}
	mechs := frame10(1, performative10(0x40, sym10("PLAIN")))
	if _, err := c.Write(append(amqp10.HeaderSASL[:], mechs...)); err != nil {
		return
	}
	if f, err := amqp10.ReadFrame(c, 0); err != nil || f.Type != amqp10.TypeSASL {
		return
	}
	if _, err := c.Write(amqp10.AppendSASLOutcome(nil, 0)); err != nil {
		return
	}
	if _, err := io.ReadFull(c, h[:]); err != nil || h != amqp10.HeaderAMQP {
		return
	}
	open := frame10(0, performative10(0x10, str10("rabbit@fake")))
	if _, err := c.Write(append(amqp10.HeaderAMQP[:], open...)); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	_, _ = io.Copy(c, c)
}

func TestAMQP10SessionIsRelayedAndIdentified(t *testing.T) {
	fb := testenv.StartFakeBroker(t, fakeBroker10)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(amqp10.HeaderSASL[:]); err != nil {
		t.Fatal(err)
	}
	var h [8]byte
	if _, err := io.ReadFull(c, h[:]); err != nil || h != amqp10.HeaderSASL {
		t.Fatalf("header back: %q, %v", h, err)
	}
	if f, err := amqp10.ReadFrame(c, 0); err != nil || f.Type != amqp10.TypeSASL {
		t.Fatalf("sasl-mechanisms: %v, %v", f, err)
	}
	initFrame := frame10(1, performative10(0x41, sym10("PLAIN"), bin10("\x00bob\x00pw-10-secret"), str10("localhost")))
	if _, err := c.Write(initFrame); err != nil {
		t.Fatal(err)
	}
	if f, err := amqp10.ReadFrame(c, 0); err != nil {
		t.Fatalf("sasl-outcome: %v", err)
	} else if o, err := amqp10.ParseSASLOutcome(f.Body); err != nil || o.Code != 0 {
		t.Fatalf("sasl-outcome %+v, %v", o, err)
	}
	// The AMQP header and open in one write, as clients pipeline them.
	open := frame10(0, performative10(0x10, str10("my-container"), str10("vhost:orders"), uint10(65536), ushort10(255), uint10(2000)))
	if _, err := c.Write(append(amqp10.HeaderAMQP[:], open...)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, h[:]); err != nil || h != amqp10.HeaderAMQP {
		t.Fatalf("AMQP header back: %q, %v", h, err)
	}
	if f, err := amqp10.ReadFrame(c, 0); err != nil {
		t.Fatalf("the broker's open: %v", err)
	} else if o, err := amqp10.ParseOpen(f.Body); err != nil || o.ContainerID != "rabbit@fake" {
		t.Fatalf("the broker's open: %+v, %v", o, err)
	}
	// The fake echoes what follows its open: first the client's own open.
	if f, err := amqp10.ReadFrame(c, 0); err != nil || !bytes.Equal(f.Raw, open) {
		t.Fatalf("the echoed open: %v, %v", f, err)
	}
	_ = c.SetDeadline(time.Time{})
	echoes(t, c, "transfer")
	sessions := fx.f.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(sessions))
	}
	want := Identity{Protocol: ProtoAMQP10, Mechanism: "PLAIN", User: "bob", VHost: "orders", ConnectionName: "my-container",
		ChannelMax: 255, FrameMax: 65536, Heartbeat: 2 * time.Second}
	if got := sessions[0].Identity; got != want {
		t.Fatalf("identity %+v, want %+v", got, want)
	}
	c.Close()
	testenv.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(fx.logs.String(), "protocol=amqp-1.0 user=bob vhost=orders connection_name=my-container") {
			return fmt.Errorf("no access-log line with the identity in:\n%s", fx.logs)
		}
		return nil
	})
	if strings.Contains(fx.logs.String(), "pw-10-secret") || strings.Contains(fmt.Sprint(fx.f.Sessions()), "pw-10-secret") {
		t.Error("the password reached the log or the session list")
	}
}

func TestProtocolsLimitWhatIsAccepted(t *testing.T) {
	fb := testenv.StartFakeBroker(t, fakeBroker10)
	only091 := start(t, FrontendOptions{Mode: ModeAMQP, Protocols: AMQP091}, Route{}, fb.Addr())
	only10 := start(t, FrontendOptions{Mode: ModeAMQP, Protocols: AMQP10}, Route{}, fb.Addr())
	for _, tc := range []struct {
		fx         *fixture
		hdr, reply []byte
	}{
		{only091, amqp10.HeaderSASL[:], testenv.AMQPHeader},
		{only10, testenv.AMQPHeader, amqp10.HeaderSASL[:]},
	} {
		c, err := net.Dial("tcp", tc.fx.addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(tc.hdr); err != nil {
			t.Fatal(err)
		}
		if got := expectClosed(t, c); !bytes.Equal(got, tc.reply) {
			t.Errorf("reply to %q = %q, want %q", tc.hdr, got, tc.reply)
		}
		c.Close()
	}
	if n := fb.Accepted(); n != 0 {
		t.Errorf("the broker saw %d connections, want 0", n)
	}
}

func TestMalformedSASLInitEndsAsBadHandshake(t *testing.T) {
	fb := testenv.StartFakeBroker(t, fakeBroker10)
	fx := start(t, FrontendOptions{Mode: ModeAMQP}, Route{}, fb.Addr())
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(amqp10.HeaderSASL[:]); err != nil {
		t.Fatal(err)
	}
	// A sasl-init whose mechanism is a string, not a symbol.
	if _, err := c.Write(frame10(1, performative10(0x41, str10("PLAIN")))); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	testenv.Eventually(t, 5*time.Second, func() error {
		if fx.f.Stats().Refused["bad_handshake"] != 1 {
			return fmt.Errorf("refused %v, log:\n%s", fx.f.Stats().Refused, fx.logs)
		}
		return nil
	})
}
