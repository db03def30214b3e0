#!/usr/bin/env bash
# bench/check-ab.sh: CPU of two (or more) zerodrop binaries on the same
# input, runs interleaved (A B A B ...) under SCHED_IDLE, with perf stat's
# task-clock and page faults and GNU time's maximum RSS. Prints the medians
# of every column. For A/B comparisons of a change to zerodrop check, where
# bench/check.sh's ratio against kube-score is too noisy on a shared
# machine to see a few per cent.
#
#   RUNS=9 bash bench/check-ab.sh objects-10000-block.yaml /tmp/zd-old /tmp/zd-new
set -euo pipefail
runs=${RUNS:-9}
input=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$runs"); do
	for b in "$@"; do
		# zerodrop exits 1 when it finds problems: ignore the status.
		chrt --idle 0 perf stat -x, -e task-clock,page-faults -o "$tmp/perf" \
			/usr/bin/time -f '%e %U %S %M' -o "$tmp/time" "$b" check "$input" >/dev/null 2>&1 || true
		# The last line: GNU time writes "Command exited with non-zero status" first.
		read -r wall user sys rss < <(tail -1 "$tmp/time")
		awk -F, -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" '
			$3 == "task-clock" {tc = $1} $3 == "page-faults" {pf = $1}
			END {printf "%d %d %d %d %d %d\n", tc, u * 1000, s * 1000, w * 1000, pf, r}' "$tmp/perf" >>"$tmp/$(echo "$b" | tr / _)"
	done
done
echo "medians of $runs interleaved runs on $input ($(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-28s %8s %8s %8s %8s %8s %9s\n' binary "cpu ms" "user ms" "sys ms" "wall ms" faults "RSS KiB"
for b in "$@"; do
	printf '%-28s' "$b"
	for c in 1 2 3 4 5 6; do
		sort -n -k$c,$c "$tmp/$(echo "$b" | tr / _)" | awk -v c=$c '{a[NR] = $c} END {printf " %8d", a[int((NR + 1) / 2)]}'
	done
	echo
done
