package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
	"go.uber.org/goleak"
)

func TestAssign(t *testing.T) {
	for _, tt := range []struct {
		slots, addrs, want []string
	}{
		{[]string{"", "", ""}, []string{"a", "b"}, []string{"a", "b", ""}},
		{[]string{"a", "b", ""}, []string{"b", "a"}, []string{"a", "b", ""}},           // order does not move a slot
		{[]string{"a", "b", "c"}, []string{"c", "d"}, []string{"d", "", "c"}},          // gone emptied, new fills the lowest
		{[]string{"a", ""}, []string{"b", "c", "a"}, []string{"a", "b"}},               // beyond the slots left out
		{[]string{"a", "b"}, nil, []string{"", ""}},                                    // no address: all empty
		{[]string{"", "", ""}, []string{"a", "a", "b"}, []string{"a", "b", ""}},        // duplicates once
		{[]string{"", "x", ""}, []string{"y", "x", "z", "w"}, []string{"y", "x", "z"}}, // a kept slot in the middle
	} {
		if got := Assign(tt.slots, tt.addrs); !slices.Equal(got, tt.want) {
			t.Errorf("Assign(%q, %q) = %q, want %q", tt.slots, tt.addrs, got, tt.want)
		}
	}
}

// fake is a LookupFunc whose answer the test sets.
type fake struct {
	mu    sync.Mutex
	ips   []netip.Addr
	err   error
	calls int
}

func (f *fake) set(err error, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ips, f.err = nil, err
	for _, s := range ips {
		f.ips = append(f.ips, netip.MustParseAddr(s))
	}
}

func (f *fake) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if host != "rabbitmq" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return slices.Clone(f.ips), f.err
}

func TestTemplate(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := &fake{}
	f.set(nil, "10.0.0.1", "10.0.0.2")
	var mu sync.Mutex
	calls := 0
	tp, err := New(Options{Name: "b/rabbit", Address: "rabbitmq:5672", Count: 2, Interval: 10 * time.Millisecond, Timeout: time.Second,
		Lookup: f.lookup, OnResolve: func() { mu.Lock(); calls++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := tp.Slots(); !slices.Equal(got, []string{"10.0.0.1:5672", "10.0.0.2:5672"}) {
		t.Fatalf("slots = %q", got)
	}
	tp.Start()
	defer tp.Stop()
	wait := func(want ...string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, func() error {
			if got := tp.Slots(); !slices.Equal(got, want) {
				return fmt.Errorf("slots = %q, want %q", got, want)
			}
			return nil
		})
	}
	f.set(nil, "10.0.0.3", "10.0.0.2") // 10.0.0.2 keeps slot 2
	wait("10.0.0.3:5672", "10.0.0.2:5672")
	f.set(errors.New("timeout")) // a failure keeps the slots
	testenv.Eventually(t, 5*time.Second, func() error {
		if tp.Err() == nil {
			return errors.New("no error yet")
		}
		return nil
	})
	if got := tp.Slots(); !slices.Equal(got, []string{"10.0.0.3:5672", "10.0.0.2:5672"}) {
		t.Fatalf("after a failure: slots = %q", got)
	}
	f.set(nil) // no address: every slot empties
	wait("", "")
	f.set(nil, "::ffff:10.0.0.9", "fe80::1%eth0")
	wait("10.0.0.9:5672", "[fe80::1]:5672")
	mu.Lock()
	defer mu.Unlock()
	if calls < 4 {
		t.Errorf("OnResolve called %d times", calls)
	}
}

// An unknown name empties the slots; an IP address is its own single server, never looked up;
// Initial slots are kept until a resolution.
func TestTemplateNotFoundAndIP(t *testing.T) {
	f := &fake{}
	tp, _ := New(Options{Address: "gone:5672", Count: 2, Interval: time.Hour, Timeout: time.Second, Lookup: f.lookup, Initial: []string{"10.0.0.1:5672"}})
	if got := tp.Slots(); !slices.Equal(got, []string{"10.0.0.1:5672", ""}) {
		t.Fatalf("initial slots = %q", got)
	}
	if err := tp.Resolve(context.Background()); err != nil || !slices.Equal(tp.Slots(), []string{"", ""}) {
		t.Fatalf("NXDOMAIN: %v, slots %q", err, tp.Slots())
	}
	tp, _ = New(Options{Address: "127.0.0.1:5672", Count: 3, Interval: time.Hour, Timeout: time.Second, Lookup: f.lookup})
	if err := tp.Resolve(context.Background()); err != nil || !slices.Equal(tp.Slots(), []string{"127.0.0.1:5672", "", ""}) || f.calls != 1 {
		t.Fatalf("IP: %v, slots %q, lookups %d", err, tp.Slots(), f.calls)
	}
	if _, err := New(Options{Address: "noport", Count: 1, Interval: time.Second, Timeout: time.Second}); err == nil {
		t.Error("New accepts an address without a port")
	}
}

// NewLookup with a nameserver asks it (the test's DNS server), not the system's resolver.
func TestNewLookupNameserver(t *testing.T) {
	d := testenv.StartDNS(t)
	d.Set("rabbitmq.amqplb.test", netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"))
	lookup := NewLookup([]string{"127.0.0.1:1", d.Addr()}) // the first one refuses: the second answers
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := lookup(ctx, "rabbitmq.amqplb.test.")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	if !slices.Equal(ips, []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}) {
		t.Fatalf("ips = %v", ips)
	}
	_, err = lookup(ctx, "missing.amqplb.test.")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("missing name: %v", err)
	}
}
