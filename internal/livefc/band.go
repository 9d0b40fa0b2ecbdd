package livefc

import (
	"math"
	"slices"
	"time"

	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecast"
)

// Learnable is the value the forecaster learns from at a sample: the
// sample itself or, where the detector scored it anomalous, the nearer end
// of the band the detector expected before it. One glitch (1e5 on a series
// near 100) otherwise ran through the forecaster's level and its
// validation errors: forecasts of 50 000 and intervals of ±5 000 for hours
// after, and capacity alerts firing on them. A lasting change scores above
// 1 at its start only (the detector takes it in), so the forecaster follows
// it from the next samples on.
func Learnable(v float64, r detect.Result) float64 {
	if r.Ready && r.Score > 1 && isFinite(r.YhatLower) && isFinite(r.YhatUpper) {
		return max(r.YhatLower, min(v, r.YhatUpper))
	}
	return v
}

// Between returns the forecast x steps after the model's latest point,
// whose value is last: fc[j] is j+1 steps after it, and a point between
// two is read on the line between them (from last, with no width, before
// the first step). ok is false beyond the forecasts.
func Between(fc []forecast.Point, last float64, x float64) (forecast.Point, bool) {
	if !(x > 0) || x > float64(len(fc)) {
		return forecast.Point{}, false
	}
	j := int(x) // fc[j-1] is at j steps
	frac := x - float64(j)
	if frac == 0 {
		return fc[j-1], true
	}
	a := forecast.Point{Yhat: last, Lower: last, Upper: last}
	if j > 0 {
		a = fc[j-1]
	}
	b := fc[j]
	lerp := func(u, v float64) float64 { return u + frac*(v-u) }
	return forecast.Point{Yhat: lerp(a.Yhat, b.Yhat), Lower: lerp(a.Lower, b.Lower), Upper: lerp(a.Upper, b.Upper)}, true
}

// appendReadSteps adds to steps, ascending and without repeats, the
// indices of fc that Between(fc, last, x) reads for len(fc) n, and returns
// it.
func appendReadSteps(steps []int, x float64, n int) []int {
	if !(x > 0) || x > float64(n) {
		return steps
	}
	j := int(x)
	if j > 0 {
		steps = insertStep(steps, j-1)
	}
	if x-float64(j) != 0 {
		steps = insertStep(steps, j)
	}
	return steps
}

// insertStep inserts k into the ascending steps unless it is there.
func insertStep(steps []int, k int) []int {
	i, found := slices.BinarySearch(steps, k)
	if found {
		return steps
	}
	return slices.Insert(steps, i, k)
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// BandZ is the standard normal quantile of the forecast interval's upper
// end: the within-step spread is added to it as a normal one.
var BandZ = math.Sqrt2 * math.Erfinv(Options().Coverage)

// Widen grows each side of p's band in quadrature by the root of w, the
// square of what the forecaster's band leaves out: BandZ² times the mean
// square of a raw sample's deviation within its step (the pipeline's fcState.within: the
// forecaster forecasts step means, users compare raw samples; 0 with one
// sample a step), plus the square of the horizon's calibrated floor (see
// Pending.Calibrate). With w 0 p is as given. The lower end of a
// non-negative series' band (nonNeg, see forecast.Model.NonNegative)
// stays at or above 0.
func Widen(p forecast.Point, w float64, nonNeg bool) forecast.Point {
	if !(w > 0) || math.IsInf(w, 1) {
		return p
	}
	lo, hi := p.Yhat-p.Lower, p.Upper-p.Yhat
	p.Lower = p.Yhat - math.Sqrt(lo*lo+w)
	p.Upper = p.Yhat + math.Sqrt(hi*hi+w)
	if nonNeg {
		p.Lower = max(p.Lower, 0)
	}
	return p
}

// StepDifAlpha is the weight of a step's |Δ| in the EWMA that is the unit
// of the bands' floors (see Feed and BandRef).
const StepDifAlpha = 1.0 / 64

// FloorMin is the lowest band floor, in units of BandRef: the floor of a
// horizon whose band checks have not raised it (the pipeline calibrates it
// on forecasts checked against the samples that came at their targets).
const FloorMin = 1.0 / 64

// Feed feeds the step pt to m, and updates within, the EWMA of the
// input's mean squared deviation about its step's mean (the forecaster
// forecasts step means, and its bands are widened by this spread so that
// they are for the raw samples users compare them with; 0 while each step
// is one sample), and stepDif, the EWMA of |Δ| between consecutive steps
// (the unit of the bands' floors, see BandRef).
func Feed(m *forecast.Model, pt Point, within *float64, stepDif *float32) {
	if _, lv, ok := m.Last(); ok {
		// The steps are of learnable values, so a glitch the
		// detector caught does not blow the unit up: the series'
		// absDif took 1/256 of a 1e5 glitch on a series near 100.
		if d := math.Abs(pt.V - lv); d < math.MaxFloat32 {
			*stepDif += float32(StepDifAlpha * (d - float64(*stepDif)))
		}
	}
	m.Update(pt.T, pt.V)
	if pt.N >= 2 && isFinite(pt.MSD) {
		// Values far apart within a step (1e300 beside 100) square
		// to +Inf; a NaN spread made every band NaN for good.
		if !isFinite(*within) {
			*within = 0
		}
		*within += WithinAlpha * (pt.MSD - *within)
	}
}

// BandRef is the unit of horizon h's band floor: stepDif, the mean |Δ|
// between the forecaster's steps of stepMs, times the root of the steps h
// spans, the spread a random walk with those steps reaches in h. 0 while
// either is unknown (or the series has not moved): no floor.
func BandRef(stepDif float32, stepMs int64, h time.Duration) float64 {
	if stepMs <= 0 || !(stepDif > 0) {
		return 0
	}
	return float64(stepDif) * math.Sqrt(float64(h.Milliseconds())/float64(stepMs))
}

// Band widens p's band (see Widen) by the within-step spread within (its
// mean square, see Feed) as a normal spread at BandZ, and by floor, the
// horizon's band floor in the series' units (at least FloorMin·BandRef).
func Band(p forecast.Point, within, floor float64, nonNeg bool) forecast.Point {
	return Widen(p, BandZ*BandZ*within+floor*floor, nonNeg)
}
