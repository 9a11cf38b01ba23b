package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Storm defaults.
const (
	// DefaultStormN is the number of connections when Storm.N is 0.
	DefaultStormN = 1000
	// DefaultStormC is the concurrency when Storm.C is 0.
	DefaultStormC = 10
)

// Storm opens N AMQP connections, C at a time: each dials, completes the AMQP handshake, opens a
// channel, then closes the channel and the connection. It measures how fast a target accepts
// connections: connections per second (the whole cycle), the handshake time (dial to channel
// open) and the failures.
type Storm struct {
	// N is the number of connections; 0 means 1000.
	N int
	// C is the number of connections under way at once; 0 means 10.
	C int
	// DialTimeout bounds each connection's TCP connect and AMQP handshake; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
}

// Name returns "storm".
func (s Storm) Name() string { return "storm" }

// Validate reports settings no run can use.
func (s Storm) Validate() error {
	if s.N < 0 || s.C < 0 {
		return errors.New("storm: -n and -c must not be negative")
	}
	return nil
}

func (s Storm) withDefaults() Storm {
	if s.N == 0 {
		s.N = DefaultStormN
	}
	if s.C == 0 {
		s.C = DefaultStormC
	}
	s.C = min(s.C, s.N)
	return s
}

// stormResult is one storm.
type stormResult struct {
	ok, failed int64
	elapsed    time.Duration
	handshake  Summary
	firstErr   error
}

// Run measures t once; see Storm. A target that the first (unmeasured) connection cannot reach
// is an *UnreachableError.
func (s Storm) Run(ctx context.Context, t Target, progress io.Writer) (Figures, error) {
	res, err := s.run(ctx, t, progress)
	if err != nil {
		return nil, err
	}
	secs := res.elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(res.ok) / secs
	}
	return Figures{
		{Name: "connections", Unit: "conn/s", Value: rate, Higher: true},
		{Name: "handshake_p50", Unit: "ms", Value: res.handshake.P50},
		{Name: "handshake_p99", Unit: "ms", Value: res.handshake.P99},
		{Name: "handshake_max", Unit: "ms", Value: res.handshake.Max},
		{Name: "failures", Unit: "count", Value: float64(res.failed)},
	}, nil
}

func (s Storm) run(ctx context.Context, t Target, progress io.Writer) (stormResult, error) {
	var res stormResult
	if err := s.Validate(); err != nil {
		return res, err
	}
	s = s.withDefaults()
	if progress == nil {
		progress = io.Discard
	}
	timeout := s.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	// The probe tells an unreachable target from a storm of failures, quickly.
	probe, err := DialAMQP(ctx, t, "amqplb-bench storm probe", timeout)
	if err != nil {
		return res, &UnreachableError{Target: t, Err: err}
	}
	_ = probe.CloseDeadline(time.Now().Add(timeout))

	hist := NewHistogram()
	var (
		next, ok, failed atomic.Int64
		errOnce          sync.Once
		wg               sync.WaitGroup
	)
	cycle := func(i int64) error {
		start := time.Now()
		conn, err := DialAMQP(ctx, t, fmt.Sprintf("amqplb-bench storm %d", i), timeout)
		if err != nil {
			return err
		}
		defer conn.CloseDeadline(time.Now().Add(timeout))
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		hist.Record(time.Since(start))
		if err := ch.Close(); err != nil {
			return fmt.Errorf("close channel: %w", err)
		}
		if err := conn.CloseDeadline(time.Now().Add(timeout)); err != nil {
			return fmt.Errorf("close connection: %w", err)
		}
		return nil
	}

	start := time.Now()
	stopProgress := make(chan struct{})
	wg.Go(func() { stormProgress(progress, start, &ok, &failed, stopProgress) })
	var workers sync.WaitGroup
	for range s.C {
		workers.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(s.N) {
					return
				}
				if err := cycle(i); err != nil {
					if ctx.Err() != nil {
						return
					}
					failed.Add(1)
					errOnce.Do(func() { res.firstErr = err })
					continue
				}
				ok.Add(1)
			}
		})
	}
	workers.Wait()
	res.elapsed = time.Since(start)
	close(stopProgress)
	wg.Wait()

	res.ok, res.failed, res.handshake = ok.Load(), failed.Load(), hist.Summary()
	fmt.Fprintf(progress, "storm: %d connections in %v, %d failed", res.ok, res.elapsed.Round(time.Millisecond), res.failed)
	if res.firstErr != nil {
		fmt.Fprintf(progress, " (first: %v)", res.firstErr)
	}
	fmt.Fprintln(progress)
	if ctx.Err() != nil {
		return res, fmt.Errorf("storm on %s: %w", t.Name, context.Cause(ctx))
	}
	return res, nil
}

// stormProgress writes a line each second until stop is closed.
func stormProgress(w io.Writer, start time.Time, ok, failed *atomic.Int64, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastOK int64
	last := start
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			n := ok.Load()
			fmt.Fprintf(w, "t=%ds %.0f conn/s, %d done, %d failed\n", int(now.Sub(start).Round(time.Second)/time.Second),
				float64(n-lastOK)/now.Sub(last).Seconds(), n, failed.Load())
			lastOK, last = n, now
		}
	}
}
