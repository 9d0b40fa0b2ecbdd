#!/usr/bin/env bash
# Runs every fuzz target for the given time each (default 10s).
# `make test` runs it briefly; `make fuzz` for longer.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
for pkg in $targets; do
  for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkg"/*_test.go | sed 's/^func //'); do
    echo "fuzz $pkg $fn for $t"
    go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$t" "$pkg"
  done
done
