#!/usr/bin/env bash
# Benchmark: is zerodrop verify ever the bottleneck? Runs zerodrop verify, wrk
# and hey against the same fast loopback target in the same run and prints
# sustained rate, schedule accuracy and CPU per request side by side.
# Bounded: 2 scenarios x (3 + 2 tools) x RUNS runs x SECONDS s (default ~1 min).
# Usage: bash bench/verify.sh [-runs N] [-seconds S] [-connections C] [-rate R]
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${ZERODROP_CACHE:-$PWD/.cache}/bench"
mkdir -p "$cache/bin" bin
command -v wrk >/dev/null 2>&1 || bash scripts/deps.sh
if [ ! -x "$cache/bin/hey" ]; then
  echo "bench: installing hey v0.1.5 into $cache/bin" >&2
  GOBIN="$cache/bin" go install github.com/rakyll/hey@v0.1.5
fi
go build -o bin/zerodrop ./cmd/zerodrop
go build -o "$cache/bin/verifybench" ./bench/verifybench
exec "$cache/bin/verifybench" -zerodrop bin/zerodrop -wrk "$(command -v wrk)" -hey "$cache/bin/hey" "$@"
