# omen's build, run, test and benchmark entry points. See README.md.
GO          ?= go
BIN         := bin/omen
# e2e and web first: their tests are the longest, and go test starts the
# packages in the order given (two at a time on two cores), so the others
# run beside them instead of ahead of them.
PKGS        := ./e2e ./web ./...
SHARED      ?= ../shared
APT_UPDATED := /tmp/.omen-apt-updated

.PHONY: all build run cross test test-unit test-e2e test-ui bench bench-nab bench-m4 bench-ingest bench-disk bench-calendar bench-capacity fuzz soak upgrade-rollback deps-e2e deps-ui clean

all: build

VERSION     ?= $(shell cat VERSION 2>/dev/null || echo 0.1.0)
REVISION    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILD_USER  ?= $(shell whoami 2>/dev/null || echo unknown)@$(shell hostname 2>/dev/null || echo unknown)
BUILD_DATE  ?= $(shell date -u +%Y%m%d-%H:%M:%S)
LDFLAGS     := -X github.com/prometheus/common/version.Version=$(VERSION) \
               -X github.com/prometheus/common/version.Revision=$(REVISION) \
               -X github.com/prometheus/common/version.Branch=main \
               -X github.com/prometheus/common/version.BuildUser=$(BUILD_USER) \
               -X github.com/prometheus/common/version.BuildDate=$(BUILD_DATE)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/omen

# ARGS adds flags, e.g. make run ARGS=--backfill.remote-read-url=http://localhost:9090/api/v1/read;
# OMEN_LISTEN and OMEN_DATA move the listener and the storage (as flags in ARGS
# they would be a second listener and a repeated flag).
OMEN_LISTEN ?= :9201
OMEN_DATA ?= ./data
run: build
	./$(BIN) serve --web.listen-address=$(OMEN_LISTEN) --storage.tsdb.path=$(OMEN_DATA) $(ARGS)

# deps-e2e installs the real tools the end-to-end tests talk to, from Debian's packages
# (strace: batch's TestWriteFileDurable reads the order of the output's fsyncs and rename).
deps-e2e:
	@missing=""; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v amtool >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	if [ -n "$$missing" ]; then \
		[ -f $(APT_UPDATED) ] || { apt-get update && touch $(APT_UPDATED); }; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# deps-ui installs the browser and its WebDriver the UI tests drive.
deps-ui:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		[ -f $(APT_UPDATED) ] || { apt-get update && touch $(APT_UPDATED); }; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# deps-prom3 builds the real Prometheus 3 server, of the prometheus module
# version go.mod requires, for the remote-write 2.0 end-to-end tests
# (Debian's Prometheus speaks 1.0 only). It is a module of its own,
# e2e/prometheus3, so that omen's go.mod does not take the server's
# dependencies; remove_all_sd leaves out the service discoveries. Built
# once, and again when that module's go.mod or go.sum change.
PROM3 := bin/prometheus3
.PHONY: deps-prom3
deps-prom3: $(PROM3)
$(PROM3): e2e/prometheus3/go.mod e2e/prometheus3/go.sum
	cd e2e/prometheus3 && $(GO) build -tags remove_all_sd -o ../../$(PROM3) github.com/prometheus/prometheus/cmd/prometheus

# The fuzz step runs every fuzz target for 5s (a few minutes in all,
# most of it building the instrumented test binaries) but ./pipeline's,
# whose binary alone takes 70-90 s to build (their seeds and testdata
# inputs run in go test); `make fuzz` runs them all for longer.
# The e2e and web packages run bin/omen, built once here ($$OMEN_BIN,
# internal/omenbin), rather than each building its own.
test: deps-e2e deps-ui deps-prom3 deps-vm build
	OMEN_E2E=1 OMEN_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 14m $(PKGS)
	FUZZ_SKIP=pipeline bash scripts/fuzz.sh 5s

# cross builds omen for the other platforms Prometheus supports (a
# Linux-only call once broke the Darwin build unseen). Builds only: the
# tests of e2e, tsdb, pipeline... use Linux and Unix calls (getrusage,
# statfs, kill) and are not meant to compile on Windows.
CROSS ?= darwin/arm64 windows/amd64 freebsd/amd64 linux/arm64
cross:
	@set -e; for p in $(CROSS); do \
		echo "GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./..."; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./...; \
	done

test-ui: deps-ui build
	OMEN_E2E=1 OMEN_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -run 'TestUI' ./web/...

# BenchmarkCalendar (25-30 CPU-minutes: weeks of local-time traffic
# across daylight-saving changes, 6 seeds a case) has its own target.
bench:
	$(GO) test -run '^$$' -bench . -skip '^BenchmarkCalendar$$' -benchmem $(PKGS)

bench-calendar:
	$(GO) test -run '^$$' -bench Calendar -benchtime 1x ./pipeline

