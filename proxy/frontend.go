// Package proxy owns the frontends: a listener and its accept loop (with backoff on temporary
// errors), connection limits, source-address rules, the PROXY protocol header of an upstream
// balancer, TLS termination, the AMQP protocol-header gate, and the session of each client
// connection: pick a server, dial it (retrying and redispatching), then relay bytes both ways
// between the two sockets (with splice(2) when both are plain TCP) until either side ends, park
// it while it is idle (park.go), and log the outcome.
//
// It reads servers and asks a balancer.Policy to choose; it does not decide server health (the
// healthcheck package does) and it does not serve HTTP.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/balancer"
)

// Mode is how a frontend treats the first bytes of a client connection.
type Mode int

const (
	// ModeAMQP reads and checks the client's 8-byte AMQP protocol header before dialing a broker,
	// and waits for the broker's first bytes before committing to it.
	ModeAMQP Mode = iota
	// ModeTCP passes bytes through untouched (e.g. for the management port).
	ModeTCP
)

// Protocols is the set of AMQP versions a frontend in ModeAMQP accepts.
type Protocols uint8

// The protocols. A zero Protocols in FrontendOptions means both.
const (
	AMQP091 Protocols = 1 << iota // AMQP 0-9-1
	AMQP10                        // AMQP 1.0 over SASL (RabbitMQ 4, or 3.x with rabbitmq_amqp1_0)
)

// ParseProtocol maps "amqp-0-9-1" or "amqp-1.0" (ProtoAMQP091, ProtoAMQP10) to its Protocols bit.
func ParseProtocol(s string) (Protocols, error) {
	switch s {
	case ProtoAMQP091:
		return AMQP091, nil
	case ProtoAMQP10:
		return AMQP10, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want %s or %s)", s, ProtoAMQP091, ProtoAMQP10)
}

// ParseMode maps the config's "amqp" or "tcp" to a Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "amqp", "":
		return ModeAMQP, nil
	case "tcp":
		return ModeTCP, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want amqp or tcp)", s)
}

// String returns "amqp" or "tcp".
func (m Mode) String() string {
	if m == ModeTCP {
		return "tcp"
	}
	return "amqp"
}

// Default timeouts used when the corresponding option is zero.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultHalfCloseTimeout = 30 * time.Second
	// retryPause is how long a session waits before retrying the server whose dial just failed.
	retryPause = 50 * time.Millisecond
)

// Route is where a frontend sends its connections: a backend, the policy that picks among its
// servers, and how to reach them. A Route is immutable; a reload swaps in a new one, and sessions
// keep the Route they started with.
type Route struct {
	// Backend is the set of servers.
	Backend *backend.Backend
	// Policy picks a server for each new connection.
	Policy balancer.Policy
	// ConnectTimeout bounds one dial (and, in AMQP mode, the wait for the broker's first bytes).
	// Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Retries is how many more dials a session tries after the first one fails.
	Retries int
	// Redispatch lets retries after the first go to another server.
	Redispatch bool
	// IdleTimeout closes a session with no bytes in either direction for this long; 0 = never.
	IdleTimeout time.Duration
	// IdleHeartbeat replaces IdleTimeout, for sessions whose handshake negotiated a heartbeat
	// (AMQP 0-9-1 Tune-Ok; AMQP 1.0's idle time-out of the client's open), by 3 heartbeats:
	// RabbitMQ itself gives up after 2 missed ones, so a session that carried nothing either way
	// for 3 is dead (end heartbeat_timeout). A session without a heartbeat gets
	// IdleTimeoutDefault (0 = none).
	IdleHeartbeat      bool
	IdleTimeoutDefault time.Duration
	// HalfCloseTimeout bounds how long a session stays half-closed (one side has sent FIN)
	// without traffic. Zero means DefaultHalfCloseTimeout.
	HalfCloseTimeout time.Duration
	// KeepAlive is the TCP keep-alive period on both sockets; 0 = Go's default, < 0 = off.
	KeepAlive time.Duration
	// OnConnectFailure, if set, is called after every failed dial (passive health detection).
	OnConnectFailure func(s *backend.Server, err error)
	// Others are the routes of every backend of the configuration, by backend name, for the
	// frontends' SNIRoutes.
	Others map[string]*Route
	// Rules are the backend's tcp-request content rules, evaluated like a frontend's content
	// rules once the session has its client address and its backend, before a server is
	// dialed (HAProxy evaluates a backend's rules when the backend is chosen). A rejected
	// session ends as denied.
	Rules []Rule
}

