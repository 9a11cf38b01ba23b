package bench

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Rolling measures a rolling restart as long-lived clients see it: Clients connections are held
// through the target, each reconnecting on its own when it is closed (automatic recovery, as
// client libraries do: a delay, doubled after each failed attempt), while Steps run one after
// the other (for each node: drain, stop, start, revive). The connection count of every node is
// sampled from the brokers themselves (Nodes: RabbitMQ's Prometheus endpoint), never from the
// target, so that amqplb and HAProxy are measured alike.
//
// The schedule: the clients connect, StepGap passes, then each step runs (its command to its
// end) followed by StepGap; Duration passes after the last step, then the clients close.
//
// Use a pointer: Run keeps every round's RollingTimeline (Timelines). The steps must leave the
// cluster as they found it (every node revived), as the next round starts right away.
type Rolling struct {
	// Clients is the number of connections held; default 90.
	Clients int
	// Nodes are the brokers whose connections are counted.
	Nodes []Node
	// Steps run in order; none means the clients are only held.
	Steps []Step
	// StepGap is the wait before the first step and after each; default 10s.
	StepGap time.Duration
	// Duration is how long the clients are held after the last step; default 20s.
	Duration time.Duration
	// StepTimeout bounds each step; default 2 minutes. A failed step fails the round, after
	// the remaining steps ran (so that a drained node is still revived).
	StepTimeout time.Duration
	// Sample is the interval between two counts of every node; default 250ms.
	Sample time.Duration
	// RecoveryDelay is a client's wait before it reconnects, jittered by ±50% and doubled
	// after each failed attempt up to MaxRecoveryDelay; defaults 500ms and 5s.
	RecoveryDelay, MaxRecoveryDelay time.Duration
	// DialTimeout bounds each connect (TCP, then the AMQP handshake); default DefaultDialTimeout.
	DialTimeout time.Duration
	// Even is the tolerance under which the nodes' counts are even: every node within Even
	// times the mean; default 0.2.
	Even float64
	// HTTPClient fetches the metrics; nil means a client of its own.
	HTTPClient *http.Client

	mu        sync.Mutex
	timelines map[string][]*RollingTimeline
}

// Node is a broker whose client connections Rolling counts.
type Node struct {
	// Name labels the node ("rmq1").
	Name string
	// MetricsURL is the node's Prometheus endpoint (http://127.0.0.1:15692/metrics): the sum
	// of its rabbitmq_connections samples is the count.
	MetricsURL string
}

// ParseNode parses NAME=URL.
func ParseNode(s string) (Node, error) {
	name, u, ok := strings.Cut(s, "=")
	if !ok || name == "" || !strings.HasPrefix(u, "http") {
		return Node{}, fmt.Errorf("node %q: want NAME=http://HOST:PORT/metrics", s)
	}
	return Node{Name: name, MetricsURL: u}, nil
}

// Step is one action of a rolling restart.
type Step struct {
	// Label names the step in the timeline ("rmq1 drain").
	Label string
	// Command is run with sh -c, unless Func is set.
	Command string
	// Func, when set, is run instead of Command (tests, the Go API).
	Func func(context.Context) error
}

// ParseStep parses LABEL=COMMAND.
func ParseStep(s string) (Step, error) {
	label, cmd, ok := strings.Cut(s, "=")
	if !ok || label == "" || strings.TrimSpace(cmd) == "" {
		return Step{}, fmt.Errorf("step %q: want LABEL=COMMAND", s)
	}
	return Step{Label: label, Command: cmd}, nil
}

// Name returns "rolling".
func (r *Rolling) Name() string { return "rolling" }

func (r *Rolling) clients() int               { return positiveOr(r.Clients, 90) }
func (r *Rolling) stepGap() time.Duration     { return positiveOr(r.StepGap, 10*time.Second) }
func (r *Rolling) duration() time.Duration    { return positiveOr(r.Duration, 20*time.Second) }
func (r *Rolling) stepTimeout() time.Duration { return positiveOr(r.StepTimeout, 2*time.Minute) }
func (r *Rolling) sample() time.Duration      { return positiveOr(r.Sample, 250*time.Millisecond) }
func (r *Rolling) recovery() time.Duration    { return positiveOr(r.RecoveryDelay, 500*time.Millisecond) }
func (r *Rolling) maxRecovery() time.Duration { return positiveOr(r.MaxRecoveryDelay, 5*time.Second) }
func (r *Rolling) dialTimeout() time.Duration { return positiveOr(r.DialTimeout, DefaultDialTimeout) }
func (r *Rolling) even() float64 {
	if r.Even <= 0 {
		return 0.2
	}
	return r.Even
}

