package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Bucket is what became of the attempts that started within one bucket of a Timeline.
type Bucket struct {
	// Successes and Failures count the attempts that started in the bucket.
	Successes int `json:"successes"`
	Failures  int `json:"failures"`
	// P50 and Max are the median and the longest duration of those attempts, successful or
	// not (a hung attempt shows as a Max of the attempt timeout); zero when none started.
	P50 time.Duration `json:"p50_ns"`
	Max time.Duration `json:"max_ns"`
}

// Clean reports whether the bucket saw at least one success and no failure.
func (b Bucket) Clean() bool { return b.Successes > 0 && b.Failures == 0 }

// Timeline is one failover round against one target: its attempts counted in fixed buckets by
// the time they started, with the moments the fault and the recovery were injected.
//
// Attempts are placed where they started, not where they ended: an attempt that began just
// before a broker froze and timed out 3 s later counts as a failure of the bucket it began in
// (with a Max of 3 s), so the chart says when connecting stopped working, not when clients
// found out.
type Timeline struct {
	// Target names the measured target.
	Target string `json:"target"`
	// Bucket is the width of each bucket (100 ms by default).
	Bucket time.Duration `json:"bucket_ns"`
	// Duration is how long attempts were started.
	Duration time.Duration `json:"duration_ns"`
	// FaultAt and RecoverAt are the offsets from the start at which the fault and the recovery
	// were injected (measured, not scheduled); negative when that step did not run.
	FaultAt   time.Duration `json:"fault_at_ns"`
	RecoverAt time.Duration `json:"recover_at_ns"`
	// Buckets are the buckets in time order; Buckets[i] covers [i*Bucket, (i+1)*Bucket).
	Buckets []Bucket `json:"buckets"`
	// FailuresAfterFault counts the failed attempts that ended at or after FaultAt, including
	// those that were in flight when the fault came.
	FailuresAfterFault int `json:"failures_after_fault"`
	// Errors counts failures by kind ("refused", "timeout", "reset", "eof", "nack", "amqp
	// 320", ...).
	Errors map[string]int `json:"errors"`
}

// attempt is one recorded attempt of a failover loop.
type attempt struct {
	start time.Duration // offset from the start of the run
	took  time.Duration
	fail  string // the failure's kind; "" for a success
}

// newTimeline buckets attempts. faultAt and recoverAt are negative when not injected.
func newTimeline(target string, bucket, duration, faultAt, recoverAt time.Duration, atts []attempt) *Timeline {
	n := max(int((duration+bucket-1)/bucket), 1)
	tl := &Timeline{Target: target, Bucket: bucket, Duration: duration, FaultAt: faultAt, RecoverAt: recoverAt,
		Buckets: make([]Bucket, n), Errors: map[string]int{}}
	took := make([][]time.Duration, n)
	for _, a := range atts {
		i := min(max(int(a.start/bucket), 0), n-1)
		b := &tl.Buckets[i]
		if a.fail == "" {
			b.Successes++
		} else {
			b.Failures++
			tl.Errors[a.fail]++
			if faultAt >= 0 && a.start+a.took >= faultAt {
				tl.FailuresAfterFault++
			}
		}
		took[i] = append(took[i], a.took)
	}
	for i, ds := range took {
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		tl.Buckets[i].P50 = ds[(len(ds)-1)/2]
		tl.Buckets[i].Max = ds[len(ds)-1]
	}
	return tl
}

// Totals returns the number of successful and failed attempts.
func (tl *Timeline) Totals() (successes, failures int) {
	for _, b := range tl.Buckets {
		successes += b.Successes
		failures += b.Failures
	}
	return successes, failures
}

// recoveryBucket returns the index of the bucket in which the target counts as recovered, -1
// if it never did, and 0 with ok false when no fault was injected. See Recovery.
func (tl *Timeline) recoveryBucket() (i int, disrupted, ok bool) {
	if tl.FaultAt < 0 || tl.Bucket <= 0 {
		return 0, false, false
	}
	fb := int(tl.FaultAt / tl.Bucket)
	anchor := -1
	for i := fb; i < len(tl.Buckets); i++ {
		if tl.Buckets[i].Failures > 0 {
			anchor = i
			break
		}
	}
	if anchor < 0 {
		if tl.FailuresAfterFault == 0 {
			return fb, false, true // nothing failed: never disrupted
		}
		anchor = fb // only attempts in flight at the fault failed
	}
	for i := anchor + 1; i < len(tl.Buckets); i++ {
		if tl.Buckets[i].Clean() {
			return i, true, true
		}
	}
	return -1, true, true
}

// Recovery returns how long after the fault the target served cleanly again: the time from
// FaultAt to the start of the first clean bucket (at least one success, no failure) that
// follows both the fault's bucket and the first bucket from the fault's on that holds a
// failure. It is 0 when no attempt failed after the fault (the target was never disrupted).
// When only attempts in flight at the fault failed, the first clean bucket after the fault's
// counts. ok is false when the target never recovered before the end of the run, or when no
// fault was injected.
//
// It is deliberately simple: one clean bucket counts as recovered even if failures come back
// later (after the recovery command, say); the timeline shows those.
func (tl *Timeline) Recovery() (d time.Duration, ok bool) {
	i, disrupted, injected := tl.recoveryBucket()
	if !injected || i < 0 {
		return 0, false
	}
	if !disrupted {
		return 0, true
	}
	return max(time.Duration(i)*tl.Bucket-tl.FaultAt, 0), true
}

// Slowest returns the longest attempt.
func (tl *Timeline) Slowest() time.Duration {
	var m time.Duration
	for _, b := range tl.Buckets {
		m = max(m, b.Max)
	}
	return m
}

