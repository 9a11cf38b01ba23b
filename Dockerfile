# amqplb container image: static binaries on distroless, running as a non-root user.
#
#   docker build --build-arg VERSION="$(git describe --always --dirty)" -t amqplb .
#   docker run --rm -p 5672:5672 -p 127.0.0.1:8404:8404 \
#     -v "$PWD/haproxy.cfg:/etc/amqplb/haproxy.cfg:ro" amqplb -f /etc/amqplb/haproxy.cfg -admin 0.0.0.0:8404
#
# The default command runs /etc/amqplb/amqplb.toml; mount yours there (compose.yaml mounts the
# directory, so that an edited file is what SIGHUP reloads). Without VERSION (.git is not sent to
# the build), `amqplb -version` says "devel".
# SIGTERM drains sessions for global.drain_timeout (30 s by default): give `docker stop` a
# longer -t, or compose a longer stop_grace_period, so clients are not cut at 10 s.
#
# Both base images are build arguments, defaulting to the public ones; point them at your
# registry's mirror, e.g. --build-arg BUILDER_IMAGE=registry.example/golang:1.26-bookworm.
# (Machines with no registry at all: scripts/compose-images.sh builds an equivalent image
# FROM scratch, deploy/docker/amqplb-scratch/.)

ARG BUILDER_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
RUN VERSION="$VERSION" sh ./scripts/build-static.sh /out

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/amqplb /out/amqplb-bench /usr/local/bin/
COPY deploy/compose/amqplb.toml /etc/amqplb/amqplb.toml
# 5672: AMQP frontend; 8404: status page, /metrics, /api/v1 (the [admin] listener).
EXPOSE 5672 8404
# distroless's nonroot user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/amqplb"]
CMD ["-f", "/etc/amqplb/amqplb.toml"]
