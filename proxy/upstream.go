package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/amqp10"
	"github.com/amqplb/amqplb/internal/amqpwire"
)

// acquireUpstream gives the session a server connection: it picks a server, dials it and, in
// AMQP mode, waits for its Connection.Start, retrying as the route says. A failed dial is tried
// once more on the same server after a short pause (unless it timed out: a server that let a
// connect time out is likely hung, and retrying it would double the client's wait), then, with
// redispatch, on other servers, up to 1 + Retries dials in the session's whole life.
//
// A broker that accepts TCP but never speaks (frozen, booting, overloaded) counts as a failed
// dial, so the client is sent elsewhere instead of hanging; such failures are reported to the
// route (passive health detection).
//
// With replay (a failover in the middle of the AMQP handshake; see handshake), only servers the
// session has not tried are dialed, and replay runs on the new connection: its failure ends the
// session at once. start is the broker's Connection.Start, in AMQP mode.
//
// When no server is left, the session ends as no_server (none could be picked) or
// connect_failed; the client gets the last broker's Connection.Close if it refused. cause, for
// a failover, is the failure that started it: the last error until another one comes.
func (s *session) acquireUpstream(hello []byte, replay func() error, cause error) (start []byte, err error) {
	r := s.route
	var srv *backend.Server
	lastErr := cause
	retriedSame := replay != nil // a failover goes to other servers only
	for ; s.tries <= r.Retries; s.tries++ {
		if srv != nil && (srv.Admin() != backend.AdminReady || !srv.Acquire()) {
			srv = nil // drained, in maintenance or full since the last attempt
		}
		if srv == nil {
			if srv = s.pick(replay == nil); srv == nil {
				break
			}
		}
		start, lastErr = s.dial(srv, hello)
		if lastErr == nil && replay != nil {
			if lastErr = replay(); lastErr != nil {
				s.detach()
				if err := s.release(srv, lastErr, false); err != nil {
					return nil, err
				}
				return nil, s.noUpstream(lastErr)
			}
		}
		if lastErr == nil {
			s.tries++
			srv.Connected()
			return start, nil
		}
		// The dial and the broker's Start involve no client bytes: a failure is the server's,
		// unless an operator took it out of rotation meanwhile, or it does not speak the
		// client's protocol (AMQP 1.0 on a RabbitMQ 3 without rabbitmq_amqp1_0): no client may
		// eject a broker by speaking something it was not asked to serve.
		var mismatch *protocolMismatch
		left := errors.Is(lastErr, errLeftRotation) || errors.As(lastErr, &mismatch)
		if err := s.release(srv, lastErr, !left); err != nil {
			return nil, err
		}
		var ne net.Error
		timedOut := errors.As(lastErr, &ne) && ne.Timeout()
		if !left && (!retriedSame && !timedOut || !r.Redispatch) {
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
	s.srv.Store(srv) // for the access log
	return nil, s.noUpstream(lastErr)
}

// noUpstream ends a session that found no server (lastErr nil) or whose every attempt failed.
// If the last broker refused with Connection.Close, the client gets that answer (403, 530, ...)
// rather than a bare close.
func (s *session) noUpstream(lastErr error) error {
	if lastErr == nil {
		return refused(EndNoServer, "connection refused: no server available", nil)
	}
	var closed *brokerClosed
	var mismatch *protocolMismatch
	switch {
	case errors.As(lastErr, &closed):
		// Learned here, not when a broker refused: a refusal that a failover got past is not
		// the session's end. Before the write: a client that has the Close finds its code in
		// the session list.
		code, _ := closeReason(closed.close)
		s.learn(func(id *Identity) { id.CloseCode = code })
		_, _ = s.client.Write(closed.close.raw)
		s.lingeringClose()
	case errors.As(lastErr, &mismatch) && bytes.HasPrefix(mismatch.header[:], []byte("AMQP")):
		// What the broker would have answered the client itself.
		_, _ = s.client.Write(mismatch.header[:])
		s.lingeringClose()
	}
	return refused(EndConnectFailed, "connection failed: every attempt failed", lastErr)
}

// release gives back srv's slot after a failed dial or handshake and, with report, tells the
// route (passive health detection). It returns the error that ends the session when it must
// end instead of trying again (shutdown, or the session was aborted).
func (s *session) release(srv *backend.Server, err error, report bool) error {
	srv.Release()
	if s.f.hard.Err() != nil || s.isAborted() {
		return ended(EndShutdown, err)
	}
	if report && s.route.OnConnectFailure != nil {
		s.route.OnConnectFailure(srv, err)
	}
	s.set.log.Debug("connect failed", "backend", s.route.Backend.Name, "server", srv.Name(), "attempt", s.tries+1, "err", err)
	return nil
}

// pick asks the policy for an eligible server not in s.skip and takes a slot on it. When every
// eligible server has been tried, it starts over with all of them if again allows (not in a
// failover, which must not log in twice where a login just failed).
func (s *session) pick(again bool) *backend.Server {
	servers := s.route.Backend.Servers
	for range 2 * len(servers) {
		srv := s.route.Policy.Pick(servers, s.from.Addr(), s.skip)
		if srv == nil && s.skip != 0 && again {
			s.skip = 0
			srv = s.route.Policy.Pick(servers, s.from.Addr(), 0)
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

// skipServer keeps srv out of this session's next picks.
func (s *session) skipServer(srv *backend.Server) {
	for i, x := range s.route.Backend.Servers {
		if x == srv {
			if i < 64 {
				s.skip |= 1 << i
			}
			return
		}
	}
}

// dial connects to srv (the PROXY header and the TLS handshake included, when the server has
// them), sends hello (the client's protocol header) and, in AMQP mode, waits for the broker's
// Connection.Start (for an AMQP 1.0 client, the broker's SASL header), all within the connect
// timeout. It returns that frame (or header).
func (s *session) dial(srv *backend.Server, hello []byte) ([]byte, error) {
	r := s.route
	timeout := r.connectTimeout()
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(s.f.hard, deadline)
	defer cancel()
	// ctx carries the deadline (no second one in Dial).
	up, err := srv.Dial(ctx, backend.DialOptions{KeepAlive: r.KeepAlive, Source: s.from, Destination: s.to})
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
	// The protocol header fits the empty send buffer of a new connection: its write cannot
	// block, and needs no deadline. The read deadline stays until the relay starts
	// (bufConn.SetReadDeadline).
	_ = s.upIn.SetReadDeadline(deadline)
	if _, err := up.Write(hello); err != nil {
		s.detach()
		return nil, &upstreamError{srv: srv, op: "send protocol header", err: err}
	}
	s.countToServer(len(hello))
	if hello[4] != 0 { // AMQP 1.0: the broker answers with the same header
		var h [amqp10.HeaderLen]byte
		_, err := io.ReadFull(s.upIn, h[:])
		if err == nil && h != amqp10.HeaderSASL {
			err = &protocolMismatch{header: h}
		}
		if err != nil {
			s.detach()
			return nil, &upstreamError{srv: srv, op: "wait for the broker's AMQP 1.0 header", err: err}
		}
		return h[:], nil
	}
	f, err := readFrame(s.upIn, deadline)
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

// protocolMismatch is a broker that answered a protocol header with another one: it does not
// serve the client's protocol.
type protocolMismatch struct{ header [8]byte }

func (e *protocolMismatch) Error() string {
	return fmt.Sprintf("it answered the AMQP 1.0 SASL header with %q (RabbitMQ 4, or 3.x with rabbitmq_amqp1_0, serves AMQP 1.0)", printable(e.header[:]))
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

// attach makes c the session's server connection, so abort reaches it; it fails (and closes c)
// if the session was aborted meanwhile.
func (s *session) attach(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		_ = c.Close()
		return false
	}
	s.up, s.upRaw, s.upIn = c, rawTCP(c), newBufConn(c)
	s.upLocal = addrPort(s.upRaw.LocalAddr())
	return true
}

// detach closes the server connection after a failed dial or handshake. The session no longer
// belongs to that server (CloseSessions must not abort it while it moves on).
func (s *session) detach() {
	s.mu.Lock()
	up, upRaw, upIn := s.up, s.upRaw, s.upIn
	s.up, s.upRaw, s.upIn = nil, nil, nil
	s.upLocal = netip.AddrPort{}
	s.srv.Store(nil)
	s.mu.Unlock()
	if upIn != nil {
		upIn.free()
	}
	closeConn(up, upRaw, true)
}

// rawTCP returns the socket under c: c itself, or the connection of a *tls.Conn.
func rawTCP(c net.Conn) *net.TCPConn {
	switch c := c.(type) {
	case *net.TCPConn:
		return c
	case *tls.Conn:
		return rawTCP(c.NetConn())
	case *bufConn:
		return rawTCP(c.Conn)
	}
	return nil
}
