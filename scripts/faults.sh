#!/usr/bin/env bash
# `make faults`: the fault matrix (package faults) against freshly booted 3-node RabbitMQ clusters
# (internal/testenv): a 3.10 one for every row and, as root, a 4.0 one for the rows that also run on
# 4.0 (confirmed messages across a node kill). Both boot at once and are stopped on exit whatever
# happens; the table goes to FAULTS_RESULTS.
# Env: GO (default go), FAULTS_RUN (a go test -run pattern: a subset of the rows; default all),
# FAULTS_RESULTS (default faults/results.md), FAULTS_STRICT=1 (a missed timing goal fails the run;
# by default it is only written to the table), AMQPLB_TEST_CLUSTER / AMQPLB_TEST_CLUSTER_4 (use
# those clusters instead of booting them: `make test` runs the matrix on its own clusters this way),
# RABBITMQ4=0 (no 4.0 cluster: the rows' 4.0 runs are skipped, and say so). Needs root for the rows
# that use iptables and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
results=${FAULTS_RESULTS:-faults/results.md}
case "$results" in /*) ;; *) results="$PWD/$results" ;; esac
rabbitmq4=${RABBITMQ4:-auto}
if [ "$rabbitmq4" = auto ]; then
	if [ "$(id -u)" -eq 0 ]; then rabbitmq4=1; else rabbitmq4=0; fi
fi

dir=""
bin=""
booted=""
up_pids=""
cleanup() {
	rc=$?
	for pid in $up_pids; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true # up stops what it started
			wait "$pid" 2>/dev/null || true
		fi
	done
	for c in $booted; do
		"$bin" down -dir "$dir/$c" >/dev/null || rc=1
	done
	if [ -n "$dir" ]; then
		if [ "$rc" -eq 0 ]; then rm -rf "$dir"; else echo "faults.sh: cluster directory (logs) kept in $dir" >&2; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

boot() { # boot NAME [up flags]: in the background; its pid in up_pids
	local name=$1
	shift
	if [ -z "$dir" ]; then
		dir=$(mktemp -d "${TMPDIR:-/tmp}/amqplb-faults.XXXXXX")
		chmod 755 "$dir" # the nodes run as user rabbitmq when we are root
		bin="$dir/rabbitcluster"
		$GO build -o "$bin" ./internal/testenv/cmd/rabbitcluster
	fi
	booted="$booted $name"
	"$bin" up -dir "$dir/$name" "$@" >"$dir/$name.log" 2>&1 &
	up_pids="$up_pids $!"
}
if [ -z "${AMQPLB_TEST_CLUSTER:-}" ]; then
	boot cluster
	export AMQPLB_TEST_CLUSTER="$dir/cluster/cluster.json"
fi
if [ -z "${AMQPLB_TEST_CLUSTER_4:-}" ] && [ "$rabbitmq4" = 1 ]; then
	boot cluster4 -rabbitmq 4.0
	export AMQPLB_TEST_CLUSTER_4="$dir/cluster4/cluster.json"
fi
for pid in $up_pids; do
	if ! wait "$pid"; then
		cat "$dir"/*.log >&2
		exit 1
	fi
done
up_pids=""
AMQPLB_FAULTS=1 AMQPLB_FAULTS_RESULTS="$results" AMQPLB_REQUIRE_BROKERS=1 AMQPLB_FAULTS_RABBITMQ4="$rabbitmq4" AMQPLB_FAULTS_STRICT="${FAULTS_STRICT:-0}" \
	$GO test -count=1 -p 1 -v -timeout 30m -run "${FAULTS_RUN:-.}" ./faults/
echo "faults.sh: results in $results"
