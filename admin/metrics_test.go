package admin

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/proxy"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
)

// scrape GETs /metrics from h and parses the text format.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics = %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type = %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels include want, and whether
// there is one.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// The contract of ARCHITECTURE.md: family, type and label names.
var wantFamilies = []struct {
	name   string
	typ    dto.MetricType
	labels []string
}{
	{"amqplb_server_up", dto.MetricType_GAUGE, []string{"backend", "server"}},
	{"amqplb_server_state", dto.MetricType_GAUGE, []string{"backend", "server", "state"}},
	{"amqplb_server_active_connections", dto.MetricType_GAUGE, []string{"backend", "server"}},
	{"amqplb_server_connections_total", dto.MetricType_COUNTER, []string{"backend", "server"}},
	{"amqplb_server_connect_errors_total", dto.MetricType_COUNTER, []string{"backend", "server"}},
	{"amqplb_server_bytes_total", dto.MetricType_COUNTER, []string{"backend", "direction", "server"}},
	{"amqplb_server_transitions_total", dto.MetricType_COUNTER, []string{"backend", "server", "to"}},
	{"amqplb_health_check_duration_seconds", dto.MetricType_HISTOGRAM, []string{"backend", "server"}},
	{"amqplb_health_check_failures_total", dto.MetricType_COUNTER, []string{"backend", "reason", "server"}},
	{"amqplb_frontend_connections_total", dto.MetricType_COUNTER, []string{"frontend"}},
	{"amqplb_frontend_active_connections", dto.MetricType_GAUGE, []string{"frontend"}},
	{"amqplb_frontend_refused_total", dto.MetricType_COUNTER, []string{"frontend", "reason"}},
	{"amqplb_build_info", dto.MetricType_GAUGE, []string{"goversion", "version"}},
	{"go_goroutines", dto.MetricType_GAUGE, nil},
	{"process_open_fds", dto.MetricType_GAUGE, nil},
}

func TestMetricsFamiliesAndLabels(t *testing.T) {
	f := newFixture()
	fams := scrape(t, New(f.options("")).Handler())
	for _, w := range wantFamilies {
		fam := fams[w.name]
		if fam == nil {
			if w.name == "process_open_fds" && !procfs() {
				continue
			}
			t.Errorf("no metric family %s", w.name)
			continue
		}
		if fam.GetType() != w.typ {
			t.Errorf("%s is a %v, want %v", w.name, fam.GetType(), w.typ)
		}
		if fam.GetHelp() == "" {
			t.Errorf("%s has no HELP", w.name)
		}
		for _, m := range fam.Metric {
			var names []string
			for _, l := range m.Label {
				names = append(names, l.GetName())
			}
			slices.Sort(names)
			if !slices.Equal(names, w.labels) {
				t.Errorf("%s has labels %v, want %v", w.name, names, w.labels)
				break
			}
		}
	}

	// One series per server and state; per server and failure kind; per known refusal reason.
	if n, want := len(fams["amqplb_server_state"].Metric), 4*4; n != want {
		t.Errorf("amqplb_server_state has %d series, want %d (4 servers x 4 states)", n, want)
	}
	if n, want := len(fams["amqplb_health_check_failures_total"].Metric), 4*len(healthcheck.FailureKinds); n != want {
		t.Errorf("amqplb_health_check_failures_total has %d series, want %d", n, want)
	}
	for _, r := range proxy.RefuseReasons() {
		if _, ok := value(fams, "amqplb_frontend_refused_total", map[string]string{"frontend": "amqp", "reason": r}); !ok {
			t.Errorf("no amqplb_frontend_refused_total{reason=%q}", r)
		}
	}
	if v, _ := value(fams, "amqplb_build_info", map[string]string{"version": "v0.0.0-test"}); v != 1 {
		t.Errorf("amqplb_build_info{version=v0.0.0-test} = %v, want 1", v)
	}
}

// procfs reports whether the process collector can read /proc.
func procfs() bool { return runtime.GOOS == "linux" }