# BenchmarkCapacity: the forecasts against PromQL's predict_linear on
# SRE-shaped synthetic series (a disk with cleanups, a memory leak, a
# daily request rate, a counter's rate, a flat gauge, a ramp); under a minute.
bench-capacity:
	$(GO) test -run '^$$' -bench Capacity -benchtime 1x ./pipeline

bench-nab: build
	bash scripts/bench-nab.sh $(SHARED)/nab

bench-m4: build
	bash scripts/bench-m4.sh $(SHARED)/m4hourly

bench-ingest: deps-e2e build
	bash scripts/bench-ingest.sh

bench-disk: deps-e2e build
	bash scripts/bench-disk.sh

FUZZTIME ?= 60s
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

soak: deps-e2e build
	bash scripts/soak.sh

# upgrade-rollback builds older commits from git history and moves one data
# directory between each and HEAD in both directions (~3 minutes a commit);
# OLD names the commits, by default the last before 2026-12-06, -04, -03.
OLD ?=
upgrade-rollback:
	bash scripts/upgrade-rollback.sh $(OLD)

clean:
	rm -rf bin data

# deps-vm builds VictoriaMetrics' vmagent (a remote-write sender) and
# single-node server (a forwarding upstream) for the e2e tests, from the
# module in e2e/victoriametrics so that omen's go.mod stays free of them;
# again only when that module's go.mod or go.sum changes. Pure Go
# (CGO_ENABLED=0): no C toolchain needed.
VM_MOD := e2e/victoriametrics
.PHONY: deps-vm
deps-vm: bin/vmagent bin/victoria-metrics
bin/vmagent bin/victoria-metrics: $(VM_MOD)/go.mod $(VM_MOD)/go.sum
	cd $(VM_MOD) && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/$@ github.com/VictoriaMetrics/VictoriaMetrics/app/$(notdir $@)

# The OpenTelemetry Collector (OTLP receiver, prometheusremotewrite exporter)
# as a sender, from its own module e2e/otelcol so that omen's go.mod stays
# as it is. Its cold build takes about 5 CPU-minutes (2.5-9 minutes on two
# cores), so it is not part of make test: test-otelcol runs the tests with
# the real collector, and otelcol-fixtures records its requests again into
# e2e/testdata/otelcol, which make test's TestOTelCollectorReplay replays.
OTELCOL := bin/otelcol-omen
.PHONY: deps-otelcol test-otelcol otelcol-fixtures
deps-otelcol: $(OTELCOL)
$(OTELCOL): e2e/otelcol/go.mod e2e/otelcol/go.sum e2e/otelcol/main.go
	cd e2e/otelcol && $(GO) build -o $(CURDIR)/$(OTELCOL) .
test-otelcol: $(OTELCOL)
	OMEN_E2E=1 OMEN_OTELCOL=$(CURDIR)/$(OTELCOL) $(GO) test -count=1 -run 'TestOTelCollector' ./e2e
otelcol-fixtures: $(OTELCOL)
	OMEN_E2E=1 OMEN_OTELCOL=$(CURDIR)/$(OTELCOL) OMEN_OTELCOL_CAPTURE=$(CURDIR)/e2e/testdata/otelcol $(GO) test -count=1 -run 'TestOTelCollector$$' ./e2e

# The Prometheus project's remote-write receiver compliance suite
# (prometheus/compliance, remotewrite/receiver), unmodified, from the Go
# module proxy through the module e2e/rwcompliance (the suite's go.mod
# names it github.com/prometheus/complicance/remotewrite2, so it is
# required under that name and replaced by its repository's path). Its
# test binary is built once, again when that module's go.mod or go.sum
# change; the cold build takes about 2 CPU-minutes (its own prometheus
# version), so it is not part of make test. test-compliance runs it against
# omen and Prometheus 3 side by side (e2e/rwcompliance_test.go).
RWC := bin/rwcompliance.test
.PHONY: deps-rwcompliance test-compliance
deps-rwcompliance: $(RWC)
$(RWC): e2e/rwcompliance/go.mod e2e/rwcompliance/go.sum
	cd e2e/rwcompliance && $(GO) test -c -o $(CURDIR)/$(RWC) github.com/prometheus/complicance/remotewrite2
test-compliance: deps-prom3 $(RWC)
	OMEN_E2E=1 OMEN_RWCOMPLIANCE=$(CURDIR)/$(RWC) $(GO) test -count=1 -run 'TestRWCompliance' ./e2e
# rwcompliance-fixtures records the suite's requests and both answers into
# e2e/testdata/rwcompliance, which make test's TestRWComplianceReplay
# replays against omen.
.PHONY: rwcompliance-fixtures
rwcompliance-fixtures: deps-prom3 $(RWC)
	OMEN_E2E=1 OMEN_RWCOMPLIANCE=$(CURDIR)/$(RWC) OMEN_RWCOMPLIANCE_CAPTURE=$(CURDIR)/e2e/testdata/rwcompliance $(GO) test -count=1 -run 'TestRWCompliance$$' ./e2e
