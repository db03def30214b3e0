#!/usr/bin/env bash
# bench/check.sh: zerodrop check against kube-score on the same generated
# input (10,000 objects by default), run side by side, several runs each.
# Prints every run, the medians and the ratio. kube-score is installed with
# `go install` into a bench-local GOBIN (not vendored, not on PATH).
#
#   bash bench/check.sh            # N=10000 objects, RUNS=5
#   N=20000 RUNS=7 bash bench/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
RUNS=${RUNS:-5}
KUBE_SCORE_VERSION=${KUBE_SCORE_VERSION:-v1.20.0}
cache=${ZERODROP_CACHE:-$PWD/.cache}/bench-check
bin=$cache/bin
mkdir -p "$bin"

echo "building zerodrop"
go build -o "$bin/zerodrop" ./cmd/zerodrop
if [[ ! -x $bin/kube-score ]]; then
	echo "installing kube-score $KUBE_SCORE_VERSION into $bin"
	GOBIN=$bin go install "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
fi

input=$cache/objects-$N.yaml
go run ./bench/check/gen -n "$N" >"$input"
echo "input: $input ($N objects, $(du -h "$input" | cut -f1))"

# run_ms CMD...: wall time of one run in milliseconds; output discarded,
# exit status ignored (both tools exit non-zero when they find problems).
run_ms() {
	local start end
	start=$(date +%s%N)
	"$@" >/dev/null 2>&1 || true
	end=$(date +%s%N)
	echo $(((end - start) / 1000000))
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

zd=()
ks=()
# One untimed run each warms the page cache.
run_ms "$bin/zerodrop" check "$input" >/dev/null
run_ms "$bin/kube-score" score "$input" >/dev/null
for i in $(seq "$RUNS"); do
	# Alternate the order so that neither tool always runs on a cooler machine.
	if ((i % 2)); then
		zd+=("$(run_ms "$bin/zerodrop" check "$input")")
		ks+=("$(run_ms "$bin/kube-score" score "$input")")
	else
		ks+=("$(run_ms "$bin/kube-score" score "$input")")
		zd+=("$(run_ms "$bin/zerodrop" check "$input")")
	fi
	echo "run $i: zerodrop ${zd[-1]} ms, kube-score ${ks[-1]} ms"
done

zdm=$(printf '%s\n' "${zd[@]}" | median)
ksm=$(printf '%s\n' "${ks[@]}" | median)
echo
echo "objects:            $N"
echo "zerodrop check:     median ${zdm} ms  (runs: ${zd[*]})"
echo "kube-score score:   median ${ksm} ms  (runs: ${ks[*]})"
awk -v z="$zdm" -v k="$ksm" 'BEGIN { if (z > 0) printf "kube-score / zerodrop: %.2fx\n", k / z }'
"$bin/zerodrop" check "$input" | tail -1 || true
