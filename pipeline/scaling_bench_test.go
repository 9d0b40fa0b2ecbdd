package pipeline

// Run: go test -v -run '^$' -bench Scaling -benchtime 1x ./pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// scaleHorizons are the predictive-scaling component's horizons
// (deploy/kubernetes/components/predictive-scaling/omen.yml), and
// scaleEvery its derived input's interval.
var scaleHorizons = []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute}

const scaleEvery = 30 * time.Second

// scaleOut is what a live series published at each sample: per horizon,
// the forecast and its band (NaN where none was).
type scaleOut struct {
	yhat, lo, hi [][]float64 // [horizon][sample]
}

// scaleRun feeds v (scaleEvery apart from t0; NaN: no sample) through a
// series scored and forecast as live, and returns what it published at
// each sample (the latest forecast, as /metrics and the stored series hold
// it until the next).
func scaleRun(tb testing.TB, t0 int64, v []float64) scaleOut {
	se, so := newLiveSeries(tb, scaleHorizons)
	buf := newFcBuf()
	out := scaleOut{yhat: make([][]float64, len(scaleHorizons)), lo: make([][]float64, len(scaleHorizons)), hi: make([][]float64, len(scaleHorizons))}
	for h := range scaleHorizons {
		out.yhat[h], out.lo[h], out.hi[h] = make([]float64, len(v)), make([]float64, len(v)), make([]float64, len(v))
	}
	for i, x := range v {
		for h := range scaleHorizons {
			out.yhat[h][i], out.lo[h][i], out.hi[h][i] = math.NaN(), math.NaN(), math.NaN()
		}
		if math.IsNaN(x) {
			continue
		}
		se.step(t0+int64(i)*scaleEvery.Milliseconds(), x, nil, &buf, so)
		for h := range scaleHorizons {
			if se.fc.ok[h] {
				pt := se.fc.pts[h]
				out.yhat[h][i], out.lo[h][i], out.hi[h][i] = pt.Yhat, pt.Lower, pt.Upper
			}
		}
	}
	return out
}

// scalePredictLinear is predict_linear(x[w], h) at each sample time of v,
// by PromQL's engine (NaN where it has none).
func scalePredictLinear(tb testing.TB, t0 int64, v []float64, w, h time.Duration) []float64 {
	st := storeSeries(tb, t0, scaleEvery, v)
	defer st.Close()
	m := rangeFloats(tb, st, fmt.Sprintf("predict_linear(x[%s], %d)", model.Duration(w), int(h.Seconds())),
		time.UnixMilli(t0), time.UnixMilli(t0+int64(len(v)-1)*scaleEvery.Milliseconds()), scaleEvery)
	out := make([]float64, len(v))
	for i := range out {
		p, ok := m[t0+int64(i)*scaleEvery.Milliseconds()]
		out[i] = math.NaN()
		if ok {
			out[i] = p
		}
	}
	return out
}

// rpsNoise adds the noise of a rate over 2 minutes of Poisson counts.
func rpsNoise(r *rand.Rand, lambda float64) float64 {
	c := lambda * 120
	return max(0, c+math.Sqrt(c)*r.NormFloat64()) / 120
}

