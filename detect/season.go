package detect

import (
	"fmt"
	"math"
)

const (
	seasonLen      = 256             // buckets of history kept for the FFT
	seasonSpanMs   = 3 * 86400 * 1e3 // history the buckets should span: three days
	seasonMaxD     = 4096            // most samples per bucket: three days down to 0.25 s samples
	seasonDecideN  = 16              // samples after which the bucket width is chosen
	seasonMinP     = 4               // shortest period searched, in buckets
	seasonReEst    = seasonLen / 2   // buckets between period searches
	seasonMinStr   = 0.4             // weakest autocorrelation used as a season
	seasonMedianOf = 3               // past seasons in the median baseline
)

// season keeps a downsampled history of a series and the period found in it.
//
// Samples are averaged into buckets of D samples; the last seasonLen buckets
// are kept. D is chosen after seasonDecideN samples, from the median
// sampling interval, and again when the interval changes for good (see
// track), so that the buckets span about three days: enough for
// three cycles of a daily season, the usual one in infrastructure metrics,
// in a fixed 0.5 KiB (int16 steps, see qRing). At Prometheus's usual
// scrape intervals (15 s to 1 m) that is 17-minute buckets, so periods from
// about 70 minutes to a day are found; a bound of 16 samples a bucket,
// kept until 2026-12-03, made the ring span 17 hours at 15 s and missed the
// daily season at every interval under ~64 s. Every seasonReEst buckets the period is searched with
// Seasonality (amortised: two 512-point FFTs per 128 buckets), and the seasonal baseline
// for a new sample is the median of the buckets one, two and three periods
// back, which keeps a past spike from echoing into the baseline.
type season struct {
	Ring     qRing  // seasonLen buckets
	D        uint16 // samples per bucket; 0 until chosen
	AccN     uint16 // samples in the open bucket
	Period   uint16 // in buckets; 0 = none
	SinceEst uint16
	Acc      float64
	N        uint16 // samples, saturating: read only until D is chosen
	// A run of samples whose intervals all disagree with DtMs the same
	// way (see track): Run is how many it holds, positive for slower,
	// negative for faster; RunIv its interval so far; RunLag how much
	// more time (ms) its samples spanned than the ring counted them as.
	Run    int16
	DtMs   int32 // sampling interval, once D is chosen: the median of the first, or a run's (see track)
	LastTs int64
	RunIv  int32
	RunLag int32
}

// Until D is chosen the ring holds no bucket, so its first slots keep the
// sampling intervals seen so far (milliseconds, an int32 in two int16
// slots): 64 bytes of state the series would otherwise carry for good.
// Up to detector snapshot version 9 they were whole seconds, which read a
// 2 s scrape stamped 1 999 and 2 001 ms apart as 1 s (every sample then
// came after a "gap") and a 1 s one as 0 (no interval at all).

// fromSeconds checks a season saved while the intervals were kept in whole
// seconds (detector snapshot version 9). One still deciding its interval
// holds seconds, and one that decided on 0 or 1 s may be a 1 s or 2 s
// scrape read wrong: only learning again tells (the pipeline warms the
// series from its history), so both are an error. From 2 s up, a second off
// leaves the interval within the gap's tolerance.
func (s *season) fromSeconds() error {
	if s.DtMs <= 1000 {
		return fmt.Errorf("sampling interval %d ms, read in whole seconds: learnt again", s.DtMs)
	}
	return nil
}

// setDt stores the i-th sampling interval, in the ring's slots 4i to
// 4i+3 (unused until the interval is chosen).
func (s *season) setDt(i int, dt int32) {
	for k := range 4 {
		s.Ring.Q[4*i+k] = int8(uint8(uint32(dt) >> (8 * k)))
	}
}

// dt returns the i-th sampling interval.
func (s *season) dt(i int) int32 {
	var u uint32
	for k := range 4 {
		u |= uint32(uint8(s.Ring.Q[4*i+k])) << (8 * k)
	}
	return int32(u)
}

// FullInterval reports whether elapsedMs, the time between two samples of
// a series sampled every intervalMs, counts as a whole interval: three
// quarters of it or more (elapsedMs >= intervalMs - intervalMs/4, in
// integer milliseconds). Scrape timestamps jitter by the scraper's
// scheduling and the target's response time, either way of the interval;
// a quarter of it is far more than that jitter (typically milliseconds
// on a 15 s scrape) yet less than the step to a sample that truly came early (half
// the interval or less: a scrape interval lowered to a divisor of it).
// MissedBetween takes the same quarter the other way: a gap counts as a
// missed sample only from 1.75 intervals. For intervalMs 0 (not known)
// every elapsed time of 0 or more is a full interval.
func FullInterval(elapsedMs, intervalMs int64) bool {
	return elapsedMs >= intervalMs-intervalMs/4
}

