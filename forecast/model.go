package forecast

import (
	"fmt"
	"math"
)

// Point is one forecast step: the point forecast Yhat and the prediction
// interval [Lower, Upper] at the model's coverage, for the time TsMillis.
type Point struct {
	TsMillis           int64
	Yhat, Lower, Upper float64
}

// Model forecasts one series. It keeps the last History samples and a
// per-series ensemble of Holt-Winters, Theta, Fourier regression and
// seasonal naive models, chosen and weighted by rolling-origin validation
// on the series' own history, with conformal prediction intervals.
//
// Update is O(1) and allocation-free: it stores the sample and advances
// the fitted models by their recursions. Every RefitEvery samples the next
// Forecast re-detects the seasons (a full window found without any: every
// seasonRedetect fits), re-fits and re-validates the models on the kept
// history (O(History) work, amortised over RefitEvery samples);
// other Forecasts are O(h) and allocation-free.
//
// A Model is not safe for concurrent use.
type Model struct {
	opts Options

	// hist holds the last History+RefitEvery raw values, 4 bytes each (see
	// history), so that the window of the last fit can always be rebuilt
	// (see UnmarshalBinary).
	hist history

	n        uint64 // values accepted since New, including gap fills
	lastTs   int64
	steps    stepEstimator
	sinceFit int // values since the last fit

	// warm is what the next fit's Holt-Winters candidates start from;
	// warmIn what the last fit's started from, kept so that
	// UnmarshalBinary can repeat that fit exactly.
	warm, warmIn []warmStart

	ens *ensemble // nil if the last fit found nothing to fit
	// The flags together, in one word (see stepEstimator).
	fitted   bool
	logScale bool
	// nonNeg: no value since the start of the last fit's window was
	// negative (true of every log-scale fit). Forecasts are then kept at or
	// above 0: a latency, a ratio or a rate whose interval reaches below 0
	// draws a band no value can fill, and a capacity alert on
	// forecast_lower < 0 could never mean anything.
	nonNeg bool
	// phase is how many values early the refit after a first fit comes
	// (see StaggerRefits); beside the flags, it costs the Model no bytes.
	phase int32
	// seasons are the seasons of the last fit, detected on a full window
	// seasonAge fits ago counting that one (0: on a window still filling
	// up, or no fit yet; see fitAt and seasonRedetect).
	seasons   []int
	seasonAge int
}

// seasonRedetect is how many fits of a full window share one season
// detection that found none: a series without a season (a counter's rate
// that is noise about a level, as omen loadgen's 7 counter families are)
// rarely gains one within the 3×RefitEvery samples before the next
// detection, and the detection (three FFTs of the window) was 11% of such
// a series' refit (BenchmarkRefit shape=rate, CPU time, median of 6). A
// season that appears is seen at most 3×RefitEvery samples late (an hour
// and a half at omen serve's 30 s steps). Seasons found are detected again
// at every fit: kept too, they saved 19% of a random walk's refit (its
// spurious seasons), but moved the streaming M4 replay's sMAPE
// (BenchmarkM4HourlyStreaming, refit=64) from 10.42 to 10.45.
const seasonRedetect = 4

// New returns an empty Model. Zero fields of opts take their defaults.
func New(opts Options) (*Model, error) {
	if err := opts.fill(); err != nil {
		return nil, fmt.Errorf("forecast options: %w", err)
	}
	return &Model{
		opts: opts,
		hist: newHistory(opts.History + opts.RefitEvery),
	}, nil
}

// StaggerRefits makes the refit after a first fit come phase values early
// (phase modulo RefitEvery; the refits after it stay RefitEvery apart).
// Models that start together, as every series of a new deployment warmed
// from the same hours of history does, otherwise refit at the same sample,
// all of them every RefitEvery samples: omen's 10 000 forecasters spent
// 6.7 CPU-s in one 15 s step and none in the 63 between. A phase taken
// from the series' identity spreads them evenly. A restored Model keeps
// its refit schedule; the phase applies to its next first fit.
func (m *Model) StaggerRefits(phase int) {
	m.phase = int32(phase % m.opts.RefitEvery)
	if m.phase < 0 {
		m.phase += int32(m.opts.RefitEvery)
	}
}

