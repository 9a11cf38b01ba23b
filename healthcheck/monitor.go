package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/amqplb/amqplb/backend"
)

// maxMaintPoll bounds how long after an operator ends a server's maintenance its checks resume.
const maxMaintPoll = 100 * time.Millisecond

// MonitorOptions configure a Monitor. Zero values mean the defaults said on each field.
type MonitorOptions struct {
	// Backend is the name of the servers' backend, for logs.
	Backend string
	// Servers are the servers to check; the Monitor changes their health (SetHealth) and
	// their suspect flag, and, as their agents say (Agents), their admin state, weight,
	// connection cap and agent health; nothing else of them.
	Servers []*backend.Server
	// Statuses is where the Monitor keeps each server's last check, failure counts and check
	// durations. Give every generation of Monitors the same one, so that a server kept across
	// a reload keeps them (and its verdict). Nil means a Statuses of the Monitor's own.
	Statuses *Statuses
	// Checker checks one server. Nil means checks are off (type "none"): servers stay up,
	// and a server made suspect by Suspect is put back into rotation after
	// Policy.DownInterval.
	Checker Checker
	// Policy holds rise/fall and the intervals; its zero fields mean its defaults.
	Policy Policy
	// Timeout bounds each check, the management API's included; 0 means DefaultTimeout.
	// A checker's own, shorter timeout still applies.
	Timeout time.Duration
	// Management, if set, also reads each node's alarms from its RabbitMQ management API
	// (see ManagementOptions), and makes the Monitor see nodes in maintenance mode: after a
	// failed check it asks the other servers' management API whether the server's node is
	// being drained (see KindMaintenance). It is ignored when Checker is nil.
	Management *ManagementOptions
	// Agents holds the agent check of each server that has one (HAProxy's agent-check): it is
	// asked every AgentOptions.Interval, on a goroutine of its own, and its replies set the
	// server's admin state, weight, connection cap and agent health (see AgentReply). An agent
	// that cannot be reached leaves the server as it is. The Monitor's Timeout bounds each
	// question.
	Agents map[*backend.Server]AgentOptions
	// Logger receives one line per health transition; nil means slog.Default().
	Logger *slog.Logger
	// OnTransition, if set, is called after each health transition of a server, with the
	// verdicts before and after (backend.StateUp or backend.StateDown; s.State() gives the
	// state the operator's drain or maint may override) and the result that caused it,
	// already in Statuses.
	// It runs on the monitor's goroutines, possibly concurrently for different servers,
	// with the server's check state locked: it must return quickly and must not call the
	// Monitor. cmd uses it for on_marked_down = "shutdown-sessions".
	OnTransition func(s *backend.Server, from, to backend.State, r CheckResult)
}

// Monitor checks the servers of one backend and turns the results into their health.
//
// Each server has its own goroutine, so a hung server never delays the checks of another. On
// Start every server is checked at once; after that each is checked every Policy.Interval,
// every Policy.FastInterval while a change is pending and every Policy.DownInterval while
// down, with a random offset after the first check so servers are not checked in lockstep.
// Rise consecutive passes bring a server up and Fall consecutive failures take it down, except
// that a server's first result decides its health at once: a dead broker must not get traffic
// for Fall intervals after amqplb starts. Until then a server counts as up only while no
// server of the backend has passed a check: the first pass of any server takes down those
// still waiting for their first result. (A failure does not: it would leave the backend with no
// server up for nothing, and a dead broker's refusal, always the first result, would bounce
// every live server down and up at each start.) A server in maintenance is not checked; when maintenance ends, it is
// checked at once and that result decides again.
//
// Each transition is one log line (warn when down, info when up) saying why, and a call of
// MonitorOptions.OnTransition.
//
// A check connects through backend.Server.Dial: to the server's CheckAddress, with the PROXY
// header its sessions get and its TLS. The PROXY header of a check carries the check
// connection's own addresses, except that once an AMQP or amqp-probe check of a server with
// SendProxy 2 read from Connection.Start a broker version that accepts the v2 LOCAL command
// (RabbitMQ 3.11.19 and later on the 3.11 line, 3.12.1 and later), the following checks of
// that server send LOCAL, which the broker does not count as a proxied client. Each check
// decides this afresh from the last one: a check that read no version (a broker that dropped
// the connection, or one replaced by an older release) brings back the addresses.
type Monitor struct {
	backend      string
	servers      []*serverLoop
	loops        map[*backend.Server]*serverLoop
	statuses     *Statuses
	checker      Checker
	policy       Policy
	timeout      time.Duration
	log          *slog.Logger
	onTransition func(s *backend.Server, from, to backend.State, r CheckResult)
	agents       map[*backend.Server]AgentOptions

	// mgmt asks the management API, for alarms and maintenance mode; nil without
	// MonitorOptions.Management (or checks).
	mgmt     *managementChecker
	mgmtOpts ManagementOptions

	// anyPassed is set once a server of the backend has passed a check.
	anyPassed atomic.Bool

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
}

