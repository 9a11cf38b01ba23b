#!/usr/bin/env bash
# `make test`: gofmt, vet, staticcheck and the macOS/Windows builds (scripts/lint.sh), then every test (-race) against freshly booted
# 3-node RabbitMQ clusters (internal/testenv), which are stopped on exit whatever happens: a 3.10 one (the host's package,
# AMQPLB_TEST_CLUSTER) and a 4.0 one (Debian 13's, from a cached trixie root built on first use, AMQPLB_TEST_CLUSTER_4).
# Both boot (~50 s; building the 4.0 root the first time adds a minute or two) while vet and the test builds run.
# Then, on the same clusters, the fault matrix (scripts/faults.sh; FAULTS=0 skips it), its table in
# FAULTS_RESULTS (default: artifacts/faults-results.md under AMQPLB_ARTIFACTS, else the clusters' directory).
# Env: GO (default go), PKGS (default ./...), TEST_FLAGS (extra go test flags), KEEP_CLUSTER_DIR=1 to
# keep the clusters' directory (logs) after a success; it is kept after a failure. RABBITMQ4=0 skips the
# 4.0 cluster (its tests skip, or fail under AMQPLB_REQUIRE_BROKERS=1); the default boots it when run as
# root (chroot needs it), RABBITMQ4=1 always.
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
up4_pid=""
rabbitmq4=${RABBITMQ4:-auto}
if [ "$rabbitmq4" = auto ]; then
	if [ "$(id -u)" -eq 0 ]; then rabbitmq4=1; else rabbitmq4=0; fi
fi
cleanup() {
	rc=$?
	for pid in $up_pid $up4_pid; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true # up stops what it started
			wait "$pid" 2>/dev/null || true
		fi
	done
	if [ -x "$bin" ]; then
		down4_pid=""
		if [ "$rabbitmq4" = 1 ]; then
			"$bin" down -dir "$dir/cluster4" >/dev/null &
			down4_pid=$!
		fi
		"$bin" down -dir "$dir/cluster" >/dev/null || rc=1
		if [ -n "$down4_pid" ]; then wait "$down4_pid" || rc=1; fi
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
if [ "$rabbitmq4" = 1 ]; then
	"$bin" up -dir "$dir/cluster4" -rabbitmq 4.0 >"$dir/up4.log" 2>&1 &
	up4_pid=$!
fi

# shellcheck disable=SC2086 # PKGS is a list of packages
$GO vet $PKGS
./scripts/lint.sh
# Build every test binary while the cluster boots.
# shellcheck disable=SC2086
$GO test -race -count=1 -run '^$' $PKGS >/dev/null
# While the clusters boot: the proxy's tests once more with every idle session parked after 1 ms,
# so that parking and unparking (proxy/park.go) run under every one of those tests' traffic.
if [ "$PKGS" = ./... ]; then
	AMQPLB_TEST_PARK_AFTER=1ms $GO test -race -count=1 ./proxy/
fi

if ! wait "$up_pid"; then
	up_pid=""
	cat "$dir/up.log" >&2
	exit 1
fi
up_pid=""
cat "$dir/up.log"
if [ -n "$up4_pid" ]; then
	if ! wait "$up4_pid"; then
		up4_pid=""
		cat "$dir/up4.log" >&2
		exit 1
	fi
	up4_pid=""
	cat "$dir/up4.log"
	export AMQPLB_TEST_CLUSTER_4="$dir/cluster4/cluster.json"
fi

export AMQPLB_TEST_CLUSTER="$dir/cluster/cluster.json"
# -p 1: packages share the clusters, and broker tests pause and kill their nodes.
# shellcheck disable=SC2086 # TEST_FLAGS and PKGS are lists
$GO test -race -count=1 -p 1 -timeout 20m ${TEST_FLAGS:-} $PKGS

# The fault matrix on the same clusters (each row restores what it broke): no second boot.
if [ "${FAULTS:-1}" = 1 ] && [ "$PKGS" = ./... ]; then
	faults_results=${FAULTS_RESULTS:-${AMQPLB_ARTIFACTS:-$dir}/faults-results.md}
	FAULTS_RESULTS="$faults_results" GO="$GO" RABBITMQ4="$rabbitmq4" ./scripts/faults.sh
	cat "$faults_results"
fi
