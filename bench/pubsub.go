package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// PubSub defaults, as RabbitMQ PerfTest's where it has one.
const (
	// DefaultPubSubDuration is the measured period when PubSub.Duration is 0.
	DefaultPubSubDuration = 10 * time.Second
	// DefaultMessageSize is PerfTest's -s default, in bytes.
	DefaultMessageSize = 12
	// pubsubStampSize is the send timestamp (Unix ns, big endian) every body starts with.
	pubsubStampSize = 8
	// pubsubSettle bounds the wait, after the measured period, for outstanding confirms; and
	// pubsubDrain the wait for consumers to catch up with what was confirmed (or published).
	// A drain that makes no progress for pubsubStall gives up early.
	pubsubSettle = 5 * time.Second
	pubsubDrain  = 15 * time.Second
	pubsubStall  = 2 * time.Second
)

// PubSub is RabbitMQ PerfTest's workload (-x -y -s -r -c -a -q -qq -z): producers publish to one
// queue through the default exchange, consumers consume from it. Each producer and each
// consumer has a connection and a channel of its own. The queue is declared at the start and
// deleted at the end.
//
// A run has a warm-up (not measured), the measured period, then a drain: producers stop, the
// outstanding confirms are awaited and the consumers catch up, so that the run can tell
// whether every confirmed message was consumed. Figures cover the measured period only;
// errors cover the whole run.
type PubSub struct {
	// Producers is the number of publishing connections (-x); 0 means 1.
	Producers int
	// Consumers is the number of consuming connections (-y); 0 means 1.
	Consumers int
	// Size is the message body size in bytes (-s); 0 means 12. The body starts with an 8-byte
	// send timestamp, so a smaller size is raised to 8.
	Size int
	// Rate is the publish rate in messages per second per producer (-r); 0 means unlimited.
	Rate float64
	// Confirm is the maximum of unconfirmed publishes per producer (-c); 0 means no publisher
	// confirms.
	Confirm int
	// Prefetch is the consumers' QoS prefetch count (-q); 0 means unlimited.
	Prefetch int
	// AutoAck makes consumers consume without acknowledgements (-a); otherwise each message
	// is acknowledged on receipt.
	AutoAck bool
	// QueueType is "classic" (or "") or "quorum" (-qq). A quorum queue is always durable.
	QueueType string
	// Durable declares a durable queue and publishes persistent messages.
	Durable bool
	// Duration is the measured period (-z); 0 means 10s. The run lasts Warmup + Duration,
	// plus the drain.
	Duration time.Duration
	// Warmup runs the workload unmeasured before Duration starts; 0 means none.
	Warmup time.Duration
	// Queue is the queue's name; "" means a name unique to the run.
	Queue string
	// DialTimeout bounds each connection's TCP connect and AMQP handshake; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
}

// Name returns "pubsub".
func (p PubSub) Name() string { return "pubsub" }

func (p PubSub) withDefaults() PubSub {
	if p.Producers <= 0 {
		p.Producers = 1
	}
	if p.Consumers <= 0 {
		p.Consumers = 1
	}
	if p.Size <= 0 {
		p.Size = DefaultMessageSize
	}
	p.Size = max(p.Size, pubsubStampSize)
	if p.QueueType == "" {
		p.QueueType = "classic"
	}
	if p.Duration <= 0 {
		p.Duration = DefaultPubSubDuration
	}
	p.Warmup = max(p.Warmup, 0)
	p.Confirm = max(p.Confirm, 0)
	p.Prefetch = max(p.Prefetch, 0)
	p.Rate = max(p.Rate, 0)
	return p
}

