//go:build linux

package faults

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// publisher publishes total numbered messages with confirms to a queue, in batches, and
// republishes on a new connection what was not confirmed when its connection failed.
type publisher struct {
	name  string
	urls  []string // tried in turn on each new connection
	queue string
	total int

	mu          sync.Mutex
	confirmed   map[int]bool
	reconnects  int
	connectFail int
}

func (p *publisher) confirmedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.confirmed)
}

// run publishes until every message is confirmed or deadline passes.
func (p *publisher) run(deadline time.Time) {
	const batch = 100
	next := 0       // the next message never sent
	var retry []int // sent but not confirmed: sent again first
	for u := 0; time.Now().Before(deadline); u++ {
		conn, err := amqp.DialConfig(p.urls[u%len(p.urls)], amqp.Config{Dial: amqp.DefaultDial(opTimeout)})
		if err != nil {
			p.mu.Lock()
			p.connectFail++
			p.mu.Unlock()
			time.Sleep(100 * time.Millisecond) // the node is gone; the next URL, a moment later
			continue
		}
		p.mu.Lock()
		p.reconnects++
		p.mu.Unlock()
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		for err == nil && time.Now().Before(deadline) {
			var ids []int
			for len(ids) < batch && len(retry) > 0 {
				ids, retry = append(ids, retry[0]), retry[1:]
			}
			for len(ids) < batch && next < p.total {
				ids = append(ids, next)
				next++
			}
			if len(ids) == 0 {
				conn.Close()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			dcs := make([]*amqp.DeferredConfirmation, len(ids))
			for i, id := range ids {
				if err == nil {
					dcs[i], err = ch.PublishWithDeferredConfirmWithContext(ctx, "", p.queue, false, false,
						amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: strconv.Itoa(id), Body: []byte(strconv.Itoa(id))})
				}
			}
			for i, id := range ids {
				ok := false
				if dcs[i] != nil {
					ok, _ = dcs[i].WaitContext(ctx)
				}
				if ok {
					p.mu.Lock()
					p.confirmed[id] = true
					p.mu.Unlock()
				} else {
					retry = append(retry, id)
					if err == nil {
						err = fmt.Errorf("message %d not confirmed", id)
					}
				}
			}
			cancel()
		}
		conn.Close()
	}
}

// drainQueue consumes everything in queue through url: message ids and how often each came.
func drainQueue(t *testing.T, url, queue string) map[int]int {
	t.Helper()
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(opTimeout)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Qos(1000, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int{}
	idle := time.NewTimer(3 * time.Second)
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); {
		select {
		case d, ok := <-deliveries:
			if !ok {
				t.Fatal("the consumer's channel closed")
			}
			id, _ := strconv.Atoi(string(d.Body))
			got[id]++
			idle.Reset(3 * time.Second)
		case <-idle.C:
			// Nothing for 3 s: the queue is empty (it is not published to any more).
			q, err := ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
			if err == nil && q.Messages == 0 {
				return got
			}
			idle.Reset(3 * time.Second)
		}
	}
	t.Errorf("queue %s not drained within 2 minutes", queue)
	return got
}

// TestConfirmedAcrossNodeKill: 20,000 messages published with confirms to a quorum queue whose
// leader is on node 3, through amqplb and straight to the brokers at the same time; node 3 is
// SIGKILLed 30 % of the way in and started again 12 s later. Every confirmed message must be
// consumed, or amqplb's publisher must lose no more than the direct one. On RabbitMQ 3.10 and 4.0.
func TestConfirmedAcrossNodeKill(t *testing.T) {
	t.Run("3.10", func(t *testing.T) { confirmedAcrossNodeKill(t, requireFaults(t)) })
	t.Run("4.0", func(t *testing.T) { confirmedAcrossNodeKill(t, requireFaults4(t)) })
}

