package pipeline

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecast"
	"github.com/omen-sidecar/omen/internal/livefc"
)

// newFcState returns a forecaster for the horizons hs, named names.
func newFcState(hs []time.Duration, names []string) *fcState {
	return newFcStateOf(&horizonSet{horizons: hs, hname: names}, 0)
}

// rampFc feeds a forecaster of the given horizons a noise-free ramp (slope
// 1 a second, or f's) every everyMs for n samples and returns the last
// forecasts made, whether each was, and when they were made.
func rampFc(hs []time.Duration, names []string, everyMs int64, n int, val func(ms int64) float64) (pts []forecast.Point, oks []bool, madeAt int64) {
	f := newFcState(hs, names)
	s := &series{fc: f, name: "x"}
	buf := newFcBuf()
	for i := range n {
		tm := t0.UnixMilli() + int64(i)*everyMs
		v := val(tm - t0.UnixMilli())
		f.step(s, tm, v, v, nil, &buf, time.Minute.Milliseconds())
		if f.isNew {
			pts, oks, madeAt = append(pts[:0], f.pts...), append(oks[:0], f.ok...), tm
		}
	}
	return pts, oks, madeAt
}

// TestForecastTargetsItsHorizon: forecast{horizon=h} made at t is for t+h
// at every input interval. It was the forecast of a whole number of the
// forecaster's steps, the nearest: at 10-minute samples "5m" was 10
// minutes ahead (+294 on this ramp); with a 24h horizon beside them (23-
// minute steps) "5m" was never forecast and "15m" and "30m" were one
// forecast; a step averaged from 15 s or 1 s samples stood for its last
// sample, not their middle (22–25 s more lag than at 30 s).
func TestForecastTargetsItsHorizon(t *testing.T) {
	ramp := func(ms int64) float64 { return 1e6 + float64(ms)/1000 }
	def, defNames := horizonsOf(config.Default().Defaults)
	errAt := map[int64][]float64{}
	for _, every := range []int64{1_000, 15_000, 30_000, 120_000, 180_000, 600_000} {
		n := int(max(6*3600_000/every, 400))
		pts, oks, at := rampFc(def, defNames, every, n, ramp)
		for h, d := range def {
			require.True(t, oks[h], "%d ms, %s", every, defNames[h])
			require.Equal(t, at+d.Milliseconds(), pts[h].TsMillis)
			e := pts[h].Yhat - ramp(at+d.Milliseconds()-t0.UnixMilli())
			errAt[every] = append(errAt[every], e)
			t.Logf("%6d ms, %3s: yhat - value(t+h) = %+.1f", every, defNames[h], e)
			// The damped trend undershoots a ramp: 15% of 30m at 30 s.
			require.Less(t, math.Abs(e), 0.2*d.Seconds(), "%d ms, %s", every, defNames[h])
			require.LessOrEqual(t, pts[h].Lower, pts[h].Yhat)
			require.GreaterOrEqual(t, pts[h].Upper, pts[h].Yhat)
		}
	}
	for _, every := range []int64{1_000, 15_000} {
		for h := range def {
			require.InDelta(t, errAt[30_000][h], errAt[every][h], 15, "%d ms, %s: against 30 s, where samples are steps", every, defNames[h])
		}
	}

	long, longNames := horizonsOf(config.Scoring{ForecastHorizons: []model.Duration{
		model.Duration(5 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute), model.Duration(24 * time.Hour)}})
	pts, oks, at := rampFc(long, longNames, 60_000, 8*1440, ramp)
	for h, d := range long {
		require.True(t, oks[h], longNames[h])
		e := pts[h].Yhat - ramp(at+d.Milliseconds()-t0.UnixMilli())
		t.Logf("beside 24h: %3s: yhat - value(t+h) = %+.1f", longNames[h], e)
		require.Less(t, math.Abs(e), 0.2*d.Seconds(), longNames[h])
	}
	require.Less(t, pts[0].Yhat, pts[1].Yhat)
	require.Less(t, pts[1].Yhat, pts[2].Yhat)
}

