package pipeline

import (
	"math"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecast"
)

// forecastOptions are the forecaster settings of the live pipeline: shorter
// history and rarer refits than forecast's defaults bound memory (~6 KiB)
// and refit CPU per series.
func forecastOptions() forecast.Options {
	return forecast.Options{MaxHorizon: 128, History: 512, RefitEvery: 64, MinSamples: 288}
}

// published is what the collector and the API read of a series, under its
// worker's lock.
type published struct {
	t                         int64 // input sample timestamp, ms
	value                     float64
	score, yhat, lower, upper float64
	member, feature           string
	ready                     bool
	since                     int64 // ms timestamp the current run of scores > 1 began, 0 if none
	hasResult                 bool
}

// maxHorizons bounds the forecast horizons of a series.
const maxHorizons = 8

// fcState is the forecasting part of a series, allocated only for series
// within the forecast budget, so the others carry none of it.
type fcState struct {
	m        *forecast.Model
	horizons []time.Duration
	hname    []string // horizon label values
	// The last forecast per horizon: written under the worker's lock,
	// read by the collector under its read lock.
	pts   []forecast.Point
	ok    []bool
	made  int64 // sample time the forecast was made at, 0 if none yet
	isNew bool  // made at the latest sample: to be appended
	// Output series refs: 3 per horizon (forecast, lower, upper).
	outRef []storage.SeriesRef
	// Forecast accuracy: one pending forecast per horizon, checked when the
	// target time arrives (O(1) memory, a sampled but unbiased check).
	pend []pending
}

func newFcState(hs []time.Duration, names []string) *fcState {
	m, err := forecast.New(forecastOptions())
	if err != nil {
		return nil // forecastOptions are constant and valid; a failure is a bug caught by the tests
	}
	n := len(hs)
	return &fcState{
		m: m, horizons: hs, hname: names,
		pts: make([]forecast.Point, n), ok: make([]bool, n),
		outRef: make([]storage.SeriesRef, 3*n), pend: make([]pending, n),
	}
}

// series is the state of one scored input. Only its worker writes it.
type series struct {
	ref     storage.SeriesRef
	name    string        // the `for` label
	in      labels.Labels // input labels, __name__ included
	base    labels.Labels // output labels without __name__: input minus __name__ plus for
	counter bool

	det *detect.Detector
	fc  *fcState // nil: no forecaster

	// Counter to rate conversion.
	prevRaw float64
	prevT   int64
	hasPrev bool

	lastSeen int64 // wall clock, unix ms

	// Output series refs in the TSDB (score, yhat, lower, upper), 0 until
	// known.
	outRef [4]storage.SeriesRef

	absDif float64 // EWMA of |Δy| between samples, the MASE scale
	nDif   int

	pub published
}

type pending struct {
	target       int64
	yhat, lo, hi float64
	active       bool
}

// rate turns a counter sample into a per-second rate, Prometheus's way:
// a decrease is a reset, counted from zero. ok is false for the first
// sample and for stale markers.
func (s *series) rate(t int64, v float64) (r float64, ok bool) {
	if value.IsStaleNaN(v) || math.IsNaN(v) {
		return 0, false
	}
	if !s.hasPrev || t <= s.prevT {
		if !s.hasPrev {
			s.prevRaw, s.prevT, s.hasPrev = v, t, true
		}
		return 0, false
	}
	d := v - s.prevRaw
	if d < 0 {
		d = v
	}
	r = d / (float64(t-s.prevT) / 1000)
	s.prevRaw, s.prevT = v, t
	return r, true
}

// detectOptions maps a config.Scoring onto detector options.
func detectOptions(sc config.Scoring) detect.Options {
	o := detect.DefaultOptions()
	if d, err := detect.ParseDirection(sc.Direction); err == nil {
		o.Direction = d
	}
	if sc.FalseAlarmRate > 0 && sc.FalseAlarmRate < 0.5 {
		o.FalseAlarmRate = sc.FalseAlarmRate
	}
	o.MinDeviationAbs, o.MinDeviationRel = sc.MinDeviationAbs, sc.MinDeviationRel
	return o
}

