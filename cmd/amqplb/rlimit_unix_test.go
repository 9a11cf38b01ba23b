//go:build unix

package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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
