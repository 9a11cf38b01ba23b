package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Parking: what an idle session costs.
//
// A relaying session runs each direction on a goroutine (pump), which waits for data in the
// runtime's poller: two goroutine stacks per session, most of them idle in an AMQP deployment
// (long-lived connections that carry a heartbeat now and then). A frontend's parker takes the
// sessions that have been idle for a while off their goroutines: its sweeper asks both
// directions to stop (a read deadline in the past), the last one to stop registers both sockets
// in the parker's own epoll set and the goroutines exit. An idle session then holds its two
// sockets and its records, nothing else.
//
// While a session is parked, the parker's poll goroutine handles what arrives: a small chunk
// (a heartbeat frame, a lone publish) is read and written to the other socket right there, with
// the same counting and frame tracking as the relay, and the session stays parked. Anything else
// (more data, the peer's FIN, an error, a write that would block) unparks it: the directions get
// goroutines again and carry on where they stopped. Whatever has to reach a parked session from
// outside (an abort, a graceful close) unparks it first, and the sweeper unparks a session
// shortly before its idle timeout expires, so that the directions' own deadline logic decides,
// as it would have without parking.
//
// Only plain sockets are parked (a TLS connection reads through its own buffer), only on Linux
// (epoll), and never a session that is closing, half-closed or aborted.

// Park states of a session (session.parkState).
const (
	parkNone      int32 = iota // the directions run on goroutines
	parkRequested              // the sweeper asked the directions to stop
	parked                     // both sockets are in the parker's poll set; no goroutine
)

// errAborted and errPeerGone stand for the Go connections a parked session that is aborted, or
// whose peer reset its connection, is not given back.
var (
	errAborted  = errors.New("session aborted")
	errPeerGone = errors.New("peer gone")
)

// DefaultParkAfter is how long a session must have moved no byte before it is parked, when
// FrontendOptions.ParkAfter is 0.
const DefaultParkAfter = time.Second

// parkAfterDefault is DefaultParkAfter, but for tests that park everything at once.
var parkAfterDefault = DefaultParkAfter

// parkedChunk is the most a parked session's wake-up moves by itself; more unparks it.
const parkedChunk = 4 << 10

// legEnd says how a direction's pump returned.
type legEnd int8

const (
	legEnded  legEnd = iota // the direction is over (or the session aborted)
	legPaused               // stopped on a frame boundary for a graceful close
	legParked               // stopped because the session is being parked
)

// poller is the platform's poll set for parked sessions (epoll on Linux).
type poller interface {
	// add registers the session's two sockets, each for one readiness event, as bare file
	// descriptors of the poller's own (session.fds): once it succeeds, the session closes its
	// Go connections (bare). s.mu is held.
	add(s *session) error
	// rearm re-registers leg i's source socket for one more event.
	rearm(s *session, i int) error
	// restore makes Go connections of the session's sockets again, leaving its fds as they
	// are; on an error (out of file descriptors, say) it makes none. s.mu is held.
	restore(s *session) (client, server *net.TCPConn, err error)
	// release takes the session's fds out of the set and closes them. s.mu is held.
	release(s *session)
	// gone reports which of the session's sockets has an error or is shut both ways (its peer
	// reset it). s.mu is held.
	gone(s *session) (client, server bool)
	// run delivers events (session id, leg) until close, and then returns an error wrapping
	// os.ErrClosed; any other error means the poll set can no longer be waited on.
	run(deliver func(id uint64, leg int)) error
	// relayChunk moves what leg i's source has queued, at most parkedChunk bytes, without
	// waiting; it reports false when the session must be unparked instead (see park.go).
	relayChunk(s *session, i int) bool
	close()
}

