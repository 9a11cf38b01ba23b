package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/amqplb/amqplb/internal/amqp10"
)

// handshake10 relays the opening of an AMQP 1.0 connection, whose client sent the SASL header
// (RabbitMQ 4 serves AMQP 1.0 on its AMQP port, and refuses 1.0 without SASL), up to the
// client's open, learning the client's identity on the way; the rest, the broker's open
// included, goes through the relay. The steps follow the order in which each side needs the
// other's bytes, so a client that pipelines (sasl-init, then the AMQP header and open without
// waiting) is served as one that waits:
//
//	broker: SASL header, sasl-mechanisms  → client
//	client: sasl-init (mechanism, user)   → broker;  broker: sasl-outcome → client
//	client: AMQP header                   → broker;  broker: AMQP header  → client
//	client: open (container-id, vhost, idle time-out) → broker
//
// There is no failover here: a broker that fails now ends the session, and the client
// reconnects as it would to RabbitMQ itself.
func (s *session) handshake10(brokerHeader []byte) error {
	if err := s.forwardToClient(brokerHeader); err != nil {
		return err
	}
	deadline := time.Now().Add(s.set.handshake)
	// sasl-mechanisms.
	if _, err := s.relay10(s.upIn, false, time.Now().Add(s.route.connectTimeout())); err != nil {
		return err
	}
	// sasl-init, then the broker's sasl-outcome.
	init, err := s.relay10(s.in, true, deadline)
	if err != nil {
		return err
	}
	si, err := amqp10.ParseSASLInit(init.Body)
	if err != nil {
		return refused(EndBadHandshake, "connection refused: malformed AMQP 1.0 sasl-init", err).quiet()
	}
	user := si.User
	if si.Mechanism == "EXTERNAL" {
		user = s.certSubject()
	}
	s.learn(func(id *Identity) { id.Mechanism, id.User = si.Mechanism, user })
	outcome, err := s.relay10(s.upIn, false, time.Now().Add(s.route.connectTimeout()))
	if err != nil {
		return err
	}
	if o, err := amqp10.ParseSASLOutcome(outcome.Body); err != nil || o.Code != 0 {
		return nil // refused (or not understood): the rest is between client and broker
	}
	// The AMQP headers, each way.
	if err := s.relayHeader10(s.in, true, deadline); err != nil {
		return err
	}
	if err := s.relayHeader10(s.upIn, false, time.Now().Add(s.route.connectTimeout())); err != nil {
		return err
	}
	// The client's open (empty frames, heartbeats, may come first).
	for {
		f, err := s.relay10(s.in, true, deadline)
		if err != nil {
			return err
		}
		if len(f.Body) == 0 {
			continue
		}
		o, err := amqp10.ParseOpen(f.Body)
		if err != nil {
			return refused(EndBadHandshake, "connection refused: malformed AMQP 1.0 open", err).quiet()
		}
		s.learn(func(id *Identity) {
			id.ConnectionName, id.VHost = o.ContainerID, o.VHost()
			id.ChannelMax, id.FrameMax, id.Heartbeat = o.ChannelMax, o.MaxFrameSize, o.IdleTimeout
		})
		return nil
	}
}

// relay10 reads one AMQP 1.0 frame from src (the client when toServer, else the broker) within
// deadline and forwards it to the other side.
func (s *session) relay10(src *bufConn, toServer bool, deadline time.Time) (amqp10.Frame, error) {
	_ = src.SetReadDeadline(deadline)
	f, err := amqp10.ReadFrame(src, maxHandshakeFrame)
	_ = src.SetReadDeadline(time.Time{})
	if err != nil {
		return f, s.failed10(toServer, err)
	}
	if toServer {
		return f, s.forwardToServer(f.Raw)
	}
	return f, s.forwardToClient(f.Raw)
}

// relayHeader10 reads the 8-octet AMQP 1.0 header from src and forwards it. A header other than
// the plain AMQP one (TLS inside SASL, or a peer's mistake) is passed on too: the peer that
// receives it answers as AMQP says.
func (s *session) relayHeader10(src *bufConn, toServer bool, deadline time.Time) error {
	var h [amqp10.HeaderLen]byte
	_ = src.SetReadDeadline(deadline)
	_, err := io.ReadFull(src, h[:])
	_ = src.SetReadDeadline(time.Time{})
	if err != nil {
		return s.failed10(toServer, err)
	}
	if toServer {
		return s.forwardToServer(h[:])
	}
	return s.forwardToClient(h[:])
}

// failed10 is the end of a 1.0 handshake whose client (fromClient) or broker failed to send a
// frame.
func (s *session) failed10(fromClient bool, err error) error {
	if fromClient {
		return clientHandshakeFailed(err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ended(EndServerClosed, fmt.Errorf("broker silent during the AMQP 1.0 handshake: %w", err))
	}
	return ended(EndServerClosed, err)
}
