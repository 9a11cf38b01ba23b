package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// amqplbBinary is the amqplb executable the tests run, built once in TestMain.
var amqplbBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "amqplb-deploy")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	amqplbBinary = filepath.Join(dir, "amqplb")
	build := exec.Command("go", "build", "-o", amqplbBinary, "../cmd/amqplb")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building amqplb:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// checkConfig runs `amqplb -c -f` on text (written to a file named name) with env added, and
// fails t with amqplb's messages when it does not accept it.
func checkConfig(t *testing.T, name, text string, env ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(amqplbBinary, "-c", "-f", path)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("amqplb -c -f %s: %v\n%s", name, err, out)
	}
}
