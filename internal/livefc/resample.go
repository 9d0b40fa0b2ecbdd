package livefc

import "math"

// WithinAlpha is the weight of a step's spread in the EWMA of the input's
// spread within its steps that widens the bands (see Feed).
const WithinAlpha = 1.0 / 32

// Resampler turns the input into steps of at least MinStepMs for the
// forecaster, each the mean of the input samples in it. A step ends at the
// first sample far enough after the latest of the step before (see
// steps): a whole number of input intervals, as many as reach
// MinStepMs, so inputs at or slower than it pass through and faster ones
// are averaged. Steps follow the input's time, not a step length fixed
// once: an input whose interval changes (60 s to 15 s or 1 s, 1 s to 60 s,
// 30 s to 15 s), a sender's retry or burst, a first interval that was a
// gap, all come out as steps of about MinStepMs or one input interval
// (a fixed step learnt from the first intervals, or re-learnt from a few,
// could fall below the input's interval for good: the forecaster, fed
// points further apart than it, took each as after a gap and forecast no
// more).
type Resampler struct {
	MinStepMs int64
	// IV holds the latest three input intervals in ms, newest last (0:
	// not yet seen; at most 24 days, int32 to keep the pipeline's fcState
	// in its size class); their median is the input's interval (see
	// Interval).
	IV     [3]int32
	Closed bool
	// InstN is how many samples the latest instant holds (saturating;
	// uint16 beside Closed keeps the struct's size).
	InstN uint16
	// Instant is the first sample of the latest instant: a sample within
	// MinStepMs/instantDiv of it is part of it (a burst: a resend, senders
	// milliseconds apart, or an input faster than that) and records no
	// interval; the next interval is measured from it (see
	// instantInterval). Not saved: restored, it is the latest sample.
	Instant int64
	// Ref is the latest sample of the last step (valid once Closed).
	Ref int64
	// Ctr is how far the middle of the last step's samples lies before
	// its latest, by which it is stamped (0 for a step of one sample).
	Ctr int64
	// The open step: N samples, the first at First, the latest at LastT
	// (LastT is the latest input sample once any came). X0 is the first
	// sample, DSum and DSq the sums of the samples' differences from X0
	// and of their squares (about X0, so a large value loses no precision
	// to cancellation).
	N             int
	First, LastT  int64
	X0, DSum, DSq float64
}

// Point is a step of the Resampler: the mean V of its input samples,
// stamped T, the time of the latest.
type Point struct {
	T int64
	V float64
	// MSD is the mean squared deviation of the step's input samples about
	// V, their mean; N how many there were (MSD 0 when N < 2).
	MSD float64
	N   int
}

// Add takes an input sample and returns the steps it completes (at most
// two, after a gap), each at the time of its latest sample, in time order.
// Samples at or before the latest are ignored.
func (r *Resampler) Add(t int64, v float64) (out [2]Point, n int) {
	seen := r.N > 0 || r.Closed
	if seen && t <= r.LastT {
		return out, 0
	}
	switch {
	case !seen:
		r.Instant, r.InstN = t, 1
	case t-r.Instant >= r.MinStepMs/instantDiv:
		// Bursts of three or more samples a minute, milliseconds apart,
		// made the median interval milliseconds: the step a few
		// thousand of them, and each burst after the minute a gap, so
		// two steps a minute, which the forecaster took as evenly
		// spaced (5m forecast 299 off on a ramp of 1 a second).
		r.IV[0], r.IV[1], r.IV[2] = r.IV[1], r.IV[2], int32(min(r.instantInterval(t), math.MaxInt32))
		r.Instant, r.InstN = t, 1
	default:
		r.InstN = max(r.InstN, r.InstN+1) // saturates
	}
	step, thr := r.Steps()
	if r.N > 0 && t-r.First > step+thr {
		// A gap: the samples before it are a step of their own, not
		// averaged with the level after it (1000 before, 2000 after).
		// A gap is where the step with this sample would span more
		// than about two steps, not every interval past the threshold
		// (half the median one where the input is at or above
		// MinStepMs): an input whose intervals are uneven (10 s and 50
		// s in turn, a resend 5 ms after each sample, three senders
		// 100 ms apart) had each sample a step, and the forecaster,
		// which takes its points as evenly spaced, saw each minute as
		// two or three steps: 5m forecast 241-326 off on a ramp of 1 a
		// second, 30m 1 473-1 816 (6 and 141 at an even 60 s).
		out[n] = r.Close()
		n++
	}
	if r.N == 0 {
		r.First, r.X0, r.DSum, r.DSq = t, v, 0, 0
	}
	r.LastT = t
	d := v - r.X0 // about the step's first sample: no cancellation on large values
	r.DSum += d
	r.DSq += d * d
	r.N++
	// The first sample is a step: the forecaster learns the input's level
	// at once and the steps after it run from there.
	if !r.Closed || t-r.Ref >= thr {
		out[n] = r.Close()
		n++
	}
	return out, n
}

