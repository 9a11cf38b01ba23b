package testenv

import (
	"net"
	"strconv"
	"testing"
)

// FreeAddr must give distinct loopback addresses below the ephemeral range, each free to bind:
// a port from the ephemeral range can be taken by any outgoing connection before a child
// process binds it (CI once failed on exactly that).
func TestFreeAddrDistinctBindableAndNotEphemeral(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		a := FreeAddr(t)
		if seen[a] {
			t.Fatalf("FreeAddr gave %s twice", a)
		}
		seen[a] = true
		host, port, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("FreeAddr = %q, want 127.0.0.1:PORT", a)
		}
		if p, _ := strconv.Atoi(port); p >= ephemeralLow() {
			t.Fatalf("FreeAddr = %s: port in the kernel's ephemeral range", a)
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("FreeAddr gave %s, which cannot be bound: %v", a, err)
		}
		ln.Close()
	}
}