func (r *Route) connectTimeout() time.Duration {
	if r.ConnectTimeout > 0 {
		return r.ConnectTimeout
	}
	return DefaultConnectTimeout
}

func (r *Route) halfCloseTimeout() time.Duration {
	if r.HalfCloseTimeout > 0 {
		return r.HalfCloseTimeout
	}
	return DefaultHalfCloseTimeout
}

// FrontendOptions configures a Frontend.
type FrontendOptions struct {
	// Name identifies the frontend in logs and metrics.
	Name string
	// SNIRoutes send a session whose TLS ClientHello names a matching server to another
	// backend (the first matching route's), without terminating TLS: only with ModeTCP and no
	// TLS. The ClientHello is waited for at most InspectDelay (0: the handshake timeout).
	SNIRoutes    []SNIRoute
	InspectDelay time.Duration
	// Bind is the host:port to listen on.
	Bind string
	// Mode is ModeAMQP or ModeTCP.
	Mode Mode
	// MaxConnections caps this frontend's concurrent connections; 0 = only the global limit.
	MaxConnections int
	// Global is the process-wide connection limit shared by all frontends; nil = none.
	Global *Limiter
	// HandshakeTimeout bounds, from the accept, what a client must send before a broker is
	// involved: the PROXY header (AcceptProxy), the TLS handshake (TLS) and the AMQP protocol
	// header (ModeAMQP), all together; 0 = DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Logger receives errors and, when AccessLog is set, one line per session. nil = slog.Default().
	Logger *slog.Logger
	// AccessLog enables the per-session log line.
	AccessLog bool
	// DontLogNull suppresses the access-log line of a session in which the client sent no byte
	// (HAProxy's "option dontlognull"): probes that connect and close, refused connections
	// that sent nothing. A PROXY header does not count as a byte sent; TLS handshake bytes
	// count only when the handshake failed. Refusals are still counted, and those amqplb
	// decided (maxconn, denied) still get their rate-limited warning.
	DontLogNull bool
	// AcceptProxy makes the frontend read a PROXY protocol header (version 1 or 2) first on
	// every connection, within the handshake timeout; a connection without a valid one is
	// closed (refused "bad_proxy"). The header's source address is the client's address from
	// then on: in the access log (with the peer as "via"), for ContentRules, for source balancing
	// and in the PROXY header sent to servers. A v2 LOCAL (or v1 UNKNOWN) header keeps the
	// peer's address.
	AcceptProxy bool
	// TLS, when not nil, terminates TLS on the frontend (after the PROXY header, if any): the
	// handshake must complete within the handshake timeout or the connection is closed
	// (refused "tls_handshake"). It is a server configuration; a reload may replace it.
	TLS *tls.Config
	// Rules are tcp-request connection rules, evaluated in order on the connecting peer's
	// address at accept, before any byte is read, with or without AcceptProxy (as in HAProxy:
	// behind another balancer they see that balancer, so they can say who may send PROXY
	// headers). The first whose Match reports true decides; no match accepts. A rejected client
	// is closed at once (refused "denied").
	Rules []Rule
	// Protocols are the AMQP versions accepted in ModeAMQP; 0 means AMQP091|AMQP10.
	Protocols Protocols
	// ParkAfter is how long a relaying session must have moved no byte before its goroutines
	// are let go (park.go): 0 means DefaultParkAfter, negative never. Linux only. A reload's
	// value applies to every session from the next sweep on.
	ParkAfter time.Duration
	// ContentRules are tcp-request content (and session) rules: evaluated like Rules, after
	// them and on their own (an accept among Rules does not skip them), on the client's
	// address: the PROXY header's source with AcceptProxy (once the header is read), else the
	// peer's, at accept.
	ContentRules []Rule
}

// Rule is one tcp-request connection rule: when Match reports true for the client's address
// (IPv4 addresses are never IPv4-mapped IPv6), the connection is rejected (Reject) or accepted,
// and no later rule is evaluated. A nil Match matches every address.
type Rule struct {
	// Reject closes a matching connection; false accepts it.
	Reject bool
	// Match reports whether the rule applies to the address.
	Match func(netip.Addr) bool
}

// rejected evaluates rules on a: the first matching rule decides, no match accepts. A zone
// (fe80::1%eth0) is left out: prefixes never contain an address with one.
func rejected(rules []Rule, a netip.Addr) bool {
	a = a.WithZone("")
	for _, r := range rules {
		if r.Match == nil || r.Match(a) {
			return r.Reject
		}
	}
	return false
}

