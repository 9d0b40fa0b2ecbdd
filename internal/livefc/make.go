package livefc

import (
	"time"

	"github.com/omen-sidecar/omen/forecast"
)

// Action is what a forecaster does with its forecasts at a sample (see
// Next).
type Action int

const (
	// Keep: the last forecasts stand.
	Keep Action = iota
	// Drop: no forecast stands (the model is not ready, or its latest
	// step is from long before).
	Drop
	// Make: forecasts are due (see Make).
	Make
)

// Next is what a forecaster whose model m has been fed (see Feed) the
// steps of rs up to the sample at t does with its forecasts there: stepped
// tells that the sample completed a step, made is the sample time of its
// last forecast (0: none yet), and everyMs the sample time between
// forecasts. The model fits at a forecast (see forecast.Model.Forecast),
// so this schedule is also the schedule of its refits.
func Next(m *forecast.Model, rs *Resampler, t, made, everyMs int64, stepped bool) Action {
	lastT, _, fed := m.Last()
	switch {
	case fed && t-lastT > 2*rs.Step():
		// The forecaster's latest point is from long before: the steps
		// since were none it could take (means beyond float64). A
		// forecast from it would be the old level stamped now.
		return Drop
	case !stepped && made != 0:
		return Keep // the forecaster has not moved: the last forecast stands
	case !m.Ready():
		return Drop
	case made != 0 && t-made+rs.Step()/2 < everyMs:
		// The last forecast stands until the next is due: at the step
		// nearest everyMs after it.
		return Keep
	}
	return Make
}

// Made is the forecasts a forecaster made at a sample (see MakeAt).
type Made struct {
	// Fc is the model's forecasts, Fc[j] j+1 steps of StepMs after its
	// latest point, whose value is Last, Lead before the sample: at the
	// steps At reads for the horizons MakeAt was given only (see
	// forecast.Model.ForecastSteps; the others' values are NaN).
	Fc           []forecast.Point
	Last         float64
	Lead, StepMs int64
}

// MakeAt makes the forecasts of m, fed by rs, at the sample at t for
// horizons, into dst with sc's buffers (see forecast.Model.ForecastSteps);
// ok is false if there is no step to forecast with, or every horizon is
// beyond the model's MaxHorizon. The forecasts are for the steps after the
// model's latest point, at lastT; a forecast made at t for horizon h is
// for t+h, Lead+h from that point (see Made.At). A step averaged from
// samples is stamped with its latest one but stands for their middle (see
// Resampler.Center). After a gap the model's latest point is from before
// it: the targets lie beyond the forecasts, and none is published until
// the model has caught up (the first forecast after a target came back was
// the extrapolation from before it, stamped now).
func MakeAt(m *forecast.Model, rs *Resampler, t int64, horizons []time.Duration, dst []forecast.Point, sc *forecast.Scratch) (Made, bool) {
	lastT, lastV, fed := m.Last()
	stepMs := m.Step()
	if stepMs <= 0 || !fed {
		return Made{Fc: dst}, false
	}
	lead := t - lastT + rs.Center()
	maxH := 0
	for _, h := range horizons {
		maxH = max(maxH, int((lead+h.Milliseconds()+stepMs-1)/stepMs))
	}
	maxH = min(maxH, m.Options().MaxHorizon) // horizons beyond are left out
	if maxH <= 0 {
		return Made{Fc: dst}, false
	}
	mk := Made{Last: lastV, Lead: lead, StepMs: stepMs}
	// Only the steps At reads are forecast, two around each horizon of the
	// 64 or so to the longest (see HorizonSteps): their exponentials and
	// logarithms were most of a forecast's cost, and the forecasts about a
	// sixth of a forecaster's (BenchmarkReplay, CPU profile).
	var buf [2 * maxReadHorizons]int
	steps := buf[:0]
	if len(horizons) <= maxReadHorizons {
		for _, h := range horizons {
			steps = appendReadSteps(steps, mk.stepsAhead(h), maxH)
		}
	} else {
		steps = nil // every step
	}
	mk.Fc = m.ForecastSteps(dst, maxH, steps, sc)
	return mk, true
}

// maxReadHorizons is the most horizons MakeAt gathers the read steps of
// on the stack (config.MaxForecastHorizons); with more, it forecasts every
// step.
const maxReadHorizons = 8

// At returns the forecast for h after the sample the forecasts were made
// at: between two steps (or the point and the first step), read between
// them, so a horizon is not rounded to a whole step (at 10-minute samples
// "5m" was 10 minutes ahead; with a 24h horizon, whose steps are 23
// minutes, "5m" had none and "15m" was "30m"). ok is false beyond the
// forecasts. The point's TsMillis is left to the caller.
func (mk Made) At(h time.Duration) (forecast.Point, bool) {
	return Between(mk.Fc, mk.Last, mk.stepsAhead(h))
}

// stepsAhead is how many steps after the model's latest point h after the
// sample is, as At reads it.
func (mk Made) stepsAhead(h time.Duration) float64 {
	return float64(mk.Lead+h.Milliseconds()) / float64(mk.StepMs)
}

// Point is At(h) for the forecasts made at the sample at t, stamped t+h,
// its band widened (see Band) by the within-step spread within and by the
// horizon's band floor, floorUnits (see Pending.FloorUnits) in units of
// BandRef(stepDif, stepMs, h); nonNeg keeps its lower end at or above 0.
func (mk Made) Point(t int64, h time.Duration, floorUnits, within float64, stepDif float32, stepMs int64, nonNeg bool) (forecast.Point, bool) {
	pt, ok := mk.At(h)
	if !ok {
		return pt, false
	}
	pt.TsMillis = t + h.Milliseconds()
	return Band(pt, within, floorUnits*BandRef(stepDif, stepMs, h), nonNeg), true
}
