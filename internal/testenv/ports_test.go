//go:build unix

package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestClaimIsExclusiveAcrossProcesses: a port a live process claimed is not handed out here,
// one claimed by a process that has exited is taken over, and our own claim is ours.
func TestClaimIsExclusiveAcrossProcesses(t *testing.T) {
	old := claimDir
	claimDir = t.TempDir()
	t.Cleanup(func() { claimDir = old })

	if !claim(40001) {
		t.Fatal("a fresh port must be claimable")
	}
	if !claim(40001) {
		t.Fatal("a port this process claimed must stay claimable by it")
	}
	write := func(p, pid int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(claimDir, strconv.Itoa(p)), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(40002, 1) // init: alive, and not us
	if claim(40002) {
		t.Error("claimed a port a live process holds")
	}
	write(40003, 1<<22+1) // above pid_max's ceiling: no such process
	if !claim(40003) {
		t.Error("a stale claim was not taken over")
	}
	if b, _ := os.ReadFile(filepath.Join(claimDir, "40003")); string(b) != strconv.Itoa(os.Getpid()) {
		t.Errorf("claim file holds %q, want our pid", b)
	}
}
