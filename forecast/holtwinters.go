package forecast

import (
	"fmt"
	"math"
)

// holtWinters is exponential smoothing with a damped additive trend and up
// to two nested seasons (Holt–Winters; Taylor's double-seasonal form for two),
// in error-correction form. With ŝ = s1[t−m1]+s2[t−m2] (additive) or
// S = s1[t−m1]·s2[t−m2] (multiplicative):
//
//	additive:        ŷ = ℓ + φb + ŝ,   e = y − ŷ
//	                 ℓ ← ℓ + φb + αe,  b ← φb + αβe,  s_i ← s_i + γ_i e
//	multiplicative:  ŷ = (ℓ + φb)·S,   e = y − ŷ
//	                 ℓ ← ℓ + φb + αe/S,  b ← φb + αβe/S,  s_i ← s_i + γ_i e/((ℓ+φb)·S/s_i)
//	forecast h:      (ℓ + (φ+…+φ^h)·b) ⊕ s1[·] ⊕ s2[·]
//
// The parameters minimise the sum of squared one-step errors over the
// history (Nelder–Mead on logistic-mapped parameters); the initial state
// comes from the first one or two long cycles.
type holtWinters struct {
	// The counts and indices as int32s, beside mult in one word: seasons
	// are at most History/2 (2^19) long, and as ints they and their
	// padding were 32 of the bytes each of the ensemble's Holt-Winters
	// components holds for the series' life (TestModelHeldBytes).
	mult   bool
	m1, m2 int32 // m2 == 0: one season; m1 == 0: no season
	i1, i2 int32 // index of the next observation's season in s1, s2

	alpha, beta, phi, g1, g2 float64

	l, b float64
	// s holds the seasons once compacted, s1's m1 values then s2's m2, as
	// float32s: the seasons of the two Holt-Winters candidates on each
	// scale were 1 536 of the 8 776 bytes a fitted Model held
	// (TestModelHeldBytes), against 768 so, and in one array a slice
	// header less. Until then (the fits and the validation's updates and
	// forecasts) they are hwFit's float64 s1 and s2, so that the
	// validation errors that choose the weights and intervals are the
	// ones before: only the kept components round their seasons, by at
	// most 2^-24 of a seasonal swing, and keep updating them as float32s.
	s []float32

	// What only fitting reads, behind a pointer that compact drops: held
	// in the struct, its headers were 96 of the 264 bytes each of the
	// ensemble's Holt-Winters components kept (TestModelHeldBytes), for
	// the series' life.
	*hwFit
}

// hwFit is the part of a holtWinters only its fits read.
type hwFit struct {
	// last holds the unconstrained parameters of the previous fit, nil
	// before it. The ensemble fits each candidate twice, on the history
	// before the validation origins and then on all of it; the second fit
	// starts from the first's parameters with a small simplex and a third
	// of the evaluations (M4 Hourly self-split as good; refit about 10% faster).
	// The first starts from the previous refit's first fit when there is
	// one (warmStart).
	last []float64

	horizon int       // forecast horizon the parameters are fitted for
	buf     []float64 // the fit's forecasts, from its scratch (see fit)

	// initial state, kept so that the objective can replay from it. The
	// seasons come from the fit's scratch (see fit): valid until the
	// scratch goes back to its pool, so not to be read after the refit
	// (a kept model is compacted, which drops them).
	l0, b0   float64
	s10, s20 []float64
	// The seasons until compact, from the fit's scratch.
	s1, s2 []float64
}

func newHoltWinters(mult bool, seasons []int, horizon int) *holtWinters {
	return new(holtWinters).init(mult, seasons, horizon)
}

// init makes h what newHoltWinters returns, with h's hwFit if it has one
// (see fitScratch.recycle).
func (h *holtWinters) init(mult bool, seasons []int, horizon int) *holtWinters {
	fit := h.hwFit
	if fit == nil {
		fit = new(hwFit)
	}
	*fit = hwFit{horizon: horizon}
	*h = holtWinters{mult: mult, hwFit: fit}
	if len(seasons) > 0 {
		h.m1 = int32(seasons[0])
	}
	if len(seasons) > 1 {
		h.m2 = int32(seasons[1])
	}
	return h
}

func (h *holtWinters) name() string {
	kind := "add"
	if h.mult {
		kind = "mul"
	}
	return fmt.Sprintf("hw-%s-%d-%d", kind, h.m1, h.m2)
}