// MissedBetween returns how many samples of a series sampled every
// intervalMs did not come between two that came at prevMs and tsMs: none
// unless they are 1.75 intervals apart or more (a quarter interval's
// tolerance for the jitter of scrape timestamps either way), 0 for an
// interval not known (0).
func MissedBetween(prevMs, tsMs, intervalMs int64) int64 {
	if intervalMs <= 0 {
		return 0
	}
	return max(0, (tsMs-prevMs+intervalMs/4)/intervalMs-1)
}

// missed reports how many samples were missed if ts comes after a gap
// (see MissedBetween), as gap does, without filling them in.
func (s *season) missed(ts int64) int64 {
	if s.D == 0 || s.DtMs <= 0 {
		return 0
	}
	return MissedBetween(s.LastTs, ts, int64(s.DtMs))
}

// gap reports how many samples were missed if ts comes after a gap (see
// MissedBetween; the interval is the median one), and 0 otherwise; if a
// season is known it
// fills the samples that should have arrived with the seasonal baseline, so
// the ring keeps its phase and the season found before the gap still lines
// up after it. The fill is bounded by the ring's span. Call it before
// baseline for the sample at ts.
func (s *season) gap(ts int64, sc *Scratch) int64 {
	if s.D == 0 || s.DtMs <= 0 {
		return 0
	}
	missed := MissedBetween(s.LastTs, ts, int64(s.DtMs))
	if missed <= 0 {
		return 0
	}
	if s.Period > 0 {
		// The baseline moves only when a bucket closes, so the fill goes
		// in a bucket at a time: O(seasonLen), not O(samples missed),
		// which at 1 s samples would be up to 259 200 per series.
		for n := min(missed, int64(seasonLen)*int64(s.D)); n > 0; {
			fill, _ := s.baseline()
			k := min(n, int64(s.D-s.AccN))
			s.Acc += fill * float64(k)
			s.AccN += uint16(k)
			n -= k
			s.closeBucket(sc)
		}
	}
	return missed
}

// add puts x into the history, unless it comes early (see due), and
// reports whether it did. sc provides the period search.
func (s *season) add(ts int64, x float64, sc *Scratch) bool {
	s.N = max(s.N, s.N+1) // saturates
	if !s.due(ts) {
		s.LastTs = ts
		return false
	}
	if s.D == 0 {
		if s.N > 1 && int(s.N-2) < seasonDecideN {
			s.setDt(int(s.N-2), int32(max(0, min(ts-s.LastTs, math.MaxInt32))))
		}
		if s.N > seasonDecideN {
			var dts [seasonDecideN - 1]int32
			for i := range dts {
				dts[i] = s.dt(i)
			}
			s.D, s.DtMs = chooseD(dts[:])
			clear(s.Ring.Q[:4*seasonDecideN])
			s.Ring.Count, s.Ring.Head, s.AccN, s.Acc = 0, 0, 0, 0
		}
	}
	s.LastTs = ts
	s.push(x, sc)
	return true
}

// due reports whether a sample at ts takes a place in the ring. The ring
// counts samples, D to a bucket, as so much time: a sample that comes less
// than three quarters of the learnt interval after the one before (the
// scrape interval lowered for a while: 1 s on a 15 s series) takes one only
// if it is the first in its interval-long slot of time, so the ring goes on
// at the learnt pace. Taken one and all, the 600 samples of ten minutes at
// 1 s moved a 15 s series' ring on by two and a half hours, and its
// seasonal baseline was that far out of phase for the three seasons its
// median looks back. Samples at the learnt interval, jitter and all, are
// all taken; slower ones are filled in by gap.
func (s *season) due(ts int64) bool {
	dt := int64(s.DtMs)
	if s.D == 0 || dt <= 0 || FullInterval(ts-s.LastTs, dt) {
		return true
	}
	return ts/dt != s.LastTs/dt
}

// push adds one sample to the open bucket.
func (s *season) push(x float64, sc *Scratch) {
	s.Acc += x
	s.AccN++
	s.closeBucket(sc)
}