func horizonsOf(sc config.Scoring) ([]time.Duration, []string) {
	hs := sc.ForecastHorizons
	if len(hs) > maxHorizons {
		hs = hs[:maxHorizons]
	}
	d := make([]time.Duration, len(hs))
	n := make([]string, len(hs))
	for i, h := range hs {
		d[i], n[i] = time.Duration(h), model.Duration(h).String()
	}
	return d, n
}

// baseLabels returns in minus __name__ plus for=name.
func baseLabels(in labels.Labels, name string) labels.Labels {
	b := labels.NewBuilder(in)
	b.Del(labels.MetricName)
	b.Set("for", name)
	return b.Labels()
}

// outLabels returns the labels of the output family with an optional
// horizon.
func (s *series) outLabels(family, horizon string) labels.Labels {
	b := labels.NewBuilder(s.base)
	b.Set(labels.MetricName, family)
	if horizon != "" {
		b.Set("horizon", horizon)
	}
	return b.Labels()
}

// step scores one (already rate-converted) value and updates the
// forecaster and its accuracy. A new forecast is made when everyMs of
// sample time have passed since the last: the forecaster's O(h) forecast
// and its periodic refit are most of the per-sample cost, and a forecast a
// minute is what dashboards and capacity alerts use. buf is the worker's
// forecast scratch.
func (s *series) step(t int64, v float64, acc *accuracy, buf *[]forecast.Point, everyMs int64) {
	r := s.det.Update(t, v)
	p := &s.pub
	if s.pub.hasResult && !math.IsNaN(v) {
		d := math.Abs(v - p.value)
		s.nDif++
		a := max(1.0/float64(s.nDif), 1.0/256)
		s.absDif += a * (d - s.absDif)
	}
	p.t, p.value, p.hasResult = t, v, true
	p.score, p.yhat, p.lower, p.upper = r.Score, r.Yhat, r.YhatLower, r.YhatUpper
	p.member, p.feature, p.ready = r.Member, r.Feature, r.Ready
	if r.Score > 1 {
		if p.since == 0 {
			p.since = t
		}
	} else {
		p.since = 0
	}
	if s.fc != nil {
		s.fc.step(s, t, v, acc, buf, everyMs)
	}
}

func (f *fcState) step(s *series, t int64, v float64, acc *accuracy, buf *[]forecast.Point, everyMs int64) {
	f.m.Update(t, v)
	// Check pending forecasts whose target has come.
	for i := range f.horizons {
		pd := &f.pend[i]
		if pd.active && t >= pd.target && !math.IsNaN(v) {
			pd.active = false
			if acc != nil && s.absDif > 0 {
				acc.observe(s.name, f.hname[i], math.Abs(v-pd.yhat)/s.absDif, v >= pd.lo && v <= pd.hi, s.lastSeen)
			}
		}
	}
	f.isNew = false
	if !f.m.Ready() {
		clear(f.ok)
		return
	}
	if f.made != 0 && t-f.made < everyMs {
		return // the last forecast stands until the next is due
	}
	clear(f.ok)
	stepMs := f.m.Step()
	if stepMs <= 0 {
		return
	}
	maxH := 0
	for _, h := range f.horizons {
		maxH = max(maxH, int((h.Milliseconds()+stepMs/2)/stepMs))
	}
	maxH = min(maxH, forecastOptions().MaxHorizon)
	if maxH <= 0 {
		return
	}
	*buf = f.m.Forecast(*buf, maxH)
	pts := *buf
	f.made, f.isNew = t, true
	for i, h := range f.horizons {
		k := int((h.Milliseconds() + stepMs/2) / stepMs)
		if k < 1 || k > len(pts) {
			continue
		}
		f.pts[i], f.ok[i] = pts[k-1], true
		if pd := &f.pend[i]; !pd.active {
			*pd = pending{target: t + h.Milliseconds(), yhat: pts[k-1].Yhat, lo: pts[k-1].Lower, hi: pts[k-1].Upper, active: true}
		}
	}
}
