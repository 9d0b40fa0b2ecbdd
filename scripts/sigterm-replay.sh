#!/usr/bin/env bash
# SIGTERM during the TSDB's WAL replay: omen with SERIES series (50 000) and
# HIST of 15 s history written by `omen loadgen`, SIGKILLed (so the next
# start replays the WAL), restarted, and sent SIGTERM DELAY seconds (5)
# after the replay began. Prints the seconds from SIGTERM to exit and fails
# if omen finished the replay before it exited (it waited for all of it);
# then starts omen again on what the early exit left and fails unless it
# gets ready with every head series it had before the SIGKILL. With
# PROMETHEUS set (a Prometheus binary, e.g. prometheus for Debian's 2.42),
# the same WAL is replayed by it and SIGTERMed alike, for comparison.
#
#   make build && bash scripts/sigterm-replay.sh     (~3 minutes on 2 cores)
#
# PORT (22001; Prometheus on PORT+1), OUT, SERIES, HIST, DELAY and OMEN (the
# binary, bin/omen) may be set.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PORT=${PORT:-22001}
OUT=${OUT:-$(mktemp -d /tmp/omen-sigterm-replay.XXXXXX)}
SERIES=${SERIES:-50000}
HIST=${HIST:-1h}
DELAY=${DELAY:-5}
OMEN=${OMEN:-bin/omen}
B=http://127.0.0.1:$PORT
D=$OUT/data
mkdir -p "$OUT"
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null' EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
# start starts omen as run $1 and returns once it logs the start of the
# WAL replay (or exits).
start() {
	"$OMEN" serve --web.listen-address="127.0.0.1:$PORT" --storage.tsdb.path="$D" > "$OUT/omen-$1.log" 2>&1 &
	pid=$!
	t0=$(now)
}
ready() {
	for _ in $(seq 3600); do
		curl -sf -m 10 "$B/-/ready" > /dev/null && return 0
		kill -0 "$pid" 2> /dev/null || { echo "omen exited before it was ready: $OUT/omen-$1.log"; tail -3 "$OUT/omen-$1.log"; exit 2; }
		sleep 0.5
	done
	echo "omen not ready after 30 minutes: $OUT/omen-$1.log"
	exit 2
}
headSeries() { curl -s "$B/metrics" | awk '/^omen_tsdb_head_series /{print $2}'; }
# awaitLog waits until file $1 has a line matching $2, or process $3 exits.
awaitLog() {
	until grep -q "$2" "$1" 2> /dev/null; do
		kill -0 "$3" 2> /dev/null || return 1
		sleep 0.1
	done
}

rm -rf "$D"
start fresh && ready fresh
steps=$(($(echo "$HIST" | sed 's/h$/*3600/; s/m$/*60/' | bc) / 15))
"$OMEN" loadgen --url="$B/api/v1/write" --series="$SERIES" --no-warmup --log.level=error \
	--sample-interval=15s --backdate="$HIST" --rounds=$steps --rate=150000 > "$OUT/loadgen.log" 2>&1 || { echo "loadgen failed: $OUT/loadgen.log"; exit 2; }
want=$(headSeries)
kill -KILL $pid; wait $pid 2> /dev/null
echo "fresh: $want head series, WAL $(du -sh "$D/wal" | cut -f1); SIGKILL"
[ -n "${PROMETHEUS:-}" ] && cp -a "$D" "$OUT/prometheus-data"

fail=0
start term
awaitLog "$OUT/omen-term.log" 'Replaying WAL' $pid || { echo "omen exited before its replay: $OUT/omen-term.log"; exit 2; }
sleep "$DELAY"
s=$(now); kill -TERM $pid; wait $pid; rc=$?
echo "omen: SIGTERM $(echo "$s - $t0" | bc) s after the start, ${DELAY} s into the replay: exit $rc after $(since "$s") s"
pid=
if grep -q 'WAL replay completed' "$OUT/omen-term.log"; then
	echo "FAIL: omen replayed the whole WAL before it exited ($(grep -o 'wal_replay_duration=[^ ]*' "$OUT/omen-term.log"))"
	fail=1
fi
[ $rc = 0 ] || { echo "FAIL: exit status $rc"; fail=1; }

start again && ready again
got=$(headSeries)
echo "again: ready after $(since "$t0") s with $got head series ($want before the SIGKILL)"
[ "$got" = "$want" ] || { echo "FAIL: head series $got, want $want"; fail=1; }
kill -TERM $pid; wait $pid; pid=

if [ -n "${PROMETHEUS:-}" ]; then
	P=$OUT/prometheus-data
	rm -rf "$P/forward" "$P"/omen-* "$P/queries.active"
	printf 'global: {}\n' > "$OUT/prometheus.yml"
	"$PROMETHEUS" --config.file="$OUT/prometheus.yml" --web.listen-address="127.0.0.1:$((PORT + 1))" --storage.tsdb.path="$P" > "$OUT/prometheus.log" 2>&1 &
	pid=$!
	t0=$(now)
	awaitLog "$OUT/prometheus.log" 'Replaying WAL' $pid || { echo "Prometheus exited before its replay: $OUT/prometheus.log"; exit 2; }
	sleep "$DELAY"
	s=$(now); kill -TERM $pid; wait $pid; rc=$?
	echo "Prometheus: SIGTERM $(echo "$s - $t0" | bc) s after the start: exit $rc after $(since "$s") s, $(grep -o 'total_replay_duration=[^ ]*' "$OUT/prometheus.log" || echo 'replay not completed')"
	pid=
fi
echo "files in $OUT"
exit $fail
