//go:build linux

// TestMakeRunAsNewcomer is Linux only: make run boots real RabbitMQ nodes (Linux only, see
// internal/testenv), and the test signals make's process group (Setpgid, syscall.Kill).

package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// TestMakeRunAsNewcomer runs `make run` the way a newcomer does on a Debian machine, as root, in
// the two situations that broke it: the checkout is inside a private (mode 700) directory, like a
// clone in /root, which the brokers' user cannot enter; and something already listens on 5672, as
// Debian's own rabbitmq-server does once installed. make run must say what holds the port, pick
// free ones and print them, boot its cluster, and serve AMQP there; Ctrl-C must stop everything.
// It boots a cluster (about a minute), so it runs only with AMQPLB_RUN_TEST=1 (make run-test).
func TestMakeRunAsNewcomer(t *testing.T) {
	if os.Getenv("AMQPLB_RUN_TEST") != "1" {
		t.Skip("AMQPLB_RUN_TEST=1 runs make run, which boots a RabbitMQ cluster (make run-test)")
	}
	if os.Geteuid() != 0 {
		t.Skip("make run as root is the case tested (the nodes then run as user rabbitmq)")
	}

	// The checkout: this tree's files (tracked and new, as a clone would have them with these
	// changes) inside a mode-700 directory.
	private, err := os.MkdirTemp("", "amqplb-private")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(private) })
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(private, "amqplb")
	files, err := exec.Command("git", "-C", "..", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		st, err := os.Lstat(filepath.Join("..", f))
		if err != nil {
			continue // deleted in the work tree
		}
		b, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(clone, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(clone, f), b, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}

	// Something on 5672. When another program already has it, that is the situation as well.
	if l, err := net.Listen("tcp", "127.0.0.1:5672"); err == nil {
		t.Cleanup(func() { l.Close() })
	} else if _, err := net.DialTimeout("tcp", "127.0.0.1:5672", time.Second); err != nil {
		t.Fatalf("cannot listen on 127.0.0.1:5672 and nothing answers there: %v", err)
	}

	// make run, in its own process group: Ctrl-C goes to the whole group, as in a terminal.
	cmd := exec.Command("make", "run")
	cmd.Dir = clone
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); exited <- err }()

	var mu sync.Mutex
	var output strings.Builder
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			output.WriteString(sc.Text() + "\n")
			mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	printed := func() string { mu.Lock(); defer mu.Unlock(); return output.String() }
	var clusterDir string
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(2 * time.Minute):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		}
		if clusterDir != "" { // whatever make run left, stopped the way it stops it
			exec.Command("go", "run", "../internal/testenv/cmd/rabbitcluster", "down", "-dir", clusterDir).Run()
		}
		if t.Failed() {
			t.Logf("make run printed:\n%s", printed())
		}
	})

	// Read what make run says until amqplb starts: the ports it took, the cluster's directory.
	amqpRE := regexp.MustCompile(`AMQP:\s+amqp://guest:guest@(127\.0\.0\.1:\d+)/`)
	adminRE := regexp.MustCompile(`status page:\s+http://(127\.0\.0\.1:\d+)/`)
	dirRE := regexp.MustCompile(`its data and logs: (\S+)`)
	var amqpAddr, adminAddr string
	deadline := time.After(6 * time.Minute)
	for adminAddr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				err := <-exited
				stopped = true
				t.Fatalf("make run ended before amqplb started: %v", err)
			}
			if m := dirRE.FindStringSubmatch(line); m != nil {
				clusterDir = m[1]
			}
			if m := amqpRE.FindStringSubmatch(line); m != nil {
				amqpAddr = m[1]
			}
			if m := adminRE.FindStringSubmatch(line); m != nil {
				adminAddr = m[1]
			}
		case <-deadline:
			t.Fatal("make run did not start amqplb within 6 minutes")
		}
	}
	out := printed()
	if amqpAddr == "" || amqpAddr == "127.0.0.1:5672" {
		t.Fatalf("make run serves AMQP on %q, with 5672 taken", amqpAddr)
	}
	if !strings.Contains(out, "port 5672 (amqplb's AMQP frontend) is taken") {
		t.Errorf("make run did not say that 5672 is taken")
	}
	if clusterDir == "" || strings.HasPrefix(clusterDir, private) {
		t.Errorf("the cluster's directory %q: want one outside the private checkout", clusterDir)
	}

	// The cluster is up behind amqplb, and serves a client on the printed port.
	api := "http://" + adminAddr + "/api/v1/backends"
	testenv.Eventually(t, 2*time.Minute, func() error { return serversIn(api, "up", "rmq1", "rmq2", "rmq3") })
	conn, err := amqp.DialConfig("amqp://guest:guest@"+amqpAddr+"/", amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	conn.Close()

	// Ctrl-C: amqplb drains and exits, make run stops the cluster and removes its directory.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		// make itself dies of the SIGINT once its recipe ended ("make: *** [run] Interrupt"), as
		// in a terminal; anything else is a failure of the recipe.
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT) {
			t.Errorf("make run after Ctrl-C: %v", err)
		}
		if strings.Contains(printed(), "Error ") {
			t.Errorf("make run reported an error")
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("make run did not stop within 2 minutes of Ctrl-C")
	}
	if _, err := os.Stat(clusterDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cluster's directory %s is still there after Ctrl-C (%v)", clusterDir, err)
	}
	ps, _ := exec.Command("ps", "-eo", "args").Output()
	if strings.Contains(string(ps), clusterDir) {
		t.Errorf("processes of the cluster in %s still run after Ctrl-C", clusterDir)
	}
	for _, p := range []string{amqpAddr, adminAddr} {
		if c, err := net.DialTimeout("tcp", p, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still answers after Ctrl-C", p)
		}
	}
}
