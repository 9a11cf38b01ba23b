package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/amqpwire"
	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"
)

// How a session ended, as written in the access log.
const (
	EndClientClosed   = "client_closed"
	EndServerClosed   = "server_closed"
	EndIdleTimeout    = "idle_timeout"
	EndServerDown     = "server_down"
	EndShutdown       = "shutdown"
	EndDrained        = "drained" // the admin API ended the server's sessions ("shutdown_sessions")
	EndConnectFailed  = "connect_failed"
	EndRefusedMaxConn = "refused_maxconn" // logged at most once a second, with a count of the rest
	EndNoServer       = "no_server"
	EndBadHeader      = "bad_header"
	EndHandshake      = "handshake_timeout"
	EndDenied         = "denied"        // a tcp-request rule rejected the client
	EndBadProxy       = "bad_proxy"     // the PROXY header was missing, malformed or late
	EndTLSHandshake   = "tls_handshake" // the TLS handshake failed or timed out
)

// amqpHeader is the protocol header of AMQP 0-9-1, the only protocol mode "amqp" accepts
// (RabbitMQ 4 also serves AMQP 1.0 on its port: use mode "tcp" for such clients).
var amqpHeader = [8]byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// session is one client connection and, once connected, its server connection.
type session struct {
	f     *Frontend
	set   *settings
	raw   *net.TCPConn // the accepted socket: socket options, and what abort closes
	start time.Time
	// client is what the session reads and writes: raw, or a *tls.Conn over it. It is set
	// before anything else runs and only changed by the session's own goroutine.
	client net.Conn
	// deadline bounds the steps before a broker is involved: the PROXY header, the TLS
	// handshake and the AMQP protocol header, together.
	deadline time.Time

	peer    netip.AddrPort // the socket's remote address
	from    netip.AddrPort // the client's address: peer, or the source of a PROXY header
	to      netip.AddrPort // the address the client connected to: local, or a PROXY header's
	proxied bool           // from and to come from a PROXY header
	pending []byte         // client bytes read with the PROXY header, not consumed yet
	heard   bool           // the client sent a byte that toServer may not count (DontLogNull)

	route          *Route
	srv            atomic.Pointer[backend.Server]
	clientIP       netip.Addr
	skip           uint64            // bit i: Backend.Servers[i] failed for this session; the policy skips it
	tries          int               // dials made so far, against the route's 1 + Retries
	handshakeMoves int               // times the handshake moved to another server
	hs             *handshakeReaders // during the handshake only

	mu      sync.Mutex // guards up, upRaw and aborted against abort from another goroutine
	up      net.Conn   // the server connection: a *net.TCPConn, or a *tls.Conn over upRaw
	upRaw   *net.TCPConn
	aborted bool

	reason   atomic.Pointer[string] // first end reason set wins
	lastIO   atomic.Int64           // nanoseconds since start of the last byte moved
	halfShut atomic.Bool            // one direction has ended

	toServer, toClient atomic.Uint64
}

func newSession(f *Frontend, st *settings, c *net.TCPConn) *session {
	s := &session{f: f, set: st, raw: c, client: c, start: time.Now()}
	s.deadline = s.start.Add(st.handshake)
	s.peer = addrPort(c.RemoteAddr())
	s.from = s.peer
	s.to = addrPort(c.LocalAddr())
	s.clientIP = s.from.Addr()
	return s
}

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

func (s *session) server() *backend.Server { return s.srv.Load() }

// setReason records why the session ended unless a reason was already recorded.
func (s *session) setReason(r string) { s.reason.CompareAndSwap(nil, &r) }

// abort ends the session now: both sockets are closed (a TLS connection without its
// close_notify), which unblocks whatever it waits on.
func (s *session) abort(reason string) {
	s.setReason(reason)
	s.mu.Lock()
	s.aborted = true
	upRaw := s.upRaw
	s.mu.Unlock()
	_ = s.raw.Close()
	if upRaw != nil {
		_ = upRaw.Close()
	}
}

// attach makes c the session's server connection, so abort reaches it; it fails (and closes c)
// if the session was aborted meanwhile.
func (s *session) attach(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		_ = c.Close()
		return false
	}
	s.up, s.upRaw = c, rawTCP(c)
	return true
}

// rawTCP returns the socket under c: c itself, or the connection of a *tls.Conn.
func rawTCP(c net.Conn) *net.TCPConn {
	switch c := c.(type) {
	case *net.TCPConn:
		return c
	case *tls.Conn:
		return rawTCP(c.NetConn())
	case *prefixConn:
		return rawTCP(c.Conn)
	}
	return nil
}

