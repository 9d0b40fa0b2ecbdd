package detect

import (
	"fmt"
	"math"
)

// member indices, in the order of the Member* flags.
const (
	mLevel = iota
	mSeasonal
	mLag
	mShift
	mVariance
	mSpectral
	mForest
	mRange
	mLong
	mNovelty
	mFlat
	nMembers
)

// memberNames and featureNames explain a score; static so that Update does
// not allocate.
var (
	memberNames  = [nMembers]string{"level", "seasonal", "lag", "shift", "variance", "spectral", "forest", "range", "long", "novelty", "flat"}
	featureNames = [nMembers]string{"value", "value_season_ago", "value_prev", "mean_short", "std_short", "saliency", "feature_vector", "value_range", "value_long_season_ago", "recent_context", "value_repeats"}
)

// FeatureOf returns the feature a score driven by the member named member
// is explained with ("" for none of the detector's members).
func FeatureOf(member string) string {
	for i, m := range memberNames {
		if m == member {
			return featureNames[i]
		}
	}
	return ""
}

const (
	recentLen   = 28   // recent raw samples kept: the spectral residual's window and the short window
	srWin       = 27   // spectral residual window: with its 5-point extension, a 32-point FFT
	srEvery     = 4    // samples between spectral residual transforms
	rangeForget = 1e-4 // per-sample pull of the range ends towards the level
	rangeMode   = 0
	otherK      = 1.0
	rangeBase   = 0.8
	rangeMin    = 0.01
	shortWin    = 16   // rolling window for the short-term mean and spread
	levelSpan   = 4096 // time constant of the level and scales, samples
	tailSpan    = 8192 // time constant of the calibration, samples
	shiftAlpha  = 0.25 // EWMA weight of the short-term mean
	refractDamp = 0.25 // factor on scores inside the refractory period
	// refractEscape: inside the refractory period a score this many times
	// the one that opened it still alerts (on NAB: 1.2 → 69.21, 1.5 →
	// 69.50, 1.7 → 68.78, never → 68.85 standard).
	refractEscape = 1.5
	// refractHold and refractHoldLen: inside the refractory period a
	// score above refractHold (before damping) means the event is still
	// going on, and the period is extended to at least refractHoldLen more
	// samples, so an event that outlasts the period does not alert again
	// as soon as the period ends. On NAB (standard / low FP; without:
	// 74.14 / 67.48, 142 false-positive rows), replaying the combination
	// from the members' recorded scores: refractHold 0.8 with 10 / 30 / 60
	// samples gave 74.49 / 68.22 each (134 rows); 0.5 / 0.6 / 0.65 / 0.7
	// with 10 samples 74.49 / 68.22, with 30 samples 73.69 / 67.41 (one
	// window lost); 0.9 / 0.95 with 10 / 30 / 60 samples 74.45 / 68.12.
	refractHold    = 0.8
	refractHoldLen = 10
	// longEWMA is the weight of the EWMA of the long-season residual (in
	// units of its scale): the long member flags a deviation that lasts a
	// few samples (a holiday, a missing weekday peak), not a single noisy
	// sample, which the other members judge already.
	longEWMA  = 0.25
	slowAlpha = 0.02 // weight of the shift member's slow EWMA
	slowMix   = 0.4  // discount on the slow EWMA's z, see features
	// reanchorK and reanchorLen: once the short-term mean has stayed more
	// than reanchorK level standard deviations from the level for
	// reanchorLen samples in a row, the level (and the shift member's slow
	// EWMA) jump to the short-term mean. The level's Huber-clipped update
	// moves at most 4·S/levelSpan per sample, so after a step it would
	// take thousands of samples to catch up; meanwhile the shift and level
	// members stay far from their baseline, their quantile and record
	// inflate, and the next anomaly on the new level goes unseen. On NAB
	// (standard / low FP / low FN; without: 71.75 / 65.09 / 75.70), at
	// reanchorLen 30: K 3 / 3.5 / 4 / 4.5 / 5 / 6 gave 73.01 / 74.01 /
	// 74.05 / 74.14 / 74.09 / 73.25 standard (low FP 66.12 – 67.48); at
	// K 4.5: reanchorLen 20 / 25 / 30 / 40 / 50 gave 72.61 / 71.65 / 74.14 /
	// 72.38 / 72.63. The optimum is jagged (the windows that come and go
	// are anomalies on the level a step left behind): over the 30 pairs
	// K 3 – 6 × reanchorLen 20 – 50 standard averages 72.66 (71.37 –
	// 74.14) and low FP 66.02. Moving the level without the slow EWMA
	// (K 4, 30 samples: 73.30 / 66.69), or to the mean of the samples since
	// the run started instead of the short-term mean (K 4, 30: 73.17 /
	// 66.93), did worse.
	reanchorK   = 4.5
	reanchorLen = 30
	// shortGapMs: a gap shorter than this (a seasonal bucket's time, 17
	// minutes) is short; see Detector.update.
	shortGapMs = seasonSpanMs / seasonLen
)

// winMul scales each member's record window (√n/budget samples) by how
// its statistic behaves on real data. The level residual is the raw
// value's distance from the level, with the heavy tails of bursts, and
// breaks short records often: its window is three times longer. The shift
// statistic is an EWMA, lighter-tailed and smooth, whose records are rare
// and mostly real level shifts: its window is about a third. The product
// keeps the false-alarm rate near the budget (TestCalibration). On NAB
// (standard; 69.50 with all at 1): level ×1.5 / 2 / 3 gave 70.36 / 70.39 /
// 70.75 with shift ×0.5; shift ×0.35 / 0.5 / 0.7 gave 70.80 / 70.39 / 69.04
// with level ×2; with level ×3, shift ×0.2 / 0.25 / 0.35 gave 68.97 / 70.63
// / 71.16, and level ×4 / 6 with shift ×0.35 71.16 / 71.07. Seasonal, range
// and long are best at 1 (×0.5 / ×2: 70.84 / 70.29, 70.53 / 69.51, 71.18 /
// 71.16).
var winMul = [nMembers]float64{mLevel: 3, mSeasonal: 1, mLag: 1, mShift: 0.35, mVariance: 1, mSpectral: 1, mForest: 1, mRange: 1, mLong: 1, mNovelty: 1, mFlat: 1}

