//go:build linux

package faults

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// row is one line of faults/results.md.
type row struct {
	test    string // the test that produced it (the command to rerun it is derived)
	fault   string
	target  string // amqplb, haproxy, direct
	clients string // what the clients did during the fault
	failed  string // failed client operations
	eject   string // time to eject (or to show the state), "—" when not applicable
	back    string // time to return
	goal    string
	met     string // "yes", or "no: why"
	how     string // the fault's own command
}

// table collects the rows of every test of the run, in the order they ran.
type table struct {
	mu   sync.Mutex
	rows []row
}

var results = &table{}

func (tb *table) add(r row) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.rows = append(tb.rows, r)
}

// ms formats a duration for the table; a negative one is "not seen".
func ms(d time.Duration) string {
	if d < 0 {
		return "not seen"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// rowOrder is the order of the faults; the table follows it, whatever order the tests
// ran in (go test runs them file by file).
var rowOrder = []string{"TestNodeKilled", "TestNodeHung", "TestBlackHole", "TestLinkDown", "TestSlowLossyLink",
	"TestMaintenance", "TestVHostDown", "TestMemoryAlarm", "TestDiskAlarm", "TestReloadUnderLoad", "TestSIGTERMUnderLoad", "TestFlood",
	"TestSlowlorisGarbageHalfOpen", "TestConfirmedAcrossNodeKill"}

// write renders the table as Markdown into path.
func (tb *table) write(path string) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.rows) == 0 {
		return nil
	}
	rank := func(test string) int {
		test, _, _ = strings.Cut(test, "/") // subtests (one per RabbitMQ version) rank as their test
		if i := slices.Index(rowOrder, test); i >= 0 {
			return i
		}
		return len(rowOrder)
	}
	slices.SortStableFunc(tb.rows, func(a, b row) int { return rank(a.test) - rank(b.test) })
	var b strings.Builder
	if len(tb.rows) == 1 && tb.rows[0].test == "TestSoak" {
		fmt.Fprintf(&b, "# Soak results\n\n")
		fmt.Fprintf(&b, "Written by `make soak` (`AMQPLB_FAULTS=1 AMQPLB_SOAK=1 go test -count=1 -run '^TestSoak$' -v ./faults/` against a freshly booted\n")
	} else {
		fmt.Fprintf(&b, "# Fault matrix results\n\n")
		fmt.Fprintf(&b, "Written by `make faults` (`AMQPLB_FAULTS=1 go test -count=1 -p 1 -v ./faults/` against a freshly booted\n")
	}
	fmt.Fprintf(&b, "3-node RabbitMQ 3.10 cluster, and a 4.0 one for the rows that name it; one row: `make faults FAULTS_RUN=TestName`) on %s, %s/%s, %d CPUs,\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(&b, "%s. Checks on both balancers: AMQP (amqplb: the full handshake; HAProxy: `tcp-check` of the protocol\n", hostNote())
	fmt.Fprintf(&b, "header expecting Connection.Start) every %v, %v while a change is pending, timeout %v, rise 2, fall %d.\n",
		checkInterval, checkFast, checkTimeout, checkFall)
	fmt.Fprintf(&b, "Clients: a watch loop of connect, channel, confirm mode, one publish, wait for the confirm\n"+
		"(%v at most), close, %v apart, per client. \"after eject\" counts the attempts that started after the\n"+
		"balancer marked the node out. Time to eject runs from the fault's command; time to return from the moment the\n"+
		"node serves again (its undo command returned). Only amqplb's goals fail the run; HAProxy's and the direct\n"+
		"client's rows are there for comparison.\n\n", opTimeout, watchGap)
	b.WriteString("| fault | target | what clients did | failed client operations | time to eject | time to return | goal | met | fault command | test |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range tb.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | `%s` |\n",
			esc(r.fault), r.target, esc(r.clients), esc(r.failed), r.eject, r.back, esc(r.goal), esc(r.met), esc(r.how), r.test)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// hostNote names the kernel, for the figures' context.
func hostNote() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "Linux"
	}
	return "Linux " + strings.TrimSpace(string(b))
}
