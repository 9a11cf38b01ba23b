package admin

import (
	"log/slog"
	"net/http"
	"slices"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// view is what every listener of the package shows: the caller's data callbacks, a Prometheus
// registry over them, and the read-only handlers (JSON and metrics) that both the admin
// Server and the StatsServer serve.
type view struct {
	source
	version  string // in the JSON answers; "" when hidden
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  http.Handler
}

// source is where a view reads what it shows.
type source struct {
	backends  func() []*backend.Backend
	frontends func() []FrontendStats
	checks    func(*backend.Server) healthcheck.Status
	// refuseReasons are the reasons of amqplb_frontend_refused_total (and of the API's refused
	// map) that are always exported, 0 until one happens, so that alerts and dashboards find
	// every series from the start.
	refuseReasons []string
	// sessions returns every open session (GET /api/v1/sessions and amqplb_vhost_sessions);
	// nil means the caller has none to show, and the metric is left out.
	sessions func() []Session
	// rebalancing and rebalanceCloses tell of rebalancing (Options.Rebalancing,
	// Options.RebalanceCloses); nil means none.
	rebalancing     func(backend string) bool
	rebalanceCloses func(backend, server string) uint64
	// discovery tells what a backend's cluster discovery sees (Options.Discovery); nil means
	// no backend has one.
	discovery func(backend string) (Discovery, bool)
	// vhostLabels caps the vhost label of amqplb_vhost_sessions (see Options.VHostLabels).
	vhostLabels int
}

// refused returns the view's refusal reasons followed by any other reason in m, sorted.
func (src source) refused(m map[string]uint64) []string {
	out := append([]string(nil), src.refuseReasons...)
	var extra []string
	for r := range m {
		if !slices.Contains(src.refuseReasons, r) {
			extra = append(extra, r)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

// newView fills in the defaults of nil callbacks (no backends, no frontends, no check known, a
// discarding logger) and builds a registry of its own. The metrics carry the version in
// amqplb_build_info even when hideVersion keeps it out of the JSON.
func newView(src source, logger *slog.Logger, component, version string, hideVersion bool) *view {
	if src.backends == nil {
		src.backends = func() []*backend.Backend { return nil }
	}
	if src.frontends == nil {
		src.frontends = func() []FrontendStats { return nil }
	}
	if src.checks == nil {
		src.checks = healthcheck.NewStatuses().Status // every server unchecked, with zero counts
	}
	if src.rebalancing == nil {
		src.rebalancing = func(string) bool { return false }
	}
	if src.discovery == nil {
		src.discovery = func(string) (Discovery, bool) { return Discovery{}, false }
	}
	if src.rebalanceCloses == nil {
		src.rebalanceCloses = func(string, string) uint64 { return 0 }
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := &view{
		source:   src,
		version:  version,
		log:      logger.With("component", component),
		registry: newRegistry(src, version),
	}
	if hideVersion {
		v.version = ""
	}
	v.metrics = promhttp.HandlerFor(v.registry, promhttp.HandlerOpts{
		ErrorLog:      slogPromLogger{v.log},
		ErrorHandling: promhttp.ContinueOnError, // a bad series must not hide all the others
		Registry:      v.registry,               // promhttp_metric_handler_* on our registry
	})
	return v
}
