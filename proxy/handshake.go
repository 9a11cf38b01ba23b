package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/amqplb/amqplb/internal/amqp10"
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

// readFrame reads one frame from c within deadline; what c read beyond it stays in its buffer.
// The deadline stays set (see bufConn.SetReadDeadline).
func readFrame(c *bufConn, deadline time.Time) (frame, error) {
	_ = c.SetReadDeadline(deadline)
	f, raw, err := amqpwire.ReadFrameRaw(c, maxHandshakeFrame)
	if err != nil {
		return frame{}, err
	}
	fr := frame{raw: raw, typ: f.Type}
	if f.Type == amqpwire.FrameMethod && len(f.Payload) >= 4 {
		fr.class = binary.BigEndian.Uint16(f.Payload[0:2])
		fr.method = binary.BigEndian.Uint16(f.Payload[2:4])
	}
	return fr, nil
}

// payload returns the frame's payload: what lies between its header and its frame-end octet.
func (f frame) payload() []byte { return f.raw[7 : len(f.raw)-1] }

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
func (s *session) handshake(hello, start []byte) error {
	if err := s.forwardToClient(start); err != nil {
		return err
	}
	var sent []frame // the client's frames so far, for a replay
	var tune []byte  // the Tune the client has seen
	// One deadline for the client's whole side of the handshake, so a slow client cannot stretch
	// it frame by frame.
	clientDeadline := time.Now().Add(s.set.handshake)
	for len(sent) < maxHandshakeFrames {
		cf, err := readFrame(s.in, clientDeadline)
		if err != nil {
			return clientHandshakeFailed(err)
		}
		if cf.typ == amqpwire.FrameHeartbeat {
			if err := s.forwardToServer(cf.raw); err != nil {
				return err
			}
			continue // not replayed: a new broker has its own heartbeat clock
		}
		if err := s.observe091(cf); err != nil {
			return err
		}
		sent = append(sent, cf)
		if _, err := s.up.Write(cf.raw); err != nil {
			// Treated like a broker that failed to answer: see below.
			err = &upstreamError{srv: s.server(), op: "forward " + cf.String(), err: err}
			if err := s.failover(hello, sent, tune, err); err != nil {
				return err
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
			return nil // Secure-Ok, Close or anything else: the rest is between client and broker
		}
		reply, err := s.brokerReply()
		for err != nil {
			var gone *endError
			if errors.As(err, &gone) {
				return err
			}
			if err := s.failover(hello, sent, tune, err); err != nil {
				return err
			}
			reply, err = s.brokerReply()
		}
		if err := s.forwardToClient(reply.raw); err != nil {
			return err
		}
		if reply.is(amqpwire.MethodTune) {
			tune = reply.raw
			continue
		}
		return nil // Open-Ok (done), Secure (challenge-response is not replayed), or other
	}
	return nil // an unusual client: stop tracking and relay
}

// brokerReply reads the broker's answer to a handshake step within the connect timeout. A
// Connection.Close is returned as a *brokerClosed error.
func (s *session) brokerReply() (frame, error) {
	deadline := time.Now().Add(s.route.connectTimeout())
	f, err := readFrame(s.upIn, deadline)
	for err == nil && f.typ == amqpwire.FrameHeartbeat {
		// Not an answer: pass it on and read on.
		if err := s.forwardToClient(f.raw); err != nil {
			return f, err // the client is gone: an *endError, not the broker's failure
		}
		f, err = readFrame(s.upIn, deadline)
	}
	if err == nil && f.is(amqpwire.MethodClose) {
		return f, &brokerClosed{close: f} // its code is the session's only if it reaches the client (noUpstream)
	}
	if err != nil {
		err = &upstreamError{srv: s.server(), op: "wait for the broker's answer", err: err}
	}
	return f, err
}

// failover replaces the current server, which failed during the handshake with cause, by
// another one on which the client's frames are replayed up to the last one, whose answer is
// then awaited by the caller. It returns the error that ends the session, having told the
// client, when no server is left.
func (s *session) failover(hello []byte, sent []frame, tune []byte, cause error) error {
	var closed *brokerClosed
	if errors.As(cause, &closed) {
		// Acknowledge the broker's Close so that it logs a clean close.
		_, _ = s.up.Write(closeOk)
	}
	from := s.server()
	s.detach()
	// Not reported as a server failure: once the client's frames have reached a broker, a
	// close, reset or silence may be the client's doing (a wrong password, an unknown mechanism,
	// a client slower than the broker's handshake timeout), and no client may eject brokers.
	// The health checks judge the broker. For the same reason only one other server is tried.
	if err := s.release(from, cause, false); err != nil {
		return err
	}
	s.skipServer(from)
	if s.handshakeMoves++; s.handshakeMoves > 1 || !s.route.Redispatch {
		return s.noUpstream(cause)
	}
	// The client already has a Start.
	if _, err := s.acquireUpstream(hello, func() error { return s.replay(sent, tune) }, cause); err != nil {
		return err
	}
	s.set.log.Info("broker failed during the handshake; the session moved on", "backend", s.route.Backend.Name,
		"from", from.Name(), "to", s.server().Name(), "cause", cause)
	return nil
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

// clientHandshakeFailed is the end of a session whose client did not complete its side of the
// handshake.
func clientHandshakeFailed(err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return ended(EndHandshake, err)
	case errors.Is(err, amqpwire.ErrMalformed), errors.Is(err, amqp10.ErrMalformed):
		return refused(EndBadHandshake, "connection refused: malformed handshake frame", err).quiet()
	}
	return ended(EndClientClosed, err)
}
