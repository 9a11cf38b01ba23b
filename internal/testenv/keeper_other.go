//go:build !linux

package testenv

import (
	"errors"
	"os"
	"time"
)

// errLinuxOnly fails what runs real RabbitMQ nodes off Linux: the keepers that reap them need
// Linux's child subreaper and /proc. Unit tests with fake brokers run anywhere.
var errLinuxOnly = errors.New("testenv: real RabbitMQ test nodes run on Linux only")

func spawnKept(spec keeperSpec, env []string, keeperLog string) (int, *os.Process, error) {
	return 0, nil, errLinuxOnly
}

func waitKeeperGone(string, *os.Process, time.Duration) error { return nil }

func groupAlive(int) bool { return false }

func procState(int) byte { return 0 }
