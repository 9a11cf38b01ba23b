package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestPostRebalance(t *testing.T) {
	f := newFixture()
	var calls []string
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o := f.options("s3cret")
	o.Rebalance = func(b string, dryRun bool) ([]RebalanceVictim, error) {
		calls = append(calls, fmt.Sprintf("%s %v", b, dryRun))
		if b != "rabbitmq" {
			return nil, fmt.Errorf("%w: backend %s has no management API", ErrRebalanceUnavailable, b)
		}
		return []RebalanceVictim{{ID: 7, Server: "rmq1", Since: since, LastActive: since}}, nil
	}
	o.Rebalancing = func(b string) bool { return b == "rabbitmq" }
	o.RebalanceCloses = func(b, s string) uint64 {
		if b == "rabbitmq" && s == "rmq2" {
			return 3
		}
		return 0
	}
	h := New(o).Handler()
	auth := []string{"Authorization", "Bearer s3cret"}

	code, body := do(t, h, http.MethodPost, "/api/v1/backends/rabbitmq/rebalance?dry_run=true", "", auth...)
	if code != http.StatusOK {
		t.Fatalf("dry run = %d: %s", code, body)
	}
	var resp RebalanceResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Backend != "rabbitmq" || !resp.DryRun || len(resp.Sessions) != 1 || resp.Sessions[0].ID != 7 || resp.Sessions[0].Server != "rmq1" {
		t.Errorf("dry run answer %+v", resp)
	}
	if code, body := do(t, h, http.MethodPost, "/api/v1/backends/rabbitmq/rebalance", "", auth...); code != http.StatusOK {
		t.Errorf("rebalance = %d: %s", code, body)
	}
	for _, tc := range []struct {
		path   string
		header []string
		want   int
	}{
		{"/api/v1/backends/rabbitmq/rebalance", nil, http.StatusUnauthorized},
		{"/api/v1/backends/rabbitmq/rebalance", []string{"Authorization", "Bearer s3cret", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"/api/v1/backends/nope/rebalance", auth, http.StatusNotFound},
		{"/api/v1/backends/rabbitmq/rebalance?dry_run=maybe", auth, http.StatusBadRequest},
		{"/api/v1/backends/other/rebalance", auth, http.StatusConflict},
	} {
		if code, body := do(t, h, http.MethodPost, tc.path, "", tc.header...); code != tc.want {
			t.Errorf("POST %s = %d (%s), want %d", tc.path, code, body, tc.want)
		}
	}
	if code, _ := do(t, h, http.MethodGet, "/api/v1/backends/rabbitmq/rebalance", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET .../rebalance = %d, want 405", code)
	}
	if fmt.Sprint(calls) != "[rabbitmq true rabbitmq false other false]" {
		t.Errorf("calls %v", calls)
	}

	_, body = do(t, h, http.MethodGet, "/api/v1/backends", "")
	var bs BackendsResponse
	if err := json.Unmarshal([]byte(body), &bs); err != nil {
		t.Fatal(err)
	}
	if !bs.Backends[0].Rebalancing || bs.Backends[1].Rebalancing {
		t.Errorf("rebalancing = %v, %v; want true, false", bs.Backends[0].Rebalancing, bs.Backends[1].Rebalancing)
	}
	fams := scrape(t, h)
	if v, ok := value(fams, "amqplb_rebalance_closes_total", map[string]string{"backend": "rabbitmq", "server": "rmq2"}); !ok || v != 3 {
		t.Errorf("amqplb_rebalance_closes_total{rmq2} = %v, %v; want 3", v, ok)
	}
	if v, ok := value(fams, "amqplb_rebalance_closes_total", map[string]string{"backend": "rabbitmq", "server": "rmq1"}); !ok || v != 0 {
		t.Errorf("amqplb_rebalance_closes_total{rmq1} = %v, %v; want 0, exported", v, ok)
	}

	// Without the callback: 501.
	if code, _ := do(t, New(f.options("")).Handler(), http.MethodPost, "/api/v1/backends/rabbitmq/rebalance", ""); code != http.StatusNotImplemented {
		t.Errorf("no Rebalance: %d, want 501", code)
	}
}
