package deploy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
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
	if runtime.GOOS == "windows" {
		amqplbBinary += ".exe" // os/exec runs no program without its extension there
	}
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

// startAmqplb runs amqplb on config (a TOML text) until the test ends, and returns once its
// admin listener at adminAddr answers /healthz.
func startAmqplb(t *testing.T, config, adminAddr string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "amqplb.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(amqplbBinary, "-f", path)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.Process.Signal(syscall.SIGTERM) != nil {
			cmd.Process.Kill() // Windows: no SIGTERM to send
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("amqplb's log:\n%s", log.Bytes())
		}
	})
	client := http.Client{Timeout: time.Second}
	testenv.Eventually(t, 15*time.Second, func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("amqplb exited: %v", err)
		default:
		}
		resp, err := client.Get("http://" + adminAddr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %s", resp.Status)
		}
		return nil
	})
}

// fakeServer listens on a free loopback port, accepting and holding connections until the test
// ends, and returns its address: a backend server that a tcp health check finds up.
func fakeServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String()
}
