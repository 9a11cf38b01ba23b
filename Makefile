# amqplb — the two commands a newcomer needs:
#   make run    start a local 3-node RabbitMQ cluster (unless BROKERS is given) and amqplb in front of it
#   make test   install what the tests need, boot one test cluster, run vet and every test (-race)
GO      ?= go
BROKERS ?=
CLUSTER := $(GO) run ./internal/testenv/cmd/rabbitcluster

.PHONY: all build run test test-unit deps vet lint fuzz faults soak bench-compare bench-instructions cluster-up cluster-down bench bench-rolling gobench bench-e2e clean

all: build

build:
	$(GO) build -o bin/amqplb ./cmd/amqplb
	$(GO) build -o bin/amqplb-bench ./cmd/amqplb-bench

## run: amqplb on 127.0.0.1:5672 in front of BROKERS (host:port,host:port,...) or of a local cluster.
run: build
	BROKERS="$(BROKERS)" ./scripts/run.sh

## deps: what the tests need on a fresh Debian machine (gcc for -race, RabbitMQ, HAProxy, Chromium).
deps:
	./scripts/install-test-deps.sh

## test: deps, vet, then every test with -race against one freshly booted 3-node cluster.
test: deps
	./scripts/test.sh

## test-unit: the fast tests only (no broker needed; broker tests skip).
test-unit:
	$(GO) test -race ./...

vet:
	$(GO) vet ./...

## fuzz: every parser fuzz target (PROXY header, AMQP 0-9-1 and 1.0 frames, TOML, haproxy.cfg),
## each for FUZZTIME (default 60s; CI: 10s). A failing input lands in the package's testdata/fuzz/.
FUZZTIME ?= 60s
fuzz:
	GO="$(GO)" FUZZTIME="$(FUZZTIME)" ./scripts/fuzz.sh

## faults: the fault matrix (SIGKILL, SIGSTOP, drain, alarm, reload, SIGTERM, flood, slowloris, …) against a
## freshly booted 3-node cluster, amqplb and HAProxy side by side, into faults/results.md. FAULTS_RUN=<regexp>
## runs some rows only.
faults: deps
	GO="$(GO)" FAULTS_RUN="$(FAULTS_RUN)" FAULTS_RESULTS="$(FAULTS_RESULTS)" ./scripts/faults.sh

## soak: 10 minutes (SOAK_DURATION) of pubsub through amqplb, a node restarted every 2 minutes and a
## reload every minute; amqplb's RSS, fds and goroutines sampled. Into faults/soak.md. Not in CI.
soak: deps
	AMQPLB_SOAK=1 SOAK_DURATION="$(SOAK_DURATION)" GO="$(GO)" FAULTS_RUN='^TestSoak$$' FAULTS_RESULTS=faults/soak.md ./scripts/faults.sh

## lint: staticcheck (pinned version) and the GOOS=darwin / GOOS=windows builds.
lint:
	./scripts/lint.sh

## bench: the amqplb-bench suite, amqplb and HAProxy side by side, into bench/results/<date>.md.
bench:
	./scripts/bench.sh

## bench-rolling: a rolling restart (drain, stop, start, revive each node) under reconnecting clients,
## amqplb and HAProxy one after the other, into bench/results/<date>-rolling.md and .svg.
bench-rolling:
	./scripts/bench-rolling.sh

## bench-compare: two builds of amqplb (BEFORE=<git rev> and the working tree) side by side with
## the broker itself in one run: pubsub 128 B and storm, into bench/results/<date>-compare.md.
bench-compare:
	BEFORE="$(BEFORE)" ./scripts/bench-compare.sh

## bench-instructions: instructions per proxied AMQP connection (valgrind callgrind: repeatable where
## time is not), amqplb and HAProxy in one run, BEFORE=<git rev> adds that build of amqplb; into
## bench/results/<date>-instructions.md.
bench-instructions:
	BEFORE="$(BEFORE)" N="$(N)" ./scripts/bench-instructions.sh

## gobench: Go benchmarks (figures, not assertions): balancer picks, proxy throughput, idle cost and storms, the sessions API.
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./balancer/ ./proxy/ ./admin/ ./cmd/amqplb/

## bench-e2e: amqplb and HAProxy side by side with a frozen broker (needs `make cluster-up` first).
bench-e2e:
	AMQPLB_TEST_CLUSTER=$(CURDIR)/.cluster/dev/cluster.json $(GO) test -run '^$$' -bench FrozenBroker -benchtime 1x ./e2e/

cluster-up:
	$(CLUSTER) up -dir $(CURDIR)/.cluster/dev

cluster-down:
	$(CLUSTER) down -dir $(CURDIR)/.cluster/dev

clean:
	rm -rf bin

.PHONY: compose-test
## compose-test: compose.yaml run for real (Docker; local stand-in images, nothing pulled; root).
compose-test:
	GO="$(GO)" ./scripts/compose-test.sh

.PHONY: deb deb-test
## deb: the Debian package (dpkg-deb) into bin/: amqplb, /etc/amqplb/amqplb.toml, amqplb.service.
deb:
	GO="$(GO)" ./scripts/deb.sh bin

## deb-test: lintian, then dpkg -i of the package on this machine, checks, dpkg --purge (root).
deb-test:
	AMQPLB_DEB_TEST=1 $(GO) test -count=1 -run '^TestDeb' -v ./deploy/

.PHONY: run-test
## run-test: make run as a newcomer does (root, checkout in a mode-700 directory, 5672 taken).
run-test:
	AMQPLB_RUN_TEST=1 $(GO) test -count=1 -timeout 15m -run '^TestMakeRunAsNewcomer$$' -v ./e2e/
