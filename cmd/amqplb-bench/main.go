// Command amqplb-bench measures AMQP endpoints — brokers directly, amqplb, HAProxy — side by
// side, like RabbitMQ PerfTest but with several targets in one run, raw proxy overhead,
// connection storms and failover timelines.
//
//	amqplb-bench pubsub   -target direct=127.0.0.1:5673 -target amqplb=127.0.0.1:5672 [flags]
//	amqplb-bench storm    -target ... -n 1000 -c 20
//	amqplb-bench bulk     -target ... -sink 127.0.0.1:5699 -streams 4   (1, 2 and 4 streams)
//	amqplb-bench hold     -target ... -n 2000 -pid PID
//	amqplb-bench failover -target ... -fault-at 5s -fault "kill -STOP 1234" -recover-at 15s -recover "kill -CONT 1234"
//	amqplb-bench rolling  -target ... -cluster DIR/cluster.json -clients 90 -step "rmq1 drain=COMMAND" -step ... -step-gap 10s
//
// `amqplb-bench SUBCOMMAND -h` documents each. Rounds alternate between targets (A B C A B C …)
// so that a noisy machine slows every target alike; the table gives each figure's median, its
// min–max and its ratio to the first target. Exit status: 0, 1 if a target could not be measured,
// 2 for bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amqplb/amqplb/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// targetList is the repeatable -target flag.
type targetList []bench.Target

func (l *targetList) String() string {
	var s []string
	for _, t := range *l {
		s = append(s, t.Name+"="+t.Addr)
	}
	return strings.Join(s, ",")
}

func (l *targetList) Set(v string) error {
	t, err := bench.ParseTarget(v)
	if err != nil {
		return err
	}
	for _, o := range *l {
		if o.Name == t.Name {
			return fmt.Errorf("target name %q given twice", t.Name)
		}
	}
	*l = append(*l, t)
	return nil
}

