package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// startSink serves a bulk sink on a free loopback port for the test.
func startSink(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ServeSink(ln))
	return ln.Addr().String()
}

// startForwarder is a loopback pass-through proxy to upstream: each direction is copied until
// EOF, then half-closed, as a layer-4 proxy does. alter, if set, wraps the client-to-upstream
// reader (to lose or change bytes).
func startForwarder(t *testing.T, upstream string, alter func(io.Reader) io.Reader) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			var r io.Reader = c
			if alter != nil {
				r = alter(c)
			}
			pipe := func(dst net.Conn, src io.Reader) {
				_, _ = io.Copy(dst, src)
				_ = dst.(*net.TCPConn).CloseWrite()
			}
			wg.Go(func() { pipe(u, r) })
			wg.Go(func() { pipe(c, u) })
		}
	})
	return ln.Addr().String()
}

func TestBulkThroughForwarder(t *testing.T) {
	checkLeaks(t)
	sink := startSink(t)
	for name, addr := range map[string]string{"direct": sink, "forwarder": startForwarder(t, sink, nil)} {
		t.Run(name, func(t *testing.T) {
			b := Bulk{Counts: []int{1, 3}, Duration: 300 * time.Millisecond, Sink: sink, Size: 32 << 10}
			var progress bytes.Buffer
			figs, err := b.Run(context.Background(), Target{Name: name, Addr: addr}, &progress)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", progress.String())
			var names []string
			for _, f := range figs {
				names = append(names, f.Name)
				if f.Value <= 0 {
					t.Errorf("%s = %v, want > 0", f.Name, f.Value)
				}
			}
			want := []string{"gbps_total_1", "gbps_stream_1", "bytes_verified_1", "gbps_total_3", "gbps_stream_3", "bytes_verified_3"}
			if !slices.Equal(names, want) {
				t.Errorf("figures %v, want %v", names, want)
			}
			// Three streams carry at least what one would over a third of the time.
			v1, _ := figs.Get("bytes_verified_1")
			v3, _ := figs.Get("bytes_verified_3")
			if v1 < 32<<10 || v3 < 32<<10 {
				t.Errorf("verified %v and %v octets", v1, v3)
			}
		})
	}
}

// dropOnce loses n octets of a stream after the first from octets.
type dropOnce struct {
	r       io.Reader
	from, n int64
	seen    int64
}

func (d *dropOnce) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if d.n > 0 && d.seen+int64(n) > d.from {
		at := max(d.from-d.seen, 0)
		k := min(int64(n)-at, d.n)
		copy(p[at:], p[at+k:n])
		n -= int(k)
		d.n -= k
	}
	d.seen += int64(n)
	return n, err
}

func TestBulkDetectsLostBytes(t *testing.T) {
	sink := startSink(t)
	lossy := startForwarder(t, sink, func(r io.Reader) io.Reader { return &dropOnce{r: r, from: 100 << 10, n: 4096} })
	b := Bulk{Streams: 1, Duration: 200 * time.Millisecond, Sink: sink}
	_, err := b.Run(context.Background(), Target{Name: "lossy", Addr: lossy}, io.Discard)
	var ue *UnreachableError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("Run = %v, want a verification failure", err)
	}
}

func TestBulkUnreachable(t *testing.T) {
	sink := startSink(t)
	gone := testenv.FreeAddr(t)
	_, err := Bulk{Duration: 100 * time.Millisecond, Sink: sink}.Run(context.Background(), Target{Name: "gone", Addr: gone}, io.Discard)
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Target.Addr != gone {
		t.Fatalf("Run = %v, want an UnreachableError", err)
	}
	// A sink that is not running is the harness's fault, not the target's.
	_, err = Bulk{Duration: 100 * time.Millisecond, Sink: gone}.Run(context.Background(), Target{Name: "sink", Addr: sink}, io.Discard)
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "StartSink") {
		t.Fatalf("Run with no sink = %v, want a sink error", err)
	}
}

// TestBulkTargetNotForwarding: a target that accepts and hangs up (a proxy with no backend)
// fails the round, it does not report zeros.
func TestBulkTargetNotForwarding(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	_, err = Bulk{Duration: 200 * time.Millisecond}.Run(context.Background(), Target{Name: "hangup", Addr: ln.Addr().String()}, io.Discard)
	if err == nil {
		t.Fatal("no error from a target that hangs up")
	}
	t.Log(err)
}

