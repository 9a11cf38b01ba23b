// Package backend owns the servers amqplb sends connections to: a Server (its address, weight,
// state machine, slow start, connection slots and traffic counters, all in atomics so the data
// path never takes a lock) and a Backend (a named, ordered set of servers). Dialing a server
// lives here too, for sessions and, with DialOptions.Check, for health checks (a check port,
// with or without the server's TLS and PROXY header).
//
// The package knows nothing of sessions, balancing policies, health checks or HTTP: those
// packages read and change a Server through its methods. Health checks only tell a Server
// their verdict (SetHealth, and SetAgentHealth for an agent check), whether the broker is in
// maintenance mode (SetMaintenance), and take it out of rotation after a failed dial
// (MarkSuspect, ClearSuspect); an agent check also relays its agent's say (SetAdmin,
// SetWeight, SetMaxConnections). What a check found, why and how long it took is package
// healthcheck's.
package backend

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
)

// State is the administrative and health state of a server.
type State int32

// The states a server can be in. Only StateUp servers receive new connections.
const (
	// StateUp: the server receives new connections.
	StateUp State = iota
	// StateDown: the server failed its checks; no new connections.
	StateDown
	// StateDrain: set by an operator, or the broker is in maintenance mode (rabbitmq-upgrade
	// drain, seen by the health checks); no new connections, existing ones stay.
	StateDrain
	// StateMaint: set by an operator; no new connections and no checks.
	StateMaint
)

var stateNames = [...]string{StateUp: "up", StateDown: "down", StateDrain: "drain", StateMaint: "maint"}

// String returns the state's name as used in the API and metrics: up, down, drain or maint.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// MaxWeight is the largest weight a server may have, as in HAProxy.
const MaxWeight = 256

// ServerOptions describes a server as configured.
type ServerOptions struct {
	// Name identifies the server within its backend.
	Name string
	// Address is host:port; a host name is resolved at every dial.
	Address string
	// Weight is the relative share of new connections, 0..MaxWeight; 0 means none.
	Weight int
	// Backup servers receive connections only when no active server is eligible.
	Backup bool
	// MaxConnections caps the server's concurrent sessions; 0 means no cap.
	MaxConnections int
	// Slowstart ramps the effective weight linearly up to Weight over this long after the
	// server comes back up; 0 means no ramp.
	Slowstart time.Duration
	// CheckPort, when not 0, is the port health checks connect to instead of Address's
	// (HAProxy's "port" server option).
	CheckPort int
	// TLS, when not nil, makes every connection to the server TLS (HAProxy's "ssl"), sessions
	// and health checks alike. It is a client configuration: RootCAs, ServerName, and
	// InsecureSkipVerify for "verify none".
	TLS *tls.Config
	// SendProxy is the PROXY protocol version written first on every connection to the server:
	// 0 (none), 1 or 2.
	SendProxy int
	// CheckWithoutTLS and CheckWithoutProxy make health checks plain TCP, or leave the PROXY
	// header out, although sessions use TLS or send one: a check on another port (CheckPort)
	// usually reaches a service that does not (HAProxy's check-ssl and check-send-proxy
	// defaults).
	CheckWithoutTLS, CheckWithoutProxy bool
}

// Admin is the operator's say over a server, set through the admin API.
type Admin int32

// Operator states. AdminReady leaves the server to its health checks.
const (
	// AdminReady: the health checks decide whether the server is up.
	AdminReady Admin = iota
	// AdminDrain: no new connections; existing ones stay; checks go on.
	AdminDrain
	// AdminMaint: no new connections and no checks.
	AdminMaint
)

// String returns "ready", "drain" or "maint", the words of the admin API.
func (a Admin) String() string {
	switch a {
	case AdminDrain:
		return "drain"
	case AdminMaint:
		return "maint"
	}
	return "ready"
}

// ParseAdmin maps "ready", "drain" or "maint" to an Admin state.
func ParseAdmin(s string) (Admin, error) {
	switch s {
	case "ready":
		return AdminReady, nil
	case "drain":
		return AdminDrain, nil
	case "maint":
		return AdminMaint, nil
	}
	return 0, fmt.Errorf("unknown state %q (want ready, drain or maint)", s)
}

