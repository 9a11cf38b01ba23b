package proxy

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

var parkHeapProfile = flag.String("parkheap.profile", "", "BenchmarkParkedSessionHeap: write the heap profile of the parked sessions to this file")

// BenchmarkParkedSessionHeap opens 2,000 AMQP connections through an amqp-mode frontend to a
// fake broker, waits until every session is parked and reports the live heap amqplb holds per
// parked session (live-B/session, objects allocated by the proxy's and net's code, read from
// the heap profile with every allocation sampled; the client's and the fake broker's are left
// out) and how many of those objects (objects/session). It does not see the runtime's poll
// descriptors, which are off the heap: a parked session holds none (park_linux.go). Run with
// -parkheap.profile FILE to write the heap profile at that moment (pprof -sample_index=inuse_space
// for the sites).
func BenchmarkParkedSessionHeap(b *testing.B) {
	const n = 2000
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = rate }()
	fb := echoBroker(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fx := start(b, FrontendOptions{Mode: ModeAMQP, Logger: quiet}, Route{}, fb.Addr())
	for b.Loop() {
		open := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", fx.addr())
			if err != nil {
				b.Fatal(err)
			}
			open = append(open, c)
			if _, err := clientHandshake(c); err != nil {
				b.Fatal(err)
			}
		}
		if err := testenv.PollEvery(30*time.Second, 10*time.Millisecond, func() error {
			if p := fx.f.Stats().Parked; p != n {
				return errors.New("not every session is parked yet")
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.GC() // the profile's in-use figures are as of the last completed cycle
		bytes, objects := proxyHeap()
		if *parkHeapProfile != "" {
			f, err := os.Create(*parkHeapProfile)
			if err != nil {
				b.Fatal(err)
			}
			err = pprof.Lookup("heap").WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(bytes)/n, "live-B/session")
		b.ReportMetric(float64(objects)/n, "objects/session")
		for _, c := range open {
			c.Close()
		}
		if err := testenv.PollEvery(30*time.Second, 10*time.Millisecond, func() error {
			if a := fx.f.Stats().Active; a != 0 {
				return errors.New("sessions still open")
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// proxyHeap sums the in-use heap of the allocations made under the proxy's code (its frames
// in the stack) and not under the test's client or fake broker.
func proxyHeap() (bytes, objects int64) {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	for _, r := range recs {
		ours := false
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			switch {
			case strings.Contains(f.Function, "testenv.") || strings.Contains(f.Function, "clientHandshake") ||
				strings.Contains(f.Function, "BenchmarkParkedSessionHeap"):
				ours, more = false, false
			case strings.Contains(f.Function, "amqplb/proxy."):
				ours = true
			}
			if !more {
				break
			}
		}
		if ours {
			bytes += r.InUseBytes()
			objects += r.InUseObjects()
		}
	}
	return bytes, objects
}
