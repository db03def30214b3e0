#!/usr/bin/env bash
# The controller's gate and drain latencies, measured in the lab (as root):
# zerodrop:K rollouts at RATE req/s through two HAProxy instances. Prints the
# gate latency (every instance UP -> pod Ready) p50/p99, the time behind the
# gate against the LB's own minimum (rise x interval), and the drain latency
# (deletion -> last new request) p50/p99, next to the baseline `readiness`
# scenario's failures for the same load. Targets: gate p99 < 1 s (the AWS
# Load Balancer Controller requeues every 15 s), drain p99 < 200 ms.
#   ROLLOUTS=10 RATE=1000 bash bench/controller.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROLLOUTS=${ROLLOUTS:-10}
RATE=${RATE:-1000}
make -s build
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bin/zerodrop lab run --haproxy 2 --rate "$RATE" --scenario "readiness:3,zerodrop:$ROLLOUTS" --json "$out/r.json"
echo
go run ./bench/controller "$out/r.json"
