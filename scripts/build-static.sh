#!/bin/sh
# Static, stripped amqplb and amqplb-bench into OUTDIR (default bin/static), exactly as the
# Dockerfile builds them: CGO_ENABLED=0, so they run on a distroless/static or scratch image
# that has no C library. The e2e tests run this script and check the result is static.
# Env: GO (default go), VERSION (default: `git describe`, else the module's build info).
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=${1:-bin/static}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || true)}
ldflags="-s -w"
if [ -n "$version" ]; then
	ldflags="$ldflags -X main.version=$version"
fi
mkdir -p "$out"
for cmd in amqplb amqplb-bench; do
	CGO_ENABLED=0 $GO build -trimpath -ldflags "$ldflags" -o "$out/$cmd" "./cmd/$cmd"
done
