#!/usr/bin/env bash
# `make fuzz`: every parser fuzz target, one after the other, each for FUZZTIME (default 60s;
# CI uses 15s). A target's seed corpus is its f.Add seeds plus testdata/fuzz/FuzzX/ in its
# package; a failing input is written there by go test, so it can be committed as a regression.
# Env: GO (default go), FUZZTIME (a go test -fuzztime value: 60s, 10000x), FUZZ_TARGETS (a
# space-separated subset of the PKG:FUNC list below).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
all="./proxy:FuzzReadProxyHeader
./internal/amqpwire:FuzzReadFrame
./internal/amqpwire:FuzzSASLUser
./internal/amqpwire:FuzzDecodeStartOk
./config:FuzzParse
./config/haproxycfg:FuzzHAProxy
./internal/amqp10:FuzzReadFrame
./internal/amqp10:FuzzPerformative
./internal/amqp10:FuzzParseSASLInit
./internal/amqp10:FuzzParseOpen"
targets=${FUZZ_TARGETS:-$all}
failed=""
for t in $targets; do
	pkg=${t%%:*} fn=${t#*:}
	echo "fuzz: $pkg $fn for $FUZZTIME"
	start=$(date +%s)
	# -parallel 2: the machines that run this have 2 cores, and more workers only contend.
	if ! $GO test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" -parallel 2 "$pkg"; then
		failed="$failed $pkg:$fn"
		echo "fuzz: $pkg $fn FAILED; the input is in $pkg/testdata/fuzz/$fn/ (rerun: $GO test -run '$fn/NAME' $pkg)" >&2
	fi
	echo "fuzz: $pkg $fn took $(($(date +%s) - start))s"
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
