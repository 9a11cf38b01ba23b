//go:build unix

package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/internal/testenv"
)

// raiseFDLimit lifts RLIMIT_NOFILE to what max_connections needs where it may (root with
// CAP_SYS_RESOURCE passes the hard limit), and says so; where it may not, it warns.
func TestRaiseFDLimit(t *testing.T) {
	var before unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &before); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &before) })
	var logs bytes.Buffer
	maxConn := int(before.Cur) // needs about twice the current limit
	raiseFDLimit(slog.New(slog.NewTextHandler(&logs, nil)), maxConn)
	var after unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &after); err != nil {
		t.Fatal(err)
	}
	need := 2*uint64(maxConn) + fdMargin
	switch {
	case after.Cur < before.Cur:
		t.Errorf("the limit went down: %d -> %d", before.Cur, after.Cur)
	case after.Cur >= need && !strings.Contains(logs.String(), `msg="file descriptor limit" nofile=`):
		t.Errorf("raised to %d (need %d), but logged:\n%s", after.Cur, need, logs.String())
	case after.Cur < need && !strings.Contains(logs.String(), "below what max_connections needs"):
		t.Errorf("limit %d below the %d needed, and no warning:\n%s", after.Cur, need, logs.String())
	}
}

// A reload that changes max_connections sizes the file descriptor limit for it again, as the
// start did; one that keeps it says nothing.
func TestReloadRaisesFDLimit(t *testing.T) {
	var before unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &before); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &before) })
	mk := func(maxConn int) *config.Config {
		cfg := oneBackend("rabbitmq")
		cfg.Global.MaxConnections = maxConn
		return cfg
	}
	next := make(chan *config.Config, 1)
	var logs testenv.Buffer
	a, err := newApp(mk(100), slog.New(slog.NewTextHandler(&logs, nil)), func(string) (*config.Config, error) { return <-next, nil })
	if err != nil {
		t.Fatal(err)
	}
	hup := runApp(t, a)
	sized := func() int {
		return strings.Count(logs.String(), "max_connections needs") + strings.Count(logs.String(), `msg="file descriptor limit"`)
	}
	reload := func(maxConn, wantSized int) {
		t.Helper()
		reloads := strings.Count(logs.String(), "reloaded")
		next <- mk(maxConn)
		hup <- syscall.SIGHUP
		testenv.Eventually(t, 10*time.Second, func() error {
			if strings.Count(logs.String(), "reloaded") == reloads {
				return fmt.Errorf("no reload logged yet:\n%s", logs.String())
			}
			return nil
		})
		if got := sized(); got != wantSized {
			t.Errorf("after the reload to max_connections = %d: the limit sized %d times, want %d:\n%s", maxConn, got, wantSized, logs.String())
		}
	}
	reload(100, 0)
	reload(int(before.Cur), 1) // needs about twice the current limit: raised or warned about
	if !strings.Contains(logs.String(), fmt.Sprintf("needed=%d", 2*int(before.Cur)+fdMargin)) {
		t.Errorf("the new need is not in the logs:\n%s", logs.String())
	}
}
