package main

import (
	"fmt"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/omen-sidecar/omen/pipeline"
)

// pipelineFlags registers the scoring pipeline's flags on the serve command
// and returns the options they fill once kingpin has parsed the arguments.
// SnapshotPath, Now, Stats and Build are left for serve.go to set.
func pipelineFlags(cl *kingpin.CmdClause) *pipeline.Options {
	o := pipeline.DefaultOptions()
	o.Families = nil // filled by the flag's default
	cl.Flag("detect.max-series", "Most series scored at once; new series beyond it are counted in omen_series_over_budget_total and skipped until series that stopped make room. 0 turns scoring off.").
		Default(fmt.Sprint(o.MaxSeries)).IntVar(&o.MaxSeries)
	cl.Flag("forecast.max-series", "Most series that also get a forecaster (each holds ~9 KiB more, and its 9 forecast series in the TSDB).").
		Default(fmt.Sprint(o.ForecastMaxSeries)).IntVar(&o.ForecastMaxSeries)
	cl.Flag("forecast.interval", "Sample time between a series' forecasts (and forecast series samples).").
		Default(o.ForecastEvery.String()).DurationVar(&o.ForecastEvery)
	cl.Flag("detect.workers", "Scorer goroutines (0: one per CPU).").
		Default("0").IntVar(&o.Workers)
	cl.Flag("detect.queue-size", "Committed write batches each scorer queues, and in all at most this many requests of 2000 samples (Prometheus's max_samples_per_send) whatever the sender's request size; beyond it batches are dropped and counted in omen_scoring_dropped_total.").
		Default(fmt.Sprint(o.QueueSize)).IntVar(&o.QueueSize)
	cl.Flag("detect.stale-after", "Drop a series' models after this long without a sample.").
		Default(o.StaleAfter.String()).DurationVar(&o.StaleAfter)
	cl.Flag("detect.shutdown-drain", "At shutdown, how long the scorers keep scoring the samples still queued before the final model snapshot; the rest are replayed from the TSDB into the restored models at the next start (without storing their outputs).").
		Default(o.ShutdownDrain.String()).DurationVar(&o.ShutdownDrain)
	cl.Flag("snapshot.shutdown-timeout", "At shutdown, how long the final model snapshot may take, after the drain; past it, it is abandoned and the last one written stays (the next start replays the samples since from the TSDB into the restored models), so the remote-write flush and the TSDB's close keep their time within the termination grace period.").
		Default(o.ShutdownSnapshot.String()).DurationVar(&o.ShutdownSnapshot)
	cl.Flag("output.families", "Output families exposed on /metrics, comma separated. Repeatable. Choices: "+strings.Join(pipeline.AllFamilies, ",")+".").
		Default(pipeline.AllFamilies...).StringsVar(&o.Families)
	cl.Flag("output.tsdb-families", "Output families appended to the embedded TSDB and remote-written, comma separated. Repeatable. Each costs one TSDB append per stored result (see --output.tsdb-interval).").
		Default(pipeline.AllFamilies...).StringsVar(&o.StoreFamilies)
	cl.Flag("output.tsdb-interval", "Sample time between a series' outputs appended to the TSDB (and remote-written) while its score stays at most 1; scores above 1 and the one after are always stored. 0: every sample's. /metrics always shows the latest.").
		Default(o.OutputInterval.String()).DurationVar(&o.OutputInterval)
	cl.Flag("detect.incident-hold", "A series stays in an incident (active in /api/v1/anomalies, omen_incident_* on /metrics) until its event has been over for this long: no score above 1, and none the detector counts as the event going on.").
		Default(o.IncidentHold.String()).DurationVar(&o.IncidentHold)
	cl.Flag("output.score-floor", "Expose on /metrics the anomaly_score and band (yhat*) only of series whose anomaly_score is at least this, or that are in an incident (0: all). Forecasts go out whatever the score: capacity alerts and autoscalers read them.").
		Default("0").Float64Var(&o.ScoreFloor)
	cl.Flag("backfill.remote-read-url", "Remote-read URL of an upstream Prometheus or Thanos to warm new series from. Credentials, TLS and headers (a tenant's X-Scope-OrgID): the configuration file's remote_read entry, Prometheus's, which replaces this flag (both given must name the same URL).").
		Default("").StringVar(&o.BackfillRemoteReadURL)
	cl.Flag("backfill.external-label", "A label the upstream adds to every series it answers with (its external labels, which omen's remote_write drops): a name, or name=value to read only that source's series from a store holding several (Thanos, a Mimir tenant); comma separated. Repeatable. A new series takes an upstream series with labels beyond its own as its history only if they are all named here. Unset: learnt from the upstream's answers.").
		StringsVar(&o.BackfillExternalLabels)
	cl.Flag("backfill.max-points", "Most history samples replayed into a new series' models, and into a restored one after a crash; 0 means the default.").
		Default(fmt.Sprint(o.BackfillMaxPoints)).IntVar(&o.BackfillMaxPoints)
	cl.Flag("backfill.max-age", "How far back a new series' warm start reads; 0 means the default.").
		Default(o.BackfillMaxAge.String()).DurationVar(&o.BackfillMaxAge)
	cl.Flag("snapshot.interval", "Time between model state snapshots (also taken at shutdown).").
		Default(o.SnapshotInterval.String()).DurationVar(&o.SnapshotInterval)
	return &o
}
