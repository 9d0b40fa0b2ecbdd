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

func newTheta(m, H int) *theta { return new(theta).init(m, H) }

// init makes th what newTheta(m, H) returns, in th's season array if it
// is of the season's length (see fitScratch.recycle).
func (th *theta) init(m, H int) *theta {
	*th = theta{m: int32(m), H: int32(H), seas: zeroed(th.seas, max(m, 1))}
	return th
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
func newDrift(m, H int) *theta { return new(theta).initDrift(m, H) }

// initDrift makes th what newDrift(m, H) returns (see init).
func (th *theta) initDrift(m, H int) *theta {
	th.init(m, H)
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
	d, ok := th.adjust(y, sc)
	if !ok {
		return false
	}
	return th.finish(d, th.search(d, sc))
}

// adjust is fit up to the search for α: it checks that y is long enough,
// sets the seasons and the drift, and returns the seasonally adjusted
// series d, from sc.
func (th *theta) adjust(y []float64, sc *fitScratch) (d []float64, ok bool) {
	n := len(y)
	if n < 3*max(int(th.m), 4) || n < 2*int(th.H)+16 {
		return nil, false
	}
	seas := sc.floats(len(th.seas))
	if th.m > 1 {
		seasonalIndices(seas, y, sc)
	}
	for i, v := range seas {
		th.seas[i] = float32(v)
	}
	d = sc.floats(n)
	for t, v := range y {
		d[t] = v - float64(th.seas[t%len(th.seas)])
	}
	th.drift = slope(d)
	if !th.full {
		th.drift /= 2
	}
	return d, true
}

// warm is the first origin of the errors sse sums.
func (th *theta) warm() int { return max(int(th.m), 16) }

// sse is the mean absolute error of the 1..H step forecasts with α = a
// from origins every fitStride samples of d (see holtWinters.run for why
// not the one-step error), the objective of the golden-section search for
// α. The drift term of the forecast k+1 steps ahead depends on α but not
// on the origin: it goes into drift (H values) once per evaluation, the
// same products as forecast's, rather than at every origin (a fifth of a
// refit of a series without a season went to them).
func (th *theta) sse(d, drift []float64, a float64) float64 {
	n, warm := len(d), th.warm()
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

// finish sets α and the level at the end of d.
func (th *theta) finish(d []float64, alpha float64) bool {
	th.alpha = alpha
	l := d[0]
	for _, v := range d[1:] {
		l += th.alpha * (v - l)
	}
	th.level = l
	th.pos = int32(len(d) % len(th.seas))
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

// goldenSearch minimises a unimodal function on [a, b] by golden-section
// search to a bracket of goldenTol, one value at a time: next gives the
// point whose value it needs, tell takes that value. Driven so, two
// searches run side by side (see fitThetaPair), each as it would alone.
// The point a last step would evaluate is not asked for: the bracket is
// then narrow enough, and the minimum its middle whatever the value (a
// search that evaluated it, as before, asked for 22 values, not 21).
type goldenSearch struct {
	a, b, c, d float64 // the bracket and its inner points, c < d
	fc, fd     float64
	told       int  // values told so far: c's, d's, then each new point's
	newC       bool // the point asked for is c (else d)
}

const goldenTol = 1e-4

func newGoldenSearch(a, b float64) goldenSearch {
	return goldenSearch{a: a, b: b, c: b - goldenRatio*(b-a), d: a + goldenRatio*(b-a)}
}

// goldenRatio is (√5−1)/2.
const goldenRatio = 0.6180339887498949

// next returns the point whose value the search needs; ok is false once
// the bracket is narrow enough (see min).
func (g *goldenSearch) next() (x float64, ok bool) {
	switch {
	case g.told == 0:
		return g.c, true
	case g.told == 1:
		return g.d, true
	case !(g.b-g.a > goldenTol):
		return 0, false
	case g.newC:
		return g.c, true
	}
	return g.d, true
}

// tell takes the value at the point next returned, and narrows the
// bracket.
func (g *goldenSearch) tell(v float64) {
	switch {
	case g.told == 0:
		g.fc = v
	case g.told == 1:
		g.fd = v
	case g.newC:
		g.fc = v
	default:
		g.fd = v
	}
	g.told++
	if g.told < 2 || !(g.b-g.a > goldenTol) {
		return
	}
	if g.fc < g.fd {
		g.b, g.d, g.fd = g.d, g.c, g.fc
		g.c = g.b - goldenRatio*(g.b-g.a)
		g.newC = true
	} else {
		g.a, g.c, g.fc = g.c, g.d, g.fd
		g.d = g.a + goldenRatio*(g.b-g.a)
		g.newC = false
	}
}

// min is the middle of the bracket.
func (g *goldenSearch) min() float64 { return (g.a + g.b) / 2 }

// fitThetaPair is fit of a on ya and of b on yb, their searches for α run
// side by side. The sums of a search's errors were half the refit of a
// series without a season (BenchmarkRefit shape=rate, CPU profile), each a
// chain of dependent additions; two in one loop, a Theta's and a drift's
// on 512 values took 20% less CPU time than one after the other (median
// of 5; the loop is bound less by the chains than by the absolute values'
// moves between registers). Each sum takes the same operations in the
// same order as alone, so each α is the same to the bit. a and b must
// have the same horizon and first origin (warm), and ya and yb the same
// length.
func fitThetaPair(a *theta, ya []float64, b *theta, yb []float64, sc *fitScratch) (okA, okB bool) {
	if len(ya) != len(yb) || a.warm() != b.warm() || a.H != b.H {
		return a.fit(ya, sc), b.fit(yb, sc)
	}
	da, okA := a.adjust(ya, sc)
	db, okB := b.adjust(yb, sc)
	if !okA || !okB {
		// At most one to fit: alone.
		if okA {
			okA = a.finish(da, a.search(da, sc))
		}
		if okB {
			okB = b.finish(db, b.search(db, sc))
		}
		return okA, okB
	}
	driftA, driftB := sc.floats(int(a.H)), sc.floats(int(b.H))
	ga, gb := newGoldenSearch(0.01, 1), newGoldenSearch(0.01, 1)
	for {
		xa, moreA := ga.next()
		xb, moreB := gb.next()
		switch {
		case moreA && moreB:
			va, vb := thetaSSEPair(a, da, driftA, xa, b, db, driftB, xb)
			ga.tell(va)
			gb.tell(vb)
			continue
		case moreA:
			ga.tell(a.sse(da, driftA, xa))
			continue
		case moreB:
			gb.tell(b.sse(db, driftB, xb))
			continue
		}
		break
	}
	return a.finish(da, ga.min()), b.finish(db, gb.min())
}

// search returns the α that minimises sse on d, by golden-section search.
func (th *theta) search(d []float64, sc *fitScratch) float64 {
	drift := sc.floats(int(th.H))
	g := newGoldenSearch(0.01, 1)
	for x, ok := g.next(); ok; x, ok = g.next() {
		g.tell(th.sse(d, drift, x))
	}
	return g.min()
}

// thetaSSEPair is a.sse(da, driftA, xa) and b.sse(db, driftB, xb) in one
// loop (see fitThetaPair).
func thetaSSEPair(a *theta, da, driftA []float64, xa float64, b *theta, db, driftB []float64, xb float64) (float64, float64) {
	n, warm, H := len(da), a.warm(), int(a.H)
	la, lb := da[0], db[0]
	var sa, sb float64
	var cnt int
	ia, ib := 1/xa, 1/xb
	for k := range driftA {
		driftA[k] = a.drift * (float64(k) + ia)
	}
	for k := range driftB {
		driftB[k] = b.drift * (float64(k) + ib)
	}
	for t := 1; t < n; t++ {
		if t >= warm && (t-warm)%fitStride == 0 && t+H <= n {
			sa, sb = absErrPair(sa, sb, da[t:t+H], db[t:t+H], la, lb, driftA, driftB)
			cnt += H
		}
		la += xa * (da[t] - la)
		lb += xb * (db[t] - lb)
	}
	c := float64(max(cnt, 1))
	return sa / c, sb / c
}

// absErrPair adds |oa[k] − la − da[k]| to sa and |ob[k] − lb − db[k]| to
// sb, k in order, for every k of da: the inner loop of thetaSSEPair.
func absErrPair(sa, sb float64, oa, ob []float64, la, lb float64, da, db []float64) (float64, float64) {
	oa, ob, db = oa[:len(da)], ob[:len(da)], db[:len(da)]
	for k, dk := range da {
		sa += math.Abs(oa[k] - la - dk)
		sb += math.Abs(ob[k] - lb - db[k])
	}
	return sa, sb
}
