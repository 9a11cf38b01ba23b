package rebalance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// Reason is the X-Reason amqplb gives the broker when it asks it to close a connection: the
// client gets it as the reply text of the broker's Connection.Close (code 320).
const Reason = "amqplb rebalance"

// Management finds a session's connection in RabbitMQ's management API and asks the broker to
// close it (DELETE /api/connections/NAME with X-Reason), so the client gets a proper
// Connection.Close 320 CONNECTION_FORCED, as when an operator closes it, and reconnects. It
// never touches the session's sockets.
type Management struct {
	// Username and Password authenticate (HTTP basic); both empty mean guest/guest.
	Username, Password string
	// Timeout bounds each request; 0 means 5 s.
	Timeout time.Duration
	client  *http.Client
}

// NewManagement returns a Management with its own HTTP client, which reaches the nodes
// directly (no HTTP_PROXY) and keeps a few idle connections for the next close.
func NewManagement(username, password string, timeout time.Duration) *Management {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Management{Username: username, Password: password, Timeout: timeout, client: &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Conn is a broker connection found by Find.
type Conn struct {
	// Base is the management API that listed it (http://host:port).
	Base string
	// Name is the broker's name for the connection ("127.0.0.1:54321 -> 127.0.0.1:5672").
	Name string
}

// Find looks for the connection whose peer is upstream (amqplb's own address on the server
// connection) and, when brokerPort is not 0, whose broker port is brokerPort, in the connection
// list of each management API of bases in turn (base URLs, http://host:port; the server's own
// node first: any node of a cluster lists every connection). It returns ErrNotListed when an
// API answered and none listed it (the list lags a few seconds behind), and the last error
// when none answered.
func (m *Management) Find(ctx context.Context, bases []string, upstream netip.AddrPort, brokerPort int) (Conn, error) {
	if !upstream.IsValid() {
		return Conn{}, ErrNotListed
	}
	var lastErr error
	answered := false
	for _, base := range bases {
		var conns []struct {
			Name     string `json:"name"`
			PeerHost string `json:"peer_host"`
			PeerPort int    `json:"peer_port"`
			Port     int    `json:"port"`
		}
		if err := m.do(ctx, http.MethodGet, base+"/api/connections?columns=name,peer_host,peer_port,port", &conns); err != nil {
			lastErr = err
			continue
		}
		answered = true
		for _, c := range conns {
			host, err := netip.ParseAddr(c.PeerHost)
			if err != nil || host.Unmap() != upstream.Addr().Unmap() || c.PeerPort != int(upstream.Port()) {
				continue
			}
			if brokerPort != 0 && c.Port != 0 && c.Port != brokerPort {
				continue
			}
			return Conn{Base: base, Name: c.Name}, nil
		}
	}
	if answered || lastErr == nil {
		return Conn{}, ErrNotListed
	}
	return Conn{}, lastErr
}

// Delete asks the broker to close c, with Reason. A connection already gone (404) is ErrGone.
func (m *Management) Delete(ctx context.Context, c Conn) error {
	return m.do(ctx, http.MethodDelete, c.Base+"/api/connections/"+url.PathEscape(c.Name), nil)
}

func (m *Management) do(ctx context.Context, method, u string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	user, pass := m.Username, m.Password
	if user == "" && pass == "" {
		user, pass = "guest", "guest"
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("X-Reason", Reason)
	resp, err := m.client.Do(req)
	if err != nil {
		return fmt.Errorf("management API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("management API: %s %s: %w", method, req.URL.Redacted(), err)
	}
	switch {
	case method == http.MethodDelete && resp.StatusCode == http.StatusNotFound:
		return ErrGone
	case resp.StatusCode/100 != 2:
		if len(body) > 200 {
			body = body[:200]
		}
		return fmt.Errorf("management API: %s %s: %s: %s", method, req.URL.Redacted(), resp.Status, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("management API: %s %s: %w", method, req.URL.Redacted(), err)
	}
	return nil
}

// Sticky returns the peers (amqplb's upstream addresses, as Session.Upstream) of the broker
// connections that consume from an exclusive or auto-delete queue: closing one deletes the queue
// (or, for auto-delete, may), and its client must declare it again and loses what was in it, so
// Plan closes such sessions last. It asks the first of bases that answers (any node of a
// cluster lists every consumer and queue) for GET /api/consumers and /api/queues, with only the
// columns it reads.
func (m *Management) Sticky(ctx context.Context, bases []string) (map[netip.AddrPort]bool, error) {
	var lastErr error
	for _, base := range bases {
		var consumers []struct {
			// An object, or [] (Erlang's empty proplist) while the broker has no details of
			// the channel: a consumer whose channel is just opening or closing, on any node.
			Channel json.RawMessage `json:"channel_details"`
			Queue   struct {
				Name  string `json:"name"`
				VHost string `json:"vhost"`
			} `json:"queue"`
		}
		if lastErr = m.do(ctx, http.MethodGet, base+"/api/consumers?columns=queue.name,queue.vhost,channel_details.peer_host,channel_details.peer_port", &consumers); lastErr != nil {
			continue
		}
		out := map[netip.AddrPort]bool{}
		if len(consumers) == 0 {
			return out, nil
		}
		var queues []struct {
			Name       string `json:"name"`
			VHost      string `json:"vhost"`
			Exclusive  bool   `json:"exclusive"`
			AutoDelete bool   `json:"auto_delete"`
		}
		if lastErr = m.do(ctx, http.MethodGet, base+"/api/queues?columns=name,vhost,exclusive,auto_delete", &queues); lastErr != nil {
			continue
		}
		sticky := map[[2]string]bool{}
		for _, q := range queues {
			if q.Exclusive || q.AutoDelete {
				sticky[[2]string{q.VHost, q.Name}] = true
			}
		}
		for _, c := range consumers {
			var ch struct {
				PeerHost string `json:"peer_host"`
				PeerPort int    `json:"peer_port"`
			}
			if json.Unmarshal(c.Channel, &ch) != nil {
				continue
			}
			host, err := netip.ParseAddr(ch.PeerHost)
			if err != nil || ch.PeerPort <= 0 || ch.PeerPort > 65535 || !sticky[[2]string{c.Queue.VHost, c.Queue.Name}] {
				continue
			}
			out[netip.AddrPortFrom(host.Unmap(), uint16(ch.PeerPort))] = true
		}
		return out, nil
	}
	return nil, lastErr
}
