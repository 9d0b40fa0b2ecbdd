package pipeline

// Run: go test -run '^$' -bench . -benchmem -count=6 ./pipeline

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/loadgen"
	omentsdb "github.com/omen-sidecar/omen/tsdb"
)

// BenchmarkIngest appends one sample to each of `series` series per
// transaction (a remote-write request's worth) into a real TSDB, with the
// tap off (the anchor: ingest alone) and on (ingest plus scoring, and
// forecasting for the last, waited for). ns/sample on/off is the cost
// scoring adds. Run with -benchtime=1000x or more: the first 288 samples
// of a series are the forecaster's warm-up.
func BenchmarkIngest(b *testing.B) {
	for _, series := range []int{1000} {
		for _, mode := range benchModes {
			tapOn := mode != "off"
			b.Run(fmt.Sprintf("series=%d/scoring=%s", series, mode), func(b *testing.B) {
				e := newEnv(b, "", nil, func(o *Options) { benchMode(o, mode) })
				ls := make([]labels.Labels, series)
				for i := range ls {
					ls[i] = labels.FromStrings("__name__", "bench_gauge", "instance", fmt.Sprint(i))
				}
				vs := seasonal(4096, 1)
				var app storage.AppendableV2 = e.db
				if tapOn {
					app = e.app
				}
				refs := make([]storage.SeriesRef, series)
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime()
				for n := range b.N {
					appendRound(b, e, app, ls, refs, vs, n)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/sample")
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*series), "cpu-ns/sample")
				require.Zero(b, testutil.ToFloat64(e.p.m.dropped), "queue overflow")
			})
		}
	}
}

// BenchmarkStatePerSeries reports the heap one scored series holds once
// its detector and forecaster are warm (B/series), with and without the
// forecaster. The TSDB is not involved: this is the pipeline's own state.
// With the forecaster, 800 samples of 15 s are 400 of its 30 s steps:
// fitted four times (from 192 steps on, every 64).
func BenchmarkStatePerSeries(b *testing.B) {
	for _, withFC := range []bool{false, true} {
		b.Run(fmt.Sprintf("forecast=%v", withFC), func(b *testing.B) {
			k, n := 500, 320
			if withFC {
				k, n = 200, 800
			}
			vs := seasonal(n, 2)
			sc := detect.NewScratch()
			buf := newFcBuf()
			for range b.N {
				var hz horizonCache // the worker's: its series share their horizons
				all := make([]*series, 0, k)
				// Twice: the forecasters' pooled refit scratch, tens of
				// KB, goes with the second, and is not the series'.
				runtime.GC()
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for i := range k {
					ls := labels.FromStrings("__name__", "bench_gauge", "instance", fmt.Sprint(i), "job", "node")
					s := &series{ref: storage.SeriesRef(i + 1), name: "bench_gauge", in: ls}
					require.NoError(b, s.det.Init(detect.DefaultOptions(), sc))
					if withFC {
						s.fc = newFcStateOf(hz.of(config0().Defaults), 0)
					}
					for j, v := range vs {
						s.step(t0.UnixMilli()+int64(j)*stepMs, v, nil, &buf, stepOpts{forecastEveryMs: time.Minute.Milliseconds(), holdMs: 5 * time.Minute.Milliseconds()})
					}
					all = append(all, s)
				}
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(k), "B/series")
				runtime.KeepAlive(all)
			}
		})
	}
}

// BenchmarkRemoteWrite is BenchmarkIngest through omen's remote-write
// handler (snappy, protobuf decoding, validation, append): the anchor is
// the whole ingest path a Prometheus sender exercises. Requests are encoded
// before the timer.
func BenchmarkRemoteWrite(b *testing.B) {
	const series = 1000
	for _, mode := range benchModes {
		b.Run(fmt.Sprintf("series=%d/scoring=%s", series, mode), func(b *testing.B) {
			e := newEnv(b, "", nil, func(o *Options) { benchMode(o, mode) })
			var app storage.AppendableV2 = e.db
			if mode != "off" {
				app = e.app
			}
			h := omentsdb.NewWriteHandler(nil, nil, app, omentsdb.DefaultWriteOptions())
			vs := seasonal(4096, 1)
			bodies := make([][]byte, b.N)
			for n := range bodies {
				req := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, series)}
				for i := range req.Timeseries {
					req.Timeseries[i] = prompb.TimeSeries{
						Labels:  []prompb.Label{{Name: "__name__", Value: "bench_gauge"}, {Name: "instance", Value: fmt.Sprint(i)}},
						Samples: []prompb.Sample{{Timestamp: t0.UnixMilli() + int64(n)*stepMs, Value: vs[(n+i)%len(vs)]}},
					}
				}
				raw, err := req.Marshal()
				require.NoError(b, err)
				bodies[n] = snappy.Encode(nil, raw)
			}
			e.clock.set(t0.Add(time.Duration(b.N) * stepMs * time.Millisecond))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for n := range b.N {
				r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(bodies[n]))
				r.Header.Set("Content-Encoding", "snappy")
				r.Header.Set("Content-Type", "application/x-protobuf")
				r.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				if rec.Code != http.StatusNoContent {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				e.sync()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/sample")
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*series), "cpu-ns/sample")
			require.Zero(b, testutil.ToFloat64(e.p.m.dropped), "queue overflow")
		})
	}
}

