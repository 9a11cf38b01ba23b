package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// sessionByName returns the id and server of the open session whose client named its
// connection name, waiting for it to be listed.
func sessionByName(t *testing.T, l *lb, name string) (uint64, string) {
	t.Helper()
	var id uint64
	var server string
	testenv.Eventually(t, 15*time.Second, func() error {
		var list struct {
			Sessions []struct {
				ID             uint64 `json:"id"`
				ConnectionName string `json:"connection_name"`
				Server         string `json:"server"`
			} `json:"sessions"`
		}
		getJSON(t, "http://"+l.adminAddr+"/api/v1/sessions?limit=1000", &list)
		for _, s := range list.Sessions {
			if s.ConnectionName == name && s.Server != "" {
				id, server = s.ID, s.Server
				return nil
			}
		}
		return fmt.Errorf("no open session named %s", name)
	})
	return id, server
}

// TestGracefulCloseAMQP091: POST .../close?graceful=true ends a busy 0-9-1 session (a
// publisher with confirms and a consumer on one connection, messages of several frames among
// them) as a broker would: the client gets Connection.Close 320, the broker sees the client
// close (no "unexpectedly closed"), and every confirmed message was consumed or is still in
// the queue.
func TestGracefulCloseAMQP091(t *testing.T) {
	onBothVersions(t, testGracefulCloseAMQP091)
}

func testGracefulCloseAMQP091(t *testing.T, c *testenv.Cluster) {
	name := "e2e-graceful-" + strings.ReplaceAll(c.Version(), ".", "-")
	queue := name + "-q"
	l := startLB(t, setup{servers: nodesAsServers(c), admin: `token = "adm1n"`})
	conn, err := amqp.DialConfig(l.url(), amqp.Config{Properties: amqp.Table{"connection_name": name}, Heartbeat: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		direct, err := amqp.Dial("amqp://guest:guest@" + c.Nodes[0].AMQPAddr() + "/")
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer direct.Close()
		if dch, err := direct.Channel(); err == nil {
			_, _ = dch.QueueDelete(queue, false, false, false)
		}
	})
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10000))
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	sent := map[uint64]string{} // delivery tag → message id
	confirmed := map[string]bool{}
	consumed := map[string]bool{}
	var wg sync.WaitGroup
	wg.Go(func() { // publisher: bounded in count and time; stops when the connection closes
		deadline := time.Now().Add(30 * time.Second)
		big := make([]byte, 300<<10) // more than two 128 KiB frames
		for i := range 20000 {
			if time.Now().After(deadline) {
				return
			}
			body := []byte("small")
			if i%10 == 0 {
				body = big
			}
			id := fmt.Sprint(i)
			mu.Lock()
			sent[ch.GetNextPublishSeqNo()] = id
			mu.Unlock()
			if err := ch.PublishWithContext(context.Background(), "", queue, false, false,
				amqp.Publishing{MessageId: id, Body: body}); err != nil {
				return
			}
		}
	})
	wg.Go(func() {
		for cf := range confirms {
			if cf.Ack {
				mu.Lock()
				confirmed[sent[cf.DeliveryTag]] = true
				mu.Unlock()
			}
		}
	})
	wg.Go(func() {
		for d := range deliveries {
			mu.Lock()
			consumed[d.MessageId] = true
			mu.Unlock()
			_ = d.Ack(false)
		}
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(confirmed) < 200 || len(consumed) < 200 {
			return fmt.Errorf("%d confirmed, %d consumed", len(confirmed), len(consumed))
		}
		return nil
	})

	id, server := sessionByName(t, l, name)
	url := fmt.Sprintf("http://%s/api/v1/sessions/%d/close?graceful=true", l.adminAddr, id)
	if code := postJSON(t, url, "adm1n", ""); code != http.StatusOK {
		t.Fatalf("POST %s: %d", url, code)
	}
	select {
	case e := <-closed:
		if e == nil || e.Code != amqp.ConnectionForced || e.Reason != "CONNECTION_FORCED - closed by amqplb admin" || !e.Server {
			t.Errorf("the client saw %+v, want a server Connection.Close 320 CONNECTION_FORCED - closed by amqplb admin", e)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client's connection was not closed")
	}
	wg.Wait()
	line := waitLog(t, l, 1, "connection_name="+name)
	if !strings.Contains(line, "end=closed_by_admin") {
		t.Errorf("access log: %s", line)
	}

	// The broker saw a client close its connection, not a dropped socket.
	var node *testenv.Node
	for _, n := range c.Nodes {
		if n.Name == server {
			node = n
		}
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		b, err := os.ReadFile(node.LogFile())
		if err != nil {
			return err
		}
		log := string(b)
		at := strings.LastIndex(log, name)
		if at < 0 || !strings.Contains(log[max(0, at-300):at], "closing AMQP connection") {
			return fmt.Errorf("%s has not logged the close of %s yet", node.Name, name)
		}
		if tail := log[at:min(len(log), at+300)]; strings.Contains(tail, "unexpectedly closed") {
			t.Fatalf("%s says the client vanished: %s", node.Name, tail)
		}
		return nil
	})

	// Nothing confirmed was lost: it was consumed, or is in the queue still.
	direct, err := amqp.Dial("amqp://guest:guest@" + c.Nodes[0].AMQPAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	dch, err := direct.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, ok, err := dch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		consumed[d.MessageId] = true
	}
	lost := 0
	for id := range confirmed {
		if !consumed[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d confirmed messages are gone", lost, len(confirmed))
	}
	t.Logf("%d confirmed, none lost", len(confirmed))
}

