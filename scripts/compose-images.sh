#!/bin/sh
# compose-images.sh: builds the local stand-ins of compose.yaml's two images, for machines that
# cannot pull from a registry (the tests), and prints them as variables for compose.yaml:
#   RABBITMQ_IMAGE=amqplb-local/rabbitmq:bookworm-management   Debian 12's RabbitMQ 3.10.8
#   AMQPLB_IMAGE=amqplb-local/amqplb:scratch                    this checkout's amqplb
# RabbitMQ: a debootstrap root (scripts/rootfs.sh, cached) imported with `docker import`, plus
# deploy/docker/rabbitmq-debian/. amqplb: scripts/build-static.sh's binaries, built with the
# host's Go, on `FROM scratch` (deploy/docker/amqplb-scratch/). Pulls nothing. Only what changed
# is rebuilt (the root is imported again only when its tarball changed; docker's build cache).
# Env: SUITE (default bookworm), GO, VERSION (see build-static.sh).
set -eu
cd "$(dirname "$0")/.."
suite=${SUITE:-bookworm}
log() { echo "compose-images.sh: $*" >&2; }

command -v docker >/dev/null 2>&1 || { log "docker is not installed"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/amqplb-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
ctx=$work/context
# quiet runs a docker command, showing its messages only when it fails (the legacy builder's
# deprecation notice otherwise).
quiet() { "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }; }

# RabbitMQ.
tarball=$(scripts/rootfs.sh "$suite")
stamp=$(stat -c '%Y-%s' "$tarball")
root=amqplb-local/debian-rabbitmq-root:$suite
if [ "$(docker image inspect -f '{{index .Config.Labels "org.amqplb.rootfs"}}' "$root" 2>/dev/null)" != "$stamp" ]; then
	log "importing $tarball as $root"
	quiet docker import -c "LABEL org.amqplb.rootfs=$stamp" "$tarball" "$root"
fi
rabbitmq=amqplb-local/rabbitmq:$suite-management
quiet docker build --build-arg BASE="$root" -t "$rabbitmq" deploy/docker/rabbitmq-debian

# amqplb: a build context of the static binaries and what distroless provides.
sh scripts/build-static.sh "$ctx/bin"
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/home/nonroot"
chmod 1777 "$ctx/rootfs/tmp"
chown 65532:65532 "$ctx/rootfs/home/nonroot" 2>/dev/null || true
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
certs=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$certs" ]; then
	log "installing ca-certificates"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null
fi
cp "$certs" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
cp deploy/compose/amqplb.toml "$ctx/amqplb.toml"
cp deploy/docker/amqplb-scratch/Dockerfile "$ctx/Dockerfile"
amqplb=amqplb-local/amqplb:scratch
quiet docker build -t "$amqplb" "$ctx"

# The images these replaced, untagged now.
quiet docker image prune -f --filter label=org.amqplb.local=1

echo "RABBITMQ_IMAGE=$rabbitmq"
echo "AMQPLB_IMAGE=$amqplb"
