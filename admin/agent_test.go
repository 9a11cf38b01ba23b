package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/healthcheck"
)

// TestAgentInAPIAndShowStat wants a server's last agent check in /api/v1/backends (absent for
// a server without one) and in show stat's agent columns.
func TestAgentInAPIAndShowStat(t *testing.T) {
	f := newFixture()
	rmq1, rmq2 := f.server("rabbitmq", "rmq1"), f.server("rabbitmq", "rmq2")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.checks.RecordAgent(rmq1, healthcheck.AgentResult{OK: true, Reply: "down,50% #disk", Duration: 3 * time.Millisecond, At: at})
	rmq1.SetAgentHealth(false)
	f.checks.RecordAgent(rmq2, healthcheck.AgentResult{Error: "connection refused", At: at})

	code, body := do(t, New(f.options("")).Handler(), http.MethodGet, "/api/v1/backends/rabbitmq", "")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var b struct {
		Servers []struct {
			Name  string          `json:"name"`
			State string          `json:"state"`
			Agent json.RawMessage `json:"agent"`
		} `json:"servers"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"status":"ok","reply":"down,50% #disk","healthy":false,"duration_ms":3,"at":"2026-01-02T03:04:05Z"}`,
		`{"status":"fail","reply":"","error":"connection refused","healthy":true,"duration_ms":0,"at":"2026-01-02T03:04:05Z"}`,
		``,
	}
	for i, s := range b.Servers {
		var compact bytes.Buffer
		if len(s.Agent) > 0 {
			if err := json.Compact(&compact, s.Agent); err != nil {
				t.Fatal(err)
			}
		}
		if compact.String() != want[i] {
			t.Errorf("%s agent = %s, want %s", s.Name, compact.String(), want[i])
		}
	}
	if b.Servers[0].State != "down" {
		t.Errorf("rmq1 is %s, want down (its agent says so)", b.Servers[0].State)
	}

	path, _ := startSocket(t, LevelUser, f.options(""))
	header, rows := csvRows(t, cli(t, path, "show stat rabbitmq 4 -1\n"))
	col := func(r []string, name string) string { return r[slices.Index(header, name)] }
	var got []string
	for _, r := range rows {
		got = append(got, strings.Join([]string{col(r, "svname"), col(r, "agent_status"), col(r, "agent_desc"), col(r, "agent_duration")}, "|"))
	}
	if w := []string{"rmq1|L7STS|down,50% #disk|3", "rmq2|L4CON|connection refused|0", "rmq3|||"}; !slices.Equal(got, w) {
		t.Errorf("show stat agent columns:\n got %q\nwant %q", got, w)
	}
}
