package pipeline

// Run: go test -run '^$' -bench Replay -benchmem ./pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/detect"
)

// BenchmarkReplay is one series' rebuild (a reload's new options, a warm
// start): new models fed `points` history samples of 15 s, as replayer
// does, without the TSDB read. ms/series is one rebuild's cost.
func BenchmarkReplay(b *testing.B) {
	for _, hz := range [][]model.Duration{
		{model.Duration(5 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute)},
		{model.Duration(5 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute), model.Duration(time.Hour)},
	} {
		for _, points := range []int{300, 600, 1000} {
			b.Run(fmt.Sprintf("horizons=%d/points=%d", len(hz), points), func(b *testing.B) {
				sc := config0().Defaults
				sc.ForecastHorizons = hz
				vs := seasonal(points, 3)
				scratch := detect.NewScratch()
				buf := newFcBuf()
				var hc horizonCache
				so := stepOpts{forecastEveryMs: time.Minute.Milliseconds(), holdMs: 5 * time.Minute.Milliseconds()}
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					ref := storage.SeriesRef(i + 1)
					s := &series{ref: ref, name: "bench_gauge", in: labels.FromStrings("__name__", "bench_gauge")}
					require.NoError(b, s.det.Init(detectOptions(sc), scratch))
					s.fc = newFcStateOf(hc.of(sc), ref)
					for j, v := range vs {
						s.step(t0.UnixMilli()+int64(j)*stepMs, v, nil, &buf, so)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/series")
			})
		}
	}
}

// BenchmarkReloadRebuild: `series` series with `points` samples of 15 s
// history in the TSDB are scored (warmed from it), then a reload changes
// their horizons (5m, 15m, 30m and 5m, 10m, 15m, 30m in turn), which
// rebuilds every forecaster from its history. A sender goes on sending a
// sample of each series every 100 ms of wall time (a round, one commit),
// until every series is rebuilt. max-lag-ms is the highest
// omen_scoring_lag_seconds seen (polled every millisecond), max-round-ms is the longest a round took
// to be scored (the scoring lag the reload caused), rebuilt-s the time
// from the reload until no series was left to rebuild.
//
// Run: go test -run '^$' -bench ReloadRebuild -benchtime=2x ./pipeline
func BenchmarkReloadRebuild(b *testing.B) {
	n := rebuildBenchSeries(b)
	for _, points := range []int{300, 1000} {
		b.Run(fmt.Sprintf("series=%d/points=%d", n, points), func(b *testing.B) {
			hz := [2][]model.Duration{
				{model.Duration(5 * time.Minute), model.Duration(10 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute)},
				{model.Duration(5 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute)},
			}
			// The wall clock: omen_scoring_lag_seconds counts from the
			// batches' commits.
			e := newEnv(b, "", nil, func(o *Options) { o.Now = time.Now })
			ls := make([]labels.Labels, n)
			for i := range ls {
				ls[i] = labels.FromStrings("__name__", "bench_gauge", "instance", fmt.Sprint(i), "job", "node")
			}
			vs := seasonal(points+1000, 4)
			benchHistory(b, e, ls, vs, points)
			refs := make([]storage.SeriesRef, n)
			round := points
			appendRound(b, e, e.app, ls, refs, vs, round)
			pending := func() int {
				k := 0
				for _, w := range e.p.workers {
					w.view(func(s *series) {
						if s.rebuild {
							k++
						}
					})
				}
				return k
			}
			var maxLag atomic.Int64 // ns
			stop := make(chan struct{})
			polled := make(chan struct{})
			go func() {
				defer close(polled)
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if l := int64(e.p.scoringLag() * 1e9); l > maxLag.Load() {
							maxLag.Store(l)
						}
					}
				}
			}()
			b.ResetTimer()
			var maxRound, rebuilt time.Duration
			rounds := 0
			for k := range b.N {
				cfg := config0()
				cfg.Defaults.ForecastHorizons = hz[k%2]
				require.NoError(b, e.p.ApplyConfig(cfg))
				start := time.Now()
				tick := time.NewTicker(100 * time.Millisecond)
				for {
					round++
					rounds++
					r0 := time.Now()
					appendRound(b, e, e.app, ls, refs, vs, round)
					maxRound = max(maxRound, time.Since(r0))
					if pending() == 0 {
						break
					}
					<-tick.C
				}
				tick.Stop()
				rebuilt += time.Since(start)
			}
			close(stop)
			<-polled
			b.ReportMetric(float64(maxLag.Load())/1e6, "max-lag-ms")
			b.ReportMetric(float64(maxRound.Milliseconds()), "max-round-ms")
			b.ReportMetric(rebuilt.Seconds()/float64(b.N), "rebuilt-s")
			b.ReportMetric(float64(rounds)/float64(b.N), "rounds")
		})
	}
}

