package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// TestComposeUp runs compose.yaml for real: the three RabbitMQ nodes and amqplb, with local
// stand-ins of the two images (scripts/compose-images.sh: Debian's RabbitMQ on a debootstrap
// root, amqplb on scratch), since no registry is reachable here. It needs Docker and root, and
// takes a minute or two, so it runs only with AMQPLB_COMPOSE_TEST=1 (`make compose-test`).
//
// Through amqplb's published loopback port it publishes and consumes, pauses a node (a hung
// broker) and checks that amqplb ejects it and that new connections keep succeeding, then
// reloads an edited configuration with `kill -s HUP`. Whatever happens, the compose project is
// removed with its containers, network and volumes, and the test checks none is left.
func TestComposeUp(t *testing.T) {
	if os.Getenv("AMQPLB_COMPOSE_TEST") != "1" {
		t.Skip("AMQPLB_COMPOSE_TEST=1 runs compose.yaml with Docker (make compose-test)")
	}
	compose := composeCommand(t)
	images := localImages(t)

	// The configuration amqplb mounts: a copy that the test edits, readable by the image's
	// non-root user (TempDir is 0700).
	cfgDir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(composeDir, "amqplb.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(cfgDir, "amqplb.toml")
	if err := os.WriteFile(cfgPath, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}

	amqpAddr, adminAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	_, amqpPort, _ := net.SplitHostPort(amqpAddr)
	_, adminPort, _ := net.SplitHostPort(adminAddr)
	project := os.Getenv("AMQPLB_COMPOSE_PROJECT") // scripts/compose-test.sh's, which sweeps it on exit
	if project == "" {
		suffix := make([]byte, 4)
		rand.Read(suffix)
		project = "amqplbtest" + hex.EncodeToString(suffix)
	}
	env := append(os.Environ(),
		"RABBITMQ_IMAGE="+images["RABBITMQ_IMAGE"],
		"AMQPLB_IMAGE="+images["AMQPLB_IMAGE"],
		"AMQPLB_PORT="+amqpPort,
		"AMQPLB_ADMIN_PORT="+adminPort,
		"AMQPLB_CONFIG_DIR="+cfgDir,
	)
	run := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		argv := append(append(compose[1:len(compose):len(compose)], "-f", "compose.yaml", "-p", project), args...)
		cmd := exec.CommandContext(ctx, compose[0], argv...)
		cmd.Dir, cmd.Env = "..", env
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%s %s: %v\n%s", strings.Join(compose, " "), strings.Join(args, " "), err, out)
		}
		return string(out), err
	}
	mustRun := func(timeout time.Duration, args ...string) {
		t.Helper()
		if _, err := run(timeout, args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := run(time.Minute, "logs", "--no-color", "--tail", "40"); err == nil {
				t.Logf("logs of the compose project:\n%s", out)
			}
		}
		if _, err := run(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Error(err)
		}
		for _, kind := range []string{"container", "network", "volume"} {
			args := []string{kind, "ls", "-q", "--filter", "label=com.docker.compose.project=" + project}
			if kind == "container" {
				args = []string{"ps", "-aq", "--filter", "label=com.docker.compose.project=" + project}
			}
			out, err := exec.Command("docker", args...).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("after down, docker %s: %q, %v; want nothing of project %s left", strings.Join(args, " "), out, err, project)
			}
		}
	})

	start := time.Now()
	mustRun(5*time.Minute, "up", "-d", "--no-build")
	api := "http://" + adminAddr + "/api/v1/backends"
	testenv.Eventually(t, 4*time.Minute, func() error { return serversIn(api, "up", "rabbitmq1", "rabbitmq2", "rabbitmq3") })
	t.Logf("cluster and amqplb up %v after `up`", time.Since(start).Round(time.Second))

	// Publish on one connection, consume on another: amqplb spreads them over the nodes
	// (leastconn), so the message crosses the cluster.
	url := "amqp://guest:guest@" + amqpAddr + "/"
	dial := func() (*amqp.Connection, error) {
		return amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	}
	pub, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publishConsume(t, pub, sub)

	// A hung broker: the container is frozen, its TCP handshake still completes.
	mustRun(time.Minute, "pause", "rabbitmq2")
	paused := time.Now()
	testenv.Eventually(t, time.Minute, func() error { return serversIn(api, "down", "rabbitmq2") })
	t.Logf("paused rabbitmq2 ejected after %v", time.Since(paused).Round(100*time.Millisecond))
	for i := range 200 {
		c, err := dial()
		if err != nil {
			t.Fatalf("connection %d of 200 with rabbitmq2 paused: %v", i+1, err)
		}
		c.Close()
	}
	mustRun(time.Minute, "unpause", "rabbitmq2")
	testenv.Eventually(t, 2*time.Minute, func() error { return serversIn(api, "up", "rabbitmq2") })

	// Reload: the edited file is written the way editors save (a new file renamed over the old
	// one), which the mounted directory shows to the container.
	edited := strings.Replace(string(src), `address = "rabbitmq3:5672"`, "address = \"rabbitmq3:5672\"\nweight  = 7", 1)
	if edited == string(src) {
		t.Fatal(`deploy/compose/amqplb.toml has no address = "rabbitmq3:5672"`)
	}
	tmp := filepath.Join(cfgDir, ".amqplb.toml.new")
	if err := os.WriteFile(tmp, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, cfgPath); err != nil {
		t.Fatal(err)
	}
	mustRun(time.Minute, "kill", "-s", "HUP", "amqplb")
	testenv.Eventually(t, 30*time.Second, func() error {
		s, err := composeServers(api)
		if err != nil {
			return err
		}
		if w := s["rabbitmq3"].Weight; w != 7 {
			return fmt.Errorf("rabbitmq3's weight is %d after SIGHUP, want 7 from the edited file", w)
		}
		return nil
	})
	c, err := dial()
	if err != nil {
		t.Fatalf("after the reload: %v", err)
	}
	c.Close()
}