// minLogM is each member's floor of ln(M_N/z_q) (see Tail): how far above
// its usual spread a record must reach before it scores 1. The level
// residual's bursts need a little more margin (NAB standard: 0.35 / 0.5 /
// 0.7 / 1.0 gave 70.82 / 71.16 / 71.35 / 71.35); the others are best at the
// default (shift 0.35 / 0.7: 70.46 / 70.43; seasonal 71.06 / 70.78; range
// 71.11 / 70.69; long 71.02 / 70.71).
var minLogM = [nMembers]float64{mLevel: 0.7, mSeasonal: tailMinLog, mLag: tailMinLog, mShift: tailMinLog, mVariance: tailMinLog, mSpectral: tailMinLog, mForest: tailMinLog, mRange: tailMinLog, mLong: tailMinLog, mNovelty: tailMinLog, mFlat: tailMinLog}

// Scratch holds the buffers a Detector needs only while it computes: the
// FFT machinery of the period search and the spectral residual, and a
// table of e^minLog for the tails' floors. Detectors used from one
// goroutine may share one Scratch, which keeps per-series memory to the
// state proper. A Scratch is not safe for concurrent use.
type Scratch struct {
	seas    *Seasonality
	lin     []float64
	periods []Period
	sr      *SpectralResidual
	win     []float64
	// floorExp[k] is e^x for x the floor of ln(M_N/z_q) of a Tail whose
	// MinLog100 is k, as Threshold(1) computes it (see threshold1).
	floorExp [256]float64
	// bound are the option sets of the Detectors made with this Scratch,
	// each with it (see bind).
	bound []*binding
}

// binding is a Detector's options and the Scratch it borrows, shared by
// the Detectors that have both the same: one pointer per Detector for the
// two, where its Options by value were 80 bytes, and the pipeline's
// detectors mostly share one set. A binding is never written once made: a
// Detector given other options points to another (see SetOptions).
type binding struct {
	opts Options
	sc   *Scratch
}

// maxBound bounds Scratch.bound: the pipeline's detectors take their
// options from a handful of scoring rules, and a caller with more
// distinct sets than this gets a binding per Detector past it.
const maxBound = 64

// bind returns the binding of o to sc.
func (sc *Scratch) bind(o Options) *binding {
	for _, b := range sc.bound {
		if b.opts == o {
			return b
		}
	}
	b := &binding{opts: o, sc: sc}
	if len(sc.bound) < maxBound {
		sc.bound = append(sc.bound, b)
	}
	return b
}

// NewScratch returns buffers for Detectors.
func NewScratch() *Scratch {
	sc := &Scratch{
		seas:    NewSeasonality(seasonLen),
		lin:     make([]float64, seasonLen),
		periods: make([]Period, 0, 1),
		sr:      NewSpectralResidual(srWin),
		win:     make([]float64, srWin),
	}
	for k := range sc.floorExp {
		t := Tail{MinLog100: uint8(k)}
		sc.floorExp[k] = math.Exp(float64(t.minLog()))
	}
	return sc
}

// threshold1 returns t.Threshold(1), z_q·e^LogRange, the band's half-width
// in scales, which expect needs at every sample. A LogRange at its floor
// (on NAB, 38% of the samples whose band comes from a ready tail; on
// Gaussian noise, whose records rarely reach e^0.5 times the 98th
// percentile, nine in ten) is the same float32 for every Tail with that
// MinLog100, so its exponential is read from the table: the same float64
// math.Exp gives, without the call.
func (sc *Scratch) threshold1(t *Tail) float64 {
	if t.LogRange == t.minLog() {
		return float64(t.Zq) * sc.floorExp[t.MinLog100]
	}
	return t.Threshold(1)
}

// state is everything a Detector learns for the default members, in
// fixed-size fields so that it encodes with encoding/binary and its size is
// the per-series memory.
type state struct {
	Seen     uint64 // samples scored or learnt, NaNs and out-of-range excluded
	Level    Robust // location and scale of the value
	SeasStat Robust // of the residual against the seasonal baseline
	Fast     float64
	Prev     float64
	Season   season
	Tails    [nCore]Tail // calibration of the core members, by slot
	RefLeft  uint32
	RefPeak  float32 // the score that opened the refractory period
	Lo, Hi   float64 // range of the values seen
	Long     longSeason
	LongStat Robust // of the residual against the long-season baseline
	LongFast float64
	Slow     float64 // slow EWMA of the value, for the shift member
	Away     uint16  // samples in a row the short-term mean was reanchorK σ from the level, at most reanchorLen
	Repeats  uint16  // samples in a row equal to the one before (see flat.go)
	RunMax   uint16  // the longest run of Repeats that ended, forgetting
	RepeatP  uint16  // share of samples equal to the one before, in 1/flatPUnit
	Novel    novelty
}

// extraState is what only the opt-in members (lag, variance, spectral
// residual, Isolation Forest) learn. A Detector allocates it only when one
// of them is on, so the default set costs about half the memory per series.
type extraState struct {
	LagStat   Robust // of the first difference
	VarStat   Robust // of ln(short-window std / level std)
	SRStat    Robust // of the spectral residual statistic
	Recent    [recentLen]float32
	RecentN   uint16
	RecentPos uint16
	Short     Rolling
	Forest    Forest
	Tails     [nExtra]Tail // calibration of the opt-in members, by slot
}

// Core members keep their calibration in state, the others in extraState;
// slot maps a member to its index in either Tails array.
const (
	nCore      = 6
	nExtra     = 4
	extraFlags = MemberLag | MemberVariance | MemberSpectral | MemberForest
)

var slot = [nMembers]int{mLevel: 0, mSeasonal: 1, mShift: 2, mRange: 3, mLong: 4, mNovelty: 5, mLag: 0, mVariance: 1, mSpectral: 2, mForest: 3}

// tail returns member m's calibration; m must be on (or core) and not the
// flat member, which has none (see flat.go).
func (d *Detector) tail(m int) *Tail {
	if extraFlags&(1<<m) != 0 {
		return &d.ex.Tails[slot[m]]
	}
	return &d.st.Tails[slot[m]]
}

// Detector scores one series. It is not safe for concurrent use.
//
// The pipeline embeds one per scored series, so its size is the series'
// memory: what it needs only within one Update (see carry) is not kept
// here, and its options and Scratch are shared (see binding).
type Detector struct {
	b  *binding
	st state
	ex *extraState // nil unless an opt-in member is on
}

