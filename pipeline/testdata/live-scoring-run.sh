#!/bin/bash
# Usage: pipeline/testdata/live-scoring-run.sh NAME PORT [serve flags...]
# (after make build; docs/benchmarks.md, "Live scoring overhead (issue 5)")
# Real run: 100k series (SERIES) via omen loadgen, then MEAS rounds every
# 15 s in real time (the issue's 1 sample per 15 s). CPU and RSS from /proc
# (no /metrics scrape inside the window: it costs CPU itself).
#
# Before the measured rounds, either WARM rounds 3 s apart in real time
# (the default: 3.5 min of sample time, enough for the detectors' warm-up,
# not for the forecasters), or, with HIST set (say HIST=2h), one loadgen
# run that writes HIST of history at 15 s steps (at HIST_RATE samples/s),
# so that the forecasters are fitted and their output series exist: the
# steady state of a deployment that has run for hours.
#
# HEAP=FILE saves a heap profile after the measured rounds (and HEAP.0 before),
# each after two forced collections (see liveheap).
#
# After the measured rounds, RESULT NAME live_heap: the heap in use and
# allocated after two forced collections, which is what to compare between
# binaries. go_memstats_heap_inuse_bytes read at any other time (the RESULT
# lines from the window's /metrics scrape) is anywhere between that and
# GOGC=75 % more, by where the scrape fell in the collector's cycle: one
# such reading of each of two binaries at 100 000 series, 963 and 1121 MB,
# looked like 1.6 KB a series more at the later one (ce286a6 against
# a83f67f); after a forced collection, at 30 000 series (HIST=2h, two
# runs each), a83f67f held 404.5 and 405.3 MiB, 59b1f96 410.0 and 403.4:
# the same heap (review helper-242).
#
# SETTLE=N runs N unmeasured rounds 15 s apart before the window (see below).
#
# THEN_OFF=1 then restarts omen with scoring off on the same storage (see the end),
# for OFF_MEAS rounds (default MEAS).
#
# SERVER=prometheus runs Debian's Prometheus receiver instead of omen, with
# the same load, for the memory comparison of issue 7 at a steady state.
set -u
name=$1; port=$2; shift 2
WARM=${WARM:-70}; MEAS=${MEAS:-12}; SERIES=${SERIES:-100000}
dir=$(mktemp -d /tmp/omen-live-$name.XXXX)
if [ "${SERVER:-omen}" = prometheus ]; then
	printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' > $dir/prometheus.yml
	prometheus --config.file=$dir/prometheus.yml --storage.tsdb.path=$dir/data --web.listen-address=127.0.0.1:$port \
		--web.enable-remote-write-receiver "$@" > $dir/omen.log 2>&1 &
else
	${OMEN:-bin/omen} serve --web.listen-address=127.0.0.1:$port --storage.tsdb.path=$dir/data "$@" > $dir/omen.log 2>&1 &
