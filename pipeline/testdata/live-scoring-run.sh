#!/bin/bash
# Usage: pipeline/testdata/live-scoring-run.sh NAME PORT [serve flags...]
# (after make build; docs/benchmarks.md, "Live scoring overhead (issue 5)")
# Real run: 100k series via omen loadgen; WARM rounds every 3 s, then MEAS
# rounds every 15 s (the issue's 1 sample per 15 s). CPU and RSS from
# /proc (no /metrics scrape inside the window: it costs CPU itself).
set -u
name=$1; port=$2; shift 2
WARM=${WARM:-70}; MEAS=${MEAS:-12}
dir=$(mktemp -d /tmp/omen-live-$name.XXXX)
${OMEN:-bin/omen} serve --web.listen-address=127.0.0.1:$port --storage.tsdb.path=$dir/data "$@" > $dir/omen.log 2>&1 &
pid=$!
echo "$name pid=$pid dir=$dir"
for i in $(seq 60); do curl -sf http://127.0.0.1:$port/-/ready >/dev/null && break; sleep 1; done
cpu() { awk '{print ($14+$15)/100}' /proc/$pid/stat; }
rss() { awk '/VmRSS/{print $2*1024}' /proc/$pid/status; }
m() { curl -s http://127.0.0.1:$port/metrics | grep -E "^($1) " | awk '{print $2}'; }
lg() { ${OMEN:-bin/omen} loadgen --url=http://127.0.0.1:$port/api/v1/write --series=100000 --rounds=1 --no-warmup --log.level=error > $dir/loadgen.last 2>&1; grep -h "^measured" $dir/loadgen.last | grep -v "errors: none" >> $dir/lgerr; }
for i in $(seq $WARM); do s=$(date +%s.%N); lg; d=$(echo "3 - ($(date +%s.%N) - $s)" | bc); [ "${d:0:1}" != "-" ] && sleep $d; done
sleep 5
c0=$(cpu); t0=$(date +%s.%N)
for i in $(seq $MEAS); do s=$(date +%s.%N); lg; d=$(echo "15 - ($(date +%s.%N) - $s)" | bc); [ "${d:0:1}" != "-" ] && sleep $d; done
c1=$(cpu); t1=$(date +%s.%N)
echo "RESULT $name cpu_s=$(echo "$c1 - $c0" | bc) wall_s=$(echo "$t1 - $t0" | bc) rounds=$MEAS rss=$(rss) load=\"$(uptime | sed 's/.*average: //')\""
# One /metrics scrape, its CPU and size.
s0=$(cpu); w0=$(date +%s.%N); curl -s http://127.0.0.1:$port/metrics > $dir/metrics.txt; s1=$(cpu); w1=$(date +%s.%N)
echo "RESULT $name scrape_cpu_s=$(echo "$s1 - $s0" | bc) scrape_wall_s=$(echo "$w1 - $w0" | bc) lines=$(grep -vc '^#' $dir/metrics.txt) bytes=$(wc -c < $dir/metrics.txt)"
for k in process_resident_memory_bytes go_memstats_heap_inuse_bytes go_memstats_heap_alloc_bytes go_memstats_next_gc_bytes omen_tsdb_head_series omen_series_scored omen_models_warming omen_scoring_dropped_total omen_output_append_failures_total omen_series_over_budget_total; do echo "RESULT $name $k $(grep -E "^$k " $dir/metrics.txt | awk '{print $2}')"; done
echo "RESULT $name loadgen_rounds_with_errors $(cat $dir/lgerr 2>/dev/null | wc -l)"; head -3 $dir/lgerr 2>/dev/null
s0=$(cpu); kill -TERM $pid; wait $pid
grep -h "snapshot written" $dir/omen.log | tail -2
rm -rf $dir/data
