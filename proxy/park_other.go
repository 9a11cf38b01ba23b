//go:build !linux

package proxy

// newPoller returns no poller: idle sessions keep their goroutines off Linux.
func newPoller() (poller, error) { return nil, nil }
