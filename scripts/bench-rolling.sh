#!/usr/bin/env bash
# `make bench-rolling`: a rolling restart of a 3-node RabbitMQ 3.10 cluster under long-lived,
# reconnecting clients, through amqplb and through HAProxy, one after the other.
#
# Boots the cluster (as `make bench` does), amqplb (roundrobin, AMQP check with the management
# API, so that it sees maintenance mode, and [backend.rebalance]) and HAProxy from Debian
# (mode tcp, roundrobin, check inter 1s). For each proxy, `amqplb-bench rolling` holds CLIENTS
# connections through it while each node in turn is drained (rabbitmq-upgrade drain), stopped
# (rabbitmqctl stop_app), started (start_app) and revived (rabbitmq-upgrade revive), STEP apart,
# and counts every node's connections from the brokers' Prometheus endpoints. The cluster ends
# each run as it started. Writes bench/results/<date>-rolling.md, .json and .svg. Everything it
# started is stopped on exit; all traffic stays on 127.0.0.1.
# Env: CLIENTS (default 60), STEP (default 8s), TAIL (time after the last step, default 20s).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
CLIENTS=${CLIENTS:-60}
STEP=${STEP:-8s}
TAIL=${TAIL:-20s}
date=$(date -u +%Y-%m-%d)
out=bench/results
mkdir -p "$out"
report="$out/$date-rolling.md"

./scripts/install-test-deps.sh
$GO build -o bin/amqplb ./cmd/amqplb
$GO build -o bin/amqplb-bench ./cmd/amqplb-bench
$GO build -o bin/rabbitcluster ./internal/testenv/cmd/rabbitcluster

work=$(mktemp -d /tmp/amqplb-bench-rolling.XXXXXX)
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
cluster="$work/cluster/cluster.json"
nodes=(rmq1 rmq2 rmq3)
field() { jq -r --arg n "$1" ".nodes[] | select(.name == \$n) | .$2 // \"\"" "$cluster"; }

# ctl-NODE.sh TOOL ARGS...: rabbitmqctl or rabbitmq-upgrade for one node, with the environment
# internal/testenv gives its CLI (Node.Rabbitmqctl): the node's HOME (cookie), epmd port and
# files, as the node's user.
for n in "${nodes[@]}"; do
	dir=$(field "$n" dir) user=$(field "$n" user) nodename=$(field "$n" node_name)
	[ -n "$dir" ] && [ -n "$nodename" ] || { cat "$work/up.log"; exit 1; }
	runas=""
	[ -n "$user" ] && runas="setpriv --reuid=$user --regid=$user --init-groups"
	cat >"$work/ctl-$n.sh" <<SH
#!/bin/sh
tool=\$1; shift
cd '$dir' && exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \\
	HOME='$(field "$n" home)' LANG=C.UTF-8 LC_ALL=C.UTF-8 \\
	ERL_EPMD_PORT=$(field "$n" epmd_port) RABBITMQ_NODENAME='$nodename' RABBITMQ_USE_LONGNAME=false \\
	RABBITMQ_DIST_PORT=$(field "$n" dist_port) RABBITMQ_CONFIG_FILE='$dir/rabbitmq' \\
	RABBITMQ_ADVANCED_CONFIG_FILE='$dir/advanced.config' RABBITMQ_CONF_ENV_FILE='$dir/rabbitmq-env.conf' \\
	RABBITMQ_ENABLED_PLUGINS_FILE='$dir/enabled_plugins' RABBITMQ_MNESIA_BASE='$dir/mnesia' \\
	RABBITMQ_LOG_BASE='$dir/log' RABBITMQ_FEATURE_FLAGS_FILE='$dir/feature_flags' \\
	RABBITMQ_PID_FILE='$dir/rabbitmq.pid' \\
	$runas /usr/lib/rabbitmq/bin/\$tool -n '$nodename' "\$@"
SH
	chmod 755 "$work/ctl-$n.sh"
done
"$work/ctl-rmq1.sh" rabbitmqctl cluster_status >/dev/null || { echo "rabbitmqctl does not reach rmq1" >&2; exit 1; }

port() { field "$1" "$2"; }
# Ports: amqplb 5690, HAProxy 5680.
cat >"$work/amqplb.toml" <<TOML
[global]
max_connections = 20000
access_log = false
log_level = "info"

