//go:build unix

package main

import (
	"log/slog"

	"golang.org/x/sys/unix"
)

// fdMargin is what raiseFDLimit adds to two sockets per connection: listeners, health checks,
// log files, the admin listener's clients.
const fdMargin = 256

// raiseFDLimit makes RLIMIT_NOFILE large enough for maxConn sessions (two sockets each, plus
// fdMargin), as HAProxy sizes its own from maxconn: past the hard limit when allowed (root),
// else up to it (the Go runtime already raises the soft limit to the hard one). It logs what it
// got, and warns when that falls short: the accept loop would meet EMFILE before max_connections.
func raiseFDLimit(log *slog.Logger, maxConn int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("cannot read the file descriptor limit", "err", err)
		return
	}
	var need uint64
	if maxConn > 0 {
		need = 2*uint64(maxConn) + fdMargin
	}
	if need > lim.Cur {
		want := unix.Rlimit{Cur: need, Max: max(lim.Max, need)}
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &want) != nil && lim.Cur < lim.Max {
			want = unix.Rlimit{Cur: lim.Max, Max: lim.Max}
			_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &want)
		}
		_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < need {
		log.Warn("the file descriptor limit is below what max_connections needs; accepting fails (EMFILE) before it is reached",
			"nofile", lim.Cur, "needed", need, "max_connections", maxConn)
		return
	}
	log.Info("file descriptor limit", "nofile", lim.Cur, "needed", need)
}
