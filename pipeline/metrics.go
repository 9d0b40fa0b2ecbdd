package pipeline

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the pipeline's self-monitoring series. Per-series ones
// (omen_model_ready) and the forecast accuracy come from the Collector.
type metrics struct {
	overBudget prometheus.Counter
	warming    prometheus.GaugeFunc
	inference  prometheus.Histogram
	// scoredSamples counts every sample scored as it arrives (not replays);
	// inference times only some.
	scoredSamples prometheus.Counter
	anomalies     *prometheus.CounterVec
	names         inputNames // the input names anomalies has a series of
	dropped       prometheus.Counter
	// reopenDropped counts the ingested samples of a TSDB numbering of
	// series before a reopen that reached a scorer after it (see
	// worker.renumbered): not omen_scoring_dropped_total, whose alert
	// and advice are a full queue's.
	reopenDropped prometheus.Counter
	lag           prometheus.GaugeFunc
	newest        prometheus.Collector // latestScored
	snapFailures  prometheus.Counter
	snapLast      prometheus.Gauge
	outputErrors  prometheus.Counter
	forwardErrors prometheus.Counter
	// historySkipped counts input samples whose results were not stored:
	// older than the head appends (history written in the past).
	historySkipped      prometheus.Counter
	warmed              prometheus.Counter
	backfillFailed      prometheus.Counter
	backfillUnconfirmed prometheus.Counter
	histogramsNotScored prometheus.Counter
	backfillSkipped     prometheus.Counter
	backfillPending     prometheus.Gauge
	caughtUp            prometheus.Counter
	derivedErrs         *prometheus.CounterVec
	derivedMissed       *prometheus.CounterVec
	derivedLastEval     *prometheus.GaugeVec
	derivedLastTook     *prometheus.GaugeVec
	retyped             prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, p *Pipeline) *metrics {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "omen_series_scored", Help: "Series with a detector, within --detect.max-series.",
	}, func() float64 { return float64(p.scored.Load()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "omen_series_forecasting", Help: "Scored series with a forecaster, within --forecast.max-series; series that came while it was full get one at the sweep, when there is room, learnt from their history in the TSDB at their next sample (a derived input's from its samples from then on); after a restart, the series that had one are held theirs until they come back or --detect.stale-after passes.",
	}, func() float64 { return float64(p.forecasting.Load()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "omen_series_over_budget", Help: "Series not scored now because --detect.max-series was reached (counting the room held after a restart for the series scored before, until they come back or --detect.stale-after passes); each is looked at again at the sweep, when there is room.",
	}, func() float64 { return float64(p.overBudgetNow.Load()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "omen_scoring_queue_length", Help: "Committed batches waiting for the scorer workers.",
	}, func() float64 {
		n := 0
		for _, w := range p.workers {
			n += len(w.queue)
		}
		return float64(n)
	})
	// The snapshot interval is a flag, fixed for the process: exposed so
	// that OmenSnapshotStale compares a snapshot's age with it, not with a
	// fixed age that an interval above it always exceeded.
	f.NewGauge(prometheus.GaugeOpts{
		Name: "omen_snapshot_interval_seconds", Help: "Time between model state snapshots (--snapshot.interval).",
	}).Set(p.opts.SnapshotInterval.Seconds())
	newest := latestScored{p: p, desc: prometheus.NewDesc("omen_scored_sample_latest_timestamp_seconds",
		"Timestamp of the latest input sample scored, absent before the first since the start: time() minus it is how old the scores are, behind a sender's backlog too (which omen_scoring_lag_seconds, the time batches wait inside omen, does not see).", nil, nil)}
	if reg != nil {
		reg.MustRegister(newest)
	}
	return &metrics{
		overBudget: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_series_over_budget_total", Help: "New series not scored because --detect.max-series was reached.",
		}),
		retyped: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_series_retyped_total", Help: "Scored series started again from their history because their metadata declared them a counter or a gauge against what they had been scored as.",
		}),
		warming: f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "omen_models_warming", Help: "Scored series whose detector is still warming up.",
		}, func() float64 { return float64(p.warming.Load()) }),
		inference: f.NewHistogram(prometheus.HistogramOpts{
			Name: "omen_inference_duration_seconds", Help: "Time to score and forecast one sample (one sample in 8 is timed).",
			Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1},
		}),
		scoredSamples: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_samples_scored_total", Help: "Input samples scored as they arrive (after counter-to-rate conversion and out-of-order filtering); history replayed into models is counted in omen_warm_start_samples_total and omen_restore_catch_up_samples_total instead.",
		}),
		anomalies: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_anomalies_total", Help: "Samples scored above 1 as they arrive, by input; not those replayed into models after a restart (omen_restore_catch_up_samples_total), whose scores are not stored either.",
		}, []string{"for"}),
		names: inputNames{n: map[string]int{}, gone: map[string]int64{}},
		dropped: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_scoring_dropped_total", Help: "Samples not scored because a scorer queue was full (stored all the same; their series score again at their next sample). In bursts (a sender's backlog after a restart), raise --detect.queue-size; at a steady rate the scorers lack CPU: give omen more, store fewer --output.tsdb-families, or shard (--detect.workers beyond the CPUs adds none).",
		}),
		reopenDropped: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_scoring_reopen_dropped_total", Help: "Samples not scored because they were committed onto the TSDB before it was reopened to repair its WAL (omen_storage_wal_repairs_total) and reached the scorers after it: their series references are of the TSDB's numbering before, which may have given them to other series since. Stored all the same; their series catch up from the TSDB at their next sample.",
		}),
		lag: f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "omen_scoring_lag_seconds", Help: "How far scoring is behind: the time since the commit of the oldest batch a scorer worker is scoring now, or since a worker with batches queued started another task (a snapshot, a reload), 0 while none is.",
		}, p.scoringLag),
		newest: newest,
		snapFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_snapshot_failures_total", Help: "Model state snapshots that could not be written.",
		}),
		snapLast: f.NewGauge(prometheus.GaugeOpts{
			Name: "omen_snapshot_last_success_timestamp_seconds", Help: "Time of the last model state snapshot written.",
		}),
		outputErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_output_append_failures_total", Help: "Output samples the TSDB rejected.",
		}),
		forwardErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_forward_log_failures_total", Help: "Batches of stored outputs the forwarding log failed to take, so not remote-written.",
		}),
		historySkipped: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_output_history_skipped_total",
			Help: "Scored samples whose outputs were not stored because they are older than the TSDB head appends (history written in the past); they trained the models.",
		}),
		warmed: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_warm_start_samples_total", Help: "History samples replayed into new series' models, into forecasters given to series already scored, and to calibrate the band floors of horizons a restored forecaster had none of.",
		}),
		backfillFailed: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_warm_start_remote_read_failures_total", Help: "Remote reads of new series' history (--backfill.remote-read-url), each of up to 64 series, that failed or timed out; their series are read again after a backoff.",
		}),
		// A label, not the name: promtool's lint refuses a metric name
		// with a type in it.
		histogramsNotScored: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_samples_not_scored_total", Help: "Samples ingested and stored but not scored themselves, by kind: native histograms (a derived input scores them, e.g. histogram_quantile over their rate).",
			ConstLabels: prometheus.Labels{"kind": "native_histogram"},
		}),
		backfillUnconfirmed: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_warm_start_remote_read_unconfirmed_total", Help: "Histories read for new series (--backfill.remote-read-url) that were not used because their labels beyond the series' were learnt as the upstream's external labels only later, and not read again (beyond 1024 such series waiting; --backfill.external-label names them at once); those series warm from local history.",
		}),
		backfillSkipped: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_warm_start_remote_read_skipped_total", Help: "New series warmed from local history alone: the queue of remote reads was full.",
		}),
		backfillPending: f.NewGauge(prometheus.GaugeOpts{
			Name: "omen_warm_start_remote_read_pending", Help: "New series waiting for their history by remote read; they score from local history meanwhile.",
		}),
		caughtUp: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_restore_catch_up_samples_total", Help: "Samples the TSDB holds after a restored model's last one (acknowledged after the last snapshot before a crash), replayed into it.",
		}),
		derivedErrs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_derived_evaluation_failures_total", Help: "Failed evaluations of derived inputs.",
		}, []string{"for"}),
		derivedMissed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_derived_evaluations_missed_total", Help: "Evaluations of derived inputs skipped: the previous one was still running, or the schedule fell behind by an interval or more (omen starved of CPU).",
		}, []string{"for"}),
		derivedLastEval: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "omen_derived_evaluation_last_timestamp_seconds", Help: "Time of each derived input's last evaluation, failed or not (Unix seconds), as prometheus_rule_group_last_evaluation_timestamp_seconds.",
		}, []string{"for"}),
		derivedLastTook: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "omen_derived_evaluation_last_duration_seconds", Help: "How long each derived input's last evaluation took, failed or not, waiting for a query slot included; at its interval it times out and misses evaluations.",
		}, []string{"for"}),
	}
}

