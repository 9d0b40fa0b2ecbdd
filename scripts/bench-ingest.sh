#!/usr/bin/env bash
# bench-ingest.sh: omen's remote-write ingest against Prometheus's own
# receiver, on the same machine, in the same run, with the same load.
#
# For each series count (SERIES, default "10000 100000") it starts omen
# (`omen serve`, default configuration, so scoring is on) and Debian's
# Prometheus (--web.enable-remote-write-receiver, no scrape targets), each
# with fresh storage, and then runs ROUNDS (default 3) alternating rounds of
# `omen loadgen` against each: remote-write 1.0 (all Prometheus 2.42
# accepts), one unmeasured warm-up pass over all series (the first creates
# them), then DURATION (default 20s) measured. It prints the median
# accepted samples/s of each and the ratio omen/Prometheus, peak RSS (VmHWM)
# and RSS per active series. Raw loadgen output goes to ${OUT:-./out/bench-ingest}.
#
# Loopback only; every wait is bounded; both servers are killed on exit.
# PROFILE=1 also takes a 15 s CPU profile of omen under load at the largest
# series count (omen serves /debug/pprof).
set -euo pipefail

bin=${OMEN:-./bin/omen}
prom=${PROMETHEUS:-prometheus}
rounds=${ROUNDS:-3}
duration=${DURATION:-20s}
series_list=${SERIES:-10000 100000}
concurrency=${CONCURRENCY:-4}
batch=${BATCH:-2000}
out=${OUT:-./out/bench-ingest}
profile=${PROFILE:-0}