// appendRound appends the n-th sample of each series of ls (vs[(n+i) mod
// len(vs)] to the i-th) in one transaction through app, refs caching their
// references, then waits for the scorers, so that their cost is in the
// figure; a queue overflow would hide it.
func appendRound(b *testing.B, e *env, app storage.AppendableV2, ls []labels.Labels, refs []storage.SeriesRef, vs []float64, n int) {
	a := app.AppenderV2(context.Background())
	ts := t0.UnixMilli() + int64(n)*stepMs
	for i := range ls {
		var err error
		refs[i], err = a.Append(refs[i], ls[i], 0, ts, vs[(n+i)%len(vs)], nil, nil, storage.AOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Commit(); err != nil {
		b.Fatal(err)
	}
	e.sync()
}

// cpuTime is the CPU time (user and system) of the whole process: all
// goroutines, the scorers' and the TSDB's included. On a shared machine it
// moves less with other load than the wall clock does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchModes are the scoring modes of the ingest benchmarks; see benchMode.
var benchModes = []string{"off", "detect", "detect-every-sample", "detect-store-score", "detect+forecast"}

// benchMode sets the options of a scoring mode. "off" is scoring off
// (--detect.max-series=0: the tap only counts); "detect" the defaults
// without forecasters, storing the four result families once a minute of
// sample time (every 4th 15 s sample); "detect-every-sample" stores them
// at every sample (--output.tsdb-interval=0); "detect-store-score" stores
// only anomaly_score, once a minute; "detect+forecast" the defaults.
func benchMode(o *Options, mode string) {
	o.OutputInterval = DefaultOptions().OutputInterval // newEnv stores every sample
	switch mode {
	case "off":
		o.MaxSeries = 0
	case "detect":
		o.ForecastMaxSeries = 0
	case "detect-every-sample":
		o.ForecastMaxSeries = 0
		o.OutputInterval = 0
	case "detect-store-score":
		o.ForecastMaxSeries = 0
		o.StoreFamilies = []string{FamilyScore}
	}
}

// BenchmarkCollect is one scrape of /metrics's output families for 10000
// scored series (ready, four families each, no forecasters): the
// registry's gathering and the text encoding included.
func BenchmarkCollect(b *testing.B) {
	const series = 10000
	e := warmEnv(b, series)
	reg := prometheus.NewRegistry()
	require.NoError(b, reg.Register(e.p.Collector()))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	// registry: the client_golang path (a const metric per series and
	// family); streamed: WriteOutputs, what `omen serve` uses.
	for _, mode := range []string{"registry", "streamed"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for range b.N {
				rec := httptest.NewRecorder()
				if mode == "registry" {
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
				} else {
					require.NoError(b, e.p.WriteOutputs(rec))
				}
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series*5), "ns/metric")
			// The process's CPU time: on a shared machine, less moved by
			// others' load than the elapsed time.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*series*5), "cpu-ns/metric")
		})
	}
}

// BenchmarkSnapshot writes the model snapshot of 10000 warm series
// (detectors only): the periodic cost of --snapshot.interval, reported per
// series in CPU time (process, all goroutines).
func BenchmarkSnapshot(b *testing.B) {
	const series = 10000
	e := warmEnv(b, series)
	path := b.TempDir() + "/snap"
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		n, err := e.p.writeSnapshot(context.Background(), path)
		require.NoError(b, err)
		require.Equal(b, series, n)
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*series), "cpu-ns/series")
}