// anomalyCounterGrace is how long omen_anomalies_total keeps the counter
// of an input name after its last scored series was dropped: a series
// made again at once (a reload's or a retype's rebuild, the TSDB
// reopened) keeps counting on, not from a reset.
const anomalyCounterGrace = time.Minute

// inputNames counts the scored series of each input name, so that
// omen_anomalies_total, one series per name, forgets the names omen no
// longer scores, as the forecast accuracy does (expire): names churn (a
// job per build, a metric per tenant), and the family otherwise held every
// name ever seen for the life of the process.
type inputNames struct {
	mu   sync.Mutex
	n    map[string]int   // scored series per name
	gone map[string]int64 // names with none, since when (unix ms)
}

// added counts a series of name made scored, and puts its counter on
// /metrics at 0, so that rate() and increase() see its first anomaly.
func (in *inputNames) added(vec *prometheus.CounterVec, name string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.n[name]++
	delete(in.gone, name)
	vec.WithLabelValues(name)
}

// dropped uncounts a series of name no longer scored, at nowMs.
func (in *inputNames) dropped(name string, nowMs int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.n[name]--; in.n[name] <= 0 {
		delete(in.n, name)
		in.gone[name] = nowMs
	}
}

// expire deletes from vec the counters of the names with no scored series
// for anomalyCounterGrace at nowMs.
func (in *inputNames) expire(vec *prometheus.CounterVec, nowMs int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for name, since := range in.gone {
		if nowMs-since >= anomalyCounterGrace.Milliseconds() {
			vec.DeleteLabelValues(name)
			delete(in.gone, name)
		}
	}
}

// latestScored collects omen_scored_sample_latest_timestamp_seconds (see
// Pipeline.newestScored), absent until a sample is scored: at 0 until
// then, for the seconds after every start, `time() - it` read scores 56
// years old, and a rule on it fired at every restart.
type latestScored struct {
	p    *Pipeline
	desc *prometheus.Desc
}

func (c latestScored) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c latestScored) Collect(ch chan<- prometheus.Metric) {
	if ms := c.p.newestScored(); ms != 0 {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(ms)/1e3)
	}
}
