package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/amqp10"
	"github.com/pires/go-proxyproto"
)

// amqpHeader is the protocol header of AMQP 0-9-1. Mode "amqp" also accepts AMQP 1.0's SASL
// header (amqp10.HeaderSASL), which RabbitMQ 4 serves on the same port.
var amqpHeader = [8]byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// session is one client connection and, once connected, its server connection. Its goroutine
// runs the stages in order (run); each stage either succeeds or returns the *endError that ends
// the session, which run records, counts and logs once.
type session struct {
	id    uint64 // unique in the process
	f     *Frontend
	set   *settings
	raw   *net.TCPConn // the accepted socket: socket options, and what abort closes
	start time.Time
	// client is what the session writes to the client: raw, or a *tls.Conn over it. in reads
	// the client through a buffer until the relay starts, which drops it. Both are set before
	// anything else runs and only changed by the session's own goroutine, and client, once
	// the relay runs, under mu by parking (bare, dress).
	client net.Conn
	in     *bufConn
	// deadline bounds the steps before a broker is involved: the PROXY header, the TLS
	// handshake and the AMQP protocol header, together.
	deadline time.Time

	// The addresses. readProxy changes from, to and proxied under mu; other goroutines (info)
	// read them under mu.
	peer    netip.AddrPort // the socket's remote address
	from    netip.AddrPort // the client's address: peer, or the source of a PROXY header
	to      netip.AddrPort // the address the client connected to: local, or a PROXY header's
	proxied bool           // from and to come from a PROXY header
	heard   bool           // the client sent a byte that toServer may not count (DontLogNull)

	route          *Route // the frontend's route when the session was admitted, or its SNI route's (changed under mu)
	srv            atomic.Pointer[backend.Server]
	ident          atomic.Pointer[Identity] // copied on write (learn)
	skip           uint64                   // bit i: Backend.Servers[i] failed for this session; the policy skips it
	tries          int                      // dials made so far, against the route's 1 + Retries
	handshakeMoves int                      // times the handshake moved to another server

	mu      sync.Mutex // guards up, upRaw, aborted, and raw and client once parking may replace them (park.go)
	up      net.Conn   // the server connection: a *net.TCPConn, or a *tls.Conn over upRaw
	upRaw   *net.TCPConn
	upIn    *bufConn // reads up through a buffer until the relay starts, which drops it
	aborted bool
	// upLocal is up's local address (the sessions API's; up may be closed while parked).
	upLocal netip.AddrPort

	reason atomic.Int32 // 1 + the Reason recorded first; 0 while none is
	// Nanoseconds since start of the last byte moved from the client, and from the server.
	lastFromClient, lastFromServer atomic.Int64
	halfShut                       atomic.Bool   // one direction has ended
	idle                           time.Duration // the idle timeout of the relay (0 = none), set before it starts
	idleEnd                        Reason        // the end reason when idle expires
	// perDirection: each direction must carry something within idle (0-9-1 heartbeats).
	perDirection bool

	toServer, toClient atomic.Uint64

	// A graceful close (closeGracefully): the request, and whether the relay runs (its
	// directions can be woken). fallback, the timer that aborts the session if the close does
	// not end it, and finished are guarded by mu.
	closeReq atomic.Pointer[gracefulClose]
	relaying atomic.Bool
	fallback *time.Timer
	finished bool

	// The relay's directions (0: client to server, 1: server to client), set before relaying
	// and dropped while the session is parked, how each last returned, which run and how many.
	// The frame trackers outlive the legs. parkState and parkedBy (under mu) say whether the
	// session is parked, and pending holds what a parked direction could not write (park.go).
	legs       [2]*leg
	tracks     [2]*frameTracker
	legEnds    [2]legEnd // under mu
	legRunning [2]bool   // under mu
	legsLeft   atomic.Int32
	parkState  atomic.Int32
	parkReqAt  time.Time // when the sweeper asked to park (under mu)
	parkedBy   *parker
	pending    [2][]byte
	// fds are the client's and the server's socket while the session is parked: bare file
	// descriptors in the poll set, in place of the Go connections (see bare in park.go).
	// wakeRetry: a wake-up could not give it Go connections back; the sweeper tries again.
	fds       [2]int32
	wakeRetry bool
}

// sessionIDs numbers the sessions of the process.
var sessionIDs atomic.Uint64