// composeCommand returns the Compose command of this machine: `docker compose` (v2) or
// `docker-compose` (Debian 12's 1.29). Without either, the test fails when brokers are required
// (CI) and skips otherwise.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	msg := "neither `docker compose` nor `docker-compose` runs (scripts/compose-test.sh installs docker-compose)"
	if os.Getenv("AMQPLB_REQUIRE_BROKERS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

// localImages builds the local stand-ins of compose.yaml's images (cached) and returns the
// variables that select them.
func localImages(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/compose-images.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := fmt.Sprintf("scripts/compose-images.sh: %v\n%s", err, stderr.Bytes())
		if os.Getenv("AMQPLB_REQUIRE_BROKERS") != "1" && exec.Command("docker", "info").Run() != nil {
			t.Skip("no Docker engine: " + msg)
		}
		t.Fatal(msg)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	if vars["RABBITMQ_IMAGE"] == "" || vars["AMQPLB_IMAGE"] == "" {
		t.Fatalf("scripts/compose-images.sh printed %q, want RABBITMQ_IMAGE=... and AMQPLB_IMAGE=...", out)
	}
	return vars
}

// backendServers returns the servers of every backend in amqplb's API, by name.
func composeServers(api string) (map[string]apiServer, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(api)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Backends []struct {
			Servers []apiServer `json:"servers"`
		} `json:"backends"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", api, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET %s: %v", api, err)
	}
	out := map[string]apiServer{}
	for _, b := range body.Backends {
		for _, s := range b.Servers {
			out[s.Name] = s
		}
	}
	return out, nil
}

// serversIn returns nil when every named server is in state, else an error saying which is not.
func serversIn(api, state string, names ...string) error {
	servers, err := composeServers(api)
	if err != nil {
		return err
	}
	for _, n := range names {
		s, ok := servers[n]
		if !ok {
			return fmt.Errorf("no server %s in %s", n, api)
		}
		if s.State != state {
			return fmt.Errorf("server %s is %s (%s), want %s", n, s.State, s.Check.Reason, state)
		}
	}
	return nil
}

// publishConsume publishes a persistent message with a confirm on pub and consumes it on sub.
func publishConsume(t *testing.T, pub, sub *amqp.Connection) {
	t.Helper()
	queue := "amqplb-compose-test"
	pch, err := pub.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer pch.Close()
	if _, err := pch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := []byte("through amqplb in compose")
	conf, err := pch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false,
		amqp.Publishing{Body: body, DeliveryMode: amqp.Persistent})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := conf.WaitContext(ctx); !ok || err != nil {
		t.Fatalf("publish not confirmed: %v, %v", ok, err)
	}
	sch, err := sub.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer sch.Close()
	msgs, err := sch.ConsumeWithContext(ctx, queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if !bytes.Equal(m.Body, body) {
			t.Fatalf("consumed %q, want %q", m.Body, body)
		}
	case <-ctx.Done():
		t.Fatal("the published message was not consumed")
	}
	if _, err := sch.QueueDelete(queue, false, false, false); err != nil {
		t.Fatal(err)
	}
}
