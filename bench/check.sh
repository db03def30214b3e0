#!/usr/bin/env bash
# bench/check.sh: zerodrop check against kube-score on the same generated
# input (10,000 objects by default), in block style and in flow style
# ({...} and [...] below the top-level keys, wrapped over several lines, as
# hand-written manifests often are). Runs are interleaved, several each, at
# nice 10 (the machine may be shared: the ratio against kube-score measured
# in the same run is what counts). Prints every run, the medians (wall, CPU,
# max RSS) and the ratios, and writes the summary to
# bench/results/check-<UTC date>.txt. kube-score is installed with
# `go install` into a bench-local GOBIN (not vendored, not on PATH).
#
#   bash bench/check.sh            # N=10000 objects, RUNS=5, both styles
#   N=20000 RUNS=7 STYLES=flow bash bench/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
RUNS=${RUNS:-5}
STYLES=${STYLES:-block flow}
KUBE_SCORE_VERSION=${KUBE_SCORE_VERSION:-v1.20.0}
cache=${ZERODROP_CACHE:-$PWD/.cache}/bench-check
bin=$cache/bin
mkdir -p "$bin" bench/results
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "building zerodrop"
nice -n 10 go build -o "$bin/zerodrop" ./cmd/zerodrop
if [[ ! -x $bin/kube-score ]]; then
	echo "installing kube-score $KUBE_SCORE_VERSION into $bin"
	GOBIN=$bin nice -n 10 go install "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
fi

# measure CMD...: one run at nice 10; prints "WALL_MS CPU_MS MAXRSS_KIB"
# (CPU = user + system). Output is discarded and the exit status ignored
# (both tools exit non-zero when they find problems).
measure() {
	/usr/bin/time -f '%e %U %S %M' -o "$tmp/time" nice -n 10 "$@" >/dev/null 2>&1 || true
	# The last line: GNU time writes "Command exited with non-zero status" first.
	awk 'END { printf "%d %d %d\n", $1 * 1000, ($2 + $3) * 1000, $4 }' "$tmp/time"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

out=$tmp/summary
{
	echo "date:         $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "zerodrop:     $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
	echo "kube-score:   $KUBE_SCORE_VERSION"
	echo "machine:      $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB"
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) at start; RUNS=$RUNS, N=$N"
	echo
	printf '%-6s %8s %8s %8s %8s %8s %8s %9s %9s %8s\n' style "zd ms" "ks ms" "zd cpu" "ks cpu" "zd MiB" "ks MiB" "wall x" "cpu x" "RSS x"
} >"$out"

for style in $STYLES; do
	input=$cache/objects-$N-$style.yaml
	nice -n 10 go run ./bench/check/gen -n "$N" -style "$style" >"$input"
	echo "input: $input ($N objects, $style style, $(du -h "$input" | cut -f1))"
	zw=() zc=() zr=() kw=() kc=() kr=()
	run_zd() { read -r w c r < <(measure "$bin/zerodrop" check "$input"); zw+=("$w"); zc+=("$c"); zr+=("$r"); }
	run_ks() { read -r w c r < <(measure "$bin/kube-score" score "$input"); kw+=("$w"); kc+=("$c"); kr+=("$r"); }
	# One untimed run each warms the page cache.
	measure "$bin/zerodrop" check "$input" >/dev/null
	measure "$bin/kube-score" score "$input" >/dev/null
	for i in $(seq "$RUNS"); do
		# Alternate the order so that neither tool always runs on a cooler machine.
		if ((i % 2)); then run_zd; run_ks; else run_ks; run_zd; fi
		echo "$style run $i: zerodrop ${zw[-1]} ms (cpu ${zc[-1]} ms, ${zr[-1]} KiB), kube-score ${kw[-1]} ms (cpu ${kc[-1]} ms, ${kr[-1]} KiB), load $(cut -d' ' -f1 /proc/loadavg)"
	done
	m() { printf '%s\n' "$@" | median; }
	awk -v s="$style" -v zw="$(m "${zw[@]}")" -v kw="$(m "${kw[@]}")" -v zc="$(m "${zc[@]}")" -v kc="$(m "${kc[@]}")" \
		-v zr="$(m "${zr[@]}")" -v kr="$(m "${kr[@]}")" 'BEGIN {
		printf "%-6s %8d %8d %8d %8d %8.1f %8.1f %8.1fx %8.1fx %7.2fx\n", s, zw, kw, zc, kc, zr / 1024, kr / 1024,
			(zw > 0 ? kw / zw : 0), (zc > 0 ? kc / zc : 0), (kr > 0 ? zr / kr : 0) }' >>"$out"
done
{
	echo
	echo "medians of $RUNS interleaved runs each. wall x and cpu x = kube-score / zerodrop (above 1: zerodrop faster);"
	echo "RSS x = zerodrop / kube-score maximum resident set (below 1: zerodrop smaller). CPU = user + system."
	echo "The goal (issue 14): wall x >= 20 and RSS x <= 1 in both styles."
} >>"$out"
echo
cat "$out"
cp "$out" "bench/results/check-$(date -u +%Y%m%dT%H%MZ).txt"
