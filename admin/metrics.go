package admin

import (
	"runtime"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Every state a server can be in, in the order of amqplb_server_state's series.
var allStates = []backend.State{backend.StateUp, backend.StateDown, backend.StateDrain, backend.StateMaint}

// newRegistry returns a registry of amqplb's own with the Go and process collectors and the
// collector of servers and frontends.
func newRegistry(src source, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(src, version),
	)
	return reg
}

// collector reads the servers' and frontends' counters, and the servers' check statuses, when
// Prometheus scrapes, so the data path and the checks only bump their atomics and never touch a
// metric object.
type collector struct {
	source
	version string

	buildInfo       *prometheus.Desc
	up              *prometheus.Desc
	state           *prometheus.Desc
	active          *prometheus.Desc
	conns           *prometheus.Desc
	connectErrors   *prometheus.Desc
	bytes           *prometheus.Desc
	transitions     *prometheus.Desc
	weight          *prometheus.Desc
	effectiveWeight *prometheus.Desc
	suspect         *prometheus.Desc
	checkDuration   *prometheus.Desc
	checkFailures   *prometheus.Desc
	backendUp       *prometheus.Desc
	backendServers  *prometheus.Desc
	frontendConns   *prometheus.Desc
	frontendActive  *prometheus.Desc
	frontendParked  *prometheus.Desc
	frontendRefused *prometheus.Desc
	vhostSessions   *prometheus.Desc
	rebalanceCloses *prometheus.Desc
	discRefreshes   *prometheus.Desc
	discNodes       *prometheus.Desc
	discSuccess     *prometheus.Desc
}

func newCollector(src source, version string) *collector {
	srv := []string{"backend", "server"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("amqplb_"+name, help, labels, nil)
	}
	return &collector{
		source:  src,
		version: version,

		buildInfo:       d("build_info", "Always 1; the labels say which amqplb runs.", "version", "goversion"),
		up:              d("server_up", "1 when the server is up (receives new connections), 0 otherwise.", srv...),
		state:           d("server_state", "1 for the server's current state (up, down, drain, maint), 0 for the others.", "backend", "server", "state"),
		active:          d("server_active_connections", "Sessions currently open to the server.", srv...),
		conns:           d("server_connections_total", "Sessions established to the server.", srv...),
		connectErrors:   d("server_connect_errors_total", "Failed dials to the server.", srv...),
		bytes:           d("server_bytes_total", "Bytes relayed; direction is to_server (from clients) or to_client.", "backend", "server", "direction"),
		transitions:     d("server_transitions_total", "Times the server entered the state in label to.", "backend", "server", "to"),
		weight:          d("server_weight", "The server's configured or operator-set weight.", srv...),
		effectiveWeight: d("server_effective_weight", "The weight balancers use now (lower than the weight during slow start).", srv...),
		suspect:         d("server_suspect", "1 when a failed dial took the server out of rotation until its next passing check.", srv...),
		checkDuration:   d("health_check_duration_seconds", "How long the server's health checks took.", srv...),
		checkFailures:   d("health_check_failures_total", "Failed health checks (and passive failures) by kind.", "backend", "server", "reason"),
		backendUp:       d("backend_servers_up", "Servers of the backend that are up.", "backend"),
		backendServers:  d("backend_servers", "Servers configured in the backend.", "backend"),
		frontendConns:   d("frontend_connections_total", "Connections the frontend accepted.", "frontend"),
		frontendActive:  d("frontend_active_connections", "Sessions open on the frontend now.", "frontend"),
		frontendParked:  d("frontend_parked_sessions", "Open sessions parked as idle: no goroutine of their own (Linux).", "frontend"),
		frontendRefused: d("frontend_refused_total", "Connections the frontend refused, by reason.", "frontend", "reason"),
		vhostSessions: d("vhost_sessions", "Sessions open now on the vhost, across frontends, once the client has opened it; "+
			"vhosts beyond [admin] vhost_labels are summed under vhost=\"_other\".", "vhost"),
		rebalanceCloses: d("rebalance_closes_total", "Sessions on the server that rebalancing asked its broker to close.", srv...),
		discRefreshes:   d("discovery_refreshes_total", "Reads of the backend's cluster members from the management API, by result (ok, error).", "backend", "result"),
		discNodes:       d("discovery_nodes", "Cluster members the backend's last successful discovery listed.", "backend"),
		discSuccess:     d("discovery_last_success_timestamp_seconds", "When the backend's discovery last read the cluster's members (Unix time; 0 before).", "backend"),
	}
}