// Server is one broker of a backend. Every field that changes at run time is an atomic, so
// balancers, sessions, checks and the admin API read and change it without locks.
//
// Its State combines three inputs: health (up or down, set by checks and by an agent), the broker's
// maintenance mode (set by checks that saw the node drained: it makes the server drain, whatever
// its health) and the operator's Admin state (ready, drain, maint), which takes precedence over
// both. An operator's ready does not end the broker's maintenance: only the checks do. A server
// can also be suspect: a session failed to connect to it, so it gets no new connections until a
// check passes again.
type Server struct {
	name    string
	address string

	backup    atomic.Bool
	maxConn   atomic.Int64
	slowstart atomic.Int64 // time.Duration

	weight  atomic.Int32
	initial atomic.Int32 // the configured weight: the base of a relative weight ("50%")
	down    atomic.Bool  // health: true once checks took it down
	inMaint atomic.Bool  // the broker is in maintenance mode, as the checks saw
	agentDn atomic.Bool  // the agent check said down, fail or stopped
	admin   atomic.Int32
	suspect atomic.Bool
	upSince atomic.Int64 // unix nanos of the last transition to up; 0 = up since start (no ramp)
	dialing atomic.Pointer[dialSettings]
	stateMu sync.Mutex // serialises state changes so transitions are counted exactly once

	active        atomic.Int64
	total         atomic.Uint64
	connectErrors atomic.Uint64
	bytesToServer atomic.Uint64
	bytesToClient atomic.Uint64
	transitions   [numStates]atomic.Uint64
}

const numStates = 4

// NewServer returns a server in StateUp with the given options. Weights outside 0..MaxWeight
// are clamped; config validation rejects them before they get here.
func NewServer(o ServerOptions) *Server {
	s := &Server{name: o.Name, address: o.Address}
	s.Update(o)
	return s
}

// Update applies reloaded options (weight, backup, max_connections, slowstart, dialing) to a
// running server; its name, address, state and counters stay.
func (s *Server) Update(o ServerOptions) {
	s.SetWeight(o.Weight)
	s.initial.Store(int32(min(max(o.Weight, 0), MaxWeight)))
	s.backup.Store(o.Backup)
	s.maxConn.Store(int64(max(o.MaxConnections, 0)))
	s.slowstart.Store(int64(max(o.Slowstart, 0)))
	ds := &dialSettings{tls: o.TLS, sendProxy: o.SendProxy, checkAddress: s.address, checkTLS: o.TLS, checkProxy: o.SendProxy}
	if o.CheckWithoutTLS {
		ds.checkTLS = nil
	}
	if o.CheckWithoutProxy {
		ds.checkProxy = 0
	}
	if o.CheckPort > 0 {
		if host, _, err := net.SplitHostPort(s.address); err == nil {
			ds.checkAddress = net.JoinHostPort(host, strconv.Itoa(o.CheckPort))
		}
	}
	s.dialing.Store(ds)
}

// dialSettings are the options of a server that change how it is reached; a reload swaps them
// as a whole.
type dialSettings struct {
	tls          *tls.Config
	sendProxy    int
	checkAddress string
	checkTLS     *tls.Config // what health checks use instead of tls and sendProxy
	checkProxy   int
}

// CheckAddress returns the host:port health checks connect to: Address, or its host with
// CheckPort.
func (s *Server) CheckAddress() string { return s.dialing.Load().checkAddress }

// TLS returns the client TLS configuration used to reach the server, or nil for plain TCP.
func (s *Server) TLS() *tls.Config { return s.dialing.Load().tls }

// SendProxy returns the PROXY protocol version written to the server: 0 (none), 1 or 2.
func (s *Server) SendProxy() int { return s.dialing.Load().sendProxy }

// CheckSendProxy returns the PROXY protocol version health checks write: SendProxy, or 0 with
// CheckWithoutProxy.
func (s *Server) CheckSendProxy() int { return s.dialing.Load().checkProxy }

// CheckTLS returns the TLS configuration health checks use: TLS, or nil with CheckWithoutTLS.
func (s *Server) CheckTLS() *tls.Config { return s.dialing.Load().checkTLS }

// Name returns the server's name within its backend.
func (s *Server) Name() string { return s.name }

// Address returns the configured host:port.
func (s *Server) Address() string { return s.address }

// Backup reports whether the server is a backup server.
func (s *Server) Backup() bool { return s.backup.Load() }