// Frontend is a listener and the sessions it accepted.
type Frontend struct {
	opts  FrontendOptions // as given to NewFrontend; Update changes only set, limit and route
	set   atomic.Pointer[settings]
	limit *Limiter
	route atomic.Pointer[Route]

	ln *net.TCPListener

	// hard is cancelled when remaining sessions must end now (after a drain timed out).
	hard       context.Context
	hardCancel context.CancelFunc

	wg       sync.WaitGroup // one per session goroutine
	mu       sync.Mutex     // guards sessions; taken once at a session's start and end, never per read
	sessions map[*session]struct{}
	closing  bool

	// parker parks idle sessions (park.go); nil before Serve, off, or once stopped (then it is
	// in parkerStopped, under mu, for Shutdown to wait for).
	parker        atomic.Pointer[parker]
	parkerStopped []*parker

	total    atomic.Uint64
	refused  [len(refusalOrder)]atomic.Uint64 // indexed like RefuseReasons
	throttle logThrottle
}

// settings are the options a reload may change on a running frontend. A session reads them
// once, when it starts.
type settings struct {
	name         string
	mode         Mode
	handshake    time.Duration
	accessLog    bool
	dontLogNull  bool
	acceptProxy  bool
	protocols    Protocols
	tls          *tls.Config
	rules        []Rule
	content      []Rule
	sni          []SNIRoute
	inspectDelay time.Duration
	parkAfter    time.Duration // resolved: negative means never
	log          *slog.Logger
}

func newSettings(o FrontendOptions) *settings {
	st := &settings{name: o.Name, mode: o.Mode, handshake: o.HandshakeTimeout, accessLog: o.AccessLog,
		dontLogNull: o.DontLogNull, acceptProxy: o.AcceptProxy, tls: o.TLS, rules: o.Rules, content: o.ContentRules, log: o.Logger,
		sni: o.SNIRoutes, inspectDelay: o.InspectDelay, parkAfter: o.ParkAfter}
	if st.parkAfter == 0 {
		st.parkAfter = parkAfterDefault
	}
	if st.protocols = o.Protocols; st.protocols == 0 {
		st.protocols = AMQP091 | AMQP10
	}
	if st.handshake <= 0 {
		st.handshake = DefaultHandshakeTimeout
	}
	if st.log == nil {
		st.log = slog.Default()
	}
	st.log = st.log.With("frontend", o.Name)
	return st
}

// NewFrontend returns a frontend that will send connections along r. Call Listen, then Serve.
func NewFrontend(o FrontendOptions, r *Route) *Frontend {
	f := &Frontend{
		opts:     o,
		limit:    NewLimiter(o.MaxConnections),
		sessions: make(map[*session]struct{}),
		throttle: logThrottle{interval: time.Second},
	}
	f.set.Store(newSettings(o))
	f.hard, f.hardCancel = context.WithCancel(context.Background())
	f.route.Store(r)
	return f
}

// Update applies a reloaded configuration to a running frontend: its name, mode, handshake
// timeout, access log options, accept-proxy, TLS configuration (a reloaded certificate), rules,
// max_connections and route change for new connections; the listener (and so o.Bind) and the
// global limiter stay. Established sessions are not touched.
func (f *Frontend) Update(o FrontendOptions, r *Route) {
	f.set.Store(newSettings(o))
	f.limit.SetMax(o.MaxConnections)
	f.route.Store(r)
}

// Name returns the frontend's name.
func (f *Frontend) Name() string { return f.set.Load().name }

// Bind returns the address the frontend was asked to listen on.
func (f *Frontend) Bind() string { return f.opts.Bind }

func (f *Frontend) log() *slog.Logger { return f.set.Load().log }

// Route returns the route new connections take.
func (f *Frontend) Route() *Route { return f.route.Load() }

// SetRoute changes where new connections go; established sessions keep their server.
func (f *Frontend) SetRoute(r *Route) { f.route.Store(r) }

// Listen binds the frontend's address. It is separate from Serve so that a bind error is
// reported before anything starts serving.
func (f *Frontend) Listen() error {
	// No keep-alive from the listener: the session sets its route's (setKeepAlive), which
	// otherwise comes on top of Go's default, four system calls per connection more.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", f.opts.Bind)
	if err != nil {
		return fmt.Errorf("frontend %s: listen %s: %w", f.Name(), f.opts.Bind, err)
	}
	f.ln = ln.(*net.TCPListener)
	return nil
}

