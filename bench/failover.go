package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Failover measures what clients see while a broker fails and comes back: Workers loops each
// connect, open a channel, publish one message (waiting for its confirm with Confirm) and
// close, as fast as they can, for Duration. At FaultAt the fault is injected (FaultFunc, or
// the Fault shell command), at RecoverAt the recovery (RecoverFunc or Recover). Every attempt
// is recorded in a Timeline of Bucket-wide buckets by its start time.
//
// Use a pointer: Run keeps every round's Timeline, which Timelines and LastTimelines return.
// The fault must leave the target as it found it once recovered (the next round starts right
// away): give amqplb time to mark the node up again, e.g. with a short sleep in Recover.
//
// The message goes to the default exchange with a routing key no queue is bound to, so the
// broker drops it and, with confirms, acks it: the loop needs no queue and leaves nothing
// behind.
type Failover struct {
	// Duration is how long attempts are started; default 20s.
	Duration time.Duration
	// FaultAt and RecoverAt are the offsets from the start at which the fault and the recovery
	// run; zero means Duration/4 and 3*Duration/4. Need FaultAt < RecoverAt <= Duration.
	FaultAt, RecoverAt time.Duration
	// Fault and Recover are shell commands run with sh -c at FaultAt and RecoverAt ("kill
	// -STOP 1234", "kill -CONT 1234"); empty means none. A failing command fails the round.
	Fault, Recover string
	// FaultFunc and RecoverFunc, when set, are run instead of Fault and Recover (for tests and
	// the Go API).
	FaultFunc, RecoverFunc func(context.Context) error
	// Workers is the number of concurrent attempt loops; default 4.
	Workers int
	// Confirm puts each channel in confirm mode and waits for the publish's ack; an attempt
	// whose message is nacked fails. Without it the publish is not waited for.
	Confirm bool
	// AttemptTimeout bounds one whole attempt, from dial to the end of Connection.Close;
	// default 3s.
	AttemptTimeout time.Duration
	// RetryPause is how long a worker waits after a failed attempt before the next (so a
	// refused port does not turn into a busy loop of millions of failures); default 10ms,
	// negative for none.
	RetryPause time.Duration
	// Bucket is the width of a timeline bucket; default 100ms.
	Bucket time.Duration

	mu        sync.Mutex
	timelines map[string][]*Timeline
}

// Name returns "failover".
func (f *Failover) Name() string { return "failover" }

func (f *Failover) duration() time.Duration { return positiveOr(f.Duration, 20*time.Second) }
func (f *Failover) faultAt() time.Duration  { return positiveOr(f.FaultAt, f.duration()/4) }
func (f *Failover) recoverAt() time.Duration {
	return positiveOr(f.RecoverAt, f.duration()*3/4)
}
func (f *Failover) workers() int                  { return positiveOr(f.Workers, 4) }
func (f *Failover) attemptTimeout() time.Duration { return positiveOr(f.AttemptTimeout, 3*time.Second) }
func (f *Failover) bucket() time.Duration         { return positiveOr(f.Bucket, 100*time.Millisecond) }
func (f *Failover) retryPause() time.Duration {
	if f.RetryPause < 0 {
		return 0
	}
	return positiveOr(f.RetryPause, 10*time.Millisecond)
}

// positiveOr returns v, or def when v is zero or negative: zero-valued options mean defaults.
func positiveOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Validate reports settings no run can use: the schedule must be FaultAt < RecoverAt <=
// Duration (after defaults).
func (f *Failover) Validate() error {
	d, fa, ra := f.duration(), f.faultAt(), f.recoverAt()
	if fa >= ra || ra > d {
		return fmt.Errorf("failover: want fault-at (%v) < recover-at (%v) <= duration (%v)", fa, ra, d)
	}
	return nil
}

// Timelines returns every round's timeline so far, per target name, in the order run.
func (f *Failover) Timelines() map[string][]*Timeline {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]*Timeline, len(f.timelines))
	for k, v := range f.timelines {
		out[k] = slices.Clone(v)
	}
	return out
}

// LastTimelines returns the latest round's timeline per target name, the shape
// WriteTimelineSVG takes.
func (f *Failover) LastTimelines() map[string]*Timeline {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]*Timeline, len(f.timelines))
	for k, v := range f.timelines {
		if len(v) > 0 {
			out[k] = v[len(v)-1]
		}
	}
	return out
}

