#!/usr/bin/env bash
# Scoring lag after a restart: omen with SERIES series (10 000) and 1 h of
# history written by `omen loadgen` at a 15 s interval, a few live rounds,
# a graceful stop (final snapshot, current mark), a restart; then live load
# (SERIES series at RATE samples/s, 2000: a round every 5 s at 10 000) for
# DURATION (60s) while omen_scoring_lag_seconds is read every 0.2 s (each
# read of /metrics takes its own time: the readings are about 0.6 s apart
# at 10 000 series). Prints the readiness times, the restore's log line,
# the highest lag and the last reading at or above 1 s, in seconds after
# /-/ready answered.
#
#   make build && bash scripts/restart-lag.sh     (~2 minutes on 2 cores)
#
# PORT (22001), OUT, SERIES, RATE, DURATION and OMEN (bin/omen) may be set.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PORT=${PORT:-22001}
OUT=${OUT:-$(mktemp -d /tmp/omen-restart-lag.XXXXXX)}
SERIES=${SERIES:-10000}
RATE=${RATE:-2000}
DURATION=${DURATION:-60s}
OMEN=${OMEN:-bin/omen}
B=http://127.0.0.1:$PORT
mkdir -p "$OUT"
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null' EXIT
now() { date +%s.%N; }
start() {
	"$OMEN" serve --web.listen-address="127.0.0.1:$PORT" --storage.tsdb.path="$OUT/data" > "$OUT/omen-$1.log" 2>&1 &
	pid=$!
	local t0
	t0=$(now)
	until curl -sf -m 10 "$B/-/ready" > /dev/null; do
		kill -0 "$pid" 2> /dev/null || { echo "omen exited before it was ready: $OUT/omen-$1.log"; exit 2; }
		sleep 0.1
	done
	echo "$1: ready $(echo "$(now) - $t0" | bc) s after the start"
}
load() { "$OMEN" loadgen --url="$B/api/v1/write" --series="$SERIES" --no-warmup --log.level=error "$@"; }

start fresh
load --sample-interval=15s --backdate=1h --rounds=240 --rate=150000 > "$OUT/loadgen-history.log" 2>&1 || { echo "loadgen failed"; exit 2; }
load --rounds=3 --rate="$RATE" > "$OUT/loadgen-live.log" 2>&1
kill -TERM $pid; wait $pid; pid=
start again
ready=$(now)
grep -o 'msg="Model snapshot restored.*' "$OUT/omen-again.log"
load --duration="$DURATION" --rate="$RATE" > "$OUT/loadgen-after.log" 2>&1 &
lp=$!
while kill -0 $lp 2> /dev/null; do
	v=$(curl -s -m 10 "$B/metrics" | awk '/^omen_scoring_lag_seconds /{print $2}')
	echo "$(echo "$(now) - $ready" | bc) $v" >> "$OUT/lag.txt"
	sleep 0.2
done
awk '{ if ($2 + 0 > m) m = $2 + 0; if ($2 + 0 >= 1) last = $1 }
	END { printf "highest lag %.2f s; last reading >= 1 s at %s s after ready (%d readings)\n", m, (last == "" ? "none" : last), NR }' "$OUT/lag.txt"
grep -h 'accepted (' "$OUT/loadgen-after.log"
kill -TERM $pid; wait $pid; pid=
echo "files in $OUT"
