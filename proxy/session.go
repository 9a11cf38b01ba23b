package proxy

import (
	"bytes"
	"context"
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
	"golang.org/x/sys/unix"
)

// How a session ended, as written in the access log.
const (
	EndClientClosed   = "client_closed"
	EndServerClosed   = "server_closed"
	EndIdleTimeout    = "idle_timeout"
	EndServerDown     = "server_down"
	EndShutdown       = "shutdown"
	EndConnectFailed  = "connect_failed"
	EndRefusedMaxConn = "refused_maxconn" // logged at most once a second, with a count of the rest
	EndNoServer       = "no_server"
	EndBadHeader      = "bad_header"
	EndHandshake      = "handshake_timeout"
)

// amqpHeader is the protocol header of AMQP 0-9-1, the only protocol mode "amqp" accepts
// (RabbitMQ 4 also serves AMQP 1.0 on its port: use mode "tcp" for such clients).
var amqpHeader = [8]byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// session is one client connection and, once connected, its server connection.
type session struct {
	f      *Frontend
	set    *settings
	client *net.TCPConn
	start  time.Time

	route          *Route
	srv            atomic.Pointer[backend.Server]
	clientIP       netip.Addr
	skip           uint64            // bit i: Backend.Servers[i] failed for this session; the policy skips it
	tries          int               // dials made so far, against the route's 1 + Retries
	handshakeMoves int               // times the handshake moved to another server
	hs             *handshakeReaders // during the handshake only

	mu      sync.Mutex // guards upstream and aborted against abort from another goroutine
	up      *net.TCPConn
	aborted bool

	reason   atomic.Pointer[string] // first end reason set wins
	lastIO   atomic.Int64           // nanoseconds since start of the last byte moved
	halfShut atomic.Bool            // one direction has ended

	toServer, toClient atomic.Uint64
}

func newSession(f *Frontend, c *net.TCPConn) *session {
	return &session{f: f, set: f.set.Load(), client: c, start: time.Now()}
}

func (s *session) server() *backend.Server { return s.srv.Load() }

// setReason records why the session ended unless a reason was already recorded.
func (s *session) setReason(r string) { s.reason.CompareAndSwap(nil, &r) }

// abort ends the session now: both sockets are closed, which unblocks whatever it waits on.
func (s *session) abort(reason string) {
	s.setReason(reason)
	s.mu.Lock()
	s.aborted = true
	up := s.up
	s.mu.Unlock()
	_ = s.client.Close()
	if up != nil {
		_ = up.Close()
	}
}

// attach makes c the session's server connection, so abort reaches it; it fails (and closes c)
// if the session was aborted meanwhile.
func (s *session) attach(c *net.TCPConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		_ = c.Close()
		return false
	}
	s.up = c
	return true
}

// detach closes the server connection after a failed dial or handshake. The session no longer
// belongs to that server (CloseSessions must not abort it while it moves on).
func (s *session) detach() {
	s.mu.Lock()
	up := s.up
	s.up = nil
	s.srv.Store(nil)
	s.mu.Unlock()
	if up != nil {
		_ = up.Close()
	}
}

