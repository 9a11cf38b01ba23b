#!/usr/bin/env bash
# `make run`: amqplb on 127.0.0.1:5672 with examples/amqplb.toml.
# Without BROKERS, it starts a local 3-node RabbitMQ cluster on 127.0.0.1:5673-5675 first (installing
# Debian's rabbitmq-server when missing and running as root) and stops it again when amqplb exits
# (Ctrl-C). With BROKERS=host:port,host:port,... it uses those brokers instead; their health checks
# log in as CHECK_USER / CHECK_PASSWORD (default guest/guest, which RabbitMQ accepts only from
# loopback).
#
# A port that is taken (Debian's rabbitmq-server listens on 5672 once installed, for one) is
# replaced by the next free one: the script says what holds it and prints the ports it uses.
# The cluster's data lives in a directory under /tmp that the nodes' user (rabbitmq, when run as
# root) can reach even when the checkout is in a private directory such as /root; it is removed
# on exit, and kept (with its logs) when the cluster failed to start.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BROKERS=${BROKERS:-}

# taken PORT: something accepts connections on 127.0.0.1:PORT (also true for 0.0.0.0 and [::]).
taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# holder PORT: what listens on PORT, e.g. "beam.smp (pid 812)", when ss can tell.
holder() {
	command -v ss >/dev/null 2>&1 || return 0
	ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1
}
chosen=" "
notes=()
# pick WANT FROM ROLE: sets port to WANT when it is free, else to the first free port from FROM on.
pick() {
	local want=$1 p=$1 role=$3 tries=0
	while taken "$p" || [[ $chosen == *" $p "* ]]; do
		if [ "$p" = "$want" ]; then p=$2; else p=$((p + 1)); fi
		tries=$((tries + 1))
		if [ "$tries" -gt 500 ]; then
			echo "run.sh: no free port for $role from $2 on" >&2
			exit 1
		fi
	done
	if [ "$p" != "$want" ]; then
		local who
		who=$(holder "$want")
		notes+=("port $want ($role) is taken${who:+ by $who}: using $p instead")
		if [ "$want" = 5672 ] && [[ $who == beam.smp* || $who == rabbitmq* ]]; then
			notes+=("  that looks like a RabbitMQ broker (Debian's rabbitmq-server starts one when installed);")
			notes+=("  to put amqplb in front of it instead of a new cluster: make run BROKERS=127.0.0.1:5672")
		fi
	fi
	chosen="$chosen$p "
	port=$p
}

pick 5672 5680 "amqplb's AMQP frontend"
amqp_port=$port
pick 8404 8405 "amqplb's status page"
admin_port=$port

work=$(mktemp -d /tmp/amqplb-run.XXXXXX)
chmod 755 "$work" # the nodes run as user rabbitmq when we are root
config=$work/amqplb.toml
cluster_dir=$work/cluster
cluster_up=""
keep=""
cleanup() {
	if [ -n "$cluster_up" ]; then
		"$work/rabbitcluster" down -dir "$cluster_dir" >/dev/null 2>&1 || true
	fi
	if [ -n "$keep" ]; then
		echo "run.sh: the cluster's logs are kept in $cluster_dir" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# The example with this run's frontend and admin ports.
sed -e "s/^bind    = \"127.0.0.1:5672\"/bind    = \"127.0.0.1:$amqp_port\"/" \
	-e "s/^listen = \"127.0.0.1:8404\"/listen = \"127.0.0.1:$admin_port\"/" \
	examples/amqplb.toml >"$config"

if [ -n "$BROKERS" ]; then
	# The example up to its first server, with the check user given, then one server per broker.
	sed -i -e '/^\[\[backend.server\]\]/,$d' \
		-e "s/^username = \"guest\"/username = \"${CHECK_USER:-guest}\"/" \
		-e "s/^password = \"guest\"/password = \"${CHECK_PASSWORD:-guest}\"/" \
		"$config"
	i=0
	IFS=, read -ra addrs <<<"$BROKERS"
	for a in "${addrs[@]}"; do
		i=$((i + 1))
		printf '[[backend.server]]\nname    = "rmq%d"\naddress = "%s"\n\n' "$i" "$a" >>"$config"
	done
	brokers=$BROKERS
else
	if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "RabbitMQ is not installed. Install it (sudo apt-get install rabbitmq-server) or give" >&2
			echo "brokers to use: make run BROKERS=127.0.0.1:5673,127.0.0.1:5674,127.0.0.1:5675" >&2
			exit 1
		fi
		./scripts/install-test-deps.sh
		# The package may have started its own broker on 5672 (where a service manager runs).
		if [ "$amqp_port" = 5672 ] && taken 5672; then
			chosen=" $admin_port "
			notes=()
			pick 5672 5680 "amqplb's AMQP frontend"
			amqp_port=$port
			sed -i "s/^bind    = \"127.0.0.1:5672\"/bind    = \"127.0.0.1:$amqp_port\"/" "$config"
		fi
	fi
	node_ports=()
	for want in 5673 5674 5675; do
		pick "$want" 5690 "a local RabbitMQ node"
		node_ports+=("$port")
		sed -i "s/^address = \"127.0.0.1:$want\"/address = \"127.0.0.1:$port\"/" "$config"
	done
	brokers="127.0.0.1:${node_ports[0]}, 127.0.0.1:${node_ports[1]}, 127.0.0.1:${node_ports[2]} (local cluster)"
fi

for n in "${notes[@]}"; do echo "run.sh: $n"; done

if [ -z "$BROKERS" ]; then
	$GO build -o "$work/rabbitcluster" ./internal/testenv/cmd/rabbitcluster
	echo "starting a local 3-node RabbitMQ cluster on 127.0.0.1:${node_ports[0]}, :${node_ports[1]}, :${node_ports[2]} (about a minute)..."
	echo "  its data and logs: $cluster_dir"
	cluster_up=1
	if ! "$work/rabbitcluster" up -dir "$cluster_dir" -ports "$(
		IFS=,
		echo "${node_ports[*]}"
	)"; then
		keep=1
		exit 1
	fi
fi

cat <<MSG

amqplb is starting with $config (examples/amqplb.toml with this run's ports)
  AMQP:         amqp://guest:guest@127.0.0.1:$amqp_port/
  brokers:      $brokers
  status page:  http://127.0.0.1:$admin_port/   (metrics: /metrics, API: /api/v1/backends)
Press Ctrl-C to stop amqplb${BROKERS:+.}${BROKERS:- and the local cluster.}

MSG
# amqplb handles SIGINT itself (drain, exit 0); the shell must not die of it before the EXIT trap.
trap '' INT
bin/amqplb -f "$config"
