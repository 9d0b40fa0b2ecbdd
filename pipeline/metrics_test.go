package pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
)

// TestAnomaliesCounterForgetsGoneInputs: omen_anomalies_total has one
// series per input name. Names churn (a job per build, a metric per
// tenant): a name none of whose series omen scores any longer leaves
// /metrics, as its forecast accuracy does, so the family's cardinality is
// that of the names scored now, not of every name ever seen (on f2557c6 it
// only grew: 200 names in turn, 200 counters kept). A name whose series
// are still scored keeps its counter, and one that comes back starts again
// at 0.
func TestAnomaliesCounterForgetsGoneInputs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		churned int // names sent once, then never again
		after   time.Duration
		want    int // counters left: the kept name, and the churned ones while held
	}{
		{name: "within stale-after", churned: 200, after: 30 * time.Minute, want: 201},
		{name: "after stale-after", churned: 200, after: 2 * time.Hour, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			var ls []labels.Labels
			var vs []float64
			for i := range tc.churned {
				ls = append(ls, labels.FromStrings("__name__", fmt.Sprintf("job_%d_duration_seconds", i)))
				vs = append(vs, 1)
			}
			kept := labels.FromStrings("__name__", "kept")
			e.push(t0.UnixMilli(), model.MetricTypeGauge, append(ls, kept), append(vs, 1))
			e.sync()
			require.Equal(t, tc.churned+1, testutil.CollectAndCount(e.p.m.anomalies, "omen_anomalies_total"))

			now := t0.Add(tc.after)
			e.clock.set(now)
			e.push(now.UnixMilli(), model.MetricTypeGauge, []labels.Labels{kept}, []float64{1})
			e.sync()
			for range 2 { // the first worker's sweep may run before the other's drops
				for _, w := range e.p.workers {
					w.sweep()
				}
			}
			// Forgotten at the expiry after a grace, so that a series
			// rebuilt (dropped, then made again) keeps its counter.
			e.p.expireRestored()
			e.clock.set(now.Add(anomalyCounterGrace))
			e.p.expireRestored()
			require.Equal(t, tc.want, testutil.CollectAndCount(e.p.m.anomalies, "omen_anomalies_total"))
			require.Equal(t, 0.0, testutil.ToFloat64(e.p.m.anomalies.WithLabelValues("kept")))
		})
	}
}

// TestInferenceTimesScoringAlone: omen_inference_duration_seconds times
// the scoring of a sample, not the wait for the worker's lock, which a
// scrape or an anomalies query holds while it copies the worker's series
// (milliseconds at 100k series). On f2557c6 the clock started before the
// lock: a sample scored during a 50 ms copy was booked as 50 ms of
// inference, 10⁴ times a sample's cost, which moved the histogram's mean.
func TestInferenceTimesScoringAlone(t *testing.T) {
	const held = 50 * time.Millisecond
	e := newEnv(t, "", nil, nil)
	ls := []labels.Labels{labels.FromStrings("__name__", "g")}
	e.push(t0.UnixMilli(), model.MetricTypeGauge, ls, []float64{1})
	e.sync() // made: its creation takes the lock too, untimed
	for _, w := range e.p.workers {
		w.timed = inferenceSampling - 1 // the next sample scored is timed
		w.mu.RLock()
	}
	e.push(t0.UnixMilli()+stepMs, model.MetricTypeGauge, ls, []float64{2})
	// The worker waits for the lock meanwhile: a wait made on purpose.
	time.Sleep(held)
	for _, w := range e.p.workers {
		w.mu.RUnlock()
	}
	e.sync()
	var m dto.Metric
	require.NoError(t, e.p.m.inference.Write(&m))
	require.Equal(t, uint64(1), m.GetHistogram().GetSampleCount())
	require.Less(t, m.GetHistogram().GetSampleSum(), held.Seconds()/2, "the lock's wait is not inference")
}