func (h *holtWinters) fit(y []float64, sc *fitScratch) bool {
	var s simplexSearch
	return h.prepare(y, &s, sc) && h.search(y, &s)
}

// prepare is fit up to the search for the parameters: it checks that y
// can be fitted, sets the initial state, and starts s.
func (h *holtWinters) prepare(y []float64, s *simplexSearch, sc *fitScratch) bool {
	long := int(max(h.m1, h.m2, 1))
	if len(y) < 2*long+h.horizon+8 {
		return false
	}
	if h.mult {
		for _, v := range y {
			if !(v > 0) {
				return false
			}
		}
	}
	// The initial seasons are read by the fit's objective only (compact
	// drops them from a kept model): from its scratch, as the rest, not
	// two arrays per candidate and refit left to the collector. The
	// seasons too: compact keeps them as float32s, and a candidate not
	// kept drops them with the scratch.
	h.s10, h.s20 = sc.floats(int(h.m1)), sc.floats(int(h.m2))
	h.s1, h.s2 = sc.floats(int(h.m1)), sc.floats(int(h.m2))
	h.initState(y, sc)
	// The objective's forecasts go in the refit's scratch: a buffer of the
	// model's own, dropped at the end of each fit, was the largest thing a
	// refit allocated (BenchmarkRefit).
	h.buf = sc.floats(h.horizon)
	// Parameters: α ∈ (0.001, 0.999), β = α·β' with β' ∈ (0, 0.5),
	// φ ∈ (0.8, 0.995), γ_i ∈ (0, 0.5)·(1−α).
	x0 := [...]float64{logit(0.2, 0.001, 0.999), logit(0.05, 0, 0.5), logit(0.95, 0.8, 0.995), logit(0.1, 0, 0.5), logit(0.1, 0, 0.5)}
	np := 3
	if h.m1 > 0 {
		np++
	}
	if h.m2 > 0 {
		np++
	}
	start, step, budget := x0[:np], 1.0, 60*np
	if h.last != nil {
		start, step, budget = h.last, 0.25, 20*np
	}
	s.init(start, step, budget, sc)
	return true
}

// finish sets the parameters best, which the next fit starts from, and
// the state at the end of y.
func (h *holtWinters) finish(y, best []float64) bool {
	h.last = append(h.last[:0], best...)
	h.setParams(best)
	ok := h.run(y) < math.Inf(1)
	h.buf = nil // the scratch's, valid only during the fit
	return ok
}

// compact drops the initial state, which only the objective replays from,
// and the parameters the next fit would start from: 2·(m1+m2)+5 values,
// and the headers of what only fitting reads. A compacted holtWinters
// is not fitted again: a refit builds new components.
func (h *holtWinters) compact() {
	if n := len(h.s1) + len(h.s2); n > 0 {
		h.s = make([]float32, n)
		for i, x := range h.s1 {
			h.s[i] = narrow[float32](x)
		}
		for i, x := range h.s2 {
			h.s[len(h.s1)+i] = narrow[float32](x)
		}
	}
	h.hwFit = nil
}

// seasons returns the compacted seasons s1 and s2.
func (h *holtWinters) seasons() (s1, s2 []float32) { return h.s[:h.m1], h.s[h.m1:] }

// narrow returns x as a T: itself as a float64, the nearest float32
// otherwise, held at float32's largest magnitude rather than made
// infinite (the state of values near it, which history clamps there).
func narrow[T float32 | float64](x float64) T {
	// r−r is 0 for a finite r only: r infinite where x is finite is a
	// float32's overflow. Written so, narrow inlines into hwStep.
	if r := T(x); r-r == 0 || x-x != 0 {
		return r
	}
	return T(clampFloat32(x))
}

func (h *holtWinters) setParams(p []float64) {
	h.alpha = logistic(p[0], 0.001, 0.999)
	h.beta = h.alpha * logistic(p[1], 0, 0.5)
	h.phi = logistic(p[2], 0.8, 0.995)
	h.g1, h.g2 = 0, 0
	if len(p) > 3 {
		h.g1 = (1 - h.alpha) * logistic(p[3], 0, 0.5)
	}
	if len(p) > 4 {
		h.g2 = (1 - h.alpha) * logistic(p[4], 0, 0.5)
	}
}

