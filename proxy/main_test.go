package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if goroutines are left behind: sessions, relays, TLS and
// PROXY-header reads must all end with their connections.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