// TestAccuracyScaleFromBeforeTheActual: a forecast's error is scaled by
// the mean absolute change of the series before the actual it is checked
// against, not with that actual's own change in it: on f2557c6 a spike of
// 1e4 at a target on a sine of amplitude 10 first raised the scale (by
// 1/256 of its jump, 120 times) and so cut its own scaled error, the miss
// the figure is there to show, by as much.
func TestAccuracyScaleFromBeforeTheActual(t *testing.T) {
	for _, tc := range []struct {
		name   string
		actual float64 // at the 5m forecast's target
	}{
		{name: "spike", actual: 1e4},
		{name: "dip", actual: -1e4},
		{name: "as expected", actual: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &series{name: "x", in: labels.FromStrings("__name__", "x")}
			require.NoError(t, s.det.Init(detect.DefaultOptions(), detect.NewScratch()))
			s.fc = newFcState(horizonsOf(config.Default().Defaults))
			buf := newFcBuf()
			so := stepOpts{forecastEveryMs: time.Minute.Milliseconds(), holdMs: 5 * time.Minute.Milliseconds()}
			wave := func(i int) float64 { return 100 + 10*math.Sin(float64(i)/20) }
			i := 0
			for ; i < 2000 || !s.fc.pend[0].Active; i++ {
				s.step(t0.UnixMilli()+int64(i)*stepMs, wave(i), nil, &buf, so)
			}
			pd := s.fc.pend[0]
			for ; t0.UnixMilli()+int64(i)*stepMs < pd.Target; i++ {
				s.step(t0.UnixMilli()+int64(i)*stepMs, wave(i), nil, &buf, so)
			}
			require.Equal(t, pd.Target, t0.UnixMilli()+int64(i)*stepMs, "a sample at the target")
			scale := s.absDif
			acc := &accuracy{m: map[accKey]*accVal{}}
			s.step(pd.Target, tc.actual, acc, &buf, so)
			got := acc.m[accKey{"x", "5m"}]
			require.NotNil(t, got)
			require.Equal(t, 1, got.n)
			require.InEpsilon(t, math.Abs(tc.actual-pd.Yhat)/scale, got.mase, 1e-12)
		})
	}
}

// TestAccuracyWeighsEverySeriesOfAFamily: the forecast accuracy of an
// input name is that of all its series alike. The series of one target
// are scraped, and so checked, together, in the order they are sent; on
// f2557c6 each check weighed 1/100 whatever the family's size, so the
// figure was that of the last hundred checks of the round: of 200 series,
// the 50 sent last (noisy here) made half of it, not their quarter (MASE
// 37% above the family's), and a reordering of the sender moved it.
// Compared here with the mean over every check, computed from the pending
// forecasts and the actuals.
func TestAccuracyWeighsEverySeriesOfAFamily(t *testing.T) {
	if testing.Short() {
		t.Skip("200 forecasters over 8 hours")
	}
	const (
		n, noisy = 200, 50 // the noisy ones last
		every    = 30_000
		steps    = 960
		warm     = 360 // 3 hours
	)
	hs, names := horizonsOf(config.Default().Defaults)
	buf := newFcBuf()
	acc := &accuracy{m: map[accKey]*accVal{}}
	rng := rand.New(rand.NewPCG(1, 2))
	all := make([]*series, n)
	for i := range all {
		all[i] = &series{fc: newFcState(hs, names), name: "x", absDif: 1}
	}
	type check struct {
		t   int64
		err float64
		in  bool
	}
	var checks []check
	everyMs := time.Minute.Milliseconds()
	for k := range steps {
		tm := t0.UnixMilli() + int64(k)*every
		a := acc
		if k < warm {
			// The forecasters' first hours, whose intervals are still
			// narrow, are left out, as a restart's warm start does.
			a = nil
		}
		for i, s := range all {
			v := 100 + 10*math.Sin(float64(k)/40+float64(i))
			if i >= n-noisy {
				v += 5 * rng.NormFloat64()
			}
			// The check the 5m forecast gets at this sample: the
			// actual is on the sample grid.
			if pd := s.fc.pend[0]; pd.Active && tm >= pd.Target && a != nil {
				checks = append(checks, check{tm, math.Abs(v-pd.Yhat) / s.absDif, v >= pd.Lo && v <= pd.Hi})
			}
			s.fc.step(s, tm, v, v, a, &buf, everyMs)
		}
	}
	// Every series alike over the 5 hours checked: omen's window is
	// about a hundred checks of one series, 8 hours at 5m, and the noise
	// is the same throughout, so the figure is the family's mean.
	var sum, cov, cnt float64
	for _, c := range checks {
		sum += c.err
		if c.in {
			cov++
		}
		cnt++
	}
	require.Greater(t, cnt, 1000.0)
	got := acc.m[accKey{"x", "5m"}]
	t.Logf("checks %v: MASE %.3f, coverage %.3f; omen's %.3f, %.3f", cnt, sum/cnt, cov/cnt, got.mase, got.covered)
	require.InEpsilon(t, sum/cnt, got.mase, 0.1, "MASE of all the series")
	require.InDelta(t, cov/cnt, got.covered, 0.03, "coverage of all the series")
}

