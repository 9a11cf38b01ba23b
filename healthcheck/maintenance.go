package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amqplb/amqplb/backend"
)

// KindMaintenance is the Kind of a check result that found the node in maintenance mode
// (`rabbitmq-upgrade drain`). It is no failure: it is not one of FailureKinds, is not counted in
// the failures, and leaves the server's health verdict as it was.
const KindMaintenance = "maintenance"

// MaintenanceReason is the Reason of a check result that found the node in maintenance mode.
const MaintenanceReason = "node in maintenance (rabbitmq-upgrade drain)"

// nodeNameTTL is how long the Erlang node name a server's management API gave is trusted
// before a passing check reads it again.
const nodeNameTTL = time.Minute

// A node in maintenance mode (`rabbitmq-upgrade drain`) closes its client connections and
// suspends its AMQP, management and Prometheus listeners: its own checks get "connection
// refused", like a dead node's. Only the other nodes of its cluster can tell why, so when a
// check of a server fails the Monitor asks the management API of the backend's other servers
// about the failing server's node:
//
//   - RabbitMQ 3.13 and later (4.0 included) list each node's being_drained in /api/nodes: the
//     node is in maintenance exactly when it is true.
//   - RabbitMQ 3.10 (up to 3.12) keeps the mode in its database but shows it nowhere in the
//     management API. A drained node is still a running cluster member there (running: true,
//     and /api/overview still lists its AMQP listener) while its AMQP port refuses
//     connections; a stopped (stop_app, killed) node is not running and a paused one does not
//     refuse but times out. So without being_drained, a node counts as in maintenance when the
//     check was refused while another node lists it as running, and its own management API
//     refuses connections too (a node merely configured with a wrong AMQP port does not).
//
// The failing server's node is known by the name its own /api/overview gave while it served
// (kept per server, read again every nodeNameTTL), else by the AMQP listener the asked node
// lists on the server's port.

// nodeRecord is what /api/nodes says of one node.
type nodeRecord struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
	// BeingDrained is RabbitMQ 3.13+'s maintenance flag; nil on 3.12 and older.
	BeingDrained *bool `json:"being_drained"`
}

// maintenanceVerdict is what another node said of a server's node.
type maintenanceVerdict struct {
	// known: a node answered and listed the server's node.
	known bool
	// in: the node is in maintenance mode.
	in bool
	// inferred: the node has no being_drained (RabbitMQ 3.12 and older), so in is inferred
	// from the refused check; it still needs the node's own management API to refuse too.
	inferred bool
	// node is the server's node name; peer the server whose management API answered;
	// evidence says what the answer was based on.
	node, peer, evidence string
}

