#!/bin/sh
# Installs what amqplb's tests need besides Go: a C compiler (go test -race needs
# cgo), RabbitMQ (Debian's rabbitmq-server, run by internal/testenv as local
# clusters), HAProxy (the comparison target of the benchmarks, and the recordings of
# `haproxy -c` and of its runtime API), socat (the runtime-socket e2e test), and Chromium with
# a font (the status-page test).
#
# Idempotent and quiet when everything is there. Needs root (or sudo) on Debian
# or Ubuntu. The package's own service is not used: on machines with an init
# system that starts it, it is stopped and disabled so that it holds no port.
set -eu

missing=""
# deploy/'s tests: prometheus (promtool check rules), keepalived (keepalived -t), lintian (make deb),
# curl (keepalived's check script). e2e: Debian's pika and qpid-proton, real AMQP 0-9-1 and 1.0 clients.
# make bench-rolling: jq. e2e's runtime-socket test: socat, as operators drive HAProxy's stats socket.
# make faults: iptables (half-open clients; network rows) and iproute2 (ip, tc).
for pkg in gcc libc6-dev rabbitmq-server haproxy chromium fonts-dejavu-core prometheus keepalived lintian curl \
	python3-pika python3-qpid-proton jq socat iptables iproute2; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $pkg"
	fi
done
if [ -z "$missing" ]; then exit 0; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "install-test-deps: need root to install:$missing" >&2; exit 1; }
	SUDO="sudo"
fi

echo "install-test-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Keep the packages' init scripts from starting services during install
# (no effect where no service manager runs).
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null

# A service the package started anyway (systemd) would take 5672 and 4369.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	$SUDO systemctl disable --now rabbitmq-server haproxy prometheus keepalived >/dev/null 2>&1 || true
fi
echo "install-test-deps: done" >&2