// MaxConnections returns the per-server session cap; 0 means no cap.
func (s *Server) MaxConnections() int { return int(s.maxConn.Load()) }

// SetMaxConnections changes the per-server session cap (0: none) until the next reload, as
// HAProxy's "set maxconn server" does; sessions already open stay.
func (s *Server) SetMaxConnections(n int) { s.maxConn.Store(int64(max(n, 0))) }

// InitialWeight returns the weight the configuration gave, which an operator's weight
// overrides until the next reload (HAProxy's iweight).
func (s *Server) InitialWeight() int { return int(s.initial.Load()) }

// Weight returns the configured (or operator-set) weight.
func (s *Server) Weight() int { return int(s.weight.Load()) }

// SetWeight changes the weight, clamped to 0..MaxWeight.
func (s *Server) SetWeight(w int) { s.weight.Store(int32(min(max(w, 0), MaxWeight))) }

// EffectiveWeight is the weight balancers use for new connections: the weight, ramped up
// linearly from 1 over the slow-start period after the server came back up.
func (s *Server) EffectiveWeight() int {
	w := int(s.weight.Load())
	slowstart := s.slowstart.Load()
	if slowstart <= 0 || w == 0 {
		return w
	}
	since := s.upSince.Load()
	if since == 0 {
		return w
	}
	elapsed := time.Now().UnixNano() - since
	if elapsed >= slowstart {
		return w
	}
	return max(1, int(int64(w)*elapsed/slowstart))
}

// State returns the current state: maint or drain when an operator says so, else drain while
// the broker is in maintenance mode, else up or down.
func (s *Server) State() State {
	switch Admin(s.admin.Load()) {
	case AdminMaint:
		return StateMaint
	case AdminDrain:
		return StateDrain
	}
	if s.inMaint.Load() {
		return StateDrain
	}
	if s.down.Load() || s.agentDn.Load() {
		return StateDown
	}
	return StateUp
}

// change applies f under the state lock and counts a transition if the State changed.
func (s *Server) change(f func()) (from, to State) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	from = s.State()
	f()
	to = s.State()
	if to != from {
		s.transitions[to].Add(1)
		if to == StateUp {
			s.upSince.Store(time.Now().UnixNano())
		}
	}
	return from, to
}

// SetHealth records the checks' verdict and returns the State before and after.
func (s *Server) SetHealth(up bool) (from, to State) {
	return s.change(func() {
		s.down.Store(!up)
		if up {
			s.suspect.Store(false)
		}
	})
}

// Healthy reports the checks' verdict, whatever the operator's state.
func (s *Server) Healthy() bool { return !s.down.Load() }

// SetAgentHealth records an agent check's verdict (HAProxy's agent "down", "fail" or "stopped",
// and "up" to end it) and returns the State before and after. A server is down while either
// its health checks or its agent say so, as in HAProxy.
func (s *Server) SetAgentHealth(up bool) (from, to State) {
	return s.change(func() { s.agentDn.Store(!up) })
}

// AgentHealthy reports whether the agent has not said the server is down.
func (s *Server) AgentHealthy() bool { return !s.agentDn.Load() }

// SetMaintenance records whether the broker is in maintenance mode (rabbitmq-upgrade drain), as
// the health checks saw it, and returns the State before and after. While it is, the server is
// StateDrain unless the operator says maint.
func (s *Server) SetMaintenance(on bool) (from, to State) {
	return s.change(func() { s.inMaint.Store(on) })
}

// Maintenance reports whether the checks saw the broker in maintenance mode.
func (s *Server) Maintenance() bool { return s.inMaint.Load() }

// Admin returns the operator's state.
func (s *Server) Admin() Admin { return Admin(s.admin.Load()) }

// SetAdmin sets the operator's state and returns the State before and after.
func (s *Server) SetAdmin(a Admin) (from, to State) {
	return s.change(func() { s.admin.Store(int32(a)) })
}