// sparkLevels draw a bucket of successes only, by height relative to the fullest bucket.
var sparkLevels = []rune("▁▂▃▄▅▆▇█")

// bucketRune draws one bucket for Print.
func bucketRune(b Bucket, most int) rune {
	switch {
	case b.Successes == 0 && b.Failures == 0:
		return '·'
	case b.Successes == 0:
		return 'x'
	case b.Failures > 0:
		return '!'
	}
	i := (b.Successes*len(sparkLevels) - 1) / max(most, 1)
	return sparkLevels[min(max(i, 0), len(sparkLevels)-1)]
}

// Print writes the timeline as text: one row per second with one character per bucket
// (▁..█ successes only, by count; ! successes and failures; x failures only; · nothing
// started), then one line per bucket (counts, p50, max) around the fault, the first clean
// bucket and the recovery command, then the recovery time and the failures by kind.
func (tl *Timeline) Print(w io.Writer) error {
	var sb strings.Builder
	ok, failed := tl.Totals()
	fmt.Fprintf(&sb, "failover timeline of %s: %d ok, %d failed, %v buckets", tl.Target, ok, failed, tl.Bucket)
	if tl.FaultAt >= 0 {
		fmt.Fprintf(&sb, ", fault at %s", secs(tl.FaultAt))
	}
	if tl.RecoverAt >= 0 {
		fmt.Fprintf(&sb, ", recovery at %s", secs(tl.RecoverAt))
	}
	sb.WriteString("\n  (▁..█ all ok, ! ok and failed, x all failed, · none started; F fault, R recovery)\n")
	most := 0
	for _, b := range tl.Buckets {
		most = max(most, b.Successes)
	}
	perRow := max(int(time.Second/tl.Bucket), 1)
	for row := 0; row*perRow < len(tl.Buckets); row++ {
		from := row * perRow
		to := min(from+perRow, len(tl.Buckets))
		rowStart, rowEnd := time.Duration(from)*tl.Bucket, time.Duration(to)*tl.Bucket
		mark := []byte("  ")
		if tl.FaultAt >= 0 && tl.FaultAt >= rowStart && tl.FaultAt < rowEnd {
			mark[0] = 'F'
		}
		if tl.RecoverAt >= 0 && tl.RecoverAt >= rowStart && tl.RecoverAt < rowEnd {
			mark[1] = 'R'
		}
		var rs, rf int
		var rmax time.Duration
		var cells strings.Builder
		for _, b := range tl.Buckets[from:to] {
			cells.WriteRune(bucketRune(b, most))
			rs += b.Successes
			rf += b.Failures
			rmax = max(rmax, b.Max)
		}
		fmt.Fprintf(&sb, "  %6s %s %-*s %7d ok %7d failed  max %s\n", secs(rowStart), mark, perRow, cells.String(), rs, rf, rmax.Round(time.Microsecond))
	}
	tl.printDetail(&sb)
	rec, recovered := tl.Recovery()
	switch i, disrupted, injected := tl.recoveryBucket(); {
	case !injected:
	case !disrupted:
		fmt.Fprintf(&sb, "  no attempt failed after the fault\n")
	case !recovered:
		fmt.Fprintf(&sb, "  not recovered by the end of the run; %d failures after the fault\n", tl.FailuresAfterFault)
	default:
		fmt.Fprintf(&sb, "  recovered %s after the fault (first clean bucket at %s); %d failures after the fault\n",
			secs(rec), secs(time.Duration(i)*tl.Bucket), tl.FailuresAfterFault)
	}
	if len(tl.Errors) > 0 {
		sb.WriteString("  failures by kind:")
		for _, k := range slices.Sorted(maps.Keys(tl.Errors)) {
			fmt.Fprintf(&sb, " %s %d", k, tl.Errors[k])
		}
		sb.WriteString("\n")
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// detailContext is how many buckets Print shows on each side of an event.
const detailContext = 2

// printDetail writes one line per bucket around the fault, the first clean bucket after it
// and the recovery command, with "..." between windows that do not touch.
func (tl *Timeline) printDetail(sb *strings.Builder) {
	if tl.FaultAt < 0 || len(tl.Buckets) == 0 {
		return
	}
	events := []int{int(tl.FaultAt / tl.Bucket)}
	if i, disrupted, _ := tl.recoveryBucket(); i >= 0 && disrupted {
		events = append(events, i)
	}
	if tl.RecoverAt >= 0 {
		events = append(events, int(tl.RecoverAt/tl.Bucket))
	}
	show := make([]bool, len(tl.Buckets))
	for _, e := range events {
		for i := max(e-detailContext, 0); i <= min(e+detailContext, len(tl.Buckets)-1); i++ {
			show[i] = true
		}
	}
	sb.WriteString("  per bucket around the events:\n")
	gap := false
	for i, b := range tl.Buckets {
		if !show[i] {
			gap = true
			continue
		}
		if gap && i > 0 {
			sb.WriteString("       ...\n")
		}
		gap = false
		start := time.Duration(i) * tl.Bucket
		mark := "   "
		if tl.FaultAt >= start && tl.FaultAt < start+tl.Bucket {
			mark = " F "
		}
		if tl.RecoverAt >= start && tl.RecoverAt < start+tl.Bucket {
			mark = " R "
		}
		fmt.Fprintf(sb, "  %8s%s%6d ok %6d failed  p50 %-10s max %s\n", secs(start), mark, b.Successes, b.Failures,
			b.P50.Round(time.Microsecond), b.Max.Round(time.Microsecond))
	}
}

// secs formats d as seconds with two decimals ("5.00s").
func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