// TestForecastAfterTargetDown: a 15 s gauge rising 1 a minute, its target
// down for two hours (a staleness marker), then back. The first forecast
// stored after it came back was the extrapolation from two hours before,
// stamped now (1244 where 1365 was due); none is published until the
// forecaster has caught up, and those are for now + horizon.
func TestForecastAfterTargetDown(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "disk_used")
	val := func(ts int64) float64 { return 1000 + float64(ts-t0.UnixMilli())/60_000 }
	var ts int64
	for i := range 4 * 240 {
		ts = t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, []labels.Labels{ls}, []float64{val(ts)})
		if i%256 == 255 {
			e.sync()
		}
	}
	e.push(ts+stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{math.Float64frombits(value.StaleNaN)})
	back := ts + 2*3600_000
	for i := range 20 {
		tt := back + int64(i)*stepMs
		e.push(tt, model.MetricTypeGauge, []labels.Labels{ls}, []float64{val(tt)})
	}
	e.sync()
	qr, err := e.db.Querier(back, math.MaxInt64)
	require.NoError(t, err)
	defer qr.Close()
	ss := qr.Select(context.Background(), false, nil, eq("__name__", "forecast"), eq("horizon", "5m"))
	after := 0
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			pt, v := it.At()
			if value.IsStaleNaN(v) {
				continue
			}
			after++
			require.InDelta(t, val(pt+300_000), v, 2, "forecast{horizon=\"5m\"} stored at %d", pt)
		}
	}
	require.NoError(t, ss.Err())
	require.Positive(t, after, "forecasts again within five minutes of the target's return")
}

// TestForecastAccuracyPairs: the accuracy of a forecast is checked against
// the sample at its target. A pending forecast whose target fell in a gap
// was checked against the first sample after it (a two-hour-ahead error
// booked under horizon="5m": MASE 4.8 → 12.9 after one sample), and one
// +Inf sample at a target made the family's MASE NaN for good; huge values
// within a step (1e300 beside 100) made every forecast band NaN for good.
func TestForecastAccuracyPairs(t *testing.T) {
	hs, names := horizonsOf(config.Default().Defaults)
	buf := newFcBuf()
	const every = 30_000
	t.Run("gap", func(t *testing.T) {
		f := newFcState(hs, names)
		s := &series{fc: f, name: "x", absDif: 0.5}
		acc := &accuracy{m: map[accKey]*accVal{}}
		val := func(ts int64) float64 { return 1000 + float64(ts-t0.UnixMilli())/60_000 }
		var tm int64
		for i := range 4 * 120 {
			tm = t0.UnixMilli() + int64(i)*every
			f.step(s, tm, val(tm), val(tm), acc, &buf, time.Minute.Milliseconds())
		}
		before := map[string]accVal{}
		for _, n := range names {
			before[n] = *acc.m[accKey{"x", n}]
		}
		tm += 2 * 3600_000
		f.step(s, tm, val(tm), val(tm), acc, &buf, time.Minute.Milliseconds())
		for _, n := range names {
			require.Equal(t, before[n], *acc.m[accKey{"x", n}], "horizon %s", n)
		}
	})
	t.Run("inf", func(t *testing.T) {
		f := newFcState(hs, names)
		s := &series{fc: f, name: "x", absDif: 1}
		acc := &accuracy{m: map[accKey]*accVal{}}
		i := 0
		next := func(v float64) {
			f.step(s, t0.UnixMilli()+int64(i)*every, v, v, acc, &buf, time.Minute.Milliseconds())
			i++
		}
		wave := func() float64 { return 100 + 10*math.Sin(float64(i)/20) }
		for range 400 {
			next(wave())
		}
		for t0.UnixMilli()+int64(i)*every < f.pend[0].Target {
			next(wave())
		}
		next(math.Inf(1))
		for range 1000 {
			next(wave())
		}
		for _, n := range names {
			v := acc.m[accKey{"x", n}]
			require.True(t, isFinite(v.mase) && isFinite(v.covered), "horizon %s: %+v", n, *v)
		}
	})
	t.Run("huge within a step", func(t *testing.T) {
		f := newFcState(hs, names)
		s := &series{fc: f, name: "x"}
		for i := range 3000 {
			v := 100 + 10*math.Sin(float64(i)/40)
			if i >= 100 && i < 110 && i%2 == 0 {
				v = 1e300
			}
			f.step(s, t0.UnixMilli()+int64(i)*15_000, v, v, nil, &buf, time.Minute.Milliseconds())
		}
		require.True(t, isFinite(f.within), "within-step spread %v", f.within)
		for h := range hs {
			require.True(t, f.ok[h] && isFinite(f.pts[h].Lower) && isFinite(f.pts[h].Upper), "%+v", f.pts[h])
		}
	})
}

