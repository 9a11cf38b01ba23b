// Package discovery owns reading a RabbitMQ cluster's members from its management API: which
// nodes are members (GET /api/nodes), where each one serves AMQP and its management API (the
// listeners of GET /api/overview), asking the other known members when the seed does not
// answer, and a Watcher that does this every interval and reports each refresh. It never
// empties a member list because an API failed: a failed refresh keeps what the last good one
// found. It must not touch servers, sessions or configuration (cmd/amqplb turns members into
// servers), and it imports nothing of amqplb.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Member is one node of the cluster, as a server of the backend.
type Member struct {
	// Node is the Erlang node name, "rabbit@host"; the server's name.
	Node string `json:"node"`
	// Host is where the node is reached: the address its AMQP listener is bound to, or, when
	// that is a wildcard (0.0.0.0, ::), the host part of Node.
	Host string `json:"host"`
	// AMQPPort is the port of the node's AMQP 0-9-1 listener (protocol "amqp").
	AMQPPort int `json:"amqp_port"`
	// ManagementPort is the port of the node's management API (its listener "http", or
	// "https" for a seed in https), 0 when not known.
	ManagementPort int `json:"management_port"`
	// Running is /api/nodes' running: false for a member whose broker is stopped.
	Running bool `json:"running"`
}

// Address returns host:port of the node's AMQP listener.
func (m Member) Address() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.AMQPPort)) }

// Client asks management APIs for the members of a cluster.
type Client struct {
	// Username and Password authenticate (HTTP basic).
	Username, Password string
	// Timeout bounds each request; 0 means 5 s.
	Timeout time.Duration
	// Protocol is the listener protocol whose port is a member's ManagementPort: "http" (the
	// default) or "https", that of the seed's scheme.
	Protocol string
	client   *http.Client
}

// NewClient returns a Client with its own HTTP client: no HTTP_PROXY (the nodes are reached
// directly), no redirects, and a few idle connections kept for the next refresh.
func NewClient(username, password string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Client{Username: username, Password: password, Timeout: timeout, client: &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
			TLSHandshakeTimeout: timeout,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// CloseIdle closes the client's idle connections (when its Watcher stops).
func (c *Client) CloseIdle() { c.client.CloseIdleConnections() }

// node is an element of GET /api/nodes.
type node struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
}

// overview is what GET /api/overview gives that discovery reads.
type overview struct {
	Node      string     `json:"node"`
	Listeners []listener `json:"listeners"`
}

type listener struct {
	Node      string `json:"node"`
	Protocol  string `json:"protocol"`
	IPAddress string `json:"ip_address"`
	Port      int    `json:"port"`
}

// Members asks the management API at base (http[s]://host:port[/prefix]) for the cluster's
// members, in the order of /api/nodes. known gives the ports of nodes seen before: a member
// whose listeners are not listed now (a stopped broker lists none) keeps them. A member whose
// AMQP port was never seen is left out: there is no address to give it.
func (c *Client) Members(ctx context.Context, base string, known map[string]Member) ([]Member, error) {
	var nodes []node
	if err := c.get(ctx, base+"/api/nodes?columns=name,running", &nodes); err != nil {
		return nil, err
	}
	var ov overview
	if err := c.get(ctx, base+"/api/overview?columns=node,listeners", &ov); err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%s/api/nodes lists no node", base)
	}
	answering := slices.IndexFunc(nodes, func(n node) bool { return n.Name == ov.Node })
	if ov.Node != "" && answering < 0 {
		// A node that does not list itself is no member of the cluster it describes.
		return nil, fmt.Errorf("%s: node %s is not in its own /api/nodes", base, ov.Node)
	}
	out := make([]Member, 0, len(nodes))
	for _, n := range nodes {
		m := Member{Node: n.Name, Running: n.Running}
		if k, ok := known[n.Name]; ok {
			m.Host, m.AMQPPort, m.ManagementPort = k.Host, k.AMQPPort, k.ManagementPort
		}
		for _, l := range ov.Listeners {
			if l.Node != n.Name {
				continue
			}
			switch l.Protocol {
			case "amqp":
				m.AMQPPort, m.Host = l.Port, hostOf(n.Name, l.IPAddress)
			case c.protocol():
				m.ManagementPort = l.Port
			}
		}
		if m.AMQPPort == 0 || m.Host == "" {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

func (c *Client) protocol() string {
	if c.Protocol == "" {
		return "http"
	}
	return c.Protocol
}

// hostOf returns where a node's listener is reached: its bound address, unless that is a
// wildcard, in which case the host part of the node name (rabbit@HOST), which is what the
// nodes themselves resolve to reach each other.
func hostOf(nodeName, ip string) string {
	if a, err := netip.ParseAddr(ip); err == nil && !a.IsUnspecified() {
		return a.Unmap().String()
	}
	if _, host, ok := strings.Cut(nodeName, "@"); ok && host != "" {
		return host
	}
	return ""
}

// ErrStatus is wrapped by the error of an answer other than 200.
var ErrStatus = errors.New("management API answered")

func (c *Client) get(ctx context.Context, u string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.Username, c.Password)
	resp, err := c.client.Do(req)
	if err != nil {
		return err // *url.Error names the URL, never the password (basic auth is a header)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", redact(u), err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %w %s", redact(u), ErrStatus, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: %w", redact(u), err)
	}
	return nil
}

// redact drops the query of u for messages.
func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		p.RawQuery = ""
		return p.String()
	}
	return u
}

// memberBase returns the management API base URL of m, in the scheme and path prefix of seed,
// or "" when its management port is not known.
func memberBase(seed *url.URL, m Member) string {
	if m.ManagementPort == 0 || m.Host == "" {
		return ""
	}
	u := *seed
	u.Host = net.JoinHostPort(m.Host, strconv.Itoa(m.ManagementPort))
	return strings.TrimSuffix(u.String(), "/")
}