// Addr returns the bound address (useful with port 0), or nil before Listen.
func (f *Frontend) Addr() net.Addr {
	if f.ln == nil {
		return nil
	}
	return f.ln.Addr()
}

// acceptor is the part of *net.TCPListener the accept loop uses; tests substitute it.
type acceptor interface {
	AcceptTCP() (*net.TCPConn, error)
}

// Serve runs the accept loop until Close or Shutdown. It returns nil when the listener was
// closed on purpose. Errors from Accept never end it: temporary ones (EMFILE, ENFILE, ECONNABORTED,
// …) are logged and retried with a backoff from 5 ms to 1 s, so the frontend keeps serving once
// file descriptors are free again.
func (f *Frontend) Serve() error {
	if f.ln == nil {
		return fmt.Errorf("frontend %s: Serve before Listen", f.Name())
	}
	return f.serve(f.ln)
}

func (f *Frontend) serve(ln acceptor) error {
	f.startParker()
	const minBackoff, maxBackoff = 5 * time.Millisecond, time.Second
	backoff := time.Duration(0)
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if ok, n := f.throttle.allow(); ok {
				f.log().Warn("accept failed; backing off", "err", err, "backoff", backoff, "suppressed", n)
			}
			select {
			case <-time.After(backoff):
			case <-f.hard.Done():
				return nil
			}
			continue
		}
		backoff = 0
		f.admit(c)
	}
}

// admit applies the rules (content rules wait for a PROXY header, if any) and the connection limits,
// and starts the session goroutine. A connection rejected by a rule or past a limit is closed at
// once, before any byte is read and before any broker is involved.
func (f *Frontend) admit(c *net.TCPConn) {
	st := f.set.Load()
	if len(st.rules)+len(st.content) > 0 && (rejected(st.rules, addrPort(c.RemoteAddr()).Addr()) ||
		!st.acceptProxy && rejected(st.content, addrPort(c.RemoteAddr()).Addr())) {
		f.refuse(c, st, EndDenied, "denied by a tcp-request rule")
		return
	}
	if !f.opts.Global.Acquire() {
		f.refuse(c, st, EndRefusedMaxConn, "global max_connections reached", "limit", f.opts.Global.Max())
		return
	}
	if !f.limit.Acquire() {
		f.opts.Global.Release()
		f.refuse(c, st, EndRefusedMaxConn, "frontend max_connections reached", "limit", f.limit.Max())
		return
	}
	s := newSession(f, st, c)
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		f.limit.Release()
		f.opts.Global.Release()
		_ = c.Close()
		return
	}
	f.sessions[s] = struct{}{}
	f.wg.Add(1)
	f.mu.Unlock()
	f.total.Add(1)
	sessionPool.Go(s.run)
}

// refuse closes c, counts the refusal and logs it, at most once a second.
// With the access log on, the line is the session's access-log line (end=refused_maxconn, or
// end=denied); with DontLogNull too, it is a warning instead, since the client sent nothing.
func (f *Frontend) refuse(c *net.TCPConn, st *settings, end Reason, msg string, args ...any) {
	addr := c.RemoteAddr()
	f.countRefused(end)
	_ = c.Close()
	if ok, n := f.throttle.allow(); ok {
		label, _ := end.Refusal()
		args = append(args, "reason", label, "client", addr.String(), "suppressed", n)
		if st.accessLog && !st.dontLogNull {
			st.log.Warn("session", append([]any{"end", end.String(), "detail", msg}, args...)...)
		} else {
			st.log.Warn("connection refused: "+msg, args...)
		}
	}
}

// countRefused counts a refusal (r must be one; other reasons are not counted).
func (f *Frontend) countRefused(r Reason) {
	if i := refusalIndex[r]; i >= 0 {
		f.refused[i].Add(1)
	}
}

// done is called by a session when it has ended and closed its sockets.
func (f *Frontend) done(s *session) {
	f.mu.Lock()
	delete(f.sessions, s)
	if f.closing && len(f.sessions) == 0 {
		f.stopParker()
	}
	f.mu.Unlock()
	f.limit.Release()
	f.opts.Global.Release()
	f.wg.Done()
}