// BenchmarkSnapshotReadWrite writes the model snapshot of warm series
// (detectors only) and reads it back, as a restart does: the file's size,
// both directions' cost a series, and the states' unpacking as their
// series claim them, with what each holds meanwhile.
//
//	go test -run '^$' -bench 'SnapshotReadWrite' -benchtime 3x ./pipeline
func BenchmarkSnapshotReadWrite(b *testing.B) {
	for _, series := range []int{100000} {
		b.Run(fmt.Sprintf("series=%d", series), func(b *testing.B) {
			e := warmEnv(b, series)
			path := b.TempDir() + "/snap"
			b.ReportAllocs()
			b.ResetTimer()
			var write, read, unpack time.Duration
			packed := 0
			for range b.N {
				cpu0 := cpuTime()
				n, err := e.p.writeSnapshot(context.Background(), path)
				require.NoError(b, err)
				require.Equal(b, series, n)
				cpu1 := cpuTime()
				saved, err := readSnapshot(path, t0, &stateCodec{})
				require.NoError(b, err)
				require.Len(b, saved, series)
				cpu2 := cpuTime()
				packed = 0
				for _, s := range saved { // as the series claim them
					_, err := s.unpack()
					require.NoError(b, err)
					packed += len(s.state)
				}
				write, read, unpack = write+cpu1-cpu0, read+cpu2-cpu1, unpack+cpuTime()-cpu2
			}
			fi, err := os.Stat(path)
			require.NoError(b, err)
			b.ReportMetric(float64(fi.Size())/float64(series), "B/series")
			b.ReportMetric(float64(write.Nanoseconds())/float64(b.N*series), "write-cpu-ns/series")
			b.ReportMetric(float64(read.Nanoseconds())/float64(b.N*series), "read-cpu-ns/series")
			b.ReportMetric(float64(unpack.Nanoseconds())/float64(b.N*series), "unpack-cpu-ns/series")
			// What a restored state holds until its series claims it.
			b.ReportMetric(float64(packed)/float64(series), "packed-B/series")
		})
	}
}

// BenchmarkSnapshotForecasters writes the model snapshot of warm series
// forecasting the default horizons and reads it back, each forecaster's
// state then restored as its series' claim does (restore-cpu-ns: unpack
// and fcState.restoreState): the file's size and each direction's cost a
// series.
//
//	go test -run '^$' -bench 'SnapshotForecasters' -benchmem -benchtime 5x ./pipeline
func BenchmarkSnapshotForecasters(b *testing.B) {
	for _, n := range []int{10000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			e := warmEnvOf(b, n, true)
			var set *horizonSet
			e.p.workers[0].view(func(s *series) {
				if set == nil && s.fc != nil {
					set = s.fc.horizonSet
				}
			})
			require.NotNil(b, set)
			f := newFcStateOf(set, 1)
			path := b.TempDir() + "/snap"
			b.ReportAllocs()
			b.ResetTimer()
			var write, read, restore time.Duration
			for range b.N {
				cpu0 := cpuTime()
				written, err := e.p.writeSnapshot(context.Background(), path)
				require.NoError(b, err)
				require.Equal(b, n, written)
				cpu1 := cpuTime()
				saved, err := readSnapshot(path, t0, &stateCodec{})
				require.NoError(b, err)
				require.Len(b, saved, n)
				cpu2 := cpuTime()
				for _, s := range saved {
					st, err := s.unpack()
					require.NoError(b, err)
					require.NoError(b, f.restoreState(st.fc))
				}
				write, read, restore = write+cpu1-cpu0, read+cpu2-cpu1, restore+cpuTime()-cpu2
			}
			fi, err := os.Stat(path)
			require.NoError(b, err)
			b.ReportMetric(float64(fi.Size())/float64(n), "B/series")
			b.ReportMetric(float64(write.Nanoseconds())/float64(b.N*n), "write-cpu-ns/series")
			b.ReportMetric(float64(read.Nanoseconds())/float64(b.N*n), "read-cpu-ns/series")
			b.ReportMetric(float64(restore.Nanoseconds())/float64(b.N*n), "restore-cpu-ns/series")
		})
	}
}

// BenchmarkFcStateRestore is one forecaster state of the default horizons
// written (appendState) and restored (restoreState), as a snapshot and a
// series' claim of it do.
//
//	go test -run '^$' -bench 'FcStateRestore' -benchmem ./pipeline
func BenchmarkFcStateRestore(b *testing.B) {
	e := warmEnvOf(b, 1, true)
	var from *fcState
	for _, w := range e.p.workers {
		w.view(func(s *series) { from = s.fc })
	}
	require.NotNil(b, from)
	f := newFcStateOf(from.horizonSet, 1)
	var buf []byte
	b.ReportAllocs()
	for range b.N {
		var err error
		buf, err = from.appendState(buf[:0])
		require.NoError(b, err)
		require.NoError(b, f.restoreState(buf))
	}
	b.ReportMetric(float64(len(buf)), "B/state")
}

