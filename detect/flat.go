package detect

import "math"

// The flat member scores a series that stops moving: a stuck exporter
// serving its last value, a rate frozen at one constant. Every other member
// measures how far a sample lies from what is expected, and a value stuck
// at the level lies nowhere: on a noisy gauge (100 ± 5 at 15 s) that
// repeated its last value for 80 samples the largest score was 0.35 – 0.76
// over five seeds (TestFlatlineScores).
//
// What is unusual is the run of repeats itself, on a series whose samples
// usually differ. The member keeps k, how many samples in a row have equalled
// the one before, and M, the longest such run that ended, forgotten slowly
// (time constant flatSpan samples). A run scores
//
//	s = k / (e^½ · max(M, 1))     at most flatMax
//
// so above 1 once it is e^½ times the longest run the series has made
// lately, the same margin by which a member's statistic must beat its record
// (tailMinLog). A series that never repeats scores at its second repeat in a
// row (three equal samples); one that makes runs (counts, which repeat on
// their mode; a rate that sits at 0 every night; a gauge refreshed every few
// scrapes) only on a run well beyond its own. A record rather than a model
// of the runs: runs cluster (a night of zeros), and a rate of repeats read
// as independent scored the nightly zeros of NAB's tweet counts (45% of the
// samples repeat) above 1 a hundred times a file.
//
// Only a series that moves at most samples is scored: p, the share of
// samples equal to the one before (a running mean up to levelSpan samples, an
// EWMA of time constant levelSpan after), must be below ½. A gauge that
// changes now and then (a replica count, a configuration's timestamp) does
// not stop moving, it was never moving; and a run long enough to carry p
// over ½ (about 0.7·levelSpan samples from a series that never repeated, 12
// hours at 15 s) is the series' state now, not an event.
//
// The score is capped at flatMax: a run that goes on keeps its event open
// (a score above refractHold), without escaping the refractory period again
// and again (refractEscape) or its damped follow-ups reaching 1.
//
// 6 bytes per series, beside Away: a Tail (180) would have moved
// pipeline's series out of its size class.
const (
	flatSpan   = 4 * levelSpan // time constant of M, samples: a few days at 15 s, so a nightly run is remembered the next night
	flatMargin = 1.6487212707001282
	flatMax    = refractEscape
	flatPMax   = 0.5
	flatPUnit  = 65535 // RepeatP's unit, 1/flatPUnit
)

// flatRun returns the run of repeats v makes: one more than the state's if
// v equals the sample before it, 0 if not.
func (st *state) flatRun(v float64) uint16 {
	if st.Seen == 0 || v != st.Prev {
		return 0
	}
	return max(st.Repeats, st.Repeats+1) // saturates
}

// flatScore returns the flat member's score of a run of k repeats.
func (st *state) flatScore(k uint16) float64 {
	if k == 0 || float64(st.RepeatP) >= flatPMax*flatPUnit {
		return 0
	}
	return min(float64(k)/(flatMargin*st.flatRecord()), flatMax)
}

// flatRecord returns the longest run the series is taken to make: the
// longest it made lately (M), or, where that is longer, the longest that
// flatSpan samples of independent repeats at its rate p would make,
// ln(flatSpan)/ln(1/p) (at least 1). Until M has seen a run of the
// series' kind it is 0 or 1, and a count series that repeats one sample in
// seven made its first run of 2 (of 3 equal samples) above 1 on NAB.
func (st *state) flatRecord() float64 {
	r := max(float64(st.RunMax), 1)
	if p := float64(st.RepeatP) / flatPUnit; p > 0 {
		r = max(r, math.Log(flatSpan)/-math.Log(p))
	}
	return r
}

// learnFlat learns whether v repeats the sample before it; call it before
// st.Prev and st.Seen take v in.
func (st *state) learnFlat(v float64) {
	if st.Seen == 0 {
		st.Repeats, st.RunMax, st.RepeatP = 0, 0, flatPUnit/2
		return
	}
	k := st.flatRun(v)
	x := 0.0
	if k > 0 {
		x = flatPUnit
	} else {
		st.RunMax = max(st.RunMax, st.Repeats)
	}
	st.Repeats = k
	// M forgets by one every flatSpan/M samples: dM/dt = -M/flatSpan.
	if st.RunMax > 0 && st.Seen%max(1, flatSpan/uint64(st.RunMax)) == 0 {
		st.RunMax--
	}
	a := max(1.0/levelSpan, 1/float64(st.Seen+2))
	p := float64(st.RepeatP)
	// Rounded at random (the fraction of Seen times the golden ratio), so
	// that steps below one unit, a·p for a p under levelSpan/flatPUnit
	// (1/16), are taken on average rather than never.
	dither := float64(st.Seen*0x9E3779B97F4A7C15>>11) / (1 << 53)
	st.RepeatP = uint16(max(0, min(p+a*(x-p)+dither, flatPUnit)))
}
