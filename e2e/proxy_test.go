package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

func TestPublishConfirmConsumeThroughAMQPLB(t *testing.T) {
	c := testenv.RequireCluster(t)
	l := startLB(t, setup{servers: nodesAsServers(c)})
	ch, err := l.dial(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishConfirmConsume(t, ch, q.Name, testBodies(120, 40, 2<<20))
}

// testBodies returns n random message bodies: small ones of 100 bytes and up, and every
// bigEvery-th one of bigSize bytes, which takes amqplb's splice path.
func testBodies(n, bigEvery, bigSize int) [][]byte {
	var bodies [][]byte
	for i := range n {
		size := 100 + i
		if i%bigEvery == bigEvery-1 {
			size = bigSize
		}
		b := make([]byte, size)
		_, _ = rand.Read(b)
		bodies = append(bodies, b)
	}
	return bodies
}

// publishConfirmConsume publishes bodies to queue on ch with confirms, waits for every confirm,
// then consumes them back (prefetch 10, as quorum queues want) and checks each one.
func publishConfirmConsume(t *testing.T, ch *amqp.Channel, queue string, bodies [][]byte) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, len(bodies)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range bodies {
		if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: b}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range bodies {
		select {
		case cf := <-confirms:
			if !cf.Ack {
				t.Fatalf("publish %d nacked", cf.DeliveryTag)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d confirms arrived", i, len(bodies))
		}
	}
	if err := ch.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range bodies {
		select {
		case m := <-msgs:
			if !bytes.Equal(m.Body, want) {
				t.Fatalf("message %d differs (%d bytes, want %d)", i, len(m.Body), len(want))
			}
			if err := m.Ack(false); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d messages consumed", i, len(bodies))
		}
	}
}

func TestRoundRobinLandsEvenlyOnTheBrokers(t *testing.T) {
	roundRobinLandsEvenly(t, testenv.RequireCluster(t), 10)
}

// roundRobinLandsEvenly opens perNode connections per node through amqplb (roundrobin) and
// waits until every broker counts perNode.
func roundRobinLandsEvenly(t *testing.T, c *testenv.Cluster, perNode int) {
	t.Helper()
	waitCounts(t, c, zeroCounts(c))
	l := startLB(t, setup{servers: nodesAsServers(c)})
	for range perNode * len(c.Nodes) {
		l.dial(t)
	}
	want := map[string]int{}
	for _, n := range c.Nodes {
		want[n.Name] = perNode
	}
	waitCounts(t, c, want)
}

func TestWeightZeroGetsNothing(t *testing.T) {
	c := testenv.RequireCluster(t)
	waitCounts(t, c, zeroCounts(c))
	servers := nodesAsServers(c)
	servers[2].weight = 0
	l := startLB(t, setup{servers: servers})
	for range 10 {
		l.dial(t)
	}
	waitCounts(t, c, map[string]int{c.Nodes[0].Name: 5, c.Nodes[1].Name: 5, c.Nodes[2].Name: 0})
}

func TestLeastConnFillsTheLeastLoadedBroker(t *testing.T) {
	c := testenv.RequireCluster(t)
	waitCounts(t, c, zeroCounts(c))
	l := startLB(t, setup{balance: "leastconn", servers: nodesAsServers(c)})
	for range 6 {
		l.dial(t)
	}
	two := map[string]int{}
	for _, n := range c.Nodes {
		two[n.Name] = 2
	}
	waitCounts(t, c, two)
	// Node 1 closes both its connections; amqplb sees those sessions end, so node 1
	// is now the least loaded and must get the next two connections.
	closeBrokerConnections(t, c.Nodes[0], 2)
	waitCounts(t, c, map[string]int{c.Nodes[0].Name: 0, c.Nodes[1].Name: 2, c.Nodes[2].Name: 2})
	waitLog(t, l, 2, "msg=session") // amqplb has seen both sessions end
	l.dial(t)
	l.dial(t)
	waitCounts(t, c, two)
}

func TestBackupOnlyWhileEveryActiveServerIsDown(t *testing.T) {
	c := testenv.RequireCluster(t)
	waitCounts(t, c, zeroCounts(c))
	servers := nodesAsServers(c)
	servers[2].backup = true
	l := startLB(t, setup{servers: servers, backend: "retries = 3\nredispatch = true"})
	for range 4 {
		l.dial(t)
	}
	waitCounts(t, c, map[string]int{c.Nodes[0].Name: 2, c.Nodes[1].Name: 2, c.Nodes[2].Name: 0})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, n := range c.Nodes[:2] {
		if err := n.StopApp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Both active brokers refuse connections now: new clients land on the backup. (A node
	// whose app is stopped cannot be asked: its metrics endpoint is down too.)
	for range 3 {
		l.dial(t)
	}
	backup := c.Nodes[2]
	testenv.EventuallyEvery(t, 15*time.Second, brokerPoll, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := backup.ConnectionCount(ctx)
		cancel()
		if err != nil || n != 3 {
			return fmt.Errorf("backup %s holds %d connections (%v), want 3", backup.Name, n, err)
		}
		return nil
	})
	for _, n := range c.Nodes[:2] {
		if err := n.StartApp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The failed dials left both active servers suspect until down_interval has passed (checks are
	// off): wait until amqplb sends new clients to them again.
	for _, n := range c.Nodes[:2] {
		l.waitEligible(t, n.Name, 30*time.Second)
	}
	// Active servers are back: the backup gets nothing more.
	for range 4 {
		l.dial(t)
	}
	waitCounts(t, c, map[string]int{c.Nodes[0].Name: 2, c.Nodes[1].Name: 2, c.Nodes[2].Name: 3})
}

func TestStopAppUnderSequentialConnects(t *testing.T) {
	c := testenv.RequireCluster(t)
	l := startLB(t, setup{servers: nodesAsServers(c), backend: "retries = 3\nredispatch = true"})
	victim := c.Nodes[1]
	stopped := make(chan error, 1)
	failures := 0
	var firstErr error
	for i := range 200 {
		if i == 40 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				stopped <- victim.StopApp(ctx)
			}()
		}
		conn, err := amqp.DialConfig(l.url(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			var ch *amqp.Channel
			if ch, err = conn.Channel(); err == nil {
				err = ch.Close()
			}
			conn.Close()
		}
		if err != nil {
			failures++
			if firstErr == nil {
				firstErr = fmt.Errorf("connect %d: %w", i, err)
			}
		}
		time.Sleep(10 * time.Millisecond) // workload: spread the 200 connects over the stop
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if failures != 0 {
		t.Errorf("%d of 200 client connects failed; first: %v", failures, firstErr)
	}
	if !strings.Contains(l.log.String(), "connect failed") {
		t.Errorf("the stopped broker was never tried; the test proves nothing")
	}
}

func TestNonAMQPClientGetsTheProtocolHeader(t *testing.T) {
	c := testenv.RequireCluster(t)
	l := startLB(t, setup{servers: nodesAsServers(c)})
	conn, err := net.Dial("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: rabbit\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "AMQP\x00\x00\x09\x01" {
		t.Fatalf("reply = %q, want the AMQP 0-9-1 protocol header", got)
	}
	line := waitLog(t, l, 1, "end=bad_header")
	if !strings.Contains(line, `server=""`) {
		t.Errorf("a broker was involved: %s", line)
	}
}

func TestMaxConnectionsRefusesAndKeepsOthersWorking(t *testing.T) {
	c := testenv.RequireCluster(t)
	l := startLB(t, setup{servers: nodesAsServers(c), global: "max_connections = 2"})
	a, b := l.dial(t), l.dial(t)
	if _, err := amqp.DialConfig(l.url(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)}); err == nil {
		t.Fatal("a third connection got through max_connections = 2")
	}
	for _, conn := range []*amqp.Connection{a, b} {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatalf("existing connection broken: %v", err)
		}
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("still here")}); err != nil {
			t.Fatal(err)
		}
		ch.Close()
	}
	waitLog(t, l, 1, "global max_connections reached")
}

// waitLog waits until amqplb's log has at least n lines containing s and returns the first.
func waitLog(t testing.TB, l *lb, n int, s string) string {
	t.Helper()
	var hits []string
	testenv.Eventually(t, 10*time.Second, func() error {
		hits = hits[:0]
		for _, line := range strings.Split(l.log.String(), "\n") {
			if strings.Contains(line, s) {
				hits = append(hits, line)
			}
		}
		if len(hits) < n {
			return fmt.Errorf("amqplb logged %d lines with %q, want %d", len(hits), s, n)
		}
		return nil
	})
	return hits[0]
}