// TestForecastAfterGapFromNewLevel: a 15 s gauge at 1000, five minutes
// without samples, then 2000. The first sample after the gap published
// forecasts from the forecaster's pre-gap point alone (1000), stamped now;
// now that sample is a step of its own, taken at once, and every forecast
// from it on follows the new level.
func TestForecastAfterGapFromNewLevel(t *testing.T) {
	hs, names := horizonsOf(config.Default().Defaults)
	f := newFcState(hs, names)
	s := &series{fc: f, name: "x"}
	buf := newFcBuf()
	const every = 15_000
	var tm int64
	for i := range 1000 {
		tm = t0.UnixMilli() + int64(i)*every
		f.step(s, tm, 1000, 1000, nil, &buf, time.Minute.Milliseconds())
	}
	require.True(t, f.m.Ready())
	require.True(t, f.ok[0])
	tm += 5 * 60_000
	f.step(s, tm, 2000, 2000, nil, &buf, time.Minute.Milliseconds())
	require.True(t, f.isNew)
	for range 8 {
		if f.isNew {
			for h := range hs {
				require.True(t, f.ok[h], names[h])
				require.Greater(t, f.pts[h].Yhat, 1500.0, "%s: from the pre-gap level", names[h])
				require.Equal(t, tm+hs[h].Milliseconds(), f.pts[h].TsMillis, names[h])
			}
		}
		tm += every
		f.step(s, tm, 2000, 2000, nil, &buf, time.Minute.Milliseconds())
	}
}

// TestForecastCheckedAtItsTarget: a forecast is checked against the input
// at its target: between the samples either side of it. At 10-minute
// samples no sample comes at t+5m or t+15m, and each was checked against
// the next, five minutes late (MASE 0.51 and 0.56 on a ramp the forecaster
// follows exactly); at 30 s with timestamps a couple of milliseconds off,
// a check was dropped whenever the sample came later after the target
// than the step learnt (22 of 391).
func TestForecastCheckedAtItsTarget(t *testing.T) {
	hs, names := horizonsOf(config.Default().Defaults)
	buf := newFcBuf()
	t.Run("10m samples", func(t *testing.T) {
		f := newFcState(hs, names)
		s := &series{fc: f, name: "x", absDif: 1}
		acc := &accuracy{m: map[accKey]*accVal{}}
		for i := range 1000 {
			tm := t0.UnixMilli() + int64(i)*600_000
			v := 1000 + float64(i)
			f.step(s, tm, v, v, acc, &buf, time.Minute.Milliseconds())
		}
		for _, n := range names[:2] { // 30m is three samples ahead: its error is the forecast's (a damped trend)
			a := acc.m[accKey{"x", n}]
			require.Greater(t, a.n, 100, n)
			require.Less(t, a.mase, 0.2, "horizon %s", n)
		}
	})
	t.Run("30s jittered", func(t *testing.T) {
		f := newFcState(hs, names)
		s := &series{fc: f, name: "x", absDif: 1}
		acc := &accuracy{m: map[accKey]*accVal{}}
		rng := rand.New(rand.NewPCG(5, 6))
		armed := make([]int, len(hs))
		for i := range 3000 {
			tm := t0.UnixMilli() + int64(i)*30_000 + rng.Int64N(5) - 2
			v := 100 + 10*math.Sin(float64(i)/40)
			before := append([]livefc.Pending(nil), f.pend...)
			f.step(s, tm, v, v, acc, &buf, time.Minute.Milliseconds())
			for h := range hs {
				if f.pend[h].Active && (!before[h].Active || before[h].Target != f.pend[h].Target) {
					armed[h]++
				}
			}
		}
		for h, n := range names {
			require.GreaterOrEqual(t, acc.m[accKey{"x", n}].n, armed[h]-1, "horizon %s: every forecast checked but the last", n)
		}
	})
}

