package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in microseconds, from 1µs to 60s, with 3 significant
// digits (an error of at most 0.1% per value), in about 40 KiB.
const (
	histLowest  = 1                                          // µs
	histHighest = int64(60 * time.Second / time.Microsecond) // µs
	histDigits  = 3
)

// Histogram is a latency histogram (HDR, 1µs..60s, 3 significant digits). It is safe for
// concurrent use: Record takes a mutex held for a few tens of nanoseconds, which stays far from
// being a bottleneck at a few hundred thousand records a second. Values outside 1µs..60s are
// clamped to the nearest bound, so a stall is counted rather than dropped.
type Histogram struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// NewHistogram returns an empty Histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: newHDR()}
}

func newHDR() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

func toMicros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	return min(max(us, histLowest), histHighest)
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	us := toMicros(d)
	h.mu.Lock()
	_ = h.h.RecordValue(us) // cannot fail: us is within the histogram's bounds
	h.mu.Unlock()
}

// Count returns the number of latencies recorded.
func (h *Histogram) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h.TotalCount()
}

// Percentile returns the latency below or at which q percent of the recorded latencies lie
// (q in 0..100: 50 is the median, 99 the 99th percentile, 100 the maximum), or 0 when nothing
// was recorded.
func (h *Histogram) Percentile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Duration(quantile(h.h, q)) * time.Microsecond
}

// quantile is h.ValueAtQuantile, except that it returns the minimum rather than 0 when q is so
// small that it rounds to no value at all.
func quantile(h *hdrhistogram.Histogram, q float64) int64 {
	if h.TotalCount() == 0 {
		return 0
	}
	if v := h.ValueAtQuantile(q); v > 0 {
		return v
	}
	return h.Min()
}

// Max returns the largest latency recorded (to the histogram's precision), or 0.
func (h *Histogram) Max() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.TotalCount() == 0 {
		return 0
	}
	return time.Duration(h.h.Max()) * time.Microsecond
}

// Merge adds every latency recorded in o to h. o is left as it was.
func (h *Histogram) Merge(o *Histogram) {
	if o == h {
		return
	}
	o.mu.Lock()
	snap := o.h.Export()
	o.mu.Unlock()
	h.mu.Lock()
	h.h.Merge(hdrhistogram.Import(snap))
	h.mu.Unlock()
}

// Reset empties h.
func (h *Histogram) Reset() {
	h.mu.Lock()
	h.h.Reset()
	h.mu.Unlock()
}

// Take empties h and returns what it held as a new Histogram: the interval histogram of a
// per-second progress line. Records that race with Take land in exactly one of the two.
func (h *Histogram) Take() *Histogram {
	fresh := newHDR()
	h.mu.Lock()
	old := h.h
	h.h = fresh
	h.mu.Unlock()
	return &Histogram{h: old}
}

// Summary is the shape of a latency distribution, in milliseconds.
type Summary struct {
	P50   float64 `json:"p50_ms"`
	P75   float64 `json:"p75_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Count int64   `json:"count"`
}

// Summary returns h's percentiles in milliseconds (all 0 when nothing was recorded).
func (h *Histogram) Summary() Summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.TotalCount() == 0 {
		return Summary{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Summary{
		P50:   ms(quantile(h.h, 50)),
		P75:   ms(quantile(h.h, 75)),
		P95:   ms(quantile(h.h, 95)),
		P99:   ms(quantile(h.h, 99)),
		Max:   ms(h.h.Max()),
		Count: h.h.TotalCount(),
	}
}

// summaryFigures returns s as Figures named prefix+"p50" ... prefix+"max", in ms, lower is
// better.
func summaryFigures(prefix string, s Summary) Figures {
	return Figures{
		{Name: prefix + "p50", Unit: "ms", Value: s.P50},
		{Name: prefix + "p75", Unit: "ms", Value: s.P75},
		{Name: prefix + "p95", Unit: "ms", Value: s.P95},
		{Name: prefix + "p99", Unit: "ms", Value: s.P99},
		{Name: prefix + "max", Unit: "ms", Value: s.Max},
	}
}