[admin]
listen = "127.0.0.1:8405"

[[frontend]]
name = "cluster"
bind = "127.0.0.1:5690"
backend = "cluster"

[[backend]]
name = "cluster"
balance = "roundrobin"
connect_timeout = "2s"
[backend.health_check]
type = "amqp"
interval = "1s"
rise = 2
fall = 3
management = { port = $(port rmq1 management_port) }
[backend.rebalance]
enabled = true
min_age = "5s"
rate = "5/s"
TOML
for n in "${nodes[@]}"; do
	cat >>"$work/amqplb.toml" <<TOML
[[backend.server]]
name = "$n"
address = "127.0.0.1:$(port "$n" amqp_port)"
management_port = $(port "$n" management_port)
TOML
done

{
	cat <<CFG
global
	maxconn 4000
defaults
	mode tcp
	timeout connect 2s
	timeout client 3h
	timeout server 3h
	retries 3
	option redispatch
listen cluster
	bind 127.0.0.1:5680
	balance roundrobin
CFG
	for n in "${nodes[@]}"; do
		printf '\tserver %s 127.0.0.1:%s check inter 1s rise 2 fall 3\n' "$n" "$(port "$n" amqp_port)"
	done
} >"$work/haproxy.cfg"

bin/amqplb -f "$work/amqplb.toml" 2>"$work/amqplb.log" &
pids+=("$!")
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=("$!")
sleep 4 # both see every server up (rise 2 at 1s)
for p in "${pids[@]}"; do
	if ! kill -0 "$p" 2>/dev/null; then
		echo "a proxy did not start:" >&2
		cat "$work/amqplb.log" "$work/haproxy.log" >&2
		exit 1
	fi
done

steps=()
for n in "${nodes[@]}"; do
	c="$work/ctl-$n.sh"
	steps+=(-step "$n drain=$c rabbitmq-upgrade drain" -step "$n stop_app=$c rabbitmqctl stop_app"
		-step "$n start_app=$c rabbitmqctl start_app" -step "$n revive=$c rabbitmq-upgrade revive")
done
args=(-cluster "$cluster" -clients "$CLIENTS" -step-gap "$STEP" -sample 500ms -duration "$TAIL" "${steps[@]}")

{
	echo "# amqplb-bench rolling, $date"
	echo
	echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)."
	echo "Versions: $($GO version | cut -d' ' -f3), $(haproxy -v | head -1 | cut -d' ' -f1-3), RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server), amqplb $(bin/amqplb -version | cut -d' ' -f2)."
	echo
	echo "$CLIENTS reconnecting clients (delay 0.5 s ±50 %, doubled per failed attempt up to 5 s) held"
	echo "through each proxy while each node in turn is drained, stopped, started and revived, $STEP apart;"
	echo "then $TAIL more. Counts are the brokers' own (rabbitmq_connections). amqplb: roundrobin, amqp check"
	echo "every 1 s with the management API, rebalance (min_age 5s, rate 5/s). HAProxy: roundrobin,"
	echo "check inter 1s. One run per proxy, on one cluster, one after the other."
	echo
	echo '`amqplb-bench rolling -target amqplb=… -target haproxy=… -cluster cluster.json -clients '"$CLIENTS"' -step-gap '"$STEP"' -duration '"$TAIL"' -step "rmq1 drain=…" …`'
	echo
} >"$report"

echo "== rolling restart, amqplb then HAProxy"
bin/amqplb-bench rolling -target amqplb=127.0.0.1:5690 -target haproxy=127.0.0.1:5680 "${args[@]}" \
	-md "$work/rolling.md" -json "$out/$date-rolling.json" -svg "$out/$date-rolling.svg" | tee "$work/rolling.txt" || true
cat "$work/rolling.md" >>"$report" 2>/dev/null || echo "(this run failed: see the output above)" >>"$report"
printf '\n![rolling restart](%s)\n\n```\n' "$date-rolling.svg" >>"$report"
sed -n '/, round 1:$/,$p' "$work/rolling.txt" | grep -v '^  [ 0-9.]*s  rmq' >>"$report" || true
printf '```\n' >>"$report"
grep -c 'rebalance: closed a session' "$work/amqplb.log" | sed 's/^/amqplb rebalance closes: /' || true

echo
echo "results: $report"
