#!/usr/bin/env bash
# `make bench`: the standard amqplb-bench suite, amqplb and HAProxy side by side.
#
# Starts a local 3-node RabbitMQ cluster (the same tooling as `make run` and `make test`), amqplb,
# and HAProxy from Debian's haproxy package with the equivalent configuration (HAProxy at its best:
# option splice-auto, the same check intervals). Then it runs pubsub (128 B and 4 KiB, through one
# broker), storm, bulk (1, 2 and 4 streams; with each proxy's CPU per GB), hold (1,000, 5,000 and 9,000 idle connections through fresh processes) and failover (SIGSTOP of
# one node), and writes bench/results/<date>.md with the tables, SVG charts and the machine.
# It takes about 15 minutes.
# Everything it started is stopped on exit. Env: ROUNDS (default 3), DURATION (default 10s),
# ONLY (some of "pubsub storm bulk hold failover"; default all), HOLD_SIZES, HOLD_SETTLE.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
date=$(date -u +%Y-%m-%d)
out=bench/results
mkdir -p "$out"
stem="$date${ONLY:+-${ONLY// /-}}" # a partial run (ONLY) overwrites none of the full run's files
report="$out/$stem.md"

./scripts/install-test-deps.sh
$GO build -o bin/amqplb ./cmd/amqplb
$GO build -o bin/amqplb-bench ./cmd/amqplb-bench
$GO build -o bin/rabbitcluster ./internal/testenv/cmd/rabbitcluster

work=$(mktemp -d /tmp/amqplb-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	bin/rabbitcluster down -dir "$work/cluster" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "booting a 3-node RabbitMQ cluster..."
bin/rabbitcluster up -dir "$work/cluster" >"$work/up.log"
node_port() { sed -n "s/^$1 .* amqp=127.0.0.1:\([0-9]*\) .*/\1/p" "$work/up.log"; }
n1=$(node_port rmq1) n2=$(node_port rmq2) n3=$(node_port rmq3)
[ -n "$n1" ] && [ -n "$n2" ] && [ -n "$n3" ] || { cat "$work/up.log"; exit 1; }
sink=127.0.0.1:5699

# Ports: amqplb 5690 (cluster) 5691 (one broker) 5692 (bulk); HAProxy 5680, 5681, 5682.
cat >"$work/amqplb.toml" <<TOML
[global]
max_connections = 20000
access_log = false
log_level = "warn"

[admin]
listen = "127.0.0.1:8405"

[[frontend]]
name = "cluster"
bind = "127.0.0.1:5690"
backend = "cluster"

[[frontend]]
name = "single"
bind = "127.0.0.1:5691"
backend = "single"

[[frontend]]
name = "bulk"
bind = "127.0.0.1:5692"
backend = "sink"
mode = "tcp"

[[backend]]
name = "cluster"
balance = "roundrobin"
connect_timeout = "2s"
[backend.health_check]
type = "amqp"
interval = "2s"
rise = 2
fall = 3
[[backend.server]]
name = "rmq1"
address = "127.0.0.1:$n1"
[[backend.server]]
name = "rmq2"
address = "127.0.0.1:$n2"
[[backend.server]]
name = "rmq3"
address = "127.0.0.1:$n3"

[[backend]]
name = "single"
[backend.health_check]
type = "amqp"
[[backend.server]]
name = "rmq1"
address = "127.0.0.1:$n1"

[[backend]]
name = "sink"
[backend.health_check]
type = "none"
[[backend.server]]
name = "sink"
address = "$sink"
TOML

cat >"$work/haproxy.cfg" <<CFG
global
	maxconn 4000
defaults
	mode tcp
	timeout connect 2s
	timeout client 3h
	timeout server 3h
	retries 3
	option redispatch
	option splice-auto
listen cluster
	bind 127.0.0.1:5680
	balance roundrobin
	server rmq1 127.0.0.1:$n1 check inter 2s rise 2 fall 3
	server rmq2 127.0.0.1:$n2 check inter 2s rise 2 fall 3
	server rmq3 127.0.0.1:$n3 check inter 2s rise 2 fall 3
listen single
	bind 127.0.0.1:5681
	server rmq1 127.0.0.1:$n1 check inter 2s rise 2 fall 3
listen bulk
	bind 127.0.0.1:5682
	server sink $sink
CFG

bin/amqplb -f "$work/amqplb.toml" 2>"$work/amqplb.log" &
amqplb_pid=$!
pids+=("$amqplb_pid")
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
sleep 6 # both see every server up (rise 2 at 2s)
for p in "$amqplb_pid" "$haproxy_pid"; do
	if ! kill -0 "$p" 2>/dev/null; then
		echo "a proxy did not start:" >&2
		cat "$work/amqplb.log" "$work/haproxy.log" >&2
		exit 1
	fi
done

bench() { bin/amqplb-bench "$@"; }
single=(-target "direct=127.0.0.1:$n1" -target amqplb=127.0.0.1:5691 -target haproxy=127.0.0.1:5681)
section() { printf '\n## %s\n\n`%s`\n\n' "$1" "$2" >>"$report"; }

{
	echo "# amqplb-bench results, $date"
	echo
	echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)."
	echo "Versions: $($GO version | cut -d' ' -f3), $(haproxy -v | head -1 | cut -d' ' -f1-3), RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server), amqplb $(bin/amqplb -version | cut -d' ' -f2)."
	echo
	echo "Each figure is the median of $ROUNDS rounds per target; rounds alternate between targets."
	echo "Ratios are to the first column. The machine is shared: compare within a table, not across runs."
} >"$report"