// BenchmarkSnapshotStall is a snapshot of warm series taken while the
// workers are asked to score: stall-ms is the longest a batch queued to a
// worker during the snapshot waited to be taken (a barrier's round trip),
// the delay a snapshot adds to the scoring of what arrives meanwhile.
//
//	go test -run '^$' -bench SnapshotStall -benchtime 3x ./pipeline
func BenchmarkSnapshotStall(b *testing.B) {
	const series = 20000
	e := warmEnv(b, series)
	path := b.TempDir() + "/snap"
	var worst time.Duration
	b.ResetTimer()
	for range b.N {
		done := make(chan error, 1)
		go func() {
			_, err := e.p.writeSnapshot(context.Background(), path)
			done <- err
		}()
	wait:
		for {
			select {
			case err := <-done:
				require.NoError(b, err)
				break wait
			default:
			}
			for _, w := range e.p.workers {
				start := time.Now()
				w.sync()
				worst = max(worst, time.Since(start))
			}
		}
	}
	b.ReportMetric(float64(worst.Microseconds())/1e3, "stall-ms")
}

// warmEnv returns a pipeline (no forecasters) with n series past their
// detectors' warm-up, everything scored.
func warmEnv(b testing.TB, n int) *env { return warmEnvOf(b, n, false) }

// warmEnvOf is warmEnv, its series forecasting the default horizons if
// fc, with noise of a fixed seed added to their values: copies of a few
// values, the snapshot compressed them to ~13 bytes a series.
func warmEnvOf(b testing.TB, n int, fc bool) *env {
	e := newEnv(b, "", nil, func(o *Options) {
		if !fc {
			o.ForecastMaxSeries = 0
		}
	})
	ls := make([]labels.Labels, n)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "bench_gauge", "instance", fmt.Sprint(i), "job", "node")
	}
	vs := make([]float64, n)
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 70 {
		for i := range vs {
			vs[i] = float64((round + i) % 7)
			if fc {
				vs[i] += r.NormFloat64()
			}
		}
		e.push(t0.UnixMilli()+int64(round)*stepMs, "", ls, vs)
	}
	e.sync()
	return e
}

// BenchmarkAnomalies is one answer of /api/v1/anomalies over 100000 scored
// series, with the web page's limit (25) and none (0).
//
//	go test -run '^$' -bench Anomalies -benchmem ./pipeline
func BenchmarkAnomalies(b *testing.B) {
	const series = 100000
	e := warmEnv(b, series)
	h := e.p.AnomaliesHandler()
	for _, limit := range []int{25, 0} {
		b.Run(fmt.Sprintf("series=%d/limit=%d", series, limit), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/api/v1/anomalies?limit=%d", limit), nil))
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		})
	}
}

// BenchmarkDispatch splits one committed request of 2000 samples between
// two scorer queues. backlog=true keeps every batch (as the queues do
// behind a backlog: the pool has none to give back), backlog=false returns
// them to the pool once taken, as scorers that keep up do. Each batch
// taken is uncounted from its queue's samples as a worker does: counted,
// the queue was full in samples after 1024 rounds, offer dropped the
// batches, and the benchmark waited for them for good (at the default
// -benchtime).
//
//	go test -run '^$' -bench Dispatch -benchmem -count=6 ./pipeline
func BenchmarkDispatch(b *testing.B) {
	for _, backlog := range []bool{true, false} {
		b.Run(fmt.Sprintf("backlog=%v", backlog), func(b *testing.B) {
			o := DefaultOptions()
			o.Workers = 2
			p, err := New(nil, nil, openDB(b, b.TempDir()), nil, nil, o)
			require.NoError(b, err)
			samples := make([]sample, 2000)
			for i := range samples {
				samples[i] = sample{ref: storage.SeriesRef(i + 1), t: t0.UnixMilli(), v: float64(i)}
			}
			var held []*batch
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				p.dispatch(samples)
				for _, w := range p.workers {
					bt := <-w.queue
					w.queued.Add(-int64(len(bt.s))) // as the worker does
					if backlog {
						held = append(held, bt)
					} else {
						putBatch(bt)
					}
				}
				if len(held) > 1024 {
					held = held[:0]
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(samples)), "ns/sample")
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*len(samples)), "cpu-ns/sample")
		})
	}
}

