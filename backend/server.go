// Package backend owns the servers amqplb sends connections to: a Server (its address, weight,
// state and counters, all in atomics so the data path never takes a lock) and a Backend (a named,
// ordered set of servers). Dialing a server lives here too.
//
// The package knows nothing of sessions, balancing policies, health checks or HTTP: those
// packages read and change a Server through its methods.
package backend

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// State is the administrative and health state of a server.
type State int32

// The states a server can be in. Only StateUp servers receive new connections.
const (
	// StateUp: the server receives new connections.
	StateUp State = iota
	// StateDown: the server failed its checks; no new connections.
	StateDown
	// StateDrain: set by an operator; no new connections, existing ones stay.
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
}

// Server is one broker of a backend. Every field that changes at run time is an atomic, so
// balancers, sessions, checks and the admin API read and change it without locks.
type Server struct {
	name    string
	address string
	backup  bool
	maxConn int64

	weight atomic.Int32
	state  atomic.Int32

	active        atomic.Int64
	total         atomic.Uint64
	connectErrors atomic.Uint64
	bytesToServer atomic.Uint64
	bytesToClient atomic.Uint64
}

// NewServer returns a server in StateUp with the given options. Weights outside 0..MaxWeight
// are clamped; config validation rejects them before they get here.
func NewServer(o ServerOptions) *Server {
	s := &Server{name: o.Name, address: o.Address, backup: o.Backup, maxConn: int64(max(o.MaxConnections, 0))}
	s.SetWeight(o.Weight)
	return s
}

// Name returns the server's name within its backend.
func (s *Server) Name() string { return s.name }

// Address returns the configured host:port.
func (s *Server) Address() string { return s.address }

// Backup reports whether the server is a backup server.
func (s *Server) Backup() bool { return s.backup }

// MaxConnections returns the per-server session cap; 0 means no cap.
func (s *Server) MaxConnections() int { return int(s.maxConn) }

// Weight returns the configured (or operator-set) weight.
func (s *Server) Weight() int { return int(s.weight.Load()) }

// SetWeight changes the weight, clamped to 0..MaxWeight.
func (s *Server) SetWeight(w int) { s.weight.Store(int32(min(max(w, 0), MaxWeight))) }

// EffectiveWeight is the weight balancers use for new connections.
func (s *Server) EffectiveWeight() int { return int(s.weight.Load()) }

// State returns the current state.
func (s *Server) State() State { return State(s.state.Load()) }

// SetState changes the state and returns the previous one.
func (s *Server) SetState(st State) State { return State(s.state.Swap(int32(st))) }

// Full reports whether the server has reached its MaxConnections.
func (s *Server) Full() bool { return s.maxConn > 0 && s.active.Load() >= s.maxConn }

// Eligible reports whether the server may take a new connection now: it is up, has a
// weight above zero and a free slot. Balancers pick only among eligible servers.
func (s *Server) Eligible() bool {
	return s.State() == StateUp && s.EffectiveWeight() > 0 && !s.Full()
}

// Acquire takes a connection slot. It fails when the server is full, so a race between two
// sessions picking the last slot lets only one through.
func (s *Server) Acquire() bool {
	n := s.active.Add(1)
	if s.maxConn > 0 && n > s.maxConn {
		s.active.Add(-1)
		return false
	}
	s.total.Add(1)
	return true
}

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
	// Timeout bounds the TCP connect; 0 means the context's deadline only.
	Timeout time.Duration
	// KeepAlive is the TCP keep-alive period; 0 means the Go default, negative disables it.
	KeepAlive time.Duration
}

// Dial connects to the server. A failure is counted in ConnectErrors and returned wrapped with
// the server's name and address.
func (s *Server) Dial(ctx context.Context, o DialOptions) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: o.Timeout, KeepAlive: o.KeepAlive}
	c, err := d.DialContext(ctx, "tcp", s.address)
	if err != nil {
		s.connectErrors.Add(1)
		return nil, fmt.Errorf("dial server %s (%s): %w", s.name, s.address, err)
	}
	return c.(*net.TCPConn), nil
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
