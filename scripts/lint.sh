#!/usr/bin/env bash
# `make lint`: staticcheck (pinned), and the builds for macOS and Windows, where amqplb runs
# without its Linux relay (see proxy/relay_other.go), with go vet there too: vet compiles the
# test files, which `make test-unit` runs on those systems. Part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
STATICCHECK_VERSION=v0.8.2
$GO run honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION ./...
for os in darwin windows; do
	GOOS=$os GOARCH=amd64 $GO build -o /dev/null ./... || { echo "lint: GOOS=$os build failed" >&2; exit 1; }
	GOOS=$os GOARCH=amd64 $GO vet ./... || { echo "lint: GOOS=$os vet failed" >&2; exit 1; }
done
