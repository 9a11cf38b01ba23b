package testenv

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Port ranges. They sit below the kernel's ephemeral range (32768-60999 by default; see
// portMax), so an outgoing connection never takes a port of ours between allocation and the
// bind. Distribution ports are kept low because rabbitmqctl listens on
// DistPort+10000..DistPort+10010 for its own Erlang distribution, below portMin.
const (
	distPortMin, distPortMax = 10000, 12000
	portMin                  = 22100
)

// portMax is the top of the range ports are handed out from: just below the ephemeral range
// this machine's kernel uses, and never above 32700.
var portMax = func() int {
	top := 32700
	if low := ephemeralLow(); low > portMin+1000 && low-1 < top {
		top = low - 1
	}
	return top
}()

// ephemeralLow is the first port of the kernel's ephemeral range, or 32768 when it cannot be
// read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	if n, err := strconv.Atoi(f[0]); err == nil {
		return n
	}
	return 32768
}

// portAllocator hands out distinct free loopback ports. One allocator serves the
// whole test process (ports), so a port given to a test is never given again to a
// cluster node or to another test while it may still be waiting for its bind.
type portAllocator struct {
	mu    sync.Mutex
	taken map[int]bool
}

// ports is the process's allocator.
var ports = &portAllocator{taken: map[int]bool{}}

// reserve marks a fixed port as used.
func (a *portAllocator) reserve(p int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.taken[p] = true
}

func (a *portAllocator) dist() (int, error) { return a.pick(distPortMin, distPortMax) }
func (a *portAllocator) port() (int, error) { return a.pick(portMin, portMax) }

func (a *portAllocator) pick(lo, hi int) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if a.taken[p] || !portFree(p) || !claim(p) {
			continue
		}
		a.taken[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d", lo, hi)
}

// claimDir holds one file per port a live process picked (its pid inside). It makes picks
// distinct across processes too: `make test` boots its 3.10 and 4.0 clusters in two
// processes at once, and a port both picked before either node bound it broke a CI run.
var claimDir = filepath.Join(os.TempDir(), "amqplb-ports")

// claim records port p as picked by this process, unless a live process other than this one
// picked it. A claim of a process that has exited is stale and taken over: by then its
// port is either bound (portFree says so) or free again.
func claim(p int) bool {
	if err := os.MkdirAll(claimDir, 0o1777); err != nil {
		return true // no shared directory: in-process distinctness only, as before
	}
	defer lockClaims()()
	name := filepath.Join(claimDir, strconv.Itoa(p))
	me := strconv.Itoa(os.Getpid())
	for range 2 {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, werr := f.WriteString(me)
			cerr := f.Close()
			return werr == nil && cerr == nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return true
		}
		b, err := os.ReadFile(name)
		if err != nil {
			continue // removed meanwhile: try to create it again
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && (owner == os.Getpid() || processAlive(owner)) {
			return owner == os.Getpid()
		}
		// Stale, or half-written by a process that died writing it: take it over (under
		// lockClaims, so no other process is doing the same).
		os.Remove(name)
	}
	return false
}

// portFree reports whether nothing listens on port, on loopback or wildcard.
func portFree(p int) bool {
	for _, host := range []string{"127.0.0.1", "0.0.0.0"} {
		l, err := net.Listen("tcp4", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// FreeAddr returns a loopback address ("127.0.0.1:PORT") on which nothing listens, for a
// process or listener the test starts afterwards, or as a target that refuses connections.
// Unlike a port from net.Listen(":0"), it lies below the kernel's ephemeral range, so an
// outgoing connection cannot take it before the bind, and this process never hands it
// out twice.
func FreeAddr(t testing.TB) string {
	t.Helper()
	p, err := ports.port()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}
