package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/internal/testenv"
)

// The AMQP checks read the heartbeat each broker proposes in Connection.Tune, and amqplb warns
// once per backend when its fixed idle_timeout would cut idle clients before two of their
// heartbeats: the running counterpart of `amqplb -c`'s warning, which knows only RabbitMQ's
// default of 60 s. A backend whose brokers propose less, or that follows each session's own
// heartbeat, gets no warning.
func TestIdleTimeoutShorterThanTheBrokersHeartbeatIsWarnedAtRunTime(t *testing.T) {
	const warning = "idle_timeout is shorter than twice the heartbeat the brokers propose"
	for _, tc := range []struct {
		name      string
		heartbeat time.Duration
		idle      time.Duration
		warned    bool
	}{
		{"long heartbeat", 10 * time.Minute, 15 * time.Minute, true},
		{"default heartbeat", 60 * time.Second, 15 * time.Minute, false},
		{"idle_timeout heartbeat", 10 * time.Minute, config.IdleHeartbeat, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := testenv.StartFakeBroker(t, (&testenv.FakeAMQP{Heartbeat: tc.heartbeat}).Handle)
			cfg := oneBackend("rabbitmq")
			b := &cfg.Backends[0]
			b.HealthCheck.Type = "amqp"
			b.HealthCheck.Interval, b.HealthCheck.Rise = 50*time.Millisecond, 1
			b.Servers[0].Address = fb.Addr()
			b.IdleTimeout = tc.idle
			var logs testenv.Buffer
			a, err := newApp(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil)
			if err != nil {
				t.Fatal(err)
			}
			h := a.admin.Handler() // before run, which sets it
			runApp(t, a)
			// A check's Tune comes before its result: once a check passed, the hook has run.
			testenv.Eventually(t, 10*time.Second, func() error {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/backends/rabbitmq", nil))
				var bj admin.BackendJSON
				if err := json.Unmarshal(rec.Body.Bytes(), &bj); err != nil {
					return err
				}
				if len(bj.Servers) != 1 || bj.Servers[0].Check.Status != "ok" {
					return fmt.Errorf("no check passed yet: %s", rec.Body)
				}
				return nil
			})
			line := ""
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, warning) {
					line = l
				}
			}
			if got := line != ""; got != tc.warned {
				t.Fatalf("warned %v, want %v:\n%s", got, tc.warned, logs.String())
			}
			if tc.warned && (!strings.Contains(line, "backend=rabbitmq") || !strings.Contains(line, "heartbeat=10m0s")) {
				t.Errorf("warning: %s", line)
			}
			if n := strings.Count(logs.String(), warning); n > 1 {
				t.Errorf("warned %d times, want once per backend", n)
			}
		})
	}
}
