package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// readBufSize is the pooled buffer a relay reads into. AMQP traffic is mostly small frames,
// which a read(2) and a write(2) move at the cost splice(2) would have, without a pipe; a read
// that fills the buffer means bulk, and what is queued beyond it is moved with splice(2).
const readBufSize = 16 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// copyRelay moves bytes from src to dst for one direction of a session whose src is not a plain
// socket (a *tls.Conn): a loop of Read and Write through a pooled buffer, which it holds for the
// session's life (a TLS read blocks with its buffer).
type copyRelay struct {
	src, dst net.Conn
	moved    func(n int)
	buf      *[]byte
	track    *frameTracker // nil: not followed
}

// step reads what src has and writes it to dst.
func (r *copyRelay) step() error {
	if r.buf == nil {
		r.buf = readBufPool.Get().(*[]byte)
	}
	n, err := r.src.Read(*r.buf)
	if n > 0 {
		if r.track != nil {
			r.track.advance((*r.buf)[:n])
		}
		if _, werr := r.dst.Write((*r.buf)[:n]); werr != nil {
			return &writeError{werr}
		}
		r.moved(n)
	}
	return err
}

// release returns the buffer to the pool once the direction has ended.
func (r *copyRelay) release() {
	if r.buf != nil {
		readBufPool.Put(r.buf)
		r.buf = nil
	}
}

// mover moves the bytes of one direction: step waits for data and moves what it got, telling
// the leg's count about every chunk. It returns nil, io.EOF when src closed its side, a
// *writeError when dst failed, or src's error (a passed read deadline among them).
type mover interface {
	step() error
	release()
}

// leg is one direction of a session: its two ends (as the session reads and writes them, and
// the sockets under them), how bytes move, and where its frames end (nil in TCP mode).
type leg struct {
	src, dst       net.Conn
	srcRaw, dstRaw *net.TCPConn
	mv             mover
	count          func(int)
	track          *frameTracker
}

// newLeg returns the direction from src to dst; count is called after each chunk with the bytes
// moved, and track (nil: none) follows them. A plain socket is read by the platform's socket
// mover (on Linux, socketRelay, which splices into a plain dst); anything else by copyRelay.
func newLeg(dst net.Conn, dstRaw *net.TCPConn, src net.Conn, srcRaw *net.TCPConn, count func(int), track *frameTracker) (*leg, error) {
	l := &leg{src: src, dst: dst, srcRaw: srcRaw, dstRaw: dstRaw, count: count, track: track}
	if tc, ok := src.(*net.TCPConn); ok {
		mv, err := newSocketMover(dst, tc, count, track)
		if err != nil {
			return nil, err
		}
		l.mv = mv
	} else {
		l.mv = &copyRelay{src: src, dst: dst, moved: count, track: track}
	}
	return l, nil
}

// release frees what the direction held, once it has ended.
func (l *leg) release() { l.mv.release() }

// writeError is a failure to write to dst, as opposed to reading src.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// relay moves bytes both ways until both directions have ended or one failed; the directions
// record the end reason themselves. Bytes read ahead during the handshake and not passed on
// yet go first. In AMQP mode each direction's frame boundaries are followed from here (both
// handshakes end on one), for a graceful close: when one was asked for and both directions
// stopped between two frames, the relay ends with closeBoth.
func (s *session) relay() error {
	var upTrack, downTrack *frameTracker
	if s.set.mode == ModeAMQP {
		upTrack, downTrack = newFrameTracker(s.identity().Protocol), newFrameTracker(s.identity().Protocol)
	}
	if err := s.in.unbuffer(tracked(upTrack, s.forwardToServer)); err != nil {
		return err
	}
	if s.upIn != nil {
		if err := s.upIn.unbuffer(tracked(downTrack, s.forwardToClient)); err != nil {
			return err
		}
	}
	// Both buffers are free and the directions read the sockets themselves: the session
	// holds no bufConn from here on (a parked session holds as little as it can).
	s.in, s.upIn = nil, nil
	s.tracks = [2]*frameTracker{upTrack, downTrack}
	if err := s.buildLegs(); err != nil {
		return err
	}
	up, upRaw := s.up, s.upRaw
	s.idle, s.idleEnd = s.idleTimeout()
	// AMQP 0-9-1 peers each send heartbeats at the negotiated interval, so each direction can be
	// held to it. (An AMQP 1.0 peer's idle time-out binds the other peer; amqplb reads only the
	// client's, so for 1.0 the session as a whole is held to it.)
	s.perDirection = s.idleEnd == EndHeartbeatTimeout && s.identity().Protocol == ProtoAMQP091
	if idle := s.idle; idle > 0 {
		d := time.Now().Add(idle)
		_ = s.client.SetReadDeadline(d)
		_ = up.SetReadDeadline(d)
		// A peer that stops reading (zero window) blocks writes, which read deadlines do not
		// cover; the kernel drops it after the same time. Not with heartbeats: a broker that
		// blocks a publisher during a resource alarm stops reading on purpose, for as long as
		// the alarm lasts.
		if s.idleEnd != EndHeartbeatTimeout {
			setUserTimeout(s.raw, idle)
			setUserTimeout(upRaw, idle)
		}
	}
	s.relaying.Store(true) // from now on a graceful close wakes the directions (closeGracefully)
	// The session's goroutine runs the client's direction itself.
	s.mu.Lock()
	s.legsLeft.Store(2)
	s.legRunning = [2]bool{true, true}
	s.mu.Unlock()
	sessionPool.Go(s.runServerLeg)
	s.runLeg(0)
	return errHandedOff
}