// carry is what features computes for learn within one Update: the
// spectral residual statistic, so the transform runs once per sample, and
// the novelty member's context for the sample, which learn would otherwise
// bin against a copy of the level updated with it a second time, from the
// same state (the level does not learn the sample before the novelty
// member does). On Update's stack: kept in the Detector, it cost 16 bytes
// per series.
type carry struct {
	srRaw float64
	srOK  bool
	nvCtx uint16
	nvOK  bool
}

// New returns a Detector with its own Scratch.
func New(opts Options) (*Detector, error) { return NewWithScratch(opts, nil) }

// NewWithScratch returns a Detector that borrows sc for its computations; sc
// must not be used concurrently by other goroutines while this Detector's
// methods run. A nil sc means a Scratch of its own.
func NewWithScratch(opts Options, sc *Scratch) (*Detector, error) {
	d := &Detector{}
	if err := d.Init(opts, sc); err != nil {
		return nil, err
	}
	return d, nil
}

// Init makes d a new Detector in place, as NewWithScratch does: a caller
// that keeps many can embed them in its own per-series structs, one heap
// object instead of two.
func (d *Detector) Init(opts Options, sc *Scratch) error {
	if opts.Members == 0 {
		opts.Members = MemberDefault
	}
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("detector options: %w", err)
	}
	if sc == nil {
		sc = NewScratch()
	}
	*d = Detector{b: sc.bind(opts)}
	d.Reset()
	return nil
}

// Reset forgets everything learnt.
func (d *Detector) Reset() {
	d.st = state{}
	d.ex = nil
	if d.b.opts.Members&extraFlags != 0 {
		d.ex = &extraState{}
	}
	st := &d.st
	for _, r := range []*Robust{&st.Level, &st.SeasStat, &st.LongStat} {
		r.Alpha = 1.0 / levelSpan
	}
	if ex := d.ex; ex != nil {
		for _, r := range []*Robust{&ex.LagStat, &ex.VarStat, &ex.SRStat} {
			r.Alpha = 1.0 / levelSpan
		}
		ex.Forest.RNG = d.b.opts.Seed*0x9E3779B97F4A7C15 + 1
	}
	window := d.window()
	for m := range nMembers {
		if m != mFlat && (extraFlags&(1<<m) == 0 || d.ex != nil) {
			*d.tail(m) = newTail(int(float64(window)*winMul[m]), minLogM[m])
		}
	}
}

// window returns the members' record window, in samples.
func (d *Detector) window() int {
	n := 0
	for m := range nMembers {
		// The long, novelty and flat members are left out of the count:
		// the long member scores only on series with a long season, the
		// flat one only on runs of repeats, and lengthening every
		// member's window for the long or novelty one cost more
		// detections on NAB than it saved false alarms (novelty counted
		// in n: 73.22 standard instead of 75.37).
		if d.b.opts.Members&(1<<m) != 0 && m != mLong && m != mNovelty && m != mFlat {
			n++
		}
	}
	// Each member scores above 1 when it breaks its record over its window
	// of N samples, which happens with probability 1/N on normal data. The
	// members are correlated (a spike moves level, lag and spectral alike),
	// so splitting the budget n ways (Bonferroni) would be too strict: the
	// members behave like about √n independent ones, which the calibration
	// test confirms.
	return int(math.Ceil(math.Sqrt(float64(n)) / d.b.opts.FalseAlarmRate))
}

// Options returns the options in force.
func (d *Detector) Options() Options { return d.b.opts }

// LastTimestamp returns the time of the latest sample learnt (Unix ms), 0
// if none: where a restored Detector's history ends.
func (d *Detector) LastTimestamp() int64 { return d.st.Season.LastTs }

// Interval returns the sampling interval learnt (ms), 0 until it is
// chosen: the median of the first samples' intervals, or that of a run of
// samples at another interval since (see season.track).
func (d *Detector) Interval() int64 { return int64(d.st.Season.DtMs) }

// Ready reports whether the warm-up is over.
func (d *Detector) Ready() bool { return d.st.Seen > uint64(d.b.opts.WarmupSamples) }

// Result is the outcome of one sample.
type Result struct {
	// Score is the calibrated anomaly score: >= 0, above 1 is anomalous;
	// 0 while warming up.
	Score float64
	// Yhat is the expected value and [YhatLower, YhatUpper] the band outside
	// which the driving residual member alone would score above 1, cut at 0
	// for a series whose recent range is not below 0.
	Yhat, YhatLower, YhatUpper float64
	// Ready is false during the warm-up.
	Ready bool
	// Member and Feature name what drove the score.
	Member, Feature string
	// Undamped is Score before the refractory period's damping of an
	// event's follow-ups; outside the period, Score itself. A lasting
	// change that starts soon after another event (a glitch, a false
	// alarm) is damped in Score, but not here.
	Undamped float64
	// Ongoing: the sample belongs to an event the detector scored above 1,
	// either opening it (Score above 1) or continuing it inside the
	// refractory period (a score above refractHold before the damping).
	// A lasting change scores above 1 at its start only, then is damped
	// while the detector takes it in; Ongoing tells how long that takes,
	// so an alert can ask for an event that lasts, where a glitch or a
	// false alarm is over at once.
	Ongoing bool
	// Missed is the number of samples that did not come before this one,
	// by the series' sample interval once it is known (0 before): a
	// caller counting samples between events counts these too.
	Missed int64
}

// Update scores the sample (tsMillis, v) against what was seen before it,
// then learns from it. NaN and ±Inf samples are skipped (score 0, state
// untouched). Amortised O(1); no allocation.
func (d *Detector) Update(tsMillis int64, v float64) Result {
	r := d.update(tsMillis, v)
	if d.st.Lo >= 0 && !(v < 0) {
		// A series not seen below 0, this sample included (a latency, a
		// ratio, a rate), gets no band below 0: none of its values could
		// fill it, and a panel that draws one misleads. Only what is
		// shown changes; the score was computed with the band uncut.
		r.Yhat, r.YhatLower, r.YhatUpper = max(r.Yhat, 0), max(r.YhatLower, 0), max(r.YhatUpper, 0)
	}
	return r
}