// Validate reports settings no run can use.
func (p PubSub) Validate() error {
	switch p.QueueType {
	case "", "classic", "quorum":
	default:
		return fmt.Errorf("pubsub: queue type %q: want classic or quorum", p.QueueType)
	}
	if p.Producers < 0 || p.Consumers < 0 || p.Size < 0 || p.Confirm < 0 || p.Prefetch < 0 || p.Rate < 0 {
		return errors.New("pubsub: producers, consumers, size, rate, confirm and prefetch must not be negative")
	}
	if p.Duration < 0 || p.Warmup < 0 {
		return errors.New("pubsub: duration and warm-up must not be negative")
	}
	return nil
}

// pubsubCounters are cumulative over the run; every field is updated atomically.
type pubsubCounters struct {
	published, confirmed, nacked, consumed atomic.Int64
	errConnect, errPublish, errConsume     atomic.Int64
}

// pubsubCount is a snapshot of pubsubCounters.
type pubsubCount struct {
	published, confirmed, nacked, consumed int64
	errConnect, errPublish, errConsume     int64
}

func (c *pubsubCounters) snapshot() pubsubCount {
	return pubsubCount{
		published: c.published.Load(), confirmed: c.confirmed.Load(), nacked: c.nacked.Load(),
		consumed: c.consumed.Load(), errConnect: c.errConnect.Load(), errPublish: c.errPublish.Load(),
		errConsume: c.errConsume.Load(),
	}
}

func (a pubsubCount) sub(b pubsubCount) pubsubCount {
	return pubsubCount{
		published: a.published - b.published, confirmed: a.confirmed - b.confirmed,
		nacked: a.nacked - b.nacked, consumed: a.consumed - b.consumed,
		errConnect: a.errConnect - b.errConnect, errPublish: a.errPublish - b.errPublish,
		errConsume: a.errConsume - b.errConsume,
	}
}

// pubsubResult is one run: the measured period's counts and latencies, and the whole run's
// counts (after the drain).
type pubsubResult struct {
	window          pubsubCount
	elapsed         time.Duration // length of the measured period
	latency         Summary       // consumer latency over the measured period
	confirmLatency  Summary       // confirm latency over the measured period
	all             pubsubCount   // whole run, drain included
	confirmedUnseen int64         // confirmed messages never consumed, after the drain
}

// Run measures t once; see PubSub.
func (p PubSub) Run(ctx context.Context, t Target, progress io.Writer) (Figures, error) {
	res, err := p.run(ctx, t, progress)
	if err != nil {
		return nil, err
	}
	return p.figures(res), nil
}

func (p PubSub) figures(r pubsubResult) Figures {
	p = p.withDefaults()
	secs := r.elapsed.Seconds()
	rate := func(n int64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(n) / secs
	}
	fs := Figures{{Name: "published", Unit: "msg/s", Value: rate(r.window.published), Higher: true}}
	if p.Confirm > 0 {
		fs = append(fs, Figure{Name: "confirmed", Unit: "msg/s", Value: rate(r.window.confirmed), Higher: true})
	}
	fs = append(fs, Figure{Name: "consumed", Unit: "msg/s", Value: rate(r.window.consumed), Higher: true})
	fs = append(fs, summaryFigures("latency_", r.latency)...)
	if p.Confirm > 0 {
		fs = append(fs, summaryFigures("confirm_latency_", r.confirmLatency)...)
	}
	errs := Figures{
		{Name: "errors_connect", Unit: "count", Value: float64(r.all.errConnect)},
		{Name: "errors_publish", Unit: "count", Value: float64(r.all.errPublish)},
		{Name: "errors_consume", Unit: "count", Value: float64(r.all.errConsume)},
	}
	if p.Confirm > 0 {
		errs = append(errs,
			Figure{Name: "errors_nack", Unit: "count", Value: float64(r.all.nacked)},
			Figure{Name: "confirmed_not_consumed", Unit: "count", Value: float64(r.confirmedUnseen)},
		)
	}
	return append(fs, errs...)
}

// uniqueQueueName names a run's queue.
func uniqueQueueName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "amqplb-bench-" + hex.EncodeToString(b[:])
}

