package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/amqplb/amqplb/internal/amqpwire"
)

// Bounds on what a handshake may hold. Before Tune, peers need only accept frames of 4096 octets
// (the spec's frame-min-size); client properties can be larger, so allow some room. A client
// sends three or four frames (Start-Ok, [Secure-Ok,] Tune-Ok, Open); more than maxHandshakeFrames
// and amqplb stops tracking the handshake and just relays.
const (
	maxHandshakeFrame  = 16 << 10
	maxHandshakeFrames = 8
)

// frame is one AMQP frame as read off the wire, with its method id when it is a method frame.
type frame struct {
	raw           []byte // the whole frame, as it is forwarded
	typ           uint8
	class, method uint16
}

// readFrame reads one frame from r, which reads c, within deadline. With r = c it reads exactly
// the frame and nothing beyond it.
func readFrame(c net.Conn, r io.Reader, deadline time.Time) (frame, error) {
	_ = c.SetReadDeadline(deadline)
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	f, err := amqpwire.ReadFrame(r, maxHandshakeFrame)
	if err != nil {
		return frame{}, err
	}
	fr := frame{raw: amqpwire.AppendFrame(make([]byte, 0, len(f.Payload)+8), f), typ: f.Type}
	if f.Type == amqpwire.FrameMethod && len(f.Payload) >= 4 {
		fr.class = binary.BigEndian.Uint16(f.Payload[0:2])
		fr.method = binary.BigEndian.Uint16(f.Payload[2:4])
	}
	return fr, nil
}

// is reports whether f is the connection-class method m (amqpwire.MethodStart, ...).
func (f frame) is(m uint16) bool {
	return f.typ == amqpwire.FrameMethod && f.class == amqpwire.ClassConnection && f.method == m
}

func (f frame) String() string {
	if f.typ == amqpwire.FrameMethod {
		return amqpwire.MethodName(f.class, f.method)
	}
	return fmt.Sprintf("a frame of type %d", f.typ)
}

// brokerClosed is a handshake step the broker answered with Connection.Close.
type brokerClosed struct{ close frame }

func (e *brokerClosed) Error() string {
	code, text := closeReason(e.close)
	return fmt.Sprintf("broker closed the connection: %d %s", code, text)
}

func closeReason(f frame) (uint16, string) {
	if _, m, err := amqpwire.ReadMethod(bytes.NewReader(f.raw), maxHandshakeFrame); err == nil {
		if c, ok := m.(*amqpwire.ConnectionClose); ok {
			return c.ReplyCode, c.ReplyText
		}
	}
	return 0, ""
}