// Options returns the options in effect, defaults filled in.
func (m *Model) Options() Options { return m.opts }

// Update adds the sample v at time tsMillis. Samples must arrive in time
// order: one at or before the last accepted timestamp is ignored, as is a
// NaN or infinite value (Prometheus's staleness marker is a NaN). A gap of
// k > 1 inferred steps is filled by linear interpolation (at most History
// values), because every model here assumes evenly spaced samples.
func (m *Model) Update(tsMillis int64, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	if m.n > 0 {
		if tsMillis <= m.lastTs {
			return
		}
		d := tsMillis - m.lastTs
		if st := m.steps.step(); st > 0 && m.steps.n >= 3 && 2*d > 3*st {
			k := min((d+st/2)/st, int64(m.opts.History))
			last := m.last()
			for i := int64(1); i < k; i++ {
				m.push(last + (v-last)*float64(i)/float64(k))
			}
		}
		m.steps.add(d)
	}
	m.lastTs = tsMillis
	m.push(v)
}

func (m *Model) push(v float64) {
	// From here on the Model sees the value as stored, as a restored one
	// will (see history).
	v = m.hist.push(v)
	m.n++
	if !m.fitted {
		return
	}
	m.sinceFit++
	m.nonNeg = m.nonNeg && v >= 0
	if m.logScale && !(v > 0) {
		// The log scale no longer fits; the next Forecast refits.
		m.fitted, m.ens = false, nil
		return
	}
	if m.ens != nil {
		m.ens.update(m.fwd(v))
	}
}

func (m *Model) last() float64 { return m.hist.last }

// Last returns the time (Unix ms) and value of the latest sample taken, the
// point the forecasts start from, as the Model holds it (see history: within
// a float32 rounding of its change from the sample before); ok is false
// before any.
func (m *Model) Last() (tsMillis int64, v float64, ok bool) {
	if m.n == 0 {
		return 0, 0, false
	}
	return m.lastTs, m.last(), true
}

// Count returns the number of values held (at most History+RefitEvery),
// gap fills included.
func (m *Model) Count() int { return m.hist.count }

// Ready reports whether the model has seen MinSamples samples.
func (m *Model) Ready() bool { return m.hist.count >= m.opts.MinSamples }

// Step returns the inferred sampling interval in milliseconds, 0 before two
// samples.
func (m *Model) Step() int64 { return m.steps.step() }

// Seasons returns the seasons, in samples, of the last fit.
func (m *Model) Seasons() []int { return m.seasons }

// Scratch lends ForecastWith and ForecastSteps their temporary buffers.
// Its zero value is ready for use; it is not safe for concurrent use, and
// holds nothing between calls that a caller could see.
type Scratch struct{ fs fitScratch }

// Forecast appends to dst[:0] the forecasts for the h steps after the last
// sample and returns it; h is capped at MaxHorizon. It returns dst[:0]
// before the model is Ready. Its temporary buffers come from a pool; a
// caller that forecasts on one goroutine over and over (omen's scorers)
// keeps a Scratch and calls ForecastWith, which allocates nothing between
// refits even right after a garbage collection emptied the pool.
func (m *Model) Forecast(dst []Point, h int) []Point {
	sc := getFitScratch()
	defer putFitScratch(sc)
	return m.forecast(dst, h, nil, sc)
}

// ForecastWith is Forecast with its temporary buffers from sc.
func (m *Model) ForecastWith(dst []Point, h int, sc *Scratch) []Point {
	defer sc.fs.reset()
	return m.forecast(dst, h, nil, &sc.fs)
}

