package forecast

import (
	"fmt"
	"math"

	"github.com/omen-sidecar/omen/detect"
)

// theta is the Theta method (Assimakopoulos & Nikolopoulos 2000) in the
// form of Hyndman & Billah (2003): simple exponential smoothing with a drift
// of half the least-squares slope, on a seasonally adjusted series:
//
//	d_t = y_t − s[t mod m]                     (classical additive decomposition)
//	ℓ ← ℓ + α(d_t − ℓ)
//	ŷ_{n+h} = ℓ + (b/2)·(h − 1 + 1/α) + s[(n+h) mod m]
//
// with b the slope of the line fitted to d and α minimising the multi-step
// forecast error over the history. On the log scale the additive decomposition is the
// multiplicative one the M4 benchmark uses.
type theta struct {
	// int32s, which hold any season (at most History/2, 2^19) and horizon
	// (at most 2^16): as ints with pos's padding they took theta from the
	// 64-byte size class to the 80, in each of the ensemble's candidates.
	m int32
	H int32 // horizon α is fitted for
	// seas, fixed after the fit, is held as float32s: 4 bytes a season's
	// step, not 8, in each of the ensemble's theta candidates (two seasons
	// on two scales: 768 B of the pipeline's ~10 KB Model). The fit
	// works on the rounded indices too, so the level it leaves is the one
	// update continues.
	seas []float32
	pos  int32 // season index of the next observation
	// full: the drift is the whole least-squares slope, not half (see
	// newDrift). In pos's padding, it costs theta no bytes.
	full  bool
	alpha float64
	level float64
	drift float64 // b/2, or b if full
}

func newTheta(m, H int) *theta {
	return &theta{m: int32(m), H: int32(H), seas: make([]float32, max(m, 1))}
}

// newDrift returns simple exponential smoothing with the drift of the
// whole least-squares slope b on the seasonally adjusted series,
//
//	ŷ_{n+h} = ℓ + b·(h − 1 + 1/α) + s[(n+h) mod m],
//
// which on a line y_t = c + b·t, whose smoothed level lags it by
// b(1−α)/α, is exactly the line's continuation y_n + b·h. Theta's half
// slope and Holt-Winters' damped trend (φ ≤ 0.995) both flatten a steady
// trend far ahead: a disk filling at a constant rate, forecast 60 steps
// ahead, lost a quarter to a third of its rise (TestModelLinearTrend-
// LongHorizon), where predict_linear, a line fitted to the window, does
// not. As a candidate it is weighed by its validation errors like the
// others, so it counts where the trend held over the history.
func newDrift(m, H int) *theta {
	th := newTheta(m, H)
	th.full = true
	return th
}

func (th *theta) name() string {
	if th.full {
		return fmt.Sprintf("drift-%d", th.m)
	}
	return fmt.Sprintf("theta-%d", th.m)
}

func (th *theta) fit(y []float64, sc *fitScratch) bool {
	n := len(y)
	if n < 3*max(int(th.m), 4) || n < 2*int(th.H)+16 {
		return false
	}
	seas := sc.floats(len(th.seas))
	if th.m > 1 {
		seasonalIndices(seas, y, sc)
	}
	for i, v := range seas {
		th.seas[i] = float32(v)
	}
	d := sc.floats(n)
	for t, v := range y {
		d[t] = v - float64(th.seas[t%len(th.seas)])
	}
	th.drift = slope(d)
	if !th.full {
		th.drift /= 2
	}
	// Golden-section search for α on the mean absolute error of the 1..H
	// step forecasts from origins every fitStride samples (see
	// holtWinters.run for why not the one-step error).
	warm := max(int(th.m), 16)
	// The drift term of the forecast k+1 steps ahead depends on α but not
	// on the origin: computed once per evaluation, the same products as
	// forecast's, rather than at every origin (a fifth of a refit of a
	// series without a season went to them).
	drift := sc.floats(int(th.H))
	sse := func(a float64) float64 {
		l := d[0]
		var s float64
		var cnt int
		ia := 1 / a // the same value as forecast's 1/α, divided once
		for k := range drift {
			drift[k] = th.drift * (float64(k) + ia)
		}
		for t := 1; t < n; t++ {
			if t >= warm && (t-warm)%fitStride == 0 && t+int(th.H) <= n {
				for k, dk := range drift {
					s += math.Abs(d[t+k] - l - dk)
				}
				cnt += int(th.H)
			}
			l += a * (d[t] - l)
		}
		return s / float64(max(cnt, 1))
	}
	th.alpha = golden(sse, 0.01, 1)
	l := d[0]
	for _, v := range d[1:] {
		l += th.alpha * (v - l)
	}
	th.level = l
	th.pos = int32(n % len(th.seas))
	return !math.IsNaN(l)
}

func (th *theta) update(v float64) {
	d := v - float64(th.seas[th.pos])
	th.level += th.alpha * (d - th.level)
	if th.pos++; int(th.pos) == len(th.seas) {
		th.pos = 0
	}
}

func (th *theta) forecast(dst []float64) {
	p := int(th.pos)
	for k := range dst {
		dst[k] = th.level + th.drift*(float64(k)+1/th.alpha) + float64(th.seas[p])
		if p++; p == len(th.seas) {
			p = 0
		}
	}
}

// seasonalIndices writes additive seasonal indices for positions t mod m
// (t counted from y[0]) into s, m = len(s): the per-position mean of y minus
// its centred moving average of order m (2×m when m is even), centred to
// sum zero. Its buffers come from sc: a refit calls it several times per
// candidate, and they were most of what a refit allocated.
func seasonalIndices(s, y []float64, sc *fitScratch) {
	m := len(s)
	n := len(y)
	half := m / 2
	cnt := sc.floats(m)
	pre := sc.floats(n + 1) // pre[i] = y[0] + … + y[i−1]
	for i, v := range y {
		pre[i+1] = pre[i] + v
	}
	clear(s)
	for t := half; t+half < n; t++ {
		var ma float64
		if m%2 == 0 {
			ma = (pre[t+half] - pre[t-half+1] + 0.5*(y[t-half]+y[t+half])) / float64(m)
		} else {
			ma = (pre[t+half+1] - pre[t-half]) / float64(m)
		}
		s[t%m] += y[t] - ma
		cnt[t%m]++
	}
	var mean float64
	for j := range s {
		if cnt[j] > 0 {
			s[j] /= cnt[j]
		}
		mean += s[j]
	}
	mean /= float64(m)
	for j := range s {
		s[j] -= mean
	}
}

// slope is the least-squares slope of y against 0..len(y)−1, 0 for fewer
// than two values.
func slope(y []float64) float64 {
	if len(y) < 2 {
		return 0
	}
	_, s := detect.LineFit(y)
	return s
}

// golden minimises a unimodal f on [a, b] by golden-section search to a
// bracket of 1e-4.
func golden(f func(float64) float64, a, b float64) float64 {
	const r = 0.6180339887498949
	c, d := b-r*(b-a), a+r*(b-a)
	fc, fd := f(c), f(d)
	for b-a > 1e-4 {
		if fc < fd {
			b, d, fd = d, c, fc
			c = b - r*(b-a)
			fc = f(c)
		} else {
			a, c, fc = c, d, fd
			d = a + r*(b-a)
			fd = f(d)
		}
	}
	return (a + b) / 2
}