func (d *Detector) update(tsMillis int64, v float64) Result {
	st := &d.st
	if NoValue(v) {
		return Result{Yhat: math.NaN(), YhatLower: math.NaN(), YhatUpper: math.NaN(), Ready: d.Ready()}
	}
	// ±Inf is out of range: a ratio whose denominator stalled, a
	// histogram_quantile beyond the largest bucket, are infinite exactly
	// when something is wrong (it scored 0, as a NaN does).
	if v < d.b.opts.ValidMin || v > d.b.opts.ValidMax || math.IsInf(v, 0) {
		r := d.expect(d.baselines())
		r.Ready = d.Ready()
		if r.Ready {
			// The range member's own names, as /api/v1/anomalies lists an
			// incident by its peak member (FeatureOf): "value" here named
			// the same thing differently in a sample and in the incident it opened.
			r.Score, r.Member, r.Feature = OutOfRangeScore, memberNames[mRange], featureNames[mRange]
		}
		return r
	}
	// A short gap (a few scrapes failed, or the scrape interval raised:
	// 60 s on a series learnt at 15 s misses 3 samples before each) is
	// filled in after the sample is scored, along the line from the sample
	// before it (see learn): the same time of day, with the sample's own
	// value at its end. Filled with the seasonal baseline, as a long gap
	// is, a series whose interval was raised had its rings made mostly of
	// their own past, copied a whole number of buckets back from a period
	// that is not one: their phase slipped day after day (15 s then 60 s,
	// a daily ±20 sine with noise 1: yhat off by 6.2 on average two days
	// on, 13.1 at 120 s, against 0.6 at 60 s from the start), and a level
	// shift of 16 noise deviations scored 0.96.
	var missed, short int64
	if st.Seen > 0 {
		if dt := st.Season.track(tsMillis); dt > 0 {
			d.relearn(dt, d.b.sc)
		}
		if missed = st.Season.missed(tsMillis); missed > 0 && missed*int64(st.Season.DtMs) < shortGapMs {
			short = missed
		} else {
			missed = st.Season.gap(tsMillis, d.b.sc)
			st.Long.fill(missed, d.shortSpan())
		}
	}
	if missed > short {
		// After a long gap the short-term memory describes another time of day:
		// restart it from the expectation for now, so the jump between the
		// last sample before the gap and the first after it is not scored
		// as a change.
		base, ok := st.Season.baseline()
		if !ok {
			base = st.Level.M
		}
		st.Fast, st.Prev = base, base
	}
	bl := d.baselines()
	res := d.expect(bl)
	res.Missed = missed
	var z [nMembers]float64
	var fv [ifDims]float64
	var cr carry
	valid := d.features(v, bl, &z, &fv, &cr)
	relaxed := d.relaxed(v, &z)

	// hold is the best score of the members that v itself keeps away from
	// normal: what says that an event goes on (see refract).
	best, bestM, hold := 0.0, -1, 0.0
	for m := range nMembers {
		if d.b.opts.Members&(1<<m) == 0 {
			continue
		}
		var s float64
		var t *Tail
		if m == mFlat {
			// Scored in features against its own model (see flat.go).
			s = z[m]
		} else {
			t = d.tail(m)
			s = t.Score(z[m])
		}
		if t != nil && !t.Filled() && (m == mLong || d.recalibrating(m, t)) {
			// The long member starts weeks into a series, when the long
			// ring first holds three periods; until its record window has
			// filled once, a record over the few samples seen is no record
			// (on NAB, standard / low FP without this cap: 74.49 / 68.22,
			// 134 false-positive rows; with it 74.59 / 68.40, 132, and the
			// same with a quarter, half or twice the window). So does a
			// member that calibrates again after a flat history (see
			// recalibrating).
			s = min(s, ScoreCapBelowMinDeviation)
		}
		if s > seenCap && seenMembers&(1<<m) != 0 && d.seenAtPhase(v, m, bl) {
			s = seenCap
		}
		if s > seenCap && flatRangeMembers&(1<<m) != 0 && d.leftFlat(t) && d.inRange(v) {
			s = seenCap
		}
		if s > best {
			best, bestM = s, m
		}
		if relaxed&(1<<m) == 0 {
			hold = max(hold, s)
		}
	}
	if d.b.opts.Members&MemberForest != 0 {
		d.ex.Forest.Update(&fv)
	}
	col := d.collapsed()
	for m := range nMembers {
		if valid&(1<<m) == 0 || m == mFlat {
			continue
		}
		switch t := d.tail(m); {
		case col&(1<<m) != 0 && z[m] > 1 && t.N > tailMinN:
			// A residual measured against a collapsed scale (a flat
			// history leaving its value) scores, but is no record: one
			// of 10¹¹ "standard deviations" (10⁴ after a flat week of
			// a series that varied before) made the member's
			// threshold, and the band drawn from it, 10¹¹ times the
			// spread learnt after it for the whole record window (a day
			// at a 15 s scrape). The member calibrates again from here,
			// and scores below 1 until its window has filled (see
			// recalibrating), as it did, blind, behind that record.
			// (The tail's first samples make no records: they are
			// learnt as they come.)
			t.Restart()
		case m == mLong:
			t.UpdateForget(z[m], st.Long.tailForget())
		default:
			t.Update(z[m])
		}
	}
	d.learn(tsMillis, v, col, short, bl, &cr)

	st.Seen++
	res.Ready = d.Ready()
	if !res.Ready {
		return res
	}
	dev := v - res.Yhat
	switch {
	case d.b.opts.Direction == Up && dev < 0, d.b.opts.Direction == Down && dev > 0:
		best = 0
	case math.Abs(dev) < max(d.b.opts.MinDeviationAbs, d.b.opts.MinDeviationRel*math.Abs(res.Yhat)):
		best = min(best, ScoreCapBelowMinDeviation)
	}
	hold = min(hold, best)
	driver := bestM
	res.Undamped = best
	// Refractory period: one event, one alert. Inside the period every
	// score is damped: the follow-ups of an event (the level catching up,
	// a shift's second edge) would otherwise each raise an alert of their
	// own, and costly false alarms on NAB are mostly such follow-ups. A
	// markedly stronger event (refractEscape times the score that opened
	// the period) is not a follow-up: it alerts and opens a new period. An
	// event still going on (a score above refractHold) holds the period
	// open for refractHoldLen more samples.
	res.Score, res.Ongoing = refract(&st.RefLeft, &st.RefPeak, best, hold, bestM >= 0, d.b.opts.RefractorySamples)
	if driver >= 0 {
		res.Member, res.Feature = memberNames[driver], featureNames[driver]
	}
	return res
}