[ -x "$bin" ] || { echo "bench-ingest: $bin not found; run make build" >&2; exit 1; }
command -v "$prom" >/dev/null || { echo "bench-ingest: $prom not found; run make deps-e2e" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench-ingest: needs jq" >&2; exit 1; }

work=$(mktemp -d /tmp/bench-ingest.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$out"
mkdir -p "$out"

# free_port prints a loopback TCP port nobody listens on.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready URL PID NAME: up to 120 s for /-/ready.
wait_ready() {
	for _ in $(seq 600); do
		kill -0 "$2" 2>/dev/null || { echo "bench-ingest: $3 exited; log:" >&2; tail -20 "$work/$3.log" >&2; exit 1; }
		curl -sf -o /dev/null "$1/-/ready" && return 0
		sleep 0.2
	done
	echo "bench-ingest: $3 not ready after 120 s" >&2
	exit 1
}

# kib PID FIELD: a /proc/PID/status field (VmHWM, VmRSS) in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# load NAME PORT SERIES ROUND: one loadgen run; its JSON line goes to $out.
load() {
	local f="$out/$1-series=$3-round=$4"
	timeout 600 "$bin" loadgen --url "http://127.0.0.1:$2/api/v1/write" --protocol 1 --series "$3" \
		--batch "$batch" --concurrency "$concurrency" --duration "$duration" --warmup >"$f.txt" 2>"$f.log" || {
		echo "bench-ingest: loadgen against $1 failed:" >&2
		cat "$f.log" >&2
		exit 1
	}
	tail -n 1 "$f.txt" >"$f.json"
	printf '  %-10s round %d: %s\n' "$1" "$4" "$(grep '^measured:' "$f.txt")" >&2
}

echo "bench-ingest: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run; $rounds rounds of $duration, concurrency $concurrency, batch $batch" >&2
summary="$out/summary.tsv"
printf 'series\tomen_samples_per_s\tprom_samples_per_s\tratio\tomen_hwm_kib\tprom_hwm_kib\tomen_b_per_series\tprom_b_per_series\tomen_p99_s\tprom_p99_s\tomen_errors\tprom_errors\tomen_idle_kib\tprom_idle_kib\tloadgen_cores\n' >"$summary"
for n in $series_list; do
	op=$(free_port)
	pp=$(free_port)
	mkdir -p "$work/omen-$n" "$work/prom-$n"
	printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' >"$work/prometheus.yml"
	"$bin" serve --web.listen-address="127.0.0.1:$op" --storage.tsdb.path="$work/omen-$n" >"$work/omen.log" 2>&1 &
	opid=$!
	pids+=("$opid")
	"$prom" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-$n" \
		--web.listen-address="127.0.0.1:$pp" --web.enable-remote-write-receiver >"$work/prometheus.log" 2>&1 &
	ppid=$!
	pids+=("$ppid")
	wait_ready "http://127.0.0.1:$op" "$opid" omen
	wait_ready "http://127.0.0.1:$pp" "$ppid" prometheus
	obase=$(kib "$opid" VmRSS)
	pbase=$(kib "$ppid" VmRSS)
	echo "bench-ingest: $n series (omen pid $opid on :$op, prometheus pid $ppid on :$pp; idle RSS $((obase / 1024)) and $((pbase / 1024)) MiB)" >&2

	for r in $(seq "$rounds"); do
		# Alternate who goes first, so drift in the machine's other load
		# does not favour one side.
		if [ $((r % 2)) -eq 1 ]; then
			load prometheus "$pp" "$n" "$r"
			load omen "$op" "$n" "$r"
		else
			load omen "$op" "$n" "$r"
			load prometheus "$pp" "$n" "$r"
		fi
	done
	# Peak RSS of the measured rounds, before any profiling load.
	ohwm=$(kib "$opid" VmHWM)
	phwm=$(kib "$ppid" VmHWM)
	if [ "$profile" = 1 ] && [ "$n" = "${series_list##* }" ]; then
		echo "bench-ingest: profiling omen for 15 s under load" >&2
		curl -sf -o "$out/omen-cpu.pprof" "http://127.0.0.1:$op/debug/pprof/profile?seconds=15" &
		cpid=$!
		timeout 120 "$bin" loadgen --url "http://127.0.0.1:$op/api/v1/write" --series "$n" --batch "$batch" \
			--concurrency "$concurrency" --duration 20s --warmup >"$out/omen-profile-load.txt" 2>&1 || true
		wait "$cpid" || echo "bench-ingest: no CPU profile (is /debug/pprof served?)" >&2
		curl -sf -o "$out/omen-heap.pprof" "http://127.0.0.1:$op/debug/pprof/heap" || true
		curl -sf -o "$out/omen-allocs.pprof" "http://127.0.0.1:$op/debug/pprof/allocs" || true
	fi

	kill "$opid" "$ppid"
	wait "$opid" 2>/dev/null || true
	wait "$ppid" 2>/dev/null || true
	cp "$work/omen.log" "$out/omen-series=$n.log"
	cp "$work/prometheus.log" "$out/prometheus-series=$n.log"
	rm -rf "$work/omen-$n" "$work/prom-$n"

	# Medians over the rounds of accepted samples/s and p99 latency; errors summed.
	med() { jq -s "[.[].measured.$2] | sort | .[length/2|floor]" "$out"/"$1"-series="$n"-round=*.json; }
	errs() { jq -s '[.[].measured.errors_by_status | to_entries[] | .value] | add // 0' "$out"/"$1"-series="$n"-round=*.json; }
	os=$(med omen accepted_samples_per_second)
	ps=$(med prometheus accepted_samples_per_second)
	printf '%s\t%.0f\t%.0f\t%.2f\t%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\n' "$n" "$os" "$ps" \
		"$(jq -n "if $ps > 0 then $os / $ps else 0 end")" "$ohwm" "$phwm" \
		"$(jq -n "$ohwm * 1024 / $n")" "$(jq -n "$phwm * 1024 / $n")" \
		"$(med omen latency_p99_seconds)" "$(med prometheus latency_p99_seconds)" \
		"$(errs omen)" "$(errs prometheus)" "$obase" "$pbase" \
		"$(jq -s '[.[].measured | .generator_cpu_seconds / .seconds] | max' "$out"/*-series="$n"-round=*.json)" >>"$summary"
done

echo "bench-ingest: load average $(cut -d' ' -f1-3 /proc/loadavg) after the run" >&2
echo
echo "Median of $rounds rounds of $duration each (remote-write 1.0, batch $batch, concurrency $concurrency); accepted samples/s:"
echo "(peak RSS is VmHWM; B/series is peak RSS / series, and in brackets (peak - idle RSS) / series)"
awk -F'\t' 'NR == 1 { next } {
	printf "series=%-7s omen %9.0f/s  prometheus %9.0f/s  ratio %.2f  |  peak RSS omen %5.0f MiB %6.0f B/series (%5.0f)  prometheus %5.0f MiB %6.0f B/series (%5.0f)  |  p99 omen %.3fs prometheus %.3fs  |  errors omen %d prometheus %d  |  loadgen at most %.2f cores\n",
		$1, $2, $3, $4, $5/1024, $7, ($5-$13)*1024/$1, $6/1024, $8, ($6-$14)*1024/$1, $9, $10, $11, $12, $15 }' "$summary"
