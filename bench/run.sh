#!/usr/bin/env bash
# Runs every benchmark that compares zerodrop against a peer in the same run:
# check vs kube-score, verify vs wrk and hey. Medians and ratios are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/check.sh
bash bench/verify.sh "$@"