// handshake relays the AMQP connection handshake frame by frame, from the broker's
// Connection.Start up to its Connection.Open-Ok, then hands over to the relay.
//
// A broker can fail in the middle of a handshake: a node going down (rabbitmqctl stop_app, a
// rolling restart) refuses logins or vhost access while it still accepts TCP, and a node that dies
// resets its connections. The client has then seen only Start (and maybe Tune), so the session
// takes another server, replays the client's frames on it (its Start is dropped, its Tune must be
// the one the client already has), and the client never notices. Only when every attempt fails
// does the client get the last broker's Connection.Close. A failure in the handshake moves the
// session once, to one other server: a node shutting down refuses logins, but so does a wrong
// password, and that must not cost every broker a handshake.
func (s *session) handshake(hello, start []byte) (ok bool) {
	if !s.forwardToClient(start) {
		return false
	}
	// Buffered reads halve the syscalls of a handshake (a frame's header and payload, and the
	// client's Tune-Ok and Open, come in one read). Whatever was read beyond the handshake is
	// passed on before the relay takes over.
	s.hs = &handshakeReaders{client: bufio.NewReaderSize(clientReader{s}, handshakeBuf)}
	defer func() {
		if ok {
			ok = s.flushHandshake()
		}
		s.hs = nil
	}()
	var sent []frame // the client's frames so far, for a replay
	var tune []byte  // the Tune the client has seen
	// One deadline for the client's whole side of the handshake, so a slow client cannot stretch
	// it frame by frame.
	clientDeadline := time.Now().Add(s.set.handshake)
	for len(sent) < maxHandshakeFrames {
		cf, err := readFrame(s.client, s.hs.client, clientDeadline)
		if err != nil {
			s.clientHandshakeFailed(err)
			return false
		}
		if cf.typ == amqpwire.FrameHeartbeat {
			if !s.forwardToServer(cf.raw) {
				return false
			}
			continue // not replayed: a new broker has its own heartbeat clock
		}
		sent = append(sent, cf)
		if _, err := s.up.Write(cf.raw); err != nil {
			// Treated like a broker that failed to answer: see below.
			err = &upstreamError{srv: s.server(), op: "forward " + cf.String(), err: err}
			if !s.failover(hello, sent, tune, err) {
				return false
			}
		} else {
			s.countToServer(len(cf.raw))
		}
		switch {
		case cf.is(amqpwire.MethodStartOk), cf.is(amqpwire.MethodOpen):
			// These get an answer worth waiting for.
		case cf.is(amqpwire.MethodTuneOk):
			continue // no answer; Open follows
		default:
			return true // Secure-Ok, Close or anything else: the rest is between client and broker
		}
		reply, err := s.brokerReply()
		for err != nil {
			if !s.failover(hello, sent, tune, err) {
				return false
			}
			reply, err = s.brokerReply()
		}
		if !s.forwardToClient(reply.raw) {
			return false
		}
		if reply.is(amqpwire.MethodTune) {
			tune = reply.raw
			continue
		}
		return true // Open-Ok (done), Secure (challenge-response is not replayed), or other
	}
	return true // an unusual client: stop tracking and relay
}

// forwardToServer writes b to the current server; a failure ends the session.
func (s *session) forwardToServer(b []byte) bool {
	if _, err := s.up.Write(b); err != nil {
		s.setReason(EndServerClosed)
		return false
	}
	s.countToServer(len(b))
	return true
}

// brokerReply reads the broker's answer to a handshake step within the connect timeout. A
// Connection.Close is returned as a *brokerClosed error.
func (s *session) brokerReply() (frame, error) {
	f, err := readFrame(s.up, s.upReader(), time.Now().Add(s.route.connectTimeout()))
	if err == nil && f.is(amqpwire.MethodClose) {
		return f, &brokerClosed{close: f}
	}
	if err != nil {
		err = &upstreamError{srv: s.server(), op: "wait for the broker's answer", err: err}
	}
	return f, err
}

// handshakeBuf is the size of the buffered readers used during a handshake.
const handshakeBuf = 4096

// handshakeReaders are the buffered readers of a handshake in progress.
type handshakeReaders struct {
	client   *bufio.Reader
	server   *bufio.Reader
	serverOf net.Conn // the connection server reads; a failover replaces both
}

// upReader returns the buffered reader of the current server connection.
func (s *session) upReader() *bufio.Reader {
	if s.hs.serverOf != s.up {
		s.hs.serverOf, s.hs.server = s.up, bufio.NewReaderSize(s.up, handshakeBuf)
	}
	return s.hs.server
}

// flushHandshake passes on the bytes the buffered readers took beyond the handshake.
func (s *session) flushHandshake() bool {
	if n := s.hs.client.Buffered(); n > 0 {
		b, _ := s.hs.client.Peek(n)
		if !s.forwardToServer(b) {
			return false
		}
	}
	if s.hs.server != nil && s.hs.serverOf == s.up {
		if n := s.hs.server.Buffered(); n > 0 {
			b, _ := s.hs.server.Peek(n)
			if !s.forwardToClient(b) {
				return false
			}
		}
	}
	return true
}