// ForecastSteps is ForecastWith for a caller that reads a few of the
// steps: dst[i] is ForecastWith's, bit for bit, for each i in steps
// (0-based: i+1 steps ahead; ascending, without repeats; those at or
// beyond the h returned are left out). The other steps hold their time
// and values not to be read: NaN (the last value, if nothing could be
// fitted). It returns as many Points as ForecastWith. Its exponentials
// and logarithms, most of a forecast's cost, are taken at steps only (see
// ensemble.forecastSteps). With steps nil, or not ascending, it is
// ForecastWith.
func (m *Model) ForecastSteps(dst []Point, h int, steps []int, sc *Scratch) []Point {
	defer sc.fs.reset()
	h = min(h, m.opts.MaxHorizon)
	for len(steps) > 0 && steps[len(steps)-1] >= h {
		steps = steps[:len(steps)-1]
	}
	for i, k := range steps {
		if k < 0 || i > 0 && k <= steps[i-1] {
			steps = nil // not as documented: every step
			break
		}
	}
	return m.forecast(dst, h, steps, &sc.fs)
}

// forecast is ForecastWith, at steps only if not nil (see ForecastSteps:
// ascending, without repeats, below h).
func (m *Model) forecast(dst []Point, h int, steps []int, sc *fitScratch) []Point {
	dst = dst[:0]
	h = min(h, m.opts.MaxHorizon)
	if !m.Ready() || h <= 0 {
		return dst
	}
	if !m.fitted || m.sinceFit >= m.opts.RefitEvery {
		first := !m.fitted
		m.fitAt(min(m.hist.count, m.opts.History), 0)
		if first {
			m.sinceFit += int(m.phase)
		}
	}
	st := m.Step()
	if m.ens == nil {
		// Nothing could be fitted (a constant series, say): carry the last
		// value forward with a zero-width interval.
		v := m.last()
		for i := range h {
			dst = append(dst, Point{TsMillis: m.lastTs + int64(i+1)*st, Yhat: v, Lower: v, Upper: v})
		}
		return dst
	}
	floor := math.Inf(-1)
	if m.nonNeg {
		floor = 0
	}
	if steps != nil {
		return m.forecastSteps(dst, h, steps, floor, sc)
	}
	// The combined forecast and the components' go in the caller's
	// scratch, not in buffers of the Model's own: a Model lives as long
	// as its series, and two MaxHorizon-long buffers held for the
	// microseconds a Forecast takes were 1 280 B of each of the
	// pipeline's forecast series (TestModelHeldBytes).
	fc := sc.floats(h)
	m.ens.forecast(fc, sc)
	// The interval's ends, in a pass of their own: converting the
	// float32 offsets inside the loop below made a 48-step forecast 0.6 µs
	// (17%) dearer (BenchmarkForecast's CPU time), not so.
	lo, hi := sc.floats(h), sc.floats(h)
	elo, ehi := m.ens.lo(), m.ens.hi()
	for i, f := range fc {
		lo[i], hi[i] = f+float64(elo[i]), f+float64(ehi[i])
	}
	for i, f := range fc {
		dst = append(dst, m.point(i, st, f, lo[i], hi[i], floor))
	}
	return dst
}

// point is the forecast i+1 steps of st after the last sample: the
// combined forecast f, the interval's ends lo and hi, on the transformed
// scale, kept at or above floor.
func (m *Model) point(i int, st int64, f, lo, hi, floor float64) Point {
	return Point{
		TsMillis: m.lastTs + int64(i+1)*st,
		Yhat:     max(m.inv(f), floor),
		Lower:    max(m.invBound(lo, -1), floor),
		Upper:    max(m.invBound(hi, 1), floor),
	}
}

