#!/usr/bin/env bash
# `make bench-compare BEFORE=<git rev>`: two builds of amqplb side by side with the broker
# itself, in one run: pubsub (128 B with confirms, through one broker) and storm (connects over
# three brokers), in mode amqp. For "figures before and after" of a change on the data path.
#
# It builds amqplb at BEFORE (in a temporary worktree) and at the working tree, boots a 3-node
# RabbitMQ cluster, runs both builds on the same configuration, and writes
# bench/results/<date>-compare.md. Everything it started is stopped on exit.
# Env: BEFORE (required), ROUNDS (default 3), DURATION (default 10s), STORM_N (default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BEFORE=${BEFORE:?set BEFORE to the git revision to compare with}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
STORM_N=${STORM_N:-600}
date=$(date -u +%Y-%m-%d)
out=bench/results
mkdir -p "$out"
report="$out/$date-compare.md"

work=$(mktemp -d /tmp/amqplb-compare.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	"$work/rabbitcluster" down -dir "$work/cluster" >/dev/null 2>&1 || true
	git worktree remove --force "$work/before-src" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

git worktree add -q --detach "$work/before-src" "$BEFORE"
(cd "$work/before-src" && $GO build -o "$work/amqplb-before" ./cmd/amqplb)
$GO build -o "$work/amqplb-after" ./cmd/amqplb
$GO build -o "$work/amqplb-bench" ./cmd/amqplb-bench
$GO build -o "$work/rabbitcluster" ./internal/testenv/cmd/rabbitcluster

echo "booting a 3-node RabbitMQ cluster..."
"$work/rabbitcluster" up -dir "$work/cluster" >"$work/up.log"
node_port() { sed -n "s/^$1 .* amqp=127.0.0.1:\([0-9]*\) .*/\1/p" "$work/up.log"; }
n1=$(node_port rmq1) n2=$(node_port rmq2) n3=$(node_port rmq3)
[ -n "$n1" ] && [ -n "$n2" ] && [ -n "$n3" ] || { cat "$work/up.log"; exit 1; }

# config PORT_SINGLE PORT_CLUSTER ADMIN: the same configuration for both builds.
config() {
	cat <<TOML
[global]
max_connections = 20000
access_log = false
log_level = "warn"

[admin]
listen = "127.0.0.1:$3"

[[frontend]]
name = "single"
bind = "127.0.0.1:$1"
backend = "single"

[[frontend]]
name = "cluster"
bind = "127.0.0.1:$2"
backend = "cluster"

[[backend]]
name = "single"
[backend.health_check]
type = "amqp"
[[backend.server]]
name = "rmq1"
address = "127.0.0.1:$n1"

[[backend]]
name = "cluster"
[backend.health_check]
type = "amqp"
[[backend.server]]
name = "rmq1"
address = "127.0.0.1:$n1"
[[backend.server]]
name = "rmq2"
address = "127.0.0.1:$n2"
[[backend.server]]
name = "rmq3"
address = "127.0.0.1:$n3"
TOML
}
config 5771 5772 8471 >"$work/before.toml"
config 5781 5782 8481 >"$work/after.toml"
"$work/amqplb-before" -f "$work/before.toml" 2>"$work/before.log" &
pids+=($!)
"$work/amqplb-after" -f "$work/after.toml" 2>"$work/after.log" &
pids+=($!)
# Wait until each build reports its servers up (never a fixed sleep).
for admin in 8471 8481; do
	for _ in $(seq 1 300); do
		if curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 &&
			[ "$(curl -fsS "http://127.0.0.1:$admin/api/v1/backends" | grep -o '"state":"up"' | wc -l)" -ge 4 ]; then
			break
		fi
		sleep 0.1
	done
done

{
	echo "# amqplb before ($BEFORE) and after ($(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')), $date"
	echo
	echo "Machine: $(nproc) cores, kernel $(uname -r), RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server)."
	echo "Each figure is the median of $ROUNDS rounds per target; rounds alternate between targets."
	echo "Ratios are to the first column (the broker itself). The machine is shared: compare within a table."
} >"$report"
section() { printf '\n## %s\n\n`%s`\n\n' "$1" "$2" >>"$report"; }
single=(-target "direct=127.0.0.1:$n1" -target before=127.0.0.1:5771 -target after=127.0.0.1:5781)
cluster=(-target "direct=127.0.0.1:$n1" -target before=127.0.0.1:5772 -target after=127.0.0.1:5782)

section "pubsub, 128 B, confirms, through one broker" "amqplb-bench pubsub -size 128 -confirm 100 -duration $DURATION -rounds $ROUNDS"
"$work/amqplb-bench" pubsub "${single[@]}" -size 128 -confirm 100 -duration "$DURATION" -rounds "$ROUNDS" -md "$work/pubsub.md"
cat "$work/pubsub.md" >>"$report"
section "storm, $STORM_N connections at 20, over three brokers" "amqplb-bench storm -n $STORM_N -c 20 -rounds $ROUNDS"
"$work/amqplb-bench" storm "${cluster[@]}" -n "$STORM_N" -c 20 -rounds "$ROUNDS" -md "$work/storm.md"
cat "$work/storm.md" >>"$report"
echo
echo "results: $report"