// serverLoop is the monitor's view of one server.
type serverLoop struct {
	s *backend.Server
	// wake asks the server's loop to check now (Suspect); one pending wake-up is enough.
	wake chan struct{}

	mu sync.Mutex
	// h is the server's health as the checks and passive failures see it.
	h Health
	// seen reports whether a result decided h since Start (or since maintenance ended).
	seen bool
	// passive counts the failed client connections among h.Fails.
	passive int
	// suspectAt is when Suspect was last called; used with checks off.
	suspectAt time.Time

	// proxyLocal reports that the last check read a broker version that accepts a PROXY v2
	// LOCAL header. Only the server's checkLoop uses it.
	proxyLocal bool

	// node is the Erlang name of the server's node, as its management API gave it at nodeAt;
	// maintSeen is the last answer that found it in maintenance mode. Only the server's
	// checkLoop uses them.
	node      string
	nodeAt    time.Time
	maintSeen maintenanceVerdict
}

// NewMonitor returns a monitor of o.Servers. Nothing runs before Start.
func NewMonitor(o MonitorOptions) *Monitor {
	m := &Monitor{
		backend:      o.Backend,
		loops:        make(map[*backend.Server]*serverLoop, len(o.Servers)),
		statuses:     o.Statuses,
		checker:      o.Checker,
		policy:       o.Policy,
		timeout:      timeoutOr(o.Timeout),
		log:          o.Logger,
		onTransition: o.OnTransition,
		agents:       o.Agents,
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.statuses == nil {
		m.statuses = NewStatuses()
	}
	if m.checker != nil && o.Management != nil {
		m.mgmtOpts = *o.Management
		m.mgmt = newManagementChecker(m.checker, m.mgmtOpts, m.timeout)
		m.checker = m.mgmt
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for _, s := range o.Servers {
		if _, dup := m.loops[s]; dup {
			continue
		}
		// A server kept across a reload keeps its verdict: only a server never checked
		// gets its health decided by its first result.
		l := &serverLoop{s: s, wake: make(chan struct{}, 1), h: Health{Up: s.Healthy()}, seen: m.statuses.Last(s) != nil}
		if l.seen && l.h.Up && m.checker != nil {
			m.anyPassed.Store(true)
		}
		m.servers = append(m.servers, l)
		m.loops[s] = l
	}
	return m
}

// Start starts one goroutine per server, each checking its server at once. Calls after the
// first do nothing.
func (m *Monitor) Start() {
	m.startOnce.Do(func() {
		switch {
		case m.checker == nil:
			for _, l := range m.servers {
				l.mu.Lock()
				if !l.s.Healthy() {
					l.h = Health{Up: true}
					m.transition(l, CheckResult{OK: true, Reason: "health checks off", At: time.Now()}, "checks off")
				}
				// A reload that turned checks off leaves nothing to end a maintenance seen before.
				m.endMaintenance(l, CheckResult{OK: true, Reason: "health checks off", At: time.Now()})
				l.mu.Unlock()
			}
		case m.anyPassed.Load():
			m.holdUnchecked(nil)
		}
		for _, l := range m.servers {
			if o, ok := m.agents[l.s]; ok {
				m.wg.Add(1)
				go m.agentLoop(l, o)
			} else {
				// A reload took the agent away: what it said of the server's health goes with it.
				m.statuses.forgetAgent(l.s)
				if !l.s.AgentHealthy() {
					l.mu.Lock()
					l.s.SetAgentHealth(true)
					l.mu.Unlock()
				}
			}
			m.wg.Add(1)
			if m.checker == nil {
				go m.clearSuspects(l)
			} else {
				go m.checkLoop(l)
			}
		}
	})
}

// Status returns what the Monitor's Statuses know of s.
func (m *Monitor) Status(s *backend.Server) Status { return m.statuses.Status(s) }

// Stop stops the checks and waits for every goroutine of the monitor, in-flight checks
// included, to end. Results of checks cut short are dropped. The servers keep their health.
func (m *Monitor) Stop() {
	m.cancel()
	m.wg.Wait()
}

// Suspect reports that a client connection to s failed (passive detection). The server is
// skipped for new connections until a check passes, the failure counts toward Policy.Fall like
// a failed check, and s is checked at once: many calls in a row cause one check, not one each.
// With checks off, s is put back into rotation after Policy.DownInterval instead. err (may be
// nil) says why, for the log. A server the monitor does not check is ignored, and so is every
// call after Stop (a session of an old configuration must not leave a server suspect with no
// loop left to clear it).
func (m *Monitor) Suspect(s *backend.Server, err error) {
	l := m.loops[s]
	if l == nil {
		return
	}
	l.mu.Lock()
	if m.ctx.Err() != nil {
		l.mu.Unlock()
		return
	}
	m.statuses.CountFailure(s, FailPassive)
	s.MarkSuspect()
	switch {
	case m.checker == nil:
		l.suspectAt = time.Now()
	case s.Maintenance():
		// A session raced the checks that saw the node drained: nothing to count against it.
	default:
		l.sync()
		prev := l.h
		l.h, _ = m.policy.Next(l.h, false)
		l.passive = min(l.passive+1, l.h.Fails)
		if prev.Up && !l.h.Up {
			r := CheckResult{Kind: FailPassive, Reason: passiveReason(err), At: time.Now()}
			m.transition(l, r, m.failCounts(l))
		}
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// checkLoop checks one server until the monitor stops.
func (m *Monitor) checkLoop(l *serverLoop) {
	defer m.wg.Done()
	timer := time.NewTimer(0) // the first check is at once
	defer timer.Stop()
	first, maint := true, false
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-timer.C:
		case <-l.wake:
		}
		if l.s.Admin() == backend.AdminMaint {
			// No notice comes when maintenance ends: look again soon.
			maint = true
			timer.Reset(min(m.policy.Wait(Health{Up: true}), maxMaintPoll))
			continue
		}
		if maint {
			// The verdict from before the maintenance is stale: the next result decides.
			maint = false
			l.mu.Lock()
			l.seen = false
			l.mu.Unlock()
		}
		res := m.check(l)
		if m.mgmt != nil && m.ctx.Err() == nil {
			res = m.maintenance(l, res)
		}
		if m.ctx.Err() != nil {
			return
		}
		m.learn(l, res)
		// The check just made answers the Suspect calls made meanwhile.
		select {
		case <-l.wake:
		default:
		}
		wait := m.record(l, res)
		if first && wait > 0 {
			// Spread the servers' checks over the interval.
			wait = wait/2 + rand.N(wait)
		}
		first = false
		timer.Reset(wait)
	}
}

// check runs one check of l's server, bounded by the timeout and by Stop.
func (m *Monitor) check(l *serverLoop) Result {
	ctx, cancel := context.WithTimeout(m.ctx, m.timeout)
	defer cancel()
	t := serverTarget(l.s, l.proxyLocal)
	t.ManagementPort = m.mgmtOpts.serverPort(l.s)
	return m.checker.Check(ctx, t)
}

// serverTarget is the target of a check of s: its check address, dialed through s.Dial, with
// a PROXY v2 LOCAL header if proxyLocal and s sends v2.
func serverTarget(s *backend.Server, proxyLocal bool) Target {
	sendProxy := s.CheckSendProxy()
	o := backend.DialOptions{Check: true, ProxyLocal: proxyLocal && sendProxy == 2, KeepAlive: -1}
	return Target{
		Addr:      s.CheckAddress(),
		SendProxy: sendProxy,
		Dial:      func(ctx context.Context) (net.Conn, error) { return s.Dial(ctx, o) },
	}
}

// learn keeps what a check found out that the next check of the server needs: whether the
// broker accepts a PROXY v2 LOCAL header.
func (m *Monitor) learn(l *serverLoop, res Result) {
	local := supportsProxyLocal(res.BrokerVersion)
	if local == l.proxyLocal {
		return
	}
	l.proxyLocal = local
	if l.s.CheckSendProxy() == 2 {
		header := "PROXY v2 with the check's addresses"
		if local {
			header = "PROXY v2 LOCAL"
		}
		m.log.Debug("health checks send "+header, "backend", m.backend, "server", l.s.Name(),
			"broker_version", res.BrokerVersion)
	}
}

// record stores a check result in Statuses, updates the server's health and returns how long to
// wait before the next check.
func (m *Monitor) record(l *serverLoop, res Result) time.Duration {
	r := CheckResult{OK: res.OK, Kind: res.Kind, Reason: res.Reason, Code: res.Code,
		Duration: res.Duration, At: res.At.Add(res.Duration)}
	switch {
	case r.OK:
		r.Kind = ""
	case r.Kind == KindMaintenance:
		return m.recordMaintenance(l, r, res.detail)
	case r.Kind == "":
		r.Kind = FailOther
	}
	m.endMaintenance(l, r)
	m.statuses.Record(l.s, r)
	first := r.OK && m.anyPassed.CompareAndSwap(false, true)

	l.mu.Lock()
	l.sync()
	prev := l.h
	var wait time.Duration
	var counts string
	switch {
	case !l.seen:
		l.seen, l.passive = true, 0
		if r.OK {
			l.h, counts = Health{Up: true, Passes: 1}, "first check passed"
		} else {
			l.h, counts = Health{Fails: 1}, "first check failed"
		}
		wait = m.policy.Wait(l.h)
	case r.OK:
		l.h, wait = m.policy.Next(l.h, true)
		counts = fmt.Sprintf("%d/%d checks passed", l.h.Passes, m.policy.rise())
	default:
		l.h, wait = m.policy.Next(l.h, false)
		counts = m.failCounts(l)
	}
	if r.OK {
		l.passive = 0
		l.s.ClearSuspect()
	}
	if l.h.Up != prev.Up {
		m.transition(l, r, counts)
	}
	l.mu.Unlock()

	if first {
		m.holdUnchecked(l)
	}
	return wait
}

// recordMaintenance records a check that found l's node in maintenance mode: the server drains
// (logged when it starts), its health verdict stays as it was and it is checked again after the
// interval its verdict gives. detail says what the maintenance was seen from.
func (m *Monitor) recordMaintenance(l *serverLoop, r CheckResult, detail string) time.Duration {
	m.statuses.Record(l.s, r)
	was := l.s.Maintenance()
	from, to := l.s.SetMaintenance(true)
	if !was {
		m.logMaintenance(l, "server in maintenance", from, to, r, detail)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return m.policy.Wait(l.h)
}

// endMaintenance ends l's maintenance after a check r that did not find the node in
// maintenance mode: it passed (the node was revived), or another node says the node is not
// being drained (any more).
func (m *Monitor) endMaintenance(l *serverLoop, r CheckResult) {
	if !l.s.Maintenance() {
		return
	}
	from, to := l.s.SetMaintenance(false)
	l.maintSeen = maintenanceVerdict{}
	m.logMaintenance(l, "server out of maintenance", from, to, r, "")
}

// logMaintenance logs the start or end of a server's maintenance, at INFO: it is planned work,
// not an incident.
func (m *Monitor) logMaintenance(l *serverLoop, msg string, from, to backend.State, r CheckResult, detail string) {
	attrs := []slog.Attr{
		slog.String("backend", m.backend),
		slog.String("server", l.s.Name()),
		slog.String("address", l.s.Address()),
		slog.String("from", from.String()),
		slog.String("to", to.String()),
		slog.String("reason", r.Reason),
	}
	if l.node != "" {
		attrs = append(attrs, slog.String("node", l.node))
	}
	if detail != "" {
		attrs = append(attrs, slog.String("seen", detail))
	}
	m.log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// holdUnchecked takes down the servers that have no result yet, but l, once a server of the
// backend passed a check: from then on a server counts as up only once its own first check
// passed.
func (m *Monitor) holdUnchecked(except *serverLoop) {
	for _, l := range m.servers {
		if l == except {
			continue
		}
		l.mu.Lock()
		l.sync()
		if !l.seen && l.h.Up && l.s.Admin() != backend.AdminMaint {
			l.h, l.passive = Health{}, 0
			m.setHealth(l, CheckResult{Reason: "not checked yet", At: time.Now()}, "waiting for its first check", false)
		}
		l.mu.Unlock()
	}
}

// clearSuspects puts a suspect server back into rotation after Policy.DownInterval, when
// checks are off.
func (m *Monitor) clearSuspects(l *serverLoop) {
	defer m.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	after := m.policy.Wait(Health{})
	// A server kept across a reload may still be suspect from the old monitor, whose timer
	// went with it: start the clock again.
	l.mu.Lock()
	if l.s.Suspect() {
		l.suspectAt = time.Now()
		timer.Reset(after)
	}
	l.mu.Unlock()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-l.wake:
		case <-timer.C:
		}
		l.mu.Lock()
		if l.s.Suspect() {
			if left := time.Until(l.suspectAt.Add(after)); left > 0 {
				timer.Reset(left)
			} else {
				l.s.ClearSuspect()
			}
		}
		l.mu.Unlock()
	}
}

// sync adopts the server's health if something else (a tool, a test) forced it.
// l.mu must be held.
func (l *serverLoop) sync() {
	if up := l.s.Healthy(); up != l.h.Up {
		l.h, l.passive = Health{Up: up}, 0
	}
}

// failCounts describes l's run of failures for the log: "3/3 checks failed (1 passive)".
func (m *Monitor) failCounts(l *serverLoop) string {
	s := fmt.Sprintf("%d/%d checks failed", l.h.Fails, m.policy.fall())
	if l.passive > 0 {
		s += fmt.Sprintf(" (%d passive)", l.passive)
	}
	return s
}

// transition applies l.h.Up to the server, logs the change and calls OnTransition.
// l.mu must be held, so a server's transitions are reported in order.
func (m *Monitor) transition(l *serverLoop, r CheckResult, counts string) {
	m.setHealth(l, r, counts, true)
}

// setHealth applies l.h.Up to the server and logs it; with notify it is a transition worth the
// operator's attention and OnTransition hears of it. A server held back until its first check
// (holdUnchecked) is not: its sessions must not be shut down for that, and it is no incident.
func (m *Monitor) setHealth(l *serverLoop, r CheckResult, counts string, notify bool) {
	l.s.SetHealth(l.h.Up)
	from, to := backend.StateUp, backend.StateDown
	msg, level := "server down", slog.LevelWarn
	if l.h.Up {
		from, to = to, from
		msg, level = "server up", slog.LevelInfo
	}
	if !notify {
		level = slog.LevelDebug
	}
	up := 0
	for _, o := range m.servers {
		if o.s.State() == backend.StateUp {
			up++
		}
	}
	attrs := []slog.Attr{
		slog.String("backend", m.backend),
		slog.String("server", l.s.Name()),
		slog.String("address", l.s.Address()),
		slog.String("from", from.String()),
		slog.String("to", to.String()),
		slog.String("reason", r.Reason),
		slog.Int("code", r.Code),
	}
	if r.Kind != "" {
		attrs = append(attrs, slog.String("kind", r.Kind))
	}
	attrs = append(attrs,
		slog.String("checks", counts),
		slog.Duration("check_duration", r.Duration),
		slog.String("servers_up", fmt.Sprintf("%d/%d", up, len(m.servers))),
	)
	m.log.LogAttrs(context.Background(), level, msg, attrs...)
	if notify && m.onTransition != nil {
		m.onTransition(l.s, from, to, r)
	}
}

// passiveReason says in a few words why a client connection failed.
func passiveReason(err error) string {
	const prefix = "client connection failed"
	var ne net.Error
	switch {
	case err == nil:
		return prefix
	case errors.Is(err, syscall.ECONNREFUSED):
		return prefix + ": connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return prefix + ": connection reset"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return prefix + ": timeout"
	}
	return prefix + ": " + unwrapOp(err).Error()
}
