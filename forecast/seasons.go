package forecast

import (
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/omen-sidecar/omen/detect"
)

// maxLongSeasons is the most long-season candidates detectSeasons offers.
const maxLongSeasons = 1

// seasonalities keeps season detectors, FFT plans included, between fits,
// one pool per FFT size (index: log2 of it): building one took a third of
// the detection's time in a refit (CPU profile of omen serve at 100k
// series). One built for the longest input of an FFT size serves every
// shorter input of that size (see detect.SeasonalityFFTLen): windows still
// filling up (a few hundred samples, a different length at every refit)
// reuse detectors as full ones do.
var seasonalities [40]sync.Pool

// seasonality returns a detector for inputs of n values and the pool to
// return it to.
func seasonality(n int) (*detect.Seasonality, *sync.Pool) {
	nfft := detect.SeasonalityFFTLen(n)
	pool := &seasonalities[bits.Len(uint(nfft))]
	if s, _ := pool.Get().(*detect.Seasonality); s != nil {
		return s, pool
	}
	return detect.NewSeasonality(nfft / 2), pool
}

// detectSeasons returns the seasons of y, in samples: first the dominant
// period found by detect's FFT seasonality, then up to maxLongSeasons
// candidates for a longer season that is a whole multiple of it (weekly
// over daily), each an alternative to the others; or none.
//
// The FFT peak of the dominant period is refined to the integer lag with the
// highest autocorrelation nearby (the periodogram's bins are coarse and a
// 24-sample cycle can come out as 23). The longer season is either another
// detected period within 3% of a multiple of the first, snapped to it, or
// the period detected in the series summed over blocks of the first period
// (a weekly cycle in hourly data is a 7-block cycle of daily sums, which is
// far easier to see than the weak 168-sample line in the raw spectrum).
//
// Its temporary buffers come from sc (nil: newly allocated ones).
func detectSeasons(y []float64, maxPeriod int, sc *fitScratch) []int {
	n := len(y)
	maxPeriod = min(maxPeriod, n/2)
	if n < 16 || maxPeriod < 2 {
		return nil
	}
	s, pool := seasonality(n)
	var found [4]int // Periods' result, on the stack
	ps := s.Periods(found[:0], y, 2, maxPeriod, len(found))
	pool.Put(s)
	if len(ps) == 0 {
		return nil
	}
	p1 := refinePeriod(y, ps[0])
	seasons := []int{p1}
	add := func(p int) {
		// Two-season models need two long cycles to start and more to validate.
		if p <= p1 || p > maxPeriod || 3*p > n || len(seasons) > maxLongSeasons || slices.Contains(seasons, p) {
			return
		}
		seasons = append(seasons, p)
	}
	for _, q := range ps[1:] {
		k := float64(q) / float64(p1)
		kr := math.Round(k)
		if kr >= 2 && math.Abs(k-kr) <= 0.03*kr {
			add(int(kr) * p1)
		}
	}
	if n/p1 >= 8 {
		nb := n / p1
		agg := sc.floats(nb)
		off := n - nb*p1
		for b := range agg {
			for _, v := range y[off+b*p1 : off+(b+1)*p1] {
				agg[b] += v
			}
		}
		// The block series is short (a month of days is ~30 points), too
		// short for a significance test to pass a weekly cycle reliably, so
		// the strongest periodogram peaks are taken as they are: a wrong
		// candidate costs only validation time, the rolling-origin errors
		// decide whether it is used. Periods of 2 blocks sit at the Nyquist
		// frequency, where the windowed periodogram cannot resolve a peak.
		sb, pool := seasonality(nb)
		sig := sb.SignificanceExtra
		sb.SignificanceExtra = -math.Log(float64(nb) / 2)
		var long [maxLongSeasons]int
		for _, q := range sb.Periods(long[:0], agg, 3, nb/2, maxLongSeasons) {
			add(q * p1)
		}
		sb.SignificanceExtra = sig
		pool.Put(sb)
	}
	return seasons
}

// refinePeriod returns the lag within ±2 of p (±p/12 for long periods) at
// which the autocorrelation of y, minus its mean, is highest.
func refinePeriod(y []float64, p int) int {
	n := len(y)
	var mean float64
	for _, v := range y {
		mean += v
	}
	mean /= float64(n)
	w := max(2, p/12)
	best, bestR := p, math.Inf(-1)
	for lag := max(2, p-w); lag <= p+w && lag < n/2; lag++ {
		var s, ss float64
		for t := lag; t < n; t++ {
			s += (y[t] - mean) * (y[t-lag] - mean)
		}
		for t := 0; t < n; t++ {
			ss += (y[t] - mean) * (y[t] - mean)
		}
		r := s / ss * float64(n) / float64(n-lag)
		if r > bestR {
			best, bestR = lag, r
		}
	}
	return best
}
