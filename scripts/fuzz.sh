#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 30s; a
# count such as 10000000x runs that many executions, the long run of
# docs/faults.md). The list is found, not kept: every `func FuzzXxx(f
# *testing.F)` in a _test.go; no test timeout (a long run takes hours). With FUZZLOG=FILE it appends one line per
# target: package, target, result (ok/FAIL), executions, elapsed.
# FUZZONLY=REGEXP limits the targets (matched against "pkg FuzzName").
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-30s}
log=${FUZZLOG:-}
only=${FUZZONLY:-.}
fail=0
while read -r f; do
  pkg=./$(dirname "${f#./}")
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    echo "$pkg $fn" | grep -Eq -- "$only" || continue
    echo "== $pkg $fn ($t)"
    out=$(mktemp)
    start=$(date +%s)
    if go test -run '^$' -timeout 0 -fuzz "^${fn}\$" -fuzztime "$t" "$pkg" 2>&1 | tee "$out"; then res=ok; else res=FAIL; fail=1; fi
    execs=$(grep -o 'execs: [0-9]*' "$out" | tail -1 | cut -d' ' -f2)
    rm -f "$out"
    if [ -n "$log" ]; then
      printf '%s %s %s execs=%s elapsed=%ss\n' "$pkg" "$fn" "$res" "${execs:-?}" "$(( $(date +%s) - start ))" >> "$log"
    fi
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sort)
exit $fail
