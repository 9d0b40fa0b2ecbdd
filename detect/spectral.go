package detect

import (
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// srExtend is the number of points the spectral residual appends past the
// window before transforming, as Ren et al. do, so that the newest sample is
// not at the edge of the window where the saliency map is unreliable.
const srExtend = 5

// srAvg is the width of the moving average over the log-amplitude spectrum.
const srAvg = 3

// SpectralResidual computes the spectral residual saliency map of Ren et
// al., "Time-Series Anomaly Detection Service at Microsoft", KDD 2019:
//
//	A = |F(x)|, P = arg F(x), L = ln A
//	R = L - h_q * L               (h_q: moving average of width q = 3)
//	S = |F⁻¹(exp(R + iP))|
//
// A point whose saliency stands out from the window's mean saliency is
// spectrally surprising. Before the transform the window is extended by
// m = 5 points (the paper extrapolates the slope; we ramp from x_{n-1} to
// x_1, see transform), so the newest point is not at the edge. It owns its buffers and does not allocate after construction;
// it is not safe for concurrent use.
type SpectralResidual struct {
	n     int
	fft   *fourier.FFT
	buf   []float64
	coef  []complex128
	logA  []float64
	outSq []float64
}

// NewSpectralResidual returns a SpectralResidual for windows of n samples.
func NewSpectralResidual(n int) *SpectralResidual {
	m := n + srExtend
	return &SpectralResidual{
		n:     n,
		fft:   fourier.NewFFT(m),
		buf:   make([]float64, m),
		coef:  make([]complex128, m/2+1),
		logA:  make([]float64, m/2+1),
		outSq: make([]float64, m),
	}
}

// Saliency writes the saliency map of x (len(x) must be n) into dst[:n] and
// returns it.
func (s *SpectralResidual) Saliency(dst, x []float64) []float64 {
	s.transform(x)
	dst = append(dst[:0], s.buf[:s.n]...)
	return dst
}

// Last returns the saliency of the newest point of x relative to the mean
// saliency of the window, (S_n - mean S) / mean S, the statistic Ren et al.
// threshold. It is 0 for a constant window.
func (s *SpectralResidual) Last(x []float64) float64 { return s.Newest(x, 1) }

// Newest returns the largest of (S_i - mean S) / mean S over the newest k
// points of x, for callers that transform every k samples.
func (s *SpectralResidual) Newest(x []float64, k int) float64 {
	s.transform(x)
	var mean float64
	for _, v := range s.buf[:s.n] {
		mean += v
	}
	mean /= float64(s.n)
	if !(mean > 1e-300) {
		return 0
	}
	top := s.buf[s.n-1]
	for _, v := range s.buf[max(0, s.n-k) : s.n-1] {
		top = max(top, v)
	}
	return (top - mean) / mean
}

// transform leaves the saliency map of the extended window in s.buf.
func (s *SpectralResidual) transform(x []float64) {
	n, m := s.n, len(s.buf)
	copy(s.buf, x[:n])
	// Ramp from the point before the newest to the first one: the wrap of
	// the circular transform is then smooth, and the extension does not
	// echo the newest point the way the paper's slope extrapolation does
	// (which hides a spike in the newest sample behind its own echo).
	from, to := x[max(0, n-2)], x[0]
	for i := n; i < m; i++ {
		f := float64(i-n+1) / float64(m-n+1)
		s.buf[i] = from + f*(to-from)
	}
	s.fft.Coefficients(s.coef, s.buf)
	for i, c := range s.coef {
		s.logA[i] = math.Log(math.Hypot(real(c), imag(c)) + 1e-12)
	}
	k := len(s.coef)
	for i, c := range s.coef {
		// Moving average with the window clipped at the ends of the
		// half-spectrum.
		lo, hi := max(0, i-srAvg/2), min(k-1, i+srAvg/2)
		var avg float64
		for j := lo; j <= hi; j++ {
			avg += s.logA[j]
		}
		avg /= float64(hi - lo + 1)
		amp := math.Hypot(real(c), imag(c))
		if amp == 0 {
			s.coef[i] = 0
			continue
		}
		// exp(R + iP) = exp(L - avg) · c/|c| = c · exp(-avg) (the 1e-12
		// guard aside).
		f := math.Exp(s.logA[i]-avg) / amp
		s.coef[i] = complex(real(c)*f, imag(c)*f)
	}
	s.fft.Sequence(s.buf, s.coef)
	inv := 1 / float64(m)
	for i, v := range s.buf {
		s.buf[i] = math.Abs(v * inv)
	}
}
