package detect

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/dsp/fourier"
)

// minRelPeak is the smallest periodogram peak, relative to the strongest,
// that can count as a period. A Hann window's sidelobes stay below it.
const minRelPeak = 1e-2

// tiny keeps the logarithm of a zero periodogram ordinate finite.
const tiny = 1e-300

// Period is a seasonal period found by Seasonality.
type Period struct {
	// Samples is the period length in samples.
	Samples int
	// Strength is the sample autocorrelation at lag Samples, corrected for
	// the shrinking overlap and capped at 1:
	//
	//	r(p) = L/(L-p) · Σ_{t=p}^{L-1} e_t e_{t-p} / Σ_t e_t²,  e = x - (least-squares line)
	// Close to 1 means a clean,
	// repeating cycle; near 0 a barely visible one.
	Strength float64
	// Power is the periodogram peak divided by the estimated noise floor
	// (the median periodogram ordinate over ln 2). Under white noise it is
	// approximately exponential with mean 1.
	Power float64
}

// Seasonality finds dominant periods in a series with the FFT.
//
// The series is detrended with a least-squares line, zero-padded to a power
// of two at least twice its length (so the circular autocorrelation equals the
// linear one) and transformed with gonum's real FFT, once Hann-windowed for the
// periodogram and once as is for the autocorrelation. A candidate period is a
// local maximum of the periodogram whose power exceeds the noise floor by
// ln(L/2)+SignificanceExtra and reaches 1% of the strongest peak (a Bonferroni-style bound: under white noise each
// ordinate over the floor is about Exp(1), so the chance that any of the L/2
// independent ordinates passes is about e^-SignificanceExtra). Each candidate
// is then refined by parabolic interpolation of the log periodogram around
// the peak (a bin k stands for the non-integer period nfft/k, too coarse for
// long periods), rounded to whole samples, and kept if the autocorrelation at
// that lag, computed from the same machinery, is at least MinStrength.
//
// A Seasonality owns every buffer it uses: after NewSeasonality no method
// allocates. It is not safe for concurrent use.
type Seasonality struct {
	// SignificanceExtra is added to ln(L/2) to form the peak threshold over
	// the noise floor. The default 6 keeps the white-noise false-detection
	// chance near 0.25%.
	SignificanceExtra float64
	// MinStrength is the smallest autocorrelation at the refined period that
	// counts as seasonal. The default is 0.1.
	MinStrength float64

	n     int
	fft   *fourier.FFT
	buf   []float64    // padded, windowed input; later the autocorrelation
	raw   []float64    // padded, detrended input
	coef  []complex128 // FFT coefficients
	power []float64    // periodogram, index = bin
	tmp   []float64    // scratch for the median
	cand  []Period     // candidates before sorting
}

// SeasonalityFFTLen is the FFT length a Seasonality for series of up to n
// samples uses: a power of two at least 2n (n at least 4). Its results for
// an input depend only on the input and this length, so one Seasonality
// serves every input length with the same FFT length.
func SeasonalityFFTLen(n int) int {
	nfft := 8
	for nfft < 2*n {
		nfft <<= 1
	}
	return nfft
}

// NewSeasonality returns a Seasonality for series of up to n samples; longer
// inputs are cut to their last n samples.
func NewSeasonality(n int) *Seasonality {
	n = max(n, 4)
	nfft := SeasonalityFFTLen(n)
	return &Seasonality{
		SignificanceExtra: 6,
		MinStrength:       0.1,
		n:                 n,
		fft:               fourier.NewFFT(nfft),
		buf:               make([]float64, nfft),
		raw:               make([]float64, nfft),
		coef:              make([]complex128, nfft/2+1),
		power:             make([]float64, nfft/2+1),
		tmp:               make([]float64, nfft/2+1),
		cand:              make([]Period, 0, nfft/2+1),
	}
}

// Len returns the maximum series length analysed.
func (s *Seasonality) Len() int { return s.n }

// Periods appends to dst[:0] up to k dominant periods of x, in samples, with
// minPeriod <= p <= maxPeriod, strongest first, and returns it. It returns
// none if no peak is significant. Periods longer than half the analysed length
// are never reported, because fewer than two cycles cannot show a repetition.
func (s *Seasonality) Periods(dst []int, x []float64, minPeriod, maxPeriod, k int) []int {
	dst = dst[:0]
	for _, p := range s.find(x, minPeriod, maxPeriod, k) {
		dst = append(dst, p.Samples)
	}
	return dst
}

// Find is Periods with the strength and power of each period.
func (s *Seasonality) Find(dst []Period, x []float64, minPeriod, maxPeriod, k int) []Period {
	return append(dst[:0], s.find(x, minPeriod, maxPeriod, k)...)
}

