#!/usr/bin/env bash
# `make fuzz`: every parser fuzz target, one after the other, each for FUZZTIME (default 60s;
# CI uses 10s). A target's seed corpus is its f.Add seeds plus testdata/fuzz/FuzzX/ in its
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
inputs() { { ls "$1" 2>/dev/null || true; } | wc -l; }
for t in $targets; do
	pkg=${t%%:*} fn=${t#*:}
	echo "fuzz: $pkg $fn for $FUZZTIME"
	start=$(date +%s)
	corpus="$pkg/testdata/fuzz/$fn"
	before=$(inputs "$corpus")
	# -parallel 2: the machines that run this have 2 cores, and more workers only contend.
	for try in 1 2; do
		if $GO test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" -parallel 2 "$pkg"; then
			ok=1
			break
		fi
		ok=0
		# A failure that wrote no input is Go's own race at the end of a duration -fuzztime
		# ("context deadline exceeded", golang/go#75804, fixed in Go 1.27): once more. A
		# count (FUZZTIME=10000x) does not hit it.
		if [ "$(inputs "$corpus")" != "$before" ] || [ "$try" = 2 ]; then
			break
		fi
		echo "fuzz: $pkg $fn failed without a failing input (golang/go#75804); once more" >&2
	done
	if [ "$ok" = 0 ]; then
		failed="$failed $pkg:$fn"
		echo "fuzz: $pkg $fn FAILED; a failing input, if any, is in $corpus/ (rerun: $GO test -run '$fn/NAME' $pkg)" >&2
	fi
	echo "fuzz: $pkg $fn took $(($(date +%s) - start))s"
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
