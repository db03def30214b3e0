#!/usr/bin/env bash
# Installs what zerodrop's tests and lab need on a fresh machine. Idempotent.
set -euo pipefail
need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# NGINX open source, for provider/nginx and its real-NGINX tests; the tests
# and the lab run their own instances (temporary directories, loopback),
# never the system service.
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# promtool checks and unit-tests the alerts (config/monitoring); the
# prometheus server (same package) evaluates them against the real
# controller (cmd/zerodrop-controller, TestAlertsInARealPrometheus).
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
# Headless Chromium renders verify's HTML report in a test
# (internal/verify/html_browser_test.go, driven by chromedp).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The lab's and envtest's Kubernetes binaries (kube-apiserver, etcd, ...):
# built once from the Go module proxy into the cache (~10 min the first time).
go run ./cmd/zerodrop-cluster lab binaries
