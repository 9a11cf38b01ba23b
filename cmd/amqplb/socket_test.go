package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/internal/testenv"
)

// ask sends one command line to the runtime socket at path and returns the answer.
func ask(path, line string) (string, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	out, err := io.ReadAll(c)
	return string(out), err
}

// oneBackend is the smallest configuration an app runs: a tcp frontend on a free port in front
// of backend NAME's one server, never checked; a drain of 1 s and no access log.
func oneBackend(name string) *config.Config {
	cfg := config.DefaultConfig()
	cfg.Global.DrainTimeout = time.Second
	cfg.Global.AccessLog = false
	cfg.Frontends = []config.Frontend{{Name: "amqp", Bind: "127.0.0.1:0", Backend: name, Mode: "tcp"}}
	b := config.DefaultBackend()
	b.Name = name
	b.HealthCheck.Type = "none"
	s := config.DefaultServer()
	s.Name, s.Address = "rmq1", "127.0.0.1:1"
	b.Servers = []config.Server{s}
	cfg.Backends = []config.Backend{b}
	return cfg
}

// runApp runs a until the test ends, when it must stop without an error, and returns the
// channel that reloads it (SIGHUP).
func runApp(t *testing.T, a *app) chan<- os.Signal {
	t.Helper()
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, hup) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return hup
}

// The runtime socket of a running amqplb survives reloads, takes a changed level, stays when a
// reload names a path it cannot create (the whole reload is refused), and its file is removed
// at exit.
func TestRuntimeSocketLifecycle(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("UNIX socket files")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	mk := func(backendName, socket, level string) *config.Config {
		cfg := oneBackend(backendName)
		cfg.Admin = config.Admin{Socket: socket, SocketMode: "600", SocketLevel: level}
		return cfg
	}
	fdBase, gBase := openFDs(t), runtime.NumGoroutine()
	next := make(chan *config.Config, 1)
	load := func(string) (*config.Config, error) { return <-next, nil }
	var logs testenv.Buffer
	a, err := newApp(mk("rabbitmq", sock, "admin"), slog.New(slog.NewTextHandler(&logs, nil)), load)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v, %v; want mode 0600", fi, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, hup) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()
	if got, err := ask(sock, "show cli level;show backend"); err != nil || got != "admin\n\n# name\nrabbitmq\n\n" {
		t.Fatalf("show cli level;show backend = %q, %v", got, err)
	}

	// A socket path that cannot be created refuses the whole reload.
	bad := filepath.Join(dir, "missing", "admin.sock")
	next <- mk("changed", bad, "admin")
	hup <- syscall.SIGHUP
	testenv.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "reload refused") {
			return fmt.Errorf("no refused reload logged yet:\n%s", logs.String())
		}
		return nil
	})
	if got, err := ask(sock, "show backend"); err != nil || got != "# name\nrabbitmq\n\n" {
		t.Errorf("after the refused reload: %q, %v; want the running configuration", got, err)
	}

	// A new level: the socket is rebuilt on the same path.
	next <- mk("rabbitmq", sock, "user")
	hup <- syscall.SIGHUP
	testenv.Eventually(t, 10*time.Second, func() error {
		if got, err := ask(sock, "show cli level"); err != nil || got != "user\n\n" {
			return fmt.Errorf("show cli level = %q, %v; want user", got, err)
		}
		return nil
	})
	if got, _ := ask(sock, "disable server rabbitmq/rmq1"); got != "Permission denied\n\n" {
		t.Errorf("disable server on the user-level socket: %q", got)
	}

	cancel()
	stopped = true
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is left after exit: %v", err)
	}
	// Nothing of the sockets, their sessions or the reloads is left behind.
	testenv.Eventually(t, 10*time.Second, func() error {
		if fds, gs := openFDs(t), runtime.NumGoroutine(); fds > fdBase || gs > gBase {
			return fmt.Errorf("fds %d (before %d), goroutines %d (before %d)", fds, fdBase, gs, gBase)
		}
		return nil
	})
}

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		if runtime.GOOS == "linux" {
			t.Fatalf("count file descriptors: %v", err)
		}
		t.Skip("no /proc/self/fd to count file descriptors")
	}
	return len(ents)
}
