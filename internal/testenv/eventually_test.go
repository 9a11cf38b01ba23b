package testenv_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	err := testenv.PollEvery(time.Minute, time.Millisecond, func() error {
		if calls++; calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("PollEvery = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestPollGivesUpWithTheLastError(t *testing.T) {
	calls := 0
	err := testenv.PollEvery(20*time.Millisecond, time.Millisecond, func() error {
		calls++
		return fmt.Errorf("call %d", calls)
	})
	if want := fmt.Sprintf("call %d", calls); err == nil || err.Error() != want || calls < 2 {
		t.Errorf("PollEvery = %v after %d calls, want %q", err, calls, want)
	}
	// A bound already passed still asks once.
	if err := testenv.Poll(0, func() error { return errors.New("no") }); err == nil {
		t.Error("Poll(0) with a false condition = nil")
	}
}