func TestMetricsFollowServers(t *testing.T) {
	f := newFixture()
	h := New(f.options("")).Handler()
	rmq1, rmq2 := f.server("rabbitmq", "rmq1"), f.server("rabbitmq", "rmq2")
	srv := func(s string, more ...string) map[string]string {
		m := map[string]string{"backend": "rabbitmq", "server": s}
		for i := 0; i+1 < len(more); i += 2 {
			m[more[i]] = more[i+1]
		}
		return m
	}
	check := func(fams map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
		t.Helper()
		got, ok := value(fams, name, labels)
		if !ok {
			t.Errorf("no series %s%v", name, labels)
		} else if got != want {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}

	before := scrape(t, h)
	check(before, "amqplb_server_connections_total", srv("rmq1"), 0)
	check(before, "amqplb_server_up", srv("rmq2"), 1)

	// Ten sessions through rmq1, three of them closed; bytes while they are open.
	for range 10 {
		if !rmq1.Acquire() {
			t.Fatal("Acquire failed")
		}
		rmq1.Connected()
	}
	for range 3 {
		rmq1.Release()
	}
	rmq1.AddBytes(1000, 250)
	f.checks.Record(rmq1, healthcheck.CheckResult{OK: true, Reason: "AMQP handshake ok", Duration: 3 * time.Millisecond, At: time.Now()})
	f.checks.Record(rmq1, healthcheck.CheckResult{OK: true, Reason: "AMQP handshake ok", Duration: 700 * time.Millisecond, At: time.Now()})
	f.checks.Record(rmq2, healthcheck.CheckResult{Kind: healthcheck.FailAuth, Code: 403, Reason: "broker closed: 403 ACCESS_REFUSED", Duration: 2 * time.Millisecond, At: time.Now()})
	rmq2.SetHealth(false)
	f.mu.Lock()
	f.frontends[0] = FrontendStats{Name: "amqp", Active: 7, Total: 10, Refused: map[string]uint64{"no_server": 4, "weird": 1}}
	f.mu.Unlock()

	after := scrape(t, h)
	check(after, "amqplb_server_connections_total", srv("rmq1"), 10)
	check(after, "amqplb_server_active_connections", srv("rmq1"), 7)
	check(after, "amqplb_server_bytes_total", srv("rmq1", "direction", "to_server"), 1000)
	check(after, "amqplb_server_bytes_total", srv("rmq1", "direction", "to_client"), 250)
	check(after, "amqplb_health_check_duration_seconds", srv("rmq1"), 2)
	check(after, "amqplb_server_up", srv("rmq2"), 0)
	check(after, "amqplb_server_state", srv("rmq2", "state", "down"), 1)
	check(after, "amqplb_server_state", srv("rmq2", "state", "up"), 0)
	check(after, "amqplb_server_transitions_total", srv("rmq2", "to", "down"), 1)
	check(after, "amqplb_health_check_failures_total", srv("rmq2", "reason", "auth"), 1)
	check(after, "amqplb_health_check_failures_total", srv("rmq2", "reason", "timeout"), 0)
	check(after, "amqplb_frontend_active_connections", map[string]string{"frontend": "amqp"}, 7)
	check(after, "amqplb_frontend_connections_total", map[string]string{"frontend": "amqp"}, 10)
	check(after, "amqplb_frontend_refused_total", map[string]string{"frontend": "amqp", "reason": "no_server"}, 4)
	check(after, "amqplb_frontend_refused_total", map[string]string{"frontend": "amqp", "reason": "maxconn"}, 0)
	check(after, "amqplb_frontend_refused_total", map[string]string{"frontend": "amqp", "reason": "weird"}, 1)

	// The histogram's buckets are cumulative: 3 ms in le=0.005, 700 ms only from le=1.
	var hist *dto.Histogram
	for _, m := range after["amqplb_health_check_duration_seconds"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "server" && l.GetValue() == "rmq1" {
				hist = m.Histogram
			}
		}
	}
	if hist == nil {
		t.Fatal("no histogram for rmq1")
	}
	for _, b := range hist.Bucket {
		want := uint64(0)
		switch {
		case b.GetUpperBound() >= 1:
			want = 2
		case b.GetUpperBound() >= 0.005:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if s := hist.GetSampleSum(); s < 0.702 || s > 0.704 {
		t.Errorf("histogram sum = %v, want 0.703", s)
	}

	// Drain: state series follow the operator.
	rmq1.SetAdmin(backend.AdminDrain)
	drained := scrape(t, h)
	check(drained, "amqplb_server_state", srv("rmq1", "state", "drain"), 1)
	check(drained, "amqplb_server_up", srv("rmq1"), 0)
}

// A reload swaps the backend set; the next scrape shows the new one, not a cached copy.
func TestMetricsFollowReload(t *testing.T) {
	f := newFixture()
	h := New(f.options("")).Handler()
	scrape(t, h)
	f.mu.Lock()
	f.backends = []*backend.Backend{{Name: "rabbitmq", Servers: []*backend.Server{backend.NewServer(backend.ServerOptions{Name: "rmq9", Address: "127.0.0.1:1", Weight: 1})}}}
	f.mu.Unlock()
	fams := scrape(t, h)
	if _, ok := value(fams, "amqplb_server_up", map[string]string{"server": "rmq9"}); !ok {
		t.Error("new server rmq9 missing after the backend set changed")
	}
	if _, ok := value(fams, "amqplb_server_up", map[string]string{"server": "rmq1"}); ok {
		t.Error("removed server rmq1 still exported")
	}
}

// Each Server has its own registry: building two (a reload, or two tests) must not panic on
// duplicate registration, and each serves its own backends.
func TestTwoServersInOneProcess(t *testing.T) {
	f1, f2 := newFixture(), newFixture()
	f2.backends = f2.backends[1:]
	a, b := New(f1.options("")), New(f2.options(""))
	if a.Registry() == b.Registry() {
		t.Fatal("two Servers share a registry")
	}
	if _, ok := value(scrape(t, a.Handler()), "amqplb_server_up", map[string]string{"backend": "rabbitmq"}); !ok {
		t.Error("first server lost its backend")
	}
	if _, ok := value(scrape(t, b.Handler()), "amqplb_server_up", map[string]string{"backend": "rabbitmq"}); ok {
		t.Error("second server exports the first one's backend")
	}
}