run_section() {
	local title=$1 name=$2
	shift 2
	echo "== $title"
	section "$title" "amqplb-bench $*"
	bench "$@" -md "$work/$name.md" -json "$out/$stem-$name.json" -svg "$out/$stem-$name.svg" | tee "$work/$name.txt" || true
	cat "$work/$name.md" >>"$report" 2>/dev/null || echo "(this run failed: see the output above)" >>"$report"
	printf '\n![%s](%s)\n' "$title" "$stem-$name.svg" >>"$report"
}

# hold_scale: idle connections at several sizes (HOLD_SIZES), each through a fresh amqplb and a
# fresh HAProxy over the three nodes, so that neither process carries what earlier sections left
# in it. Each proxy is measured HOLD_SETTLE after the last connection opened (amqplb parks idle
# sessions after 1 s and returns memory once the count settles, every 5 s). Figures are the
# growth over the connections held. 9,000 is the most this machine allows: amqplb needs two fds
# per connection, and the hard RLIMIT_NOFILE is 20,000 without CAP_SYS_RESOURCE.
hold_scale() {
	local title="hold: idle connections through amqplb and HAProxy (fresh processes, three nodes)"
	local sizes=${HOLD_SIZES:-1000 5000 9000} settle=${HOLD_SETTLE:-15s} n
	echo "== $title"
	section "$title" "amqplb-bench hold -n N -pid PID -settle $settle [-metrics URL], N in $sizes"
	{
		echo "| connections | amqplb RSS/conn | HAProxy RSS/conn | amqplb fds/conn | HAProxy fds/conn | amqplb goroutines/conn |"
		echo "|---|---|---|---|---|---|"
	} >"$work/hold.md"
	for n in $sizes; do
		sed -e 's/^max_connections = .*/max_connections = 10000/' -e 's/127.0.0.1:5690/127.0.0.1:5693/' \
			-e 's/127.0.0.1:5691/127.0.0.1:5694/' -e 's/127.0.0.1:5692/127.0.0.1:5695/' \
			-e 's/127.0.0.1:8405/127.0.0.1:8406/' "$work/amqplb.toml" >"$work/amqplb-hold.toml"
		# maxpipes: HAProxy reserves fds for maxconn/4 splice pipes by default, past the limit.
		sed -e 's/maxconn 4000/maxconn 9100\n\tmaxpipes 100/' -e 's/127.0.0.1:5680/127.0.0.1:5683/' -e 's/127.0.0.1:5681/127.0.0.1:5684/' \
			-e 's/127.0.0.1:5682/127.0.0.1:5685/' "$work/haproxy.cfg" >"$work/haproxy-hold.cfg"
		bin/amqplb -f "$work/amqplb-hold.toml" 2>"$work/amqplb-hold.log" &
		local lp=$!
		haproxy -db -f "$work/haproxy-hold.cfg" >"$work/haproxy-hold.log" 2>&1 &
		local hp=$!
		sleep 6 # both see every server up (rise 2 at 2s)
		for p in "$lp" "$hp"; do
			kill -0 "$p" 2>/dev/null || { cat "$work/amqplb-hold.log" "$work/haproxy-hold.log" >&2; echo "a proxy did not start" >&2; }
		done
		bench hold -target amqplb=127.0.0.1:5693 -n "$n" -pid "$lp" -settle "$settle" -rounds 1 \
			-metrics http://127.0.0.1:8406/metrics -json "$out/$stem-hold-amqplb-$n.json" | tee "$work/hold-amqplb-$n.txt" || true
		bench hold -target haproxy=127.0.0.1:5683 -n "$n" -pid "$hp" -settle "$settle" -rounds 1 \
			-json "$out/$stem-hold-haproxy-$n.json" | tee "$work/hold-haproxy-$n.txt" || true
		kill "$lp" "$hp" 2>/dev/null || true
		wait "$lp" "$hp" 2>/dev/null || true
		per() { sed -n "s/.*: \([0-9.]*\) octets and \([0-9.]*\) fds per connection.*/\\$2/p" "$1" | head -1; }
		gor() { sed -n 's/.*: \([0-9.-]*\) goroutines per connection.*/\1/p' "$1" | head -1; }
		kib() { awk -v b="$1" 'BEGIN { if (b == "") print "–"; else printf "%.1f KiB", b / 1024 }'; }
		echo "| $n | $(kib "$(per "$work/hold-amqplb-$n.txt" 1)") | $(kib "$(per "$work/hold-haproxy-$n.txt" 1)") |" \
			"$(per "$work/hold-amqplb-$n.txt" 2) | $(per "$work/hold-haproxy-$n.txt" 2) | $(gor "$work/hold-amqplb-$n.txt") |" >>"$work/hold.md"
	done
	cat "$work/hold.md" >>"$report"
}