// pubsubRun is the state of one run shared by its goroutines.
type pubsubRun struct {
	p        PubSub
	t        Target
	queue    string
	n        pubsubCounters
	latency  *Histogram // consumer latency since the last roll
	confirms *Histogram // confirm latency since the last roll
}

func (p PubSub) run(ctx context.Context, t Target, progress io.Writer) (res pubsubResult, err error) {
	if err := p.Validate(); err != nil {
		return res, err
	}
	p = p.withDefaults()
	if progress == nil {
		progress = io.Discard
	}
	r := &pubsubRun{p: p, t: t, queue: p.Queue, latency: NewHistogram(), confirms: NewHistogram()}
	if r.queue == "" {
		r.queue = uniqueQueueName()
	}

	// The setup connection is the probe: a target it cannot reach is unreachable.
	setup, err := DialAMQP(ctx, t, "amqplb-bench pubsub setup", p.DialTimeout)
	if err != nil {
		return res, &UnreachableError{Target: t, Err: err}
	}
	defer setup.CloseDeadline(time.Now().Add(r.dialTimeout()))
	if err := r.declare(setup); err != nil {
		return res, err
	}
	defer r.deleteQueue(setup)

	var (
		conns []*amqp.Connection
		wg    sync.WaitGroup // every producer, confirmer and consumer goroutine
	)
	closeAll := func() {
		deadline := time.Now().Add(r.dialTimeout())
		for _, c := range conns {
			_ = c.CloseDeadline(deadline)
		}
	}
	defer func() {
		closeAll()
		wg.Wait()
	}()

	// Consumers first, so that the first messages find them.
	consCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	consumers := 0
	for i := range p.Consumers {
		conn, deliveries, err := r.openConsumer(ctx, i)
		if err != nil {
			r.n.errConnect.Add(1)
			fmt.Fprintf(progress, "consumer %d: %v\n", i+1, err)
			continue
		}
		conns = append(conns, conn)
		consumers++
		wg.Go(func() { r.consume(consCtx, deliveries) })
	}
	pubCtx, stopProducers := context.WithCancel(ctx)
	defer stopProducers()
	var producers []*producer
	for i := range p.Producers {
		pr, err := r.openProducer(ctx, i)
		if err != nil {
			r.n.errConnect.Add(1)
			fmt.Fprintf(progress, "producer %d: %v\n", i+1, err)
			continue
		}
		conns = append(conns, pr.conn)
		producers = append(producers, pr)
	}
	if consumers == 0 || len(producers) == 0 {
		return res, fmt.Errorf("pubsub on %s: %d of %d producers and %d of %d consumers connected",
			t.Name, len(producers), p.Producers, consumers, p.Consumers)
	}
	for _, pr := range producers {
		if pr.notify != nil {
			wg.Go(func() { r.confirmLoop(pr) })
		}
		wg.Go(func() { r.publishLoop(pubCtx, pr) })
	}

	window, elapsed := r.measure(ctx, progress)
	res.window, res.elapsed = window.counts, elapsed
	res.latency, res.confirmLatency = window.latency.Summary(), window.confirms.Summary()

	// Drain: stop publishing, let outstanding confirms arrive, let the consumers catch up.
	stopProducers()
	r.settle(ctx, producers)
	r.drain(ctx)
	stopConsumers()
	closeAll()
	wg.Wait()
	conns = nil

	res.all = r.n.snapshot()
	if p.Confirm > 0 {
		res.confirmedUnseen = max(res.all.confirmed-res.all.consumed, 0)
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("pubsub on %s: %w", t.Name, context.Cause(ctx))
	}
	return res, nil
}

func (r *pubsubRun) dialTimeout() time.Duration {
	if r.p.DialTimeout > 0 {
		return r.p.DialTimeout
	}
	return DefaultDialTimeout
}