// TestAccuracyAges: the checks' weights age with sample time, by 100
// times the horizon; one behind ages nothing, and one stamped ahead of the
// clock ages the others no further than now.
func TestAccuracyAges(t *testing.T) {
	const h, every = 300_000, 60_000
	tau := float64(accuracyChecks * h)
	for _, tc := range []struct {
		name       string
		secondT    int64 // the second check's sample time; the first's is 0
		nowMs      int64
		wantWeight float64 // of the first check, against the second's 1
	}{
		{name: "same time", secondT: 0, nowMs: 1, wantWeight: 1},
		{name: "one tau later", secondT: int64(tau), nowMs: int64(tau), wantWeight: math.Exp(-1)},
		{name: "behind", secondT: -int64(tau), nowMs: 1, wantWeight: 1},
		{name: "ahead of the clock", secondT: 100 * int64(tau), nowMs: int64(tau), wantWeight: math.Exp(-1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc := &accuracy{m: map[accKey]*accVal{}}
			acc.observe("x", "5m", h, every, 0, 2, true, 1)
			acc.observe("x", "5m", h, every, tc.secondT, 4, false, tc.nowMs)
			v := acc.m[accKey{"x", "5m"}]
			w := tc.wantWeight
			require.InEpsilon(t, (2*w+4)/(w+1), v.mase, 1e-12)
			require.InEpsilon(t, w/(w+1), v.covered, 1e-12)
		})
	}
}

// TestAccuracyLeavesWithItsSeries: an input name's forecast accuracy is on
// /metrics while one of its series is (see walkOutputs), and leaves with
// the last: silent for the lookback (Prometheus stopped, its remote-write
// cut off) or marked stale. On abf5690 both gauges stayed, frozen, until
// samples of other inputs came StaleAfter after the name's latest check,
// and with every sender stopped for good: OmenForecastIntervalsMiscalibrated
// fired on a figure nothing updated, on and on. The figure is kept, not
// reset: it is back, as it was, with the name's next sample.
func TestAccuracyLeavesWithItsSeries(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	a, b := labels.FromStrings("__name__", "a"), labels.FromStrings("__name__", "b")
	vs := seasonal(801, 3)
	e.feed(a, model.MetricTypeGauge, vs[:800])
	e.feed(b, model.MetricTypeGauge, vs[:800])
	names := func() map[string]int {
		got := accuracyNames(t, e.p.AccuracyCollector())
		require.Equal(t, got, accuracyNames(t, e.p.Collector()), "the full collector as the accuracy's")
		return got
	}
	both := names()
	require.Positive(t, both["a"])
	require.Equal(t, both["a"], both["b"])
	before := *e.p.acc().m[accKey{"a", "5m"}]

	// Nothing arrives for longer than the lookback and the hold.
	quiet := t0.Add(e.p.opts.IncidentHold + lookbackMs*time.Millisecond + time.Minute)
	e.clock.set(quiet)
	require.Empty(t, names(), "every sender stopped")

	// b sends again; a stays silent.
	next := t0.UnixMilli() + 800*stepMs
	e.push(next, model.MetricTypeGauge, []labels.Labels{b}, vs[800:])
	e.sync()
	got := names()
	require.Zero(t, got["a"])
	require.Equal(t, both["b"], got["b"])

	// b is marked stale (its target went away): it leaves; a is back.
	e.push(next+1, model.MetricTypeGauge, []labels.Labels{b}, []float64{math.Float64frombits(value.StaleNaN)})
	e.push(next, model.MetricTypeGauge, []labels.Labels{a}, vs[800:])
	e.sync()
	got = names()
	require.Zero(t, got["b"])
	require.Equal(t, both["a"], got["a"])
	after := e.p.acc().m[accKey{"a", "5m"}]
	require.NotNil(t, after)
	require.GreaterOrEqual(t, after.n, before.n, "kept, not reset")
}

// accuracyNames counts the forecast accuracy gauges c gives per input name.
func accuracyNames(t *testing.T, c prometheus.Collector) map[string]int {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "omen_forecast_mase" && mf.GetName() != "omen_forecast_interval_coverage_ratio" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "for" {
					got[l.GetValue()]++
				}
			}
		}
	}
	return got
}