// askPeers asks the management API of the other servers (those up first) what they know of
// l's node, after a failed check res of it. Every peer is asked at once; the first useful
// answer wins. The whole is bounded by ctx.
func (m *Monitor) askPeers(ctx context.Context, l *serverLoop, res Result) maintenanceVerdict {
	var peers []*serverLoop
	for _, o := range m.servers {
		if o != l && o.s.State() == backend.StateUp {
			peers = append(peers, o)
		}
	}
	for _, o := range m.servers {
		if o != l && o.s.State() != backend.StateUp {
			peers = append(peers, o)
		}
	}
	if len(peers) == 0 {
		return maintenanceVerdict{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan maintenanceVerdict, len(peers))
	for _, p := range peers {
		go func() { answers <- m.askPeer(ctx, p, l, res) }()
	}
	for range peers {
		if v := <-answers; v.known {
			return v
		}
	}
	return maintenanceVerdict{}
}

// askPeer asks peer's management API about l's node.
func (m *Monitor) askPeer(ctx context.Context, peer, l *serverLoop, res Result) maintenanceVerdict {
	pt := m.mgmtTarget(peer.s)
	v := maintenanceVerdict{node: l.node, peer: peer.s.Name()}
	if v.node == "" {
		v.node = m.nodeByListener(ctx, pt, l.s)
		if v.node == "" {
			return maintenanceVerdict{}
		}
	}
	var nodes []nodeRecord
	if m.mgmt.getJSON(ctx, pt, "/api/nodes?columns=name,running,being_drained", &nodes) != nil {
		return maintenanceVerdict{}
	}
	for _, n := range nodes {
		if n.Name != v.node {
			continue
		}
		v.known = true
		switch {
		case n.BeingDrained != nil:
			v.in, v.evidence = *n.BeingDrained, "being_drained: "+strconv.FormatBool(*n.BeingDrained)
		case n.Running && res.Kind == FailRefused:
			v.in, v.inferred = true, true
			v.evidence = "running cluster member whose AMQP port refuses connections"
		default:
			v.evidence = "running: " + strconv.FormatBool(n.Running)
		}
		return v
	}
	return maintenanceVerdict{}
}

// nodeByListener returns the node that, as peer's /api/overview lists, has an AMQP listener on
// the port of s's address (or check address), if exactly one has; "" otherwise.
func (m *Monitor) nodeByListener(ctx context.Context, peer Target, s *backend.Server) string {
	var overview struct {
		Listeners []struct {
			Node      string `json:"node"`
			Protocol  string `json:"protocol"`
			IPAddress string `json:"ip_address"`
			Port      int    `json:"port"`
		} `json:"listeners"`
	}
	if m.mgmt.getJSON(ctx, peer, "/api/overview?columns=listeners", &overview) != nil {
		return ""
	}
	ports := map[int]bool{}
	hosts := map[string]bool{}
	for _, a := range []string{s.Address(), s.CheckAddress()} {
		if h, p, err := net.SplitHostPort(a); err == nil {
			n, _ := strconv.Atoi(p)
			ports[n], hosts[h] = true, true
		}
	}
	var found string
	for _, li := range overview.Listeners {
		if li.Protocol != "amqp" && li.Protocol != "amqp/ssl" || !ports[li.Port] {
			continue
		}
		// A listener on a specific address must be on the server's (when that is an IP).
		if ip := net.ParseIP(li.IPAddress); ip != nil && !ip.IsUnspecified() && !hosts[li.IPAddress] && anyIP(hosts) {
			continue
		}
		if found != "" && found != li.Node {
			return "" // ambiguous
		}
		found = li.Node
	}
	return found
}

// anyIP reports whether one of hosts is an IP address (not a name).
func anyIP(hosts map[string]bool) bool {
	for h := range hosts {
		if net.ParseIP(h) != nil {
			return true
		}
	}
	return false
}

// refuses reports whether the management API port of t refuses TCP connections, as those of a
// node in maintenance mode do.
func (m *Monitor) refuses(ctx context.Context, t Target) bool {
	base, err := m.mgmt.baseURL(t)
	if err != nil {
		return false
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(base, "http://"))
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// mgmtTarget is the target of a management API request to s: its check address's host and its
// management port.
func (m *Monitor) mgmtTarget(s *backend.Server) Target {
	return Target{Addr: s.CheckAddress(), ManagementPort: m.mgmtOpts.serverPort(s)}
}

// learnNode keeps the Erlang name of l's node, read from its own management API after a
// passing check when the one kept is older than nodeNameTTL. Only l's checkLoop calls it.
func (m *Monitor) learnNode(l *serverLoop) {
	if l.node != "" && time.Since(l.nodeAt) < nodeNameTTL {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.timeout)
	defer cancel()
	name, err := m.mgmt.nodeName(ctx, m.mgmtTarget(l.s))
	if err != nil {
		m.log.Debug("management API gave no node name", "backend", m.backend, "server", l.s.Name(), "err", err)
		return // kept as it was; asked again after the next passing check
	}
	if name != l.node {
		m.log.Debug("management API names the server's node", "backend", m.backend, "server", l.s.Name(), "node", name)
	}
	l.node, l.nodeAt = name, time.Now()
}

// maintenance looks, after a check of l, at whether its node is in maintenance mode: a passing
// check says it is not (and its node's name is read if needed); a failed one asks the other
// nodes. It returns res, or a KindMaintenance result in its place. Only l's checkLoop calls it.
func (m *Monitor) maintenance(l *serverLoop, res Result) Result {
	if res.OK {
		m.learnNode(l)
		return res
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(m.ctx, m.timeout)
	v := m.askPeers(ctx, l, res)
	if v.inferred && !m.refuses(ctx, m.mgmtTarget(l.s)) {
		// Its management API answers (or does not refuse): a wrong AMQP port, not a drain.
		v.in = false
		v.evidence += ", but its management API does not refuse"
	} else if v.inferred {
		v.evidence += ", and so does its management API"
	}
	cancel()
	switch {
	case v.known && v.in:
		l.maintSeen = v
	case v.known, !l.s.Maintenance():
		return res
	default:
		// In maintenance at the last look and nobody could tell now: it stays.
		v = l.maintSeen
		v.evidence = "no other node's management API answered; " + v.evidence
	}
	out := Result{Kind: KindMaintenance, Reason: MaintenanceReason, At: res.At,
		Duration: res.Duration + time.Since(start), BrokerVersion: res.BrokerVersion}
	out.detail = fmt.Sprintf("%s (asked %s: %s)", res.Reason, v.peer, v.evidence)
	return out
}
