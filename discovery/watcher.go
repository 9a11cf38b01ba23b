package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxRetry caps the wait before the next refresh after a failed one, so that a backend that
// could not be discovered at start does not wait a whole interval for its servers.
const MaxRetry = 5 * time.Second

// Options configures a Watcher.
type Options struct {
	// Backend names the backend, in logs and Stats.
	Backend string
	// Seed is the base URL of the management API asked first, http[s]://host:port[/prefix].
	Seed string
	// Username and Password authenticate to every management API.
	Username, Password string
	// Interval is the time between two refreshes; Timeout bounds each request.
	Interval, Timeout time.Duration
	// Initial are the members known before the first refresh (those a previous Watcher of the
	// backend found): they give the first refresh more APIs to ask and the ports of stopped
	// members.
	Initial []Member
	// OnRefresh is called on the Watcher's goroutine (or Refresh's caller) after every
	// successful refresh, with the members and whether they differ from the previous ones in
	// name, address or management port. It is called when nothing changed too, so that a
	// receiver that failed to apply a change gets another chance. It must not block: the
	// Watcher waits for it.
	OnRefresh func(members []Member, changed bool)
	// Stats counts refreshes by result; nil means a Stats of the Watcher's own.
	Stats *Stats
	// Logger gets a warning for each failed refresh; nil discards.
	Logger *slog.Logger
}

// Status is what a Watcher knows, for the admin API.
type Status struct {
	// Seed is Options.Seed.
	Seed string
	// Source is the management API that answered the last successful refresh ("" before
	// one).
	Source string
	// Members are what the last successful refresh found (or Options.Initial).
	Members []Member
	// Error is the last refresh's failure, "" when it succeeded.
	Error string
	// RefreshedAt is when the last refresh ended, SucceededAt when the last successful one
	// did; zero before any.
	RefreshedAt, SucceededAt time.Time
}

