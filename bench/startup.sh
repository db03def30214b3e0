#!/usr/bin/env bash
# bench/startup.sh: zerodrop check against kube-score on small inputs, where
# start-up dominates: one object, the bench generator's 50 objects, and
# Online Boutique (24 objects, a real file from the corpus). Runs are
# interleaved; prints every run, the medians (wall ms, max RSS MiB) and the
# ratios, and writes the summary to bench/results/startup-<UTC date>.txt.
# Not part of CI.
#
# kube-score is the version the Go module proxy calls latest
# (`go list -m github.com/zegl/kube-score@latest`), built into a temporary
# directory outside the repository and removed afterwards; builds run at
# nice 19 (the machine is shared).
#
#   bash bench/startup.sh          # RUNS=11
#   RUNS=21 bash bench/startup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-11}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ks_version=$(cd "$tmp" && go list -m github.com/zegl/kube-score@latest | awk '{print $2}')
echo "building zerodrop and kube-score $ks_version into $tmp"
nice -n 19 go build -o "$tmp/zerodrop" ./cmd/zerodrop
(cd "$tmp" && GOBIN=$tmp GOFLAGS=-mod=mod nice -n 19 go install "github.com/zegl/kube-score/cmd/kube-score@$ks_version")

cat >"$tmp/one.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
YAML
nice -n 19 go run ./bench/check/gen -n 50 >"$tmp/fifty.yaml"
cp internal/check/testdata/corpus/online-boutique/release_kubernetes-manifests.yaml "$tmp/boutique.yaml"

# measure CMD...: one run; prints "WALL_MS MAXRSS_KIB". Output is discarded
# and the exit status ignored (both tools exit non-zero on findings).
measure() {
	local t0 t1
	t0=$(date +%s%N)
	/usr/bin/time -f '%M' -o "$tmp/time" "$@" >/dev/null 2>&1 || true
	t1=$(date +%s%N)
	# The last line: GNU time writes "Command exited with non-zero status"
	# first when the tool fails the check.
	awk -v ms=$(((t1 - t0) / 1000000)) 'END { printf "%d %d\n", ms, $1 }' "$tmp/time"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

out=$tmp/summary
{
	echo "date:         $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "zerodrop:     $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), binary $(du -h "$tmp/zerodrop" | cut -f1)"
	echo "kube-score:   $ks_version, binary $(du -h "$tmp/kube-score" | cut -f1)"
	echo "machine:      $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; RUNS=$RUNS"
	echo
	printf '%-22s %14s %14s %9s %12s %12s\n' input "zerodrop ms" "kube-score ms" "ratio" "zd RSS MiB" "ks RSS MiB"
} >"$out"

for input in one fifty boutique; do
	f=$tmp/$input.yaml
	zw=() zr=() kw=() kr=()
	measure "$tmp/zerodrop" check "$f" >/dev/null # warm the page cache
	measure "$tmp/kube-score" score "$f" >/dev/null
	for i in $(seq "$RUNS"); do
		# Alternate the order so that neither tool always runs on a cooler machine.
		if ((i % 2)); then
			read -r w r < <(measure "$tmp/zerodrop" check "$f"); zw+=("$w"); zr+=("$r")
			read -r w r < <(measure "$tmp/kube-score" score "$f"); kw+=("$w"); kr+=("$r")
		else
			read -r w r < <(measure "$tmp/kube-score" score "$f"); kw+=("$w"); kr+=("$r")
			read -r w r < <(measure "$tmp/zerodrop" check "$f"); zw+=("$w"); zr+=("$r")
		fi
		echo "$input run $i: zerodrop ${zw[-1]} ms ${zr[-1]} KiB, kube-score ${kw[-1]} ms ${kr[-1]} KiB"
	done
	zm=$(printf '%s\n' "${zw[@]}" | median) km=$(printf '%s\n' "${kw[@]}" | median)
	zrm=$(printf '%s\n' "${zr[@]}" | median) krm=$(printf '%s\n' "${kr[@]}" | median)
	objs=$(grep -c '^kind:' "$f" || true)
	awk -v n="$input ($objs docs)" -v z="$zm" -v k="$km" -v zr="$zrm" -v kr="$krm" 'BEGIN {
		printf "%-22s %14d %14d %8.2fx %12.1f %12.1f\n", n, z, k, (k > 0 ? z / k : 0), zr / 1024, kr / 1024 }' >>"$out"
done
{
	echo
	echo "ratio = zerodrop / kube-score median wall time (below 1: zerodrop faster)."
	echo "Wall times (date +%s%N around /usr/bin/time, which adds the same ~1 ms to both) include process start-up; RSS is /usr/bin/time's maximum."
} >>"$out"
echo
cat "$out"
cp "$out" "bench/results/startup-$(date -u +%Y%m%dT%H%MZ).txt"