// buildLegs makes the relay's two directions (s.legs): at the start of the relay, and again
// when a parked session, which holds none, is unparked.
func (s *session) buildLegs() error {
	toServer, err := newLeg(s.up, s.upRaw, s.client, s.raw, s.movedToServer, s.tracks[0])
	if err != nil {
		return ended(EndClientClosed, err)
	}
	toClient, err := newLeg(s.client, s.raw, s.up, s.upRaw, s.movedToClient, s.tracks[1])
	if err != nil {
		toServer.release()
		return ended(EndServerClosed, err)
	}
	s.legs = [2]*leg{toServer, toClient}
	for i, l := range s.legs {
		setPending(l, s.pending[i])
		s.pending[i] = nil
	}
	return nil
}

// movedToServer counts n bytes relayed from the client to the server.
func (s *session) movedToServer(n int) {
	s.lastFromClient.Store(int64(time.Since(s.start)))
	s.toServer.Add(uint64(n))
	s.server().AddBytes(uint64(n), 0)
}

// movedToClient counts n bytes relayed from the server to the client.
func (s *session) movedToClient(n int) {
	s.lastFromServer.Store(int64(time.Since(s.start)))
	s.toClient.Add(uint64(n))
	s.server().AddBytes(0, uint64(n))
}

// errHandedOff is relay's way of saying that the session now belongs to its directions'
// goroutines: the last one to end finishes it (legsDone).
var errHandedOff = errors.New("handed off to the relay's directions")

// runLegs runs the given directions (0: client to server, 1: server to client) on goroutines of
// their own; the session's own goroutine is then free to end (a relaying session has no other).
func (s *session) runLegs(legs []int) {
	if len(legs) == 0 {
		return
	}
	if s.legs[0] == nil || s.legs[1] == nil {
		go s.endUnparkFailed() // see unparkLocked
		return
	}
	s.mu.Lock()
	s.legsLeft.Store(int32(len(legs)))
	for _, i := range legs {
		s.legRunning[i] = true
	}
	s.mu.Unlock()
	for _, i := range legs {
		if i == 0 {
			sessionPool.Go(s.runClientLeg)
		} else {
			sessionPool.Go(s.runServerLeg)
		}
	}
}

// runClientLeg and runServerLeg are runLeg(0) and runLeg(1) as method values for the pool.
func (s *session) runClientLeg() { s.runLeg(0) }
func (s *session) runServerLeg() { s.runLeg(1) }

// runLeg runs direction i until it returns; the last direction to return decides what follows.
func (s *session) runLeg(i int) {
	var e legEnd
	if i == 0 {
		e = s.pump(s.legs[0], EndClientClosed, EndServerClosed)
	} else {
		e = s.pump(s.legs[1], EndServerClosed, EndClientClosed)
	}
	s.mu.Lock()
	s.legEnds[i], s.legRunning[i] = e, false
	left := s.legsLeft.Add(-1)
	s.mu.Unlock()
	if left == 0 {
		s.legsDone()
	}
}

// legsDone runs when no direction runs any more: both parked (the session is parked, or when
// it cannot be after all, they run again), one parked while the other ended (it runs again:
// the session is not idle), both paused for a graceful close (closeBoth), or the relay is over:
// the session ends.
func (s *session) legsDone() {
	var again []int
	for i, e := range s.legEnds {
		if e == legParked {
			again = append(again, i)
		}
	}
	if len(again) == 2 && s.park() {
		return
	}
	if len(again) > 0 {
		s.mu.Lock()
		s.parkState.Store(parkNone)
		for _, i := range again {
			if !s.stillActive(s.legs[i].src) {
				_ = s.legs[i].src.SetReadDeadline(time.Unix(1, 0))
			}
		}
		s.mu.Unlock()
		s.runLegs(again)
		return
	}
	if s.legEnds[0] == legPaused && s.legEnds[1] == legPaused {
		s.closeBoth()
	}
	s.legs[0].release()
	s.legs[1].release()
	s.finish()
	s.f.done(s)
}

// tracked returns forward, following what it forwards with t first (unless t is nil).
func tracked(t *frameTracker, forward func([]byte) error) func([]byte) error {
	if t == nil {
		return forward
	}
	return func(p []byte) error {
		t.advance(p)
		return forward(p)
	}
}

