package bench

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
)

func TestPubSubAgainstBroker(t *testing.T) {
	c := testenv.RequireCluster(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	target := Target{Name: "rmq1", Addr: c.Nodes[0].AMQPAddr()}

	p := PubSub{Producers: 1, Consumers: 1, Size: 128, Confirm: 64, Prefetch: 100, Duration: 3 * time.Second, Warmup: time.Second}
	p.Queue = uniqueQueueName()
	var progress testenv.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	res, err := p.run(ctx, target, &progress)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	t.Logf("run took %v; progress:\n%s", time.Since(start).Round(time.Millisecond), progress.String())

	if res.elapsed < 2900*time.Millisecond || res.elapsed > 3500*time.Millisecond {
		t.Errorf("measured period = %v, want about 3s", res.elapsed)
	}
	if res.window.consumed <= 0 || res.window.confirmed <= 0 || res.window.published <= 0 {
		t.Fatalf("measured period: %+v, want messages published, confirmed and consumed", res.window)
	}
	if res.all.consumed < res.all.confirmed || res.confirmedUnseen != 0 {
		t.Errorf("confirmed %d messages but consumed %d", res.all.confirmed, res.all.consumed)
	}
	if res.all.confirmed > res.all.published || res.all.consumed > res.all.published {
		t.Errorf("counts over the run: %+v: more confirmed or consumed than published", res.all)
	}
	if e := res.all; e.errConnect+e.errPublish+e.errConsume+e.nacked != 0 {
		t.Errorf("errors: %+v", e)
	}
	for name, s := range map[string]Summary{"consumer": res.latency, "confirm": res.confirmLatency} {
		if s.Count == 0 || s.P50 <= 0 || s.P50 > s.P75 || s.P75 > s.P95 || s.P95 > s.P99 || s.P99 > s.Max {
			t.Errorf("%s latency not ordered: %+v", name, s)
		}
	}
	if lines := strings.Count("\n"+progress.String(), "\nt="); lines != 4 || !strings.Contains(progress.String(), "confirmed") {
		t.Errorf("want a progress line each second (one of them warm-up), got:\n%s", progress.String())
	}
	// No line may show a rate measured over a sliver of a second (a tick just after the
	// warm-up boundary once printed "confirmed 639211/s").
	limit := 5*float64(res.window.published)/res.elapsed.Seconds() + 1000
	for _, m := range regexp.MustCompile(`(\w+) (\d+)/s`).FindAllStringSubmatch(progress.String(), -1) {
		if v, _ := strconv.ParseFloat(m[2], 64); v > limit {
			t.Errorf("progress line shows %s %s/s, over 5x the measured rate:\n%s", m[1], m[2], progress.String())
		}
	}

	figs := p.figures(res)
	for _, name := range []string{"published", "confirmed", "consumed", "latency_p50", "latency_max", "confirm_latency_p99", "errors_publish", "confirmed_not_consumed"} {
		if _, ok := figs.Get(name); !ok {
			t.Errorf("figure %s missing from %v", name, figs)
		}
	}
	if v, _ := figs.Get("consumed"); v <= 0 {
		t.Errorf("consumed = %v msg/s", v)
	}

	// The queue is gone.
	conn, err := amqp.Dial(target.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclarePassive(p.Queue, false, false, false, false, nil)
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.NotFound {
		t.Errorf("queue %s after the run: %v, want it deleted (404)", p.Queue, err)
	}
}

func TestPubSubQuorumRateLimited(t *testing.T) {
	c := testenv.RequireCluster(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	target := Target{Name: "rmq2", Addr: c.Nodes[1].AMQPAddr()}
	// 2 producers at 200 msg/s each, no confirms, autoack: about 400 msg/s each way.
	p := PubSub{Producers: 2, Consumers: 2, Rate: 200, AutoAck: true, QueueType: "quorum", Durable: true,
		Duration: 2 * time.Second, Warmup: time.Second}
	figs, err := p.Run(context.Background(), target, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := figs.Get("published")
	cons, _ := figs.Get("consumed")
	if pub < 300 || pub > 440 || cons < 300 || cons > 440 {
		t.Errorf("published %v/s, consumed %v/s: want about 400/s", pub, cons)
	}
	if _, ok := figs.Get("confirmed"); ok {
		t.Error("a run without confirms reports a confirm rate")
	}
}

func TestUnreachableTarget(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after the fake broker's cleanup

	closed := Target{Name: "closed", Addr: testenv.FreeAddr(t)}
	silent := Target{Name: "silent", Addr: testenv.StartFakeBroker(t, testenv.Silent).Addr()}
	for _, tc := range []struct {
		name string
		w    Workload
		t    Target
	}{
		{"pubsub closed port", PubSub{Duration: time.Minute}, closed},
		{"storm closed port", Storm{N: 100}, closed},
		{"pubsub silent", PubSub{Duration: time.Minute, DialTimeout: 300 * time.Millisecond}, silent},
		{"storm silent", Storm{N: 100, DialTimeout: 300 * time.Millisecond}, silent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			figs, err := tc.w.Run(context.Background(), tc.t, nil)
			var ue *UnreachableError
			if !errors.As(err, &ue) || ue.Target != tc.t {
				t.Fatalf("Run = %v, %v; want an *UnreachableError for %v", figs, err, tc.t)
			}
			if figs != nil {
				t.Errorf("figures %v for an unreachable target", figs)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v to find the target unreachable", d)
			}
		})
	}
}

func TestPubSubValidate(t *testing.T) {
	for _, p := range []PubSub{{QueueType: "stream"}, {Producers: -1}, {Rate: -1}, {Duration: -time.Second}} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if err := (PubSub{QueueType: "quorum"}).Validate(); err != nil {
		t.Error(err)
	}
}
