package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Hold measures what idle connections cost a process: it opens N AMQP connections through the
// target (Concurrency at a time), waits Settle, and reads the resident memory (VmRSS of
// /proc/PID/status) and the open fds (/proc/PID/fd) of process PID before and after. The
// connections are closed at the end of the round.
//
// Each process counts what it holds itself: amqplb one client socket and one broker socket per
// connection (plus pipes, if it keeps splice pipes per session), a broker one socket, and the
// bench's own process (PID = os.Getpid()) one client socket per connection, plus the fake
// broker's socket in a test that runs both. Reading another process's /proc entries needs
// the same user or root.
//
// RabbitMQ limits a node's connections by its fds (about 20,000 for the nodes of the local
// cluster), and this process needs one fd per connection too: mind `ulimit -n` for large N.
type Hold struct {
	// N is the number of connections to hold; default 1000.
	N int
	// PID is the process to measure; 0 measures none (only the connect figures).
	PID int
	// Settle is how long to wait with every connection open before measuring; default 2s.
	Settle time.Duration
	// Concurrency bounds the connections being opened at once; default 20.
	Concurrency int
	// ConnectTimeout bounds one connection's TCP connect, and its handshake; default
	// DefaultDialTimeout.
	ConnectTimeout time.Duration
	// MetricsURL, when set, is the measured process's Prometheus metrics (amqplb's): its
	// go_goroutines before and while holding give goroutines_per_conn.
	MetricsURL string
}

// Name returns "hold".
func (h Hold) Name() string { return "hold" }

// Validate reports settings no run can use.
func (h Hold) Validate() error {
	if h.N < 0 || h.PID < 0 || h.Concurrency < 0 {
		return fmt.Errorf("hold: negative -n (%d), -pid (%d) or -c (%d)", h.N, h.PID, h.Concurrency)
	}
	return nil
}

// procUsage is what a process holds.
type procUsage struct {
	rss int64 // octets
	fds int
}

// readProcUsage reads pid's resident memory and open fds from /proc.
func readProcUsage(pid int) (procUsage, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	f, err := os.Open(dir + "/status")
	if err != nil {
		return procUsage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	defer f.Close()
	var u procUsage
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		// "VmRSS:	   12345 kB"
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return procUsage{}, fmt.Errorf("process %d: VmRSS %q: %w", pid, rest, err)
		}
		u.rss, found = kb<<10, true
		break
	}
	if err := sc.Err(); err != nil {
		return procUsage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	if !found {
		return procUsage{}, fmt.Errorf("process %d: no VmRSS in %s/status (a zombie?)", pid, dir)
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return procUsage{}, fmt.Errorf("process %d: count fds: %w", pid, err)
	}
	u.fds = len(fds)
	return u, nil
}