// morning is a web service's request rate at hour-of-day hd: 100/s at
// night, a ramp 07:00-08:00 to 600/s, a plateau, a decline 17:00-20:00.
func morning(hd float64) float64 {
	switch {
	case hd < 7:
		return 100
	case hd < 8:
		return 100 + 500*(hd-7)
	case hd < 17:
		return 600
	case hd < 20:
		return 600 - 500*(hd-17)/3
	}
	return 100
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func b2f(c bool) float64 {
	if c {
		return 1
	}
	return 0
}

// BenchmarkScaling measures the forecasts at the events predictive
// scaling and capacity alerts depend on, fed sample by sample through a
// live series (the predictive-scaling component's horizons, samples
// scaleEvery apart, no lookahead): a morning ramp against the current
// value a plain HPA scales on, a level shift, a linear trend against
// predict_linear, gaps and a drop to 0. It logs the figures, asserts
// nothing.
func BenchmarkScaling(b *testing.B) {
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
	per := int(time.Hour / scaleEvery)
	hour := func(i int) float64 { return float64(i) / float64(per) }
	const days = 5
	n := days * 24 * per
	for range b.N {
		// Ramp: the 15m forecast made at t against the actual at t+15m,
		// and the naive current value; targets before (05:00-07:00), on
		// (07:00-08:15) and after (08:15-10:15) the ramp, days 2-5.
		{
			r := rand.New(rand.NewPCG(1, 2))
			v := make([]float64, n)
			for i := range v {
				v[i] = rpsNoise(r, morning(math.Mod(hour(i), 24)))
			}
			out := scaleRun(b, t0, v)
			h := 1
			k := int(scaleHorizons[h] / scaleEvery)
			type acc struct{ fc, naive, kmax, up, bias, under, n float64 }
			var seg [3]acc
			for i := 24 * per; i+k < n; i++ {
				hd := math.Mod(hour(i+k), 24)
				s := -1
				switch {
				case hd >= 5 && hd < 7:
					s = 0
				case hd >= 7 && hd < 8.25:
					s = 1
				case hd >= 8.25 && hd < 10.25:
					s = 2
				}
				f := out.yhat[h][i]
				if s < 0 || math.IsNaN(f) {
					continue
				}
				a := v[i+k]
				seg[s].fc += math.Abs(f - a)
				seg[s].naive += math.Abs(v[i] - a)
				seg[s].kmax += math.Abs(max(f, v[i]) - a)
				seg[s].bias += f - a
				if a > out.hi[h][i] {
					seg[s].up++
				}
				if f < 0.9*a {
					seg[s].under++
				}
				seg[s].n++
			}
			for s, name := range []string{"before", "ramp", "after"} {
				a := seg[s]
				b.Logf("ramp %-6s n=%4.0f MAE forecast15m %6.1f naive %6.1f max(fc,cur) %6.1f bias %+6.1f actual>upper %4.1f%% fc<0.9·actual %4.1f%%",
					name, a.n, a.fc/a.n, a.naive/a.n, a.kmax/a.n, a.bias/a.n, 100*a.up/a.n, 100*a.under/a.n)
			}
		}
		// Level shift: 200/s, ×2 from day 2 12:00 on, at 8 phases of the
		// forecaster's 64-step refit cycle (a shift 0, 4, ... 28 minutes
		// after 12:00): minutes until the forecast is within 10% of 400,
		// until its band's upper end reaches 400, the worst and the mean
		// over the phases.
		{
			var follow, upper [3][]float64
			for off := 0; off < 64; off += 8 {
				r := rand.New(rand.NewPCG(3, 4))
				at := 24*per + 12*per + off
				v := make([]float64, at+3*per)
				for i := range v {
					l := 200.0
					if i >= at {
						l = 400
					}
					v[i] = rpsNoise(r, l)
				}
				out := scaleRun(b, t0, v)
				for h := range scaleHorizons {
					f, u := math.NaN(), math.NaN()
					for i := at; i < len(v); i++ {
						if math.IsNaN(f) && math.Abs(out.yhat[h][i]-400) < 40 {
							f = float64(i-at) * scaleEvery.Minutes()
						}
						if math.IsNaN(u) && out.hi[h][i] >= 400 {
							u = float64(i-at) * scaleEvery.Minutes()
						}
					}
					follow[h], upper[h] = append(follow[h], f), append(upper[h], u)
				}
			}
			for h, hd := range scaleHorizons {
				b.Logf("shift x2 %s: forecast within 10%% after %.1f min (worst %.1f), upper reaches the new level after %.1f min (worst %.1f)",
					hd, mean(follow[h]), slices.Max(follow[h]), mean(upper[h]), slices.Max(upper[h]))
			}
		}
		// Trend: a disk filling 1%/h from 10%, days 2-3 scored.
		{
			r := rand.New(rand.NewPCG(5, 6))
			m := 3 * 24 * per
			v := make([]float64, m)
			for i := range v {
				v[i] = 10 + hour(i) + 0.05*r.NormFloat64()
			}
			out := scaleRun(b, t0, v)
			pl := scalePredictLinear(b, t0, v, time.Hour, 30*time.Minute)
			h := 2
			k := int(scaleHorizons[h] / scaleEvery)
			var fe, fb, pe, pb, nn float64
			for i := 24 * per; i+k < m; i++ {
				f := out.yhat[h][i]
				if math.IsNaN(f) || math.IsNaN(pl[i]) {
					continue
				}
				a := v[i+k]
				fe += math.Abs(f - a)
				fb += f - a
				pe += math.Abs(pl[i] - a)
				pb += pl[i] - a
				nn++
			}
			b.Logf("trend 1%%/h 30m: omen MAE %.3f bias %+.3f (slope seen %.2f%%/h); predict_linear(x[1h],1800) MAE %.3f bias %+.3f",
				fe/nn, fb/nn, 2*(0.5+fb/nn), pe/nn, pb/nn)
		}
		// Gaps of 1h: over the morning ramp (06:30-07:30), and across a
		// level change (200/s before, 400/s after); then the traffic gone
		// at 21:00 on days 4-5. The first forecasts after the gaps, and any
		// NaN, Inf or negative forecast or lower bound.
		for _, gc := range []struct {
			name  string
			start float64 // hour of day 3
			level func(hd float64) float64
		}{
			{"over the ramp", 6.5, morning},
			{"200 to 400", 12, func(hd float64) float64 { return 200 + 200*b2f(hd >= 12.5) }},
		} {
			r := rand.New(rand.NewPCG(7, 8))
			v := make([]float64, n)
			gap := 2*24*per + int(gc.start*float64(per))
			for i := range v {
				hd := math.Mod(hour(i), 24)
				l := gc.level(hd)
				if i >= 3*24*per && hd >= 20 {
					l = math.Max(0, 100-100*(hd-20)) // traffic gone at 21:00
				}
				v[i] = rpsNoise(r, l)
				if i >= gap && i < gap+per {
					v[i] = math.NaN()
				}
			}
			out := scaleRun(b, t0, v)
			for h, hd := range scaleHorizons {
				k := int(hd / scaleEvery)
				first := -1
				bad, neg, negLo := 0, 0, 0
				for i := range v {
					f := out.yhat[h][i]
					if first < 0 && i >= gap+per && !math.IsNaN(f) {
						first = i
					}
					if math.IsInf(f, 0) || (i >= 24*per && !math.IsNaN(v[i]) && math.IsNaN(f)) {
						bad++
					}
					if f < 0 {
						neg++
					}
					if out.lo[h][i] < 0 {
						negLo++
					}
				}
				b.Logf("gap %s %s: first forecast %.1f min after: %.1f [%.1f, %.1f] (value then %.1f, at its target %.1f); NaN/Inf %d, negative forecasts %d, lower < 0 %d",
					gc.name, hd, float64(first-gap-per)*scaleEvery.Minutes(), out.yhat[h][first], out.lo[h][first], out.hi[h][first], v[first], v[first+k], bad, neg, negLo)
			}
		}
	}
}