func newSession(f *Frontend, st *settings, c *net.TCPConn) *session {
	s := &session{id: sessionIDs.Add(1), f: f, set: st, raw: c, client: c, in: newBufConn(c), start: time.Now(),
		route: f.route.Load()}
	s.deadline = s.start.Add(st.handshake)
	s.peer = addrPort(c.RemoteAddr())
	s.from = s.peer
	s.to = addrPort(c.LocalAddr())
	return s
}

// run is the life of a session: the stages in order, then the end. Once the relay runs, its
// directions own the session and the last one ends it (legsDone).
func (s *session) run() {
	err := s.serve()
	if err == errHandedOff {
		return
	}
	if err != nil {
		s.fail(err)
	}
	s.finish()
	s.f.done(s)
}

// serve runs the stages: the PROXY header and the content rules, TLS, the AMQP protocol header,
// a server (picked, dialed, retried), the AMQP handshake, and the relay.
func (s *session) serve() error {
	if s.set.acceptProxy {
		if err := s.readProxy(); err != nil {
			return err
		}
		if len(s.set.content) > 0 && rejected(s.set.content, s.from.Addr()) {
			return refused(EndDenied, "connection refused: denied by a tcp-request rule", nil)
		}
	}
	if len(s.set.sni) > 0 && s.set.tls == nil {
		s.routeBySNI()
	}
	setKeepAlive(s.raw, s.route.KeepAlive) // the route's: an SNI route's backend may differ
	if len(s.route.Rules) > 0 && rejected(s.route.Rules, s.from.Addr()) {
		return refused(EndDenied, "connection refused: denied by a tcp-request rule of the backend", nil)
	}
	if s.set.tls != nil {
		if err := s.handshakeTLS(); err != nil {
			return err
		}
	}
	var hello []byte
	if s.set.mode == ModeAMQP {
		var err error
		if hello, err = s.readHeader(); err != nil {
			return err
		}
	}
	start, err := s.acquireUpstream(hello, nil, nil)
	if err != nil {
		return err
	}
	switch {
	case s.set.mode != ModeAMQP:
	case s.identity().Protocol == ProtoAMQP10:
		if err := s.handshake10(start); err != nil {
			return err
		}
	default:
		if err := s.handshake(hello, start); err != nil {
			return err
		}
	}
	return s.relay()
}

// fail records the reason err carries (unless another was recorded first: an abort's) and, if
// it is a refusal, counts it and logs its warning, at most once a second per frontend.
func (s *session) fail(err error) {
	e, r := reasonOf(err)
	if !s.end(r) || e == nil {
		return // aborted meanwhile: the abort's reason stands, and nothing was refused
	}
	label, isRefusal := r.Refusal()
	if !isRefusal {
		return
	}
	s.f.countRefused(r)
	if e.warn == "" || e.quietIfNull && !s.heard && s.set.dontLogNull {
		return
	}
	if ok, n := s.f.throttle.allow(); ok {
		attrs := make([]any, 0, 12+len(e.attrs))
		if r == EndNoServer || r == EndConnectFailed {
			attrs = append(attrs, "backend", backendName(s.route))
		}
		attrs = append(attrs, "client", s.from.String())
		if s.proxied {
			attrs = append(attrs, "via", s.peer.String())
		}
		if e.cause != nil {
			attrs = append(attrs, "err", e.cause)
		}
		attrs = append(attrs, e.attrs...)
		attrs = append(attrs, "reason", label, "suppressed", n)
		s.set.log.Warn(e.warn, attrs...)
	}
}

// end records r as the reason the session ended unless one was recorded before; it reports
// whether r was recorded.
func (s *session) end(r Reason) bool { return s.reason.CompareAndSwap(0, int32(r)+1) }

// endReason returns the recorded reason, EndClientClosed if none was.
func (s *session) endReason() Reason {
	if r := s.reason.Load(); r > 0 {
		return Reason(r - 1)
	}
	return EndClientClosed
}

// abort ends the session now, from any goroutine: both sockets are closed (a TLS connection
// without its close_notify), which unblocks whatever the session waits on.
func (s *session) abort(reason Reason) {
	s.end(reason)
	s.mu.Lock()
	s.aborted = true
	again := s.wakeLocked(reason) // a parked session's sockets leave the poll set before they close
	raw, upRaw := s.raw, s.upRaw
	s.mu.Unlock()
	if raw != nil { // nil if it was parked and could not be resumed (unparkLocked)
		_ = raw.Close()
	}
	if upRaw != nil {
		_ = upRaw.Close()
	}
	s.runLegs(again)
}

func (s *session) isAborted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

func (s *session) server() *backend.Server { return s.srv.Load() }

