package testenv

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually asks again.
const PollInterval = 25 * time.Millisecond

// Eventually calls cond until it returns nil and fails t (with cond's last error) when it has
// not within the given time. It is the one way tests here wait for a state: they wait on the
// state itself (a server eligible in the API, a count at the broker), never on a sleep. The
// bound is a safety net against a hang, not an assertion about speed: keep it generous.
func Eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(within, cond); err != nil {
		t.Fatalf("after %v: %v", within, err)
	}
}

// Poll calls cond until it returns nil or within has passed, and returns cond's last error
// (nil on success). For callers that are not a test (benchmarks' setup, helpers with their
// own error handling).
func Poll(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(PollInterval)
	}
}