// seenCap and seenMembers: a value the series had at this phase of its
// past seasons (see seenAtPhase) scores at most seenCap, an ordinary
// sample's score (the tail's z_q), on the members that do not model the
// season: the level and shift members, whose record windows are counted in
// samples (at 15 s the level's is 17 hours, the shift's 2), so a
// business-hours step (20 to 70 from 09:00 to 17:00 on weekdays) broke
// their record at every edge, and paged at 09:00 most weekdays
// (BenchmarkCalendar's batch series at 15 s); and the daily seasonal
// member when a long season says the value is usual for this time of the
// week (it expected the weekday's step on Saturdays, and paged then). The
// members still learn the statistic as it is: only the score is capped.
// NAB is unchanged (75.18 / 68.77 / 79.14, 137 false-positive rows). The
// range member is not capped: capped alike it lost a window (the missing
// jump of art_daily_nojump, a value seen at that phase; 74.55 / 68.31 /
// 78.43), as it did with only the long ring's envelope (74.42).
const (
	seenCap     = 0.5
	seenMembers = MemberLevel | MemberShift | MemberSeasonal
	seenTolK    = 2 // the envelope's tolerance, in standard deviations of its ring's residual
)

// seenAtPhase reports whether v lies within what the series had at this
// phase of its past seasons, for member m (see seenCap): the fine ring's
// values at this phase of its last seasons and a bucket either side, and
// the long ring's two buckets either side (a daylight-saving change moves
// a business-hours step by an hour: see longSeason.seen), each widened by
// seenTolK standard deviations of that ring's residual (its buckets are
// means; the samples scatter about them). The seasonal member asks only the long ring: the fine ring's own
// past is what it scores against. Called only when m scores above seenCap,
// so most samples read no ring.
func (d *Detector) seenAtPhase(v float64, m int, bl baselines) bool {
	st := &d.st
	floor := scaleFloor(st.Level.M)
	if m != mSeasonal && bl.seasOK && st.SeasStat.N > 16 {
		lo, hi := st.Season.seen(math.Inf(1), math.Inf(-1))
		if tol := seenTolK * max(st.SeasStat.Sigma(), floor); v >= lo-tol && v <= hi+tol {
			return true
		}
	}
	if bl.longOK && st.LongStat.N > 16 {
		lo, hi := st.Long.seen(math.Inf(1), math.Inf(-1))
		if tol := seenTolK * max(st.LongStat.Sigma(), floor); v >= lo-tol && v <= hi+tol {
			return true
		}
	}
	return false
}

// refract applies the refractory period, left samples of it opened by a
// score of peak (see Detector.update), to score, which has a driving
// member if driven, with the period's length from the options. It returns
// the score, damped inside the period, and whether the sample is part of
// an event (Result.Ongoing): inside the period, whether hold, the score of
// the members that the sample itself keeps away from normal (at most
// score), is above refractHold.
//
// The period is held open on score, hold tells only whether the event goes
// on. A member that smooths (the shift member's EWMAs, the novelty and long
// ones) carries a glitch forward after the samples are back to normal, and
// its score, calibrated on a log scale against records, decays slowly: on a
// flat series, one off-level sample kept the novelty member above
// refractHold for 17 samples, an event of 4m15s at 15 s scrapes, 8m30s at
// 30 s, 17m at 60 s, which paged (peak 30.9: the critical tier too).
func refract(left *uint32, peak *float32, score, hold float64, driven bool, samples int) (float64, bool) {
	ongoing := false
	if *left > 0 {
		*left--
		if score > refractHold {
			*left = max(*left, uint32(min(refractHoldLen, samples)))
		}
		ongoing = hold > refractHold
		if !(score > 1 && score > refractEscape*float64(*peak)) {
			score *= refractDamp
			driven = false
		}
	}
	if driven && score > 1 && samples > 0 {
		*left = uint32(samples)
		*peak = float32(score)
	}
	return score, ongoing || score > 1
}

// relaxed returns, as a member bit set, the members with a memory that v
// pulls back towards normal, so that what they still score is the memory
// of earlier samples: the shift member when its statistic for v (in z,
// from features: the larger of its fast and slow EWMAs', the slow one
// discounted by slowMix) is below what it was before v, the long member
// when its EWMA of the long-season residual is, and the novelty member
// while v lies within a bin of the level: a context is new for nvLen
// samples after one odd sample, and the samples back on the level make
// none newer. (Its EWMA falls too on a lasting step once the new contexts
// repeat, which the level member, whose calibration restarts when a flat
// series leaves its value, cannot yet say goes on.)
func (d *Detector) relaxed(v float64, z *[nMembers]float64) int {
	st := &d.st
	if st.Seen == 0 {
		return 0
	}
	var f int
	floor := scaleFloor(st.Level.M)
	prev := math.Abs(st.Fast-st.Level.M) / max(st.Level.Sigma()*math.Sqrt(shiftAlpha/(2-shiftAlpha)), floor)
	if st.Seen > 1 {
		prev = max(prev, slowMix*math.Abs(st.Slow-st.Level.M)/max(st.Level.Sigma()*math.Sqrt(slowAlpha/(2-slowAlpha)), floor))
	}
	if z[mShift] < prev {
		f |= MemberShift
	}
	if math.Abs(st.Level.Z(v, floor)) < nvBinW {
		f |= MemberNovelty
	}
	if z[mLong] < math.Abs(st.LongFast)*math.Sqrt((2-longEWMA)/longEWMA) {
		f |= MemberLong
	}
	return f
}

// collapsed returns the members whose z-score at the next sample is taken
// against a scale that has collapsed, as a member bit set: a scale at its
// floor (see Robust.Floored), or one whose residuals over the member's whole
// record window stayed below staleZ of it. Residuals average one scale
// (S is their mean absolute value), so a window without one above half a
// scale has seen the scale decay: on a series that varied and then stayed
// flat, by e^-1 every levelSpan samples, 1/1700 in a week at 15 s. Its
// first residual off the flat value would then be a record thousands of
// times the spread learnt after it.
func (d *Detector) collapsed() int {
	st := &d.st
	floor := scaleFloor(st.Level.M)
	var f int
	if st.Level.Floored(floor) || d.stale(mLevel) {
		f |= MemberLevel | MemberShift
	}
	if st.SeasStat.Floored(floor) || d.stale(mSeasonal) {
		f |= MemberSeasonal
	}
	if st.LongStat.Floored(floor) || d.stale(mLong) {
		f |= MemberLong
	}
	if d.ex != nil && (d.ex.LagStat.Floored(floor) || d.b.opts.Members&MemberLag != 0 && d.stale(mLag)) {
		f |= MemberLag
	}
	return f
}

