package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// keeperEnv names the environment variable that turns a binary importing this
// package into a keeper: its value is a JSON keeperSpec. The keeper runs one
// long-lived process (a broker node or epmd) as its child, in a process group of
// its own, and reaps it and every orphan it leaves, then exits. It is what lets a
// node outlive the `rabbitcluster up` command or the test that started it
// without leaving zombies behind.
const keeperEnv = "AMQPLB_TESTENV_KEEPER"

// keeperSpec tells a keeper what to run.
type keeperSpec struct {
	Argv    []string `json:"argv"`
	Dir     string   `json:"dir"`
	UID     int      `json:"uid"` // -1: run as the keeper's own user
	GID     int      `json:"gid"`
	Log     string   `json:"log"`      // the child's stdout and stderr (appended)
	PGIDOut string   `json:"pgid_out"` // where the keeper writes the child's pid (= its process group)
	SelfOut string   `json:"self_out"` // where the keeper writes its own pid
	// NewMountNS starts the child in a mount namespace of its own (a node in a root).
	NewMountNS bool `json:"new_mount_ns,omitempty"`
	// NetNS starts the keeper, and so the child, in that network namespace (/run/netns/NAME).
	NetNS string `json:"netns,omitempty"`
}

func withoutVar(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// readPIDFile reads a pid written by a keeper.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, b)
	}
	return pid, nil
}

// writeFileAtomic replaces path with b, never leaving it half written.
func writeFileAtomic(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