// Watcher refreshes a backend's members every interval, on a goroutine of its own between
// Start and Stop. A refresh asks the management API that answered last, then the seed, then
// every other known member's, until one answers. When none does, the members stay as they
// were, and the failure is logged and counted.
type Watcher struct {
	o      Options
	seed   *url.URL
	client *Client

	mu          sync.Mutex
	members     []Member
	known       map[string]Member // every node ever seen with its ports, for stopped members
	source      string
	lastErr     error
	refreshedAt time.Time
	succeededAt time.Time

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Watcher for o; it fails when o.Seed is not an http or https URL.
func New(o Options) (*Watcher, error) {
	u, err := url.Parse(strings.TrimSuffix(o.Seed, "/"))
	if err != nil {
		return nil, fmt.Errorf("discovery: management: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("discovery: management %q is not an http(s)://host:port URL", o.Seed)
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	if o.Stats == nil {
		o.Stats = NewStats()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	c := NewClient(o.Username, o.Password, o.Timeout)
	c.Protocol = u.Scheme
	w := &Watcher{o: o, seed: u, client: c, known: map[string]Member{}}
	w.members = slices.Clone(o.Initial)
	for _, m := range o.Initial {
		w.known[m.Node] = m
	}
	return w, nil
}

// Members returns what the last successful refresh found (Options.Initial before one).
func (w *Watcher) Members() []Member {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.members)
}

// Status returns what the Watcher knows now.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{Seed: w.seedBase(), Source: w.source, Members: slices.Clone(w.members),
		RefreshedAt: w.refreshedAt, SucceededAt: w.succeededAt}
	if w.lastErr != nil {
		s.Error = w.lastErr.Error()
	}
	return s
}

func (w *Watcher) seedBase() string { return strings.TrimSuffix(w.seed.String(), "/") }

// bases returns the management APIs to ask, in order: the one that answered last, the seed,
// then every other known member's.
func (w *Watcher) bases() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []string{}
	add := func(b string) {
		if b != "" && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	add(w.source)
	add(w.seedBase())
	for _, m := range w.members {
		add(memberBase(w.seed, m))
	}
	for _, m := range w.known {
		add(memberBase(w.seed, m))
	}
	return out
}

// Refresh asks the management APIs (see Watcher) once. It returns nil when one answered, and
// then calls OnRefresh; otherwise the error of every API asked.
func (w *Watcher) Refresh(ctx context.Context) error {
	var errs []error
	for _, base := range w.bases() {
		w.mu.Lock()
		known := make(map[string]Member, len(w.known))
		for k, v := range w.known {
			known[k] = v
		}
		w.mu.Unlock()
		members, err := w.client.Members(ctx, base, known)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		w.mu.Lock()
		changed := !sameServers(w.members, members)
		recovered := w.lastErr != nil
		w.members, w.source, w.lastErr = members, base, nil
		w.refreshedAt = time.Now()
		w.succeededAt = w.refreshedAt
		for _, m := range members {
			w.known[m.Node] = m
		}
		w.mu.Unlock()
		w.o.Stats.add(w.o.Backend, true)
		if recovered {
			w.o.Logger.Info("discovery: the management API answers again", "backend", w.o.Backend, "source", base)
		}
		if w.o.OnRefresh != nil {
			w.o.OnRefresh(slices.Clone(members), changed)
		}
		return nil
	}
	err := errors.Join(errs...)
	if err == nil {
		err = errors.New("no management API to ask")
	}
	err = fmt.Errorf("no management API answered (the servers stay as they are): %w", err)
	w.mu.Lock()
	w.lastErr, w.refreshedAt = err, time.Now()
	w.mu.Unlock()
	w.o.Stats.add(w.o.Backend, false)
	if ctx.Err() == nil {
		w.o.Logger.Warn("discovery: refresh failed", "backend", w.o.Backend, "err", err)
	}
	return err
}

// sameServers reports whether a and b give the same servers: the same nodes, in the same
// order, at the same addresses and management ports (Running is not a server's property).
func sameServers(a, b []Member) bool {
	return slices.EqualFunc(a, b, func(x, y Member) bool {
		return x.Node == y.Node && x.Host == y.Host && x.AMQPPort == y.AMQPPort && x.ManagementPort == y.ManagementPort
	})
}

// Start runs the refreshes on a goroutine of its own: the first at once unless a refresh has
// already succeeded (then after Interval), each next one Interval after the last, or sooner
// (at most MaxRetry) after a failure.
func (w *Watcher) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		for {
			t := time.NewTimer(w.wait())
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			_ = w.Refresh(ctx)
		}
	}()
}

// wait returns how long to wait before the next refresh.
func (w *Watcher) wait() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.refreshedAt.IsZero():
		return 0
	case w.lastErr != nil:
		return min(w.o.Interval, MaxRetry)
	}
	return w.o.Interval
}

// Stop stops the goroutine Start started, cancelling a refresh under way, and waits for it; it
// also closes the idle connections of Refresh calls made without Start.
func (w *Watcher) Stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		w.cancel = nil
	}
	w.client.CloseIdle()
}

// Stats counts refreshes by backend and result, across Watchers: a reload that replaces a
// backend's Watcher keeps its counts (amqplb_discovery_refreshes_total).
type Stats struct {
	mu sync.Mutex
	m  map[string]*[2]uint64 // backend → {ok, failed}
}

// NewStats returns empty counts.
func NewStats() *Stats { return &Stats{m: map[string]*[2]uint64{}} }

func (s *Stats) add(backend string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[backend]
	if c == nil {
		c = new([2]uint64)
		s.m[backend] = c
	}
	if ok {
		c[0]++
	} else {
		c[1]++
	}
}

// Refreshes returns the numbers of successful and failed refreshes of backend.
func (s *Stats) Refreshes(backend string) (ok, failed uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.m[backend]; c != nil {
		return c[0], c[1]
	}
	return 0, 0
}
