package bench

import (
	"math"
	"sync"
	"testing"
	"time"
)

// within reports whether got is within the histogram's precision (0.1%, plus one µs of
// rounding) of want.
func within(got, want time.Duration) bool {
	diff := math.Abs(float64(got - want))
	return diff <= float64(want)*0.001+float64(time.Microsecond)
}

func TestHistogramUniform(t *testing.T) {
	h := NewHistogram()
	// 1ms, 2ms, ..., 1000ms: the q-th percentile is q*10ms.
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	if h.Count() != 1000 {
		t.Fatalf("Count = %d, want 1000", h.Count())
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{50, 500 * time.Millisecond},
		{75, 750 * time.Millisecond},
		{95, 950 * time.Millisecond},
		{99, 990 * time.Millisecond},
		{100, 1000 * time.Millisecond},
	} {
		if got := h.Percentile(tc.q); !within(got, tc.want) {
			t.Errorf("Percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := h.Max(); !within(got, time.Second) {
		t.Errorf("Max = %v, want 1s", got)
	}
	s := h.Summary()
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.P50, 500}, {"p75", s.P75, 750}, {"p95", s.P95, 950}, {"p99", s.P99, 990}, {"max", s.Max, 1000}} {
		if math.Abs(c.got-c.want) > c.want*0.001 {
			t.Errorf("Summary %s = %vms, want %vms", c.name, c.got, c.want)
		}
	}
	if s.Count != 1000 {
		t.Errorf("Summary count = %d", s.Count)
	}
}

func TestHistogramSkewed(t *testing.T) {
	// 990 fast values and 10 slow ones: p50 and p95 are fast, p99 still fast (the 990th value),
	// the maximum is the stall.
	h := NewHistogram()
	for range 990 {
		h.Record(200 * time.Microsecond)
	}
	for range 10 {
		h.Record(3 * time.Second)
	}
	if got := h.Percentile(50); !within(got, 200*time.Microsecond) {
		t.Errorf("p50 = %v, want 200µs", got)
	}
	if got := h.Percentile(99); !within(got, 200*time.Microsecond) {
		t.Errorf("p99 = %v, want 200µs", got)
	}
	if got := h.Percentile(99.5); !within(got, 3*time.Second) {
		t.Errorf("p99.5 = %v, want 3s", got)
	}
	if got := h.Max(); !within(got, 3*time.Second) {
		t.Errorf("max = %v, want 3s", got)
	}
}

func TestHistogramClampsAndEmpty(t *testing.T) {
	h := NewHistogram()
	if h.Percentile(50) != 0 || h.Max() != 0 || h.Summary() != (Summary{}) {
		t.Fatalf("empty histogram: p50 %v max %v summary %+v", h.Percentile(50), h.Max(), h.Summary())
	}
	h.Record(0)
	h.Record(-time.Second)
	h.Record(10 * time.Minute)
	if h.Count() != 3 {
		t.Fatalf("Count = %d, want 3 (out-of-range values are clamped, not dropped)", h.Count())
	}
	if got := h.Percentile(0); got != time.Microsecond {
		t.Errorf("min = %v, want 1µs", got)
	}
	if got := h.Max(); !within(got, time.Minute) {
		t.Errorf("max = %v, want 60s", got)
	}
}

func TestHistogramConcurrentMergeTake(t *testing.T) {
	h := NewHistogram()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 10000 {
				h.Record(time.Duration(w*10000+i+1) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if h.Count() != 80000 {
		t.Fatalf("Count = %d, want 80000", h.Count())
	}
	if got := h.Percentile(50); !within(got, 40*time.Millisecond) {
		t.Errorf("p50 = %v, want 40ms", got)
	}

	total := NewHistogram()
	iv := h.Take()
	if h.Count() != 0 || iv.Count() != 80000 {
		t.Fatalf("after Take: h %d, taken %d", h.Count(), iv.Count())
	}
	total.Merge(iv)
	total.Merge(iv)
	if total.Count() != 160000 || iv.Count() != 80000 {
		t.Fatalf("after two merges: total %d, source %d", total.Count(), iv.Count())
	}
	total.Reset()
	if total.Count() != 0 {
		t.Fatalf("after Reset: %d", total.Count())
	}
}