// Close stops accepting new connections; established sessions go on. Connection attempts
// after Close are refused by the kernel at once.
func (f *Frontend) Close() error {
	f.mu.Lock()
	f.closing = true
	if len(f.sessions) == 0 {
		f.stopParker()
	}
	f.mu.Unlock()
	if f.ln == nil {
		return nil
	}
	if err := f.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, waits for sessions to end until ctx is done, then closes the ones
// left (logged as "shutdown") and waits until they have ended. Their goroutines go back to the
// pool (gopool.go), where they wait a moment for another session before they exit. It returns
// ctx's error if sessions had to be cut.
func (f *Frontend) Shutdown(ctx context.Context) error {
	_ = f.Close()
	idle := make(chan struct{})
	go func() { f.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		f.hardCancel()
		f.parkerDone()
		return nil
	case <-ctx.Done():
	}
	f.hardCancel()
	f.abortWhere(func(*session) bool { return true }, EndShutdown)
	<-idle
	f.parkerDone()
	return ctx.Err()
}

// parkerDone waits for the goroutines of the stopped parker (the last session's end stops it).
func (f *Frontend) parkerDone() {
	f.mu.Lock()
	stopped := f.parkerStopped
	f.mu.Unlock()
	for _, p := range stopped {
		p.wg.Wait()
	}
}

// CloseSessions ends every session on server s with the given end reason (for example when s
// is marked down and the backend says to shut its sessions down) and returns how many it closed.
func (f *Frontend) CloseSessions(s *backend.Server, reason Reason) int {
	return f.abortWhere(func(x *session) bool { return x.server() == s }, reason)
}

func (f *Frontend) abortWhere(match func(*session) bool, reason Reason) int {
	f.mu.Lock()
	var victims []*session
	for s := range f.sessions {
		if match(s) {
			victims = append(victims, s)
		}
	}
	f.mu.Unlock()
	for _, s := range victims {
		s.abort(reason)
	}
	return len(victims)
}

// Sessions returns a snapshot of every open session of the frontend.
func (f *Frontend) Sessions() []SessionInfo {
	f.mu.Lock()
	list := make([]*session, 0, len(f.sessions))
	for s := range f.sessions {
		list = append(list, s)
	}
	f.mu.Unlock()
	out := make([]SessionInfo, len(list))
	for i, s := range list {
		out[i] = s.info()
	}
	return out
}

// CloseSession ends the session with the given id (end closed_by_admin) and reports whether
// the frontend had it.
func (f *Frontend) CloseSession(id uint64) bool {
	return f.abortWhere(func(s *session) bool { return s.id == id }, EndClosedByAdmin) > 0
}

// CloseGracefully ends the session with the given id as a broker closing it would, with
// Connection.Close 320 "CONNECTION_FORCED - text" in AMQP 0-9-1 and close with
// amqp:connection:forced and description text in AMQP 1.0, at a frame boundary; r is its end
// reason. The close runs on the session's goroutine; a session that cannot be closed so (TCP
// mode, or one that does not finish within a few seconds) is aborted. It reports whether the
// frontend had the session and it was not ending already.
func (f *Frontend) CloseGracefully(id uint64, r Reason, text string) bool {
	f.mu.Lock()
	var victim *session
	for s := range f.sessions {
		if s.id == id {
			victim = s
			break
		}
	}
	f.mu.Unlock()
	return victim != nil && victim.closeGracefully(r, text)
}

// EndAs records r as the end reason of the session with the given id, without ending it: for a
// session that something else is about to end (a broker asked through its management API to
// close the connection, say), so that the access log says why. The first reason recorded wins.
// It reports whether the frontend had the session and r was recorded.
func (f *Frontend) EndAs(id uint64, r Reason) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.sessions {
		if s.id == id {
			return s.end(r)
		}
	}
	return false
}

// Stats is a snapshot of a frontend's counters.
type Stats struct {
	// Active is the number of open client connections.
	Active int
	// Total counts connections admitted since start (refused ones excluded).
	Total uint64
	// Refused counts refused connections by reason (see RefuseReasons).
	Refused map[string]uint64
	// Parked is the number of open sessions parked as idle (no goroutine; see park.go).
	Parked int
}

// Stats returns the frontend's counters.
func (f *Frontend) Stats() Stats {
	f.mu.Lock()
	active := len(f.sessions)
	f.mu.Unlock()
	st := Stats{Active: active, Total: f.total.Load(), Refused: make(map[string]uint64, len(refusalOrder)),
		Parked: f.parker.Load().parkedCount()}
	for i, r := range RefuseReasons() {
		st.Refused[r] = f.refused[i].Load()
	}
	return st
}