// run resets the state to the initial one, feeds y and returns the mean
// absolute error of the forecasts for 1..H steps made every fitStride
// samples after the first long cycle (+Inf if the recursion blows up).
// Fitting on multi-step errors rather than one-step ones matters: on smooth
// hourly data the one-step error is smallest for a near random walk (α → 1,
// γ → 0) that forgets the season, which is useless 48 steps ahead.
func (h *holtWinters) run(y []float64) float64 {
	copy(h.s1, h.s10)
	copy(h.s2, h.s20)
	H := h.horizon
	damp := h.damped()
	// Most of a fit's time is spent in this loop, so it is step and
	// forecast written out over local variables. An absent season becomes
	// a one-slot season of the unit value (0 added or 1 multiplied, with
	// γ = 0), which leaves every value as it was without a branch per step.
	mult := h.mult
	var unit1, unit2 [1]float64
	if mult {
		unit1[0], unit2[0] = 1, 1
	}
	alpha, ab, phi, g1, g2 := h.alpha, h.alpha*h.beta, h.phi, h.g1, h.g2
	s1, m1 := h.s1, int(h.m1)
	if m1 == 0 {
		s1, m1, g1 = unit1[:], 1, 0
	}
	s2, m2 := h.s2, int(h.m2)
	if m2 == 0 {
		s2, m2, g2 = unit2[:], 1, 0
	}
	l, b, i1, i2 := h.l0, h.b0, 0, 0
	next := int(max(h.m1, h.m2, 1)) // the next forecast origin
	var sae float64
	var cnt int
	for t, v := range y {
		if t == next {
			next += fitStride
			if t+H <= len(y) {
				obs := y[t : t+H]
				switch {
				case !mult && h.m1 == 0:
					// No season: the unit seasons' + 0 + 0 leave f as it
					// is (up to the sign of a zero, which |obs−f| does
					// not see), so the error is the same to the bit
					// without them. This loop is most of a refit of a
					// series without a season (omen loadgen's, say).
					sae = hwErrs(sae, obs, damp, l, b)
				case !mult && h.m2 == 0:
					sae = hwErrs1(sae, obs, damp, l, b, s1, i1)
				default:
					sae = hwErrs2(sae, obs, damp, l, b, mult, s1, i1, s2, i2)
				}
				cnt += H
			}
		}
		lb := l + phi*b
		if mult {
			S := s1[i1] * s2[i2]
			e := v - lb*S
			l = lb + alpha*e/S
			b = phi*b + ab*e/S
			x1 := s1[i1]
			s1[i1] += g1 * e / (lb * s2[i2])
			s2[i2] += g2 * e / (lb * x1)
		} else {
			e := v - lb - (s1[i1] + s2[i2])
			l = lb + alpha*e
			b = phi*b + ab*e
			s1[i1] += g1 * e
			s2[i2] += g2 * e
		}
		if i1++; i1 == m1 {
			i1 = 0
		}
		if i2++; i2 == m2 {
			i2 = 0
		}
	}
	h.l, h.b = l, b
	h.i1, h.i2 = int32(i1%max(m1, 1)), int32(i2%max(m2, 1))
	return runResult(sae, cnt)
}

// damped returns the damped trend's multipliers φ+…+φ^k, k = 1..H, in
// h.buf: they are the same at every origin, so run computes them once, the
// same products in the same order as forecast's.
func (h *holtWinters) damped() []float64 {
	H := h.horizon
	if cap(h.buf) < H {
		h.buf = make([]float64, H)
	}
	damp := h.buf[:H]
	d, phiH := 0.0, 1.0
	for k := range damp {
		phiH *= h.phi
		d += phiH
		damp[k] = d
	}
	return damp
}

// hwErrs, hwErrs1 and hwErrs2 are run's errors at one origin: sae plus
// the absolute errors |obs[k] − f_k| of the forecasts f_k (level l, trend
// b, the damped trend's multipliers damp) for every k in order, f_k
// without a season, with the additive season s1 from index j1, or with
// seasons s1 and s2 from j1 and j2, added or multiplied. They are
// functions of their own, not inlined, so that their few variables stay
// in registers: written out in run, whose many variables the compiler
// could not all keep there, the loop's counter went to the stack and back
// at every k, a store and a load on the path from one error to the next.
// A fit with one season (60, on 512 values of a random walk) took 12%
// less CPU time so (median of 5), one without a season as long (its loop
// is bound by the absolute values' moves between registers).
//
//go:noinline
func hwErrs(sae float64, obs, damp []float64, l, b float64) float64 {
	obs = obs[:len(damp)]
	for k, dk := range damp {
		sae += math.Abs(obs[k] - (l + dk*b))
	}
	return sae
}

