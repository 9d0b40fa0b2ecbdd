#!/usr/bin/env bash
# make soak: omen under half of its measured maximum remote-write load for
# DURATION (10m), killed with SIGKILL every KILL_EVERY (2m) and restarted on
# the same storage; reports acknowledged versus read-back samples (must be
# equal), omen's RSS over time, and the restarts. The soak itself is the Go
# program e2e.TestSoak (it writes with its own acknowledging writer, which
# `omen loadgen` is not: loadgen counts accepted samples but does not keep
# which ones, so it cannot check the read-back).
#
#   DURATION=10m KILL_EVERY=2m MEASURE=30s bash scripts/soak.sh
#   MAX_RATE=800000 skips the measurement and soaks at half of it.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10m}
KILL_EVERY=${KILL_EVERY:-2m}
MEASURE=${MEASURE:-30s}
LOG=${SOAK_LOG:-${TMPDIR:-/tmp}/omen-soak.log}

echo "soak: DURATION=$DURATION KILL_EVERY=$KILL_EVERY MEASURE=$MEASURE on $(nproc) cores; load: $(uptime | sed 's/.*load average: //')"
# seconds of a duration like 90s, 10m or 1h (what the soak's flags take).
# Checked here, outside any $( ): an exit inside a command substitution only
# ends the subshell, and the script went on with a bad value.
for d in "$DURATION" "$KILL_EVERY" "$MEASURE"; do
	[[ "$d" =~ ^[0-9]+[smh]$ ]] || { echo "soak: $d: give durations as <n>s, <n>m or <n>h" >&2; exit 2; }
done
secs() {
	case "$1" in
	*h) echo $(( ${1%h} * 3600 )) ;;
	*m) echo $(( ${1%m} * 60 )) ;;
	*s) echo "${1%s}" ;;
	esac
}
# The test's own timeout: the measurement, the soak, the read-back and slack.
timeout=$(( $(secs "$DURATION") + $(secs "$MEASURE") + 900 ))
set +e
OMEN_E2E=1 OMEN_SOAK=1 SOAK_DURATION="$DURATION" SOAK_KILL_EVERY="$KILL_EVERY" SOAK_MEASURE="$MEASURE" \
	SOAK_MAX_RATE="${MAX_RATE:-}" go test -count=1 -timeout "${timeout}s" -run '^TestSoak$' -v ./e2e/ >"$LOG" 2>&1
rc=$?
set -e
grep -E 'SOAK|^(--- |ok|FAIL|PASS)' "$LOG" | sed -E 's/^ +durability_soak_test.go:[0-9]+: //'
echo "soak: full log in $LOG; load after: $(uptime | sed 's/.*load average: //')"
if [ $rc -ne 0 ]; then
	echo "soak: FAILED (exit $rc); the end of the log:" >&2
	tail -40 "$LOG" >&2
fi
exit $rc