// TestForecastAfterIntervalChange: whatever the input's intervals do
// (shorter, longer, a retry, jitter), restarted from a snapshot or not,
// every default horizon is forecast every minute in the last hour, on
// steps of about 30 s or one input interval. A step fixed from the first
// intervals (or re-learnt from a few) lost these: 60 s then 15 s or 1 s was
// passed through at its new interval for good (the 30m horizon, 120 steps
// of 15 s, beyond MaxHorizon, never forecast again, at 1 s none); a retry
// right after the first interval made the step 28 s and 1 s then 60 s kept
// it 29 s, so that every 60 s point came after a "gap" (no forecast at
// all); 15 s then 60 s ± 1 s lost every forecast after a 61 s interval; 30
// s then 15 s kept 30 s steps of 15 s points (no 30m).
func TestForecastAfterIntervalChange(t *testing.T) {
	hs, names := horizonsOf(config.Default().Defaults)
	// seg is n intervals of every ms, each with jitter ms added in turn
	// (+, -).
	type seg struct{ every, n, jitter int64 }
	for _, tc := range []struct {
		name      string
		segs      []seg
		retryAt   int   // sample index followed by a retry 5 ms later, -1 none
		restartAt int   // sample index, -1 none
		step      int64 // the forecaster's step at the end
	}{
		{"60s then 15s", []seg{{60_000, 300, 0}, {15_000, 1500, 0}}, -1, -1, 30_000},
		{"60s then 1s", []seg{{60_000, 300, 0}, {1_000, 20_000, 0}}, -1, -1, 29_000},
		{"60s then 15s, restarted after", []seg{{60_000, 300, 0}, {15_000, 1500, 0}}, -1, 400, 30_000},
		{"10m gap then 15s, restarted after the gap", []seg{{600_000, 1, 0}, {15_000, 1500, 0}}, -1, 2, 30_000},
		{"a retry right after the first interval", []seg{{60_000, 500, 0}}, 1, -1, 60_000},
		{"a retry, restarted right after it", []seg{{60_000, 500, 0}}, 1, 3, 60_000},
		{"1s then 60s", []seg{{1_000, 20_000, 0}, {60_000, 300, 0}}, -1, -1, 60_000},
		{"15s then 60s ± 1s", []seg{{15_000, 1500, 0}, {60_000, 300, 1_000}}, -1, -1, 60_000},
		{"30s then 15s", []seg{{30_000, 600, 0}, {15_000, 1500, 0}}, -1, -1, 30_000},
		{"30s then 15s, restarted after", []seg{{30_000, 600, 0}, {15_000, 1500, 0}}, -1, 800, 30_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFcState(hs, names)
			s := &series{fc: f, name: "x"}
			buf := newFcBuf()
			tm := t0.UnixMilli()
			ts := []int64{tm}
			for _, sg := range tc.segs {
				for i := range sg.n {
					j := sg.jitter
					if i%2 == 1 {
						j = -j
					}
					tm += sg.every + j
					ts = append(ts, tm)
				}
			}
			if tc.retryAt >= 0 {
				ts = slices.Insert(ts, tc.retryAt+1, ts[tc.retryAt]+5)
			}
			lastHour := ts[len(ts)-1] - 3600_000
			made := make([]int, len(hs))
			for i, tm := range ts {
				if i == tc.restartAt {
					b, err := f.appendState(nil)
					require.NoError(t, err)
					f = newFcState(hs, names)
					require.NoError(t, f.restoreState(b))
					s.fc = f
				}
				v := 100 + 20*sinPeriod(int((tm-t0.UnixMilli())/1000), 1200)
				f.step(s, tm, v, v, nil, &buf, time.Minute.Milliseconds())
				for h := range hs {
					if tm > lastHour && f.isNew && f.ok[h] {
						made[h]++
					}
				}
			}
			require.InDelta(t, tc.step, f.m.Step(), 1_000, "the forecaster's step")
			for h, name := range names {
				require.InDelta(t, 60, made[h], 2, "horizon %s forecast every minute of the last hour", name)
			}
		})
	}
}