// BenchmarkRestartCalibration: `series` series with `points` samples of
// 15 s history are scored (default horizons) and snapshotted; omen
// restarts with 10m added (the longest the same: the models are
// restored), whose band floors are calibrated on each series' history. A
// sender sends a sample of each series every 100 ms of wall time until
// every series' history was replayed for it. first-round-ms is how long the first
// round after the restart took to be scored, calibrated-s the time until
// the last floor was.
//
// Run: go test -run '^$' -bench RestartCalibration -benchtime=1x ./pipeline
func BenchmarkRestartCalibration(b *testing.B) {
	const points = 1000
	n := rebuildBenchSeries(b)
	b.Run(fmt.Sprintf("series=%d/points=%d", n, points), func(b *testing.B) {
		ls := make([]labels.Labels, n)
		for i := range ls {
			ls[i] = labels.FromStrings("__name__", "bench_gauge", "instance", fmt.Sprint(i), "job", "node")
		}
		vs := seasonal(points+1000, 4)
		for range b.N {
			b.StopTimer()
			dir, snap := b.TempDir(), filepath.Join(b.TempDir(), "models.snap")
			opts := func(o *Options) { o.SnapshotPath = snap }
			e := newEnv(b, dir, nil, opts)
			benchHistory(b, e, ls, vs, points)
			refs := make([]storage.SeriesRef, n)
			appendRound(b, e, e.app, ls, refs, vs, points)
			e.stop()
			require.NoError(b, e.db.Close())
			cfg := config0()
			cfg.Defaults.ForecastHorizons = []model.Duration{model.Duration(5 * time.Minute), model.Duration(10 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute)}
			e = newEnv(b, dir, cfg, opts)
			e.ready(b)
			// Each calibration replays the series' history: points
			// samples counted in omen_warm_start_samples_total.
			warmed0 := testutil.ToFloat64(e.p.m.warmed)
			uncalibrated := func() int {
				return n - int((testutil.ToFloat64(e.p.m.warmed)-warmed0)/points)
			}
			clear(refs)
			b.StartTimer()
			start := time.Now()
			appendRound(b, e, e.app, ls, refs, vs, points+1)
			first := time.Since(start)
			tick := time.NewTicker(100 * time.Millisecond)
			for round := points + 2; uncalibrated() > 0; round++ {
				<-tick.C
				appendRound(b, e, e.app, ls, refs, vs, round)
			}
			tick.Stop()
			b.ReportMetric(float64(first.Milliseconds()), "first-round-ms")
			b.ReportMetric(time.Since(start).Seconds(), "calibrated-s")
			e.stop()
		}
	})
}

// benchHistory appends the first points of vs (offset by i%7 for the i-th
// series) to the TSDB past the tap, 15 s apart, in one commit.
func benchHistory(b *testing.B, e *env, ls []labels.Labels, vs []float64, points int) {
	a := e.db.AppenderV2(b.Context())
	for j := range points {
		for i := range ls {
			_, err := a.Append(0, ls[i], 0, t0.UnixMilli()+int64(j)*stepMs, vs[j]+float64(i%7), nil, nil, storage.AOptions{})
			require.NoError(b, err)
		}
	}
	require.NoError(b, a.Commit())
}

// rebuildBenchSeries is the number of series the rebuild benchmarks run:
// 2 000, or $REBUILD_SERIES (10 000 is the scale where the rebuilds held
// scoring for minutes before they had a budget).
func rebuildBenchSeries(b *testing.B) int {
	v := os.Getenv("REBUILD_SERIES")
	if v == "" {
		return 2000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("$REBUILD_SERIES=%q: want a positive number of series", v)
	}
	return n
}
