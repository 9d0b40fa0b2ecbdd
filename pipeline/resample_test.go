package pipeline

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forecast"
)

func TestResampler(t *testing.T) {
	tests := []struct {
		name      string
		minStepMs int64
		in        []tv
		want      []tv
		wantStep  int64
		wantMSD   []float64 // the steps' mean squared deviations, if checked
	}{
		{
			name: "1 s input, 29 s minimum: means of 29 samples", minStepMs: 28125,
			in: ramp(0, 1000, 100),
			// Buckets [0,29s), [29s,58s), [58s,87s): the fourth is open.
			want:     []tv{{28000, 14}, {57000, 43}, {86000, 72}},
			wantStep: 29000,
			wantMSD:  []float64{70, 70, 70}, // of 0..28 about 14: (29²-1)/12
		},
		{
			name: "15 s input, 28.125 s minimum: pairs", minStepMs: 28125,
			in:       ramp(0, 15000, 7),
			want:     []tv{{15000, 0.5}, {45000, 2.5}, {75000, 4.5}},
			wantStep: 30000,
		},
		{
			name: "60 s input: passes through", minStepMs: 28125,
			in:       ramp(60000, 60000, 3),
			want:     []tv{{60000, 0}, {120000, 1}, {180000, 2}},
			wantStep: 60000,
		},
		{
			name: "out of order and repeated samples are ignored", minStepMs: 28125,
			in:       []tv{{60000, 0}, {60000, 9}, {120000, 1}, {90000, 9}, {180000, 2}},
			want:     []tv{{60000, 0}, {120000, 1}, {180000, 2}},
			wantStep: 60000,
		},
		{
			name: "a first interval that was a gap is estimated again", minStepMs: 28125,
			in: []tv{{0, 1}, {600000, 2}, {615000, 4}, {630000, 6}, {645000, 8}, {660000, 10}},
			// 10m first, passed through; then 15 s: 30 s steps.
			want:     []tv{{0, 1}, {600000, 2}, {615000, 4}, {645000, 7}},
			wantStep: 30000,
		},
		{
			name: "a burst once the step is known does not change it", minStepMs: 28125,
			// 60 s input for three intervals, then a sample 8 ms after
			// the one before (a sender's retry, a restarted generator's
			// first rounds): the step stays one input interval (it
			// became 28 128 ms, 3 516 intervals of 8 ms, for good, and
			// the forecaster, fed 60 s points, took each as after a gap
			// and published no forecast again).
			in:       []tv{{0, 0}, {60000, 1}, {120000, 2}, {180000, 3}, {180008, 4}, {240000, 5}},
			want:     []tv{{0, 0}, {60000, 1}, {120000, 2}, {180000, 3}, {180008, 4}, {240000, 5}},
			wantStep: 60000,
		},
		{
			name: "an interval that changes is followed once it has lasted a step", minStepMs: 28125,
			// 60 s, then 15 s: the 15 s samples pass through until they
			// have lasted one 60 s step, then pairs are averaged (the
			// step stayed 60 s for good, the forecaster was fed 15 s
			// points, and the 30m horizon, 120 of them, was never
			// forecast again; at 1 s no horizon was).
			in: []tv{{0, 0}, {60000, 1}, {120000, 2}, {135000, 3}, {150000, 4}, {165000, 5},
				{180000, 6}, {195000, 7}, {210000, 8}, {225000, 9}, {240000, 10}},
			want: []tv{{0, 0}, {60000, 1}, {120000, 2}, {135000, 3}, {150000, 4}, {165000, 5},
				{195000, 6.5}, {225000, 8.5}},
			wantStep: 30000,
		},
		{
			name: "retries a step apart do not change the step", minStepMs: 28125,
			in:       []tv{{0, 0}, {60000, 1}, {120000, 2}, {120008, 3}, {180000, 4}, {180008, 5}, {240000, 6}, {240008, 7}, {300000, 8}},
			want:     []tv{{0, 0}, {60000, 1}, {120000, 2}, {120008, 3}, {180000, 4}, {180008, 5}, {240000, 6}, {240008, 7}, {300000, 8}},
			wantStep: 60000,
		},
		{
			name: "a gap closes the open step", minStepMs: 28125,
			in:       []tv{{0, 1}, {15000, 3}, {300000, 5}, {315000, 7}, {330000, 9}},
			want:     []tv{{15000, 2}, {315000, 6}},
			wantStep: 30000,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := resampler{minStepMs: tc.minStepMs}
			var got []tv
			var msd []float64
			for _, p := range tc.in {
				out, n := r.add(p.t, p.v)
				for _, o := range out[:n] {
					got, msd = append(got, tv{o.t, o.v}), append(msd, o.msd)
				}
			}
			require.Equal(t, tc.want, got)
			if tc.wantMSD != nil {
				require.InDeltaSlice(t, tc.wantMSD, msd, 1e-9)
			}
			require.Equal(t, tc.wantStep, r.stepMs)
		})
	}
}

// tv is a resampler's input or output point without its spread.
type tv struct {
	t int64
	v float64
}

// ramp returns n points from t0 every step with values 0, 1, 2, ...
func ramp(t0, step int64, n int) []tv {
	out := make([]tv, n)
	for i := range out {
		out[i] = tv{t0 + int64(i)*step, float64(i)}
	}
	return out
}

