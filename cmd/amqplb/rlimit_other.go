//go:build !unix

package main

import "log/slog"

// raiseFDLimit does nothing where there is no RLIMIT_NOFILE (Windows).
func raiseFDLimit(*slog.Logger, int) {}