//go:noinline
func hwErrs1(sae float64, obs, damp []float64, l, b float64, s1 []float64, j1 int) float64 {
	obs = obs[:len(damp)]
	m1 := len(s1)
	for k, dk := range damp {
		sae += math.Abs(obs[k] - (l + dk*b + s1[j1]))
		if j1++; j1 == m1 {
			j1 = 0
		}
	}
	return sae
}

//go:noinline
func hwErrs2(sae float64, obs, damp []float64, l, b float64, mult bool, s1 []float64, j1 int, s2 []float64, j2 int) float64 {
	obs = obs[:len(damp)]
	m1, m2 := len(s1), len(s2)
	for k, dk := range damp {
		var f float64
		if mult {
			f = (l + dk*b) * s1[j1] * s2[j2]
		} else {
			f = l + dk*b + s1[j1] + s2[j2]
		}
		sae += math.Abs(obs[k] - f)
		if j1++; j1 == m1 {
			j1 = 0
		}
		if j2++; j2 == m2 {
			j2 = 0
		}
	}
	return sae
}

func (h *holtWinters) update(v float64) { h.step(v) }

// step applies one observation and returns its one-step error.
func (h *holtWinters) step(v float64) float64 {
	if h.hwFit != nil {
		return hwStep(h, h.s1, h.s2, v)
	}
	s1, s2 := h.seasons()
	return hwStep(h, s1, s2, v)
}

// hwStep is step on the seasons s1 and s2, of either precision: every
// value is read as and computed in a float64, only the seasons' stores
// round (see narrow).
func hwStep[T float32 | float64](h *holtWinters, s1, s2 []T, v float64) float64 {
	lb := h.l + h.phi*h.b
	var e float64
	if h.mult {
		x1, x2 := 1.0, 1.0
		if h.m1 > 0 {
			x1 = float64(s1[h.i1])
		}
		if h.m2 > 0 {
			x2 = float64(s2[h.i2])
		}
		S := x1 * x2
		e = v - lb*S
		h.l = lb + h.alpha*e/S
		h.b = h.phi*h.b + h.alpha*h.beta*e/S
		if h.m1 > 0 {
			s1[h.i1] = narrow[T](x1 + h.g1*e/(lb*x2))
		}
		if h.m2 > 0 {
			s2[h.i2] = narrow[T](x2 + h.g2*e/(lb*x1))
		}
	} else {
		s := 0.0
		if h.m1 > 0 {
			s += float64(s1[h.i1])
		}
		if h.m2 > 0 {
			s += float64(s2[h.i2])
		}
		e = v - lb - s
		h.l = lb + h.alpha*e
		h.b = h.phi*h.b + h.alpha*h.beta*e
		if h.m1 > 0 {
			s1[h.i1] = narrow[T](float64(s1[h.i1]) + h.g1*e)
		}
		if h.m2 > 0 {
			s2[h.i2] = narrow[T](float64(s2[h.i2]) + h.g2*e)
		}
	}
	if h.m1 > 0 {
		if h.i1++; h.i1 == h.m1 {
			h.i1 = 0
		}
	}
	if h.m2 > 0 {
		if h.i2++; h.i2 == h.m2 {
			h.i2 = 0
		}
	}
	return e
}

func (h *holtWinters) forecast(dst []float64) {
	if h.hwFit != nil {
		hwForecast(h, h.s1, h.s2, dst)
		return
	}
	s1, s2 := h.seasons()
	hwForecast(h, s1, s2, dst)
}

func hwForecast[T float32 | float64](h *holtWinters, s1, s2 []T, dst []float64) {
	damp, phiH := 0.0, 1.0
	i1, i2 := h.i1, h.i2
	for k := range dst {
		phiH *= h.phi
		damp += phiH
		f := h.l + damp*h.b
		if h.mult {
			if h.m1 > 0 {
				f *= float64(s1[i1])
			}
			if h.m2 > 0 {
				f *= float64(s2[i2])
			}
		} else {
			if h.m1 > 0 {
				f += float64(s1[i1])
			}
			if h.m2 > 0 {
				f += float64(s2[i2])
			}
		}
		dst[k] = f
		if h.m1 > 0 {
			if i1++; i1 == h.m1 {
				i1 = 0
			}
		}
		if h.m2 > 0 {
			if i2++; i2 == h.m2 {
				i2 = 0
			}
		}
	}
}