// Run runs one failover round against t (as Target.AMQPURL). A first attempt before the clock starts must
// succeed, or the target is reported unreachable. Figures: attempts, successes,
// failures_total, failures_after_fault (failed attempts that ended after the fault began),
// recovery_s (see Timeline.Recovery; when the target never recovered it is the time from the
// fault to the end of the run and recovered is 0), recovered (1 or 0) and slowest_attempt_s.
func (f *Failover) Run(ctx context.Context, t Target, progress io.Writer) (Figures, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	progress = &lockedWriter{w: progress}
	url := t.AMQPURL()
	if kind, err := f.attempt(ctx, url); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{Target: t, Err: fmt.Errorf("first attempt failed (%s): %w", kind, err)}
	}

	start := time.Now()
	runCtx, cancel := context.WithDeadline(ctx, start.Add(f.duration()))
	defer cancel()
	var ok, failed atomic.Int64
	perWorker := make([][]attempt, f.workers())
	var wg sync.WaitGroup
	for w := range perWorker {
		wg.Go(func() { perWorker[w] = f.work(ctx, runCtx, url, start, &ok, &failed) })
	}
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	progressDone.Go(func() { failoverProgress(progress, t.Name, start, &ok, &failed, stopProgress) })

	faultAt, recoverAt, injectErr := f.inject(ctx, runCtx, start, progress)
	wg.Wait()
	close(stopProgress)
	progressDone.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if injectErr != nil {
		return nil, injectErr
	}

	tl := newTimeline(t.Name, f.bucket(), f.duration(), faultAt, recoverAt, slices.Concat(perWorker...))
	f.mu.Lock()
	if f.timelines == nil {
		f.timelines = map[string][]*Timeline{}
	}
	f.timelines[t.Name] = append(f.timelines[t.Name], tl)
	f.mu.Unlock()
	return tl.figures(), nil
}

// figures turns a failover timeline into a round's figures.
func (tl *Timeline) figures() Figures {
	ok, failed := tl.Totals()
	rec, recovered := tl.Recovery()
	recFlag := 1.0
	if !recovered {
		rec, recFlag = max(tl.Duration-tl.FaultAt, 0), 0
	}
	return Figures{
		{Name: "attempts", Unit: "count", Value: float64(ok + failed), Higher: true},
		{Name: "successes", Unit: "count", Value: float64(ok), Higher: true},
		{Name: "failures_total", Unit: "count", Value: float64(failed)},
		{Name: "failures_after_fault", Unit: "count", Value: float64(tl.FailuresAfterFault)},
		{Name: "recovery_s", Unit: "s", Value: rec.Seconds()},
		{Name: "recovered", Unit: "bool", Value: recFlag, Higher: true},
		{Name: "slowest_attempt_s", Unit: "s", Value: tl.Slowest().Seconds()},
	}
}

// inject runs the fault and the recovery at their times and returns when the run's clock is
// up, with the offsets at which they ran (negative if they did not). Once the fault ran, the
// recovery runs even if ctx is cancelled first, so a stopped broker is never left behind.
func (f *Failover) inject(ctx, runCtx context.Context, start time.Time, progress io.Writer) (faultAt, recoverAt time.Duration, err error) {
	faultAt, recoverAt = -1, -1
	sleepUntil := func(c context.Context, at time.Duration) bool {
		tm := time.NewTimer(time.Until(start.Add(at)))
		defer tm.Stop()
		select {
		case <-tm.C:
			return true
		case <-c.Done():
			return false
		}
	}
	faulted := false
	if f.FaultFunc != nil || f.Fault != "" {
		if sleepUntil(ctx, f.faultAt()) {
			faultAt = time.Since(start)
			faulted = true
			fmt.Fprintf(progress, "  %s: fault%s\n", secs(faultAt), quoted(f.Fault, f.FaultFunc != nil))
			if e := runStep(ctx, f.FaultFunc, f.Fault); e != nil {
				err = fmt.Errorf("fault: %w", e)
			}
		}
	}
	if f.RecoverFunc != nil || f.Recover != "" {
		// After a fault, recover even if ctx ends early, with a bound of its own.
		recCtx := ctx
		if faulted {
			var cancel context.CancelFunc
			recCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), f.duration()+time.Minute)
			defer cancel()
		}
		if !sleepUntil(ctx, f.recoverAt()) && !faulted {
			return faultAt, recoverAt, err
		}
		recoverAt = time.Since(start)
		fmt.Fprintf(progress, "  %s: recovery%s\n", secs(recoverAt), quoted(f.Recover, f.RecoverFunc != nil))
		if e := runStep(recCtx, f.RecoverFunc, f.Recover); e != nil {
			err = errors.Join(err, fmt.Errorf("recovery: %w", e))
		}
	}
	<-runCtx.Done()
	return faultAt, recoverAt, err
}

// quoted describes a step for the progress output.
func quoted(cmd string, isFunc bool) string {
	if isFunc || cmd == "" {
		return ""
	}
	return fmt.Sprintf(": sh -c %q", cmd)
}

// runStep runs fn, or else the shell command cmd.
func runStep(ctx context.Context, fn func(context.Context) error, cmd string) error {
	if fn != nil {
		return fn(ctx)
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sh -c %q: %w: %s", cmd, err, out)
	}
	return nil
}

// failoverProgress prints the attempts of each second until stop is closed.
func failoverProgress(w io.Writer, name string, start time.Time, ok, failed *atomic.Int64, stop <-chan struct{}) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	var lastOK, lastFailed int64
	for {
		select {
		case <-stop:
			return
		case now := <-tk.C:
			o, fl := ok.Load(), failed.Load()
			fmt.Fprintf(w, "  %s %6.1fs  %6d ok  %6d failed\n", name, now.Sub(start).Seconds(), o-lastOK, fl-lastFailed)
			lastOK, lastFailed = o, fl
		}
	}
}

