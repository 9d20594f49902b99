# agentd — `make help` lists the targets.
SHELL := /bin/bash
# Go 1.26 from /usr/local/go works even when a root shell lacks it on PATH.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN := bin/agentd
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# grpcnotrace leaves out gRPC's golang.org/x/net/trace and with it
# html/template, whose reflection on methods keeps every exported method of
# the program linked: 3.9 MB less code, 3 MB less resident memory. Every go
# command below (and the bench and packaging scripts) builds with it.
GO_TAGS ?= grpcnotrace
export GOFLAGS := $(GOFLAGS) -tags=$(GO_TAGS)
GOTEST_FLAGS ?=
# Integration tests share the testbed's engines and systemd host: packages run
# one at a time (-p 1) after their test binaries were compiled in parallel.
# The fault tests (TestReliability...) hold their faults for minutes; each
# test's agent watches only its own engines (discovery.include_endpoints) and
# exports to its own collector, so they run side by side (t.Parallel) up to
# TEST_PARALLEL at once: they mostly wait, so more than the CPUs.
TEST_PKGS ?= ./...
TEST_PARALLEL ?= 8
# make reliability: how many packages' fault tests run at once (the churn
# test has a package of its own: it measures its whole process).
RELIABILITY_P ?= 4
# make fuzz: how long each fuzz target runs, and the flags of each run (one
# worker: the machine is shared; a short minimisation of new inputs).
FUZZTIME ?= 30s
FUZZ_FLAGS ?= -parallel 1 -fuzzminimizetime 10s
# make vulncheck: govulncheck, pinned, reads a vulnerability database built
# here from the Go module golang.org/x/vulndb (its data/osv files), which comes
# through the Go module proxy like any dependency: these machines reach the
# proxy but not the database's own server, and a pinned database makes a run
# repeatable. To move it: `go list -m golang.org/x/vulndb@latest`, put that
# version in VULNDB_VERSION, run make vulncheck, commit with any fixes.
# The database is built once per version into VULNDB_CACHE (about 40 MB).
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB_CACHE ?= $(HOME)/.cache/agentd-vulndb
VULNDB := $(abspath $(VULNDB_CACHE))/$(VULNDB_VERSION)

.PHONY: help build run test unit fuzz reliability testbed testbed-down lint tidy-check vulncheck bench bench-go package clean

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/agentd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/agentd

run: build ## build and run agentd in the foreground against this host's engines
	$(BIN) run $(ARGS)

test: testbed lint tidy-check vulncheck ## provision the testbed if missing, lint, vulncheck, run every test with -race
	$(GO) test -race -count=1 -run '^$$' ./... >/dev/null
	$(GO) test -race -count=1 -p 1 -parallel $(TEST_PARALLEL) -timeout 75m $(GOTEST_FLAGS) $(TEST_PKGS)

reliability: testbed ## only the fault tests (TestReliability...), side by side; make test runs them once, in its normal go test run
	$(GO) test -race -count=1 -run '^$$' ./... >/dev/null
	$(GO) test -race -count=1 -p $(RELIABILITY_P) -parallel $(TEST_PARALLEL) -timeout 45m $(GOTEST_FLAGS) -run '^TestReliability' ./...

unit: ## only the tests that need no testbed (integration tests skip outside CI)
	$(GO) test -race -short ./...

fuzz: ## run every fuzz target (func Fuzz* in *_test.go) for FUZZTIME each (default 30s), one after the other
	@set -e; for d in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$(grep -h '^func Fuzz' $$d/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== $$d $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $(FUZZ_FLAGS) $$d; \
		done; \
	done

testbed: ## provision the testbed: engines, images, systemd host, collector, VM host image (idempotent)
	bash testbed/up.sh

testbed-down: ## stop the testbed's containers and daemons (keeps the caches)
	bash testbed/down.sh

lint: ## go vet and staticcheck (pinned)
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

tidy-check: ## fail when go.mod/go.sum are not tidy
	@cp go.mod /tmp/agentd-go.mod.bak; cp go.sum /tmp/agentd-go.sum.bak
	@$(GO) mod tidy
	@if ! diff -q go.mod /tmp/agentd-go.mod.bak >/dev/null || ! diff -q go.sum /tmp/agentd-go.sum.bak >/dev/null; then \
		diff -u /tmp/agentd-go.mod.bak go.mod; cp /tmp/agentd-go.mod.bak go.mod; cp /tmp/agentd-go.sum.bak go.sum; \
		echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; fi

vulncheck: ## govulncheck (pinned, pinned database): fail on a called vulnerability not in internal/vulncheck/allow.txt
	@set -euo pipefail; \
	if [ ! -f "$(VULNDB)/index/db.json" ]; then \
		echo "vulncheck: building the vulnerability database $(VULNDB_VERSION) into $(VULNDB)"; \
		mkdir -p "$(dir $(VULNDB))"; \
		src=$$(cd / && $(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
		[ -d "$$src/data/osv" ] || { echo "vulncheck: golang.org/x/vulndb@$(VULNDB_VERSION) has no data/osv"; exit 1; }; \
		tmp=$$(mktemp -d "$(VULNDB).tmp.XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; \
		$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$src/data/osv" -out "$$tmp"; \
		mv -T "$$tmp" "$(VULNDB)" 2>/dev/null || [ -f "$(VULNDB)/index/db.json" ] || \
			{ rm -rf "$(VULNDB)"; mv -T "$$tmp" "$(VULNDB)"; }; \
	fi; \
	$(GO) run $(GOVULNCHECK) -db "file://$(VULNDB)" -format json ./... | $(GO) run ./internal/vulncheck -allow internal/vulncheck/allow.txt

bench: bench-go testbed ## Go benchmarks, then agentd vs the docker_stats peer, event latency and the start/stop storm (bench/out/)
	bash bench/run.sh $(BENCH_N)
	bash bench/latency.sh
	bash bench/storm.sh

bench-go: ## only the Go benchmarks of the hot paths (benchstat-friendly)
	$(GO) test -run '^$$' -bench . -benchmem ./...

package: build ## build the .deb and .rpm into dist/
	VERSION=$(VERSION) bash packaging/build.sh

clean: ## remove build outputs
	rm -rf bin dist