// staleZ is the largest residual, in scales, of a record window that
// leaves the member's scale collapsed (see collapsed).
const staleZ = 0.5

// stale reports whether member m's record window has filled and held no
// statistic above staleZ.
func (d *Detector) stale(m int) bool {
	t := d.tail(m)
	return t.Filled() && t.windowBelow(staleZ)
}

// recalibrating reports whether member m's calibration, t (d.tail(m), which
// the caller holds already), restarted when the series left a flat history
// (see collapsed): its tail has seen far fewer samples than the statistic
// it calibrates. Until the tail has filled, its records are over a part of
// its window, which would score more of the series' ordinary variation
// above 1.
func (d *Detector) recalibrating(m int, t *Tail) bool {
	var n uint32
	switch m {
	case mLevel, mShift:
		n = d.st.Level.N
	case mSeasonal:
		n = d.st.SeasStat.N
	case mLong:
		n = d.st.LongStat.N
	case mLag:
		n = d.ex.LagStat.N
	default:
		return false
	}
	return t.N+recalibrateSlack < n
}

// recalibrateSlack is more than the samples a statistic learns before its
// member is scored (17 for the seasonal and long ones).
const recalibrateSlack = 64

// flatRangeMembers score a value within the series' recent range (see
// inRange) at most seenCap once the series has left a flat history (see
// leftFlat). Such a series is mostly at one value (an error counter's
// rate at 0): the level's scale, raised to the clip of the first value
// off it (see Robust.UpdateCollapsed), then decays for days, since the
// clip at huberK scales keeps values off it in fewer than one sample in
// eight from holding it up. Each later value off it is then a little
// more scales out than the last, however alike they are, and broke the
// level's record, then the shift member's (whose EWMAs are measured in
// the level's scale): errors at random, one every 40 / 160 / 480 samples,
// scored above 1 on 0.72% / 0.36% / 0.18% of samples, every error an
// incident, for the six days measured (TestSparseErrorsAfterFlat). A value beyond the range, a
// burst larger than the errors before, still scores; so do the other
// members. NAB (standard / low FP / low FN): 75.26 / 69.04 / 79.19, 133
// false-positive rows, against 75.18 / 68.77 / 79.14, 137.
const flatRangeMembers = MemberLevel | MemberShift

// flatRangeTol widens the range of inRange by this share of its reach
// from the level either side: the range's ends are pulled towards the
// level between the values that set them (rangeForget), by 4.7% in 480
// samples.
const flatRangeTol = 0.25

// leftFlat reports whether member m's calibration, t, restarted when the
// series left a flat history (see collapsed): its tail has seen fewer
// samples than the level, which never restarts.
func (d *Detector) leftFlat(t *Tail) bool { return t.N+recalibrateSlack < d.st.Level.N }

// inRange reports whether v lies within the series' recent range, widened
// by flatRangeTol of its reach from the level (state before v).
func (d *Detector) inRange(v float64) bool {
	st := &d.st
	return v >= st.Lo-flatRangeTol*(st.Level.M-st.Lo) && v <= st.Hi+flatRangeTol*(st.Hi-st.Level.M)
}

// shortSpan returns the longest period, in samples, that the fine seasonal
// ring can use; the long ring looks only for longer ones.
func (d *Detector) shortSpan() int { return seasonLen / seasonMedianOf * int(d.st.Season.D) }

// scaleFloor keeps z-scores finite on flat stretches: a relative 1e-9 of the
// level plus an absolute 1e-12.
func scaleFloor(level float64) float64 { return 1e-9*math.Abs(level) + 1e-12 }

// baselines holds the seasonal and the long-season expectation for the
// sample being scored. expect, features and learn all read them from the
// state before the sample, and the rings do not move until learn's last
// step takes the sample in, so update reads each ring once (the fine ring's
// three reads, each a median of three dequantised buckets, were 6.5% of
// BenchmarkUpdate's CPU profile).
type baselines struct {
	seas, long     float64
	seasOK, longOK bool
}

// baselines reads both rings' expectations for the next sample.
func (d *Detector) baselines() baselines {
	var b baselines
	b.seas, b.seasOK = d.st.Season.baseline()
	b.long, b.longOK = d.st.Long.baseline()
	return b
}

// expect returns yhat and its band from the state before the sample; bl
// are the rings' baselines for it.
func (d *Detector) expect(bl baselines) Result {
	st := &d.st
	yhat, sigma, m := st.Level.M, st.Level.Sigma(), mLevel
	if bl.seasOK && d.b.opts.Members&MemberSeasonal != 0 && st.SeasStat.N > 16 {
		if s := st.SeasStat.Sigma(); s < sigma {
			yhat, sigma, m = bl.seas+st.SeasStat.M, s, mSeasonal
		}
	}
	if bl.longOK && d.b.opts.Members&MemberLong != 0 && st.LongStat.N > 16 {
		if s := st.LongStat.Sigma(); s < sigma {
			yhat, sigma, m = bl.long+st.LongStat.M, s, mLong
		}
	}
	sigma = max(sigma, scaleFloor(yhat))
	half := sigma * 3
	if t := d.tail(m); t.Ready() {
		half = sigma * d.b.sc.threshold1(t)
	}
	if st.Seen == 0 {
		return Result{Yhat: math.NaN(), YhatLower: math.NaN(), YhatUpper: math.NaN()}
	}
	return Result{Yhat: yhat, YhatLower: yhat - half, YhatUpper: yhat + half}
}

