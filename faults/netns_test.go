//go:build linux

package faults

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netns is a network namespace the test made, joined to the host by a veth pair, with a relay
// listening inside it: the balancers reach one node through the relay, so cutting, delaying or
// dropping the namespace's link is a network fault on that node's path alone. Every address is
// the namespace's own (10.213.N.0/30) or loopback; everything is removed when the test ends.
type netns struct {
	name           string
	hostIf, nsIf   string
	hostIP, nsIP   string
	relayAddr      string // nsIP:port, where the balancers dial
	mu             sync.Mutex
	conns          []net.Conn
	ln             net.Listener
	relayed, fails int
	delay          atomic.Int64 // nanoseconds added before each chunk relayed from the node (netem's stand-in)
}

// run runs a command, returning its combined output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetns makes the namespace, the veth pair and a relay inside it to target (a node's
// 127.0.0.1 address). It skips t when ip is missing or namespaces cannot be made (no root).
func newNetns(t *testing.T, target string) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("no ip (iproute2): %v", err)
	}
	k := os.Getpid()%200 + 20
	ns := &netns{
		name:   fmt.Sprintf("amqplb-faults-%d", os.Getpid()),
		hostIf: fmt.Sprintf("fh%d", os.Getpid()),
		nsIf:   fmt.Sprintf("fn%d", os.Getpid()),
		hostIP: fmt.Sprintf("10.213.%d.1", k),
		nsIP:   fmt.Sprintf("10.213.%d.2", k),
	}
	if err := run("ip", "netns", "add", ns.name); err != nil {
		t.Skipf("cannot make a network namespace: %v", err)
	}
	t.Cleanup(func() {
		ns.close()
		_ = run("ip", "route", "del", "unreachable", fmt.Sprintf("10.213.%d.0/30", k), "metric", "4000")
		_ = run("ip", "link", "del", ns.hostIf) // gone with the namespace too, unless moved back
		if err := run("ip", "netns", "del", ns.name); err != nil {
			t.Errorf("removing the namespace: %v", err)
		}
	})
	inNS := func(args ...string) error { return run("ip", append([]string{"netns", "exec", ns.name}, args...)...) }
	for _, step := range []func() error{
		func() error { return run("ip", "link", "add", ns.hostIf, "type", "veth", "peer", "name", ns.nsIf) },
		func() error { return run("ip", "link", "set", ns.nsIf, "netns", ns.name) },
		func() error { return run("ip", "addr", "add", ns.hostIP+"/30", "dev", ns.hostIf) },
		func() error { return run("ip", "link", "set", ns.hostIf, "up") },
		func() error { return inNS("ip", "addr", "add", ns.nsIP+"/30", "dev", ns.nsIf) },
		func() error { return inNS("ip", "link", "set", ns.nsIf, "up") },
		func() error { return inNS("ip", "link", "set", "lo", "up") },
		// A backstop: should the veth's own route go, packets to the namespace's addresses stop
		// here instead of taking the default route off the machine.
		func() error {
			return run("ip", "route", "add", "unreachable", fmt.Sprintf("10.213.%d.0/30", k), "metric", "4000")
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := listenIn(ns.name, ns.nsIP+":0")
	if err != nil {
		t.Fatalf("listening in %s: %v", ns.name, err)
	}
	ns.ln, ns.relayAddr = ln, ln.Addr().String()
	go ns.serve(target)
	return ns
}

// listenIn opens a TCP listener inside the named namespace: the socket is made by a thread that
// entered the namespace, and keeps belonging to it after the thread has come back.
func listenIn(name, addr string) (net.Listener, error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the namespace: leave it locked, so that it dies with this
		// goroutine instead of serving others.
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("back from the namespace: %v", err)
	}
	runtime.UnlockOSThread()
	return ln, lerr
}

// serve relays every connection to target, each byte as it comes.
func (ns *netns) serve(target string) {
	for {
		c, err := ns.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			u, err := net.DialTimeout("tcp", target, 5*time.Second)
			ns.mu.Lock()
			if err != nil {
				ns.fails++
				ns.mu.Unlock()
				c.Close()
				return
			}
			ns.relayed++
			ns.conns = append(ns.conns, c, u)
			ns.mu.Unlock()
			var wg sync.WaitGroup
			wg.Go(func() {
				_, _ = io.Copy(u, c)
				_ = u.(*net.TCPConn).CloseWrite()
			})
			ns.copyDelayed(c, u)
			_ = c.(*net.TCPConn).CloseWrite()
			wg.Wait()
			c.Close()
			u.Close()
		}()
	}
}

// copyDelayed copies from src to dst, holding each chunk for the current delay first: a delay
// line for ping-pong traffic such as an AMQP handshake.
func (ns *netns) copyDelayed(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(ns.delay.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close stops the relay and closes what it holds.
func (ns *netns) close() {
	if ns.ln != nil {
		ns.ln.Close()
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, c := range ns.conns {
		c.Close()
	}
	ns.conns = nil
}

// exec runs a command inside the namespace.
func (ns *netns) exec(args ...string) error {
	return run("ip", append([]string{"netns", "exec", ns.name}, args...)...)
}
