#!/usr/bin/env bash
# `make faults`: the fault matrix (package faults) against a freshly booted 3-node RabbitMQ 3.10
# cluster (internal/testenv), stopped on exit whatever happens; the table goes to FAULTS_RESULTS.
# Env: GO (default go), FAULTS_RUN (a go test -run pattern: a subset of the rows; default all),
# FAULTS_RESULTS (default faults/results.md), FAULTS_STRICT=1 (a missed timing goal fails the run;
# by default it is only written to the table), AMQPLB_TEST_CLUSTER (use that cluster instead of
# booting one). Needs root for the rows that use iptables (they are skipped in part without it).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
results=${FAULTS_RESULTS:-faults/results.md}
case "$results" in /*) ;; *) results="$PWD/$results" ;; esac

dir=""
bin=""
cleanup() {
	rc=$?
	if [ -n "$dir" ]; then
		"$bin" down -dir "$dir/cluster" >/dev/null || rc=1
		if [ "$rc" -eq 0 ]; then rm -rf "$dir"; else echo "faults.sh: cluster directory (logs) kept in $dir" >&2; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${AMQPLB_TEST_CLUSTER:-}" ]; then
	dir=$(mktemp -d "${TMPDIR:-/tmp}/amqplb-faults.XXXXXX")
	chmod 755 "$dir" # the nodes run as user rabbitmq when we are root
	bin="$dir/rabbitcluster"
	$GO build -o "$bin" ./internal/testenv/cmd/rabbitcluster
	"$bin" up -dir "$dir/cluster"
	export AMQPLB_TEST_CLUSTER="$dir/cluster/cluster.json"
fi
AMQPLB_FAULTS=1 AMQPLB_FAULTS_RESULTS="$results" AMQPLB_REQUIRE_BROKERS=1 AMQPLB_FAULTS_STRICT="${FAULTS_STRICT:-0}" \
	$GO test -count=1 -p 1 -v -timeout 30m -run "${FAULTS_RUN:-.}" ./faults/
echo "faults.sh: results in $results"