func (r *pubsubRun) declare(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("pubsub: open setup channel: %w", err)
	}
	defer ch.Close()
	durable := r.p.Durable || r.p.QueueType == "quorum"
	args := amqp.Table{"x-queue-type": r.p.QueueType}
	if _, err := ch.QueueDeclare(r.queue, durable, false, false, false, args); err != nil {
		return fmt.Errorf("pubsub: declare %s queue %s: %w", r.p.QueueType, r.queue, err)
	}
	return nil
}

// deleteQueue deletes the run's queue, over a fresh channel as the setup one may have been
// closed by an error.
func (r *pubsubRun) deleteQueue(conn *amqp.Connection) {
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	_, _ = ch.QueueDelete(r.queue, false, false, false)
}

func (r *pubsubRun) openConsumer(ctx context.Context, i int) (*amqp.Connection, <-chan amqp.Delivery, error) {
	conn, err := DialAMQP(ctx, r.t, fmt.Sprintf("amqplb-bench pubsub consumer %d", i+1), r.p.DialTimeout)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*amqp.Connection, <-chan amqp.Delivery, error) {
		_ = conn.CloseDeadline(time.Now().Add(r.dialTimeout()))
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fail(fmt.Errorf("open channel: %w", err))
	}
	if r.p.Prefetch > 0 {
		if err := ch.Qos(r.p.Prefetch, 0, false); err != nil {
			return fail(fmt.Errorf("qos: %w", err))
		}
	}
	deliveries, err := ch.Consume(r.queue, "", r.p.AutoAck, false, false, false, nil)
	if err != nil {
		return fail(fmt.Errorf("consume: %w", err))
	}
	return conn, deliveries, nil
}

// consume counts and times deliveries until ctx ends or the channel closes.
func (r *pubsubRun) consume(ctx context.Context, deliveries <-chan amqp.Delivery) {
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-deliveries:
			if !ok {
				if ctx.Err() == nil {
					r.n.errConsume.Add(1) // the channel or connection died under us
				}
				return
			}
			if len(d.Body) >= pubsubStampSize {
				sent := int64(binary.BigEndian.Uint64(d.Body))
				r.latency.Record(time.Duration(time.Now().UnixNano() - sent))
			}
			if !r.p.AutoAck {
				if err := d.Ack(false); err != nil {
					if ctx.Err() == nil {
						r.n.errConsume.Add(1)
					}
					return
				}
			}
			r.n.consumed.Add(1)
		}
	}
}

// producer is one publishing connection. With confirms, sem holds one token per unconfirmed
// publish and sent the send time of each by delivery tag modulo its size: no more than
// len(sent) publishes are ever unconfirmed, so their slots are distinct.
type producer struct {
	i      int
	conn   *amqp.Connection
	ch     *amqp.Channel
	notify chan amqp.Confirmation // nil without confirms
	sem    chan struct{}
	sent   []atomic.Int64
	// confirmDone is closed when the confirm loop ends (the channel closed).
	confirmDone chan struct{}
}

func (r *pubsubRun) openProducer(ctx context.Context, i int) (*producer, error) {
	conn, err := DialAMQP(ctx, r.t, fmt.Sprintf("amqplb-bench pubsub producer %d", i+1), r.p.DialTimeout)
	if err != nil {
		return nil, err
	}
	pr := &producer{i: i, conn: conn, confirmDone: make(chan struct{})}
	fail := func(err error) (*producer, error) {
		_ = conn.CloseDeadline(time.Now().Add(r.dialTimeout()))
		return nil, err
	}
	if pr.ch, err = conn.Channel(); err != nil {
		return fail(fmt.Errorf("open channel: %w", err))
	}
	if r.p.Confirm > 0 {
		if err := pr.ch.Confirm(false); err != nil {
			return fail(fmt.Errorf("confirm.select: %w", err))
		}
		pr.sem = make(chan struct{}, r.p.Confirm)
		pr.sent = make([]atomic.Int64, r.p.Confirm)
		// The library blocks its reader on a full notify channel: the confirm loop drains it
		// until the channel closes, and the buffer absorbs a multiple-ack burst.
		pr.notify = pr.ch.NotifyPublish(make(chan amqp.Confirmation, r.p.Confirm))
	}
	return pr, nil
}