// detach closes the server connection after a failed dial or handshake. The session no longer
// belongs to that server (CloseSessions must not abort it while it moves on).
func (s *session) detach() {
	s.mu.Lock()
	up, upRaw := s.up, s.upRaw
	s.up, s.upRaw = nil, nil
	s.srv.Store(nil)
	s.mu.Unlock()
	closeConn(up, upRaw, true)
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

func (s *session) run() {
	defer s.f.done(s)
	defer s.finish()
	s.route = s.f.route.Load()
	setKeepAlive(s.raw, s.route.KeepAlive)

	if s.set.acceptProxy {
		if !s.readProxy() {
			return
		}
		if len(s.set.content) > 0 && rejected(s.set.content, s.from.Addr()) {
			s.deny()
			return
		}
	}
	if s.set.tls != nil && !s.handshakeTLS() {
		return
	}
	var hello []byte
	if s.set.mode == ModeAMQP {
		var ok bool
		if hello, ok = s.readHeader(); !ok {
			return
		}
	}
	start, ok := s.connect(hello)
	if !ok {
		return
	}
	if s.set.mode == ModeAMQP && !s.handshake(hello, start) {
		return
	}
	s.relay()
}

// proxyReadBuf is the size of the buffer a PROXY header is read through: a v1 header (at most
// 107 bytes) must arrive in one read. What the buffer holds beyond the header is kept in
// s.pending and passed on as the client's first bytes, so the sockets stay plain and the relay
// can still splice.
const proxyReadBuf = 512

// readProxy reads the PROXY protocol header (v1 or v2) within the handshake deadline and takes
// the client's address from it. A missing, malformed or late header ends the session.
func (s *session) readProxy() bool {
	br := bufio.NewReaderSize(s.raw, proxyReadBuf)
	_ = s.raw.SetReadDeadline(s.deadline)
	_, err := br.Peek(1)
	got := err == nil // the client sent something
	var src, dst netip.AddrPort
	if err == nil {
		src, dst, err = readProxyHeader(br)
	}
	_ = s.raw.SetReadDeadline(time.Time{})
	if err != nil {
		if s.isAborted() {
			return false
		}
		s.heard = s.heard || got
		s.setReason(EndBadProxy)
		s.f.countRefused(RefusedBadProxy)
		if !got && errors.Is(err, io.EOF) {
			err = errors.New("closed before sending a PROXY header")
		}
		if got || !s.set.dontLogNull {
			if ok, n := s.f.throttle.allow(); ok {
				s.set.log.Warn("connection refused: bad PROXY protocol header", "client", s.peer.String(),
					"err", err, "reason", RefusedBadProxy, "suppressed", n)
			}
		}
		return false
	}
	if n := br.Buffered(); n > 0 {
		s.pending, _ = br.Peek(n)
	}
	if src.IsValid() {
		s.from, s.proxied, s.clientIP = src, true, src.Addr()
		if dst.IsValid() {
			s.to = dst
		}
	}
	return true
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

// deny ends a session that a rule rejected on the PROXY header's source address.
func (s *session) deny() {
	s.setReason(EndDenied)
	s.f.countRefused(RefusedDenied)
	if ok, n := s.f.throttle.allow(); ok {
		s.set.log.Warn("connection refused: denied by a tcp-request rule", "client", s.from.String(),
			"via", s.peer.String(), "reason", RefusedDenied, "suppressed", n)
	}
}

// handshakeTLS terminates TLS: the handshake must end within the handshake deadline. Bytes read
// ahead with the PROXY header are the start of the client's TLS stream.
func (s *session) handshakeTLS() bool {
	pc := &prefixConn{Conn: s.raw, pre: s.pending}
	s.pending = nil
	tc := tls.Server(pc, s.set.tls)
	_ = s.raw.SetDeadline(s.deadline)
	err := tc.Handshake()
	_ = s.raw.SetDeadline(time.Time{})
	if err != nil {
		if s.isAborted() {
			return false
		}
		got := pc.n.Load() > 0
		s.heard = s.heard || got
		s.setReason(EndTLSHandshake)
		s.f.countRefused(RefusedTLSHandshake)
		if got || !s.set.dontLogNull {
			if ok, n := s.f.throttle.allow(); ok {
				s.set.log.Warn("connection refused: TLS handshake failed", "client", s.from.String(),
					"err", err, "reason", RefusedTLSHandshake, "suppressed", n)
			}
		}
		return false
	}
	s.client = tc
	return true
}

// prefixConn is a connection whose first bytes were already read: Read returns them first. It
// counts the bytes read.
type prefixConn struct {
	net.Conn
	pre []byte
	n   atomic.Int64
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		c.n.Add(int64(n))
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// clientReader reads the client: bytes read ahead with the PROXY header first.
type clientReader struct{ s *session }

func (r clientReader) Read(p []byte) (int, error) {
	if s := r.s; len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	return r.s.client.Read(p)
}

// readHeader reads the client's 8-byte AMQP protocol header within the handshake timeout. A
// client that sends anything else gets the 0-9-1 header back (as the AMQP spec asks a server to
// do) and is closed; no broker ever sees it.
func (s *session) readHeader() ([]byte, bool) {
	var h [8]byte
	_ = s.client.SetReadDeadline(s.deadline)
	n, err := io.ReadFull(clientReader{s}, h[:])
	_ = s.client.SetReadDeadline(time.Time{})
	s.heard = s.heard || n > 0
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.setReason(EndHandshake)
		s.f.countRefused(RefusedHandshakeTimeout)
		return nil, false
	case err != nil:
		// Closed before sending a full header: nothing to answer.
		s.setReason(EndBadHeader)
		s.f.countRefused(RefusedBadHeader)
		return nil, false
	case h != amqpHeader:
		_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = s.client.Write(amqpHeader[:])
		s.lingeringClose()
		s.setReason(EndBadHeader)
		s.f.countRefused(RefusedBadHeader)
		if ok, n := s.f.throttle.allow(); ok {
			s.set.log.Warn("connection refused: not an AMQP 0-9-1 client", "client", s.from.String(),
				"header", printable(h[:]), "reason", RefusedBadHeader, "suppressed", n)
		}
		return nil, false
	}
	return amqpHeader[:], true
}

// connect picks a server and dials it, retrying as the route says: the same server once more
// after a short pause (unless the dial timed out: a server that let a connect time out is likely
// hung, and retrying it would double the client's wait), then, with redispatch, other servers.
// In AMQP mode a dial only counts as successful once the broker has answered the protocol header
// with Connection.Start: a broker that accepts TCP but never speaks (frozen, booting, overloaded)
// is treated like a refused connect, so the client is sent elsewhere instead of hanging. start
// holds that frame.
func (s *session) connect(hello []byte) (start []byte, ok bool) {
	r := s.route
	var srv *backend.Server
	var lastErr error
	retriedSame := false
	for ; s.tries <= r.Retries; s.tries++ {
		if srv != nil && (srv.Admin() != backend.AdminReady || !srv.Acquire()) {
			srv = nil // drained, in maintenance or full since the first attempt
		}
		if srv == nil {
			if srv = s.pick(); srv == nil {
				break
			}
		}
		start, lastErr = s.dial(srv, hello)
		if lastErr == nil {
			s.tries++
			srv.Connected()
			return start, true
		}
		left := errors.Is(lastErr, errLeftRotation)
		if !s.failed(srv, lastErr, !left) {
			return nil, false
		}
		if left {
			s.skipServer(srv)
			srv = nil
			continue
		}
		var ne net.Error
		timedOut := errors.As(lastErr, &ne) && ne.Timeout()
		if !retriedSame && !timedOut || !r.Redispatch {
			retriedSame = true
			select {
			case <-time.After(retryPause):
			case <-s.f.hard.Done():
			}
			continue
		}
		s.skipServer(srv)
		srv = nil
	}
	s.srv.Store(srv)
	s.giveUp(lastErr)
	return nil, false
}

// failed handles a failed dial or handshake on srv: it releases the slot and, with report, tells
// the route (passive health detection). It returns false when the session must end instead of
// retrying (shutdown, or the session was aborted).
func (s *session) failed(srv *backend.Server, err error, report bool) bool {
	srv.Release()
	if s.f.hard.Err() != nil || s.isAborted() {
		s.setReason(EndShutdown)
		return false
	}
	if report && s.route.OnConnectFailure != nil {
		s.route.OnConnectFailure(srv, err)
	}
	s.set.log.Debug("connect failed", "backend", s.route.Backend.Name, "server", srv.Name(), "attempt", s.tries+1, "err", err)
	return true
}

// skipServer keeps srv out of this session's next picks.
func (s *session) skipServer(srv *backend.Server) {
	if i := indexOf(s.route.Backend.Servers, srv); i >= 0 && i < 64 {
		s.skip |= 1 << i
	}
}

// giveUp ends a session that found no server (lastErr nil) or whose every attempt failed.
func (s *session) giveUp(lastErr error) {
	r := s.route
	if lastErr == nil {
		s.setReason(EndNoServer)
		s.f.countRefused(RefusedNoServer)
		if ok, n := s.f.throttle.allow(); ok {
			s.set.log.Warn("connection refused: no server available", "backend", r.Backend.Name,
				"client", s.from.String(), "suppressed", n)
		}
		return
	}
	s.setReason(EndConnectFailed)
	s.f.countRefused(RefusedConnectFailed)
	if ok, n := s.f.throttle.allow(); ok {
		s.set.log.Warn("connection failed: every attempt failed", "backend", r.Backend.Name,
			"client", s.from.String(), "err", lastErr, "suppressed", n)
	}
}

// pick asks the policy for an eligible server not in s.skip and takes a slot on it. When every
// eligible server has been tried, it starts over with all of them.
func (s *session) pick() *backend.Server {
	servers := s.route.Backend.Servers
	for range 2 * len(servers) {
		srv := s.route.Policy.Pick(servers, s.clientIP, s.skip)
		if srv == nil && s.skip != 0 {
			s.skip = 0
			srv = s.route.Policy.Pick(servers, s.clientIP, 0)
		}
		if srv == nil {
			return nil
		}
		if srv.Acquire() {
			return srv
		}
		s.skipServer(srv) // lost the race for its last slot: try another
	}
	return nil
}

func indexOf(servers []*backend.Server, srv *backend.Server) int {
	for i, x := range servers {
		if x == srv {
			return i
		}
	}
	return -1
}

func (s *session) isAborted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

// dial connects to srv (the PROXY header and the TLS handshake included, when the server has
// them), sends hello (the client's protocol header) and, in AMQP mode, waits for the broker's
// Connection.Start, all within the connect timeout.
func (s *session) dial(srv *backend.Server, hello []byte) ([]byte, error) {
	r := s.route
	timeout := r.connectTimeout()
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(s.f.hard, deadline)
	defer cancel()
	up, err := srv.Dial(ctx, backend.DialOptions{Timeout: timeout, KeepAlive: r.KeepAlive, Source: s.from, Destination: s.to})
	if err != nil {
		return nil, err
	}
	if !s.attach(up) {
		return nil, net.ErrClosed
	}
	s.srv.Store(srv)
	if srv.Admin() != backend.AdminReady {
		// Drained or put in maintenance while this dial was under way; CloseSessions may have
		// looked for its sessions before this one was attached. Go elsewhere.
		s.detach()
		return nil, errLeftRotation
	}
	if len(hello) == 0 {
		return nil, nil
	}
	_ = up.SetDeadline(deadline)
	if _, err := up.Write(hello); err != nil {
		s.detach()
		return nil, &upstreamError{srv: srv, op: "send protocol header", err: err}
	}
	s.toServer.Add(uint64(len(hello)))
	srv.AddBytes(uint64(len(hello)), 0)
	f, err := readFrame(up, up, deadline)
	_ = up.SetDeadline(time.Time{})
	if err == nil && !f.is(amqpwire.MethodStart) {
		err = fmt.Errorf("got %s instead of Connection.Start", f)
	}
	if err != nil {
		s.detach()
		var he *amqpwire.HeaderError
		if errors.As(err, &he) {
			err = fmt.Errorf("not an AMQP 0-9-1 broker: it offered %s", he.Protocol())
		}
		return nil, &upstreamError{srv: srv, op: "wait for the broker's Connection.Start", err: err}
	}
	return f.raw, nil
}

// errLeftRotation fails a dial to a server that an operator drained or put in maintenance
// while the dial was under way.
var errLeftRotation = errors.New("the server was drained or put in maintenance during the connect")

// upstreamError is a failure after the TCP connect succeeded.
type upstreamError struct {
	srv *backend.Server
	op  string
	err error
}

func (e *upstreamError) Error() string {
	return "server " + e.srv.Name() + " (" + e.srv.Address() + "): " + e.op + ": " + e.err.Error()
}

func (e *upstreamError) Unwrap() error { return e.err }

// relay moves bytes both ways until both directions have ended or one failed. Client bytes
// read ahead and not passed on yet go first.
func (s *session) relay() {
	if b := s.pending; len(b) > 0 {
		s.pending = nil
		if !s.forwardToServer(b) {
			return
		}
	}
	srv := s.server()
	up, upRaw := s.up, s.upRaw
	toServer, err := newLeg(up, upRaw, s.client, s.raw, func(n int) {
		s.lastIO.Store(int64(time.Since(s.start)))
		s.toServer.Add(uint64(n))
		srv.AddBytes(uint64(n), 0)
	})
	if err != nil {
		s.setReason(EndClientClosed)
		return
	}
	defer toServer.release()
	toClient, err := newLeg(s.client, s.raw, up, upRaw, func(n int) {
		s.lastIO.Store(int64(time.Since(s.start)))
		s.toClient.Add(uint64(n))
		srv.AddBytes(0, uint64(n))
	})
	if err != nil {
		s.setReason(EndServerClosed)
		return
	}
	defer toClient.release()
	if idle := s.route.IdleTimeout; idle > 0 {
		d := time.Now().Add(idle)
		_ = s.client.SetReadDeadline(d)
		_ = up.SetReadDeadline(d)
		// A peer that stops reading (zero window) blocks writes, which read deadlines do not
		// cover; the kernel drops it after the same time.
		setUserTimeout(s.raw, idle)
		setUserTimeout(upRaw, idle)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.pump(toClient, EndServerClosed, EndClientClosed)
	}()
	s.pump(toServer, EndClientClosed, EndServerClosed)
	<-done
}

// pump runs one direction. srcGone and dstGone are the end reasons when src or dst closes or
// fails first.
func (s *session) pump(l *leg, srcGone, dstGone string) {
	for {
		err := l.mv.step()
		switch {
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.stillActive(l.src) {
				continue
			}
			s.abort(EndIdleTimeout)
			return
		case errors.Is(err, io.EOF):
			// Orderly close of src: pass the FIN (and a TLS close_notify) on and let the other
			// direction finish, within the half-close bound.
			s.setReason(srcGone)
			closeWrite(l.dst, l.dstRaw)
			if s.halfShut.Swap(true) {
				return // both directions are done
			}
			// The other direction reads from what is dst here and writes to our src. Bound
			// both its waiting for data and its writing to a peer that stopped reading.
			limit := s.idleLimit()
			s.lastIO.Store(int64(time.Since(s.start)))
			_ = l.dst.SetReadDeadline(time.Now().Add(limit))
			setUserTimeout(l.srcRaw, limit)
			return
		default:
			gone := srcGone
			var we *writeError
			if errors.As(err, &we) {
				gone = dstGone
			}
			s.abort(gone)
			return
		}
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

// idleLimit is how long the session may go without traffic: the route's idle timeout, or the
// half-close bound once one side has sent FIN, whichever is shorter.
func (s *session) idleLimit() time.Duration {
	limit := s.route.IdleTimeout
	if s.halfShut.Load() {
		if hc := s.route.halfCloseTimeout(); limit <= 0 || hc < limit {
			limit = hc
		}
	}
	return limit
}

// stillActive is called when src's read deadline passed. If bytes moved in either direction
// since, it moves the deadline on and reports true; otherwise the session is idle.
func (s *session) stillActive(src net.Conn) bool {
	limit := s.idleLimit()
	if limit <= 0 {
		_ = src.SetReadDeadline(time.Time{})
		return true
	}
	last := s.start.Add(time.Duration(s.lastIO.Load()))
	if expiry := last.Add(limit); time.Now().Before(expiry) {
		_ = src.SetReadDeadline(expiry)
		return true
	}
	return false
}

// finish closes both connections and writes the access-log line. A TLS connection that was not
// aborted gets its close_notify, unless it already had it.
func (s *session) finish() {
	s.mu.Lock()
	up, upRaw, aborted := s.up, s.upRaw, s.aborted
	s.mu.Unlock()
	closeConn(s.client, s.raw, aborted)
	if up != nil {
		closeConn(up, upRaw, aborted)
		s.server().Release()
	}
	if !s.set.accessLog || s.set.dontLogNull && !s.heard && s.toServer.Load() == 0 {
		return
	}
	reason := EndClientClosed
	if p := s.reason.Load(); p != nil {
		reason = *p
	}
	attrs := make([]slog.Attr, 0, 8)
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
		slog.String("end", reason),
	)
	s.set.log.LogAttrs(context.Background(), slog.LevelInfo, "session", attrs...)
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
		_ = c.SetKeepAlive(false)
		return
	}
	_ = c.SetKeepAlive(true)
	if period > 0 {
		_ = c.SetKeepAlivePeriod(period)
	}
}

// lingeringClose sends FIN (after a TLS close_notify) and discards what the client still sends
// for a moment, so that closing a socket with unread input (an HTTP request, say) does not reset
// the connection before the client has read our reply. Bounded in time and bytes.
func (s *session) lingeringClose() {
	closeWrite(s.client, s.raw)
	_ = s.client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(clientReader{s}, 64<<10))
}

// setUserTimeout sets TCP_USER_TIMEOUT: the kernel drops the connection when data it sent stays
// unacknowledged, or cannot be sent because the peer's window is closed, for longer than d.
func setUserTimeout(c *net.TCPConn, d time.Duration) {
	if c == nil {
		return
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
	})
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
