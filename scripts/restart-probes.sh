#!/usr/bin/env bash
# What the StatefulSet's probes and terminationGracePeriodSeconds meet at a
# restart: omen with SERIES series (default 100 000), HIST of 15 s history
# written by `omen loadgen` (1h, 240 rounds at 150 000 samples/s), then 8
# live rounds 15 s apart; SIGKILL, a restart (WAL replay, no final snapshot),
# 6 rounds, SIGTERM, a restart, 4 rounds, SIGTERM. Every 0.5 s from each
# start it asks /-/healthy and /-/ready (code and seconds, as a kubelet's
# httpGet probe does) and reads the RSS: probe-<run>.txt in OUT. Prints the
# seconds to /-/ready, SIGTERM to exit, the slowest /-/healthy answer and
# any that was not 200 before the stop.
#
#   make build && bash scripts/restart-probes.sh     (~10 minutes on 2 cores)
#
# PORT (21001), OUT, SERIES, HIST may be set; omen's serve flags after --.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PORT=${PORT:-21001}
OUT=${OUT:-$(mktemp -d /tmp/omen-probes.XXXXXX)}
SERIES=${SERIES:-100000}
HIST=${HIST:-1h}
[ "${1:-}" = -- ] && shift
B=http://127.0.0.1:$PORT
D=$OUT/data
mkdir -p "$OUT"
rss() { awk '/VmRSS/{print $2*1024}' "/proc/$1/status" 2>/dev/null; }
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null' EXIT
# start starts omen with serve flags "$@" as run $run (set by the caller).
start() {
	: "${run:?}"
	bin/omen serve --web.listen-address="127.0.0.1:$PORT" --storage.tsdb.path="$D" "$@" > "$OUT/omen-$run.log" 2>&1 &
	pid=$!
	t0=$(date +%s.%N)
	(while kill -0 $pid 2>/dev/null; do
		now=$(echo "$(date +%s.%N) - $t0" | bc)
		h=$(curl -s -o /dev/null -m 10 -w '%{http_code} %{time_total}' "$B/-/healthy")
		r=$(curl -s -o /dev/null -m 10 -w '%{http_code} %{time_total}' "$B/-/ready")
		echo "$now healthy=$h ready=$r rss=$(rss $pid)"
		sleep 0.5
	done) > "$OUT/probe-$run.txt" 2> /dev/null &
	# Until ready, for up to 30 minutes, or until omen exits (a port in
	# use, a bad flag): then there is nothing to measure.
	for _ in $(seq 3600); do
		curl -sf -m 10 "$B/-/ready" > /dev/null && break
		kill -0 "$pid" 2> /dev/null || { echo "$run: omen exited before it was ready: $OUT/omen-$run.log"; tail -3 "$OUT/omen-$run.log"; exit 2; }
		sleep 0.5
	done
	curl -sf -m 10 "$B/-/ready" > /dev/null || { echo "$run: omen not ready after 30 minutes: $OUT/omen-$run.log"; exit 2; }
	echo "$run: ready after $(echo "$(date +%s.%N) - $t0" | bc) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
}
lg() { bin/omen loadgen --url="$B/api/v1/write" --series="$SERIES" --no-warmup --log.level=error "$@" > "$OUT/loadgen.last" 2>&1; }
rounds() { for _ in $(seq "$1"); do s=$(date +%s); lg --rounds=1; d=$((15 - ($(date +%s) - s))); [ $d -gt 0 ] && sleep $d; done; }
stop() {
	s=$(date +%s.%N)
	kill -"$1" $pid
	wait $pid 2> /dev/null
	stopped=$(echo "$(date +%s.%N) - $s" | bc)
	echo "$run: $1 to exit ${stopped} s, RSS before $2"
	f=$OUT/probe-$run.txt
	# The answers before the stop (the listener closes at SIGTERM).
	before=$(awk -v t="$3" '$1 < t' "$f")
	echo "$run: /-/healthy slowest $(awk '{print $3}' <<< "$before" | sort -g | tail -1) s, not 200: $(grep -vc 'healthy=200' <<< "$before") of $(wc -l <<< "$before")"
	grep -hE 'WAL replay completed|snapshot (written|restored)' "$OUT/omen-$run.log" | sed 's/.*msg=//'
}
rm -rf "$D"
run=fresh start "$@"
steps=$(($(echo "$HIST" | sed 's/h$/*3600/; s/m$/*60/' | bc) / 15))
lg --sample-interval=15s --backdate="$HIST" --rounds=$steps --rate=150000
rounds 8
curl -s "$B/metrics" | grep -E '^(omen_tsdb_head_series|omen_series_scored|omen_series_forecasting) '
t=$(echo "$(date +%s.%N) - $t0" | bc); run=fresh stop KILL "$(rss $pid)" "$t"
run=afterkill start "$@"
rounds 6
t=$(echo "$(date +%s.%N) - $t0" | bc); run=afterkill stop TERM "$(rss $pid)" "$t"
run=afterterm start "$@"
rounds 4
t=$(echo "$(date +%s.%N) - $t0" | bc); run=afterterm stop TERM "$(rss $pid)" "$t"
pid=
echo "files in $OUT"
