package healthcheck

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqplb/amqplb/backend"
)

// Failure kinds: the Kind of a failed Result and CheckResult, and the low-cardinality reason
// label of amqplb_health_check_failures_total.
const (
	FailTimeout  = "timeout"  // no answer in time (hung, paused, overloaded)
	FailRefused  = "refused"  // TCP connect refused
	FailReset    = "reset"    // connection reset or closed early
	FailAuth     = "auth"     // broker refused the login (403)
	FailVHost    = "vhost"    // vhost missing or not allowed (530)
	FailClosed   = "closed"   // broker closed the connection with another code (320, 541, ...)
	FailProtocol = "protocol" // not AMQP 0-9-1, garbage, wrong port
	FailAlarm    = "alarm"    // a resource alarm, with eject_on_alarm
	FailPassive  = "passive"  // a client session failed to connect
	FailOther    = "other"    // anything else
)

// FailureKinds lists every failure kind, in a fixed order.
var FailureKinds = []string{FailTimeout, FailRefused, FailReset, FailAuth, FailVHost, FailClosed, FailProtocol, FailAlarm, FailPassive, FailOther}

// DurationBuckets are the upper bounds, in seconds, of the check-duration histogram.
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// CheckResult is what the Monitor keeps of one check of a server (or of a passive failure, or
// of a health change no check made), for the admin API and MonitorOptions.OnTransition.
type CheckResult struct {
	// OK reports whether the check passed.
	OK bool
	// Kind classifies a failure (one of FailureKinds); empty when OK.
	Kind string
	// Reason is short and human: "AMQP handshake ok", "connection refused", "broker closed: 403 ...".
	Reason string
	// Code is the broker's reply code (403, 530, 541, 320, ...), 0 when the broker gave none.
	Code int
	// Duration is how long the check took.
	Duration time.Duration
	// At is when the check finished.
	At time.Time
}

// DurationHistogram is a snapshot of a server's check durations, as a Prometheus constant
// histogram wants it: cumulative counts per upper bound of DurationBuckets, the total count
// and the sum in seconds.
type DurationHistogram struct {
	// Buckets maps each bound of DurationBuckets to the number of checks that took at most
	// that long.
	Buckets map[float64]uint64
	// Count is the number of checks, the slower than every bucket included.
	Count uint64
	// Sum is the total duration of the checks, in seconds.
	Sum float64
}

// Status is what the health checks know of one server: its last check, its failures by kind
// and how long its checks took. A server never checked has a nil Last and zero counts.
type Status struct {
	// Last is the last check, nil before the first.
	Last *CheckResult
	// Failures counts failed checks and passive failures by kind; every kind of FailureKinds
	// is present.
	Failures map[string]uint64
	// Durations is the histogram of the checks' durations.
	Durations DurationHistogram
	// Agent is the server's last agent check; nil without an agent or before its first.
	Agent *AgentResult
}

// Statuses keeps the Status of every server that Monitors sharing it check, keyed by the
// *backend.Server. It is safe for concurrent use; a check updates it without blocking readers.
//
// A process keeps one Statuses for its whole life and gives it to every generation of
// Monitors (MonitorOptions.Statuses): a server that a reload keeps (the same *backend.Server)
// keeps its last check, its failure counts and its histogram, and a Monitor takes its verdict
// as already decided. Retain forgets the servers a reload dropped.
type Statuses struct {
	mu sync.RWMutex
	m  map[*backend.Server]*serverStatus
}

// serverStatus is one server's record, in atomics so that checks never block a scrape.
type serverStatus struct {
	last     atomic.Pointer[CheckResult]
	failures [10]atomic.Uint64 // indexed like FailureKinds
	counts   [13]atomic.Uint64 // one per bucket of DurationBuckets, then +Inf
	sumNs    atomic.Int64
	agent    atomic.Pointer[AgentResult]
}

// NewStatuses returns an empty Statuses.
func NewStatuses() *Statuses {
	return &Statuses{m: make(map[*backend.Server]*serverStatus)}
}

// lookup returns s's record, or nil if nothing was recorded for s.
func (st *Statuses) lookup(s *backend.Server) *serverStatus {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.m[s]
}

// entry returns s's record, making it on first use.
func (st *Statuses) entry(s *backend.Server) *serverStatus {
	if e := st.lookup(s); e != nil {
		return e
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.m[s]
	if e == nil {
		e = &serverStatus{}
		st.m[s] = e
	}
	return e
}

// Record stores a check result of s: it becomes the last check, its duration goes into the
// histogram and a failure is counted by its Kind (a KindMaintenance result is no failure).
func (st *Statuses) Record(s *backend.Server, r CheckResult) {
	e := st.entry(s)
	e.last.Store(&r)
	sec := r.Duration.Seconds()
	i := 0
	for i < len(DurationBuckets) && sec > DurationBuckets[i] {
		i++
	}
	e.counts[i].Add(1)
	e.sumNs.Add(int64(r.Duration))
	if !r.OK && r.Kind != KindMaintenance {
		e.countFailure(r.Kind)
	}
}

// RecordAgent stores the last agent check of s.
func (st *Statuses) RecordAgent(s *backend.Server, r AgentResult) {
	st.entry(s).agent.Store(&r)
}

// forgetAgent drops s's agent result: a reload took its agent away.
func (st *Statuses) forgetAgent(s *backend.Server) {
	if e := st.lookup(s); e != nil {
		e.agent.Store(nil)
	}
}

// CountFailure counts a failure of s of the given kind (FailOther if unknown) without a check
// result, e.g. a passive failure.
func (st *Statuses) CountFailure(s *backend.Server, kind string) {
	st.entry(s).countFailure(kind)
}

func (e *serverStatus) countFailure(kind string) {
	i := slices.Index(FailureKinds, kind)
	if i < 0 {
		i = len(FailureKinds) - 1
	}
	e.failures[i].Add(1)
}

// Last returns the last check of s, or nil before the first.
func (st *Statuses) Last(s *backend.Server) *CheckResult {
	if e := st.lookup(s); e != nil {
		return e.last.Load()
	}
	return nil
}

// Status returns a snapshot of what is known of s; for a server never checked, a Status with
// no last check and zero counts.
func (st *Statuses) Status(s *backend.Server) Status {
	e := st.lookup(s)
	if e == nil {
		e = &serverStatus{}
	}
	out := Status{
		Last:      e.last.Load(),
		Agent:     e.agent.Load(),
		Failures:  make(map[string]uint64, len(FailureKinds)),
		Durations: DurationHistogram{Buckets: make(map[float64]uint64, len(DurationBuckets))},
	}
	for i, k := range FailureKinds {
		out.Failures[k] = e.failures[i].Load()
	}
	var cum uint64
	for i, ub := range DurationBuckets {
		cum += e.counts[i].Load()
		out.Durations.Buckets[ub] = cum
	}
	out.Durations.Count = cum + e.counts[len(DurationBuckets)].Load()
	out.Durations.Sum = time.Duration(e.sumNs.Load()).Seconds()
	return out
}

// Retain forgets every server but those in keep: a reload calls it with the servers of the
// new configuration, once the Monitors of the old one have stopped.
func (st *Statuses) Retain(keep []*backend.Server) {
	set := make(map[*backend.Server]bool, len(keep))
	for _, s := range keep {
		set[s] = true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for s := range st.m {
		if !set[s] {
			delete(st.m, s)
		}
	}
}