// TestForecastUnevenIntervals: an input whose intervals are uneven but
// repeat (10 s and 50 s in turn, each sample resent 5 ms later, three
// senders 100 ms apart every 30 s) is forecast every minute, for its
// horizon. Each sample was a step: the forecaster, which takes its points
// as evenly spaced, was fed each minute as two or three steps, and on a
// ramp of 1 a second forecast 5m 241–326 off and 30m 1 473–1 816 off (6
// and 141 at even 60 s intervals).
func TestForecastUnevenIntervals(t *testing.T) {
	hs, names := horizonsOf(config.Default().Defaults)
	for _, tc := range []struct {
		name  string
		every []int64 // the intervals, in turn
		n     int
		step  int64 // the forecaster's step at the end
	}{
		{"10 s and 50 s in turn", []int64{10_000, 50_000}, 1200, 60_000},
		{"20 s and 40 s in turn", []int64{20_000, 40_000}, 1200, 60_000},
		{"60 s, each sample resent 5 ms later", []int64{5, 59_995}, 1200, 60_000},
		{"30 s from three senders 100 ms apart", []int64{100, 100, 29_800}, 3000, 30_000},
		{"60 s, bursts of three 2 ms apart", []int64{2, 2, 59_996}, 3600, 60_000},
		{"15 s, bursts of four 1 ms apart", []int64{1, 1, 1, 14_997}, 12000, 30_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := []int64{t0.UnixMilli()}
			for i := range tc.n {
				ts = append(ts, ts[len(ts)-1]+tc.every[i%len(tc.every)])
			}
			requireRampForecasts(t, hs, names, ts, tc.step, 1_000)
		})
	}
}

// TestForecastFastJitteredInput: an input faster than an instant of the
// resampler (879 ms at the default horizons), its samples a little early
// or late, is forecast every minute, for its horizon. Its interval was the
// span of the samples that filled an instant, a whole number of them that
// changed with the jitter, and its steps with it: on a ramp of 1 a second,
// 5m forecasts up to 2 093 off at 450 ms ± 20 ms and 1 867 at 200 ms ± 50
// ms (11 at the input's own interval).
func TestForecastFastJitteredInput(t *testing.T) {
	hs, names := horizonsOf(config.Default().Defaults)
	for _, tc := range []struct {
		name          string
		every, jitter int64
		step          int64 // the forecaster's step at the end
	}{
		{"200 ms ± 50 ms", 200, 50, 28_200},
		{"450 ms ± 20 ms", 450, 20, 28_350},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 9)) // a seed that failed both
			ts := []int64{t0.UnixMilli()}
			for nominal := ts[0] + tc.every; nominal <= ts[0]+4*3600_000; nominal += tc.every {
				if tm := nominal + rng.Int64N(2*tc.jitter+1) - tc.jitter; tm > ts[len(ts)-1] {
					ts = append(ts, tm)
				}
			}
			requireRampForecasts(t, hs, names, ts, tc.step, 500)
		})
	}
}

