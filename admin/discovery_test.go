package admin

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// A backend with discovery has a "discovery" object with every contract key, one without has
// none; the amqplb_discovery_* series exist for it only.
func TestDiscoveryShown(t *testing.T) {
	f := newFixture()
	o := f.options("")
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o.Discovery = func(b string) (Discovery, bool) {
		if b != "rabbitmq" {
			return Discovery{}, false
		}
		return Discovery{Management: "http://seed:15672", Source: "http://seed:15672", OK: true, RefreshedAt: &at, SucceededAt: &at,
			Refreshes: 5, Failures: 2, Nodes: []DiscoveredNode{{Name: "rabbit@a", Address: "a:5672", ManagementPort: 15672, Running: true}}}, true
	}
	h := New(o).Handler()
	code, body := do(t, h, http.MethodGet, "/api/v1/backends", "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/backends = %d: %s", code, body)
	}
	bs := decode(t, body)["backends"].([]any)
	d, ok := bs[0].(map[string]any)["discovery"].(map[string]any)
	if !ok {
		t.Fatalf("no discovery in %s", body)
	}
	want := []string{"error", "failures", "management", "nodes", "ok", "refreshed_at", "refreshes", "source", "succeeded_at"}
	if got := keys(d); !slices.Equal(got, want) {
		t.Errorf("discovery fields = %v, want %v", got, want)
	}
	node := d["nodes"].([]any)[0].(map[string]any)
	if got, want := keys(node), []string{"address", "management_port", "name", "running"}; !slices.Equal(got, want) {
		t.Errorf("node fields = %v, want %v", got, want)
	}
	if _, has := bs[1].(map[string]any)["discovery"]; has {
		t.Errorf("a backend without discovery has one: %v", bs[1])
	}

	fams := scrape(t, h)
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"amqplb_discovery_refreshes_total", map[string]string{"backend": "rabbitmq", "result": "ok"}, 5},
		{"amqplb_discovery_refreshes_total", map[string]string{"backend": "rabbitmq", "result": "error"}, 2},
		{"amqplb_discovery_nodes", map[string]string{"backend": "rabbitmq"}, 1},
		{"amqplb_discovery_last_success_timestamp_seconds", map[string]string{"backend": "rabbitmq"}, float64(at.Unix())},
	} {
		if v, ok := value(fams, tt.name, tt.labels); !ok || v != tt.want {
			t.Errorf("%s%v = %v (%v), want %v", tt.name, tt.labels, v, ok, tt.want)
		}
	}
	if n := len(fams["amqplb_discovery_nodes"].GetMetric()); n != 1 {
		t.Errorf("amqplb_discovery_nodes has %d series, want 1 (the backend with discovery)", n)
	}
}
