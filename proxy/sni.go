package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"time"
)

// SNIRoute sends the sessions whose TLS ClientHello names a matching server to another backend
// than the frontend's, without terminating TLS: the ClientHello is read ahead, and every byte
// still reaches the broker (HAProxy's use_backend B if { req_ssl_sni … }).
type SNIRoute struct {
	// Names match the server name exactly; Suffixes and Prefixes match its end and start.
	// All compare case-insensitively (ASCII), as HAProxy's -i.
	Names, Suffixes, Prefixes []string
	// Backend names the backend to route to, among Route.Others.
	Backend string
}

// matches reports whether the server name sn (lower case) is one the route takes.
func (r SNIRoute) matches(sn string) bool {
	for _, n := range r.Names {
		if strings.EqualFold(n, sn) {
			return true
		}
	}
	for _, n := range r.Suffixes {
		if len(sn) >= len(n) && strings.EqualFold(sn[len(sn)-len(n):], n) {
			return true
		}
	}
	for _, n := range r.Prefixes {
		if len(sn) >= len(n) && strings.EqualFold(sn[:len(n)], n) {
			return true
		}
	}
	return false
}

// maxHelloPeek is the most of a ClientHello the session reads ahead: the read-ahead buffer
// (bufSize). Hellos are about 0.5 to 2 KiB; a longer one is routed to the default backend.
const maxHelloPeek = bufSize

// errHelloRead stops the TLS server that parses a peeked ClientHello, once it has it.
var errHelloRead = errors.New("client hello read")

// routeBySNI reads the client's TLS ClientHello ahead (within the handshake deadline and
// inspect, whichever comes first) and, when its server name matches one of the frontend's SNI
// routes, moves the session to that route's backend. A client that sends no ClientHello, or
// one amqplb cannot read, stays on the frontend's backend: its bytes are untouched either way.
func (s *session) routeBySNI() {
	deadline := s.deadline
	if d := s.set.inspectDelay; d > 0 && time.Now().Add(d).Before(deadline) {
		deadline = time.Now().Add(d)
	}
	_ = s.in.SetReadDeadline(deadline)
	defer func() { _ = s.in.SetReadDeadline(time.Time{}) }()
	sn, ok := peekServerName(s.in)
	if !ok {
		return
	}
	for _, r := range s.set.sni {
		if r.matches(sn) {
			if to := s.route.Others[r.Backend]; to != nil {
				s.mu.Lock() // info reads it from other goroutines
				s.route = to
				s.mu.Unlock()
			}
			return
		}
	}
}

// peekServerName reads the TLS records of a ClientHello ahead in b (without consuming them) and
// returns the server name it asks for.
func peekServerName(b *bufConn) (string, bool) {
	br := b.reader()
	hdr, err := br.Peek(5)
	if err != nil || hdr[0] != 0x16 { // not a TLS handshake record
		return "", false
	}
	n := 5 + (int(hdr[3])<<8 | int(hdr[4]))
	if n > maxHelloPeek {
		return "", false
	}
	record, err := br.Peek(n)
	if err != nil {
		return "", false
	}
	// crypto/tls reads the ClientHello (one record here), and stops at GetConfigForClient.
	var name string
	found := false
	conn := &helloConn{r: record}
	_ = tls.Server(conn, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, found = h.ServerName, true
		return nil, errHelloRead
	}}).Handshake()
	return name, found && name != ""
}

// helloConn is a net.Conn that reads a peeked ClientHello and discards what is written to it
// (the alert a stopped handshake sends).
type helloConn struct {
	net.Conn // nil: only the methods below are called
	r        []byte
}

func (c *helloConn) Read(p []byte) (int, error) {
	if len(c.r) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.r)
	c.r = c.r[n:]
	return n, nil
}

func (c *helloConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *helloConn) Close() error                     { return nil }
func (c *helloConn) SetDeadline(time.Time) error      { return nil }
func (c *helloConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloConn) SetWriteDeadline(time.Time) error { return nil }
func (c *helloConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *helloConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
