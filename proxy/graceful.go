package proxy

import (
	"encoding/binary"
	"time"

	"github.com/amqplb/amqplb/internal/amqp10"
	"github.com/amqplb/amqplb/internal/amqpwire"
)

// gracefulWait bounds each step of a graceful close: finishing the frame under way in a
// direction, then each side's answer to its close.
const gracefulWait = 5 * time.Second

// gracefulLimit is how long a graceful close may take in all before the session is aborted:
// one that cannot start (the session is still connecting, a peer does not read) ends anyway.
const gracefulLimit = 5 * gracefulWait

// closeFrameLimit is the largest frame read while closing; a larger one ends the close early
// (the sockets are then simply closed). RabbitMQ's default frame_max is 128 KiB.
const closeFrameLimit = 1 << 20

// closeQuiet10 is how long an AMQP 1.0 client may be silent after its close before amqplb stops
// waiting for its answer (see close10).
const closeQuiet10 = time.Second

// gracefulClose is a request to end a session as a broker would.
type gracefulClose struct {
	reason Reason
	text   string
}

// closeGracefully asks the session to end with a protocol close, as a broker closing it would:
// each direction stops between two frames, the client gets Connection.Close 320
// "CONNECTION_FORCED - text" (AMQP 1.0: close with amqp:connection:forced), what it sends until
// its answer still reaches the broker, then the broker is closed as a client closes (200), and
// both sockets. A session that cannot (TCP mode, still connecting after gracefulLimit, a peer
// that does not read) is aborted instead. r is recorded as the end reason. It reports whether
// it did that: false when the session already had an end reason (it is ending anyway).
//
// The request and the wake-up happen under s.mu, and a direction takes s.mu (closeBarrier)
// before it sets deadlines of its own for the close, so a late wake-up never cuts them short.
func (s *session) closeGracefully(r Reason, text string) bool {
	var again []int
	defer func() { s.runLegs(again) }() // a parked session's directions run again, after unlocking
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || !s.end(r) {
		return false // ending already, for another reason (the client left, an abort)
	}
	if !s.closeReq.CompareAndSwap(nil, &gracefulClose{reason: r, text: text}) {
		return false
	}
	again = s.wakeLocked(r)
	s.fallback = time.AfterFunc(gracefulLimit, func() { s.abort(r) })
	if s.relaying.Load() {
		// Wake both directions: each sees the request at its loop's top (pump). A direction
		// stuck writing to a peer that does not read is woken by the write deadline.
		now := time.Now()
		_ = s.client.SetReadDeadline(now)
		_ = s.client.SetWriteDeadline(now.Add(gracefulWait))
		if s.up != nil {
			_ = s.up.SetReadDeadline(now)
			_ = s.up.SetWriteDeadline(now.Add(gracefulWait))
		}
	}
	return true
}