// Validate reports settings no run can use.
func (r *Rolling) Validate() error {
	if len(r.Nodes) == 0 {
		return errors.New("rolling: no node to count connections on")
	}
	seen := map[string]bool{}
	for _, n := range r.Nodes {
		if seen[n.Name] {
			return fmt.Errorf("rolling: node %q given twice", n.Name)
		}
		seen[n.Name] = true
	}
	for _, s := range r.Steps {
		if s.Func == nil && strings.TrimSpace(s.Command) == "" {
			return fmt.Errorf("rolling: step %q has no command", s.Label)
		}
	}
	return nil
}

// Timelines returns every round's timeline so far, per target name, in the order run.
func (r *Rolling) Timelines() map[string][]*RollingTimeline {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]*RollingTimeline, len(r.timelines))
	for k, v := range r.timelines {
		out[k] = slices.Clone(v)
	}
	return out
}

// Run runs one rolling restart through t. A first connection must open, or the target is
// reported unreachable. See RollingTimeline.Figures for the figures.
func (r *Rolling) Run(ctx context.Context, t Target, progress io.Writer) (Figures, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	progress = &lockedWriter{w: progress}
	c, err := DialAMQP(ctx, t, "amqplb-bench rolling probe", r.dialTimeout())
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{Target: t, Err: err}
	}
	_ = c.CloseDeadline(time.Now().Add(2 * time.Second))

	tl := &RollingTimeline{Target: t.Name, Clients: r.clients(), Even: r.even(), Closes: map[string]int{}}
	for _, n := range r.Nodes {
		tl.Nodes = append(tl.Nodes, n.Name)
	}
	start := time.Now()
	clientCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	var rec recorder
	rec.start = start
	var wg sync.WaitGroup
	for i := range r.clients() {
		wg.Go(func() { r.client(clientCtx, t, i, &rec) })
	}
	samplerCtx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	var samplerDone sync.WaitGroup
	samplerDone.Go(func() { r.sampleLoop(samplerCtx, start, tl, progress) })

	stepErr := r.runSteps(ctx, start, tl, progress)
	tl.LastStepAt = time.Since(start)
	wait(ctx, r.duration())
	// The sampler stops first: no sample may see the clients' own closes at the end.
	stopSampler()
	samplerDone.Wait()
	tl.Duration = time.Since(start)
	stopClients()
	wg.Wait()
	rec.fill(tl)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.timelines == nil {
		r.timelines = map[string][]*RollingTimeline{}
	}
	r.timelines[t.Name] = append(r.timelines[t.Name], tl)
	r.mu.Unlock()
	if stepErr != nil {
		return nil, stepErr
	}
	return tl.Figures(), nil
}