// parker parks a frontend's idle sessions (see above).
type parker struct {
	f    *Frontend
	poll poller
	// after and tick are the sweeper's, from the frontend's settings (a reload may change
	// them); only the sweeper's goroutine uses them.
	after, tick time.Duration

	mu     sync.Mutex
	parked map[uint64]*session // by id

	// addFailed is when registering sockets last failed (unix nanoseconds; 0: never): no
	// session is asked to park for parkRetry after it.
	addFailed atomic.Int64
	// wakeFailed is when a parked session last could not be given its Go connections back
	// (unix nanoseconds; 0: never), for the warning's throttle.
	wakeFailed atomic.Int64
	// broken: the poll set failed (pollLoop); nothing parks any more.
	broken atomic.Bool
	// sweeps counts the sweeper's passes (tests wait on it).
	sweeps atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
}

// parkRetry is how long parking pauses after the poll set refused a session.
const parkRetry = 10 * time.Second

// startParker starts the frontend's parker if the platform has one (parking off, a negative
// park_after, only stops the sweeper from parking: a reload may turn it on). Called from Serve;
// the parker stops when the frontend is closing and has no session left.
func (f *Frontend) startParker() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.parker.Load() != nil || len(f.parkerStopped) > 0 || f.closing {
		return
	}
	poll, err := newPoller()
	if err != nil || poll == nil {
		if err != nil {
			f.log().Warn("idle sessions will not be parked", "err", err)
		}
		return
	}
	p := &parker{f: f, poll: poll, parked: make(map[uint64]*session), stop: make(chan struct{})}
	f.parker.Store(p)
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.pollLoop() }()
	go func() { defer p.wg.Done(); p.sweep() }()
}

// stopParker stops the parker, if one runs; called with f.mu held once the frontend is closing
// and has no session left (so none is parked).
func (f *Frontend) stopParker() {
	p := f.parker.Load()
	if p == nil {
		return
	}
	f.parker.Store(nil)
	close(p.stop)
	p.poll.close()
	// The goroutines end on their own; Shutdown waits for them (parkerDone).
	f.parkerStopped = append(f.parkerStopped, p)
}

// parkedCount returns how many sessions are parked now.
func (p *parker) parkedCount() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// sweep asks idle sessions to park and wakes parked ones whose idle timeout is near, every tick.
func (p *parker) sweep() {
	p.setAfter()
	t := time.NewTicker(p.tick)
	defer t.Stop()
	var list []*session
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		if tick := p.tick; p.setAfter() != tick {
			t.Reset(p.tick)
		}
		if p.after < 0 && p.parkedCount() == 0 {
			continue // off, and nothing to wake
		}
		list = p.f.snapshot(list[:0])
		now := time.Now()
		for _, s := range list {
			s.sweep(p, now)
		}
		clear(list)
		p.sweeps.Add(1)
	}
}

// pollLoop runs the poll set until the parker stops. Should waiting on it fail otherwise, the
// parker is retired: no session parks any more and the parked ones get their goroutines back,
// or they would never hear of their sockets again.
func (p *parker) pollLoop() {
	err := p.poll.run(p.deliver)
	if err == nil || errors.Is(err, os.ErrClosed) {
		return
	}
	p.f.log().Error("parked sessions: the poll set failed; idle sessions keep their goroutines from now on", "err", err)
	p.mu.Lock()
	p.broken.Store(true) // under p.mu: park checks it there before it adds a session
	list := make([]*session, 0, len(p.parked))
	for _, s := range p.parked {
		list = append(list, s)
	}
	p.mu.Unlock()
	for _, s := range list {
		s.mu.Lock()
		again := s.wakeLocked(EndNoResources)
		s.mu.Unlock()
		s.runLegs(again)
	}
}

// setAfter reads park_after from the frontend's settings and returns the sweeper's tick: a
// quarter of it, or a second while parking is off (parked sessions still need their sweeps).
func (p *parker) setAfter() time.Duration {
	p.after = p.f.set.Load().parkAfter
	p.tick = time.Second
	if p.after >= 0 {
		p.tick = max(p.after/4, time.Millisecond)
	}
	return p.tick
}