// TestGracefulCloseAMQP10: on RabbitMQ 4.0, a graceful close of an AMQP 1.0 session (a
// qpid-proton receiver) sends the client close with amqp:connection:forced and the reason.
func TestGracefulCloseAMQP10(t *testing.T) {
	c := testenv.RequireCluster4(t)
	const user, password, vhost, queue = "e2e-proton-gc", "pw-proton-gc-1", "e2e-amqp10-gc", "e2e-proton-gc-q"
	addUser(t, c, user, password, vhost)
	declare, err := amqp.Dial(fmt.Sprintf("amqp://%s:%s@%s/%s", user, password, c.Nodes[0].AMQPAddr(), vhost))
	if err != nil {
		t.Fatal(err)
	}
	dch, err := declare.Channel()
	if err == nil {
		_, err = dch.QueueDeclare(queue, true, false, false, false, nil)
	}
	declare.Close()
	if err != nil {
		t.Fatal(err)
	}
	l := startLB(t, setup{servers: nodesAsServers(c), admin: `token = "adm1n"`})
	host, port, _ := net.SplitHostPort(l.addr)
	cmd := exec.Command(debianPython, "testdata/proton_hold.py", host, port, user, password, vhost, "e2e-proton-gc", "/queues/"+queue)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	})
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	next := func() string {
		select {
		case line := <-lines:
			return line
		case <-time.After(30 * time.Second):
			t.Fatalf("qpid-proton said nothing within 30 s: %s", stderr)
		}
		return ""
	}
	if line := next(); line != "ready" {
		t.Fatalf("qpid-proton: %q, want ready; %s", line, stderr)
	}
	id, _ := sessionByName(t, l, "e2e-proton-gc")
	// Who it is, as the sessions API shows it: the user from sasl-init, the vhost from open's
	// hostname ("vhost:NAME"), the container-id as its connection name.
	var one struct {
		Protocol, User, VHost string
		ConnectionName        string `json:"connection_name"`
	}
	getJSON(t, fmt.Sprintf("http://%s/api/v1/sessions/%d", l.adminAddr, id), &one)
	if one.Protocol != "amqp-1.0" || one.User != user || one.VHost != vhost || one.ConnectionName != "e2e-proton-gc" {
		t.Errorf("GET /api/v1/sessions/%d: %+v", id, one)
	}
	url := fmt.Sprintf("http://%s/api/v1/sessions/%d/close?graceful=true", l.adminAddr, id)
	if code := postJSON(t, url, "adm1n", ""); code != http.StatusOK {
		t.Fatalf("POST %s: %d", url, code)
	}
	if line, want := next(), "closed amqp:connection:forced closed by amqplb admin"; line != want {
		t.Errorf("qpid-proton: %q, want %q; %s", line, want, stderr)
	}
	line := waitLog(t, l, 1, "connection_name=e2e-proton-gc")
	if !strings.Contains(line, "end=closed_by_admin") || !strings.Contains(line, "protocol=amqp-1.0") {
		t.Errorf("access log: %s", line)
	}
}
