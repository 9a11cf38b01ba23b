//go:build linux

package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// EnvSoak turns the soak on (make soak): it takes SOAK_DURATION (default 10 minutes).
const EnvSoak = "AMQPLB_SOAK"

// sample is one reading of amqplb's own process figures.
type sample struct {
	at                    time.Duration
	rssMB                 float64
	fds, goroutines, sess int
}

// pubsub is a publisher with confirms and a consumer on one queue, each reconnecting when its
// connection fails, at a modest fixed rate.
type pubsub struct {
	url, queue                    string
	published, consumed, reconnex atomic.Int64
}

func (p *pubsub) publish(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		conn, err := amqp.DialConfig(p.url, amqp.Config{Dial: amqp.DefaultDial(opTimeout)})
		if err != nil {
			time.Sleep(200 * time.Millisecond) // a restart under way: a client's back-off
			continue
		}
		p.reconnex.Add(1)
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		tick := time.NewTicker(20 * time.Millisecond) // 50 msg/s
		for err == nil {
			select {
			case <-stop:
				tick.Stop()
				conn.Close()
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			var dc *amqp.DeferredConfirmation
			if dc, err = ch.PublishWithDeferredConfirmWithContext(ctx, "", p.queue, false, false, amqp.Publishing{Body: []byte("soak")}); err == nil {
				if ok, werr := dc.WaitContext(ctx); werr != nil || !ok {
					err = fmt.Errorf("not confirmed: %v", werr)
				} else {
					p.published.Add(1)
				}
			}
			cancel()
		}
		tick.Stop()
		conn.Close()
	}
}

func (p *pubsub) consume(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		conn, err := amqp.DialConfig(p.url, amqp.Config{Dial: amqp.DefaultDial(opTimeout)})
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		p.reconnex.Add(1)
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		ch, err := conn.Channel()
		var deliveries <-chan amqp.Delivery
		if err == nil {
			deliveries, err = ch.Consume(p.queue, "", true, false, false, false, nil)
		}
		for err == nil {
			select {
			case <-stop:
				conn.Close()
				return
			case <-closed:
				err = fmt.Errorf("closed")
			case _, ok := <-deliveries:
				if !ok {
					err = fmt.Errorf("consumer cancelled")
				} else {
					p.consumed.Add(1)
				}
			}
		}
		conn.Close()
	}
}