// deliver handles a readiness event of a parked session's leg (on the poll goroutine).
func (p *parker) deliver(id uint64, i int) {
	p.mu.Lock()
	s := p.parked[id]
	p.mu.Unlock()
	if s == nil {
		return // unparked meanwhile: the event is stale
	}
	s.mu.Lock()
	if s.parkState.Load() != parked {
		s.mu.Unlock()
		return
	}
	if !s.aborted && s.closeReq.Load() == nil && p.poll.relayChunk(s, i) && p.poll.rearm(s, i) == nil {
		s.mu.Unlock()
		return
	}
	again := s.unparkLocked(true, EndNoResources) // if it stays parked, the sweeper retries (wakeRetry)
	s.mu.Unlock()
	s.runLegs(again)
}

// sweep is one sweeper visit of session s: park it if it is idle enough, unpark it if it is
// parked and its idle timeout comes within two ticks (its directions' deadlines then decide).
func (s *session) sweep(p *parker, now time.Time) {
	if !s.relaying.Load() {
		return
	}
	switch s.parkState.Load() {
	case parkNone:
		if p.after < 0 {
			return
		}
		last := s.start.Add(time.Duration(max(s.lastFromClient.Load(), s.lastFromServer.Load())))
		if now.Sub(last) < p.after {
			return
		}
		if exp, ok := s.idleExpiry(); ok && exp.Sub(now) < 4*p.tick {
			return
		}
		if failed := p.addFailed.Load(); failed != 0 && now.Sub(time.Unix(0, failed)) < parkRetry {
			return
		}
		s.mu.Lock()
		// A socket with bytes its peer has not taken: the direction writing to it may be
		// blocked (a broker blocking a publisher), and would not stop for the request.
		if s.parkable() && s.parkState.Load() == parkNone && !pendingOut(s.raw) && !pendingOut(s.upRaw) {
			s.parkState.Store(parkRequested)
			s.parkReqAt = now
			// Wake both directions: each returns legParked (pump), the last one parks.
			past := time.Unix(1, 0)
			_ = s.client.SetReadDeadline(past)
			_ = s.up.SetReadDeadline(past)
		}
		s.mu.Unlock()
	case parkRequested:
		s.cancelStalledPark(p, now)
	case parked:
		s.mu.Lock()
		exp, ok := s.idleExpiry() // under s.mu: deliver may be moving bytes (relayChunk)
		if s.parkState.Load() != parked || !s.wakeRetry && (!ok || exp.Sub(now) >= 2*p.tick) {
			s.mu.Unlock()
			return
		}
		// Past its idle expiry a session that cannot be woken ends as it would have.
		mayStay, stuck := !ok || now.Before(exp), EndNoResources
		if !mayStay {
			stuck = s.idleEnd
		}
		again := s.unparkLocked(mayStay, stuck)
		s.mu.Unlock()
		s.runLegs(again)
	}
}

// cancelStalledPark gives up a park request that one direction has not followed for two ticks:
// it is blocked writing to a peer that does not read (the request came just as it started), and
// the other direction, stopped for the request, must not stay stopped meanwhile: it runs again.
func (s *session) cancelStalledPark(p *parker, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parkState.Load() != parkRequested || now.Sub(s.parkReqAt) < 2*p.tick || s.legsLeft.Load() != 1 {
		return
	}
	s.parkState.Store(parkNone)
	for i, running := range s.legRunning {
		if running || s.legEnds[i] != legParked {
			continue
		}
		if !s.stillActive(s.legs[i].src) {
			_ = s.legs[i].src.SetReadDeadline(time.Unix(1, 0))
		}
		s.legRunning[i] = true
		s.legsLeft.Add(1)
		if i == 0 {
			sessionPool.Go(s.runClientLeg)
		} else {
			sessionPool.Go(s.runServerLeg)
		}
	}
}