func TestBulkCancel(t *testing.T) {
	sink := startSink(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Bulk{Streams: 2, Duration: time.Minute}.Run(ctx, Target{Name: "s", Addr: sink}, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v, want the context's error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled run took %v", d)
	}
}

func TestBulkChunkVerifier(t *testing.T) {
	const size = 100
	stream := func(chunks int, mutate func(seq uint64, chunk []byte) []byte) []byte {
		var out []byte
		for i := range uint64(chunks) {
			c := make([]byte, size)
			binary.BigEndian.PutUint64(c, i)
			if mutate != nil {
				c = mutate(i, c)
			}
			out = append(out, c...)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		bad     uint64
		partial uint64
	}{
		{"intact", stream(50, nil), 0, 0},
		{"chunk lost", stream(50, func(i uint64, c []byte) []byte {
			if i == 10 {
				return nil
			}
			return c
		}), 39, 0},
		{"octets lost", stream(50, func(i uint64, c []byte) []byte {
			if i == 10 {
				return c[:60]
			}
			return c
		}), 39, 1},
		{"stamp changed", stream(50, func(i uint64, c []byte) []byte {
			if i == 7 {
				c[3] ^= 1
			}
			return c
		}), 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			for range 20 {
				v := chunkVerifier{size: size}
				for p := tc.data; len(p) > 0; {
					k := min(1+rng.IntN(3*size), len(p))
					v.feed(p[:k])
					p = p[k:]
				}
				if v.total != int64(len(tc.data)) || v.bad != tc.bad || v.partial() != tc.partial {
					t.Fatalf("total %d bad %d partial %d; want %d %d %d", v.total, v.bad, v.partial(), len(tc.data), tc.bad, tc.partial)
				}
			}
		})
	}
}

func TestBulkStreamCounts(t *testing.T) {
	for n, want := range map[int][]int{0: {1}, 1: {1}, 2: {1, 2}, 4: {1, 2, 4}, 6: {1, 2, 4, 6}, 8: {1, 2, 4, 8}} {
		if got := StreamCounts(n); !slices.Equal(got, want) {
			t.Errorf("StreamCounts(%d) = %v, want %v", n, got, want)
		}
	}
}

// TestBulkSinkIgnoresStrangers: a connection that does not speak the bulk header (a TCP health
// check) is closed without an answer, and the sink keeps serving.
func TestBulkSinkIgnoresStrangers(t *testing.T) {
	sink := startSink(t)
	c, err := net.Dial("tcp", sink)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 16)); n != 0 || err == nil {
		t.Errorf("sink answered a stranger: %d octets, %v", n, err)
	}
	c.Close()
	if _, err := (Bulk{Duration: 50 * time.Millisecond}).Run(context.Background(), Target{Name: "s", Addr: sink}, io.Discard); err != nil {
		t.Fatal(err)
	}
}

// With the target's process given, a bulk round reports that process's CPU per GB moved. Here
// the forwarder runs in the test's own process, which also writes and sinks every byte.
func TestBulkCPUPerGB(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat")
	}
	sink := startSink(t)
	b := Bulk{Counts: []int{1}, Duration: 300 * time.Millisecond, Sink: sink, PIDs: map[string]int{"forwarder": os.Getpid()}}
	figs, err := b.Run(context.Background(), Target{Name: "forwarder", Addr: startForwarder(t, sink, nil)}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := figs.Get("cpu_ms_per_gb_1"); !ok || v <= 0 {
		t.Fatalf("cpu_ms_per_gb_1 = %v (%v) in %v", v, ok, figs)
	}
	// Another target's figures have no CPU: its process is not known.
	figs, err = b.Run(context.Background(), Target{Name: "direct", Addr: sink}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := figs.Get("cpu_ms_per_gb_1"); ok {
		t.Errorf("direct has a CPU figure: %v", figs)
	}
}

func TestProcessCPUGrows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat")
	}
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged at least one more tick (bounded: 10 s).
	x := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		for i := range 1 << 20 {
			x += i
		}
		if now, _ := processCPU(os.Getpid()); now > before {
			return
		}
	}
	t.Fatalf("no CPU time charged in 10 s of spinning (%d)", x)
}
