package proxy

import (
	"testing"
	"testing/synctest"
	"time"
)

// The log throttle lets one line through per interval and counts the ones it held back; on
// synctest's fake clock, so the interval is exact.
func TestLogThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := logThrottle{interval: time.Second}
		if ok, n := th.allow(); !ok || n != 0 {
			t.Fatalf("first line: %v, %d suppressed; want it through", ok, n)
		}
		for range 5 {
			if ok, _ := th.allow(); ok {
				t.Fatal("a second line within the interval went through")
			}
		}
		time.Sleep(999 * time.Millisecond)
		if ok, _ := th.allow(); ok {
			t.Fatal("a line 1 ms before the interval's end went through")
		}
		time.Sleep(time.Millisecond)
		if ok, n := th.allow(); !ok || n != 6 {
			t.Fatalf("after the interval: %v, %d suppressed; want through with 6", ok, n)
		}
	})
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(2)
	admitted := 0
	for range 3 {
		if l.Acquire() {
			admitted++
		}
	}
	if admitted != 2 {
		t.Fatalf("a limit of 2 admitted %d of 3", admitted)
	}
	l.SetMax(3)
	if !l.Acquire() || l.InUse() != 3 {
		t.Fatalf("raised limit: in use %d", l.InUse())
	}
	l.SetMax(1) // holders above a lowered limit keep their slots
	if l.Acquire() || l.InUse() != 3 {
		t.Fatalf("lowered limit: in use %d", l.InUse())
	}
	for range 3 {
		l.Release()
	}
	var none *Limiter
	if !none.Acquire() || none.Max() != 0 {
		t.Fatal("a nil limiter must admit everything")
	}
}