// find returns candidates in s.cand, valid until the next call.
func (s *Seasonality) find(x []float64, minPeriod, maxPeriod, k int) []Period {
	s.cand = s.cand[:0]
	if len(x) > s.n {
		x = x[len(x)-s.n:]
	}
	L := len(x)
	if minPeriod < 2 {
		minPeriod = 2
	}
	if maxPeriod > L/2 {
		maxPeriod = L / 2
	}
	if k <= 0 || L < 8 || minPeriod > maxPeriod {
		return s.cand
	}
	if !s.detrend(x) {
		return s.cand // constant (after detrending) or non-finite
	}
	nfft := len(s.buf)
	// Periodogram of the Hann-windowed series: the window's sidelobes fall
	// off fast, so the leakage around a strong peak does not form peaks of
	// its own.
	copy(s.raw, s.buf)
	for i := range L {
		w := 0.5 - 0.5*math.Cos(2*math.Pi*(float64(i)+0.5)/float64(L))
		s.buf[i] *= w
	}
	s.fft.Coefficients(s.coef, s.buf)
	maxPow := 0.0
	for i, c := range s.coef {
		s.power[i] = real(c)*real(c) + imag(c)*imag(c)
		if i > 0 {
			maxPow = max(maxPow, s.power[i])
		}
	}
	// Noise floor: the median of the periodogram (DC excluded) over ln 2,
	// which estimates the mean of an exponential ordinate and is barely moved
	// by a few strong seasonal peaks.
	tmp := s.tmp[:len(s.power)-1]
	copy(tmp, s.power[1:])
	floor := SelectK(tmp, len(tmp)/2) / math.Ln2
	// On clean signals the median is tiny and the floor would let the
	// window's far sidelobes through, so a peak must also reach a fraction
	// of the strongest one.
	floor = max(floor, maxPow*minRelPeak/(math.Log(float64(L)/2)+s.SignificanceExtra), math.SmallestNonzeroFloat64)
	threshold := math.Log(float64(L)/2) + s.SignificanceExtra

	// The autocovariance of the unwindowed series is the inverse transform
	// of its power spectrum.
	s.fft.Coefficients(s.coef, s.raw)
	for i, c := range s.coef {
		s.coef[i] = complex(real(c)*real(c)+imag(c)*imag(c), 0)
	}
	acf := s.fft.Sequence(s.buf, s.coef)
	if !(acf[0] > 0) {
		return s.cand
	}
	// Dividing by the overlap L-lag removes the estimator's linear decay,
	// which would otherwise pull the local maximum to shorter lags.
	norm := 1 / acf[0]
	for lag := 1; lag < L; lag++ {
		acf[lag] *= norm * float64(L) / float64(L-lag)
	}
	acf[0] = 1

	// Bins that correspond to periods in [minPeriod, maxPeriod]; one bin of
	// slack on each side so that the refinement can reach the edges.
	loBin := int(math.Floor(float64(nfft)/float64(maxPeriod))) - 1
	hiBin := int(math.Ceil(float64(nfft)/float64(minPeriod))) + 1
	loBin = max(loBin, 1)
	hiBin = min(hiBin, len(s.power)-2)
	for b := loBin; b <= hiBin; b++ {
		p := s.power[b]
		if p < s.power[b-1] || p < s.power[b+1] || p/floor < threshold {
			continue
		}
		// Refine the frequency by fitting a parabola through the log power
		// of the peak and its neighbours: for a Hann-windowed sinusoid this
		// is accurate to a small fraction of a bin, far better than the bin
		// grid for long periods.
		y0, y1, y2 := math.Log(s.power[b-1]+tiny), math.Log(p+tiny), math.Log(s.power[b+1]+tiny)
		delta := 0.0
		if den := y0 - 2*y1 + y2; den < 0 {
			delta = 0.5 * (y0 - y2) / den
		}
		best := int(math.Round(float64(nfft) / (float64(b) + delta)))
		if best < minPeriod || best > maxPeriod {
			continue
		}
		bestR := acf[best]
		if bestR < s.MinStrength {
			continue
		}
		dup := false
		for i := range s.cand {
			if s.cand[i].Samples == best {
				dup = true
				if p/floor > s.cand[i].Power {
					s.cand[i].Power = p / floor
				}
				break
			}
		}
		if !dup {
			s.cand = append(s.cand, Period{Samples: best, Strength: min(bestR, 1), Power: p / floor})
		}
	}
	slices.SortFunc(s.cand, func(a, b Period) int {
		switch {
		case a.Power > b.Power:
			return -1
		case a.Power < b.Power:
			return 1
		}
		return a.Samples - b.Samples
	})
	if len(s.cand) > k {
		s.cand = s.cand[:k]
	}
	return s.cand
}

// LineFit returns the mean of x and the slope of its least-squares line
// against the positions 0..len(x)−1, measured about their centre so that
// long windows lose no precision; the slope is NaN for fewer than two
// values. The seasonality search detrends with it, the forecasters' Theta
// method draws its trend line with it.
func LineFit(x []float64) (mean, slope float64) {
	n := float64(len(x))
	tm := (n - 1) / 2
	for _, v := range x {
		mean += v
	}
	mean /= n
	var sxy, sxx float64
	for i, v := range x {
		d := float64(i) - tm
		sxy += d * (v - mean)
		sxx += d * d
	}
	return mean, sxy / sxx
}

// detrend writes x minus its least-squares line into s.buf and zero-pads the
// rest. It reports false if nothing is left or x holds a non-finite value.
func (s *Seasonality) detrend(x []float64) bool {
	L := float64(len(x))
	tm := (L - 1) / 2
	xm, slope := LineFit(x)
	var ss float64
	for i, v := range x {
		r := v - xm - slope*(float64(i)-tm)
		s.buf[i] = r
		ss += r * r
	}
	clear(s.buf[len(x):])
	scale := math.Abs(xm) + 1
	return !math.IsNaN(ss) && !math.IsInf(ss, 0) && ss > 1e-20*scale*scale*L
}