// closeBucket moves the open bucket into the ring once it holds D samples.
func (s *season) closeBucket(sc *Scratch) {
	if s.D == 0 || s.AccN < s.D {
		return
	}
	s.Ring.Set(int(s.Ring.Head), s.Acc/float64(s.AccN))
	s.Ring.Head = (s.Ring.Head + 1) % seasonLen
	s.Ring.Count = min(s.Ring.Count+1, seasonLen)
	s.Acc, s.AccN = 0, 0
	s.SinceEst++
	if s.Ring.Count >= seasonLen/2 && s.SinceEst >= seasonReEst && sc != nil {
		s.SinceEst = 0
		s.estimate(sc)
	}
}

// chooseD picks the bucket width from sampling intervals in milliseconds
// and returns it with the median interval (0 if unknown).
func chooseD(dts []int32) (uint16, int32) {
	var buf [seasonDecideN]int32
	n := copy(buf[:], dts)
	b := buf[:n]
	// Insertion sort: 15 values.
	for i := 1; i < len(b); i++ {
		for j := i; j > 0 && b[j] < b[j-1]; j-- {
			b[j], b[j-1] = b[j-1], b[j]
		}
	}
	med := b[len(b)/2]
	if med <= 0 {
		return 4, 0
	}
	return bucketWidth(int64(med)), med
}

// bucketWidth is the bucket width for a median sampling interval in ms.
func bucketWidth(medMs int64) uint16 {
	d := math.Ceil(seasonSpanMs / (float64(medMs) * seasonLen))
	return uint16(max(1, min(d, seasonMaxD)))
}

// oldLayout reports whether the ring was laid out under the bound of 16
// samples a bucket that held until 2026-12-03: at intervals under ~64 s it
// spans less than a day and never finds the daily season.
func (s *season) oldLayout() bool {
	return s.D != 0 && s.DtMs > 0 && s.D != bucketWidth(int64(s.DtMs))
}

// estimate searches the history for its dominant period.
func (s *season) estimate(sc *Scratch) {
	n := int(s.Ring.Count)
	lin := sc.lin[:n]
	start := (int(s.Ring.Head) - n + seasonLen) % seasonLen
	for i := range lin {
		lin[i] = s.Ring.Get((start + i) % seasonLen)
	}
	s.Ring.Fit(func(k int) int { return (start + k) % seasonLen }, n)
	sc.periods = sc.seas.Find(sc.periods, lin, seasonMinP, seasonLen/seasonMedianOf, 1)
	s.Period = 0
	if len(sc.periods) > 0 && sc.periods[0].Strength >= seasonMinStr {
		s.Period = uint16(sc.periods[0].Samples)
	}
}

// baseline returns the seasonal expectation for the next sample, or false
// if no period is known.
func (s *season) baseline() (float64, bool) {
	if s.Period == 0 || s.D == 0 {
		return 0, false
	}
	p := int(s.Period)
	var v [seasonMedianOf]float64
	k := 0
	for j := 1; j <= seasonMedianOf && j*p <= int(s.Ring.Count); j++ {
		v[k] = s.Ring.Get((int(s.Ring.Head) - j*p + seasonLen*seasonMedianOf) % seasonLen)
		k++
	}
	return pastSeasons(&v, k)
}

// seen widens [lo, hi] to hold what the series had at the next sample's
// phase in its last seasonMedianOf seasons, and a bucket either side of
// it: a bucket's value is an average, so an edge of the season (a job that
// starts at 09:00) is seen whole only in the bucket after the one it falls
// in, and a phase a bucket early or late still is seen. The values, not
// their median: a value the series had is a value it had.
func (s *season) seen(lo, hi float64) (float64, float64) {
	if s.Period == 0 || s.D == 0 {
		return lo, hi
	}
	p, n := int(s.Period), int(s.Ring.Count)
	for j := 1; j <= seasonMedianOf; j++ {
		for off := -1; off <= 1; off++ {
			if j*p-off > n {
				continue
			}
			b := s.Ring.Get((int(s.Ring.Head) - j*p + off + seasonLen*seasonMedianOf) % seasonLen)
			lo, hi = min(lo, b), max(hi, b)
		}
	}
	return lo, hi
}

// pastSeasons combines the same phase of the last k seasons (v[:k]) into a
// baseline: the median of three, the mean of two, nothing from fewer, since
// one season back alone echoes every past spike.
func pastSeasons(v *[seasonMedianOf]float64, k int) (float64, bool) {
	switch k {
	case 0, 1:
		return 0, false
	case 2:
		return (v[0] + v[1]) / 2, true
	}
	return max(min(v[0], v[1]), min(max(v[0], v[1]), v[2])), true
}