// Run opens h.N connections through t (as Target.AMQPURL), measures, and closes them. It fails
// with an UnreachableError when no connection could be opened (it gives up once the first
// Concurrency attempts all failed). Figures: conns (held), failures,
// connect_s (time to open them all) and, with a PID, rss_bytes_per_conn, fds_per_conn (the
// growth over the connections held), rss_bytes and fds (the process's totals while holding).
func (h Hold) Run(ctx context.Context, t Target, progress io.Writer) (Figures, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	n := positiveOr(h.N, 1000)
	var before procUsage
	if h.PID > 0 {
		var err error
		if before, err = readProcUsage(h.PID); err != nil {
			return nil, fmt.Errorf("hold: %w", err)
		}
	}
	goroutinesBefore := -1.0
	if h.MetricsURL != "" {
		var err error
		if goroutinesBefore, err = scrapeGauge(ctx, h.MetricsURL, "go_goroutines"); err != nil {
			return nil, fmt.Errorf("hold: %w", err)
		}
	}

	conns := make([]*amqp.Connection, n)
	defer closeAll(conns, positiveOr(h.Concurrency, 20))
	start := time.Now()
	conc := min(positiveOr(h.Concurrency, 20), n)
	var next, opened, failures atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				// A target that failed every attempt so far is down: do not wait out N timeouts.
				if opened.Load() == 0 && failures.Load() >= int64(conc) {
					return
				}
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := DialAMQP(ctx, t, "amqplb-bench hold", h.ConnectTimeout)
				if err != nil {
					failures.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				conns[i] = c
				opened.Add(1)
			}
		})
	}
	wg.Wait()
	connectTime := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	held := int(opened.Load())
	if held == 0 {
		return nil, &UnreachableError{Target: t, Err: firstErr}
	}
	fmt.Fprintf(progress, "  %s hold: %d connections open in %s", t.Name, held, connectTime.Round(time.Millisecond))
	if firstErr != nil {
		fmt.Fprintf(progress, ", %d failed (first: %v)", failures.Load(), firstErr)
	}
	fmt.Fprintln(progress)

	figs := Figures{
		{Name: "conns", Unit: "count", Value: float64(held), Higher: true},
		{Name: "failures", Unit: "count", Value: float64(failures.Load())},
		{Name: "connect_s", Unit: "s", Value: connectTime.Seconds()},
	}
	if h.PID <= 0 {
		return figs, nil
	}
	tm := time.NewTimer(positiveOr(h.Settle, 2*time.Second))
	select {
	case <-tm.C:
	case <-ctx.Done():
		tm.Stop()
		return nil, ctx.Err()
	}
	after, err := readProcUsage(h.PID)
	if err != nil {
		return nil, fmt.Errorf("hold: %w", err)
	}
	perRSS := float64(after.rss-before.rss) / float64(held)
	perFD := float64(after.fds-before.fds) / float64(held)
	fmt.Fprintf(progress, "  %s hold: process %d: %.0f octets and %.2f fds per connection (RSS %d -> %d, fds %d -> %d)\n",
		t.Name, h.PID, perRSS, perFD, before.rss, after.rss, before.fds, after.fds)
	figs = append(figs,
		Figure{Name: "rss_bytes_per_conn", Unit: "B", Value: perRSS},
		Figure{Name: "fds_per_conn", Unit: "fds", Value: perFD},
		Figure{Name: "rss_bytes", Unit: "B", Value: float64(after.rss)},
		Figure{Name: "fds", Unit: "fds", Value: float64(after.fds)},
	)
	if goroutinesBefore >= 0 {
		g, err := scrapeGauge(ctx, h.MetricsURL, "go_goroutines")
		if err != nil {
			return nil, fmt.Errorf("hold: %w", err)
		}
		per := (g - goroutinesBefore) / float64(held)
		fmt.Fprintf(progress, "  %s hold: %.3f goroutines per connection (%.0f -> %.0f)\n", t.Name, per, goroutinesBefore, g)
		figs = append(figs, Figure{Name: "goroutines_per_conn", Unit: "goroutines", Value: per})
	}
	return figs, nil
}

// scrapeGauge reads the value of an unlabelled metric from a Prometheus text page.
func scrapeGauge(ctx context.Context, url, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}

// holdCloseTimeout bounds the wait for a broker's Close-Ok.
const holdCloseTimeout = 5 * time.Second

// closeAll closes the open connections, c at a time.
func closeAll(conns []*amqp.Connection, c int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(c, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(conns) {
					return
				}
				if conns[i] != nil {
					// The round is over: a broker that went away is not news here.
					_ = conns[i].CloseDeadline(time.Now().Add(holdCloseTimeout))
				}
			}
		})
	}
	wg.Wait()
}

// processCPU returns the CPU time pid has used, user and system, all its threads: fields 14 and
// 15 of /proc/PID/stat, in clock ticks (100 a second on Linux, what sysconf(_SC_CLK_TCK) gives
// on every architecture Go supports there).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: malformed stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, fmt.Errorf("process %d: short stat %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] { // fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("process %d: stat field %q: %w", pid, s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}
