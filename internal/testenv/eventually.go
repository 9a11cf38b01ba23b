package testenv

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually and Poll ask again.
const PollInterval = 25 * time.Millisecond

// Eventually calls cond until it returns nil and fails t (with cond's last error) when it has
// not within the given time. It is the one way tests here wait for a state: they wait on the
// state itself (a server eligible in the API, a count at the broker), never on a sleep. The
// bound is a safety net against a hang, not an assertion about speed: keep it generous.
func Eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	EventuallyEvery(t, within, PollInterval, cond)
}

// EventuallyEvery is Eventually asking every interval, for a state that is costly to ask for
// (a scrape of every broker) or that cannot change faster.
func EventuallyEvery(t testing.TB, within, every time.Duration, cond func() error) {
	t.Helper()
	if err := PollEvery(within, every, cond); err != nil {
		t.Fatalf("after %v: %v", within, err)
	}
}

// Poll calls cond until it returns nil or within has passed, and returns cond's last error
// (nil on success). For callers that are not a test (benchmarks' setup, helpers with their
// own error handling) and for waits whose outcome the caller asserts itself.
func Poll(within time.Duration, cond func() error) error {
	return PollEvery(within, PollInterval, cond)
}

// PollEvery is Poll asking every interval.
func PollEvery(within, every time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(every)
	}
}