// addrPort converts a TCP address to a netip.AddrPort, IPv4-mapped IPv6 addresses unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		if a == nil {
			return ap
		}
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// readProxy reads the PROXY protocol header (v1 or v2) within the handshake deadline and takes
// the client's address from it. A missing, malformed or late header ends the session. What the
// client sent after the header stays in s.in for the next stage.
func (s *session) readProxy() error {
	br := s.in.reader()
	_ = s.raw.SetReadDeadline(s.deadline)
	_, err := br.Peek(1)
	got := err == nil // the client sent something
	var src, dst netip.AddrPort
	if err == nil {
		src, dst, err = readProxyHeader(br)
	}
	_ = s.raw.SetReadDeadline(time.Time{})
	if err != nil {
		s.heard = s.heard || got
		if !got && errors.Is(err, io.EOF) {
			err = errors.New("closed before sending a PROXY header")
		}
		return refused(EndBadProxy, "connection refused: bad PROXY protocol header", err).quiet()
	}
	if src.IsValid() {
		s.mu.Lock()
		s.from, s.proxied = src, true
		if dst.IsValid() {
			s.to = dst
		}
		s.mu.Unlock()
	}
	return nil
}

// readProxyHeader reads a PROXY protocol header (v1 or v2) from br, leaving what follows it
// there, and returns the client's address and the one it connected to. They are not valid when
// the header names no IP addresses: a LOCAL header (v2; v1's UNKNOWN) is the upstream balancer's
// own connection (a health check, say), whose peer address is the client's.
func readProxyHeader(br *bufio.Reader) (src, dst netip.AddrPort, err error) {
	h, err := proxyproto.Read(br)
	if err != nil {
		return src, dst, err
	}
	if h.Command.IsLocal() {
		return src, dst, nil
	}
	src, dst = addrPort(h.SourceAddr), addrPort(h.DestinationAddr)
	if !src.IsValid() || !dst.IsValid() {
		return netip.AddrPort{}, netip.AddrPort{}, nil
	}
	return src, dst, nil
}

// handshakeTLS terminates TLS: the handshake must end within the handshake deadline. Bytes read
// ahead with the PROXY header are the start of the client's TLS stream. From then on the client
// is read through TLS, and s.in buffers the TLS stream's plain text.
func (s *session) handshakeTLS() error {
	before := s.in.read() // a PROXY header does not count as the client saying anything
	s.in.passThrough()
	tc := tls.Server(s.in, s.set.tls)
	_ = s.raw.SetDeadline(s.deadline)
	err := tc.Handshake()
	_ = s.raw.SetDeadline(time.Time{})
	if err != nil {
		s.heard = s.heard || s.in.read() > before
		return refused(EndTLSHandshake, "connection refused: TLS handshake failed", err).quiet()
	}
	s.client, s.in = tc, newBufConn(tc)
	return nil
}

// readHeader reads the client's 8-byte AMQP protocol header within the handshake timeout: AMQP
// 0-9-1's, or AMQP 1.0's SASL header, as the frontend's protocols allow. A client that sends
// anything else gets back the header of a protocol amqplb serves (as the AMQP specs ask a server
// to do) and is closed; no broker ever sees it. So is an AMQP 1.0 client without SASL, which
// RabbitMQ refuses the same way.
func (s *session) readHeader() ([]byte, error) {
	var h [8]byte
	_ = s.in.SetReadDeadline(s.deadline) // left set: the next step sets its own (bufConn)
	n, err := io.ReadFull(s.in, h[:])
	s.heard = s.heard || n > 0
	protos := s.set.protocols
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, ended(EndHandshake, err)
	case err != nil:
		// Closed before sending a full header: nothing to answer.
		return nil, ended(EndBadHeader, err)
	case h == amqpHeader && protos&AMQP091 != 0:
		s.learn(func(id *Identity) { id.Protocol = ProtoAMQP091 })
		return amqpHeader[:], nil
	case h == amqp10.HeaderSASL && protos&AMQP10 != 0:
		s.learn(func(id *Identity) { id.Protocol = ProtoAMQP10 })
		return amqp10.HeaderSASL[:], nil
	}
	answer, msg := amqpHeader[:], "connection refused: not an AMQP 0-9-1 client"
	switch {
	case protos&AMQP091 == 0:
		answer, msg = amqp10.HeaderSASL[:], "connection refused: not an AMQP 1.0 client"
	case h == amqp10.HeaderAMQP && protos&AMQP10 != 0:
		answer, msg = amqp10.HeaderSASL[:], "connection refused: AMQP 1.0 without SASL"
	case protos&AMQP10 != 0:
		msg = "connection refused: not an AMQP client"
	}
	_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.client.Write(answer)
	s.lingeringClose()
	return nil, refused(EndBadHeader, msg, nil, "header", printable(h[:]))
}

