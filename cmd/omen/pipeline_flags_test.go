package main

import (
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/pipeline"
)

func TestPipelineFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(*testing.T, *pipeline.Options)
	}{
		{"defaults", nil, func(t *testing.T, o *pipeline.Options) {
			d := pipeline.DefaultOptions()
			require.Equal(t, d.MaxSeries, o.MaxSeries)
			require.Equal(t, d.SnapshotInterval, o.SnapshotInterval)
			require.Equal(t, pipeline.AllFamilies, o.Families)
			require.Equal(t, pipeline.AllFamilies, o.StoreFamilies)
			require.Equal(t, time.Minute, o.OutputInterval)
			require.Equal(t, 5*time.Minute, o.IncidentHold)
		}},
		{"set", []string{
			"--detect.max-series=5", "--detect.workers=3", "--output.families=anomaly_score,yhat",
			"--output.score-floor=0.5",
			"--backfill.remote-read-url=http://up/api/v1/read", "--backfill.max-points=10", "--snapshot.interval=1m",
			"--forecast.interval=5m", "--output.tsdb-families=anomaly_score",
			"--output.tsdb-interval=0s", "--detect.incident-hold=10m",
		}, func(t *testing.T, o *pipeline.Options) {
			require.Equal(t, 5, o.MaxSeries)
			require.Equal(t, 3, o.Workers)
			require.Equal(t, []string{"anomaly_score,yhat"}, o.Families, "split by pipeline.New")
			require.Equal(t, 0.5, o.ScoreFloor)
			require.Equal(t, "http://up/api/v1/read", o.BackfillRemoteReadURL)
			require.Equal(t, 10, o.BackfillMaxPoints)
			require.Equal(t, time.Minute, o.SnapshotInterval)
			require.Equal(t, 5*time.Minute, o.ForecastEvery)
			require.Equal(t, []string{"anomaly_score"}, o.StoreFamilies)
			require.Zero(t, o.OutputInterval)
			require.Equal(t, 10*time.Minute, o.IncidentHold)
		}},
		{"scoring off", []string{"--detect.max-series=0"}, func(t *testing.T, o *pipeline.Options) {
			require.Zero(t, o.MaxSeries)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := kingpin.New("omen", "")
			o := pipelineFlags(app.Command("serve", "").Default())
			_, err := app.Parse(append([]string{"serve"}, tc.args...))
			require.NoError(t, err)
			tc.check(t, o)
		})
	}
}

// TestBacktestScoresAsServe: `omen backtest` (and so the NAB benchmark)
// runs the detector with the options `omen serve` gives a series under the
// default configuration; they once differed (a false-alarm rate of 0.0015
// against 0.001), so the benchmark measured a setting nobody ran.
func TestBacktestScoresAsServe(t *testing.T) {
	def := config.Default().Defaults
	d := detect.DefaultOptions()
	require.Equal(t, d.FalseAlarmRate, def.FalseAlarmRate)
	require.Equal(t, detect.MinFalseAlarmRate, config.MinFalseAlarmRate, "what a file may give, the detector takes")
	require.Equal(t, d.Direction.String(), def.Direction)
	require.Zero(t, def.MinDeviationAbs)
	require.Zero(t, def.MinDeviationRel)
}