// closeBarrier waits until closeGracefully has woken the directions (see there), and reports
// whether the session was aborted meanwhile.
func (s *session) closeBarrier() (aborted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

// pauseForClose stops direction l on a frame boundary: it moves the rest of the frame under way
// (within gracefulWait) and reports whether the direction now stands between two frames. If it
// cannot, the session is aborted.
func (s *session) pauseForClose(l *leg) bool {
	req := s.closeReq.Load()
	if s.closeBarrier() {
		return false
	}
	t := l.track
	if t == nil || !s.toBoundary(l) {
		s.abort(req.reason)
		return false
	}
	return true
}

// toBoundary moves l's bytes until its tracker stands on a frame boundary.
func (s *session) toBoundary(l *leg) bool {
	t := l.track
	if t.atBoundary() {
		return true
	}
	_ = l.src.SetReadDeadline(time.Now().Add(gracefulWait))
	bp := readBufPool.Get().(*[]byte)
	defer readBufPool.Put(bp)
	for !t.atBoundary() {
		if t.bad {
			return false
		}
		n, err := l.src.Read((*bp)[:min(int64(len(*bp)), t.toBoundary())])
		if n > 0 {
			t.advance((*bp)[:n])
			if _, werr := l.dst.Write((*bp)[:n]); werr != nil {
				return false
			}
			l.count(n)
		}
		if err != nil {
			return t.atBoundary()
		}
	}
	return true
}

// closeBoth performs a graceful close once both directions stand between two frames (see
// closeGracefully). Whatever fails or takes longer than gracefulWait a step ends it early: the
// session's end closes both sockets anyway.
func (s *session) closeBoth() {
	req := s.closeReq.Load()
	if s.isAborted() {
		return
	}
	// The client's part: its answer, and what it still sends to the broker meanwhile. The
	// broker's part gets its own time after it (brokerPhase), so that a client still pushing
	// data into a slow broker cannot keep the broker from getting its close.
	// A frame being forwarded when the client's time is up may still be written whole.
	now := time.Now()
	_ = s.client.SetDeadline(now.Add(gracefulWait))
	_ = s.up.SetWriteDeadline(now.Add(2 * gracefulWait))
	if s.identity().Protocol == ProtoAMQP10 {
		s.close10(req, now.Add(gracefulWait))
	} else {
		s.close091(req)
	}
}

// close091 is closeBoth for AMQP 0-9-1.
func (s *session) close091(req *gracefulClose) {
	toClient, _ := amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED - " + req.text})
	if s.forwardToClient(toClient) != nil {
		return
	}
	closeOK, _ := amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionCloseOk{})
	// The client's frames until its Close-Ok (or its own Close, crossing ours): what it sent
	// before it saw our Close still goes to the broker, as it would have.
	for {
		f, err := amqpwire.ReadFrame(s.client, closeFrameLimit)
		if err != nil {
			break
		}
		if m, ok := connectionMethod(f); ok && (m == amqpwire.MethodCloseOk || m == amqpwire.MethodClose) {
			if m == amqpwire.MethodClose {
				_ = s.forwardToClient(closeOK)
			}
			break
		}
		if s.forwardToServer(amqpwire.AppendFrame(nil, f)) != nil {
			return
		}
	}
	// The broker: closed as a client closes, and its frames until Close-Ok dropped (the client
	// is gone; unacknowledged deliveries go back to their queues).
	s.brokerPhase()
	toBroker, _ := amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionClose{ReplyCode: 200, ReplyText: "closed by amqplb: " + req.text})
	if s.forwardToServer(toBroker) != nil {
		return
	}
	for {
		f, err := amqpwire.ReadFrame(s.up, closeFrameLimit)
		if err != nil {
			return
		}
		if m, ok := connectionMethod(f); ok && (m == amqpwire.MethodCloseOk || m == amqpwire.MethodClose) {
			if m == amqpwire.MethodClose {
				_ = s.forwardToServer(closeOK)
			}
			return
		}
	}
}

// brokerPhase gives the broker's part of a graceful close gracefulWait from now.
func (s *session) brokerPhase() { _ = s.up.SetDeadline(time.Now().Add(gracefulWait)) }

// connectionMethod returns the method id of a connection-class method frame on channel 0.
func connectionMethod(f amqpwire.Frame) (uint16, bool) {
	if f.Type != amqpwire.FrameMethod || f.Channel != 0 || len(f.Payload) < 4 ||
		binary.BigEndian.Uint16(f.Payload) != amqpwire.ClassConnection {
		return 0, false
	}
	return binary.BigEndian.Uint16(f.Payload[2:]), true
}

// close10 is closeBoth for AMQP 1.0: close with amqp:connection:forced to the client, its
// frames to the broker until its close, then a close without error to the broker and its
// frames dropped until its close.
func (s *session) close10(req *gracefulClose, clientEnd time.Time) {
	if s.forwardToClient(amqp10.AppendCloseFrame(nil, amqp10.Close{Condition: "amqp:connection:forced", Description: req.text})) != nil {
		return
	}
	for {
		// qpid-proton answers amqp:connection:forced with no close: it waits for the socket to
		// end, to reconnect. So a client silent for closeQuiet10 is taken to have nothing more.
		quiet := time.Now().Add(closeQuiet10)
		if clientEnd.Before(quiet) {
			quiet = clientEnd // the client's part has its limit, however chatty the client
		}
		_ = s.client.SetReadDeadline(quiet)
		f, err := amqp10.ReadFrame(s.client, closeFrameLimit)
		if err != nil || isClose10(f) {
			break
		}
		if s.forwardToServer(f.Raw) != nil {
			return
		}
	}
	s.brokerPhase()
	if s.forwardToServer(amqp10.AppendCloseFrame(nil, amqp10.Close{})) != nil {
		return
	}
	for {
		f, err := amqp10.ReadFrame(s.up, closeFrameLimit)
		if err != nil || isClose10(f) {
			return
		}
	}
}

// isClose10 reports whether f carries the close performative.
func isClose10(f amqp10.Frame) bool {
	if f.Type != amqp10.TypeAMQP || len(f.Body) == 0 {
		return false
	}
	code, _, err := amqp10.Performative(f.Body)
	return err == nil && code == amqp10.CodeClose
}
