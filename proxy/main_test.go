package proxy

import (
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if goroutines are left behind: sessions, relays, TLS and
// PROXY-header reads must all end with their connections. AMQPLB_TEST_PARK_AFTER (a duration)
// parks sessions that idle that long instead of DefaultParkAfter: with a millisecond, every test
// runs its sessions through parking and unparking (make test does one such run).
func TestMain(m *testing.M) {
	if v := os.Getenv("AMQPLB_TEST_PARK_AFTER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic("AMQPLB_TEST_PARK_AFTER: " + err.Error())
		}
		parkAfterDefault = d
	}
	goleak.VerifyTestMain(m)
}