// features computes each member's statistic for v (non-negative, larger is
// more surprising) and the Isolation Forest's feature vector, all from the
// state before v.
//
// It returns the set of members whose statistic was available: only those
// are calibrated, so a member that starts late (the seasonal one waits for a
// period) does not start with a distribution full of zeros. bl are the
// rings' baselines for v; what learn takes of the statistics goes in cr.
func (d *Detector) features(v float64, bl baselines, z *[nMembers]float64, fv *[ifDims]float64, cr *carry) (valid int) {
	st, ex := &d.st, d.ex
	if st.Seen == 0 {
		return 0
	}
	valid = MemberLevel | MemberLag | MemberShift
	floor := scaleFloor(st.Level.M)
	zl := st.Level.Z(v, floor)
	z[mLevel] = math.Abs(zl)

	var zs float64
	if bl.seasOK && st.SeasStat.N > 16 {
		zs = st.SeasStat.Z(v-bl.seas, floor)
		z[mSeasonal] = math.Abs(zs)
		valid |= MemberSeasonal
	}

	// Lag and variance feed their members and the forest's vector; skip
	// them when none of those is on.
	var zd float64
	if d.b.opts.Members&(MemberLag|MemberForest) != 0 {
		zd = ex.LagStat.Z(v-st.Prev, floor)
		z[mLag] = math.Abs(zd)
	}

	// The short-term mean after this sample against the level, in units
	// of the EWMA's own standard deviation under independent noise,
	// σ·√(a/(2-a)).
	fast := st.Fast + shiftAlpha*(v-st.Fast)
	zf := (fast - st.Level.M) / max(st.Level.Sigma()*math.Sqrt(shiftAlpha/(2-shiftAlpha)), floor)
	z[mShift] = math.Abs(zf)
	// A slow EWMA catches the drifts and small sustained shifts the fast
	// one averages away in its noise. Real series are autocorrelated, so
	// its z in units of the independent-noise spread runs high; slowMix
	// discounts it (NAB standard / low FP with slowAlpha 0.02: slowMix 0.3
	// 70.77 / 63.65, 0.35 70.87 / 62.45, 0.4 71.75 / 65.09, 0.45 71.26 /
	// 64.41, 0.5 71.20 / 64.90, 0.6 70.95 / 64.72; without: 71.35 / 63.64).
	if st.Seen > 1 {
		slow := st.Slow + slowAlpha*(v-st.Slow)
		zsl := (slow - st.Level.M) / max(st.Level.Sigma()*math.Sqrt(slowAlpha/(2-slowAlpha)), floor)
		z[mShift] = max(z[mShift], slowMix*math.Abs(zsl))
	}

	// Spread of the last shortWin samples (this one included) against the
	// level's, on a log scale so that bursts and flatlines both stand out.
	var zv float64
	if d.b.opts.Members&(MemberVariance|MemberForest) != 0 && ex.Short.N >= shortWin-1 {
		out := float64(ex.Recent[(int(ex.RecentPos)+recentLen-shortWin+1)%recentLen])
		r := ex.Short
		in := float64(float32(v))
		r.Update(in, out, r.N >= shortWin)
		lr := math.Log((r.Std() + floor) / (st.Level.Sigma() + floor))
		zv = ex.VarStat.Z(lr, 1e-3)
		z[mVariance] = math.Abs(zv)
		valid |= MemberVariance
	}

	// The transform runs every srEvery samples and reports the most salient
	// of the samples since the last run: a spike is flagged at most
	// srEvery-1 samples late, at a quarter of the cost.
	if d.b.opts.Members&MemberSpectral != 0 && ex.RecentN >= recentLen && st.Seen%srEvery == 0 {
		// The last srWin-1 samples, oldest first, then v.
		w := d.b.sc.win
		for i := range srWin - 1 {
			w[i] = float64(ex.Recent[(int(ex.RecentPos)+recentLen-srWin+2+i)%recentLen])
		}
		w[srWin-1] = v
		cr.srRaw = d.b.sc.sr.Newest(w, srEvery)
		cr.srOK = true
		z[mSpectral] = math.Max(0, ex.SRStat.Z(cr.srRaw, 1e-3))
		valid |= MemberSpectral
	}

	fv[0], fv[1], fv[2], fv[3], fv[4] = clip8(zl), clip8(zd), clip8(zf), clip8(zv), clip8(zs)
	if d.b.opts.Members&MemberForest != 0 && ex.Forest.Fitted {
		z[mForest] = ex.Forest.Score(fv)
		valid |= MemberForest
	}
	// Breakout: how far v lies outside every value seen so far, in units of
	// that range. Unlike the residual members it has no scale to adapt and
	// no memory to lose, so a level that was never reached stands out
	// however slowly it was approached.
	if st.Seen > 1 && st.Hi > st.Lo {
		lo, hi := st.Lo, st.Hi
		if v < lo || v > hi {
			// What the series had at this phase of its past seasons was
			// seen, however long ago: the range forgets in samples (a day
			// and three quarters at 15 s), so a business-hours step
			// (20 to 70 from 09:00 to 17:00) left it every weekday, on
			// the step up and on the step down, and paged twice a day
			// (BenchmarkCalendar). Read only when v is outside the range.
			if bl.seasOK && st.SeasStat.N > 16 {
				lo, hi = st.Season.seen(lo, hi)
			}
			if bl.longOK && st.LongStat.N > 16 {
				// The long ring's buckets are two-hour means, below
				// the samples that made them by their scatter; where
				// they reach past the range (which forgot them: on a
				// Monday, after a weekend's samples), the scatter
				// (seenTolK sigmas of the long residual, as in
				// seenAtPhase) is counted as seen too. The first
				// sample of a business-hours step ranked as a record
				// against the bare means on 7 of 48 Mondays, a page on
				// 5 (TestMondayMorningStaysQuiet). Not where the
				// range's own extremes, samples, hold the ring's: on
				// nyc_taxi the residual's scale (2 100) is the night's
				// level, and widening the range's bottom by it lost
				// the blizzard's window (NAB 75.18 -> 74.38).
				llo, lhi := st.Long.seen(math.Inf(1), math.Inf(-1))
				tol := seenTolK * max(st.LongStat.Sigma(), floor)
				if lhi > hi {
					hi = lhi + tol
				}
				if llo < lo {
					lo = llo - tol
				}
			}
		}
		z[mRange] = max(0, v-hi, lo-v) / (st.Hi - st.Lo)
		valid |= MemberRange
	}
	if st.Seen > 1 && st.Long.Period == 0 {
		// Off where a long season is known: its memory is shorter than a
		// week, so a regular week's weekend would come back new.
		z[mNovelty], cr.nvCtx = st.Novel.score(v, &st.Level, floor)
		cr.nvOK = true
		valid |= MemberNovelty
	}
	if bl.longOK && st.LongStat.N > 16 {
		// In units of the EWMA's own standard deviation under independent
		// residuals, as for the shift member.
		f := st.LongFast + longEWMA*(st.LongStat.Z(v-bl.long, floor)-st.LongFast)
		z[mLong] = math.Abs(f) * math.Sqrt((2-longEWMA)/longEWMA)
		valid |= MemberLong
	}
	// The flat member's statistic is its score already: a run of repeats
	// is judged by its probability under the series' own repeat rate
	// (see flat.go), not against a record.
	if k := st.flatRun(v); k > 0 && d.b.opts.Members&MemberFlat != 0 {
		z[mFlat] = st.flatScore(k)
		valid |= MemberFlat
	}
	return valid & d.b.opts.Members
}