// publishLoop publishes until ctx ends, at p.Rate if set and within p.Confirm unconfirmed
// messages if set.
func (r *pubsubRun) publishLoop(ctx context.Context, pr *producer) {
	body := make([]byte, r.p.Size) // reused: amqp091 has written it out when Publish returns
	for i := pubsubStampSize; i < len(body); i++ {
		body[i] = byte('a' + i%26)
	}
	msg := amqp.Publishing{Body: body}
	if r.p.Durable {
		msg.DeliveryMode = amqp.Persistent
	}
	var interval time.Duration
	if r.p.Rate > 0 {
		interval = time.Duration(float64(time.Second) / r.p.Rate)
	}
	var timer *time.Timer
	start := time.Now()
	for n := int64(0); ctx.Err() == nil; n++ {
		if interval > 0 {
			// Pace against the start rather than the previous message, so that sleeps that
			// overshoot are caught up on.
			if wait := time.Until(start.Add(time.Duration(n) * interval)); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
					defer timer.Stop()
				} else {
					timer.Reset(wait)
				}
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		}
		if pr.sem != nil {
			select {
			case pr.sem <- struct{}{}:
			case <-ctx.Done():
				return
			case <-pr.confirmDone:
				return
			}
		}
		var tag uint64
		if pr.sem != nil {
			tag = pr.ch.GetNextPublishSeqNo()
		}
		now := time.Now().UnixNano()
		binary.BigEndian.PutUint64(body, uint64(now))
		if pr.sem != nil {
			pr.sent[tag%uint64(len(pr.sent))].Store(now)
		}
		if err := pr.ch.PublishWithContext(ctx, "", r.queue, false, false, msg); err != nil {
			if pr.sem != nil {
				<-pr.sem
			}
			if ctx.Err() == nil {
				r.n.errPublish.Add(1)
			}
			return // the channel is closed: this producer is done
		}
		r.n.published.Add(1)
	}
}

// confirmLoop times and counts confirms until the channel closes.
func (r *pubsubRun) confirmLoop(pr *producer) {
	defer close(pr.confirmDone)
	for c := range pr.notify {
		sent := pr.sent[c.DeliveryTag%uint64(len(pr.sent))].Load()
		if c.Ack {
			r.n.confirmed.Add(1)
			r.confirms.Record(time.Duration(time.Now().UnixNano() - sent))
		} else {
			r.n.nacked.Add(1)
		}
		select {
		case <-pr.sem:
		default: // a confirm for a publish that returned an error: no token to give back
		}
	}
}

// pubsubWindow is what the measured period saw.
type pubsubWindow struct {
	counts            pubsubCount
	latency, confirms *Histogram
}

// measure runs the warm-up and the measured period, writing a progress line each second, and
// returns the measured period's figures and length. Interval histograms are rolled at each
// line and at both ends of the period; the rolls within the period are merged into its totals.
func (r *pubsubRun) measure(ctx context.Context, progress io.Writer) (pubsubWindow, time.Duration) {
	w := pubsubWindow{latency: NewHistogram(), confirms: NewHistogram()}
	t0 := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	startAt := t0.Add(r.p.Warmup)
	endAt := startAt.Add(r.p.Duration)
	boundary := time.NewTimer(time.Until(startAt))
	defer boundary.Stop()

	measuring := false
	var windowStart time.Time
	var startCount pubsubCount
	lastRoll, lastCount := t0, r.n.snapshot()
	roll := func(now time.Time, line bool) {
		c := r.n.snapshot()
		lat, conf := r.latency.Take(), r.confirms.Take()
		if measuring {
			w.latency.Merge(lat)
			w.confirms.Merge(conf)
		}
		if line {
			r.progressLine(progress, now.Sub(t0), now.Sub(lastRoll), c.sub(lastCount), lat, conf, !measuring)
		}
		lastRoll, lastCount = now, c
	}
	for {
		select {
		case <-ctx.Done():
			now := time.Now()
			roll(now, false)
			if !measuring {
				return w, 0
			}
			w.counts = r.n.snapshot().sub(startCount)
			return w, now.Sub(windowStart)
		case now := <-tick.C:
			// A tick just after a boundary would print a rate over a few microseconds.
			roll(now, now.Sub(lastRoll) > 100*time.Millisecond)
		case now := <-boundary.C:
			// Each end of the period closes the last second's line, unless a tick just did.
			roll(now, now.Sub(lastRoll) > 100*time.Millisecond)
			if !measuring {
				measuring, windowStart, startCount = true, now, lastCount
				boundary.Reset(time.Until(endAt))
				continue
			}
			w.counts = lastCount.sub(startCount)
			return w, now.Sub(windowStart)
		}
	}
}

