#!/usr/bin/env bash
# Forwarding (--remote-write.url) under a failing upstream, by hand: the real
# single-node VictoriaMetrics behind scripts/faultproxy, omen forwarding to
# the proxy, `omen loadgen` feeding omen SERIES series at a 15 s interval
# (outputs stored, and forwarded, every 15 s). One scenario a run:
#
#   slow     the upstream answers each request after DELAY (25s) for SLOW
#            (4m): the queue reshards, and a reshard drops what the old shards
#            could not send within --storage.remote.flush-deadline
#   reload   the upstream hangs for 30 s, then a reload points the remote
#            write straight at VictoriaMetrics: how long the reload takes,
#            and the outputs VictoriaMetrics misses around it
#   sigterm  the upstream hangs for 30 s, then SIGTERM: time to exit
#   retry    503 with Retry-After: 10 for 60 s, then 400 for 30 s: the
#            requests the proxy saw, and what was dropped
#
#   make build && bash scripts/forward-faults.sh slow
#
# It prints the figures and, for slow and reload, the outputs omen stored
# against those VictoriaMetrics holds over the run (VERDICT: lost N). Ports
# PORT..PORT+2 (29930), files under WORK (a fresh temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${1:-slow}
SERIES=${SERIES:-5000}
DELAY=${DELAY:-25s}
SLOW=${SLOW:-240}
PORT=${PORT:-29930}
VM=${VM:-bin/victoria-metrics} # make deps-vm
WORK=${WORK:-$(mktemp -d /tmp/omen-forward-faults.XXXXXX)}
proxy=127.0.0.1:$PORT vm=127.0.0.1:$((PORT + 1)) omen=127.0.0.1:$((PORT + 2))
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

go build -o "$WORK/faultproxy" ./scripts/faultproxy
"$VM" -httpListenAddr="$vm" -storageDataPath="$WORK/vm" -search.latencyOffset=0s -search.disableCache \
	-loggerLevel=WARN >"$WORK/vm.log" 2>&1 &
pids+=($!)
"$WORK/faultproxy" -listen "$proxy" -upstream "http://$vm" >"$WORK/proxy.log" 2>&1 &
pids+=($!)
printf 'remote_write:\n  - url: http://%s/api/v1/write\n    name: upstream\n' "$proxy" >"$WORK/omen.yml"
bin/omen serve --web.listen-address="$omen" --storage.tsdb.path="$WORK/data" --config.file="$WORK/omen.yml" \
	--web.enable-lifecycle --output.tsdb-interval=15s >"$WORK/omen.log" 2>&1 &
omen_pid=$!
pids+=("$omen_pid")
until curl -sf "http://$omen/-/ready" >/dev/null && curl -sf "http://$vm/health" >/dev/null; do sleep 1; done
bin/omen loadgen --url="http://$omen/api/v1/write" --series="$SERIES" --rate=$((SERIES / 15)) --duration=2h \
	--concurrency=1 >"$WORK/loadgen.log" 2>&1 &
pids+=($!)
start=$(date +%s)

ctl() { curl -s "http://$proxy/ctl?$1"; echo; }
metric() { curl -s "http://$omen/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { print $2; exit }'; }
figures() {
	echo "$(date -u +%T) rss_MB=$(($(awk '/VmRSS/{print $2}' "/proc/$omen_pid/status") / 1024))" \
		"heap_inuse_MB=$(awk "BEGIN{printf \"%d\", $(metric go_memstats_heap_inuse_bytes) / 1048576}")" \
		"shards=$(metric prometheus_remote_storage_shards) pending=$(metric prometheus_remote_storage_samples_pending)" \
		"failed=$(metric prometheus_remote_storage_samples_failed_total) retried=$(metric prometheus_remote_storage_samples_retried_total)"
}
# count QUERY HOST AT: the one value of a query at time AT.
count() {
	curl -s "http://$2/api/v1/query" --data-urlencode "query=$1" --data-urlencode "time=$3" |
		python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)'
}
# verdict: outputs omen stored since the start against VictoriaMetrics's,
# once the queue has caught up (or after 3 minutes).
verdict() {
	ctl mode=pass >/dev/null
	for _ in $(seq 36); do
		awk "BEGIN{exit !($(metric prometheus_remote_storage_samples_pending) < 2000)}" && break
		sleep 5
	done
	at=$(($(date +%s) - 20)) window="$(($(date +%s) - start))s"
	stored=0 got=0
	for fam in anomaly_score yhat yhat_lower yhat_upper; do
		stored=$((stored + $(count "sum(count_over_time(${fam}[$window]))" "$omen" "$at")))
		got=$((got + $(count "sum(count_over_time(${fam}[$window]))" "$vm" "$at")))
	done
	echo "outputs stored by omen $stored, in VictoriaMetrics $got"
	echo "VERDICT: lost $((stored - got)) ($(grep -c 'Failed to flush all samples' "$WORK/omen.log" || true) x 'Failed to flush all samples' in omen's log)"
}

sleep 60 # the models warm, the queue runs
figures
case "$SCENARIO" in
slow)
	ctl "mode=slow&delay=$DELAY"
	for _ in $(seq $((SLOW / 30))); do sleep 30; figures; done
	grep -E 'resharding"|Failed to flush' "$WORK/omen.log" | cut -c1-200 || true
	verdict
	;;
reload)
	ctl mode=hang
	sleep 30
	printf 'remote_write:\n  - url: http://%s/api/v1/write\n    name: direct\n' "$vm" >"$WORK/omen.yml"
	t0=$(date +%s.%N)
	curl -s -XPOST "http://$omen/-/reload"
	echo "reload took $(echo "$(date +%s.%N) - $t0" | bc) s"
	sleep 30
	verdict
	;;
sigterm)
	ctl mode=hang
	sleep 30
	t0=$(date +%s.%N)
	kill -TERM "$omen_pid"
	while kill -0 "$omen_pid" 2>/dev/null; do sleep 0.2; done
	echo "SIGTERM to exit: $(echo "$(date +%s.%N) - $t0" | bc) s"
	grep -E 'termination signal|Stopping remote storage|Remote storage stopped|omen stopped' "$WORK/omen.log" | cut -c1-160
	;;
retry)
	ctl 'mode=503&retry_after=10'
	sleep 60
	ctl mode=400
	sleep 30
	ctl mode=pass
	curl -s "http://$proxy/ctl?events=1" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["mode"] != "pass":
        print(e["at"][11:23], e["status"], "attempt", e["attempt"] or 0, e["samples"], "samples")'
	figures
	;;
*)
	echo "unknown scenario $SCENARIO: slow, reload, sigterm or retry" >&2
	exit 2
	;;
esac
echo "files in $WORK"