// BenchmarkNewSeries is a burst of new series, as when omen starts under
// full load or a rollout brings thousands of pods: one sample of each of
// `series` series (loadgen's label sets), 2000 per transaction, through
// the tap into a real TSDB and scored, then a second pass over the same
// series. cpu-ns/new-series is the first pass's process CPU per series
// (ingest creating the head series, and the scorers creating their models
// and their first outputs), cpu-ns/sample the second's per sample.
//
//	go test -run '^$' -bench NewSeries -benchtime 3x ./pipeline
func BenchmarkNewSeries(b *testing.B) {
	for _, n := range []int{20000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			ls := make([]labels.Labels, n)
			for i := range ls {
				ls[i] = labels.FromStrings(loadgen.SeriesLabels(i)...)
			}
			var create, step time.Duration
			for range b.N {
				b.StopTimer()
				e := newEnv(b, "", nil, func(o *Options) { o.OutputInterval = DefaultOptions().OutputInterval })
				e.ready(b)
				b.StartTimer()
				for pass := range 2 {
					cpu0 := cpuTime()
					for lo := 0; lo < n; lo += 2000 {
						a := e.app.AppenderV2(context.Background())
						for i := lo; i < min(lo+2000, n); i++ {
							if _, err := a.Append(0, ls[i], 0, t0.UnixMilli()+int64(pass)*stepMs, float64(i), nil, nil, storage.AOptions{}); err != nil {
								b.Fatal(err)
							}
						}
						if err := a.Commit(); err != nil {
							b.Fatal(err)
						}
						e.sync()
					}
					if pass == 0 {
						create += cpuTime() - cpu0
					} else {
						step += cpuTime() - cpu0
					}
				}
				b.StopTimer()
				e.stop()
				b.StartTimer()
			}
			b.ReportMetric(float64(create.Nanoseconds())/float64(b.N*n), "cpu-ns/new-series")
			b.ReportMetric(float64(step.Nanoseconds())/float64(b.N*n), "cpu-ns/sample")
		})
	}
}

// BenchmarkSteadyState is the garbage of the steady state (issue 5): what
// the process allocates per input sample once every model is warm, in
// B/sample and allocs/sample, the TSDB's appends of inputs and outputs
// included (scoring=off is that anchor: ingest alone). Every byte of it is
// heap the collector must find again, and the heap grows by what is
// allocated between collections: RSS. One series in ten has a forecaster,
// as with the defaults (--forecast.max-series 10000 of 100000), results are
// stored once a minute of sample time, and 2 h of history come first, as in
// the live run (pipeline/testdata/live-scoring-run.sh with HIST=2h). One
// iteration is 128 rounds of one sample per series: one refit of every
// forecaster (64 steps of 30 s), so the refits are in the figure in their
// proportion; a run of 2 or more iterations is steadier.
//
//	go test -run '^$' -bench SteadyState -benchtime 2x -count 5 ./pipeline
func BenchmarkSteadyState(b *testing.B) {
	const series, history, period = 1000, 2 * 3600 * 1000 / stepMs, 128
	for _, mode := range []string{"off", "detect+forecast"} {
		b.Run(fmt.Sprintf("series=%d/scoring=%s", series, mode), func(b *testing.B) {
			e := newEnv(b, "", nil, func(o *Options) {
				benchMode(o, mode)
				o.ForecastMaxSeries = series / 10
			})
			ls := make([]labels.Labels, series)
			for i := range ls {
				ls[i] = labels.FromStrings(loadgen.SeriesLabels(i)...)
			}
			var app storage.AppendableV2 = e.db
			if mode != "off" {
				app = e.app
			}
			vs := seasonal(4096, 1)
			refs := make([]storage.SeriesRef, series)
			n := 0
			round := func() {
				appendRound(b, e, app, ls, refs, vs, n)
				n++
			}
			for range history {
				round()
			}
			if mode != "off" {
				require.EqualValues(b, series/10, e.p.forecasting.Load())
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ResetTimer()
			for range b.N {
				for range period {
					round()
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			samples := float64(b.N * period * series)
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/samples, "B/sample")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/samples, "allocs/sample")
			require.Zero(b, testutil.ToFloat64(e.p.m.dropped), "queue overflow")
		})
	}
}

// BenchmarkWalkOutputs is one walk of /metrics's per-series families over
// 10000 scored series with walkOutputs' buffer taken from an empty pool (a
// process's first scrape, or any after two garbage collections, which
// empty a sync.Pool: at 100k series, several run between two scrapes):
// the bytes the copy of the published results allocates per scrape.
//
//	go test -run '^$' -bench WalkOutputs -benchmem ./pipeline
func BenchmarkWalkOutputs(b *testing.B) {
	const series = 10000
	e := warmEnv(b, series)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	n := 0
	for range b.N {
		e.p.walkOutputs(exposedFamilies[:], new(walkBuf), func(string, *outLabelSet, float64) { n++ })
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*series), "cpu-ns/series")
	if n < b.N*series {
		b.Fatalf("%d metrics walked, want at least %d", n, b.N*series)
	}
}

