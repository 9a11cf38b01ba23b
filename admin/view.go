package admin

import (
	"log/slog"
	"net/http"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// view is what every listener of the package shows: the caller's data callbacks, a Prometheus
// registry over them, and the read-only handlers (JSON and metrics) that both the admin
// Server and the StatsServer serve.
type view struct {
	backends  func() []*backend.Backend
	frontends func() []FrontendStats
	checks    func(*backend.Server) healthcheck.Status
	version   string // in the JSON answers; "" when hidden
	log       *slog.Logger
	registry  *prometheus.Registry
	metrics   http.Handler
}

// newView fills in the defaults of nil callbacks (no backends, no frontends, no check known, a
// discarding logger) and builds a registry of its own. The metrics carry the version in
// amqplb_build_info even when hideVersion keeps it out of the JSON.
func newView(backends func() []*backend.Backend, frontends func() []FrontendStats,
	checks func(*backend.Server) healthcheck.Status, logger *slog.Logger, component, version string, hideVersion bool) *view {
	if backends == nil {
		backends = func() []*backend.Backend { return nil }
	}
	if frontends == nil {
		frontends = func() []FrontendStats { return nil }
	}
	if checks == nil {
		checks = healthcheck.NewStatuses().Status // every server unchecked, with zero counts
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := &view{
		backends:  backends,
		frontends: frontends,
		checks:    checks,
		version:   version,
		log:       logger.With("component", component),
		registry:  newRegistry(backends, frontends, checks, version),
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