// TestForecastIntervalAtMinStep: an input whose interval is the longest
// horizon / 64 (30 s with a 32m horizon, 15 s with 16m, 45 s with 48m;
// from 1h on, the step is at least livefc.DailyStepMs, see minStepFor),
// its samples stamped a few ms early or late, is forecast every minute on
// steps of one interval, for its horizon. Its step was one interval while
// the median of the last three was just above the minimum and two while it
// was just below: on a ramp of 1 a second 5m was forecast 170-14 805 off
// (6-17 with the step steady), and 41-57 forecasts an hour were made.
func TestForecastIntervalAtMinStep(t *testing.T) {
	for _, tc := range []struct {
		name    string
		longest time.Duration
		every   int64
	}{
		{"32m horizon, 30 s", 32 * time.Minute, 30_000},
		{"16m horizon, 15 s", 16 * time.Minute, 15_000},
		{"48m horizon, 45 s", 48 * time.Minute, 45_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, names := horizonsOf(config.Scoring{ForecastHorizons: []model.Duration{model.Duration(5 * time.Minute), model.Duration(tc.longest)}})
			require.Equal(t, tc.every, newFcState(hs, names).rs.MinStepMs)
			rng := rand.New(rand.NewPCG(7, 8))
			ts := make([]int64, 12*3600_000/tc.every)
			for i := range ts {
				ts[i] = t0.UnixMilli() + int64(i)*tc.every + rng.Int64N(7) - 3
			}
			requireRampForecasts(t, hs, names, ts, tc.every, 10)
		})
	}
}

// requireRampForecasts feeds a forecaster of the horizons hs a ramp of 1 a
// second at the times ts and requires that in the last hour every horizon
// is forecast every minute, for its time and near the ramp there (as
// TestForecastTargetsItsHorizon: the damped trend undershoots a ramp), and
// that the forecaster's step ends within delta of step.
func requireRampForecasts(t *testing.T, hs []time.Duration, names []string, ts []int64, step, delta int64) {
	t.Helper()
	ramp := func(ms int64) float64 { return 1e6 + float64(ms-t0.UnixMilli())/1000 }
	f := newFcState(hs, names)
	s := &series{fc: f, name: "x"}
	buf := newFcBuf()
	lastHour := ts[len(ts)-1] - 3600_000
	made := make([]int, len(hs))
	for _, tm := range ts {
		f.step(s, tm, ramp(tm), ramp(tm), nil, &buf, time.Minute.Milliseconds())
		if tm <= lastHour || !f.isNew {
			continue
		}
		for h, d := range hs {
			if !f.ok[h] {
				continue
			}
			made[h]++
			require.Equal(t, tm+d.Milliseconds(), f.pts[h].TsMillis, names[h])
			require.Less(t, math.Abs(f.pts[h].Yhat-ramp(tm+d.Milliseconds())), 0.2*d.Seconds(), "%s at %d", names[h], tm)
		}
	}
	require.InDelta(t, step, f.m.Step(), float64(delta), "the forecaster's step")
	// A forecast at the step nearest a minute after the last: every two
	// steps of 28.2 s is 64 an hour.
	every := max(1, (60_000+step/2)/step) * step
	for h, name := range names {
		require.InDelta(t, 3600_000/float64(every), made[h], 2, "horizon %s forecast every minute of the last hour", name)
	}
}