// SetState forces a State: up (ready, healthy, not in maintenance), down (unhealthy, not in
// maintenance), drain or maint.
// It exists for tests and tools; the checks use SetHealth and operators SetAdmin.
func (s *Server) SetState(st State) State {
	from, _ := s.change(func() {
		switch st {
		case StateUp:
			s.admin.Store(int32(AdminReady))
			s.down.Store(false)
			s.inMaint.Store(false)
			s.agentDn.Store(false)
		case StateDown:
			s.admin.Store(int32(AdminReady))
			s.down.Store(true)
			s.inMaint.Store(false)
		case StateDrain:
			s.admin.Store(int32(AdminDrain))
		case StateMaint:
			s.admin.Store(int32(AdminMaint))
		}
	})
	return from
}

// Transitions returns how many times the server entered state to.
func (s *Server) Transitions(to State) uint64 {
	if to < 0 || int(to) >= numStates {
		return 0
	}
	return s.transitions[to].Load()
}

// MarkSuspect takes the server out of rotation for new connections until a check passes
// (passive detection after a failed dial). It reports whether the server was not suspect before.
func (s *Server) MarkSuspect() bool { return !s.suspect.Swap(true) }

// Suspect reports whether a failed dial took the server out of rotation.
func (s *Server) Suspect() bool { return s.suspect.Load() }

// ClearSuspect puts a suspect server back into rotation.
func (s *Server) ClearSuspect() { s.suspect.Store(false) }

// Full reports whether the server has reached its MaxConnections.
func (s *Server) Full() bool {
	m := s.maxConn.Load()
	return m > 0 && s.active.Load() >= m
}

// Eligible reports whether the server may take a new connection now: it is up, not suspect,
// has a weight above zero and a free slot. Balancers pick only among eligible servers.
func (s *Server) Eligible() bool {
	return s.State() == StateUp && !s.suspect.Load() && s.weight.Load() > 0 && !s.Full()
}

// Acquire takes a connection slot. It fails when the server is full, so a race between two
// sessions picking the last slot lets only one through.
func (s *Server) Acquire() bool {
	n := s.active.Add(1)
	if m := s.maxConn.Load(); m > 0 && n > m {
		s.active.Add(-1)
		return false
	}
	return true
}

// Connected counts a session established to the server (a slot taken for a dial that then
// failed is not one).
func (s *Server) Connected() { s.total.Add(1) }

// Release returns a slot taken by Acquire.
func (s *Server) Release() { s.active.Add(-1) }

// ActiveConnections returns the number of sessions currently open to the server.
func (s *Server) ActiveConnections() int64 { return s.active.Load() }

// TotalConnections returns the number of sessions ever established to the server.
func (s *Server) TotalConnections() uint64 { return s.total.Load() }

// ConnectErrors returns the number of failed dials.
func (s *Server) ConnectErrors() uint64 { return s.connectErrors.Load() }

// AddBytes counts bytes moved: toServer from client to server, toClient back.
func (s *Server) AddBytes(toServer, toClient uint64) {
	if toServer != 0 {
		s.bytesToServer.Add(toServer)
	}
	if toClient != 0 {
		s.bytesToClient.Add(toClient)
	}
}

// BytesToServer returns the bytes sent from clients to this server.
func (s *Server) BytesToServer() uint64 { return s.bytesToServer.Load() }

// BytesToClient returns the bytes sent from this server to clients.
func (s *Server) BytesToClient() uint64 { return s.bytesToClient.Load() }

// DialOptions tunes Dial.
type DialOptions struct {
	// Timeout bounds the TCP connect (and the TLS handshake); 0 means the context's deadline only.
	Timeout time.Duration
	// KeepAlive is the TCP keep-alive period; 0 means the Go default, negative disables it.
	KeepAlive time.Duration
	// Source and Destination are the client's address and the address it connected to, for the
	// PROXY header of a server with SendProxy. When Source is not valid, the header carries the
	// new connection's own addresses (what a health check sends).
	Source, Destination netip.AddrPort
	// Check dials CheckAddress instead of Address and does not count a failure in ConnectErrors:
	// it is a health check.
	Check bool
	// ProxyLocal sends a PROXY v2 LOCAL header instead of addresses, for health checks of a
	// broker that accepts it (RabbitMQ 3.11.19, 3.12.1 and later). Only with SendProxy 2.
	ProxyLocal bool
}