// forecastSteps is forecast by the fitted ensemble at steps (see
// ForecastSteps), the other steps NaN: the ensemble's forecast runs to
// the last of them only.
func (m *Model) forecastSteps(dst []Point, h int, steps []int, floor float64, sc *fitScratch) []Point {
	st := m.Step()
	nan := math.NaN()
	for i := range h {
		dst = append(dst, Point{TsMillis: m.lastTs + int64(i+1)*st, Yhat: nan, Lower: nan, Upper: nan})
	}
	if len(steps) == 0 {
		return dst
	}
	fc := sc.floats(steps[len(steps)-1] + 1)
	m.ens.forecastSteps(fc, steps, sc)
	elo, ehi := m.ens.lo(), m.ens.hi()
	for _, i := range steps {
		f := fc[i]
		dst[i] = m.point(i, st, f, f+float64(elo[i]), f+float64(ehi[i]), floor)
	}
	return dst
}

// NonNegative reports whether the forecasts are kept at or above 0: no
// value since the start of the last fit's window was negative.
func (m *Model) NonNegative() bool { return m.nonNeg }

// invBound is inv for an end of the interval (side -1 the lower, +1 the
// upper), moved outwards by the rounding of the log scale's round trip:
// exp(log(c)) is not c for most c (2.9999999999999996 for 3,
// 999999999999998.75 for 1e15), so the zero-width interval of a constant
// series (a replica count, a limit) excluded the value itself, its
// coverage was 0 and OmenForecastIntervalsMiscalibrated fired. exp turns
// the argument's absolute error, a few ulps of |x|, into a relative one;
// the bound moves by four times that, far below any real interval's width.
func (m *Model) invBound(x float64, side float64) float64 {
	if !m.logScale {
		return x
	}
	return math.Exp(x) * (1 + side*4*epsilon*(math.Abs(x)+1))
}

// epsilon is float64's machine epsilon, 2^-52.
const epsilon = 0x1p-52

// fitAt fits on the k values that end skip values before the newest, then
// replays the skipped ones.
func (m *Model) fitAt(k, skip int) {
	sc := getFitScratch()
	defer putFitScratch(sc)
	all := m.hist.window(sc.floats(k+skip), k+skip)
	y := all[:k]
	m.logScale, m.nonNeg = true, true
	for _, v := range y {
		m.logScale = m.logScale && v > 0
		m.nonNeg = m.nonNeg && v >= 0
	}
	t := sc.floats(k)
	for i, v := range y {
		t[i] = m.fwd(v)
	}
	// A window still filling up (k short of History) is detected every
	// time, and what it found is not kept (age 0): its longest possible
	// season (half the window, and three cycles for a second season) grows
	// with it.
	switch {
	case k < m.opts.History:
		m.seasons, m.seasonAge = detectSeasons(t, m.opts.MaxPeriod, sc), 0
	case len(m.seasons) == 0 && m.seasonAge > 0 && m.seasonAge < seasonRedetect:
		m.seasonAge++
	default:
		m.seasons, m.seasonAge = detectSeasons(t, m.opts.MaxPeriod, sc), 1
	}
	m.warmIn = m.warm
	m.ens, m.warm = fitEnsemble(t, m.seasons, m.logScale, m.opts.MaxHorizon, m.opts.Coverage, defaultCombiner, m.warmIn, m.ens, sc)
	m.fitted, m.sinceFit = true, 0
	for _, v := range all[k:] {
		m.sinceFit++
		m.nonNeg = m.nonNeg && v >= 0
		if m.ens != nil {
			m.ens.update(m.fwd(v))
		}
	}
}

// fwd and inv map values to and from the scale the models work on: the
// logarithm when every value in the fitted window is positive (seasonal
// swings of traffic scale with its level, so they are additive on the log
// scale), the values themselves otherwise.
func (m *Model) fwd(v float64) float64 {
	if m.logScale {
		return math.Log(v)
	}
	return v
}

func (m *Model) inv(v float64) float64 {
	if m.logScale {
		return math.Exp(v)
	}
	return v
}