fi
pid=$!
echo "$name pid=$pid dir=$dir"
for i in $(seq 60); do curl -sf http://127.0.0.1:$port/-/ready >/dev/null && break; sleep 1; done
echo "RESULT $name idle_rss=$(awk '/VmRSS/{print $2*1024}' /proc/$pid/status)"
cpu() { awk '{print ($14+$15)/100}' /proc/$pid/stat; }
rss() { awk '/VmRSS/{print $2*1024}' /proc/$pid/status; }
# MEAS rounds 15 s apart in real time; the process's memory ($pid's), with
# the median and the range of the RSS and of its anonymous part taken after
# each round: one reading at the end moved by ±150 MB between runs of one
# binary (the head's chunks cut and m-mapped in lockstep, the collector's
# timing).
rounds() {
	: > $dir/rss.rounds
	for i in $(seq $MEAS); do
		s=$(date +%s.%N); lg --rounds=1
		echo "$(rss) $(awk '/RssAnon/{print $2*1024}' /proc/$pid/status)" >> $dir/rss.rounds
		d=$(echo "15 - ($(date +%s.%N) - $s)" | bc); [ "${d:0:1}" != "-" ] && sleep $d
	done
}
# liveheap [FILE]: two forced collections (the first moves the sync.Pools'
# contents to their victim caches, the second frees them: a history burst's
# pooled batches, the refits' scratch), FILE the heap profile as of the
# second; then the heap in use and allocated from /metrics, as a RESULT
# line's fields.
liveheap() {
	curl -s http://127.0.0.1:$port/debug/pprof/heap?gc=1 > /dev/null
	curl -s http://127.0.0.1:$port/debug/pprof/heap?gc=1 > "${1:-/dev/null}"
	curl -s http://127.0.0.1:$port/metrics | awk '/^go_memstats_heap_inuse_bytes /{i=$2} /^go_memstats_heap_alloc_bytes /{a=$2} END{printf "inuse=%.0f alloc=%.0f", i, a}'
}
med() { sort -n | awk '{v[NR]=$1} END{printf "%d..%d..%d", v[1], (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2), v[NR]}'; }
mem() { echo "rss=$(rss) hwm=$(awk '/VmHWM/{print $2*1024}' /proc/$pid/status) anon=$(awk '/RssAnon/{print $2*1024}' /proc/$pid/status) file=$(awk '/RssFile/{print $2*1024}' /proc/$pid/status) rounds_rss_min..median..max=$(awk '{print $1}' $dir/rss.rounds | med) rounds_anon=$(awk '{print $2}' $dir/rss.rounds | med)"; }
lg() { ${OMEN:-bin/omen} loadgen --url=http://127.0.0.1:$port/api/v1/write --series=$SERIES --no-warmup --log.level=error "$@" > $dir/loadgen.last 2>&1; grep -h "^measured" $dir/loadgen.last | grep -v "errors: none" >> $dir/lgerr; }
if [ -n "${HIST:-}" ]; then
	h0=$(date +%s)
	steps=$(( $(echo "$HIST" | sed 's/h$/*3600/; s/m$/*60/' | bc) / 15 ))
	lg --sample-interval=15s --backdate="$HIST" --rounds=$steps --rate=${HIST_RATE:-200000}
	echo "RESULT $name history $HIST ($steps rounds) written in $(( $(date +%s) - h0 )) s: $(grep -h '^measured' $dir/loadgen.last)"
	sleep 30 # let the scorers finish the history
else
	for i in $(seq $WARM); do s=$(date +%s.%N); lg --rounds=1; d=$(echo "3 - ($(date +%s.%N) - $s)" | bc); [ "${d:0:1}" != "-" ] && sleep $d; done
	sleep 5
fi
# SETTLE=N: N more rounds 15 s apart in real time before the window, not measured, so that the start's transients
# are over before it, as in a deployment that has run for hours: the release of the history burst's free memory
# (internal/memrelease, at most every 5 minutes) fell inside or after a 3-minute window by chance, and moved one
# binary's RSS by 170 MB between runs. SETTLE=24 (6 minutes) spans one release gap.
[ -n "${SETTLE:-}" ] && MEAS=$SETTLE rounds
# With HEAP set, a heap profile at the window's start too (HEAP.0): pprof -base HEAP.0 shows what the window
# allocated. A heap profile is as of the last collection, which may be minutes old: liveheap runs two first.
[ -n "${HEAP:-}" ] && echo "RESULT $name live_heap_before $(liveheap "$HEAP.0")"
c0=$(cpu); t0=$(date +%s.%N)
# PROFILE=FILE: a CPU profile of the measured window (the profiler's own cost is small).
[ -n "${PROFILE:-}" ] && curl -s "http://127.0.0.1:$port/debug/pprof/profile?seconds=$((MEAS * 15 - 5))" > "$PROFILE" &
rounds
c1=$(cpu); t1=$(date +%s.%N)
echo "RESULT $name cpu_s=$(echo "$c1 - $c0" | bc) wall_s=$(echo "$t1 - $t0" | bc) rounds=$MEAS $(mem) load=\"$(uptime | sed 's/.*average: //')\""
# One /metrics scrape, its CPU and size.
s0=$(cpu); w0=$(date +%s.%N); curl -s http://127.0.0.1:$port/metrics > $dir/metrics.txt; s1=$(cpu); w1=$(date +%s.%N)
echo "RESULT $name scrape_cpu_s=$(echo "$s1 - $s0" | bc) scrape_wall_s=$(echo "$w1 - $w0" | bc) lines=$(grep -vc '^#' $dir/metrics.txt) bytes=$(wc -c < $dir/metrics.txt)"
# And one gzipped, as Prometheus asks for it (Accept-Encoding: gzip).
s0=$(cpu); w0=$(date +%s.%N); curl -s -H 'Accept-Encoding: gzip' http://127.0.0.1:$port/metrics > $dir/metrics.gz; s1=$(cpu); w1=$(date +%s.%N)
echo "RESULT $name scrape_gzip_cpu_s=$(echo "$s1 - $s0" | bc) scrape_gzip_wall_s=$(echo "$w1 - $w0" | bc) gzip_bytes=$(wc -c < $dir/metrics.gz)"
for k in process_resident_memory_bytes go_memstats_heap_inuse_bytes go_memstats_heap_alloc_bytes go_memstats_next_gc_bytes omen_tsdb_head_series prometheus_tsdb_head_series omen_series_scored omen_models_warming omen_scoring_dropped_total omen_output_append_failures_total omen_series_over_budget_total; do echo "RESULT $name $k $(grep -E "^$k " $dir/metrics.txt | awk '{print $2}')"; done
echo "RESULT $name loadgen_rounds_with_errors $(cat $dir/lgerr 2>/dev/null | wc -l)"; head -3 $dir/lgerr 2>/dev/null
echo "RESULT $name live_heap $(liveheap "${HEAP:-}")"
kill -TERM $pid; wait $pid
grep -h "snapshot written" $dir/omen.log | tail -2
# THEN_OFF=1: start omen again on the same storage with scoring off and run MEAS more rounds. Its head replays
# the same series, inputs and outputs, with no models: what is left is the memory of that TSDB head, to set
# against the scoring run's ("the memory of the TSDB head plus ≤ 4 KiB per scored series", issue 5).
if [ -n "${THEN_OFF:-}" ]; then
	rm -f $dir/data/omen-models.snap # the models' states, held for their series' return otherwise
	${OMEN:-bin/omen} serve --web.listen-address=127.0.0.1:$port --storage.tsdb.path=$dir/data --detect.max-series=0 > $dir/omen-off.log 2>&1 &
	pid=$!
	r0=$(date +%s)
	for i in $(seq 600); do curl -sf http://127.0.0.1:$port/-/ready >/dev/null && break; sleep 1; done
	echo "RESULT $name-off ready after $(( $(date +%s) - r0 )) s"
	MEAS=${OFF_MEAS:-$MEAS} rounds # OFF_MEAS: more rounds, for the replayed head to settle
	echo "RESULT $name-off $(mem)"
	curl -s http://127.0.0.1:$port/metrics > $dir/metrics-off.txt
	for k in process_resident_memory_bytes go_memstats_heap_inuse_bytes go_memstats_heap_alloc_bytes omen_tsdb_head_series prometheus_tsdb_head_series omen_series_scored; do echo "RESULT $name-off $k $(grep -E "^$k " $dir/metrics-off.txt | awk '{print $2}')"; done
	[ -n "${HEAP:-}" ] && curl -s http://127.0.0.1:$port/debug/pprof/heap?gc=1 > "$HEAP.off"
	kill -TERM $pid; wait $pid
fi
# THEN_ON=1: start omen again on the same storage with the same flags (a restart: WAL replay, models restored) and
# run ON_MEAS rounds (default MEAS) from the moment it is ready; the RSS each second from the start (rss.restart:
# seconds since the start, RSS, anonymous RSS), and with HEAP a heap profile every 30 s of the rounds (HEAP.on.N,
# as of the last collection, none forced): where a restart's high-water mark comes from.
if [ -n "${THEN_ON:-}" ]; then
	${OMEN:-bin/omen} serve --web.listen-address=127.0.0.1:$port --storage.tsdb.path=$dir/data "$@" > $dir/omen-on.log 2>&1 &
	pid=$!
	r0=$(date +%s)
	(while kill -0 $pid 2>/dev/null; do echo "$(( $(date +%s) - r0 )) $(rss) $(awk '/RssAnon/{print $2*1024}' /proc/$pid/status)"; sleep 1; done) > $dir/rss.restart 2>/dev/null &
	for i in $(seq 900); do curl -sf http://127.0.0.1:$port/-/ready >/dev/null && break; sleep 1; done
	echo "RESULT $name-on ready after $(( $(date +%s) - r0 )) s, hwm so far $(awk '/VmHWM/{print $2*1024}' /proc/$pid/status)"
	if [ -n "${HEAP:-}" ]; then
		(n=0; while kill -0 $pid 2>/dev/null; do sleep 30; n=$((n + 1)); curl -s http://127.0.0.1:$port/debug/pprof/heap > "$HEAP.on.$n"; done) &
		hp=$!
	fi
	MEAS=${ON_MEAS:-$MEAS} rounds
	echo "RESULT $name-on $(mem)"
	peak=$(sort -k2 -n $dir/rss.restart | tail -1)
	echo "RESULT $name-on peak (s since start, rss, anon): $peak"
	cp $dir/rss.restart /tmp/rss.restart.$name
	[ -n "${HEAP:-}" ] && kill $hp 2>/dev/null
	curl -s http://127.0.0.1:$port/metrics | grep -E '^(omen_scoring_dropped_total|omen_series_scored|go_memstats_heap_inuse_bytes|omen_models_warming) '
	kill -TERM $pid; wait $pid
fi
rm -rf $dir/data
