#!/usr/bin/env bash
# Runs every fuzz target (func FuzzXxx in a _test.go file) for the given time
# each (default 10s): `make test` runs them briefly, `make fuzz` for longer.
#
# Each package's test binary is built once with the fuzzing instrumentation
# (go test -c -fuzz) and then run once per target, rather than `go test
# -fuzz` per target, which would link the binary again every time. The
# binaries run in their package's directory so that the seed corpora in
# testdata/fuzz/FuzzXxx are used, and new failing inputs are written there;
# what the fuzzer learns is kept in the same cache `go test -fuzz` uses.
#
#   bash scripts/fuzz.sh 5s          # every target for 5s
#   bash scripts/fuzz.sh 60s tsdb    # only the targets in ./tsdb
#   FUZZ_SKIP="pipeline" bash scripts/fuzz.sh 5s   # all but ./pipeline's
#
# FUZZ_SKIP names packages whose targets are left out (their seeds and
# testdata/fuzz inputs still run in `go test`): `make test` leaves out
# ./pipeline, whose instrumented test binary takes 70-90 s to build on a
# loaded 2-core machine, more than its targets' 15 s of fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
only=${2:-}
skip=" ${FUZZ_SKIP:-} "
workers=${FUZZ_WORKERS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cache="$(go env GOCACHE)/fuzz"
failed=()
for pkg in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  if [ -n "$only" ] && [ "$pkg" != "./$only" ]; then continue; fi
  if [[ "$skip" == *" ${pkg#./} "* ]]; then echo "fuzz: $pkg left out (FUZZ_SKIP)"; continue; fi
  bin="$tmp/$(echo "$pkg" | tr '/.' '__').test"
  start=$(date +%s)
  go test -c -fuzz=. -o "$bin" "$pkg"
  echo "fuzz: built $pkg in $(( $(date +%s) - start ))s"
  importpath=$(go list -f '{{.ImportPath}}' "$pkg")
  for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkg"/*_test.go | sed 's/^func //' | sort); do
    for try in 1 2 3; do
      echo "fuzz: $pkg $fn for $t"
      if (cd "$pkg" && "$bin" -test.run='^$' -test.fuzz="^${fn}\$" -test.fuzztime="$t" \
            -test.fuzzcachedir="$cache/$importpath" -test.fuzzminimizetime=2s -test.parallel="$workers") 2>&1 | tee "$tmp/out"; then
        break
      fi
      # Go's fuzz coordinator can report a bare "context deadline exceeded"
      # when -fuzztime ends while a worker is busy (go.dev/issue/75804,
      # fixed in Go 1.27, not in 1.26.x): no input failed and none is
      # written. A worker is busy that long mostly while it minimizes a new
      # interesting input (up to a minute by default, hence the 2s above;
      # a target whose cache had grown hit it twice in a row). That, and
      # only that, is run again, twice at most; a real failure writes its
      # input and fails at once.
      if [ "$try" != 3 ] && grep -q 'context deadline exceeded' "$tmp/out" &&
         ! grep -q 'Failing input written\|panic:\|_test.go:[0-9]' "$tmp/out"; then
        echo "fuzz: $pkg $fn: the fuzz coordinator's deadline race (go.dev/issue/75804), no failing input; running it again"
        continue
      fi
      failed+=("$pkg $fn")
      break
    done
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
  echo "fuzz: the failing inputs are in the packages' testdata/fuzz/<FuzzName>/; go test -run '<FuzzName>/<file>' replays one" >&2
  exit 1
fi
echo "fuzz: all targets passed"
