#!/usr/bin/env bash
# Does the predictive-scaling overlays' derived input (the scaler's request
# rate) get scored, and so forecast, in a cluster that remote-writes more
# series than the base's --detect.max-series? Runs the real omen with the
# base's --detect.max-series and the component's omen.yml, sends SERIES
# (default: the budget + 5 000) ingested series from its start, as a
# cluster's remote write does within its first scrape interval, and a real
# Prometheus (Debian's `prometheus`) remote-writes the workload's counter:
# its own prometheus_http_requests_total renamed to http_requests_total
# {namespace="shop", job="web"}, which the derived input's expression reads.
# After WAIT seconds it prints the derived input's anomaly_score, whether it
# has a forecaster, and omen_series_over_budget_total; exits 1 if the
# derived input is not scored, 2 if omen did not start.
#
#   make build && bash scripts/predictive-scaling-budget.sh
#
# PORT (21030; Prometheus on PORT+1), OUT, SERIES and WAIT (90) may be set.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PORT=${PORT:-21030}
PPORT=$((PORT + 1))
OUT=${OUT:-$(mktemp -d /tmp/omen-psbudget.XXXXXX)}
WAIT=${WAIT:-90}
budget=$(sed -n 's/.*- --detect.max-series=\([0-9]*\).*/\1/p' deploy/kubernetes/base/statefulset.yaml)
[ -n "$budget" ] || { echo "no --detect.max-series in the base"; exit 2; }
SERIES=${SERIES:-$((budget + 5000))}
mkdir -p "$OUT"
cat > "$OUT/prometheus.yml" <<PROM
global: {scrape_interval: 5s}
scrape_configs:
  - job_name: self
    static_configs: [{targets: ['127.0.0.1:$PPORT']}]
    metric_relabel_configs:
      - {source_labels: [__name__], regex: prometheus_http_requests_total, action: keep}
      - {target_label: __name__, replacement: http_requests_total}
      - {target_label: namespace, replacement: shop}
      - {target_label: job, replacement: web}
remote_write:
  - url: http://127.0.0.1:$PORT/api/v1/write
    queue_config: {batch_send_deadline: 1s}
PROM
bin/omen serve --web.listen-address="127.0.0.1:$PORT" --storage.tsdb.path="$OUT/data" \
	--detect.max-series="$budget" --config.file=deploy/kubernetes/components/predictive-scaling/omen.yml > "$OUT/omen.log" 2>&1 &
omen=$!
prometheus --config.file="$OUT/prometheus.yml" --storage.tsdb.path="$OUT/pdata" --web.listen-address=127.0.0.1:$PPORT > "$OUT/prometheus.log" 2>&1 &
prom=$!
trap 'kill $omen $prom 2>/dev/null; wait $omen $prom 2>/dev/null' EXIT
# Ready within a minute, or nothing is measured: an omen that did not
# start (a port in use) would else read as the input not scored.
for _ in $(seq 120); do
	curl -sf "http://127.0.0.1:$PORT/-/ready" > /dev/null && break
	kill -0 "$omen" 2> /dev/null || break
	sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/-/ready" > /dev/null || { echo "omen did not start: $OUT/omen.log"; tail -3 "$OUT/omen.log"; exit 2; }
start=$(date +%s)
while [ $(($(date +%s) - start)) -lt "$WAIT" ]; do
	s=$(date +%s)
	bin/omen loadgen --url="http://127.0.0.1:$PORT/api/v1/write" --series="$SERIES" --rounds=1 --no-warmup --log.level=error > "$OUT/loadgen.last" 2>&1
	sleep $((15 - ($(date +%s) - s) > 0 ? 15 - ($(date +%s) - s) : 0))
done
m=$(curl -s "http://127.0.0.1:$PORT/metrics")
score=$(grep -E '^anomaly_score\{.*for="web_requests_per_second"' <<< "$m")
echo "budget $budget, ingested series $SERIES"
echo "derived input's anomaly_score: ${score:-none}"
grep -E '^omen_series_(scored|forecasting|over_budget_total) ' <<< "$m"
grep -E '^omen_derived_evaluation_failures_total' <<< "$m"
[ -n "$score" ]