// initState sets the initial level, trend and seasons: the seasons from a
// classical decomposition of the first four long cycles (or all of y),
// the level and trend from a line through the seasonally adjusted first
// long cycle.
func (h *holtWinters) initState(y []float64, sc *fitScratch) {
	long := int(max(h.m1, h.m2, 1))
	span := y[:min(len(y), 4*long)]
	if h.mult {
		ly := sc.floats(len(span))
		for i, v := range span {
			ly[i] = math.Log(v)
		}
		span = ly
	}
	adj := sc.floats(len(span))
	copy(adj, span)
	if h.m1 > 0 {
		seasonalIndices(h.s10, span, sc)
		for t := range adj {
			adj[t] -= h.s10[t%int(h.m1)]
		}
	}
	if h.m2 > 0 {
		// The long season holds what the short one leaves.
		seasonalIndices(h.s20, adj, sc)
		for t := range adj {
			adj[t] -= h.s20[t%int(h.m2)]
		}
	}
	first := adj[:max(long, min(len(adj), 2*long))]
	b := slope(first)
	var mean float64
	for _, v := range first {
		mean += v
	}
	mean /= float64(len(first))
	l := mean - b*float64(len(first)+1)/2 // one step before y[0]
	if h.mult {
		h.l0, h.b0 = math.Exp(l), math.Exp(l)*b
		for i := range h.s10 {
			h.s10[i] = math.Exp(h.s10[i])
		}
		for i := range h.s20 {
			h.s20[i] = math.Exp(h.s20[i])
		}
		return
	}
	h.l0, h.b0 = l, b
}

// fitHoltWintersPair is fit of a on ya and of b on yb, their searches for
// the parameters run side by side, each objective's two runs in one loop
// (see runPair). Each search takes the steps it would alone, so each fit
// is the same to the bit. a and b must be additive with the same seasons
// and horizon, ya and yb of the same length.
func fitHoltWintersPair(a *holtWinters, ya []float64, b *holtWinters, yb []float64, sc *fitScratch) (okA, okB bool) {
	if a.mult || b.mult || a.m1 != b.m1 || a.m2 != b.m2 || a.horizon != b.horizon || len(ya) != len(yb) {
		return a.fit(ya, sc), b.fit(yb, sc)
	}
	var sa, sb simplexSearch
	okA, okB = a.prepare(ya, &sa, sc), b.prepare(yb, &sb, sc)
	if !okA || !okB {
		// At most one to fit: alone.
		if okA {
			okA = a.search(ya, &sa)
		}
		if okB {
			okB = b.search(yb, &sb)
		}
		return okA, okB
	}
	for {
		pa, moreA := sa.next()
		pb, moreB := sb.next()
		switch {
		case moreA && moreB:
			a.setParams(pa)
			b.setParams(pb)
			va, vb := runPair(a, ya, b, yb)
			sa.tell(va)
			sb.tell(vb)
			continue
		case moreA:
			a.setParams(pa)
			sa.tell(a.run(ya))
			continue
		case moreB:
			b.setParams(pb)
			sb.tell(b.run(yb))
			continue
		}
		break
	}
	return a.finish(ya, sa.best()), b.finish(yb, sb.best())
}

// search is fit after prepare.
func (h *holtWinters) search(y []float64, s *simplexSearch) bool {
	for p, ok := s.next(); ok; p, ok = s.next() {
		h.setParams(p)
		s.tell(h.run(y))
	}
	return h.finish(y, s.best())
}

