package proxy

import (
	"crypto/tls"
	"net/netip"
	"time"

	"github.com/amqplb/amqplb/internal/amqpwire"
)

// The protocols a session can speak, as the API and the access log name them.
const (
	ProtoAMQP091 = "amqp-0-9-1"
	ProtoAMQP10  = "amqp-1.0"
)

// Identity is who a session's client is, as its handshake told the broker: read from the frames
// the session relays anyway, in AMQP mode only. It never holds a password or any other
// credential.
type Identity struct {
	// Protocol is ProtoAMQP091 or ProtoAMQP10; "" in TCP mode.
	Protocol string
	// Mechanism is the SASL mechanism the client chose (PLAIN, AMQPLAIN, EXTERNAL, ANONYMOUS).
	Mechanism string
	// User is the user name: PLAIN's authentication identity, AMQPLAIN's LOGIN, or with
	// EXTERNAL the subject of the TLS client certificate amqplb verified.
	User string
	// VHost is the virtual host: 0-9-1's Connection.Open, or 1.0's open hostname "vhost:NAME".
	VHost string
	// ConnectionName is the client property connection_name (0-9-1), or the container-id of the
	// client's open (1.0).
	ConnectionName string
	// ClientProduct, ClientVersion and ClientPlatform are the client properties product,
	// version and platform (0-9-1).
	ClientProduct, ClientVersion, ClientPlatform string
	// ChannelMax and FrameMax are what the client chose (0-9-1 Tune-Ok; 1.0 open).
	ChannelMax uint16
	FrameMax   uint32
	// Heartbeat is the negotiated heartbeat interval (0-9-1 Tune-Ok), or the client's idle
	// time-out (1.0 open); 0 means none.
	Heartbeat time.Duration
	// CloseCode is the reply code of the broker's Connection.Close (403, 530, ...) that the
	// client got when the handshake was refused; 0 otherwise, a refusal that a failover got
	// past included.
	CloseCode uint16
}

// SessionInfo is a snapshot of one open session, for the admin API.
type SessionInfo struct {
	// ID identifies the session in this process (POST /api/v1/sessions/{id}/close).
	ID uint64
	// Frontend is the name of the frontend that accepted it.
	Frontend string
	// Client is the client's address (a PROXY header's source, when there was one); Via is the
	// peer's address when the client came through a PROXY header, else invalid.
	Client, Via netip.AddrPort
	// Backend and Server say where the session goes; Server is "" while it connects.
	Backend, Server string
	// Identity is what the handshake said of the client, so far.
	Identity Identity
	// BytesToServer and BytesToClient count the bytes relayed each way.
	BytesToServer, BytesToClient uint64
	// Since is when the connection was accepted.
	Since time.Time
	// LastActive is when the relay last moved a byte either way (Since before the relay).
	LastActive time.Time
	// Upstream is amqplb's own address on the server connection: the peer_host and peer_port
	// the broker lists for this connection (its management API), invalid while connecting.
	Upstream netip.AddrPort
}

// identity returns what is known of the client so far; never nil.
func (s *session) identity() *Identity {
	if id := s.ident.Load(); id != nil {
		return id
	}
	return &noIdentity
}

var noIdentity Identity

// learn records more of the client's identity. The identity is copied on write: the admin API
// reads it from other goroutines.
func (s *session) learn(f func(*Identity)) {
	id := *s.identity()
	f(&id)
	s.ident.Store(&id)
}

// observe091 learns from a client frame of the 0-9-1 handshake before it is forwarded. A
// method frame that does not decode ends the session (bad_handshake): it would be relayed to a
// broker that could make no more of it.
func (s *session) observe091(f frame) error {
	if !f.is(amqpwire.MethodStartOk) && !f.is(amqpwire.MethodTuneOk) && !f.is(amqpwire.MethodOpen) {
		return nil
	}
	if f.is(amqpwire.MethodStartOk) {
		// Read without building the client-properties table: every connection passes here.
		var props [len(identityProps)]string
		mechanism, response, err := amqpwire.DecodeStartOk(f.payload(), identityProps[:], props[:])
		if err != nil {
			return refused(EndBadHandshake, "connection refused: malformed handshake frame", err).quiet()
		}
		user, err := amqpwire.SASLUser(mechanism, response)
		if err != nil {
			return refused(EndBadHandshake, "connection refused: malformed SASL response", err).quiet()
		}
		if mechanism == "EXTERNAL" {
			user = s.certSubject()
		}
		s.learn(func(id *Identity) {
			id.Mechanism, id.User = mechanism, user
			id.ConnectionName, id.ClientProduct, id.ClientVersion, id.ClientPlatform = props[0], props[1], props[2], props[3]
		})
		return nil
	}
	m, err := amqpwire.DecodeMethod(f.payload())
	if err != nil {
		return refused(EndBadHandshake, "connection refused: malformed handshake frame", err).quiet()
	}
	switch m := m.(type) {
	case *amqpwire.ConnectionTuneOk:
		s.learn(func(id *Identity) {
			id.ChannelMax, id.FrameMax = m.ChannelMax, m.FrameMax
			id.Heartbeat = time.Duration(m.Heartbeat) * time.Second
		})
	case *amqpwire.ConnectionOpen:
		s.learn(func(id *Identity) { id.VHost = m.VirtualHost })
	}
	return nil
}

// certSubject returns the subject of the client's verified TLS certificate, or "".
func (s *session) certSubject() string {
	tc, ok := s.client.(*tls.Conn)
	if !ok {
		return ""
	}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		return certs[0].Subject.String()
	}
	return ""
}

// identityProps are the client properties of a Start-Ok that the identity keeps, in the order
// observe091 reads them.
var identityProps = [...]string{"connection_name", "product", "version", "platform"}

// info returns a snapshot of the session.
func (s *session) info() SessionInfo {
	s.mu.Lock()
	from, peer, proxied, route, upstream := s.from, s.peer, s.proxied, s.route, s.upLocal
	s.mu.Unlock()
	last := max(s.lastFromClient.Load(), s.lastFromServer.Load())
	in := SessionInfo{
		ID:            s.id,
		Frontend:      s.set.name,
		Client:        from,
		Backend:       backendName(route),
		Server:        serverName(s.server()),
		Identity:      *s.identity(),
		BytesToServer: s.toServer.Load(),
		BytesToClient: s.toClient.Load(),
		Since:         s.start,
		LastActive:    s.start.Add(time.Duration(last)),
		Upstream:      upstream,
	}
	if proxied {
		in.Via = peer
	}
	return in
}
