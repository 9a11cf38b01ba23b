#!/usr/bin/env bash
# `make test`: gofmt, vet, staticcheck and the macOS/Windows builds (scripts/lint.sh), then every test (-race) against one freshly booted 3-node
# RabbitMQ cluster (internal/testenv), which is stopped on exit whatever happens.
# The cluster boots (~50 s) while vet and the test builds run.
# Env: GO (default go), PKGS (default ./...), TEST_FLAGS (extra go test flags), KEEP_CLUSTER_DIR=1 to
# keep the cluster's directory (logs) after a success; it is kept after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
PKGS=${PKGS:-./...}

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cluster/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt: these files need formatting:" >&2
	echo "$unformatted" >&2
	exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/amqplb-test.XXXXXX")
chmod 755 "$dir" # the nodes run as user rabbitmq when we are root
bin="$dir/rabbitcluster"
up_pid=""
cleanup() {
	rc=$?
	if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
		kill -TERM "$up_pid" 2>/dev/null || true # up stops what it started
		wait "$up_pid" 2>/dev/null || true
	fi
	if [ -x "$bin" ]; then
		"$bin" down -dir "$dir/cluster" >/dev/null || rc=1
	fi
	if [ "$rc" -eq 0 ] && [ "${KEEP_CLUSTER_DIR:-}" != 1 ]; then
		rm -rf "$dir"
	else
		echo "test.sh: cluster directory (logs) kept in $dir" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

$GO build -o "$bin" ./internal/testenv/cmd/rabbitcluster
"$bin" up -dir "$dir/cluster" >"$dir/up.log" 2>&1 &
up_pid=$!

# shellcheck disable=SC2086 # PKGS is a list of packages
$GO vet $PKGS
./scripts/lint.sh
# Build every test binary while the cluster boots.
# shellcheck disable=SC2086
$GO test -race -count=1 -run '^$' $PKGS >/dev/null

if ! wait "$up_pid"; then
	up_pid=""
	cat "$dir/up.log" >&2
	exit 1
fi
up_pid=""
cat "$dir/up.log"

export AMQPLB_TEST_CLUSTER="$dir/cluster/cluster.json"
# -p 1: packages share the cluster, and broker tests pause and kill its nodes.
# shellcheck disable=SC2086 # TEST_FLAGS and PKGS are lists
$GO test -race -count=1 -p 1 -timeout 20m ${TEST_FLAGS:-} $PKGS