// runPair is a.run(ya) and b.run(yb) in one loop, for two additive models
// with the same seasons and horizon (see fitHoltWintersPair): each step
// of the recursion is a chain of dependent operations, which left the
// processor idle most of each step, and the other model's fills it. Each
// model's values take the same operations in the same order as in run.
func runPair(a *holtWinters, ya []float64, b *holtWinters, yb []float64) (float64, float64) {
	copy(a.s1, a.s10)
	copy(a.s2, a.s20)
	copy(b.s1, b.s10)
	copy(b.s2, b.s20)
	H := a.horizon
	dampA, dampB := a.damped(), b.damped()
	// An absent season is a one-slot season of 0, as in run; each model
	// has its own.
	var unit [4][1]float64
	alphaA, abA, phiA, g1A, g2A := a.alpha, a.alpha*a.beta, a.phi, a.g1, a.g2
	alphaB, abB, phiB, g1B, g2B := b.alpha, b.alpha*b.beta, b.phi, b.g1, b.g2
	s1A, s1B, m1 := a.s1, b.s1, int(a.m1)
	if m1 == 0 {
		s1A, s1B, m1, g1A, g1B = unit[0][:], unit[1][:], 1, 0, 0
	}
	s2A, s2B, m2 := a.s2, b.s2, int(a.m2)
	if m2 == 0 {
		s2A, s2B, m2, g2A, g2B = unit[2][:], unit[3][:], 1, 0, 0
	}
	lA, bA, lB, bB, i1, i2 := a.l0, a.b0, b.l0, b.b0, 0, 0
	next := int(max(a.m1, a.m2, 1)) // the next forecast origin
	var saeA, saeB float64
	var cnt int
	yb = yb[:len(ya)]
	for t, vA := range ya {
		vB := yb[t]
		if t == next {
			next += fitStride
			if t+H <= len(ya) {
				obsA, obsB := ya[t:t+H], yb[t:t+H]
				switch {
				case a.m1 == 0:
					saeA, saeB = hwErrsPair(saeA, saeB, obsA, obsB, dampA, dampB, lA, bA, lB, bB)
				case a.m2 == 0:
					saeA, saeB = hwErrs1Pair(saeA, saeB, obsA, obsB, dampA, dampB, lA, bA, lB, bB, s1A, s1B, i1)
				default:
					saeA = hwErrs2(saeA, obsA, dampA, lA, bA, false, s1A, i1, s2A, i2)
					saeB = hwErrs2(saeB, obsB, dampB, lB, bB, false, s1B, i1, s2B, i2)
				}
				cnt += H
			}
		}
		lbA := lA + phiA*bA
		lbB := lB + phiB*bB
		eA := vA - lbA - (s1A[i1] + s2A[i2])
		eB := vB - lbB - (s1B[i1] + s2B[i2])
		lA = lbA + alphaA*eA
		lB = lbB + alphaB*eB
		bA = phiA*bA + abA*eA
		bB = phiB*bB + abB*eB
		s1A[i1] += g1A * eA
		s1B[i1] += g1B * eB
		s2A[i2] += g2A * eA
		s2B[i2] += g2B * eB
		if i1++; i1 == m1 {
			i1 = 0
		}
		if i2++; i2 == m2 {
			i2 = 0
		}
	}
	a.l, a.b, b.l, b.b = lA, bA, lB, bB
	a.i1, a.i2 = int32(i1%max(m1, 1)), int32(i2%max(m2, 1))
	b.i1, b.i2 = a.i1, a.i2
	return runResult(saeA, cnt), runResult(saeB, cnt)
}

// hwErrsPair and hwErrs1Pair are hwErrs and hwErrs1 of two models in one
// loop: the sums' chains of additions side by side.
//
//go:noinline
func hwErrsPair(saeA, saeB float64, obsA, obsB, dampA, dampB []float64, lA, bA, lB, bB float64) (float64, float64) {
	obsA, obsB, dampB = obsA[:len(dampA)], obsB[:len(dampA)], dampB[:len(dampA)]
	for k, dk := range dampA {
		saeA += math.Abs(obsA[k] - (lA + dk*bA))
		saeB += math.Abs(obsB[k] - (lB + dampB[k]*bB))
	}
	return saeA, saeB
}

//go:noinline
func hwErrs1Pair(saeA, saeB float64, obsA, obsB, dampA, dampB []float64, lA, bA, lB, bB float64, s1A, s1B []float64, j1 int) (float64, float64) {
	obsA, obsB, dampB = obsA[:len(dampA)], obsB[:len(dampA)], dampB[:len(dampA)]
	s1B = s1B[:len(s1A)]
	m1 := len(s1A)
	for k, dk := range dampA {
		saeA += math.Abs(obsA[k] - (lA + dk*bA + s1A[j1]))
		saeB += math.Abs(obsB[k] - (lB + dampB[k]*bB + s1B[j1]))
		if j1++; j1 == m1 {
			j1 = 0
		}
	}
	return saeA, saeB
}

// runResult is run's mean of cnt absolute errors summing to sae, +Inf if
// there are none or the recursion blew up.
func runResult(sae float64, cnt int) float64 {
	if math.IsNaN(sae) || cnt == 0 {
		return math.Inf(1)
	}
	return sae / float64(cnt)
}
