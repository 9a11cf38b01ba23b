#!/bin/sh
# `make compose-test`: compose.yaml run for real with Docker, with local stand-ins of its images
# (scripts/compose-images.sh), by e2e's TestComposeUp. Installs what it needs on Debian (Compose,
# debootstrap; root). Whatever happens, nothing of its compose project is left: the test removes
# it, and this script removes whatever a killed test left.
# Env: GO (default go), TEST_FLAGS (extra go test flags).
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
log() { echo "compose-test.sh: $*" >&2; }

command -v docker >/dev/null 2>&1 || { log "Docker is not installed (Debian: apt-get install docker.io)"; exit 1; }
docker info >/dev/null 2>&1 || { log "the Docker daemon does not answer"; exit 1; }
if ! docker compose version >/dev/null 2>&1 && ! docker-compose version >/dev/null 2>&1; then
	log "installing docker-compose"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

project="amqplbtest$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
sweep() {
	label="label=com.docker.compose.project=$project"
	c=$(docker ps -aq --filter "$label")
	[ -z "$c" ] || docker rm -f $c >/dev/null || true
	n=$(docker network ls -q --filter "$label")
	[ -z "$n" ] || docker network rm $n >/dev/null || true
	v=$(docker volume ls -q --filter "$label")
	[ -z "$v" ] || docker volume rm $v >/dev/null || true
}
trap sweep EXIT
trap 'exit 130' INT TERM

export AMQPLB_COMPOSE_TEST=1 AMQPLB_COMPOSE_PROJECT="$project"
# shellcheck disable=SC2086 # TEST_FLAGS is a list
$GO test -count=1 -timeout 20m -run '^TestComposeUp$' -v ${TEST_FLAGS:-} ./e2e/