// progressLine writes one line like PerfTest's: rates over the interval and its consumer
// latency.
func (r *pubsubRun) progressLine(w io.Writer, at, interval time.Duration, c pubsubCount, lat, conf *Histogram, warmup bool) {
	secs := interval.Seconds()
	if secs <= 0 {
		return
	}
	rate := func(n int64) string { return fmt.Sprintf("%.0f/s", float64(n)/secs) }
	var b strings.Builder
	fmt.Fprintf(&b, "t=%ds published %s", int(at.Round(time.Second)/time.Second), rate(c.published))
	if r.p.Confirm > 0 {
		fmt.Fprintf(&b, " confirmed %s", rate(c.confirmed))
	}
	s := lat.Summary()
	fmt.Fprintf(&b, " consumed %s p50 %sms p99 %sms", rate(c.consumed), formatValue(s.P50), formatValue(s.P99))
	if r.p.Confirm > 0 {
		cs := conf.Summary()
		fmt.Fprintf(&b, " confirm-p99 %sms", formatValue(cs.P99))
	}
	if errs := c.errConnect + c.errPublish + c.errConsume + c.nacked; errs > 0 {
		fmt.Fprintf(&b, " errors %d", errs)
	}
	if warmup {
		b.WriteString(" (warm-up)")
	}
	fmt.Fprintln(w, b.String())
}

// settle waits until every publish is confirmed or nacked, or pubsubSettle.
func (r *pubsubRun) settle(ctx context.Context, producers []*producer) {
	if r.p.Confirm == 0 {
		return
	}
	r.waitFor(ctx, pubsubSettle, func() bool {
		for _, pr := range producers {
			if len(pr.sem) > 0 {
				select {
				case <-pr.confirmDone: // channel gone: nothing more will come
				default:
					return false
				}
			}
		}
		return true
	}, nil)
}

// drain waits until the consumers have consumed what was confirmed (with confirms) or published
// (without), up to pubsubDrain or until consumption stalls for pubsubStall.
func (r *pubsubRun) drain(ctx context.Context) {
	target := func() int64 {
		if r.p.Confirm > 0 {
			return r.n.confirmed.Load()
		}
		return r.n.published.Load()
	}
	r.waitFor(ctx, pubsubDrain, func() bool { return r.n.consumed.Load() >= target() }, &r.n.consumed)
}

// waitFor polls done until it holds, ctx ends, limit passes, or progress (when set) has not
// moved for pubsubStall.
func (r *pubsubRun) waitFor(ctx context.Context, limit time.Duration, done func() bool, progress *atomic.Int64) {
	deadline := time.Now().Add(limit)
	var last int64
	lastMove := time.Now()
	if progress != nil {
		last = progress.Load()
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.After(deadline) {
				return
			}
			if progress != nil {
				if v := progress.Load(); v != last {
					last, lastMove = v, now
				} else if now.Sub(lastMove) > pubsubStall {
					return
				}
			}
		}
	}
}