// work is one worker's loop: it starts attempts until runCtx ends (those under way then run
// to their end, so the last buckets are complete) and returns them. ctx cancels attempts.
func (f *Failover) work(ctx, runCtx context.Context, url string, start time.Time, ok, failed *atomic.Int64) []attempt {
	var atts []attempt
	for runCtx.Err() == nil {
		t0 := time.Now()
		kind, err := f.attempt(ctx, url)
		took := time.Since(t0)
		if ctx.Err() != nil {
			break // cut short by the caller, not by the target
		}
		atts = append(atts, attempt{start: t0.Sub(start), took: took, fail: kind})
		if err == nil {
			ok.Add(1)
			continue
		}
		failed.Add(1)
		if p := f.retryPause(); p > 0 {
			tm := time.NewTimer(p)
			select {
			case <-tm.C:
			case <-runCtx.Done():
			}
			tm.Stop()
		}
	}
	return atts
}

// lockedWriter serialises the progress lines of concurrent goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// attemptConn keeps the whole-attempt deadline set on a connection: amqp091 clears deadlines
// once the handshake is done and its heartbeater moves the read deadline on, and this ignores
// both, so a broker that freezes later in the attempt (channel open, confirm, close) still
// ends it in time.
type attemptConn struct{ net.Conn }

// SetDeadline ignores the client library's changes of the deadline.
func (attemptConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline ignores the client library's changes of the deadline.
func (attemptConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline ignores the client library's changes of the deadline.
func (attemptConn) SetWriteDeadline(time.Time) error { return nil }

// failoverKey is the routing key of the failover loop's messages: no queue is bound to it.
const failoverKey = "amqplb-bench.failover"

// attempt connects, opens a channel, publishes (confirmed with f.Confirm) and closes, within
// the attempt timeout. The run's end does not interrupt an attempt (it is bounded anyway);
// only the cancellation of the caller's ctx does. It returns the failure's kind and error.
func (f *Failover) attempt(ctx context.Context, url string) (string, error) {
	deadline := time.Now().Add(f.attemptTimeout())
	actx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	var mu sync.Mutex
	var raw net.Conn
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if raw != nil {
			_ = raw.SetDeadline(time.Now())
		}
	})
	defer stop()
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("amqplb-bench failover")
	cfg := amqp.Config{
		Properties: props,
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Deadline: deadline}
			c, err := d.DialContext(actx, network, addr)
			if err != nil {
				return nil, err
			}
			_ = c.SetDeadline(deadline)
			mu.Lock()
			raw = c
			mu.Unlock()
			if ctx.Err() != nil {
				_ = c.SetDeadline(time.Now())
			}
			return attemptConn{c}, nil
		},
	}
	// Whatever the error says, an attempt that failed at its deadline timed out.
	kind := func(err error) string {
		if !time.Now().Before(deadline) {
			return "timeout"
		}
		return failureKind(err)
	}
	conn, err := amqp.DialConfig(url, cfg)
	if err != nil {
		return kind(err), fmt.Errorf("connect: %w", err)
	}
	fail := func(step string, err error) (string, error) {
		_ = conn.Close()
		return kind(err), fmt.Errorf("%s: %w", step, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fail("channel", err)
	}
	if f.Confirm {
		if err := ch.Confirm(false); err != nil {
			return fail("confirm.select", err)
		}
	}
	msg := amqp.Publishing{Body: []byte("amqplb-bench failover")}
	dc, err := ch.PublishWithDeferredConfirmWithContext(actx, "", failoverKey, false, false, msg)
	if err != nil {
		return fail("publish", err)
	}
	if f.Confirm {
		acked, err := dc.WaitContext(actx)
		if err != nil {
			return fail("confirm", err)
		}
		if !acked {
			return fail("confirm", errNack)
		}
	}
	if err := conn.Close(); err != nil {
		return kind(err), fmt.Errorf("close: %w", err)
	}
	return "", nil
}

// errNack is a publish the broker nacked, or left unconfirmed when the channel closed.
var errNack = errors.New("publish nacked or unconfirmed")

// failureKind names the kind of a failed attempt's error for the timeline's tally: refused,
// reset, timeout, eof, io, handshake, closed, nack, "amqp CODE" (the broker's reply code) or
// other.
func failureKind(err error) string {
	var ae *amqp.Error
	var ne net.Error
	switch {
	case errors.Is(err, errNack):
		return "nack"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ae) && ae.Server:
		return fmt.Sprintf("amqp %d", ae.Code) // the broker's reply code
	case errors.As(err, &ae):
		// amqp091's own errors, which carry the cause only as text.
		switch ae.Code {
		case amqp.FrameError:
			return "io" // the socket failed: reset, EOF, ...
		case amqp.AccessRefused:
			return "handshake" // ErrCredentials: closed during the handshake
		case amqp.ChannelError:
			return "closed" // ErrClosed: used after the connection went away
		}
		return fmt.Sprintf("client %d", ae.Code)
	}
	return "other"
}
