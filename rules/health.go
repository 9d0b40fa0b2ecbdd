package rules

import (
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
)

// OmenJob is the scrape job of omen's own /metrics in the configurations
// under deploy/ (the ServiceMonitor sets it too).
const OmenJob = "omen"

// healthRule is one alert on omen itself.
type healthRule struct {
	name, expr, severity, summary string
	for_                          time.Duration
}

// healthRules watch omen's own pipeline from ingest to snapshot. The
// thresholds are not configurable on purpose: they describe omen failing,
// not the user's data.
func (g generator) healthRules() []rulefmt.Rule {
	hs := []healthRule{
		{
			// absent: a pod that is gone (pending on its volume, deleted
			// with its node) leaves the endpoints, and its up goes stale
			// rather than to 0; with every omen gone, nothing else fires.
			name: "OmenDown", severity: "critical", for_: 5 * time.Minute,
			expr:    `up{job="` + OmenJob + `"} == 0 or absent(up{job="` + OmenJob + `"})`,
			summary: `{{ with $labels.instance }}omen {{ . }} has been unreachable{{ else }}Prometheus has scraped no omen target (job "` + OmenJob + `"){{ end }} for 5 minutes: no series are scored and its forecasts are stale.`,
		},
		{
			// Prometheus sees a 5xx and retries, so ingest falls behind
			// before anything is lost; the ratio hides a burst of retries.
			name: "OmenRemoteWriteFailing", severity: "critical", for_: 10 * time.Minute,
			expr: `sum by (job, instance) (rate(omen_http_requests_total{handler="/api/v1/write", code=~"5.."}[5m]))
  / sum by (job, instance) (rate(omen_http_requests_total{handler="/api/v1/write"}[5m])) > 0.05`,
			summary: `omen {{ $labels.instance }} fails {{ $value | humanizePercentage }} of remote-write requests.`,
		},
		{
			// omen refuses writes with 503 and fails /-/ready while its
			// storage path takes none (disk full, read-only, I/O errors).
			// On Kubernetes the readiness probe then takes it out of the
			// Service's endpoints, so Prometheus's writes fail to connect,
			// omen counts no 5xx, and OmenRemoteWriteFailing stays silent:
			// only OmenNoSamplesIngested, a warning 15 minutes on, told.
			// The gauge is also 0 while the TSDB opens; a WAL replay of 10
			// minutes refuses writes as long, worth the page too.
			name: "OmenStorageFailing", severity: "critical", for_: 10 * time.Minute,
			expr:    `omen_storage_writable == 0`,
			summary: `omen {{ $labels.instance }} has refused writes for 10 minutes: its storage path takes none (disk full, read-only, I/O errors) or its TSDB is still opening; nothing is stored or scored, and the senders' remote-write falls behind.`,
		},
		{
			// A reload (SIGHUP, /-/reload: a ConfigMap changed) that
			// failed keeps the configuration before it, so nothing else
			// tells that the change is not in force. max_over_time, as
			// Prometheus's own PrometheusBadConfig: a failed scrape of
			// omen does not start the 10 minutes again.
			name: "OmenConfigReloadFailed", severity: "warning", for_: 10 * time.Minute,
			expr:    `max_over_time(omen_config_last_reload_successful[5m]) == 0`,
			summary: `omen {{ $labels.instance }} failed to reload its configuration file and runs the configuration loaded before: the change is not in force.`,
		},
		{
			// When every sender stops (Prometheus down, its remote_write
			// cut off or misconfigured by a reload), omen's series leave
			// /metrics a lookback (5m) after their last sample, and their
			// anomaly alerts resolve then, as Prometheus's own do for a
			// target gone; this is what says omen is blind, 15 minutes
			// after the last sample, as Prometheus's mixin does of itself
			// (PrometheusNotIngestingSamples: rate over 5m, for 10m). It
			// took 25 (rate over 10m, for 15m): 18 minutes of resolved
			// alerts and nothing to say why.
			name: "OmenNoSamplesIngested", severity: "warning", for_: 10 * time.Minute,
			expr:    `sum by (job, instance) (rate(omen_remote_write_samples_appended_total[5m])) == 0`,
			summary: `omen {{ $labels.instance }} has appended no sample for 15 minutes: check Prometheus's remote_write to it.`,
		},
		{
			// The sender's side, from Prometheus's own metrics of its
			// queue to omen (remote_name omen, or omen-N per shard, as the
			// shipped remote-write configurations name it; job!="omen"
			// leaves out omen's own forwarding queues). omen cannot see
			// writes that never reach it: unreachable (killed, a network
			// policy, a wrong URL), Prometheus retries and falls behind,
			// and omen's rules said nothing unless every sender stopped
			// (OmenNoSamplesIngested) or omen answered 5xx
			// (OmenRemoteWriteFailing). Seen live with Prometheus 2.42 and
			// omen SIGKILLed: samples_failed_total stays 0 (a refused
			// connection is retried, not failed) while the queue's highest
			// sent timestamp stops. Threshold and for as Prometheus's
			// mixin (PrometheusRemoteWriteBehind).
			//
			// A queue that has sent nothing has no highest sent timestamp
			// in Prometheus 2 (seen live with 2.42: the series comes with
			// the first batch sent), 0 in Prometheus 3: it counts as 0
			// here, by its shards (a series every queue has from its
			// start), or a Prometheus started while omen was unreachable
			// (a wrong URL, a network policy) never fired. The summary
			// says so rather than "56 years behind".
			name: "OmenRemoteWriteBehind", severity: "warning", for_: 15 * time.Minute,
			expr: `max_over_time(prometheus_remote_storage_highest_timestamp_in_seconds{job!="` + OmenJob + `"}[5m])
  - ignoring(remote_name, url) group_right()
    (
      max_over_time(prometheus_remote_storage_queue_highest_sent_timestamp_seconds{job!="` + OmenJob + `", remote_name=~"` + OmenJob + `(-[0-9]+)?"}[5m])
        or
      0 * prometheus_remote_storage_shards{job!="` + OmenJob + `", remote_name=~"` + OmenJob + `(-[0-9]+)?"}
    ) > 120`,
			summary: `Prometheus {{ $labels.instance }} remote-writes to omen at {{ $labels.url }} {{ if ge $value 1e9 }}and has sent nothing yet{{ else }}{{ $value | humanizeDuration }} behind{{ end }}: omen scores those samples late, and loses them if the outage outlasts the WAL (about 2 hours).`,
		},
		{
			// Every reason omen counts (tsdb's rejectReasons) is of the
			// samples themselves, wrong or late; series over the budget
			// are stored, not rejected, and have their own alert. The
			// rule left out a reason="over_budget" omen never counted,
			// and its summary named four of the twelve reasons: the
			// summary lists the reasons counted now, with their shares.
			name: "OmenSamplesRejected", severity: "warning", for_: 15 * time.Minute,
			expr: `sum by (job, instance) (rate(omen_remote_write_samples_rejected_total[5m]))
  / sum by (job, instance) (rate(omen_remote_write_samples_received_total[5m])) > 0.01`,
			summary: `omen {{ $labels.instance }} rejects {{ $value | humanizePercentage }} of the samples it receives, by reason:` +
				`{{ range $i, $r := query (printf "sort_desc(sum by (reason) (rate(omen_remote_write_samples_rejected_total{job=%q, instance=%q}[5m])) / ignoring (reason) group_left sum(rate(omen_remote_write_samples_received_total{job=%q, instance=%q}[5m])) > 0)" $labels.job $labels.instance $labels.job $labels.instance) }}` +
				`{{ if $i }},{{ end }} {{ $r.Labels.reason }} {{ $r.Value | humanizePercentage }}{{ end }}.`,
		},
		{
			// The gauge, not the counter's rate: a refused series is
			// counted once, so series over the budget for good stopped
			// the rate, and the alert, within minutes.
			name: "OmenSeriesOverBudget", severity: "warning", for_: 15 * time.Minute,
			expr:    `omen_series_over_budget > 0`,
			summary: `omen {{ $labels.instance }} skips new series beyond --detect.max-series: raise the budget, add shards or narrow include.`,
		},
		{
			// --write.max-head-series (the gauge is 0 without it): at the
			// limit new series are refused, so the warning comes first,
			// while there is time to find what adds series or to raise
			// the limit with the memory.
			name: "OmenHeadSeriesNearLimit", severity: "warning", for_: 15 * time.Minute,
			expr:    `omen_tsdb_head_series / (omen_tsdb_head_series_limit > 0) > 0.8`,
			summary: `omen {{ $labels.instance }}'s TSDB head holds {{ $value | humanizePercentage }} of its --write.max-head-series: at the limit new series are refused.`,
		},
		{
			// A series refused at the limit is refused at every request
			// that carries it, so the rate lasts as long as the refusals.
			// Its samples are lost (Prometheus drops a 400), the known
			// series' are stored: a warning, as OmenSamplesRejected, with
			// which it may fire (the samples count there too).
			name: "OmenHeadSeriesLimitReached", severity: "warning", for_: 5 * time.Minute,
			expr:    `rate(omen_remote_write_series_refused_total[5m]) > 0`,
			summary: `omen {{ $labels.instance }} refuses new series: its TSDB head is at --write.max-head-series. Their samples are dropped (400); the series it holds are stored and scored as before.`,
		},
		{
			// Models warm up over a season or two of data; most series
			// still cold after hours means they never get enough samples.
			name: "OmenModelsNotReady", severity: "warning", for_: 2 * time.Hour,
			// omen_model_ready carries the input's labels (job and instance
			// included, as omen is scraped with honor_labels), so the ratio
			// is taken over all scored series.
			expr:    `avg(omen_model_ready) < 0.5`,
			summary: `Only {{ $value | humanizePercentage }} of the scored series have had a ready model for 2 hours.`,
		},
		{
			// New series wait for their history from the backfill
			// remote-read URL while its reads keep failing: they score
			// from local history, cold, and get it when the reads succeed.
			name: "OmenBackfillFailing", severity: "warning", for_: 15 * time.Minute,
			expr:    `omen_warm_start_remote_read_pending > 0 and on (job, instance) rate(omen_warm_start_remote_read_failures_total[10m]) > 0`,
			summary: `omen {{ $labels.instance }} cannot read new series' history from --backfill.remote-read-url: {{ $value }} series wait for it and score from local history meanwhile.`,
		},
		{
			name: "OmenScoringLagging", severity: "warning", for_: 10 * time.Minute,
			expr:    `omen_scoring_lag_seconds > 60`,
			summary: `omen {{ $labels.instance }} scores samples {{ $value | humanizeDuration }} late: the scorers cannot keep up.`,
		},
		{
			name: "OmenScoringDropping", severity: "warning", for_: 10 * time.Minute,
			expr:    `rate(omen_scoring_dropped_total[5m]) > 0`,
			summary: `omen {{ $labels.instance }} drops {{ $value | humanize }} samples/s from its full scoring queue: scores have gaps.`,
		},
		{
			name: "OmenSnapshotFailing", severity: "warning", for_: 15 * time.Minute,
			expr:    `rate(omen_snapshot_failures_total[15m]) > 0`,
			summary: `omen {{ $labels.instance }} cannot save its model state: a restart would start the models cold.`,
		},
		{
			// Two intervals missed, and at least 2 hours: a fixed 2 hours
			// fired for good with --snapshot.interval above it (a 3h
			// interval left every snapshot 2-3 hours old for an hour of
			// each three). A zero timestamp means no snapshot yet since
			// start.
			name: "OmenSnapshotStale", severity: "warning", for_: 15 * time.Minute,
			expr:    `time() - omen_snapshot_last_success_timestamp_seconds > clamp_min(2 * omen_snapshot_interval_seconds, 7200) and omen_snapshot_last_success_timestamp_seconds > 0`,
			summary: `omen {{ $labels.instance }} last saved its model state {{ $value | humanizeDuration }} ago.`,
		},
		{
			name: "OmenTSDBCompactionsFailing", severity: "warning", for_: 0,
			expr:    `increase(prometheus_tsdb_compactions_failed_total{job="` + OmenJob + `"}[3h]) > 0`,
			summary: `omen {{ $labels.instance }}'s embedded TSDB failed {{ $value | humanize }} compactions in 3 hours: check its volume.`,
		},
		{
			// Prometheus's own remote-write metrics, which omen's queues
			// report too (job-scoped: Prometheus has them as well). The
			// highest timestamp is of the newest output logged for
			// forwarding, so the difference is how far the queue is behind.
			name: "OmenForwardingBehind", severity: "warning", for_: 15 * time.Minute,
			expr: `max_over_time(prometheus_remote_storage_highest_timestamp_in_seconds{job="` + OmenJob + `"}[5m])
  - ignoring(remote_name, url) group_right
    max_over_time(prometheus_remote_storage_queue_highest_sent_timestamp_seconds{job="` + OmenJob + `"}[5m]) > 120`,
			summary: `omen {{ $labels.instance }} forwards its outputs to {{ $labels.url }} {{ $value | humanizeDuration }} behind.`,
		},
		{
			// 4xx answers: the receiver refused the outputs for good.
			name: "OmenForwardingDropping", severity: "warning", for_: 15 * time.Minute,
			expr:    `rate(prometheus_remote_storage_samples_failed_total{job="` + OmenJob + `"}[5m]) > 0`,
			summary: `omen {{ $labels.instance }} loses {{ $value | humanize }} outputs/s that {{ $labels.url }} refuses.`,
		},
		{
			// The queue's reader of the forwarding log lost its place (the
			// log truncated segments it had not read: an outage or a lag
			// beyond what the log keeps) and started again from the
			// present: what it had not read is never forwarded. One skip
			// is one loss, so no for; the series is there at 0 from the
			// queue's start, so increase() sees the first.
			name: "OmenForwardingSkipped", severity: "warning", for_: 0,
			expr:    `increase(omen_forward_backlog_skipped_total[1h]) > 0`,
			summary: `omen {{ $labels.instance }} skipped a backlog of outputs it had not yet forwarded to {{ $labels.url }}: they are not sent.`,
		},
		{
			// Nominal coverage is 95%; well below it means the bands are
			// too narrow and anomaly and capacity alerts too eager.
			name: "OmenForecastIntervalsMiscalibrated", severity: "warning", for_: 2 * time.Hour,
			expr:    `omen_forecast_interval_coverage_ratio < 0.8`,
			summary: `Forecast intervals of {{ $labels.for }} at {{ $labels.horizon }} cover {{ $value | humanizePercentage }} of outcomes, far below nominal.`,
		},
	}
	out := make([]rulefmt.Rule, 0, len(hs))
	for _, h := range hs {
		out = append(out, rulefmt.Rule{
			Alert: h.name,
			Expr:  h.expr,
			For:   model.Duration(h.for_),
			Labels: map[string]string{
				LabelSeverity: h.severity,
				LabelKind:     KindHealth,
			},
			Annotations: map[string]string{
				"summary":     h.summary,
				"runbook_url": g.runbookURL(h.name),
			},
		})
	}
	return out
}
