package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// sink reads everything until EOF, then answers one byte so the writer knows all bytes arrived.
func sink(c net.Conn) {
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	_, _ = c.Write([]byte{1})
}

// BenchmarkThroughput compares bytes/s written straight to a loopback sink with the same
// through a tcp-mode frontend, through a plain io.Copy proxy and through HAProxy (Debian's
// haproxy, with splice-auto, when it is installed), for large and for 128-byte writes (AMQP's
// small frames).
// Compare the direct and amqplb figures of one run; absolute numbers depend on the machine.
func BenchmarkThroughput(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"large", 256 << 10}, {"128B", 128}} {
		for _, via := range []string{"direct", "amqplb", "iocopy", "haproxy"} {
			b.Run(size.name+"/"+via, func(b *testing.B) {
				fb := testenv.StartFakeBroker(b, sink)
				addr := fb.Addr()
				switch via {
				case "amqplb":
					fx := start(b, FrontendOptions{Mode: ModeTCP}, Route{}, addr)
					addr = fx.f.Addr().String()
				case "iocopy":
					var stop func()
					addr, stop = ioCopyProxy(b, addr)
					defer stop()
				case "haproxy":
					addr = startHAProxy(b, addr)
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				buf := make([]byte, size.n)
				b.SetBytes(int64(size.n))
				b.ResetTimer()
				for b.Loop() {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				_ = c.(*net.TCPConn).CloseWrite()
				if _, err := io.ReadFull(c, buf[:1]); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkIdleConnection opens 1,000 connections through a proxy to an echo server, moves a
// 64 KiB message each way on every one (so the splice path has been used), leaves them idle and
// reports what an idle connection costs the proxy, once amqplb has parked them all (park.go):
// fds and pipe fds (the client's and the echo
// server's own sockets are not counted) and memory, as the growth of heap and stacks minus that of
// the same 1,000 connections made directly to the echo server in the same round. amqplb is
// compared with a plain io.Copy proxy.
func BenchmarkIdleConnection(b *testing.B) {
	const conns = 1000
	type cost struct{ fds, pipes, mem float64 }
	measure := func(via string) cost {
		fb := testenv.StartFakeBroker(b, testenv.Echo)
		addr, stop, settled := fb.Addr(), func() {}, func() bool { return true }
		switch via {
		case "amqplb":
			fx := start(b, FrontendOptions{Mode: ModeTCP}, Route{}, fb.Addr())
			addr, stop = fx.f.Addr().String(), func() { _ = fx.f.Shutdown(context.Background()) }
			if runtime.GOOS == "linux" {
				settled = func() bool { return fx.f.Stats().Parked == conns }
			}
		case "iocopy":
			addr, stop = ioCopyProxy(b, fb.Addr())
		}
		runtime.GC()
		fdBefore, pipesBefore := countFDs(b)
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		msg := make([]byte, 64<<10)
		var open []net.Conn
		for range conns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			open = append(open, c)
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, msg); err != nil {
				b.Fatal(err)
			}
		}
		// Settle: every session parked (amqplb, on Linux), then collect until the open fds stay
		// the same three asks running (pipes the splice pool lets go are closed by cleanups,
		// which run after a GC).
		_ = testenv.PollEvery(10*time.Second, 10*time.Millisecond, func() error {
			if !settled() {
				return errors.New("sessions still running")
			}
			return nil
		})
		last, same := -1, 0
		_ = testenv.PollEvery(5*time.Second, 10*time.Millisecond, func() error {
			runtime.GC()
			if n, _ := countFDs(b); n == last {
				same++
			} else {
				last, same = n, 0
			}
			if same < 2 {
				return errors.New("fds still changing")
			}
			return nil
		})
		fdAfter, pipesAfter := countFDs(b)
		runtime.ReadMemStats(&ms1)
		c := cost{
			fds:   float64(fdAfter-fdBefore-2*conns) / conns,
			pipes: float64(pipesAfter-pipesBefore) / conns,
			mem:   float64(int64(ms1.HeapInuse+ms1.StackInuse)-int64(ms0.HeapInuse+ms0.StackInuse)) / conns,
		}
		for _, c := range open {
			c.Close()
		}
		stop()
		fb.Close()
		// Let every socket of this round close before the next one measures.
		_ = testenv.PollEvery(10*time.Second, 10*time.Millisecond, func() error {
			if n, _ := countFDs(b); n > fdBefore {
				return fmt.Errorf("%d fds open, %d before the round", n, fdBefore)
			}
			return nil
		})
		return c
	}
	for b.Loop() {
		direct := measure("direct")
		for _, via := range []string{"amqplb", "iocopy"} {
			c := measure(via)
			b.ReportMetric(c.fds, via+"-fds/conn")
			b.ReportMetric(c.pipes, via+"-pipe-fds/conn")
			b.ReportMetric(c.mem-direct.mem, via+"-bytes/conn")
		}
	}
}

// ioCopyProxy is the textbook proxy amqplb's relay replaces: io.Copy each way.
func ioCopyProxy(b *testing.B, target string) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			all = append(all, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, s); c.(*net.TCPConn).CloseWrite() }()
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for _, c := range all {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// startHAProxy runs HAProxy in TCP mode, at its best for this (splice-auto), in front of target
// and stops it when b ends. Without haproxy installed the benchmark is skipped.
func startHAProxy(b *testing.B, target string) string {
	return startHAProxyBind(b, target, "")
}

// startHAProxyBind is startHAProxy with bindOpts appended to the bind line ("ssl crt FILE" to
// terminate TLS).
func startHAProxyBind(b *testing.B, target, bindOpts string) string {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		b.Skip("haproxy is not installed (make deps installs it)")
	}
	addr := testenv.FreeAddr(b)
	cfg := fmt.Sprintf(`global
	maxconn 4000
defaults
	mode tcp
	timeout connect 5s
	timeout client 1m
	timeout server 1m
	option splice-auto
listen bench
	bind %s %s
	server sink %s
`, addr, bindOpts, target)
	path := filepath.Join(b.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := testenv.PollEvery(5*time.Second, 10*time.Millisecond, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		b.Fatalf("haproxy did not start listening: %v", err)
	}
	return addr
}

// BenchmarkHandshakeStorm is one connection of a connection storm per op: connect through an
// amqp-mode frontend to a fake broker that completes the handshake for real, run the AMQP
// handshake up to Open-Ok, close. The fake broker and the client run in the same process, so
// allocs/op and the CPU profile include theirs: profile with -memprofile/-cpuprofile and read
// the proxy package's share (make gobench prints the figures; bench/results has runs).
func BenchmarkHandshakeStorm(b *testing.B) {
	fb := echoBroker(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fx := start(b, FrontendOptions{Mode: ModeAMQP, Logger: quiet}, Route{}, fb.Addr())
	addr := fx.addr()
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := clientHandshake(c); err != nil {
				b.Error(err)
			}
			c.Close()
		}
	})
}
