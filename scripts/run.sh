#!/usr/bin/env bash
# `make run`: amqplb on 127.0.0.1:5672 with examples/amqplb.toml.
# Without BROKERS, it starts a local 3-node RabbitMQ cluster on 127.0.0.1:5673-5675 first (installing
# Debian's rabbitmq-server when missing and running as root) and stops it again when amqplb exits
# (Ctrl-C). With BROKERS=host:port,host:port,... it uses those brokers instead; their health checks
# log in as CHECK_USER / CHECK_PASSWORD (default guest/guest, which RabbitMQ accepts only from
# loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BROKERS=${BROKERS:-}
config=examples/amqplb.toml
cluster_dir=$PWD/.cluster/run

if [ -n "$BROKERS" ]; then
	config=$(mktemp /tmp/amqplb-run.XXXXXX.toml)
	trap 'rm -f "$config"' EXIT
	# The example up to its first server, with the check user given, then one server per broker.
	sed -e '/^\[\[backend.server\]\]/,$d' \
		-e "s/^username = \"guest\"/username = \"${CHECK_USER:-guest}\"/" \
		-e "s/^password = \"guest\"/password = \"${CHECK_PASSWORD:-guest}\"/" \
		examples/amqplb.toml >"$config"
	i=0
	IFS=, read -ra addrs <<<"$BROKERS"
	for a in "${addrs[@]}"; do
		i=$((i + 1))
		printf '[[backend.server]]\nname    = "rmq%d"\naddress = "%s"\n\n' "$i" "$a" >>"$config"
	done
else
	if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "RabbitMQ is not installed. Install it (sudo apt-get install rabbitmq-server) or give" >&2
			echo "brokers to use: make run BROKERS=127.0.0.1:5673,127.0.0.1:5674,127.0.0.1:5675" >&2
			exit 1
		fi
		./scripts/install-test-deps.sh
	fi
	trap '$GO run ./internal/testenv/cmd/rabbitcluster down -dir "$cluster_dir"' EXIT
	echo "starting a local 3-node RabbitMQ cluster on 127.0.0.1:5673-5675 (about a minute)..."
	$GO run ./internal/testenv/cmd/rabbitcluster up -dir "$cluster_dir" -ports 5673,5674,5675
fi

cat <<MSG

amqplb is starting with $config
  AMQP:         amqp://guest:guest@127.0.0.1:5672/
  brokers:      ${BROKERS:-127.0.0.1:5673, 127.0.0.1:5674, 127.0.0.1:5675 (local cluster)}
  status page:  http://127.0.0.1:8404/   (metrics: /metrics, API: /api/v1/backends)
Press Ctrl-C to stop amqplb${BROKERS:+.}${BROKERS:- and the local cluster.}

MSG
# amqplb handles SIGINT itself (drain, exit 0); the shell must not die of it before the EXIT trap.
trap '' INT
bin/amqplb -f "$config"
