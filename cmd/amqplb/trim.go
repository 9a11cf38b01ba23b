package main

import (
	"runtime/debug"
	"time"
)

// trimEvery is how often the app looks at its parked sessions to decide whether to trim.
const trimEvery = 5 * time.Second

// trimAfterParked is how many more parked sessions than at the last trim make the next one due.
const trimAfterParked = 1000

// trimmer decides when to hand free memory back to the OS. A storm of connections (every client
// of a restarted node reconnecting) leaves the heap sized for the storm's handshakes and relay
// goroutines; once those sessions are parked the process needs a fraction of it, but the Go
// runtime keeps what it freed for up to the next garbage collection's goal, and an idle process
// does not collect. So when a thousand or more sessions have been parked since the last trim
// and the number has stopped moving (the storm is over), the app collects and releases the
// free memory once (debug.FreeOSMemory), as HAProxy trims its pools after a burst.
type trimmer struct {
	base int // parked sessions after the last trim (or the lowest count since)
	prev int // parked sessions at the previous look
}

// due reports whether to trim now, given the parked sessions across frontends.
func (t *trimmer) due(parked int) bool {
	calm := parked-t.prev <= parked/100 && t.prev-parked <= parked/100
	t.prev = parked
	t.base = min(t.base, parked)
	if parked-t.base >= trimAfterParked && calm {
		t.base = parked
		return true
	}
	return false
}

// trimMemory collects garbage and returns free memory to the OS if the trimmer says so.
func (a *app) trimMemory() {
	parked := 0
	for _, f := range a.frontendStats() {
		parked += f.Parked
	}
	if a.trim.due(parked) {
		// Not on run's goroutine: a reload or a stop signal does not wait for the collection.
		go debug.FreeOSMemory()
		a.log.Debug("returning free memory to the OS after sessions were parked", "parked", parked)
	}
}
