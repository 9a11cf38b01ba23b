package healthcheck

import (
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
)

func TestCheckResultsAreKeptAndCounted(t *testing.T) {
	st := NewStatuses()
	s := newServer("a", "127.0.0.1:1")
	if st.Last(s) != nil || st.Status(s).Last != nil {
		t.Fatal("a check result before any check")
	}
	if f := st.Status(s).Failures; len(f) != len(FailureKinds) || f[FailAuth] != 0 {
		t.Errorf("failures before any check = %v, want every kind at 0", f)
	}
	st.Record(s, CheckResult{OK: true, Reason: "AMQP handshake ok", Duration: 3 * time.Millisecond})
	st.Record(s, CheckResult{OK: false, Kind: FailAuth, Code: 403, Reason: "403 ACCESS_REFUSED", Duration: 2 * time.Second})
	st.CountFailure(s, "no such kind")
	if lc := st.Last(s); lc.Code != 403 || lc.OK {
		t.Errorf("last check = %+v", lc)
	}
	f := st.Status(s).Failures
	if f[FailAuth] != 1 || f[FailOther] != 1 {
		t.Errorf("failures = %v", f)
	}
	h := st.Status(s).Durations
	if h.Count != 2 || h.Buckets[0.005] != 1 || h.Buckets[2.5] != 2 || h.Buckets[1] != 1 {
		t.Errorf("histogram = %+v", h)
	}
	if h.Sum < 2.002 || h.Sum > 2.004 {
		t.Errorf("histogram sum = %v, want 2.003", h.Sum)
	}
}

// A reload keeps the Statuses and the servers it keeps; Retain forgets the others.
func TestStatusesRetain(t *testing.T) {
	st := NewStatuses()
	kept, dropped := newServer("kept", "127.0.0.1:1"), newServer("dropped", "127.0.0.1:2")
	for _, s := range []*backend.Server{kept, dropped} {
		st.Record(s, CheckResult{Kind: FailRefused, Reason: "connection refused"})
	}
	st.Retain([]*backend.Server{kept})
	if c := st.Last(kept); c == nil || c.Kind != FailRefused || st.Status(kept).Failures[FailRefused] != 1 {
		t.Errorf("kept server: last %+v, failures %v", c, st.Status(kept).Failures)
	}
	if c := st.Last(dropped); c != nil || st.Status(dropped).Failures[FailRefused] != 0 {
		t.Errorf("dropped server still known: %+v", c)
	}
}
