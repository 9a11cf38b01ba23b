package proxy

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// peekServerName reads the server name of a real ClientHello (crypto/tls's client) without
// consuming it, and nothing from bytes that are not TLS.
func TestPeekServerName(t *testing.T) {
	for _, name := range []string{"rabbit.example.com", ""} {
		c1, c2 := net.Pipe()
		go func() {
			_ = tls.Client(c1, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
		}()
		b := newBufConn(c2)
		_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, ok := peekServerName(b)
		if ok != (name != "") || got != name {
			t.Errorf("peekServerName = %q, %v; want %q", got, ok, name)
		}
		// Nothing was consumed: the record is still there to pass on.
		if p, err := b.reader().Peek(1); err != nil || p[0] != 0x16 {
			t.Errorf("after the peek: %v %v", p, err)
		}
		c1.Close()
		c2.Close()
	}
	c1, c2 := net.Pipe()
	go func() { _, _ = c1.Write([]byte("AMQP\x00\x00\x09\x01")) }()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, ok := peekServerName(newBufConn(c2)); ok {
		t.Errorf("an AMQP header gave server name %q", got)
	}
	c1.Close()
	c2.Close()
}

func TestSNIRouteMatches(t *testing.T) {
	r := SNIRoute{Names: []string{"Rabbit.Example.com"}, Suffixes: []string{".internal"}, Prefixes: []string{"stream-"}}
	for sn, want := range map[string]bool{"rabbit.example.com": true, "a.internal": true, "stream-1.x": true,
		"rabbit.example.org": false, "internal": false, "": false} {
		if r.matches(sn) != want {
			t.Errorf("matches(%q) = %v", sn, !want)
		}
	}
}
