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
# After the rounds, omen gets LATENCY_DURATION (default 30s) more load at
# half its median rate with a probe (`omen loadgen --rate --probe-url`): a
# probe series written every PROBE_EVERY (default 100ms, so a 30 s run has
# ~300 probes and its p99 is not just the slowest one), timed from the
# write's acknowledgement to /api/v1/anomalies showing its score. Each run also records the server's
# CPU (utime+stime from /proc) so cores per 100k samples/s can be sized.
# Then, unless SAME_LOAD=0, each server runs fresh at the same load
# (80% of Prometheus's median rate, SAME_LOAD_DURATION), for the memory
# comparison at equal samples (see same_load).
# The run fails, with the reason on stderr, if a server exits or refuses
# requests (see check_run).
# PORT_BASE=N uses ports N, N+1, ... instead of ones the kernel picks.
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
latency_duration=${LATENCY_DURATION:-30s}
probe_every=${PROBE_EVERY:-100ms}
omen_args=${OMEN_ARGS:-}
hz=$(getconf CLK_TCK)
# median, for jq: the middle value, or the mean of the two middle ones of an
# even count (ROUNDS=2, 4: not the upper one).
median='def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2 - 1] + .[length/2]) / 2 end;'

[ -x "$bin" ] || { echo "bench-ingest: $bin not found; run make build" >&2; exit 1; }
command -v "$prom" >/dev/null || { echo "bench-ingest: $prom not found; run make deps-e2e" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench-ingest: needs jq" >&2; exit 1; }

# The servers' storage and logs go to a directory under OUT, removed on
# exit and, with OUT, at the next run's start: a run killed by SIGKILL
# (which runs no trap) left a /tmp/bench-ingest.* of its TSDBs behind for
# good, up to gigabytes at 100k series.
rm -rf "$out"
mkdir -p "$out"
work="$out/work"
mkdir "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port sets port to a loopback TCP port nobody listens on: the next
# from PORT_BASE if set (on a shared machine, a range of one's own), else
# one the kernel picks. A port something answers on (a server left over
# from an earlier run, another user's) is an error, not a server to
# measure: its /-/ready would pass for ours.
next_port=${PORT_BASE:-}
free_port() {
	if [ -n "$next_port" ]; then
		port=$next_port
		next_port=$((next_port + 1))
	else
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
	fi
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "bench-ingest: port $port is in use (a server left from an earlier run?)" >&2
		exit 1
	fi
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

# counters PORT: omen_series_over_budget_total and omen_scoring_dropped_total
# from one scrape of omen's /metrics (a costly page: it lists every scored
# series, so it is read only before and after each run).
counters() {
	if [ "${SCRAPE:-1}" = 0 ]; then
		echo "0 0" # SCRAPE=0: no scrape, no figures (to see omen's RSS without a scrape's garbage)
		return
	fi
	curl -sf "http://127.0.0.1:$1/metrics" | awk '
		$1 == "omen_series_over_budget_total" { o += $2 }
		$1 == "omen_scoring_dropped_total" { d += $2 }
		END { printf "%.0f %.0f\n", o, d }'
}

# ticks PID: the process's user+system CPU time in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# check_run NAME PID FILE: fails the benchmark, loudly, unless the server
# NAME (PID) is still running after the loadgen run whose last line is in
# FILE, and that run's receiver accepted samples in each phase and
# refused none (ALLOW_ERRORS=1: refusals and timeouts are only counted, as
# the summary's errors). A ratio over a dead or refusing server's figures
# would be a figure about a failure.
check_run() {
	local errs
	if ! kill -0 "$2" 2>/dev/null; then
		echo "bench-ingest: $1 (pid $2) exited during the load; its log:" >&2
		tail -20 "$work/$1.log" >&2
		exit 1
	fi
	if ! tail -n 1 "$3" | jq -e '[.warmup, .measured | select(. != null) | .samples_accepted > 0] | all' >/dev/null; then
		echo "bench-ingest: $1 accepted no samples in a phase of the run: $(grep -E '^(warm-up|measured):' "$3" | tr '\n' ' ')" >&2
		exit 1
	fi
	errs=$(tail -n 1 "$3" | jq -r '[.warmup, .measured | select(. != null) | .errors_by_status // {} | to_entries[] | "\(.key)×\(.value)"] | join(" ")')
	if [ -n "$errs" ] && [ "${ALLOW_ERRORS:-0}" != 1 ]; then
		echo "bench-ingest: $1 refused or did not answer requests ($errs; ALLOW_ERRORS=1 counts them instead): $(grep -E '^(warm-up|measured):' "$3" | tr '\n' ' ')" >&2
		exit 1
	fi
}

# load NAME PORT SERIES ROUND PID [LOADGEN ARGS...]: one loadgen run; its
# JSON line goes to $out, with the server's CPU cores over the whole run
# (warm-up included) added as server_cores.
load() {
	local name=$1 port=$2 n=$3 round=$4 pid=$5
	shift 5
	local f="$out/$name-series=$n-round=$round"
	local c0 t0 c1 t1 s0=0 d0=0 s1=0 d1=0
	if [ "$name" = omen ]; then
		read -r s0 d0 < <(counters "$port")
	fi
	c0=$(ticks "$pid")
	t0=$(date +%s.%N)
	# Against omen, --drain-url also times how long omen takes, after the
	# load, to score everything it acknowledged (scoring runs from bounded
	# queues behind the acknowledgements), with marker samples polled on
	# /api/v1/anomalies: polling /metrics instead would cost omen more than
	# the scoring (it exposes every scored series).
	local drain=() warmup=--warmup
	if [ "$name" = omen ]; then drain=(--drain-url "http://127.0.0.1:$port"); fi
	if [ "$round" = latency ]; then warmup=--no-warmup; fi
	"${pdeath[@]}" timeout 900 "${pdeath[@]}" "$bin" loadgen --url "http://127.0.0.1:$port/api/v1/write" --protocol 1 --series "$n" \
		--batch "$batch" --concurrency "$concurrency" --duration "$duration" "$warmup" "${drain[@]}" "$@" >"$f.txt" 2>"$f.log" || {
		echo "bench-ingest: loadgen against $name failed:" >&2
		cat "$f.log" >&2
		exit 1
	}
	check_run "$name" "$pid" "$f.txt"
	c1=$(ticks "$pid")
	t1=$(date +%s.%N)
	if [ "$name" = omen ]; then
		read -r s1 d1 < <(counters "$port")
	fi
	# Dropped samples and series over the scoring budget cover the warm-up
	# pass too (0 for Prometheus). The pipeline has no counter of samples
	# scored; once drained, every sample tapped was scored unless dropped,
	# NaN, a counter's first, or of a series over budget.
	tail -n 1 "$f.txt" | jq -c --argjson cores "$(jq -n "($c1 - $c0) / $hz / ($t1 - $t0)")" \
		--argjson over $((s1 - s0)) --argjson dropped $((d1 - d0)) \
		'.server_cores = $cores | .series_over_budget = $over | .scoring_dropped = $dropped
		| .scored_samples_per_second = .measured.samples_accepted / (.measured.seconds + (.measured.drain_seconds // 0))' >"$f.json"
	printf '  %-10s round %s: %s (server %.2f cores' "$name" "$round" "$(grep '^measured:' "$f.txt")" "$(jq .server_cores "$f.json")" >&2
	if [ "$name" = omen ]; then
		printf '; new series over the scoring budget %s; samples dropped by full scoring queues %s of %s accepted incl. warm-up; queues drained %.1f s after the load: %.0f samples/s accepted and scored' \
			"$((s1 - s0))" "$((d1 - d0))" "$(jq '.measured.samples_accepted + (.warmup.samples_accepted // 0)' "$f.json")" \
			"$(jq '.measured.drain_seconds // 0' "$f.json")" "$(jq .scored_samples_per_second "$f.json")" >&2
	fi
	printf ')\n' >&2
	if grep -q '^probe:' "$f.txt"; then printf '  %-10s round %s: %s\n' "$name" "$round" "$(grep '^probe:' "$f.txt")" >&2; fi
}

# The servers and loadgen die with this script even when it is killed by
# SIGKILL, which runs no trap (a leftover omen or Prometheus would take
# CPU from every later run; a loadgen would spin on refused connections):
# the kernel's parent-death signal, set by util-linux's setpriv where it
# has --pdeathsig (on timeout and on loadgen, timeout's child).
pdeath=()
if setpriv --pdeathsig KILL true 2>/dev/null; then pdeath=(setpriv --pdeathsig KILL); fi

# start_omen PORT DIR and start_prom PORT DIR start a server with fresh
# storage in DIR, logging to $work/NAME.log; they set opid and ppid.
start_omen() {
	# shellcheck disable=SC2086 # OMEN_ARGS is a list of flags
	"${pdeath[@]}" "$bin" serve --web.listen-address="127.0.0.1:$1" --storage.tsdb.path="$2" $omen_args >"$work/omen.log" 2>&1 &
	opid=$!
	pids+=("$opid")
}
start_prom() {
	printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' >"$work/prometheus.yml"
	"${pdeath[@]}" "$prom" --config.file="$work/prometheus.yml" --storage.tsdb.path="$2" \
		--web.listen-address="127.0.0.1:$1" --web.enable-remote-write-receiver >"$work/prometheus.log" 2>&1 &
	ppid=$!
	pids+=("$ppid")
}

# same_load N: memory at the same load. The rounds above run each server as
# fast as it answers, so the faster one stores more samples in the same
# time and its head grows with them; the issue compares RSS "at the same
# load". Each server, fresh, gets SAME_LOAD_DURATION (default 60s) of load
# at 80% of Prometheus's median rate (so both keep up), one after the
# other; their peak and final RSS are recorded in $out/same-load.tsv.
same_load() {
	local n=$1 rate port dir name pid
	rate=$(jq -s "$median"'[.[].measured.accepted_samples_per_second] | median * 0.8 | floor' "$out"/prometheus-series="$n"-round=*.json)
	for name in omen prometheus; do
		free_port
		dir="$work/same-$name-$n"
		mkdir -p "$dir"
		if [ "$name" = omen ]; then start_omen "$port" "$dir"; pid=$opid; else start_prom "$port" "$dir"; pid=$ppid; fi
		wait_ready "http://127.0.0.1:$port" "$pid" "$name"
		local idle
		idle=$(kib "$pid" VmRSS)
		"${pdeath[@]}" timeout 900 "${pdeath[@]}" "$bin" loadgen --url "http://127.0.0.1:$port/api/v1/write" --protocol 1 --series "$n" \
			--batch "$batch" --concurrency "$concurrency" --duration "${SAME_LOAD_DURATION:-60s}" --warmup --rate "$rate" \
			>"$out/same-load-$name-series=$n.txt" 2>"$out/same-load-$name-series=$n.log" || {
			echo "bench-ingest: same-load loadgen against $name failed:" >&2
			cat "$out/same-load-$name-series=$n.log" >&2
			exit 1
		}
		check_run "$name" "$pid" "$out/same-load-$name-series=$n.txt"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$name" "$rate" "$(tail -n 1 "$out/same-load-$name-series=$n.txt" | jq '.measured.samples_accepted + (.warmup.samples_accepted // 0)')" \
			"$idle" "$(kib "$pid" VmHWM)" "$(kib "$pid" VmRSS)" >>"$out/same-load.tsv"
		echo "  $name same load: $(grep '^measured:' "$out/same-load-$name-series=$n.txt")" >&2
		kill "$pid"
		wait "$pid" 2>/dev/null || true
		rm -rf "$dir"
	done
}

echo "bench-ingest: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run; $rounds rounds of $duration, concurrency $concurrency, batch $batch" >&2
summary="$out/summary.tsv"
printf 'series\tomen_samples_per_s\tprom_samples_per_s\tratio\tomen_hwm_kib\tprom_hwm_kib\tomen_b_per_series\tprom_b_per_series\tomen_p99_s\tprom_p99_s\tomen_errors\tprom_errors\tomen_idle_kib\tprom_idle_kib\tloadgen_cores\tomen_cores\tprom_cores\tlatency_rate\tlatency_omen_cores\tscore_p50_s\tscore_p99_s\tprobes\tprobes_missed\tomen_rss_kib\tomen_dropped_fraction\tomen_scored_samples_per_s\tscored_ratio\tomen_wal_b_per_sample\tprom_wal_b_per_sample\n' >"$summary"
for n in $series_list; do
	free_port
	op=$port
	free_port
	pp=$port
	mkdir -p "$work/omen-$n" "$work/prom-$n"
	start_omen "$op" "$work/omen-$n"
	start_prom "$pp" "$work/prom-$n"
	wait_ready "http://127.0.0.1:$op" "$opid" omen
	wait_ready "http://127.0.0.1:$pp" "$ppid" prometheus
	obase=$(kib "$opid" VmRSS)
	pbase=$(kib "$ppid" VmRSS)
	echo "bench-ingest: $n series (omen pid $opid on :$op, prometheus pid $ppid on :$pp; idle RSS $((obase / 1024)) and $((pbase / 1024)) MiB)" >&2

	for r in $(seq "$rounds"); do
		# Alternate who goes first, so drift in the machine's other load
		# does not favour one side.
		if [ $((r % 2)) -eq 1 ]; then
			load prometheus "$pp" "$n" "$r" "$ppid"
			load omen "$op" "$n" "$r" "$opid"
		else
			load omen "$op" "$n" "$r" "$opid"
			load prometheus "$pp" "$n" "$r" "$ppid"
		fi
	done
	# Peak RSS of the measured rounds, before any profiling load.
	ohwm=$(kib "$opid" VmHWM)
	phwm=$(kib "$ppid" VmHWM)
	orss=$(kib "$opid" VmRSS)
	# WAL bytes per accepted sample (omen's WAL also holds its outputs),
	# of the rounds alone, whose samples are the divisor: the latency and
	# profile runs below write more to omen's. Each writes its WAL's pages
	# as they fill, and omen has scored the rounds' samples (drained).
	owal=$(du -sb "$work/omen-$n/wal" | cut -f1)
	pwal=$(du -sb "$work/prom-$n/wal" | cut -f1)

	# Scoring latency at half of omen's median rate of accepted and scored
	# samples (the rate it sustains); Prometheus is idle meanwhile.
	half=$(jq -s "$median"'[.[].scored_samples_per_second] | median / 2 | floor' "$out"/omen-series="$n"-round=*.json)
	# No warm-up pass (see load): the series exist, and an unlimited pass
	# would queue a backlog the first probes wait behind.
	duration=$latency_duration load omen "$op" "$n" latency "$opid" --rate "$half" --probe-url "http://127.0.0.1:$op" --probe-every "$probe_every"
	if [ "$profile" = 1 ] && [ "$n" = "${series_list##* }" ]; then
		echo "bench-ingest: profiling omen for 15 s under load" >&2
		curl -sf -o "$out/omen-cpu.pprof" "http://127.0.0.1:$op/debug/pprof/profile?seconds=15" &
		cpid=$!
		"${pdeath[@]}" timeout 120 "${pdeath[@]}" "$bin" loadgen --url "http://127.0.0.1:$op/api/v1/write" --series "$n" --batch "$batch" \
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
	if [ "${SAME_LOAD:-1}" = 1 ]; then same_load "$n"; fi

	# Medians over the rounds of accepted samples/s and p99 latency; errors summed.
	med() {
		case $2 in
		scored_*) jq -s "$median[.[].$2] | median" "$out"/"$1"-series="$n"-round=*.json ;;
		*) jq -s "$median[.[].measured.$2] | median" "$out"/"$1"-series="$n"-round=*.json ;;
		esac
	}
	errs() { jq -s '[.[].measured.errors_by_status | to_entries[] | .value] | add // 0' "$out"/"$1"-series="$n"-round=*.json; }
	accepted() { jq -s '[.[] | .measured.samples_accepted + (.warmup.samples_accepted // 0)] | add' "$out"/"$1"-series="$n"-round=*.json; }
	# The latency run's file out of the rounds' before any median of them.
	lat="$out/omen-series=$n-round=latency.json"
	mv "$lat" "$out/latency-series=$n.json"
	lat="$out/latency-series=$n.json"
	os=$(med omen accepted_samples_per_second)
	ps=$(med prometheus accepted_samples_per_second)
	printf '%s\t%.0f\t%.0f\t%.2f\t%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.0f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.2f\t%.2f\t%.2f\n' "$n" "$os" "$ps" \
		"$(jq -n "if $ps > 0 then $os / $ps else 0 end")" "$ohwm" "$phwm" \
		"$(jq -n "$ohwm * 1024 / $n")" "$(jq -n "$phwm * 1024 / $n")" \
		"$(med omen latency_p99_seconds)" "$(med prometheus latency_p99_seconds)" \
		"$(errs omen)" "$(errs prometheus)" "$obase" "$pbase" \
		"$(jq -s '[.[].measured | .generator_cpu_seconds / .seconds] | max' "$out"/*-series="$n"-round=*.json)" \
		"$(jq -s "$median"'[.[].server_cores] | median' "$out"/omen-series="$n"-round=*.json)" \
		"$(jq -s "$median"'[.[].server_cores] | median' "$out"/prometheus-series="$n"-round=*.json)" \
		"$(jq .measured.accepted_samples_per_second "$lat")" "$(jq .server_cores "$lat")" \
		"$(jq .measured.probe.ack_to_score_p50_seconds "$lat")" "$(jq .measured.probe.ack_to_score_p99_seconds "$lat")" \
		"$(jq .measured.probe.probes "$lat")" "$(jq .measured.probe.missed "$lat")" "$orss" \
		"$(jq -s '([.[].scoring_dropped] | add) / ([.[] | .measured.samples_accepted + (.warmup.samples_accepted // 0)] | add)' "$out"/omen-series="$n"-round=*.json)" \
		"$(med omen scored_samples_per_second)" "$(jq -n "if $ps > 0 then $(med omen scored_samples_per_second) / $ps else 0 end")" \
		"$(jq -n "$owal / $(accepted omen)")" "$(jq -n "$pwal / $(accepted prometheus)")" >>"$summary"
done

echo "bench-ingest: load average $(cut -d' ' -f1-3 /proc/loadavg) after the run" >&2
echo
echo "Median of $rounds rounds of $duration each (remote-write 1.0, batch $batch, concurrency $concurrency); accepted samples/s:"
echo "(peak RSS is VmHWM; B/series is peak RSS / series, and in brackets (peak - idle RSS) / series)"
awk -F'\t' 'NR == 1 { next } {
	printf "series=%-7s omen %9.0f/s  prometheus %9.0f/s  ratio %.2f  |  peak RSS omen %5.0f MiB %6.0f B/series (%5.0f)  prometheus %5.0f MiB %6.0f B/series (%5.0f)  |  p99 omen %.3fs prometheus %.3fs  |  errors omen %d prometheus %d  |  loadgen at most %.2f cores\n",
		$1, $2, $3, $4, $5/1024, $7, ($5-$13)*1024/$1, $6/1024, $8, ($6-$14)*1024/$1, $9, $10, $11, $12, $15
	printf "             counting the time omen took to score the backlog after the load: omen %.0f samples/s accepted and scored, ratio %.2f\n", $26, $27
	printf "             server CPU during the rounds: omen %.2f cores, prometheus %.2f cores; omen dropped %.4f of its samples unscored (full scoring queues)\n", $16, $17, $25
	printf "             WAL written per accepted sample: omen %.2f B (its outputs included), prometheus %.2f B\n", $28, $29
	printf "             omen at half its accepted-and-scored rate (%.0f samples/s, %.2f cores, RSS %.0f MiB): write acknowledged to anomaly score published p50 %.3fs p99 %.3fs (%d probes, %d missed)\n",
		$18, $19, $24/1024, $20, $21, $22, $23 }' "$summary"
if [ -f "$out/same-load.tsv" ]; then
	echo
	echo "Memory at the same load (fresh servers, ${SAME_LOAD_DURATION:-60s} at 80% of Prometheus's median rate, one after the other):"
	awk -F'\t' '{ k = $1 }
		$2 == "omen" { o[k] = $6; oi[k] = $5; r[k] = $3; s[k] = $4 }
		$2 == "prometheus" { p[k] = $6; pi[k] = $5; ps[k] = $4 }
		END { for (k in o) printf "series=%-7s rate %d samples/s (omen stored %d, prometheus %d)  |  peak RSS omen %5.0f MiB (%6.0f B/series above idle)  prometheus %5.0f MiB (%6.0f B/series above idle)  |  omen - prometheus %6.0f B/series (target <= 4096)\n",
			k, r[k], s[k], ps[k], o[k]/1024, (o[k]-oi[k])*1024/k, p[k]/1024, (p[k]-pi[k])*1024/k, (o[k]-p[k])*1024/k }' "$out/same-load.tsv"
fi