// failover replaces the current server, which failed during the handshake with cause, by
// another one on which the client's frames are replayed up to the last one, whose answer is
// then awaited by the caller. It returns false, having told the client, when no server is left.
func (s *session) failover(hello []byte, sent []frame, tune []byte, cause error) bool {
	var closed *brokerClosed
	if errors.As(cause, &closed) {
		// Acknowledge the broker's Close so that it logs a clean close.
		_, _ = s.up.Write(closeOk)
	}
	srv := s.server()
	s.detach()
	// Not reported as a server failure: once the client's frames have reached a broker, a
	// close, reset or silence may be the client's doing (a wrong password, an unknown mechanism,
	// a client slower than the broker's handshake timeout), and no client may eject brokers.
	// The health checks judge the broker. For the same reason only one other server is tried.
	if !s.failed(srv, cause, false) {
		return false
	}
	s.skipServer(srv)
	if s.handshakeMoves++; s.handshakeMoves > 1 || !s.route.Redispatch {
		return s.handshakeFailed(cause)
	}
	lastErr := cause
	for ; s.tries <= s.route.Retries; s.tries++ {
		next := s.pick()
		if next == nil {
			break
		}
		start, err := s.dial(next, hello)
		if err != nil {
			// The dial and the broker's Start involve no client bytes: a real server failure
			// (unless an operator took the server out of rotation meanwhile).
			if !s.failed(next, err, !errors.Is(err, errLeftRotation)) {
				return false
			}
			s.skipServer(next)
			lastErr = err
			continue
		}
		_ = start // the client already has one
		if err := s.replay(sent, tune); err != nil {
			s.detach()
			_ = s.failed(next, err, false)
			return s.handshakeFailed(err)
		}
		s.tries++
		next.Connected()
		s.set.log.Info("broker failed during the handshake; the session moved on", "backend", s.route.Backend.Name,
			"from", srv.Name(), "to", next.Name(), "cause", cause)
		return true
	}
	return s.handshakeFailed(lastErr)
}

// handshakeFailed ends a session whose handshake failed on every server it tried. If the last
// one refused with Connection.Close, the client gets that answer (403, 530, ...) rather than a
// bare close.
func (s *session) handshakeFailed(lastErr error) bool {
	var closed *brokerClosed
	if errors.As(lastErr, &closed) {
		_, _ = s.client.Write(closed.close.raw)
		s.lingeringClose()
	}
	s.giveUp(lastErr)
	return false
}

// replay sends the client's frames but the last to the new server, checking that it answers
// as the old one did, then sends the last one.
func (s *session) replay(sent []frame, tune []byte) error {
	for i, f := range sent {
		if _, err := s.up.Write(f.raw); err != nil {
			return &upstreamError{srv: s.server(), op: "replay " + f.String(), err: err}
		}
		s.countToServer(len(f.raw))
		if i == len(sent)-1 || !f.is(amqpwire.MethodStartOk) {
			continue
		}
		reply, err := s.brokerReply()
		if err != nil {
			return err
		}
		if !bytes.Equal(reply.raw, tune) {
			return &upstreamError{srv: s.server(), op: "replay", err: errors.New("its Connection.Tune differs from the one the client has")}
		}
	}
	return nil
}

// closeOk is Connection.Close-Ok on channel 0.
var closeOk, _ = amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionCloseOk{})

func (s *session) forwardToClient(b []byte) bool {
	if _, err := s.client.Write(b); err != nil {
		s.setReason(EndClientClosed)
		return false
	}
	s.toClient.Add(uint64(len(b)))
	s.server().AddBytes(0, uint64(len(b)))
	return true
}

func (s *session) countToServer(n int) {
	s.toServer.Add(uint64(n))
	s.server().AddBytes(uint64(n), 0)
}

// clientHandshakeFailed ends a session whose client did not complete its side of the handshake.
func (s *session) clientHandshakeFailed(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		s.setReason(EndHandshake)
		s.f.countRefused(RefusedHandshakeTimeout)
	case errors.Is(err, amqpwire.ErrMalformed):
		s.setReason(EndBadHeader)
		s.f.countRefused(RefusedBadHeader)
	default:
		s.setReason(EndClientClosed)
	}
}
