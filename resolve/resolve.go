// Package resolve turns a DNS name into a backend's servers, as HAProxy's server-template with
// resolvers does: a Template resolves host:port every interval and keeps the addresses it
// finds in numbered slots (1..Count), each address staying in its slot while the name still
// resolves to it, so that a server named after its slot keeps its state and counters across
// resolutions.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// LookupFunc returns the IP addresses of host, as net.Resolver.LookupNetIP with network "ip".
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// NewLookup returns the LookupFunc of Go's resolver, asking nameservers (ip:port) when there
// are any, else the system's resolver. With several nameservers, each is asked in turn until
// one answers (a name it says does not exist is an answer).
func NewLookup(nameservers []string) LookupFunc {
	if len(nameservers) == 0 {
		return func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	rs := make([]*net.Resolver, len(nameservers))
	for i, ns := range nameservers {
		rs[i] = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, ns)
		}}
	}
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		var errs []error
		for _, r := range rs {
			ips, err := r.LookupNetIP(ctx, "ip", host)
			var dnsErr *net.DNSError
			if err == nil || errors.As(err, &dnsErr) && dnsErr.IsNotFound || ctx.Err() != nil {
				return ips, err
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
}

// Options configures a Template.
type Options struct {
	// Name names the template in logs ("backend/prefix").
	Name string
	// Address is host:port; an IP address is resolved to itself.
	Address string
	// Count is the number of slots.
	Count int
	// Interval is the time between two resolutions; Timeout bounds one.
	Interval, Timeout time.Duration
	// Lookup resolves the host; nil means NewLookup(nil).
	Lookup LookupFunc
	// Initial are the slots known before the first resolution (those a previous Template of
	// the same name held): index i is slot i+1, "" an empty one.
	Initial []string
	// OnResolve is called on the Template's goroutine (or Resolve's caller) after every
	// successful resolution, changed or not (a receiver whose apply failed gets another
	// chance). It must not block.
	OnResolve func()
	// Logger gets a warning for each failed resolution; nil discards.
	Logger *slog.Logger
}

// Template resolves a name every interval between Start and Stop. A failed resolution keeps
// the slots as they were (HAProxy's hold other/nx/timeout keep the last answer for their
// time; amqplb keeps it until a resolution succeeds).
type Template struct {
	o    Options
	host string
	port string

	mu      sync.Mutex
	slots   []string // host:port per slot, "" when empty
	lastErr error
	ok      bool // a resolution succeeded

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Template, not started.
func New(o Options) (*Template, error) {
	host, port, err := net.SplitHostPort(o.Address)
	if err != nil {
		return nil, err
	}
	if o.Count < 1 || o.Interval <= 0 || o.Timeout <= 0 {
		return nil, fmt.Errorf("resolve: count, interval and timeout must be positive")
	}
	if o.Lookup == nil {
		o.Lookup = NewLookup(nil)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Template{o: o, host: host, port: port, slots: make([]string, o.Count)}
	copy(t.slots, o.Initial)
	return t, nil
}

// Slots returns the address in each slot (index i is slot i+1), "" for an empty one.
func (t *Template) Slots() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.slots)
}

// Err returns the last resolution's failure, nil when it succeeded.
func (t *Template) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastErr
}

// Resolve resolves the name once and updates the slots: see Assign. A name that does not
// exist (NXDOMAIN) or has no address empties every slot, as HAProxy's servers go to maint when
// their name disappears; any other failure keeps the slots and is returned.
func (t *Template) Resolve(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	var addrs []string
	if ip, err := netip.ParseAddr(t.host); err == nil {
		addrs = []string{net.JoinHostPort(ip.String(), t.port)}
	} else {
		ips, err := t.o.Lookup(ctx, t.host)
		var dnsErr *net.DNSError
		if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
			t.mu.Lock()
			t.lastErr = err
			t.mu.Unlock()
			t.o.Logger.Warn("resolve: lookup failed; the servers stay", "template", t.o.Name, "host", t.host, "err", err)
			return err
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip.Unmap().WithZone("").String(), t.port))
		}
	}
	t.mu.Lock()
	t.slots = Assign(t.slots, addrs)
	t.lastErr, t.ok = nil, true
	t.mu.Unlock()
	if t.o.OnResolve != nil {
		t.o.OnResolve()
	}
	return nil
}

// Assign returns the slots after a resolution found addrs: an address already in a slot keeps
// it, slots whose address is gone are emptied, and the new addresses fill the empty slots from
// the lowest, in the order found (duplicates once); addresses beyond the slots are left out.
func Assign(slots, addrs []string) []string {
	out := make([]string, len(slots))
	for i, a := range slots {
		if a != "" && slices.Contains(addrs, a) {
			out[i] = a
		}
	}
	free := 0
	for _, a := range addrs {
		if slices.Contains(out, a) {
			continue
		}
		for free < len(out) && out[free] != "" {
			free++
		}
		if free == len(out) {
			break
		}
		out[free] = a
	}
	return out
}

// Start resolves every interval on a goroutine of its own until Stop. The first resolution
// is immediate unless one succeeded already.
func (t *Template) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel, t.done = cancel, make(chan struct{})
	t.mu.Lock()
	first := t.o.Interval
	if !t.ok {
		first = 0
	}
	t.mu.Unlock()
	go func() {
		defer close(t.done)
		timer := time.NewTimer(first)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			wait := t.o.Interval
			if t.Resolve(ctx) != nil && ctx.Err() == nil {
				wait = min(wait, MaxRetry) // retry soon after a failure
			}
			timer.Reset(wait)
		}
	}()
}

// MaxRetry caps the wait before the next resolution after a failed one.
const MaxRetry = 2 * time.Second

// Stop stops the goroutine Start started and waits for it; without Start it does nothing.
func (t *Template) Stop() {
	if t.cancel == nil {
		return
	}
	t.cancel()
	<-t.done
}