// TestAccuracyExpires: an input's forecast accuracy leaves /metrics once
// it has not been checked for StaleAfter past when its next check was due
// (the cut expireRestored passes; a 5m horizon's next check, forecasts
// made a minute apart, is due 10 minutes on), and not before: no test
// failed with the entries kept a minute past the cut. Nor before samples
// have come that long after its latest check, in sample time: omen's
// clock stepped forward (or resumed from a pause) reset every entry's
// average before its next check. A reading ahead of omen's
// clock, which stepped back, is taken back to it.
func TestAccuracyExpires(t *testing.T) {
	const stale, cut, due = 60 * 60_000, 10 * 60_000, 10 * 60_000
	const now = cut + stale + due
	for _, tc := range []struct {
		name      string
		lastSeen  int64 // omen's clock at the latest check (its sample time is 0)
		arrivedMs int64 // the latest sample's time
		kept      bool
	}{
		{"checked before the cut", cut - 1, now, false},
		{"a minute before the cut", cut - 60_000, now, false},
		{"checked at the cut", cut, now, true},
		{"checked after the cut", cut + 1, now, true},
		{"omen's clock stepped forward, nothing since", cut - 60_000, 0, true},
		{"omen's clock stepped forward, samples a minute on", cut - 60_000, 60_000, true},
		{"omen's clock stepped back", now + 2*stale, now, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc := &accuracy{m: map[accKey]*accVal{}}
			acc.observe("x", "5m", 300_000, 60_000, 0, 1, true, tc.lastSeen)
			acc.expire(now, stale, tc.arrivedMs)
			require.Equal(t, tc.kept, len(acc.m) == 1)
			for _, v := range acc.m {
				require.LessOrEqual(t, v.lastSeen, int64(now), "not checked after now")
			}
		})
	}
}

// TestLearnable: the forecaster learns a sample the detector scored above 1
// clipped into the band expected before it, and every other sample as it
// is. Clipping from a score of 0.5 on failed no test; a sample merely
// unusual, not anomalous, must move the forecast.
func TestLearnable(t *testing.T) {
	band := detect.Result{Ready: true, Yhat: 100, YhatLower: 90, YhatUpper: 110}
	with := func(score float64, ready bool) detect.Result { r := band; r.Score, r.Ready = score, ready; return r }
	for _, tc := range []struct {
		name string
		v    float64
		r    detect.Result
		want float64
	}{
		{"anomalous above", 500, with(1.5, true), 110},
		{"anomalous below", -500, with(1.5, true), 90},
		{"at the threshold", 500, with(1, true), 500},
		{"unusual, not anomalous", 500, with(0.9, true), 500},
		{"warming up", 500, with(1.5, false), 500},
		{"no band", 500, detect.Result{Ready: true, Score: 1.5, YhatLower: math.NaN(), YhatUpper: math.NaN()}, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, livefc.Learnable(tc.v, tc.r))
		})
	}
}

// TestRefitsStaggered: series that start together (a deployment's, warmed
// from the same hours of history) do not all refit their forecasters at
// the same sample. They did: 10 000 refits in one 15 s step every 64
// steps, 6.7 CPU-s of a scorer's time at once and none between.
func TestRefitsStaggered(t *testing.T) {
	every := livefc.Options().RefitEvery
	// Consecutive refs, as the head gives a deployment's series, wherever
	// they start (a derived input's carry a high bit), fill every phase
	// about evenly.
	for _, first := range []storage.SeriesRef{1, 100_003, derivedRefBit | 5} {
		count := make([]int, every)
		for r := range storage.SeriesRef(20 * every) {
			count[refitPhase(first+r)]++
		}
		require.GreaterOrEqual(t, slices.Min(count), 10, "refs from %d: %v", first, count)
		require.LessOrEqual(t, slices.Max(count), 30, "refs from %d: %v", first, count)
	}

	// The same samples into 64 forecasters of consecutive refs: a
	// forecast made after a refit differs from one made before it, so
	// forecasters refitting at the same samples forecast alike. A refit
	// waits for a forecast, one a minute, every 4th of these 15 s samples:
	// 64/4 = 16 refit schedules at most.
	hs, names := horizonsOf(config.Default().Defaults)
	rng := rand.New(rand.NewPCG(3, 5))
	fcs := make([]*fcState, 64)
	for i := range fcs {
		fcs[i] = newFcStateOf(&horizonSet{horizons: hs, hname: names}, storage.SeriesRef(1000+i))
	}
	buf := newFcBuf()
	s := &series{name: "x"}
	for i := range 600 {
		tm := t0.UnixMilli() + int64(i)*15_000
		v := 100 + 10*math.Sin(2*math.Pi*float64(i)/96) + rng.NormFloat64()
		for _, f := range fcs {
			s.fc = f
			f.step(s, tm, v, v, nil, &buf, time.Minute.Milliseconds())
		}
	}
	distinct := map[float64]bool{}
	for _, f := range fcs {
		require.True(t, f.ok[0])
		distinct[f.pts[0].Yhat] = true
	}
	require.GreaterOrEqual(t, len(distinct), 14, "forecasts alike, from the same refits")
}

