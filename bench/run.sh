#!/usr/bin/env bash
# Runs every benchmark that compares zerodrop against a peer in the same run:
# check vs kube-score (large files, and start-up on small ones), verify vs wrk and hey, and the controller's gate and drain
# latencies in the lab (next to the readiness baseline). Medians and ratios are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/check.sh
bash bench/startup.sh
bash bench/verify.sh "$@"
bash bench/controller.sh