// wait waits d or until ctx ends.
func wait(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runSteps runs the schedule. Once a step ran, the others run even if ctx ends (bounded by
// StepTimeout each, without the gaps), so that a drained or stopped node is brought back.
func (r *Rolling) runSteps(ctx context.Context, start time.Time, tl *RollingTimeline, progress io.Writer) error {
	if len(r.Steps) == 0 {
		return nil
	}
	if !wait(ctx, r.stepGap()) {
		return nil
	}
	var errs []error
	for i, s := range r.Steps {
		at := time.Since(start)
		fmt.Fprintf(progress, "  %s: step %s%s\n", secs(at), s.Label, quoted(s.Command, s.Func != nil))
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.stepTimeout())
		err := runStep(sctx, s.Func, s.Command)
		cancel()
		mark := StepMark{At: at, Took: time.Since(start) - at, Label: s.Label}
		if err != nil {
			mark.Err = err.Error()
			errs = append(errs, fmt.Errorf("step %s: %w", s.Label, err))
			fmt.Fprintf(progress, "  step %s failed: %v\n", s.Label, err)
		}
		tl.Steps = append(tl.Steps, mark)
		if i < len(r.Steps)-1 && ctx.Err() == nil {
			wait(ctx, r.stepGap())
		}
	}
	return errors.Join(errs...)
}

// sampleLoop counts every node's connections each Sample until ctx ends, and prints the counts
// once a second.
func (r *Rolling) sampleLoop(ctx context.Context, start time.Time, tl *RollingTimeline, progress io.Writer) {
	hc := r.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	timeout := min(max(r.sample()*2, 500*time.Millisecond), 2*time.Second)
	tk := time.NewTicker(r.sample())
	defer tk.Stop()
	lastPrint := time.Duration(-time.Second)
	for {
		at := time.Since(start)
		counts := make([]int, len(r.Nodes))
		var wg sync.WaitGroup
		for i, n := range r.Nodes {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				c, err := FetchConnectionCount(cctx, hc, n.MetricsURL)
				if err != nil {
					c = -1
				}
				counts[i] = c
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		tl.Samples = append(tl.Samples, NodeSample{At: at, Counts: counts})
		if at-lastPrint >= time.Second {
			lastPrint = at
			fmt.Fprintf(progress, "  %s %6.1fs  %s\n", tl.Target, at.Seconds(), formatCounts(tl.Nodes, counts))
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// formatCounts writes "rmq1 30  rmq2 -  rmq3 31".
func formatCounts(names []string, counts []int) string {
	var sb strings.Builder
	for i, n := range names {
		if i > 0 {
			sb.WriteString("  ")
		}
		if counts[i] < 0 {
			fmt.Fprintf(&sb, "%s %4s", n, "-")
		} else {
			fmt.Fprintf(&sb, "%s %4d", n, counts[i])
		}
	}
	return sb.String()
}

// FetchConnectionCount returns the client connections of a RabbitMQ node: the sum of the
// rabbitmq_connections samples of its Prometheus endpoint at url.
func FetchConnectionCount(ctx context.Context, hc *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	n, err := ParseConnectionCount(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return n, nil
}

// ParseConnectionCount sums the rabbitmq_connections samples of Prometheus text exposition
// (one sample, or one per label set). Other metrics, and rabbitmq_connections_opened_total and
// the like, are skipped. It fails when there is no such sample.
func ParseConnectionCount(r io.Reader) (int, error) {
	var sum float64
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for lines := 0; sc.Scan() && lines < 10_000_000; lines++ {
		rest, ok := strings.CutPrefix(sc.Text(), "rabbitmq_connections")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, fmt.Errorf("bad sample %q", sc.Text())
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil || math.IsNaN(v) || v < 0 {
			return 0, fmt.Errorf("bad sample %q", sc.Text())
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, errors.New("no rabbitmq_connections sample")
	}
	return int(sum), nil
}

// recorder collects the clients' events.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	evs   []RollingEvent
}

func (rc *recorder) add(kind, code string) {
	rc.mu.Lock()
	rc.evs = append(rc.evs, RollingEvent{At: time.Since(rc.start), Kind: kind, Code: code})
	rc.mu.Unlock()
}

// fill puts the events and their totals into tl.
func (rc *recorder) fill(tl *RollingTimeline) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	tl.Events = slices.Clone(rc.evs)
	slices.SortStableFunc(tl.Events, func(a, b RollingEvent) int { return cmp.Compare(a.At, b.At) })
	for _, e := range tl.Events {
		switch e.Kind {
		case EventConnect:
			tl.Connects++
		case EventReconnect:
			tl.Reconnects++
		case EventFailed:
			tl.FailedConnects++
		case EventClose:
			tl.Closes[e.Code]++
		}
	}
}

// Kinds of RollingEvent.
const (
	// EventConnect is a client's first connection.
	EventConnect = "connect"
	// EventReconnect is a connection opened after a close.
	EventReconnect = "reconnect"
	// EventFailed is a connect that failed (Code says how).
	EventFailed = "failed"
	// EventClose is an open connection closed by the other side (Code: the reply code, or
	// how it was lost).
	EventClose = "close"
)

// client holds one connection through t until ctx ends, reconnecting after each close.
func (r *Rolling) client(ctx context.Context, t Target, id int, rec *recorder) {
	delay := r.recovery()
	connected := false
	name := fmt.Sprintf("amqplb-bench rolling %d", id)
	// Each pass is one connect; the passes are bounded by ctx and, as a backstop, in number.
	for pass := 0; pass < 1_000_000 && ctx.Err() == nil; pass++ {
		conn, err := DialAMQP(ctx, t, name, r.dialTimeout())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			rec.add(EventFailed, failureKind(err))
			wait(ctx, jitter(delay))
			delay = min(delay*2, r.maxRecovery())
			continue
		}
		if connected {
			rec.add(EventReconnect, "")
		} else {
			rec.add(EventConnect, "")
			connected = true
		}
		delay = r.recovery()
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		select {
		case <-ctx.Done():
			_ = conn.CloseDeadline(time.Now().Add(2 * time.Second))
			return
		case e := <-closed:
			code := "lost"
			if e != nil && e.Server {
				code = strconv.Itoa(e.Code)
			} else if e != nil {
				code = "lost " + strconv.Itoa(e.Code)
			}
			rec.add(EventClose, code)
			wait(ctx, jitter(delay))
		}
	}
}

// jitter returns d scaled by a random factor in [0.5, 1.5).
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// NodeSample is the connection count of every node at one time; -1 where a node did not
// answer (stopped, or drained: RabbitMQ suspends its Prometheus listener in maintenance).
type NodeSample struct {
	At     time.Duration `json:"at"`
	Counts []int         `json:"counts"`
}

// StepMark is a step of the schedule as it ran.
type StepMark struct {
	At    time.Duration `json:"at"`
	Took  time.Duration `json:"took"`
	Label string        `json:"label"`
	Err   string        `json:"error,omitempty"`
}

// RollingEvent is a client-visible event.
type RollingEvent struct {
	At   time.Duration `json:"at"`
	Kind string        `json:"kind"`
	Code string        `json:"code,omitempty"`
}

// RollingTimeline is what one rolling round recorded through one target.
type RollingTimeline struct {
	Target   string
	Nodes    []string
	Clients  int
	Samples  []NodeSample
	Steps    []StepMark
	Events   []RollingEvent
	Duration time.Duration
	// LastStepAt is when the last step ended (the clients were held Duration more).
	LastStepAt time.Duration
	// Even is the tolerance of Evened (see Rolling.Even).
	Even float64
	// Totals of Events.
	Connects, Reconnects, FailedConnects int
	// Closes counts the closes by code: "320" (CONNECTION_FORCED), "lost 501" (the socket
	// went away without a Connection.Close), ...
	Closes map[string]int
}

// isEven reports whether every node answered and is within the tolerance of the mean.
func (tl *RollingTimeline) isEven(counts []int) bool {
	if len(counts) == 0 {
		return false
	}
	total := 0
	for _, c := range counts {
		if c < 0 {
			return false
		}
		total += c
	}
	mean := float64(total) / float64(len(counts))
	tol := math.Max(1, tl.Even*mean)
	for _, c := range counts {
		if math.Abs(float64(c)-mean) > tol {
			return false
		}
	}
	return true
}

// Final returns the last sample in which every node answered, if any.
func (tl *RollingTimeline) Final() (NodeSample, bool) {
	for i := len(tl.Samples) - 1; i >= 0; i-- {
		if !slices.Contains(tl.Samples[i].Counts, -1) {
			return tl.Samples[i], true
		}
	}
	return NodeSample{}, false
}

// EvenAfter returns how long after the last step the counts became even and stayed so to the
// end of the run (0 if they were even all along from there); ok is false if they were not
// even at the end.
func (tl *RollingTimeline) EvenAfter() (time.Duration, bool) {
	first := -1
	for i, s := range tl.Samples {
		if s.At < tl.LastStepAt {
			continue
		}
		if tl.isEven(s.Counts) {
			if first < 0 {
				first = i
			}
		} else {
			first = -1
		}
	}
	if first < 0 {
		return 0, false
	}
	return max(tl.Samples[first].At-tl.LastStepAt, 0), true
}

// Figures returns the round's figures: clients; reconnects, failed_connects, closes_320 and
// closes_other (client-visible events); peak_node (the most connections one node held at
// once); final_<node> for each node, final_spread (the most minus the fewest at the end) and
// final_max_over_mean; even_after_s (see EvenAfter; the time from the last step to the end
// when never even) and evened (1 or 0).
func (tl *RollingTimeline) Figures() Figures {
	other := 0
	for code, n := range tl.Closes {
		if code != "320" {
			other += n
		}
	}
	peak := 0
	for _, s := range tl.Samples {
		peak = max(peak, slices.Max(append([]int{0}, s.Counts...)))
	}
	figs := Figures{
		{Name: "clients", Unit: "count", Value: float64(tl.Clients), Higher: true},
		{Name: "reconnects", Unit: "count", Value: float64(tl.Reconnects)},
		{Name: "failed_connects", Unit: "count", Value: float64(tl.FailedConnects)},
		{Name: "closes_320", Unit: "count", Value: float64(tl.Closes["320"])},
		{Name: "closes_other", Unit: "count", Value: float64(other)},
		{Name: "peak_node", Unit: "count", Value: float64(peak)},
	}
	final, ok := tl.Final()
	if ok {
		total := 0
		for i, n := range tl.Nodes {
			figs = append(figs, Figure{Name: "final_" + n, Unit: "count", Value: float64(final.Counts[i]), Higher: true})
			total += final.Counts[i]
		}
		most, least := slices.Max(final.Counts), slices.Min(final.Counts)
		ratio := 0.0
		if total > 0 {
			ratio = float64(most) / (float64(total) / float64(len(final.Counts)))
		}
		figs = append(figs,
			Figure{Name: "final_spread", Unit: "count", Value: float64(most - least)},
			Figure{Name: "final_max_over_mean", Unit: "ratio", Value: ratio})
	}
	even, evened := tl.EvenAfter()
	flag := 1.0
	if !evened {
		even, flag = max(tl.Duration-tl.LastStepAt, 0), 0
	}
	return append(figs,
		Figure{Name: "even_after_s", Unit: "s", Value: even.Seconds()},
		Figure{Name: "evened", Unit: "bool", Value: flag, Higher: true})
}

// Print writes the timeline as text: the steps, the counts every second, the events and the
// closes by code.
func (tl *RollingTimeline) Print(w io.Writer) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "rolling timeline of %s: %d clients, %d reconnects, %d failed connects, closes:",
		tl.Target, tl.Clients, tl.Reconnects, tl.FailedConnects)
	if len(tl.Closes) == 0 {
		sb.WriteString(" none")
	}
	for _, k := range slices.Sorted(maps.Keys(tl.Closes)) {
		fmt.Fprintf(&sb, " %s×%d", k, tl.Closes[k])
	}
	sb.WriteString("\n")
	si := 0
	lastRow := time.Duration(-time.Second)
	for _, s := range tl.Samples {
		for si < len(tl.Steps) && tl.Steps[si].At <= s.At {
			st := tl.Steps[si]
			fmt.Fprintf(&sb, "  %7s  -- %s (%s)", secs(st.At), st.Label, secs(st.Took))
			if st.Err != "" {
				fmt.Fprintf(&sb, " FAILED: %s", st.Err)
			}
			sb.WriteString("\n")
			si++
		}
		if s.At-lastRow < time.Second {
			continue
		}
		lastRow = s.At
		fmt.Fprintf(&sb, "  %7s  %s\n", secs(s.At), formatCounts(tl.Nodes, s.Counts))
	}
	if f, ok := tl.Final(); ok {
		fmt.Fprintf(&sb, "  at the end: %s", formatCounts(tl.Nodes, f.Counts))
	} else {
		sb.WriteString("  at the end: no sample with every node")
	}
	if d, ok := tl.EvenAfter(); ok {
		fmt.Fprintf(&sb, "; even (±%.0f%%) %s after the last step\n", tl.Even*100, secs(d))
	} else {
		fmt.Fprintf(&sb, "; not even (±%.0f%%) at the end\n", tl.Even*100)
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