// TestAccuracyKeptBetweenChecks: a horizon's forecast accuracy stays on
// /metrics between two of its checks while the series' samples come, for
// every horizon the configuration allows (forecast_horizons has no upper
// bound, --detect.stale-after a lower one of 1m), and goes once they stop.
// The accuracy takes a horizon's first pending forecast only (see
// livefc.Check), checked once a horizon: a 2h horizon under the default
// stale-after of 1h was dropped an hour after each check and booked anew
// at the next, its MASE and coverage off /metrics half the time (the
// OmenForecastIntervalsMiscalibrated alert and dashboards saw gaps) and
// each time the average of one check. The cadence is the pipeline's:
// samples a minute apart, a forecast a minute (ForecastEvery), armed and
// checked by livefc.Arm and livefc.Check, and the sweep's expire every
// stale/8.
func TestAccuracyKeptBetweenChecks(t *testing.T) {
	const minute = int64(60_000)
	for _, tc := range []struct {
		h, stale time.Duration
	}{
		{5 * time.Minute, time.Hour},
		{30 * time.Minute, time.Hour},
		{time.Hour, time.Hour},
		{2 * time.Hour, time.Hour},
		{6 * time.Hour, time.Hour},
		{30 * time.Minute, 5 * time.Minute},
		{5 * time.Minute, time.Minute},
	} {
		t.Run("h="+model.Duration(tc.h).String()+"/stale="+model.Duration(tc.stale).String(), func(t *testing.T) {
			hs := []time.Duration{tc.h}
			pend := make([]livefc.Pending, 1+livefc.ExtraSlots(hs))
			acc := &accuracy{m: map[accKey]*accVal{}}
			hMs, staleMs := tc.h.Milliseconds(), tc.stale.Milliseconds()
			sweepMs := max(staleMs/8, 1000)
			key := accKey{"x", model.Duration(tc.h).String()}
			var prevT, made, nextSweep, firstCheck int64
			checks := 0
			end := 4*hMs + 4*staleMs
			for tm := minute; tm <= end; tm += minute {
				v := float64(tm % 7)
				livefc.Check(pend, hs, minute, prevT, 0, 0, minute, tm, v, func(i int, pd *livefc.Pending, actual float64) {
					acc.observe("x", key.horizon, hMs, minute, pd.Target, 1, true, tm)
					checks++
					if firstCheck == 0 {
						firstCheck = tm
					}
				})
				prevT = tm
				if tm-made >= minute {
					made = tm
					livefc.Arm(pend, hs, 0, forecast.Point{TsMillis: tm + hMs, Yhat: 0, Lower: -1, Upper: 10})
				}
				for nextSweep <= tm {
					acc.expire(nextSweep, staleMs, tm)
					if firstCheck != 0 && nextSweep >= firstCheck {
						require.Contains(t, acc.m, key, "at %s, after %d checks", time.Duration(nextSweep)*time.Millisecond, checks)
					}
					nextSweep += sweepMs
				}
			}
			require.GreaterOrEqual(t, checks, 3)
			require.Equal(t, checks, acc.m[key].n, "one average over every check")
			// The series' samples stop (other series' go on): the entry
			// goes, at most StaleAfter past when its next check was due
			// (and a sweep).
			gone := end + staleMs + 2*max(hMs, minute) + sweepMs
			for ; nextSweep <= gone && len(acc.m) > 0; nextSweep += sweepMs {
				acc.expire(nextSweep, staleMs, nextSweep)
			}
			require.Empty(t, acc.m, "forgotten once the samples stopped")
		})
	}
}