func (s *session) run() {
	defer s.f.done(s)
	defer s.finish()
	s.route = s.f.route.Load()
	setKeepAlive(s.client, s.route.KeepAlive)

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

// readHeader reads the client's 8-byte AMQP protocol header within the handshake timeout. A
// client that sends anything else gets the 0-9-1 header back (as the AMQP spec asks a server to
// do) and is closed; no broker ever sees it.
func (s *session) readHeader() ([]byte, bool) {
	var h [8]byte
	_ = s.client.SetReadDeadline(time.Now().Add(s.set.handshake))
	_, err := io.ReadFull(s.client, h[:])
	_ = s.client.SetReadDeadline(time.Time{})
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
		lingeringClose(s.client)
		s.setReason(EndBadHeader)
		s.f.countRefused(RefusedBadHeader)
		if ok, n := s.f.throttle.allow(); ok {
			s.set.log.Warn("connection refused: not an AMQP 0-9-1 client", "client", s.client.RemoteAddr(),
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
	if ap, err := netip.ParseAddrPort(s.client.RemoteAddr().String()); err == nil {
		s.clientIP = ap.Addr().Unmap()
	}
	var srv *backend.Server
	var lastErr error
	retriedSame := false
	for ; s.tries <= r.Retries; s.tries++ {
		if srv != nil && !srv.Acquire() {
			srv = nil // it filled up meanwhile
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
		if !s.failed(srv, lastErr, true) {
			return nil, false
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
				"client", s.client.RemoteAddr(), "suppressed", n)
		}
		return
	}
	s.setReason(EndConnectFailed)
	s.f.countRefused(RefusedConnectFailed)
	if ok, n := s.f.throttle.allow(); ok {
		s.set.log.Warn("connection failed: every attempt failed", "backend", r.Backend.Name,
			"client", s.client.RemoteAddr(), "err", lastErr, "suppressed", n)
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

// dial connects to srv, sends hello (the client's protocol header) and, in AMQP mode, waits for
// the broker's Connection.Start, all within the connect timeout.
func (s *session) dial(srv *backend.Server, hello []byte) ([]byte, error) {
	r := s.route
	timeout := r.connectTimeout()
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(s.f.hard, deadline)
	defer cancel()
	conn, err := srv.Dial(ctx, backend.DialOptions{Timeout: timeout, KeepAlive: r.KeepAlive})
	if err != nil {
		return nil, err
	}
	up, ok := conn.(*net.TCPConn)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("server %s: TLS to servers is not supported yet", srv.Name())
	}
	if !s.attach(up) {
		return nil, net.ErrClosed
	}
	s.srv.Store(srv)
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

// relay moves bytes both ways until both directions have ended or one failed.
func (s *session) relay() {
	srv := s.server()
	up := s.up
	toServer, err := newRelay(up, s.client, func(n int) {
		s.toServer.Add(uint64(n))
		srv.AddBytes(uint64(n), 0)
	})
	if err != nil {
		s.setReason(EndClientClosed)
		return
	}
	toClient, err := newRelay(s.client, up, func(n int) {
		s.toClient.Add(uint64(n))
		srv.AddBytes(0, uint64(n))
	})
	if err != nil {
		s.setReason(EndServerClosed)
		return
	}
	if idle := s.route.IdleTimeout; idle > 0 {
		d := time.Now().Add(idle)
		_ = s.client.SetReadDeadline(d)
		_ = up.SetReadDeadline(d)
		// A peer that stops reading (zero window) blocks writes, which read deadlines do not
		// cover; the kernel drops it after the same time.
		setUserTimeout(s.client, idle)
		setUserTimeout(up, idle)
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
func (s *session) pump(r *relay, srcGone, dstGone string) {
	for {
		n, err := r.step()
		if n > 0 {
			s.lastIO.Store(int64(time.Since(s.start)))
			r.count(int(n))
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.stillActive(r.src) {
				continue
			}
			s.abort(EndIdleTimeout)
			return
		case errors.Is(err, io.EOF):
			// Orderly close of src: pass the FIN on and let the other direction finish, within
			// the half-close bound.
			s.setReason(srcGone)
			_ = r.dst.CloseWrite()
			if s.halfShut.Swap(true) {
				return // both directions are done
			}
			// The other direction reads from what is dst here and writes to our src. Bound
			// both its waiting for data and its writing to a peer that stopped reading.
			limit := s.idleLimit()
			s.lastIO.Store(int64(time.Since(s.start)))
			_ = r.dst.SetReadDeadline(time.Now().Add(limit))
			setUserTimeout(r.src, limit)
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
func (s *session) stillActive(src *net.TCPConn) bool {
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

// finish closes both sockets and writes the access-log line.
func (s *session) finish() {
	_ = s.client.Close()
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	if up != nil {
		_ = up.Close()
		s.server().Release()
	}
	if !s.set.accessLog {
		return
	}
	reason := EndClientClosed
	if p := s.reason.Load(); p != nil {
		reason = *p
	}
	attrs := []slog.Attr{
		slog.String("client", s.client.RemoteAddr().String()),
		slog.String("backend", backendName(s.route)),
		slog.String("server", serverName(s.server())),
		slog.Duration("duration", time.Since(s.start)),
		slog.Uint64("bytes_to_server", s.toServer.Load()),
		slog.Uint64("bytes_to_client", s.toClient.Load()),
		slog.String("end", reason),
	}
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

// lingeringClose sends FIN and discards what the client still sends for a moment, so that
// closing a socket with unread input (an HTTP request, say) does not reset the connection before
// the client has read our reply. Bounded in time and bytes.
func lingeringClose(c *net.TCPConn) {
	_ = c.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// setUserTimeout sets TCP_USER_TIMEOUT: the kernel drops the connection when data it sent stays
// unacknowledged, or cannot be sent because the peer's window is closed, for longer than d.
func setUserTimeout(c *net.TCPConn, d time.Duration) {
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