// Dial connects to the server: TCP, then the PROXY header if the server has SendProxy (in one
// write, before any other byte), then the TLS handshake if it has TLS, all bounded by ctx and
// o.Timeout. The result is a *net.TCPConn without TLS and a *tls.Conn with it. A failure of a
// session's dial is counted in ConnectErrors; every failure is returned wrapped with the server's
// name and address.
func (s *Server) Dial(ctx context.Context, o DialOptions) (net.Conn, error) {
	ds := s.dialing.Load()
	addr := s.address
	if o.Check {
		addr = ds.checkAddress
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	d := net.Dialer{KeepAlive: o.KeepAlive}
	if o.KeepAlive >= 0 {
		d.KeepAliveConfig = KeepAliveConfig(o.KeepAlive)
	}
	// Not Dialer.DialTCP, though it would skip parsing the address: with no local address it
	// binds the socket to port 0 first (golang/go#81620), which makes every upstream
	// connection hold a local port of its own, whatever broker it goes to.
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		var conn net.Conn
		if conn, err = s.greet(ctx, c.(*net.TCPConn), ds, o); err == nil {
			return conn, nil
		}
		_ = c.Close()
	}
	if !o.Check {
		s.connectErrors.Add(1)
	}
	return nil, fmt.Errorf("dial server %s (%s): %w", s.name, addr, err)
}

// greet writes the PROXY header and does the TLS handshake on a new connection c, as sessions
// or (o.Check) as health checks do.
func (s *Server) greet(ctx context.Context, c *net.TCPConn, ds *dialSettings, o DialOptions) (net.Conn, error) {
	sendProxy, tlsConf := ds.sendProxy, ds.tls
	if o.Check {
		sendProxy, tlsConf = ds.checkProxy, ds.checkTLS
	}
	if sendProxy != 0 {
		h, err := ProxyHeader(sendProxy, o.Source, o.Destination, c, o.ProxyLocal)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetWriteDeadline(dl)
		}
		if _, err := c.Write(h); err != nil {
			return nil, fmt.Errorf("send PROXY header: %w", err)
		}
		_ = c.SetWriteDeadline(time.Time{})
	}
	if tlsConf == nil {
		return c, nil
	}
	tc := tls.Client(c, tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// ProxyHeader returns the PROXY protocol header (version 1 or 2) announcing a connection from
// src to dst. When src is not valid it announces c's own addresses (local to remote), or, with
// local and version 2, is a LOCAL header (no addresses; the receiver uses the real ones).
func ProxyHeader(version int, src, dst netip.AddrPort, c net.Conn, local bool) ([]byte, error) {
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("unknown PROXY protocol version %d", version)
	}
	if local && version == 2 {
		return (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
	}
	var sa, da net.Addr
	switch {
	case src.IsValid() && dst.IsValid():
		sa, da = net.TCPAddrFromAddrPort(unmapPort(src)), net.TCPAddrFromAddrPort(unmapPort(dst))
	case c != nil:
		sa, da = c.LocalAddr(), c.RemoteAddr()
	}
	// Mixed families are announced as IPv6, the IPv4 address mapped; without addresses the
	// header is v1 UNKNOWN or v2 LOCAL.
	h := proxyproto.HeaderProxyFromAddrs(byte(version), sa, da)
	return h.Format()
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Backend is a named, ordered set of servers. The order is the configuration's, which the
// "first" policy relies on. A Backend is immutable once built; a reload builds a new one.
type Backend struct {
	// Name identifies the backend.
	Name string
	// Servers lists the servers in configuration order.
	Servers []*Server
}

// Server returns the server with the given name, or nil.
func (b *Backend) Server(name string) *Server {
	for _, s := range b.Servers {
		if s.name == name {
			return s
		}
	}
	return nil
}

// UpCount returns how many servers are up.
func (b *Backend) UpCount() int {
	n := 0
	for _, s := range b.Servers {
		if s.State() == StateUp {
			n++
		}
	}
	return n
}

// KeepAliveConfig is the TCP keep-alive of a proxied socket with the given period (0: Go's
// default of 15 s): probes after period idle, every 15 s, as many as the kernel's default (9 on
// Linux). Three system calls: Go's own default sets the count too, and a listener's default
// comes before a session's own.
func KeepAliveConfig(period time.Duration) net.KeepAliveConfig {
	if period <= 0 {
		period = 15 * time.Second
	}
	return net.KeepAliveConfig{Enable: true, Idle: period, Interval: 15 * time.Second, Count: -1}
}