// TestForecastOneSecondScrapes: with 1 s samples, the 5m, 15m and 30m
// horizons (300 to 1800 samples ahead, beyond the forecaster's MaxHorizon)
// are all forecast, on 29 s steps, each for about its horizon ahead.
func TestForecastOneSecondScrapes(t *testing.T) {
	hs, names := horizonsOf(config.Default().Defaults)
	require.Equal(t, []string{"5m", "15m", "30m"}, names)
	f := newFcState(hs, names)
	s := &series{fc: f}
	buf := make([]forecast.Point, 0, forecastOptions().MaxHorizon)
	const n = 3 * 3600 // three hours of 1 s samples
	vs := make([]float64, n)
	for i := range vs {
		vs[i] = 100 + 20*sinPeriod(i, 1200) // a 20-minute season
	}
	made := 0
	for i, v := range vs {
		tm := t0.UnixMilli() + int64(i)*1000
		f.step(s, tm, v, v, nil, &buf, time.Minute.Milliseconds())
		if !f.isNew {
			continue
		}
		made++
		for h, d := range hs {
			require.True(t, f.ok[h], "horizon %s at sample %d", names[h], i)
			ahead := f.pts[h].TsMillis - tm
			require.InDelta(t, d.Milliseconds(), ahead, 30_000, "horizon %s is forecast for about now+%s", names[h], names[h])
			require.InDelta(t, 100, f.pts[h].Yhat, 40)
		}
	}
	require.Equal(t, int64(29_000), f.m.Step(), "29 s steps: 1800 s / 64 rounded up to whole seconds")
	require.Positive(t, made)
	// Once ready (192 steps of 29 s), one forecast at the step nearest a
	// minute after the last: every second step, 58 s.
	require.InDelta(t, (n-192*29)/58, made, 3)
}

func sinPeriod(i, period int) float64 {
	return sinTable(float64(i%period) / float64(period))
}

// TestForecastHorizonsThroughPipeline: 1 s samples through the tap produce
// forecast series for every horizon in the TSDB.
func TestForecastHorizonsThroughPipeline(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "temperature")
	const n = 2 * 3600
	for i := range n {
		e.push(t0.UnixMilli()+int64(i)*1000, model.MetricTypeGauge, []labels.Labels{ls}, []float64{100 + 20*sinPeriod(i, 1200)})
	}
	e.sync()
	for _, h := range []string{"5m", "15m", "30m"} {
		got := query(t, e.db, eq("__name__", FamilyForecast), eq("for", "temperature"), eq("horizon", h))
		require.Len(t, got, 1, "horizon %s", h)
	}
}

func sinTable(x float64) float64 { return math.Sin(2 * math.Pi * x) }

// TestForecastBandsCoverRawSamples: the forecaster forecasts step means
// (several input samples each when the scrape interval is short), but the
// bands are compared with raw samples, by users and by the accuracy
// metric: on white noise they cover about the nominal 95% whatever the
// scrape interval. Before the bands were widened by the within-step spread,
// 1 s scrapes (29 samples a step) covered 12-31%. Every forecast is checked
// against the first raw sample at or after its target time.
func TestForecastBandsCoverRawSamples(t *testing.T) {
	for _, tc := range []struct {
		name    string
		everyMs int64
		n       int
	}{
		{"30s scrapes, one a step", 30_000, 2 * 2880},
		{"15s scrapes, two a step", 15_000, 4 * 2880},
		{"1s scrapes, 29 a step", 1000, 8 * 3600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, names := horizonsOf(config.Default().Defaults)
			f := newFcState(hs, names)
			s := &series{fc: f}
			buf := make([]forecast.Point, 0, forecastOptions().MaxHorizon)
			r := rand.New(rand.NewPCG(1, 2))
			open := make([][]forecast.Point, len(hs)) // forecasts whose target has not come, per horizon
			checks, covered := make([]int, len(hs)), make([]int, len(hs))
			for i := range tc.n {
				tm, v := t0.UnixMilli()+int64(i)*tc.everyMs, 100+5*r.NormFloat64()
				for h := range open {
					for len(open[h]) > 0 && open[h][0].TsMillis <= tm {
						p := open[h][0]
						open[h] = open[h][1:]
						checks[h]++
						if v >= p.Lower && v <= p.Upper {
							covered[h]++
						}
					}
				}
				f.step(s, tm, v, v, nil, &buf, time.Minute.Milliseconds())
				for h := range open {
					if f.isNew && f.ok[h] {
						open[h] = append(open[h], f.pts[h])
					}
				}
			}
			for h, name := range names {
				require.Greater(t, checks[h], 200, "horizon %s", name)
				c := float64(covered[h]) / float64(checks[h])
				t.Logf("horizon %s: %.3f of %d", name, c, checks[h])
				require.InDelta(t, 0.96, c, 0.035, "horizon %s over %d forecasts", name, checks[h])
			}
		})
	}
}

// TestWidenKeepsNonNegativeBand: widening a band by the within-step spread
// moved the lower end of a non-negative series' band below 0; it stops at
// 0 now, and a series that may be negative is widened as before.
func TestWidenKeepsNonNegativeBand(t *testing.T) {
	p := forecast.Point{Yhat: 1, Lower: 0.5, Upper: 1.5}
	for _, tc := range []struct {
		name   string
		nonNeg bool
		lower  float64
	}{
		{"non-negative", true, 0},
		{"may be negative", false, 1 - math.Sqrt(0.25+bandZ*bandZ)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := widen(p, 1, tc.nonNeg)
			require.InDelta(t, tc.lower, w.Lower, 1e-12)
			require.InDelta(t, 1+math.Sqrt(0.25+bandZ*bandZ), w.Upper, 1e-12)
			require.Equal(t, p.Yhat, w.Yhat)
		})
	}
}
