# shadowbench Makefile. `make` alone lists the targets.

GO        ?= go
PKGS      ?= ./...
BENCHTIME ?= 1s
FUZZTIME  ?= 10s
CRASH_ROUNDS ?= 200
RESTART_GIB ?= 64
SOAK_DURATION ?= 60s
STATICCHECK_VERSION ?= v0.8.2

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every package and the shadowbench binary into bin/.
	$(GO) build $(PKGS)
	$(GO) build -o bin/shadowbench ./cmd/shadowbench

.PHONY: deps
deps: ## Install the Debian test tools (qemu-utils, libnbd-bin, fio, fuse3, nbdkit, protobuf-compiler, python3-grpcio) when root; otherwise list what is missing.
	@scripts/test-deps.sh

.PHONY: test
test: deps ## go vet, then every test under the race detector, and cow once without it.
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout 20m $(PKGS)
	@# Race builds copy with plain stores (cow/stream_other.go): run cow once
	@# without the detector so that the streamed copy is tested too.
	$(GO) test -count=1 ./cow/...

.PHONY: proto
proto: ## Regenerate provider/wire/wirepb and the Python sample's provider_pb2.py from provider/wire/provider.proto (needs protoc).
	@scripts/proto.sh

.PHONY: man
man: ## Write the man pages of every command into man/ (read one with man -l man/shadowbench.1).
	$(GO) run ./cmd/shadowbench man man

.PHONY: test-short
test-short: ## Tests without the race detector and without the real-client suites.
	$(GO) test -short $(PKGS)

.PHONY: bench
bench: ## Run the go test benchmarks (BENCHTIME=1s, PKGS=./...).
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) $(PKGS)

.PHONY: bench-commit
bench-commit: ## Commit latency only: cow Snapshot and the provider's CommitSnapshots.
	$(GO) test -run '^$$' -bench Commit -benchtime $(BENCHTIME) $(PKGS)

.PHONY: bench-restart
bench-restart: ## Restart time: a durable LUN of RESTART_GIB=64 GiB with 100 snapshots, Open timed in new processes (needs about RESTART_GIB+8 GiB free in TMPDIR; removed after).
	$(GO) test -count=1 -timeout 3h ./lun -run '^TestRestartTime$$' -v -restart.gib $(RESTART_GIB)

.PHONY: crash
crash: ## kill -9 a durable serve under NBD load CRASH_ROUNDS=200 times, checking every block against the model; and the durable model test at length.
	$(GO) test -count=1 -timeout 60m ./daemon/crashtest -crash.rounds $(CRASH_ROUNDS) -v -run TestKillUnderLoad
	$(GO) test -count=1 -timeout 60m ./lun/durable -run TestModel -durable.runs 8 -durable.steps 400

.PHONY: soak
soak: ## SOAK_DURATION=60s of 64 NBD connections x QD32, verified, with a snapshot set every 100 ms, 10 000 idle connections and a client that never reads; RSS, goroutines and descriptors every second, checked at the end.
	$(GO) test -count=1 -timeout 30m ./daemon/soaktest -soak -soak.duration $(SOAK_DURATION) -v -run TestSoak

.PHONY: fuzz
fuzz: ## A short run (FUZZTIME=10s) of every fuzz target.
	@scripts/fuzz.sh $(FUZZTIME)

.PHONY: lint
lint: ## gofmt check, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

.PHONY: serve
serve: ## Run the daemon: two 1 GiB LUNs over NBD on 127.0.0.1:10809, the HTTP API and metrics on 127.0.0.1:10810.
	$(GO) run ./cmd/shadowbench serve

.PHONY: demo
demo: ## A guided tour in about 15 s: VSS snapshot sets under NBD load on 127.0.0.1, checked; writes demo-report.html.
	$(GO) run ./cmd/shadowbench demo

.PHONY: bench-nbd
bench-nbd: ## fio against shadowbench, nbdkit memory, qemu-nbd and go-nbd in one run.
	@scripts/bench-nbd.sh

.PHONY: clean
clean: ## Remove build output.
	rm -rf bin
