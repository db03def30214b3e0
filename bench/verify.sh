#!/usr/bin/env bash
# Benchmark: is zerodrop verify ever the bottleneck? Runs zerodrop verify,
# wrk, hey, bombardier and vegeta against the same fast loopback target
# (127.0.0.1 only) in the same run, interleaved, and prints sustained rate,
# schedule error (requests sent against the schedule), latency percentiles and
# CPU per request side by side, with verify's ratio to each peer. The summary
# goes to bench/results/verify-<UTC date>.txt.
# Bounded: 2 scenarios x (5 + 3 tools) x RUNS runs x SECONDS s (default about
# 2.5 minutes). Tools run at nice 10: the machine may be shared.
# Usage: bash bench/verify.sh [-runs N] [-seconds S] [-connections C] [-rate R]
# (defaults: 3 runs, 5 s, 200 connections as the seeds' bombardier runs, 10,000 req/s)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${ZERODROP_CACHE:-$PWD/.cache}/bench"
mkdir -p "$cache/bin" bin bench/results
command -v wrk >/dev/null 2>&1 || bash scripts/deps.sh
install() { # install NAME MODULE@VERSION
  if [ ! -x "$cache/bin/$1" ]; then
    echo "bench: installing $2 into $cache/bin" >&2
    GOBIN="$cache/bin" nice -n 10 go install "$2"
  fi
}
install hey github.com/rakyll/hey@v0.1.5
install bombardier github.com/codesenberg/bombardier@v1.2.6
install vegeta github.com/tsenart/vegeta/v12@v12.13.0
go build -o bin/ ./cmd/zerodrop ./cmd/zerodrop-cluster # zerodrop hands verify to zerodrop-cluster
go build -o "$cache/bin/verifybench" ./bench/verifybench
exec nice -n 10 "$cache/bin/verifybench" -zerodrop bin/zerodrop -wrk "$(command -v wrk)" -hey "$cache/bin/hey" \
  -bombardier "$cache/bin/bombardier" -vegeta "$cache/bin/vegeta" \
  -out "bench/results/verify-$(date -u +%Y%m%dT%H%MZ).txt" "$@"