// TestSoak: steady pubsub and a watch loop through amqplb for SOAK_DURATION, a node restarted
// (stop_app, start_app) every 2 minutes and a reload every minute; amqplb's RSS, fds and
// goroutines sampled every 10 s. Not part of make faults: make soak.
func TestSoak(t *testing.T) {
	if os.Getenv(EnvSoak) != "1" {
		t.Skipf("the soak takes 10 minutes: make soak (%s=1)", EnvSoak)
	}
	c := requireFaults(t)
	duration := 10 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil && d > 0 {
		duration = d
	}
	l := startLB(t, c, lbConfig{})
	waitAllServing(t, l, c)
	queue := fmt.Sprintf("faults-soak-%d", time.Now().UnixNano())
	conn, err := amqp.Dial(c.Nodes[0].URL())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	t.Cleanup(func() {
		if conn, err := amqp.Dial(c.Nodes[0].URL()); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(queue, false, false, false)
			}
			conn.Close()
		}
	})
	ps := &pubsub{url: l.url(), queue: queue}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { ps.publish(stop) })
	wg.Go(func() { ps.consume(stop) })
	w := startWatch(l.url(), 1)
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
		w.halt()
	})

	began := time.Now()
	var samples []sample
	var stalls [][2]time.Time // a restart: from stop_app until amqplb serves the node again
	restarts, reloads := 0, 0
	nextRestart, nextReload := began.Add(2*time.Minute), began.Add(time.Minute)
	for time.Since(began) < duration {
		g, f := l.goroutinesAndFDs()
		samples = append(samples, sample{at: time.Since(began), rssMB: l.metric("process_resident_memory_bytes") / 1e6,
			fds: f, goroutines: g, sess: int(l.metric("amqplb_frontend_active_connections", `frontend="amqp"`))})
		if time.Now().After(nextReload) {
			if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			reloads++
			nextReload = nextReload.Add(time.Minute)
		}
		if time.Now().After(nextRestart) {
			n := c.Nodes[restarts%len(c.Nodes)]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			from := time.Now()
			if err := n.StopApp(ctx); err != nil {
				t.Fatal(err)
			}
			if err := n.StartApp(ctx); err != nil {
				t.Fatal(err)
			}
			cancel()
			if err := testenv.Poll(30*time.Second, func() error {
				if !l.serving(n.Name) {
					return errors.New("not within 30s")
				}
				return nil
			}); err != nil {
				t.Errorf("%s not served again after its restart: %v", n.Name, err)
			}
			stalls = append(stalls, [2]time.Time{from, time.Now()})
			restarts++
			nextRestart = nextRestart.Add(2 * time.Minute)
		}
		time.Sleep(time.Until(began.Add(time.Duration(len(samples)) * 10 * time.Second)))
	}
	close(stop)
	wg.Wait()
	w.halt()

	all := w.since(began)
	var outside []attempt
	for _, a := range all {
		in := false
		for _, s := range stalls {
			if !a.start.Before(s[0]) && a.start.Before(s[1]) {
				in = true
			}
		}
		if !in {
			outside = append(outside, a)
		}
	}
	tAll, tOut := tallyOf(all), tallyOf(outside)
	// Flat: the last third's highest reading against the first third's (after the first minute).
	var first, last sample
	for _, s := range samples {
		switch {
		case s.at >= time.Minute && s.at < duration/3+time.Minute:
			first.rssMB, first.fds, first.goroutines = max(first.rssMB, s.rssMB), max(first.fds, s.fds), max(first.goroutines, s.goroutines)
		case s.at >= duration*2/3:
			last.rssMB, last.fds, last.goroutines = max(last.rssMB, s.rssMB), max(last.fds, s.fds), max(last.goroutines, s.goroutines)
		}
	}
	var miss []string
	if tOut.failedConnects > 0 {
		miss = append(miss, fmt.Sprintf("%d failed connects outside the restarts", tOut.failedConnects))
	}
	if last.rssMB > first.rssMB*1.5+5 || last.fds > first.fds+10 || last.goroutines > first.goroutines+20 {
		miss = append(miss, fmt.Sprintf("not flat: RSS %.1f → %.1f MB, fds %d → %d, goroutines %d → %d",
			first.rssMB, last.rssMB, first.fds, last.fds, first.goroutines, last.goroutines))
	}
	met := "yes"
	if len(miss) > 0 {
		met = "no: " + strings.Join(miss, "; ")
		t.Errorf("soak: %s", met)
	}
	var curve strings.Builder
	for i, s := range samples {
		if i%3 == 0 || i == len(samples)-1 { // every 30 s
			fmt.Fprintf(&curve, "%ds: %.1f MB/%d fds/%d gr; ", int(s.at.Seconds()), s.rssMB, s.fds, s.goroutines)
		}
	}
	results.add(row{test: t.Name(), fault: "soak", target: "amqplb",
		clients: fmt.Sprintf("%s: pubsub at 50 msg/s on a quorum queue (%d confirmed, %d consumed, %d connections), 1 watch loop (%d attempts)",
			duration, ps.published.Load(), ps.consumed.Load(), ps.reconnex.Load(), tAll.total),
		failed: fmt.Sprintf("watch loop: %d failed (%d connects), %d of them (%d connects) outside the restarts", tAll.failed, tAll.failedConnects, tOut.failed, tOut.failedConnects),
		eject:  fmt.Sprintf("%d restarts, %d reloads", restarts, reloads),
		back:   strings.TrimSuffix(curve.String(), "; "),
		goal:   "0 failed connects beyond the restarts; RSS, fds and goroutines flat", met: met,
		how: "every 2 min `rabbitmqctl stop_app` + `start_app` of the next node; every minute `kill -HUP` amqplb"})
}