want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
if want pubsub; then
	run_section "pubsub, 128 B, through one broker" pubsub-128 pubsub "${single[@]}" -size 128 -confirm 100 -duration "$DURATION" -rounds "$ROUNDS"
	run_section "pubsub, 4 KiB, through one broker" pubsub-4k pubsub "${single[@]}" -size 4096 -confirm 100 -duration "$DURATION" -rounds "$ROUNDS"
fi
if want storm; then
	run_section "storm, 1,000 connections at 20" storm storm "${single[@]}" -n 1000 -c 20 -rounds "$ROUNDS"
fi
if want bulk; then
	bulk=(-target "direct=$sink" -target amqplb=127.0.0.1:5692 -target haproxy=127.0.0.1:5682 -sink "$sink"
		-pid "amqplb=$amqplb_pid" -pid "haproxy=$haproxy_pid")
	run_section "bulk, 1, 2 and 4 streams" bulk bulk "${bulk[@]}" -streams 4 -duration 5s -rounds "$ROUNDS"
fi
if want hold; then
	hold_scale
fi
if want failover; then
	pg=$(cat "$work/cluster/rmq2/node.pgid")
	run_section "failover: SIGSTOP of one of 3 nodes at 5 s, SIGCONT at 15 s" failover failover \
		-target amqplb=127.0.0.1:5690 -target haproxy=127.0.0.1:5680 \
		-fault-at 5s -fault "kill -STOP -$pg" -recover-at 15s -recover "kill -CONT -$pg" -duration 25s -rounds 1
fi

echo
echo "results: $report"