// forwardToServer writes b to the current server; a failure ends the session.
func (s *session) forwardToServer(b []byte) error {
	if _, err := s.up.Write(b); err != nil {
		return ended(EndServerClosed, err)
	}
	s.countToServer(len(b))
	return nil
}

// forwardToClient writes b to the client; a failure ends the session.
func (s *session) forwardToClient(b []byte) error {
	if _, err := s.client.Write(b); err != nil {
		return ended(EndClientClosed, err)
	}
	s.countToClient(len(b))
	return nil
}

func (s *session) countToServer(n int) {
	s.toServer.Add(uint64(n))
	s.server().AddBytes(uint64(n), 0)
}

func (s *session) countToClient(n int) {
	s.toClient.Add(uint64(n))
	s.server().AddBytes(0, uint64(n))
}

// finish closes both connections and writes the access-log line. A TLS connection that was not
// aborted gets its close_notify, unless it already had it.
func (s *session) finish() {
	s.mu.Lock()
	up, upRaw, aborted := s.up, s.upRaw, s.aborted
	s.finished = true
	if s.fallback != nil {
		s.fallback.Stop()
	}
	s.mu.Unlock()
	if s.in != nil { // nil once the relay started
		s.in.free()
	}
	if s.upIn != nil {
		s.upIn.free()
	}
	closeConn(s.client, s.raw, aborted)
	if up != nil {
		closeConn(up, upRaw, aborted)
		s.server().Release()
	}
	if !s.set.accessLog || s.set.dontLogNull && !s.heard && s.toServer.Load() == 0 {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs, slog.String("client", s.from.String()))
	if s.proxied {
		attrs = append(attrs, slog.String("via", s.peer.String()))
	}
	attrs = append(attrs,
		slog.String("backend", backendName(s.route)),
		slog.String("server", serverName(s.server())),
		slog.Duration("duration", time.Since(s.start)),
		slog.Uint64("bytes_to_server", s.toServer.Load()),
		slog.Uint64("bytes_to_client", s.toClient.Load()),
		slog.String("end", s.endReason().String()),
	)
	if id := s.identity(); id.Protocol != "" {
		attrs = append(attrs,
			slog.String("protocol", id.Protocol),
			slog.String("user", id.User),
			slog.String("vhost", id.VHost),
			slog.String("connection_name", id.ConnectionName),
			slog.String("client_product", id.ClientProduct),
			slog.Duration("heartbeat", id.Heartbeat),
		)
		if id.CloseCode != 0 {
			attrs = append(attrs, slog.Int("close_code", int(id.CloseCode)))
		}
	}
	s.set.log.LogAttrs(context.Background(), slog.LevelInfo, "session", attrs...)
}

// closeConn closes c. Abruptly, or when c is not TLS, it closes the socket; otherwise it closes
// the TLS connection, which sends close_notify first if that was not done yet.
func closeConn(c net.Conn, raw *net.TCPConn, abrupt bool) {
	switch {
	case abrupt && raw != nil:
		_ = raw.Close()
	case c != nil:
		_ = c.Close()
	}
}

// closeWrite ends the sending side of c: a TLS close_notify, then a FIN on the socket.
func closeWrite(c net.Conn, raw *net.TCPConn) {
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	if raw != nil {
		_ = raw.CloseWrite()
	}
}

func backendName(r *Route) string {
	if r == nil || r.Backend == nil {
		return ""
	}
	return r.Backend.Name
}

func serverName(s *backend.Server) string {
	if s == nil {
		return ""
	}
	return s.Name()
}

func setKeepAlive(c *net.TCPConn, period time.Duration) {
	if period < 0 {
		return // the listener enables none
	}
	_ = c.SetKeepAliveConfig(backend.KeepAliveConfig(period))
}

// lingeringClose sends FIN (after a TLS close_notify) and discards what the client still sends
// for a moment, so that closing a socket with unread input (an HTTP request, say) does not reset
// the connection before the client has read our reply. Bounded in time and bytes.
func (s *session) lingeringClose() {
	closeWrite(s.client, s.raw)
	_ = s.client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(s.in, 64<<10))
}

// printable renders a protocol header for a log line.
func printable(b []byte) string {
	return string(bytes.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '.'
		}
		return r
	}, b))
}