// instantInterval is the interval that the sample at t, the first of a
// new instant, records: the span of the instant before it per sample when
// that instant's samples were evenly spread (an input faster than
// MinStepMs/instantDiv: its samples' own interval), else the span (a burst
// and the pause after it: the burst's interval). An input faster than the
// instant's span, measured by the span alone, had its interval a whole
// number of its samples that changed with its jitter (200 ms ± 50 ms: 800
// to 1 100 ms), and its steps with it: 96 of 1 023 forecasts an hour off by
// more than a fifth of their horizon on a ramp (none at the input's own
// interval).
func (r *Resampler) instantInterval(t int64) int64 {
	span, n := t-r.Instant, int64(r.InstN)
	// Evenly spread: the gap after the instant's samples is at most
	// instantEven times their mean spacing. A burst's are milliseconds
	// apart before a pause of seconds or minutes.
	if n > 1 && instantEven*(r.LastT-r.Instant) >= (n-1)*(t-r.LastT) {
		return span / n
	}
	return span
}

// instantEven: see instantInterval. Jitter of up to half an interval
// leaves an even input's samples within a factor of 3 of each other; a
// burst's are hundreds of times closer than the pause after them.
const instantEven = 4

// instantDiv divides MinStepMs into the span of one instant (see
// Resampler.instant): 879 ms for the default horizons' 28.1 s, under a 1 s
// scrape's interval; 146 ms for a 5m horizon alone. Samples closer than
// that fall in one step anyway; only the interval would take them for the
// input's.
const instantDiv = 32

// Interval is the median of the latest three input intervals (the smaller
// of two, so that neither a first interval that was a gap nor a retry right
// after the first makes steps coarser than the input: both are outvoted
// once there are three); 0 before the second sample.
func (r *Resampler) Interval() int64 {
	a, b, c := int64(r.IV[0]), int64(r.IV[1]), int64(r.IV[2])
	switch {
	case c == 0:
		return 0
	case b == 0:
		return c
	case a == 0:
		return min(b, c)
	}
	return max(min(a, b), min(max(a, b), c))
}

// Step is the nominal step: the whole number of input intervals that
// reaches MinStepMs, or falls short of it by less than 1% of an interval
// (MinStepMs while the interval is unknown). An input whose interval is
// MinStepMs or a whole fraction of it (30 s with a 32m horizon, 15 s with
// 16m) has samples stamped a few ms early or late: counted exactly, its
// step was one interval at one sample and two at the next, and the
// forecaster, taking its points as evenly spaced, forecast 5m 170-14 805
// off on a ramp of 1 a second (6-17 with the step steady). Steps stay
// within 1% of MinStepMs: every horizon still fits MaxHorizon.
func (r *Resampler) Step() int64 {
	step, _ := r.Steps()
	return step
}

// Steps returns the nominal step and the threshold: how far after the last
// step's latest sample a sample ends the next step, half an input interval
// short of the step, so that a sample a little early (scrape jitter) still
// ends it on time and one a little late does not make it one interval
// longer.
func (r *Resampler) Steps() (step, threshold int64) {
	iv := r.Interval()
	if iv <= 0 {
		return r.MinStepMs, r.MinStepMs
	}
	step = max(1, (100*r.MinStepMs+99*iv-1)/(100*iv)) * iv
	return step, step - iv/2
}

// Close ends the open step and returns it.
func (r *Resampler) Close() Point {
	fn := float64(r.N)
	m := r.DSum / fn
	p := Point{T: r.LastT, V: r.X0 + m, MSD: max(0, r.DSq/fn-m*m), N: r.N}
	r.Ref, r.Closed, r.Ctr = r.LastT, true, (r.LastT-r.First)/2
	r.N, r.DSum, r.DSq = 0, 0, 0
	return p
}

// Center is how far, in ms, the middle of the last step's samples lies
// before its latest, by which the step is stamped.
func (r *Resampler) Center() int64 { return r.Ctr }
