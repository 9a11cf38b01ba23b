package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
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
		if a.taken[p] || !portFree(p) {
			continue
		}
		a.taken[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d", lo, hi)
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
