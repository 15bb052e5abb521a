# Luling: every task starts here. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
TOOLS := $(CURDIR)/.tools/bin
PKGS := ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: help build cross test test-short bench fuzz demo lint services soak package generate vulncheck clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build gatewayd, gatewayd-full (with the plugin host), cloudd, gatewayctl and devsim into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...
	$(GO) build -trimpath -tags luling_full -ldflags '$(LDFLAGS)' -o $(BIN)/gatewayd-full ./cmd/gatewayd

cross: ## build gatewayd, gatewayd-full and gatewayctl for linux/arm (GOARM=7) and linux/arm64, CGO_ENABLED=0; prints their sizes
	@mkdir -p $(BIN)/linux-arm $(BIN)/linux-arm64
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-arm/ ./cmd/gatewayd ./cmd/gatewayctl
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -tags luling_full -ldflags '$(LDFLAGS)' -o $(BIN)/linux-arm/gatewayd-full ./cmd/gatewayd
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-arm64/ ./cmd/gatewayd ./cmd/gatewayctl
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -tags luling_full -ldflags '$(LDFLAGS)' -o $(BIN)/linux-arm64/gatewayd-full ./cmd/gatewayd
	@ls -l $(BIN)/linux-arm/gatewayd $(BIN)/linux-arm/gatewayd-full $(BIN)/linux-arm64/gatewayd $(BIN)/linux-arm64/gatewayd-full

services: ## install Mosquitto (OS packages) and InfluxDB 1.8.10 (go install) if missing
	@./scripts/services.sh

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

test: services lint ## install services, then run every test with -race (real Mosquitto and InfluxDB)
	CGO_ENABLED=1 LULING_REQUIRE_SERVICES=1 $(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short: ## unit tests only, no services
	$(GO) test -short -count=1 $(PKGS)

bench: services ## run the benchmarks that carry the project's speed and memory targets
	LULING_REQUIRE_SERVICES=1 $(GO) test -run '^$$' -bench . -count 1 -timeout 40m $(PKGS) | tee bench.out
	@echo "--- results in bench.out"

FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

demo: services build ## run the whole system locally on simulated devices (Ctrl-C stops it)
	@./scripts/demo.sh

soak: services ## soak the whole system under faults (broker restart, kill -9 of gatewayd and cloudd, broker drop after PUBACK, network cut, black hole, InfluxDB down, full disk, corrupted outbox segment, serial line noise); prints produced/landed/declared-lost/undeclared-lost per fault (LULING_SOAK_DURATION, default 30m; LULING_SOAK_FAULTS to pick some)
	CGO_ENABLED=1 LULING_REQUIRE_SERVICES=1 LULING_SOAK=1 $(GO) test -race -count=1 -timeout 6h -v -run '^TestSoak$$' ./internal/e2e/

generate: ## regenerate the plugin protocol's gRPC code (installs protoc and its Go plugins if missing)
	@command -v protoc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null; }
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.6
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.3.0
	PATH="$(TOOLS):$$PATH" $(GO) generate ./plugins/proto

vulncheck: ## govulncheck (pinned, into .tools/bin) over the module; offline copy of the database when vuln.go.dev is out of reach (not part of make test)
	@./scripts/vulncheck.sh

package: ## build .deb packages (armhf, arm64, amd64) into dist/
	@./firmware-config/packaging/package.sh

clean: ## remove build output
	rm -rf $(BIN) dist bench.out .demo
