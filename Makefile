# zerodrop — see README.md. `make demo` runs the main job, `make test` every test.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
# Kubernetes binaries are cached in $ZERODROP_CACHE, else ~/.cache/zerodrop.

.PHONY: all build test unit demo check-examples bench docs fuzz deps clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# deps installs what the tests need on a fresh machine (haproxy, iproute2, wrk,
# the Kubernetes binaries). Idempotent: a second run only checks.
deps:
	bash scripts/deps.sh

# test runs every test tier: unit, real HAProxy, envtest, end to end.
test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...

unit:
	$(GO) test -count=1 -short ./...

check-examples: build
	$(BIN)/zerodrop check examples/ || true

demo: deps build
	$(BIN)/zerodrop check examples/ || true

bench: deps build
	bash bench/run.sh

docs:
	$(GO) run ./hack/gendocs

# fuzz runs every fuzz target for FUZZTIME (default 30s) each.
fuzz:
	bash scripts/fuzz.sh

clean:
	rm -rf $(BIN)