func clip8(x float64) float64 { return max(-8, min(x, 8)) }

// learn updates the state with v after it was scored; col is the set of
// members whose scale had collapsed before v (see collapsed), short the
// samples a short gap before v missed, bl the rings' baselines for v
// (unchanged until the rings take v, at the end), cr what features
// computed for v.
func (d *Detector) learn(ts int64, v float64, col int, short int64, bl baselines, cr *carry) {
	st := &d.st
	prev := st.Prev
	if st.Seen == 0 {
		st.Fast, st.Prev = v, v
	}
	floor := scaleFloor(st.Level.M)
	if bl.seasOK {
		st.SeasStat.UpdateCollapsed(v-bl.seas, floor, col&MemberSeasonal != 0)
	}
	if ex := d.ex; ex != nil {
		d.learnExtra(ex, v, floor, col, cr)
	}

	if st.Seen == 0 {
		st.Lo, st.Hi = v, v
	}
	// The range forgets slowly (time constant 10⁴ samples, a month of
	// 5-minute samples), so a long-running series is not judged forever
	// against one old extreme.
	st.Lo, st.Hi = min(st.Lo, v), max(st.Hi, v)
	st.Lo += (st.Level.M - st.Lo) * rangeForget
	st.Hi -= (st.Hi - st.Level.M) * rangeForget
	if st.Seen > 0 {
		ctx := cr.nvCtx
		if !cr.nvOK {
			ctx = st.Novel.next(v, st.Level, floor)
		}
		st.Novel.learn(ctx, st.Seen)
	}
	st.learnFlat(v)
	st.Level.UpdateCollapsed(v, floor, col&MemberLevel != 0)
	st.Fast += shiftAlpha * (v - st.Fast)
	if st.Seen == 0 {
		st.Slow = v
	}
	st.Slow += slowAlpha * (v - st.Slow)
	// A level that the short-term mean has left for good is re-anchored
	// there (see reanchorK). For good means that the samples are there
	// too: a sample on the level's other side takes one back from the run.
	// An EWMA of a rate that is 0 at most scrapes (errors, restarts) keeps
	// the echo of each event beyond reanchorK collapsed scales for twenty
	// samples or so while every sample is 0 again; counted as away, two
	// errors within that echo moved the level onto it (0.0127 with every
	// sample 0: the novelty and level members then scored the zeros, an
	// event of 11 minutes that paged). On NAB (standard / low FP / low FN;
	// before: 75.07 / 68.62 / 79.07, 138 false-positive rows) this gives
	// 75.16 / 68.78 / 79.13, 136 rows; resetting the run at such a sample,
	// or not counting it, 74.36 / 67.98 / 78.31 (one window fewer: a spike
	// that had scored on the level an earlier spike's echo left).
	if away := st.Fast - st.Level.M; !(math.Abs(away) > reanchorK*st.Level.Sigma()) {
		st.Away = 0
	} else if (v-st.Level.M)*away > 0 {
		st.Away++
	} else if st.Away > 0 {
		st.Away--
	}
	if st.Away >= reanchorLen {
		st.Level.M, st.Slow, st.Away = st.Fast, st.Fast, 0
	}
	st.Prev = v
	// The long-season residual, in units of its own scale, before the
	// long ring learns v.
	if bl.longOK {
		if st.LongStat.N > 16 {
			zw := st.LongStat.Z(v-bl.long, floor)
			st.LongFast += longEWMA * (zw - st.LongFast)
		}
		st.LongStat.Alpha = st.Long.statAlpha()
		st.LongStat.UpdateCollapsed(v-bl.long, floor, col&MemberLong != 0)
	}
	// A short gap's samples (see update), then v. The long ring counts
	// samples as time too: it takes what the fine one takes (see
	// season.due).
	for i := range short {
		x := prev + (v-prev)*float64(i+1)/float64(short+1)
		st.Season.push(x, d.b.sc)
		st.Long.push(x, d.shortSpan(), false)
	}
	if !st.Season.add(ts, v, d.b.sc) {
		return
	}
	if st.Long.D == 0 && st.Season.D != 0 {
		st.Long.setD(int64(st.Season.DtMs))
	}
	st.Long.push(v, d.shortSpan(), true)
}

// learnExtra updates what only the opt-in members use, before the level
// learns v.
func (d *Detector) learnExtra(ex *extraState, v, floor float64, col int, cr *carry) {
	if d.b.opts.Members&(MemberLag|MemberForest) != 0 {
		ex.LagStat.UpdateCollapsed(v-d.st.Prev, floor, col&MemberLag != 0)
	}
	lvlSigma := d.st.Level.Sigma()

	// Recent ring and the rolling window over its last shortWin values.
	in := float64(float32(v))
	out := float64(ex.Recent[(int(ex.RecentPos)+recentLen-shortWin+1)%recentLen])
	ex.RecentPos = (ex.RecentPos + 1) % recentLen
	ex.Recent[ex.RecentPos] = float32(v)
	ex.RecentN = min(ex.RecentN+1, recentLen)
	ex.Short.Update(in, out, ex.Short.N >= shortWin)
	if ex.Short.Updates >= rollingRebase {
		var win [shortWin]float32
		for i := range win {
			win[i] = ex.Recent[(int(ex.RecentPos)+recentLen-shortWin+1+i)%recentLen]
		}
		ex.Short.Rebase(win[:])
	}
	if ex.Short.N >= shortWin && d.b.opts.Members&(MemberVariance|MemberForest) != 0 {
		ex.VarStat.Update(math.Log((ex.Short.Std() + floor) / (lvlSigma + floor)))
	}
	if cr.srOK {
		ex.SRStat.Update(cr.srRaw)
	}
}
