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

# measure CMD...: one run; prints "WALL_MS CPU_MS" (CPU = user + system of
# the process and its children). Output is discarded and the exit status
# ignored (both tools exit non-zero when they find problems). CPU time is
# printed too because on a shared machine wall time depends on the neighbours.
measure() {
	local t
	t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>&1; } 2>&1 ) || true
	awk '{ printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000 }' <<<"$t"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

zd_wall=() zd_cpu=() ks_wall=() ks_cpu=()
run_zd() { read -r w c < <(measure "$bin/zerodrop" check "$input"); zd_wall+=("$w"); zd_cpu+=("$c"); }
run_ks() { read -r w c < <(measure "$bin/kube-score" score "$input"); ks_wall+=("$w"); ks_cpu+=("$c"); }

# One untimed run each warms the page cache.
measure "$bin/zerodrop" check "$input" >/dev/null
measure "$bin/kube-score" score "$input" >/dev/null
for i in $(seq "$RUNS"); do
	# Alternate the order so that neither tool always runs on a cooler machine.
	if ((i % 2)); then run_zd; run_ks; else run_ks; run_zd; fi
	echo "run $i: zerodrop ${zd_wall[-1]} ms (cpu ${zd_cpu[-1]} ms), kube-score ${ks_wall[-1]} ms (cpu ${ks_cpu[-1]} ms)"
done

zdm=$(printf '%s\n' "${zd_wall[@]}" | median)
ksm=$(printf '%s\n' "${ks_wall[@]}" | median)
zdc=$(printf '%s\n' "${zd_cpu[@]}" | median)
ksc=$(printf '%s\n' "${ks_cpu[@]}" | median)
echo
echo "objects:            $N"
echo "load average:       $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "zerodrop check:     median wall ${zdm} ms, cpu ${zdc} ms"
echo "kube-score score:   median wall ${ksm} ms, cpu ${ksc} ms"
awk -v z="$zdm" -v k="$ksm" -v zc="$zdc" -v kc="$ksc" 'BEGIN { if (z > 0 && zc > 0) printf "kube-score / zerodrop: %.2fx wall, %.2fx cpu\n", k / z, kc / zc }'
"$bin/zerodrop" check "$input" | tail -1 || true
