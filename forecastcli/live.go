package forecastcli

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecast"
	"github.com/omen-sidecar/omen/internal/livefc"
)

// live is the forecasting a series gets in omen serve, fed a file's rows:
// its detector, whose scores clip what the forecaster learns, and the
// forecaster with the resampler, spreads, forecast schedule and band
// calibration of the pipeline's fcState (the model refits at a forecast,
// so the schedule is also that of its refits).
type live struct {
	det      *detect.Detector
	m        *forecast.Model
	rs       livefc.Resampler
	horizons []time.Duration
	everyMs  int64
	within   float64
	stepDif  float32
	made     int64 // the row of the last forecast, 0 if none
	t        int64 // the latest row with a value the forecaster takes
	seen     bool
	sc       forecast.Scratch
	fc       []forecast.Point
	// The forecasts pending their check against the rows at their
	// targets, which calibrates each horizon's band floor, and the latest
	// row with a value before this one (see livefc.Check).
	pend  []livefc.Pending
	prevT int64
	prevV float64
}

func newLive(cfg Config) (*live, error) {
	longest := cfg.longest()
	minStep := livefc.MinStep(longest)
	m, err := forecast.New(livefc.OptionsFor(minStep, longest))
	if err != nil {
		return nil, err
	}
	m.StaggerRefits(cfg.RefitPhase)
	det, err := detect.New(cfg.detect())
	if err != nil {
		return nil, err
	}
	return &live{
		det: det, m: m, rs: livefc.Resampler{MinStepMs: minStep}, horizons: cfg.Horizons, everyMs: cfg.every().Milliseconds(),
		pend: make([]livefc.Pending, len(cfg.Horizons)+livefc.ExtraSlots(cfg.Horizons)),
	}, nil
}

// update takes a row, in time order.
func (l *live) update(t int64, v float64) {
	r := l.det.Update(t, v)
	livefc.Check(l.pend, l.horizons, l.rs.Interval(), l.prevT, l.prevV, l.stepDif, l.rs.Step(), t, v, nil)
	if !detect.Measured(v) {
		return
	}
	l.prevT, l.prevV = t, v
	fv := livefc.Learnable(v, r)
	if !detect.Measured(fv) {
		return
	}
	l.t, l.seen = t, true
	pts, n := l.rs.Add(t, fv)
	for _, pt := range pts[:n] {
		livefc.Feed(l.m, pt, &l.within, &l.stepDif)
	}
	if livefc.Next(l.m, &l.rs, t, l.made, l.everyMs, n > 0) != livefc.Make {
		return
	}
	mk, ok := livefc.MakeAt(l.m, &l.rs, t, l.horizons, l.fc, &l.sc)
	l.fc = mk.Fc
	if !ok {
		return
	}
	l.made = t
	for i, h := range l.horizons {
		if pt, ok := l.point(mk, i, h); ok {
			livefc.Arm(l.pend, l.horizons, i, pt)
		}
	}
}

// point is horizon i's forecast, h, of mk made at the latest row.
func (l *live) point(mk livefc.Made, i int, h time.Duration) (forecast.Point, bool) {
	return mk.Point(l.t, h, l.pend[i].FloorUnits(), l.within, l.stepDif, l.rs.Step(), l.m.NonNegative())
}

// forecast returns the forecast for each of the horizons made at the
// latest row, as the pipeline's fcState.step makes it, in time order.
func (l *live) forecast() ([]forecast.Point, error) {
	lastT, _, fed := l.m.Last()
	switch {
	case !l.seen || !fed:
		return nil, errors.New("no value to forecast from")
	case !l.m.Ready():
		return nil, fmt.Errorf("%d usable steps (of at least %s each, rows faster than that averaged), need at least %d to forecast",
			l.m.Count(), time.Duration(l.rs.MinStepMs)*time.Millisecond, l.m.Options().MinSamples)
	case l.t-lastT > 2*l.rs.Step():
		// Live, no forecast stands: the latest step is from long before
		// (the steps since were means beyond float64).
		return nil, fmt.Errorf("the forecaster's latest step is %s before the last row", time.Duration(l.t-lastT)*time.Millisecond)
	}
	// At the last row, whether or not a forecast was due there live: made
	// there already, the model is fitted and forecasts the same again.
	mk, ok := livefc.MakeAt(l.m, &l.rs, l.t, l.horizons, l.fc, &l.sc)
	if !ok {
		return nil, errors.New("no step to forecast with")
	}
	out := make([]forecast.Point, 0, len(l.horizons))
	for i, h := range l.horizons {
		if pt, ok := l.point(mk, i, h); ok {
			out = append(out, pt) // none beyond the forecaster's MaxHorizon, as live
		}
	}
	if len(out) == 0 {
		return nil, errors.New("every horizon is beyond the forecaster's")
	}
	slices.SortFunc(out, func(a, b forecast.Point) int { return int(a.TsMillis - b.TsMillis) })
	return out, nil
}
