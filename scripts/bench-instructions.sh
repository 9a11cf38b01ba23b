#!/usr/bin/env bash
# `make bench-instructions [BEFORE=<git rev>]`: what one proxied AMQP connection costs amqplb and
# HAProxy, counted in instructions (valgrind's callgrind), which, unlike time on this shared VM,
# repeat from run to run. Each balancer runs under callgrind in front of one RabbitMQ 3.10 node
# (mode amqp for amqplb, mode tcp for HAProxy, no health checks); once it serves, its counters
# are zeroed, `amqplb-bench storm` makes N connections through it (connect, handshake, channel
# open and close, connection close; C at a time), and the counters are dumped: instructions per
# connection = the total / N. The same for an idle interval as long as the storm's, to show the
# background (timers, the Go runtime) that the per-connection figure includes.
# BEFORE adds amqplb built at that revision, for before/after figures of a change.
# Writes bench/results/<date>-instructions.md. Env: N (default 300), C (default 10), BEFORE.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
N=${N:-300}
C=${C:-10}
BEFORE=${BEFORE:-}
date=$(date -u +%Y-%m-%d)
out=bench/results
mkdir -p "$out"
report="$out/$date-instructions.md"
for tool in valgrind callgrind_control haproxy; do
	command -v "$tool" >/dev/null || { echo "bench-instructions: $tool is missing (apt-get install valgrind haproxy)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/amqplb-instr.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	"$work/rabbitcluster" down -dir "$work/cluster" >/dev/null 2>&1 || true
	if [ -n "$BEFORE" ]; then git worktree remove --force "$work/before-src" >/dev/null 2>&1 || true; fi
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

builds=(now)
$GO build -o "$work/amqplb-now" ./cmd/amqplb
if [ -n "$BEFORE" ]; then
	git worktree add -q --detach "$work/before-src" "$BEFORE"
	(cd "$work/before-src" && $GO build -o "$work/amqplb-before" ./cmd/amqplb)
	builds=(before now)
fi
$GO build -o "$work/amqplb-bench" ./cmd/amqplb-bench
$GO build -o "$work/rabbitcluster" ./internal/testenv/cmd/rabbitcluster
"$work/rabbitcluster" up -dir "$work/cluster" -n 1 >"$work/up.log"
node=$(sed -n 's/^rmq1 .* amqp=\(127.0.0.1:[0-9]*\) .*/\1/p' "$work/up.log")
[ -n "$node" ] || { cat "$work/up.log"; exit 1; }

cat >"$work/amqplb.toml" <<TOML
[global]
access_log = false
log_level = "warn"
[[frontend]]
name = "amqp"
bind = "127.0.0.1:5697"
backend = "rabbitmq"
[[backend]]
name = "rabbitmq"
[backend.health_check]
type = "none"
[[backend.server]]
name = "rmq1"
address = "$node"
TOML
cat >"$work/haproxy.cfg" <<CFG
global
	maxconn 4000
defaults
	mode tcp
	timeout connect 2s
	timeout client 1h
	timeout server 1h
listen amqp
	bind 127.0.0.1:5697
	server rmq1 $node
CFG

# measure NAME CMD...: runs CMD under callgrind, then prints "NAME idle_Ir storm_Ir".
measure() {
	local name=$1
	shift
	# Go's asynchronous preemption signals crash callgrind 3.19 (the runtime then preempts at
	# function calls only, as before Go 1.14), and its VEX does not know RDTSCP (runtime.cputicks
	# then uses RDTSC with fences).
	GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind --callgrind-out-file="$work/cg.$name.%p" "$@" >"$work/$name.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	local i
	for i in $(seq 1 600); do
		if "$work/amqplb-bench" storm -target "probe=127.0.0.1:5697" -n 1 -c 1 -rounds 1 >/dev/null 2>&1; then break; fi
		sleep 0.1
	done
	callgrind_control -z "$pid" >/dev/null
	local t0=$SECONDS
	"$work/amqplb-bench" storm -target "$name=127.0.0.1:5697" -n "$N" -c "$C" -rounds 1 >"$work/$name.storm" 2>&1 ||
		{ cat "$work/$name.storm" >&2; exit 1; }
	local took=$((SECONDS - t0 + 1))
	callgrind_control -d "storm" "$pid" >/dev/null
	sleep "$took"
	callgrind_control -d "idle" "$pid" >/dev/null
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local storm idle
	storm=$(grep -h '^summary:' "$work"/cg."$name".*.1 | awk '{print $2}')
	idle=$(grep -h '^summary:' "$work"/cg."$name".*.2 | awk '{print $2}')
	echo "$name $idle $storm $took"
}

results=()
for b in "${builds[@]}"; do
	results+=("$(measure "amqplb-$b" "$work/amqplb-$b" -f "$work/amqplb.toml")")
done
results+=("$(measure haproxy "$(command -v haproxy)" -db -f "$work/haproxy.cfg")")

{
	echo "# Instructions per proxied AMQP connection ($date)"
	echo
	echo "\`make bench-instructions${BEFORE:+ BEFORE=$BEFORE}\` (\`scripts/bench-instructions.sh\`) on $(uname -srm), $(nproc) CPUs:"
	echo "$N connections (\`amqplb-bench storm -n $N -c $C\`: connect, AMQP handshake, channel open and close, close)"
	echo "through each balancer under \`valgrind --tool=callgrind\`: the instructions its process executed in user space, all threads"
	echo "(the kernel's share, system calls included, is not counted)"
	echo "to one RabbitMQ 3.10 node (Debian 12's package); amqplb in mode amqp, HAProxy $(haproxy -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p') in mode tcp; no health checks."
	echo "\"idle\" is the same process left alone for as long as the storm took (under callgrind): the background included in the storm's count."
	[ -n "$BEFORE" ] && echo "amqplb-before is $(git rev-parse --short "$BEFORE") ($(git log -1 --format=%s "$BEFORE" | cut -c1-80)); amqplb-now is $(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench/results' || echo ' plus uncommitted changes')."
	echo
	echo "| balancer | instructions per connection | storm total | idle, same length | storm length under callgrind |"
	echo "|---|---|---|---|---|"
	for r in "${results[@]}"; do
		read -r name idle storm took <<<"$r"
		printf '| %s | %s | %s | %s | %s s |\n' "$name" "$(( (storm - idle) / N ))" "$storm" "$idle" "$took"
	done
	echo
	echo "Instructions per connection = (storm total − idle) / $N."
} >"$report"
cat "$report"