// Describe sends every metric's descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.buildInfo, c.up, c.state, c.active, c.conns, c.connectErrors, c.bytes, c.transitions,
		c.weight, c.effectiveWeight, c.suspect, c.checkDuration, c.checkFailures,
		c.backendUp, c.backendServers, c.frontendConns, c.frontendActive, c.frontendParked, c.frontendRefused, c.vhostSessions, c.rebalanceCloses,
		c.discRefreshes, c.discNodes, c.discSuccess,
	} {
		ch <- d
	}
}

// Collect reads the current backends and frontends.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.buildInfo, 1, c.version, runtime.Version())

	for _, b := range c.backends() {
		if b == nil {
			continue
		}
		gauge(c.backendUp, float64(b.UpCount()), b.Name)
		gauge(c.backendServers, float64(len(b.Servers)), b.Name)
		if d, ok := c.discovery(b.Name); ok {
			counter(c.discRefreshes, d.Refreshes, b.Name, "ok")
			counter(c.discRefreshes, d.Failures, b.Name, "error")
			gauge(c.discNodes, float64(len(d.Nodes)), b.Name)
			var at float64
			if d.SucceededAt != nil {
				at = float64(d.SucceededAt.UnixNano()) / 1e9
			}
			gauge(c.discSuccess, at, b.Name)
		}
		for _, s := range b.Servers {
			if s == nil {
				continue
			}
			bn, sn := b.Name, s.Name()
			st := s.State()
			gauge(c.up, boolFloat(st == backend.StateUp), bn, sn)
			for _, x := range allStates {
				gauge(c.state, boolFloat(st == x), bn, sn, x.String())
				counter(c.transitions, s.Transitions(x), bn, sn, x.String())
			}
			gauge(c.active, float64(s.ActiveConnections()), bn, sn)
			counter(c.conns, s.TotalConnections(), bn, sn)
			counter(c.connectErrors, s.ConnectErrors(), bn, sn)
			counter(c.bytes, s.BytesToServer(), bn, sn, "to_server")
			counter(c.bytes, s.BytesToClient(), bn, sn, "to_client")
			gauge(c.weight, float64(s.Weight()), bn, sn)
			gauge(c.effectiveWeight, float64(s.EffectiveWeight()), bn, sn)
			gauge(c.suspect, boolFloat(s.Suspect()), bn, sn)
			counter(c.rebalanceCloses, c.source.rebalanceCloses(bn, sn), bn, sn)

			cs := c.checks(s)
			h := cs.Durations
			ch <- prometheus.MustNewConstHistogram(c.checkDuration, h.Count, h.Sum, h.Buckets, bn, sn)
			for _, k := range healthcheck.FailureKinds {
				counter(c.checkFailures, cs.Failures[k], bn, sn, k)
			}
		}
	}

	for _, f := range c.frontends() {
		counter(c.frontendConns, f.Total, f.Name)
		gauge(c.frontendActive, float64(f.Active), f.Name)
		gauge(c.frontendParked, float64(f.Parked), f.Name)
		for _, r := range c.refused(f.Refused) {
			counter(c.frontendRefused, f.Refused[r], f.Name, r)
		}
	}

	if c.sessions != nil {
		for _, v := range vhostSessions(c.sessions(), c.vhostLabels) {
			gauge(c.vhostSessions, float64(v.n), v.vhost)
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