var subcommands = []struct{ name, what string }{
	{"pubsub", "producers and consumers through each target: msg/s, consumer and confirm latency"},
	{"storm", "N AMQP connections (connect, channel, close) at concurrency C: conn/s, handshake latency"},
	{"bulk", "raw TCP throughput through each target to a sink the bench starts: Gbit/s"},
	{"hold", "N idle AMQP connections through each target: memory and fds per connection of -pid"},
	{"failover", "a connect+publish loop while a fault runs: a timeline, and the time to recover"},
	{"rolling", "N reconnecting clients through a rolling restart: per-node counts from the brokers, closes, reconnects"},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: amqplb-bench SUBCOMMAND -target NAME=HOST:PORT [-target ...] [flags]")
	fmt.Fprintln(w, "\nsubcommands:")
	for _, s := range subcommands {
		fmt.Fprintf(w, "  %-9s %s\n", s.name, s.what)
	}
	fmt.Fprintln(w, "\n`amqplb-bench SUBCOMMAND -h` lists the flags of each.")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	sub := args[0]
	switch sub {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	fs := flag.NewFlagSet("amqplb-bench "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var targets targetList
	fs.Var(&targets, "target", "`NAME=HOST:PORT` to measure (repeatable; a bare HOST:PORT is named after itself)")
	defaultRounds := 3
	if sub == "rolling" {
		defaultRounds = 1
	}
	rounds := fs.Int("rounds", defaultRounds, "rounds per target, alternating between targets (rolling: default 1)")
	jsonFile := fs.String("json", "", "write every figure of every round to `FILE`")
	svgFile := fs.String("svg", "", "draw the comparison (or the failover timeline) to `FILE`")
	mdFile := fs.String("md", "", "write the table as Markdown to `FILE`")
	defaultDuration := map[string]time.Duration{"pubsub": 10 * time.Second, "bulk": 5 * time.Second, "failover": 25 * time.Second, "rolling": 20 * time.Second}[sub]
	duration := fs.Duration("duration", defaultDuration, "how long each round measures (pubsub: after -warmup; bulk: per stream count; rolling: after the last step)")

	var w bench.Workload
	var fo *bench.Failover
	var rl *bench.Rolling
	var clusterFile string
	switch sub {
	case "pubsub":
		p := &bench.PubSub{}
		fs.IntVar(&p.Producers, "producers", 1, "publishing connections (PerfTest -x)")
		fs.IntVar(&p.Consumers, "consumers", 1, "consuming connections (PerfTest -y)")
		fs.IntVar(&p.Size, "size", 128, "message size in bytes (PerfTest -s)")
		fs.Float64Var(&p.Rate, "rate", 0, "messages per second per producer, 0 = unlimited (PerfTest -r)")
		fs.IntVar(&p.Confirm, "confirm", 0, "max unconfirmed publishes per producer, 0 = no confirms (PerfTest -c)")
		fs.IntVar(&p.Prefetch, "prefetch", 0, "consumer prefetch, 0 = unlimited (PerfTest -q)")
		fs.BoolVar(&p.AutoAck, "autoack", false, "consume with automatic acks (PerfTest -a)")
		fs.StringVar(&p.QueueType, "queue-type", "classic", "classic or quorum (PerfTest -qq)")
		fs.BoolVar(&p.Durable, "durable", false, "durable queue and persistent messages")
		fs.DurationVar(&p.Warmup, "warmup", 2*time.Second, "time excluded from the figures at the start of a round")
		w = p
	case "storm":
		s := &bench.Storm{}
		fs.IntVar(&s.N, "n", 1000, "connections per round")
		fs.IntVar(&s.C, "c", 20, "concurrency")
		w = s
	case "bulk":
		b := &bench.Bulk{}
		fs.IntVar(&b.Streams, "streams", 4, "measure 1, 2, 4, … up to this many parallel TCP streams")
		fs.StringVar(&b.Sink, "sink", "127.0.0.1:5699", "`HOST:PORT` of the sink the bench starts; targets must forward to it")
		fs.IntVar(&b.Size, "size", 64<<10, "bytes per write")
		fs.Func("pid", "`NAME=PID`: the process behind target NAME, for its CPU per GB (cpu_ms_per_gb_N); repeatable", func(v string) error {
			name, p, ok := strings.Cut(v, "=")
			pid, err := strconv.Atoi(p)
			if !ok || name == "" || err != nil || pid <= 0 {
				return fmt.Errorf("want NAME=PID, got %q", v)
			}
			if b.PIDs == nil {
				b.PIDs = map[string]int{}
			}
			b.PIDs[name] = pid
			return nil
		})
		w = b
	case "hold":
		h := &bench.Hold{}
		fs.IntVar(&h.N, "n", 1000, "idle connections to hold")
		fs.IntVar(&h.PID, "pid", 0, "process to measure (memory and fds per connection); 0 = none")
		fs.DurationVar(&h.Settle, "settle", 2*time.Second, "wait before measuring")
		fs.StringVar(&h.MetricsURL, "metrics", "", "Prometheus metrics of the process measured (amqplb's), for its go_goroutines per connection; \"\" = none")
		fs.IntVar(&h.Concurrency, "c", 20, "connections opened at once")
		w = h
	case "failover":
		fo = &bench.Failover{}
		fs.DurationVar(&fo.FaultAt, "fault-at", 5*time.Second, "when the fault command runs, from the start of a round")
		fs.StringVar(&fo.Fault, "fault", "", "shell `COMMAND` that causes the fault, e.g. \"kill -STOP 1234\"")
		fs.DurationVar(&fo.RecoverAt, "recover-at", 15*time.Second, "when the recover command runs")
		fs.StringVar(&fo.Recover, "recover", "", "shell `COMMAND` that ends the fault, e.g. \"kill -CONT 1234\"")
		fs.IntVar(&fo.Workers, "c", 4, "parallel connect+publish loops")
		fs.BoolVar(&fo.Confirm, "confirm", true, "publish with confirms")
		w = fo
	case "rolling":
		rl = &bench.Rolling{}
		fs.IntVar(&rl.Clients, "clients", 90, "connections held, each reconnecting when closed")
		fs.Func("node", "`NAME=URL` of a node's Prometheus metrics, whose rabbitmq_connections are counted (repeatable)", func(v string) error {
			n, err := bench.ParseNode(v)
			if err == nil {
				rl.Nodes = append(rl.Nodes, n)
			}
			return err
		})
		fs.StringVar(&clusterFile, "cluster", "", "count the nodes of this testenv `cluster.json` (rabbitcluster up -dir DIR writes DIR/cluster.json)")
		fs.Func("step", "`LABEL=COMMAND`: a step of the restart, run with sh -c (repeatable, in order)", func(v string) error {
			st, err := bench.ParseStep(v)
			if err == nil {
				rl.Steps = append(rl.Steps, st)
			}
			return err
		})
		fs.DurationVar(&rl.StepGap, "step-gap", 10*time.Second, "wait before the first step and after each")
		fs.DurationVar(&rl.Sample, "sample", 250*time.Millisecond, "interval between two counts of every node")
		fs.DurationVar(&rl.RecoveryDelay, "recovery", 500*time.Millisecond, "a client's wait before it reconnects (jittered ±50%, doubled after each failed attempt)")
		fs.DurationVar(&rl.MaxRecoveryDelay, "max-recovery", 5*time.Second, "the longest wait before a reconnect")
		fs.Float64Var(&rl.Even, "even", 0.2, "counts are even when every node is within this fraction of the mean")
		w = rl
	default:
		fmt.Fprintf(stderr, "amqplb-bench: unknown subcommand %q\n\n", sub)
		usage(stderr)
		return 2
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: amqplb-bench %s -target NAME=HOST:PORT [-target ...] [flags]\n\n", sub)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "amqplb-bench %s: unexpected arguments %q\n", sub, fs.Args())
		fs.Usage()
		return 2
	}
	if len(targets) == 0 {
		fmt.Fprintf(stderr, "amqplb-bench %s: at least one -target is required\n", sub)
		fs.Usage()
		return 2
	}
	if *rounds < 1 {
		fmt.Fprintf(stderr, "amqplb-bench %s: -rounds must be at least 1\n", sub)
		return 2
	}
	if err := bench.CheckTargets(targets); err != nil {
		fmt.Fprintf(stderr, "amqplb-bench %s: %v\n", sub, err)
		return 2
	}
	if fo != nil && fo.Fault == "" {
		fmt.Fprintln(stderr, "amqplb-bench failover: -fault is required")
		return 2
	}
	if rl != nil && clusterFile != "" {
		nodes, err := clusterNodes(clusterFile)
		if err != nil {
			fmt.Fprintf(stderr, "amqplb-bench rolling: %v\n", err)
			return 2
		}
		rl.Nodes = append(rl.Nodes, nodes...)
	}
	if rl != nil && len(rl.Nodes) == 0 {
		fmt.Fprintln(stderr, "amqplb-bench rolling: -node or -cluster is required")
		return 2
	}
	applyDuration(w, *duration)
	if v, ok := w.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			fmt.Fprintf(stderr, "amqplb-bench %s: %v\n", sub, err)
			return 2
		}
	}
	if b, ok := w.(*bench.Bulk); ok {
		b.Counts = bench.StreamCounts(b.Streams)
		stopSink, err := bench.StartSink(b.Sink)
		if err != nil {
			fmt.Fprintf(stderr, "amqplb-bench bulk: starting the sink: %v\n", err)
			return 1
		}
		defer stopSink()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "amqplb-bench %s: %d round(s) per target, alternating %s\n\n", sub, *rounds, targets.String())
	report := bench.RunRounds(ctx, targets, *rounds, w, stdout)
	fmt.Fprintln(stdout)
	_ = report.Table(stdout)
	if fo != nil {
		for _, t := range targets {
			for i, tl := range fo.Timelines()[t.Name] {
				fmt.Fprintf(stdout, "\n%s, round %d:\n", t.Name, i+1)
				tl.Print(stdout)
			}
		}
	}
	if rl != nil {
		for _, t := range targets {
			for i, tl := range rl.Timelines()[t.Name] {
				fmt.Fprintf(stdout, "\n%s, round %d:\n", t.Name, i+1)
				tl.Print(stdout)
			}
		}
	}
	if *mdFile != "" {
		if err := writeFile(*mdFile, report.Markdown); err != nil {
			fmt.Fprintln(stderr, "amqplb-bench:", err)
			return 1
		}
	}
	if *jsonFile != "" {
		if err := writeFile(*jsonFile, report.WriteJSON); err != nil {
			fmt.Fprintln(stderr, "amqplb-bench:", err)
			return 1
		}
	}
	if *svgFile != "" {
		draw := report.WriteSVG
		if fo != nil {
			var order []string
			for _, t := range targets {
				order = append(order, t.Name)
			}
			draw = func(w io.Writer) error { return bench.WriteTimelinesSVG(w, fo.Timelines(), order...) }
		}
		if rl != nil {
			var order []string
			for _, t := range targets {
				order = append(order, t.Name)
			}
			draw = func(w io.Writer) error { return bench.WriteRollingSVG(w, rl.Timelines(), order...) }
		}
		if err := writeFile(*svgFile, draw); err != nil {
			fmt.Fprintln(stderr, "amqplb-bench:", err)
			return 1
		}
	}
	for _, t := range targets {
		if report.Status(t.Name).Down() {
			fmt.Fprintf(stderr, "amqplb-bench: target %s (%s) could not be measured (see the table)\n", t.Name, t.Addr)
			return 1
		}
	}
	return 0
}

// applyDuration sets -duration on workloads that have one.
func applyDuration(w bench.Workload, d time.Duration) {
	switch w := w.(type) {
	case *bench.PubSub:
		w.Duration = d
	case *bench.Bulk:
		w.Duration = d
	case *bench.Failover:
		w.Duration = d
	case *bench.Rolling:
		w.Duration = d
	}
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// clusterNodes reads the nodes of a testenv cluster.json (internal/testenv's format, read here
// without importing it): each node's name and Prometheus endpoint on 127.0.0.1.
func clusterNodes(path string) ([]bench.Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c struct {
		Nodes []struct {
			Name           string `json:"name"`
			PrometheusPort int    `json:"prometheus_port"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var nodes []bench.Node
	for _, n := range c.Nodes {
		if n.Name == "" || n.PrometheusPort <= 0 {
			return nil, fmt.Errorf("%s: a node without a name or a prometheus_port", path)
		}
		nodes = append(nodes, bench.Node{Name: n.Name, MetricsURL: "http://127.0.0.1:" + strconv.Itoa(n.PrometheusPort) + "/metrics"})
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%s: no nodes", path)
	}
	return nodes, nil
}