// parkable reports whether the session may be parked; s.mu is held.
func (s *session) parkable() bool {
	p := s.f.parker.Load()
	return p != nil && !p.broken.Load() && s.relaying.Load() && !s.aborted && !s.finished && s.closeReq.Load() == nil &&
		!s.halfShut.Load() && s.client == net.Conn(s.raw) && s.up != nil && s.up == net.Conn(s.upRaw) &&
		s.legs[0] != nil && s.legs[1] != nil
}

// idleExpiry returns when the session's idle timeout expires as things stand (see stillActive),
// and false when it has none.
func (s *session) idleExpiry() (time.Time, bool) {
	limit := s.idleLimit()
	if limit <= 0 {
		return time.Time{}, false
	}
	fromClient, fromServer := s.lastFromClient.Load(), s.lastFromServer.Load()
	last := max(fromClient, fromServer)
	if s.perDirection && !s.halfShut.Load() {
		last = min(fromClient, fromServer)
	}
	return s.start.Add(time.Duration(last)).Add(limit), true
}

// park registers the session's sockets with the parker, once both directions stopped for it
// (the last one calls it). It reports false when the session cannot be parked after all (it
// was aborted or is closing meanwhile, or the parker stopped): the caller runs them again.
func (s *session) park() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.f.parker.Load()
	if s.parkState.Load() != parkRequested || !s.parkable() {
		return false
	}
	// Registered before the state says parked: an event cannot come before the session is
	// in the parked map, and deliver takes s.mu, which is held here until both are done.
	p.mu.Lock()
	if p.broken.Load() {
		p.mu.Unlock() // pollLoop has taken the list of sessions to wake: this one would not be
		return false
	}
	p.parked[s.id] = s
	p.mu.Unlock()
	s.parkedBy = p
	if err := p.poll.add(s); err != nil {
		p.mu.Lock()
		delete(p.parked, s.id)
		p.mu.Unlock()
		s.parkedBy = nil
		// Out of epoll watches (fs.epoll.max_user_watches), say: parking waits a while.
		if prev := p.addFailed.Swap(time.Now().UnixNano()); prev == 0 || time.Since(time.Unix(0, prev)) >= parkRetry {
			s.set.log.Warn("cannot park idle sessions for a while", "err", err, "retry_in", parkRetry)
		}
		return false
	}
	s.parkState.Store(parked)
	s.legs = [2]*leg{} // rebuilt when unparked: a parked session holds as little as it can
	s.bare()
	return true
}

// bare closes the Go connections of a session whose sockets the poller holds (add): the sockets
// live on in s.fds. raw and upRaw become nil, and client and up a closedConn, so that nothing can
// use a socket while the poller owns it (up stays non-nil: finish releases the server's slot when
// it is). s.mu is held.
func (s *session) bare() {
	_ = s.raw.Close()
	_ = s.upRaw.Close()
	s.raw, s.upRaw = nil, nil
	s.client, s.up = closedConn{}, closedConn{}
}

// dress gives a session the Go connections restore made of its sockets again; s.mu is held.
// A fresh *net.TCPConn has Go's default keep-alive, so the route's is set again.
func (s *session) dress(client, server *net.TCPConn) {
	s.raw, s.upRaw = client, server
	s.client, s.up = client, server
	for _, c := range [2]*net.TCPConn{client, server} {
		if ka := s.route.KeepAlive; ka < 0 {
			_ = c.SetKeepAlive(false)
		} else {
			setKeepAlive(c, ka)
		}
	}
}

// closedConn stands for a parked session's connections: every call fails as on a closed one.
type closedConn struct{}

