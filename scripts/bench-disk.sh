#!/bin/bash
# Disk per series per day, for sizing omen's volume: omen (defaults: every
# series scored, its outputs stored) and, as the anchor, Debian's Prometheus
# 2.42 receiver are each given the same HIST (default 26h) of history at 15 s
# steps for SERIES (default 10000) series by `omen loadgen --backdate`, one
# after the other, each on fresh storage. The servers compact their heads
# into blocks as the history arrives, as they would over a day of live
# samples; omen scores the history as it arrives and stores its outputs, as
# in a deployment (outputs once a minute while quiet, --output.tsdb-interval).
#
# It prints, for each: the blocks' bytes per input series per day of the
# blocks' span (what --storage.tsdb.retention.time multiplies), and what does
# not grow with retention: the WAL, the head's m-mapped chunks, omen's model
# snapshot.
#
# Usage: make build && [SERIES=10000] [HIST=26h] [HIST_RATE=150000] [OMEN=bin/omen] bash scripts/bench-disk.sh
set -eu
bin=${OMEN:-./bin/omen}
prom=${PROMETHEUS:-prometheus}
series=${SERIES:-10000}
hist=${HIST:-26h}
rate=${HIST_RATE:-150000}
work=$(mktemp -d /tmp/bench-disk.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
	for _ in $(seq 120); do
		curl -sf "$1/-/ready" >/dev/null && return 0
		sleep 1
	done
	echo "bench-disk: $1 not ready" >&2
	exit 1
}
bytes() { if [ -e "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# run NAME: starts the server NAME on fresh storage, writes the history,
# waits for its compactions to settle, stops it and prints its figures.
run() {
	local name=$1 port dir pid steps
	port=$(free_port)
	dir="$work/$name"
	mkdir -p "$dir"
	if [ "$name" = omen ]; then
		"$bin" serve --web.listen-address="127.0.0.1:$port" --storage.tsdb.path="$dir/data" >"$work/$name.log" 2>&1 &
	else
		printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' >"$dir/prometheus.yml"
		"$prom" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" --web.listen-address="127.0.0.1:$port" \
			--web.enable-remote-write-receiver >"$work/$name.log" 2>&1 &
	fi
	pid=$!
	pids+=("$pid")
	wait_ready "http://127.0.0.1:$port"
	steps=$(($(echo "$hist" | sed 's/h$/*3600/; s/m$/*60/' | bc) / 15))
	local t0=$SECONDS
	"$bin" loadgen --url="http://127.0.0.1:$port/api/v1/write" --series="$series" --no-warmup --log.level=error \
		--sample-interval=15s --backdate="$hist" --rounds="$steps" --rate="$rate" >"$work/$name.loadgen" 2>&1
	echo "bench-disk: $name took $hist of history in $((SECONDS - t0)) s: $(grep -h '^measured' "$work/$name.loadgen")" >&2
	# Both compact every minute (omen's --storage.tsdb's loop, Prometheus's
	# db loop) once the head spans 3 h; give them two rounds, and omen's
	# scorers the history's tail.
	sleep 150
	# Outputs of samples older than the head's appendable window are not
	# stored (omen_output_history_skipped_total): on a loaded machine the
	# scorers fall behind the history's writing and the blocks hold fewer
	# outputs than a live deployment's would.
	if [ "$name" = omen ]; then
		echo "bench-disk: omen skipped $(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^omen_output_history_skipped_total /{print $2}') output samples as history (stored only live: 0 means the blocks hold every output)" >&2
	fi
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	local d="$dir/data" blocks=0 span=0 samples=0
	for m in "$d"/*/meta.json; do
		[ -e "$m" ] || continue
		blocks=$((blocks + $(bytes "$(dirname "$m")")))
		span=$((span + $(jq '.maxTime - .minTime' "$m")))
		samples=$((samples + $(jq '.stats.numSamples' "$m")))
	done
	local snap
	snap=$(bytes "$d/omen-models.snap")
	printf '%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n' "$name" "$blocks" "$span" "$samples" "$(bytes "$d/wal")" \
		"$(bytes "$d/chunks_head")" "$snap" "$(bytes "$d")" >>"$work/summary.tsv"
}

echo "bench-disk: $series series, $hist of history at 15 s, $rate samples/s at most; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
run omen
run prometheus
echo
echo "$series series, $hist of history at 15 s steps (bytes after the servers stopped):"
awk -F'\t' -v n="$series" '{
	days = $3 / 86400000
	printf "%-10s blocks %7.1f MB over %.1f h of span: %6.0f B per input series per day, %.2f B per stored sample  |  not growing with retention: WAL %6.1f MB, head chunks %6.1f MB, model snapshot %5.1f MB  |  all %7.1f MB\n",
		$1, $2 / 1e6, $3 / 3600000, (days > 0 ? $2 / n / days : 0), ($4 > 0 ? $2 / $4 : 0), $5 / 1e6, $6 / 1e6, $7 / 1e6, $8 / 1e6
}' "$work/summary.tsv"
awk -F'\t' '{ b[$1] = $2; s[$1] = $3 } END { if (b["prometheus"] > 0 && s["omen"] > 0 && s["prometheus"] > 0)
	printf "omen / prometheus, blocks per day of span: %.2f\n", (b["omen"] / s["omen"]) / (b["prometheus"] / s["prometheus"]) }' "$work/summary.tsv"