func confirmedAcrossNodeKill(t *testing.T, c *testenv.Cluster) {
	const total = 20000
	victim := c.Nodes[2]
	// balance = "first" with node 3 first: amqplb's publisher is on the victim, as the direct one
	// is, so both lose their connection with the node.
	l := startLB(t, c, lbConfig{backend: `balance = "first"`, order: []int{2, 0, 1}})
	waitAllServing(t, l, c)

	// The queues' leaders go where they are declared from (queue-leader-locator client-local).
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	queues := map[string]string{"amqplb": "faults-loss-amqplb-" + suffix, "direct": "faults-loss-direct-" + suffix}
	conn, err := amqp.Dial(victim.URL())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-queue-leader-locator": "client-local"}); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	t.Cleanup(func() {
		conn, err := amqp.Dial(c.Nodes[0].URL())
		if err != nil {
			t.Errorf("deleting the queues: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		for _, q := range queues {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})

	direct := []string{victim.URL(), c.Nodes[0].URL(), c.Nodes[1].URL()}
	pubs := []*publisher{
		{name: "amqplb", urls: []string{l.url()}, queue: queues["amqplb"], total: total, confirmed: map[int]bool{}},
		{name: "direct", urls: direct, queue: queues["direct"], total: total, confirmed: map[int]bool{}},
	}
	deadline := time.Now().Add(3 * time.Minute)
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Go(func() { p.run(deadline) })
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		for _, p := range pubs {
			if n := p.confirmedCount(); n < total*3/10 {
				return fmt.Errorf("%s: %d confirmed, want %d before the kill", p.name, n, total*3/10)
			}
		}
		return nil
	})
	t.Cleanup(func() {
		if !victim.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_ = victim.Start(ctx)
		}
	})
	killedAt := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	// Started again 12 s after the kill (a time, not a wait on state: it is the fault's shape).
	time.Sleep(time.Until(killedAt.Add(12 * time.Second)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	lost := map[string]int{}
	for _, p := range pubs {
		got := drainQueue(t, c.Nodes[0].URL(), p.queue)
		var missing, dups int
		for id := range p.confirmed {
			if got[id] == 0 {
				missing++
			}
		}
		for _, n := range got {
			if n > 1 {
				dups += n - 1
			}
		}
		lost[p.name] = missing
		unconfirmed := total - len(p.confirmed)
		t.Logf("%s: %d confirmed, %d never confirmed, %d consumed (%d distinct), %d confirmed but lost, %d duplicates, %d connections, %d failed connects",
			p.name, len(p.confirmed), unconfirmed, len(got)+dups, len(got), missing, dups, p.reconnects, p.connectFail)
		results.add(row{test: t.Name(), fault: "confirmed messages across a node kill (RabbitMQ " + c.Version() + ")", target: p.name,
			clients: fmt.Sprintf("1 publisher (connected to node 3 first), %d persistent messages in confirmed batches of 100 to a quorum queue led by node 3, republishing what was not confirmed on a new connection (%d connections)", total, p.reconnects),
			failed:  fmt.Sprintf("%d confirmed, %d never confirmed; consumed %d distinct, **%d confirmed but lost**, %d duplicates; %d failed connects", len(p.confirmed), unconfirmed, len(got), missing, dups, p.connectFail),
			eject:   "—", back: "—",
			goal: "every confirmed message consumed, or amqplb loses no more than direct", how: "SIGKILL node 3 at 30 % confirmed, start it 12 s later"})
	}
	met := "yes"
	if lost["amqplb"] > 0 {
		met = fmt.Sprintf("amqplb lost %d, direct %d", lost["amqplb"], lost["direct"])
		if lost["amqplb"] > lost["direct"] {
			met = "no: " + met
			t.Errorf("confirmed messages lost: %s", met)
		} else {
			met = "yes: " + met + " (the broker's loss)"
		}
	}
	results.mu.Lock()
	for i := len(results.rows) - len(pubs); i < len(results.rows); i++ {
		results.rows[i].met = met
	}
	results.mu.Unlock()
}