func (closedConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (closedConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (closedConn) Close() error                     { return net.ErrClosed }
func (closedConn) LocalAddr() net.Addr              { return nil }
func (closedConn) RemoteAddr() net.Addr             { return nil }
func (closedConn) SetDeadline(time.Time) error      { return net.ErrClosed }
func (closedConn) SetReadDeadline(time.Time) error  { return net.ErrClosed }
func (closedConn) SetWriteDeadline(time.Time) error { return net.ErrClosed }

// unparkLocked takes a parked (or parking) session out of the parker and gives it its Go
// connections and directions back, with their read deadlines; s.mu is held. It returns the legs
// to run again: both for a parked session, none for one that was only asked to park (its
// directions see the state on their own).
//
// When the sockets cannot be given Go connections (out of file descriptors), a session that may
// stay parked does, with wakeRetry set (the sweeper tries again every tick), and no leg is
// returned. One that may not (a graceful close, its idle time is up, a peer that reset) is
// ended with stuck as its reason, unless it has one: its sockets are closed and the legs
// returned, with no directions built, make runLegs end it (endUnparkFailed). So is an aborted
// one, without Go connections made only to be closed.
func (s *session) unparkLocked(mayStay bool, stuck Reason) []int {
	if s.parkState.Load() != parked {
		s.parkState.Store(parkNone)
		return nil
	}
	p := s.parkedBy
	var client, server *net.TCPConn
	err := errAborted
	if !s.aborted { // an aborted session's sockets are only closed: no need to make Go connections of them
		client, server, err = p.poll.restore(s)
	}
	if err != nil && mayStay {
		// A peer that is gone (reset) would keep its fds until fds are free again: it ends
		// now, as its direction would have.
		if clientGone, serverGone := p.poll.gone(s); clientGone || serverGone {
			mayStay, stuck, err = false, EndServerClosed, errPeerGone
			if clientGone {
				stuck = EndClientClosed
			}
		}
	}
	if err != nil && mayStay {
		s.wakeRetry = true
		now := time.Now().UnixNano()
		if prev := p.wakeFailed.Load(); (prev == 0 || now-prev >= int64(parkRetry)) && p.wakeFailed.CompareAndSwap(prev, now) {
			s.set.log.Warn("parked sessions wait to be resumed (retried every sweep)", "err", err)
		}
		return nil
	}
	s.parkState.Store(parkNone)
	s.wakeRetry = false
	p.poll.release(s)
	p.mu.Lock()
	delete(p.parked, s.id)
	p.mu.Unlock()
	s.parkedBy = nil
	if err == nil {
		s.dress(client, server)
		err = s.buildLegs()
	}
	if err != nil {
		// Its sockets are closed (release) or will be (finish closes the Go connections of a
		// session whose directions could not be built).
		s.end(stuck)
		if err != errAborted && err != errPeerGone {
			s.set.log.Warn("a parked session could not be resumed", "err", err)
		}
		return []int{0, 1}
	}
	s.restoreDeadlines()
	return []int{0, 1}
}

// endUnparkFailed ends a session whose directions could not be rebuilt when it was unparked.
func (s *session) endUnparkFailed() {
	s.abort(EndNoResources) // the reason unparkLocked recorded stands
	s.finish()
	s.f.done(s)
}

// restoreDeadlines sets each direction's read deadline as the relay keeps it (stillActive): at
// the idle expiry, none without a timeout, or in the past when the session has already been
// idle too long (the direction then ends it as idle).
func (s *session) restoreDeadlines() {
	for _, l := range s.legs {
		if !s.stillActive(l.src) {
			_ = l.src.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// wakeLocked unparks the session if it is parked, for something from outside that its directions
// must see (an abort, a graceful close); s.mu is held. If it cannot be resumed, it ends, with
// stuck as its reason unless it has one. The caller runs the returned legs after unlocking
// (runLegs).
func (s *session) wakeLocked(stuck Reason) []int {
	if s.parkState.Load() == parkRequested {
		// The directions are stopping or stopped; the last one sees the reason and does not
		// park (park), or they are still running and see it themselves.
		return nil
	}
	return s.unparkLocked(false, stuck)
}

// snapshot appends the frontend's sessions to list.
func (f *Frontend) snapshot(list []*session) []*session {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.sessions {
		list = append(list, s)
	}
	return list
}
