# zerodrop — see README.md. `make demo` runs the main job, `make test` every test.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
# Kubernetes binaries are cached in $ZERODROP_CACHE, else ~/.cache/zerodrop.

.PHONY: all build test unit demo check-examples bench docs fuzz deps generate image clean dist

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...
	ln -sf zerodrop $(BIN)/kubectl-zerodrop

# dist: release archives for krew (kubectl zerodrop) and the manifest:
#   make dist VERSION=v0.1.0 DIST_URL='https://HOST/PATH/{{.Archive}}'
# dist/zerodrop_VERSION_linux_{amd64,arm64}.tar.gz hold kubectl-zerodrop and
# zerodrop-cluster (static); dist/zerodrop.yaml is the krew manifest.
VERSION ?= v0.0.0-dev
DIST_URL ?= https://zerodrop.dev/releases/$(VERSION)/{{.Archive}}
dist:
	rm -rf dist && mkdir -p dist
	for arch in amd64 arm64; do \
		d=dist/zerodrop_$(VERSION)_linux_$$arch; mkdir -p $$d; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $$d/kubectl-zerodrop ./cmd/zerodrop || exit 1; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $$d/zerodrop-cluster ./cmd/zerodrop-cluster || exit 1; \
		tar -C $$d -czf $$d.tar.gz kubectl-zerodrop zerodrop-cluster || exit 1; rm -rf $$d; \
	done
	$(GO) run ./hack/krew -version $(VERSION) -url '$(DIST_URL)' dist/*.tar.gz > dist/zerodrop.yaml
	@echo "dist: $$(ls dist)"

# deps installs what the tests need on a fresh machine (haproxy, nginx, iproute2, wrk,
# chromium for the HTML report test,
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
	$(BIN)/zerodrop check examples/ || [ $$? -eq 1 ]

# demo: check the examples (exit 1 is expected: they include wrong
# configurations), then the lab's four baseline scenarios and zerodrop
# (10 rollouts, then under an HAProxy reload and a controller kill in the
# middle of every rollout), at 1,000 requests/s through two HAProxy instances,
# then zerodrop with the controller installed from config/default as pods
# (3 rollouts), then the NGINX baseline (sync by reload) and zerodrop through two NGINX
# instances (3 rollouts each). Every scenario's timeline (verify's HTML
# report) goes to $(DEMO_HTML), with index.html linking them.
DEMO_HTML := $(BIN)/demo-html
demo: deps build
	$(BIN)/zerodrop check examples/ || [ $$? -eq 1 ]
	$(BIN)/zerodrop lab run --scenario all --haproxy 2 --nginx 2 --rollouts 3 --rate 1000 --prometheus --json $(BIN)/demo.json --html $(DEMO_HTML)
	@echo "demo: results in $(BIN)/demo.json; timelines: open $(DEMO_HTML)/index.html"

bench: deps build
	bash bench/run.sh

docs:
	$(GO) run ./hack/gendocs
	$(GO) run ./hack/genprotocol
	$(GO) run ./hack/genchart

# generate regenerates deepcopy, CRDs and RBAC with controller-gen, then
# the Helm chart's copies of them, the dashboard and the values table.
generate:
	bash hack/generate.sh
	$(GO) run ./hack/genchart

# image builds the controller's container image without a container engine
# (go-containerregistry): an OCI layout and docker-loadable tarballs for
# linux/amd64 and linux/arm64 in bin/image, digests printed. With Docker,
# `docker build -t zerodrop-controller .` builds the same from Dockerfile.
image:
	$(GO) run ./hack/image -o bin/image -ref zerodrop-controller:dev

# fuzz runs every fuzz target for FUZZTIME (default 30s) each.
fuzz:
	bash scripts/fuzz.sh

clean:
	rm -rf $(BIN) dist