// pump runs one direction. srcGone and dstGone are the end reasons when src or dst closes or
// fails first. It returns legPaused when it stopped on a frame boundary for a graceful close
// (pauseForClose), legParked when it stopped for the session to be parked (park.go), and
// legEnded when the direction has ended.
func (s *session) pump(l *leg, srcGone, dstGone Reason) legEnd {
	// What a parked session's wake-up could not write goes first, before anything else is
	// written to dst (a graceful close's frames among them).
	if err := flushPending(l); err != nil {
		s.abort(dstGone)
		return legEnded
	}
	for {
		if s.closeReq.Load() != nil {
			if s.pauseForClose(l) {
				return legPaused
			}
			return legEnded
		}
		err := l.mv.step()
		switch {
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.closeReq.Load() != nil {
				continue // a graceful close's wake-up: the loop's top handles it
			}
			if s.parkState.Load() == parkRequested {
				return legParked
			}
			if s.stillActive(l.src) {
				// Not idle. The sweeper may have asked to park between the check above and
				// stillActive moving the deadline on, overriding its wake-up: look again.
				if s.parkState.Load() == parkRequested {
					return legParked
				}
				continue
			}
			s.abort(s.idleEnd)
			return legEnded
		case s.brokerGaveUp(l, err):
			// The broker closed on a client that stopped sending heartbeats (RabbitMQ does
			// after two): the client is gone too, so do not wait for it.
			s.abort(EndHeartbeatTimeout)
			return legEnded
		case errors.Is(err, io.EOF):
			// Orderly close of src: pass the FIN (and a TLS close_notify) on and let the other
			// direction finish, within the half-close bound.
			s.end(srcGone)
			closeWrite(l.dst, l.dstRaw)
			if s.halfShut.Swap(true) {
				return legEnded // both directions are done
			}
			// The other direction reads from what is dst here and writes to our src. Bound
			// both its waiting for data and its writing to a peer that stopped reading.
			limit := s.idleLimit()
			now := int64(time.Since(s.start))
			s.lastFromClient.Store(now)
			s.lastFromServer.Store(now)
			_ = l.dst.SetReadDeadline(time.Now().Add(limit))
			setUserTimeout(l.srcRaw, limit)
			return legEnded
		default:
			gone := srcGone
			var we *writeError
			if errors.As(err, &we) {
				gone = dstGone
			}
			s.abort(gone)
			return legEnded
		}
	}
}

// idleTimeout returns how long the session may go without traffic before the relay ends it,
// and the end reason it then has: the route's idle timeout, or with IdleHeartbeat three
// heartbeats (idle_timeout = "heartbeat").
func (s *session) idleTimeout() (time.Duration, Reason) {
	r := s.route
	if !r.IdleHeartbeat {
		return r.IdleTimeout, EndIdleTimeout
	}
	if hb := s.identity().Heartbeat; hb > 0 {
		return 3 * hb, EndHeartbeatTimeout
	}
	return r.IdleTimeoutDefault, EndIdleTimeout
}

// brokerGaveUp reports whether err, which ended the leg l, is the broker's side ending (its EOF or
// reset while reading it, or a failed write to it) while the client had missed heartbeats.
func (s *session) brokerGaveUp(l *leg, err error) bool {
	var we *writeError
	brokerSide := (l.srcRaw == s.upRaw) != errors.As(err, &we) // reading the broker, or writing to it
	return brokerSide && s.clientMissedHeartbeats()
}

// clientMissedHeartbeats reports whether the session has a heartbeat and the client has sent
// nothing for two of them: what makes RabbitMQ close a connection.
func (s *session) clientMissedHeartbeats() bool {
	if !s.perDirection {
		return false
	}
	hb := s.idle / 3
	return time.Since(s.start.Add(time.Duration(s.lastFromClient.Load()))) >= 2*hb
}

// idleLimit is how long the session may go without traffic: the route's idle timeout, or the
// half-close bound once one side has sent FIN, whichever is shorter.
func (s *session) idleLimit() time.Duration {
	limit := s.idle
	if s.halfShut.Load() {
		if hc := s.route.halfCloseTimeout(); limit <= 0 || hc < limit {
			limit = hc
		}
	}
	return limit
}

// stillActive is called when src's read deadline passed. If bytes moved in either direction
// since, it moves the deadline on and reports true; otherwise the session is idle. With a
// 0-9-1 heartbeat, each direction must have carried something: both peers send heartbeats, so
// one that fell silent for three of them is gone even while the other still talks.
func (s *session) stillActive(src net.Conn) bool {
	limit := s.idleLimit()
	if limit <= 0 {
		_ = src.SetReadDeadline(time.Time{})
		return true
	}
	fromClient, fromServer := s.lastFromClient.Load(), s.lastFromServer.Load()
	last := max(fromClient, fromServer)
	if s.perDirection && !s.halfShut.Load() {
		// A direction whose receiver has not taken what was sent (bytes still queued on its
		// socket) is held up by that receiver, not silent: a broker blocking a publisher
		// during a resource alarm, say.
		now := int64(time.Since(s.start))
		if pendingOut(s.upRaw) {
			fromClient = now
		}
		if pendingOut(s.raw) {
			fromServer = now
		}
		last = min(fromClient, fromServer)
	}
	if expiry := s.start.Add(time.Duration(last)).Add(limit); time.Now().Before(expiry) {
		_ = src.SetReadDeadline(expiry)
		return true
	}
	return false
}