// BenchmarkRefusedSamples is a worker's cost for a sample of a series it
// keeps out (here over --detect.max-series): its ignored entry looked up
// and refreshed, per sample, 1000 series a batch.
//
//	go test -run '^$' -bench BenchmarkRefusedSamples -benchtime 2000x -count 6 ./pipeline
func BenchmarkRefusedSamples(b *testing.B) {
	const series = 1000
	e := newEnv(b, "", nil, func(o *Options) { o.Workers, o.MaxSeries = 1, 1 })
	smps := make([]sample, series)
	for i := range smps {
		smps[i] = sample{ref: storage.SeriesRef(i + 1), ls: labels.FromStrings("__name__", "bench_gauge", "instance", fmt.Sprint(i))}
	}
	round := func(n int) {
		for i := range smps {
			smps[i].t, smps[i].v = t0.UnixMilli()+int64(n)*stepMs, float64(n%7)
		}
		e.p.dispatch(smps)
		e.sync()
	}
	round(0) // the first series scored, the others refused
	require.Equal(b, int64(series-1), e.p.overBudgetNow.Load())
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		round(n + 1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/sample")
}

// BenchmarkAccuracyCollect is one gather of the forecast accuracy gauges
// (AccuracyCollector, which /metrics gathers beside the streamed outputs)
// over 100000 scored series of 10 input names, each name with figures at
// three horizons. A name's figures are exposed only while one of its
// series is (not marked stale, not silent): silent=0 has figures of the 9
// live names only; silent=1 has the figures of the 10th too, whose series
// (one in ten) sent nothing for longer than the lookback, as a name's
// figures are kept while its senders are stopped (--detect.stale-after).
//
//	go test -run '^$' -bench AccuracyCollect -benchmem ./pipeline
func BenchmarkAccuracyCollect(b *testing.B) {
	const series, names = 100000, 10
	e := newEnv(b, "", nil, func(o *Options) { o.ForecastMaxSeries = 0 })
	name := func(i int) string { return fmt.Sprintf("bench_%d", i%names) }
	var quiet, live []labels.Labels
	for i := range series {
		ls := labels.FromStrings("__name__", name(i), "instance", fmt.Sprint(i/names), "job", "node")
		if i%names == names-1 {
			quiet = append(quiet, ls)
		} else {
			live = append(live, ls)
		}
	}
	// The quiet name's series first, then, past the lookback, the others.
	e.push(t0.UnixMilli(), "", quiet, make([]float64, len(quiet)))
	e.sync()
	later := t0.Add(10 * time.Minute)
	e.clock.set(later)
	e.push(later.UnixMilli(), "", live, make([]float64, len(live)))
	e.sync()
	require.Equal(b, int64(series), e.p.scored.Load())
	reg := prometheus.NewRegistry()
	require.NoError(b, reg.Register(e.p.AccuracyCollector()))
	a := e.p.acc()
	for _, silent := range []int{0, 1} {
		b.Run(fmt.Sprintf("series=%d/silent=%d", series, silent), func(b *testing.B) {
			a.mu.Lock()
			clear(a.m)
			for i := range names - 1 + silent {
				for _, h := range []string{"5m", "15m", "30m"} {
					a.m[accKey{name(i), h}] = &accVal{n: 1, weight: 1, lastT: later.UnixMilli(), mase: 0.5, covered: 0.95, lastSeen: later.UnixMilli()}
				}
			}
			a.mu.Unlock()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				mfs, err := reg.Gather()
				if err != nil {
					b.Fatal(err)
				}
				// The live names' figures only, both gauges.
				if len(mfs) != 2 || len(mfs[0].GetMetric()) != 3*(names-1) {
					b.Fatalf("gathered %v", mfs)
				}
			}
		})
	}
}
