package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"

	"github.com/amqplb/amqplb/internal/testenv"
)

const (
	rulesFile     = "prometheus/amqplb-alerts.yml"
	rulesTestFile = "prometheus/amqplb-alerts.test.yml"
	dashboardFile = "grafana/amqplb-dashboard.json"
)

// promtool runs Debian's promtool (package prometheus) in dir.
func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(requireTool(t, "promtool"), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// The alerting rules are valid, and fire (or not) as their unit tests say.
func TestPrometheusRules(t *testing.T) {
	promtool(t, ".", "check", "rules", rulesFile)
	promtool(t, filepath.Dir(rulesTestFile), "test", "rules", filepath.Base(rulesTestFile))
}

// dashboard is what the tests read of the Grafana dashboard.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

// panel is one panel of the dashboard.
type panel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// grafanaVars replaces the dashboard's variables with what Prometheus could be sent.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*", "$backend", ".*")

// dashboardExprs returns every query of the dashboard, with its panel's title.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	d := readDashboard(t)
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("%s #%d", p.Title, i+1)] = tg.Expr
		}
	}
	return out
}

// The dashboard is well formed, and every query parses as PromQL (promtool checks them as the
// expressions of recording rules).
func TestGrafanaDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title: %q %q", d.UID, d.Title)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if !slices.Equal(vars, []string{"datasource", "instance", "backend"}) {
		t.Errorf("variables %v, want datasource, instance, backend", vars)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q queries %q, want the ${datasource} variable", p.Title, p.Datasource.UID)
		}
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is outside the 24-column grid", p.Title, g)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query %q ignores the instance variable", p.Title, tg.Expr)
			}
		}
	}
	for _, want := range []string{"Server state", "Sessions per server", "Connects/s", "Refusals by reason", "Health check latency", "Bytes relayed"} {
		if !slices.ContainsFunc(d.Panels, func(p panel) bool {
			return p.Title == want
		}) {
			t.Errorf("the dashboard has no panel %q", want)
		}
	}

	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	exprs := dashboardExprs(t)
	for i, title := range slices.Sorted(maps.Keys(exprs)) {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query:%d", i), Expr: grafanaVars.Replace(exprs[title])})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, ".", "check", "rules", path)
}

// ruleExprs returns every expression of the alerting rules and of their unit tests' input
// series, by alert name or series.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	var tests struct {
		Tests []struct {
			InputSeries []struct {
				Series string `json:"series"`
			} `json:"input_series"`
		} `json:"tests"`
	}
	if b, err = os.ReadFile(rulesTestFile); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			out["test series "+s.Series] = s.Series
		}
	}
	if len(out) == 0 {
		t.Fatal("no rule read")
	}
	return out
}

// liveMetrics runs amqplb with a frontend and a backend whose one server (a local listener)
// passes tcp checks, waits until every family has samples (the check histogram only once a
// check ran), and returns its /metrics by family name.
func liveMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	admin := testenv.FreeAddr(t)
	startAmqplb(t, fmt.Sprintf(`
[admin]
listen = %q
[[frontend]]
name = "amqp"
bind = %q
backend = "rabbitmq"
[[backend]]
name = "rabbitmq"
[backend.health_check]
type = "tcp"
interval = "100ms"
rise = 1
[[backend.server]]
name = "rmq1"
address = %q
`, admin, testenv.FreeAddr(t), fakeServer(t)), admin)
	var families map[string]*dto.MetricFamily
	client := http.Client{Timeout: 2 * time.Second}
	testenv.Eventually(t, 15*time.Second, func() error {
		resp, err := client.Get("http://" + admin + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		if families, err = parser.TextToMetricFamilies(resp.Body); err != nil {
			return err
		}
		h := families["amqplb_health_check_duration_seconds"]
		if h == nil || len(h.Metric) == 0 || h.Metric[0].GetHistogram().GetSampleCount() == 0 {
			return errors.New("no health check counted yet")
		}
		if up := families["amqplb_server_up"]; up == nil || up.Metric[0].GetGauge().GetValue() != 1 {
			return errors.New("the server is not up yet")
		}
		return nil
	})
	return families
}

var (
	// selectorRE matches a metric name with its optional label matchers.
	selectorRE = regexp.MustCompile(`\b(amqplb_[a-zA-Z0-9_]+)(\{([^}]*)\})?`)
	// matcherRE matches one label matcher.
	matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	// groupingRE matches by (...) and without (...) clauses.
	groupingRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// Every metric the dashboard and the alerts use is one amqplb exports, with the labels and label
// values they select on; and every label they group by is one of those metrics' or Prometheus'.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	families := liveMetrics(t)
	// name in a query -> the family it belongs to, and the labels each family has.
	names := map[string]string{}
	labelValues := map[string]map[string]map[string]bool{} // family -> label -> values
	for name, f := range families {
		names[name] = name
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = name
			}
		}
		labelValues[name] = map[string]map[string]bool{}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if labelValues[name][l.GetName()] == nil {
					labelValues[name][l.GetName()] = map[string]bool{}
				}
				labelValues[name][l.GetName()][l.GetValue()] = true
			}
		}
		if f.GetType() == dto.MetricType_HISTOGRAM {
			labelValues[name]["le"] = map[string]bool{}
		}
	}
	// Labels Prometheus adds when it scrapes.
	target := map[string]bool{"job": true, "instance": true}
	// Labels whose values are names from the configuration; the others (state, reason,
	// direction, to) take values amqplb defines, all exported from the start.
	named := map[string]bool{"backend": true, "server": true, "frontend": true, "le": true}

	exprs := dashboardExprs(t)
	for k, v := range ruleExprs(t) {
		exprs[k] = v
	}
	used := map[string]bool{}
	for where, expr := range exprs {
		exprLabels := map[string]bool{}
		for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
			family, ok := names[m[1]]
			if !ok {
				t.Errorf("%s: %s is not a metric of amqplb's /metrics", where, m[1])
				continue
			}
			used[family] = true
			for l := range labelValues[family] {
				exprLabels[l] = true
			}
			for _, lm := range matcherRE.FindAllStringSubmatch(m[3], -1) {
				label, op, value := lm[1], lm[2], lm[3]
				values, ok := labelValues[family][label]
				switch {
				case target[label]:
				case !ok:
					t.Errorf("%s: %s has no label %s", where, m[1], label)
				case op == "=" && !named[label] && !values[value]:
					t.Errorf("%s: %s{%s=%q}: amqplb exports no such value (it has %v)", where, m[1], label, value, slices.Sorted(maps.Keys(values)))
				}
			}
		}
		for _, g := range groupingRE.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !target[l] && !exprLabels[l] {
					t.Errorf("%s: groups by %s, which none of its metrics has", where, l)
				}
			}
		}
	}
	// The dashboard shows what the issue asks for.
	for _, want := range []string{
		"amqplb_server_state", "amqplb_server_active_connections", "amqplb_frontend_connections_total",
		"amqplb_frontend_refused_total", "amqplb_health_check_duration_seconds", "amqplb_server_bytes_total",
		"amqplb_backend_servers_up",
	} {
		if !used[want] {
			t.Errorf("neither the dashboard nor the alerts use %s", want)
		}
	}
}
