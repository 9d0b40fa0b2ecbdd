package forecast

import (
	"fmt"
	"math"
	"slices"
)

// Fourier regression settings. The daily cycle of hourly data needs all
// its 12 harmonics to follow sharp peaks; a longer season only adds the
// harmonics that the shorter one does not already have.
const (
	fourierMaxHarmonics = 12    // per season
	fourierHalfLife     = 336.0 // samples; weights of the least-squares fit
	fourierRidge        = 1e-6  // relative ridge on the normal equations
)

// fourierReg is a multi-seasonal harmonic regression with a smoothed level
// correction:
//
//	f(t) = c + Σ_p Σ_{k=1..K_p} a_pk cos(2πkt/p) + b_pk sin(2πkt/p)
//	r ← φr + α(y_t − f(t) − φr)          (the damped residual level)
//	ŷ_{n+h} = f(n+h) + φ^h·r
//
// The coefficients are weighted least squares with weights halving every
// fourierHalfLife samples back from the end, so the profile follows slow
// changes; α and φ minimise the multi-step error of the residual level. Harmonics
// of a long season that coincide with a shorter season's are left out, so
// a daily plus weekly fit stays full rank.
type fourierReg struct {
	periods []int
	H       int       // horizon the level correction is fitted for
	harm    []int     // frequency of each harmonic pair, in cycles per longest season
	coef    []float64 // c, then (a, b) per frequency
	prof    []float64 // f over one cycle of the longest season
	pos     int       // index in prof of the next observation
	r       float64
	alpha   float64
	phi     float64
}

func newFourierReg(periods []int, H int) *fourierReg { return new(fourierReg).init(periods, H) }

// init makes f what newFourierReg returns, in f's arrays where they hold
// what it needs (see fitScratch.recycle).
func (f *fourierReg) init(periods []int, H int) *fourierReg {
	// The harmonics are gathered on the stack and copied once: the
	// appends' doublings were a sixth of a refit's allocations. Not in
	// one array with periods: compact drops them, and not the periods.
	var found [64]int
	harm := found[:0]
	// The seasons are nested (each a multiple of the first), so f repeats
	// with the longest one, L, and every harmonic is a whole number of
	// cycles per L. f is tabulated over L once per fit: update and forecast
	// then cost a lookup instead of a sum of sines.
	L := periods[len(periods)-1]
	for _, p := range periods {
		K := min(p/2, fourierMaxHarmonics)
		if len(harm) > 0 {
			// A longer season gets as many new harmonics as fit its ratio to
			// the shortest.
			K = min(p/2, fourierMaxHarmonics+2*(p/periods[0]))
		}
		for k := 1; k <= K; k++ {
			// A scan of the few dozen harmonics so far, not a set: a map
			// of them was garbage at each of a refit's Fourier candidates.
			h := k * L / p
			if slices.Contains(harm, h) {
				continue
			}
			harm = append(harm, h)
		}
	}
	*f = fourierReg{
		periods: zeroed(f.periods, len(periods)),
		H:       H,
		harm:    zeroed(f.harm, len(harm)),
		coef:    zeroed(f.coef, 1+2*len(harm)),
		prof:    zeroed(f.prof, L),
	}
	copy(f.periods, periods)
	copy(f.harm, harm)
	return f
}

// zeroed returns n zeros in x's array if it is of n exactly (what a
// component keeps is then of the size a new one's is), a new one if not.
func zeroed[T any](x []T, n int) []T {
	if cap(x) != n {
		return make([]T, n)
	}
	x = x[:n]
	clear(x)
	return x
}

func (f *fourierReg) name() string { return fmt.Sprintf("fourier-%v", f.periods) }

func (f *fourierReg) fit(y []float64, sc *fitScratch) bool {
	ok, _ := fitFourierPair(f, y, nil, nil, sc)
	return ok
}

// fitFourierPair is fit of f on y and, unless g is nil, of g on z: with
// the same seasons and horizon, and y and z of the same length, the normal
// equations' matrix is the same (the weights, not the values, make it), so
// it is built and factorised once for both (the factorisation was a tenth
// of a refit of an hourly series, whose log and raw scales each have a
// Fourier candidate or two). Each fit is the same to the bit as alone.
func fitFourierPair(f *fourierReg, y []float64, g *fourierReg, z []float64, sc *fitScratch) (okF, okG bool) {
	if g != nil && (len(y) != len(z) || f.H != g.H || !slices.Equal(f.periods, g.periods)) {
		return f.fit(y, sc), g.fit(z, sc)
	}
	n := len(y)
	p := len(f.coef)
	if n < 2*p || n < 2*f.periods[0] {
		return false, false
	}
	// The regressors repeat with the longest season L, so the normal
	// equations only need the weights and weighted values summed per phase
	// j: XᵀWX = Σ_j (Σ_{t≡j} w_t)·x_j x_jᵀ. And since every regressor is a
	// cosine or sine of a whole number of cycles per L, each entry of that
	// sum is, by the product-to-sum identities, a cosine or sine transform
	// of the per-phase weights at the sum or difference of two harmonics:
	// O(L²+p²) for all of them instead of O(L·p²).
	L := len(f.prof)
	wsum := sc.floats(L)
	wy := sc.floats(L)
	lam := math.Exp2(-1 / fourierHalfLife)
	w := 1.0
	for t := n - 1; t >= 0; t-- {
		wsum[t%L] += w
		wy[t%L] += w * y[t]
		w *= lam
	}
	var wz []float64 // wy of z
	if g != nil {
		wz = sc.floats(L)
		w := 1.0
		for t := n - 1; t >= 0; t-- {
			wz[t%L] += w * z[t]
			w *= lam
		}
	}
	ct, st := sc.floats(L), sc.floats(L)
	for m := range L {
		st[m], ct[m] = math.Sincos(2 * math.Pi * float64(m) / float64(L))
	}
	// cw[m] = Σ_j wsum_j·cos(2πmj/L); sw with sin; cy, sy the same of wy.
	cw, sw, cy, sy := sc.floats(L), sc.floats(L), sc.floats(L), sc.floats(L)
	for m := range L {
		var a, b, c, d float64
		r := 0 // m·j mod L
		for j := range L {
			a += wsum[j] * ct[r]
			b += wsum[j] * st[r]
			c += wy[j] * ct[r]
			d += wy[j] * st[r]
			if r += m; r >= L {
				r -= L
			}
		}
		cw[m], sw[m], cy[m], sy[m] = a, b, c, d
	}
	var cz, sz []float64 // cy and sy of z
	if g != nil {
		cz, sz = sc.floats(L), sc.floats(L)
		for m := range L {
			var c, d float64
			r := 0
			for j := range L {
				c += wz[j] * ct[r]
				d += wz[j] * st[r]
				if r += m; r >= L {
					r -= L
				}
			}
			cz[m], sz[m] = c, d
		}
	}
	mod := func(m int) int { return (m%L + L) % L }
	ata := sc.floats(p * p)
	atb := sc.floats(p)
	ata[0], atb[0] = cw[0], cy[0]
	for a, ha := range f.harm {
		ca, sa := 1+2*a, 2+2*a // rows of cos and sin of harmonic a
		atb[ca], atb[sa] = cy[ha], sy[ha]
		ata[ca*p], ata[sa*p] = cw[ha], sw[ha]
		for b, hb := range f.harm[:a+1] {
			cb, sb := 1+2*b, 2+2*b
			d, s := mod(ha-hb), mod(ha+hb)
			ata[ca*p+cb] = (cw[d] + cw[s]) / 2 // cos·cos
			ata[sa*p+sb] = (cw[d] - cw[s]) / 2 // sin·sin
			ata[sa*p+cb] = (sw[s] + sw[d]) / 2 // sin_a·cos_b
			if b < a {
				ata[ca*p+sb] = (sw[s] - sw[d]) / 2 // cos_a·sin_b
			}
		}
	}
	var tr float64
	for i := 0; i < p; i++ {
		tr += ata[i*p+i]
	}
	for i := 0; i < p; i++ {
		ata[i*p+i] += fourierRidge * tr / float64(p)
	}
	if !cholFactor(ata, p) {
		return false, false
	}
	cholSubst(ata, atb, p)
	okF = f.finish(y, atb, ct, st, sc)
	if g != nil {
		atz := sc.floats(p)
		atz[0] = cz[0]
		for a, ha := range f.harm {
			atz[1+2*a], atz[2+2*a] = cz[ha], sz[ha]
		}
		cholSubst(ata, atz, p)
		okG = g.finish(z, atz, ct, st, sc)
	}
	return okF, okG
}

// finish is fit after the regression: the coefficients coef, the profile
// they make (ct and st are the cosines and sines of the longest season's
// phases), and the residual level's parameters on y.
func (f *fourierReg) finish(y, coef, ct, st []float64, sc *fitScratch) bool {
	n, L := len(y), len(f.prof)
	copy(f.coef, coef)
	// Residual level: α and φ on a coarse grid, by the mean absolute error
	// of the 1..H step forecasts from origins every fitStride samples.
	for j := range f.prof {
		v := f.coef[0]
		for a, h := range f.harm {
			r := h * j % L
			v += f.coef[1+2*a]*ct[r] + f.coef[2+2*a]*st[r]
		}
		f.prof[j] = v
	}
	res := sc.floats(n)
	for t := range res {
		res[t] = y[t] - f.prof[t%L]
	}
	best := math.Inf(1)
	warm := min(n/2, L)
	alphas := [...]float64{0, 0.01, 0.03, 0.1, 0.3, 0.6}
	for i, phi := range []float64{0.9, 0.97, 0.99, 1} {
		as := alphas[:]
		if i > 0 {
			// With α = 0 the residual level stays 0 whatever φ is:
			// the error is the first φ's, which a tie does not replace.
			as = alphas[1:]
		}
		// The α of one φ are run side by side: each level's recursion
		// is a chain of dependent operations, so one α at a time waited
		// on it at every sample (the grid was most of this fit's time).
		// Each α's level and error sum take the same operations in the
		// same order as alone, so the choice is the same to the bit.
		// The errors at an origin are summed two α at a time, each
		// pair's in registers (see residualErrs).
		var r, s [len(alphas)]float64
		next := warm // the next origin
		for t, e := range res {
			if t == next {
				next += fitStride
				if t+f.H <= n {
					obs := res[t : t+f.H]
					j := 0
					for ; j+1 < len(as); j += 2 {
						s[j], s[j+1] = residualErrs(s[j], s[j+1], r[j], r[j+1], phi, obs)
					}
					if j < len(as) {
						s[j] = residualErr(s[j], r[j], phi, obs)
					}
				}
			}
			for j, a := range as {
				r[j] = phi*r[j] + a*(e-phi*r[j])
			}
		}
		for j, a := range as {
			if s[j] < best {
				best, f.alpha, f.phi, f.r = s[j], a, phi, r[j]
			}
		}
	}
	f.pos = n % L
	return true
}

// residualErrs returns sa and sb plus the absolute errors |x − φ^h·r| of
// the forecasts of two residual levels ra and rb over obs: the inner loop
// of the grid, in a function of its own, not inlined, so that the sums
// and levels stay in registers (with every α's in arrays, each of its
// steps went to memory and back; the grid was a fifth of a refit of an
// hourly series). Each sum takes the same operations in the same order:
// the fit on 512 hourly values with one season took 21% less CPU time so,
// with two 8% less (median of 6).
//
//go:noinline
func residualErrs(sa, sb, ra, rb, phi float64, obs []float64) (float64, float64) {
	for _, x := range obs {
		ra *= phi
		rb *= phi
		sa += math.Abs(x - ra)
		sb += math.Abs(x - rb)
	}
	return sa, sb
}

// residualErr is residualErrs of one level.
//
//go:noinline
func residualErr(s, r, phi float64, obs []float64) float64 {
	for _, x := range obs {
		r *= phi
		s += math.Abs(x - r)
	}
	return s
}

// compact drops the coefficients and harmonics: update and forecast only
// read the profile tabulated from them.
func (f *fourierReg) compact() { f.coef, f.harm = nil, nil }

func (f *fourierReg) update(v float64) {
	e := v - f.prof[f.pos]
	f.r = f.phi*f.r + f.alpha*(e-f.phi*f.r)
	if f.pos++; f.pos == len(f.prof) {
		f.pos = 0
	}
}

func (f *fourierReg) forecast(dst []float64) {
	r := f.r
	p := f.pos
	for k := range dst {
		r *= f.phi
		dst[k] = f.prof[p] + r
		if p++; p == len(f.prof) {
			p = 0
		}
	}
}

// cholFactor replaces the lower triangle of a symmetric positive definite
// A (row-major p×p, the lower triangle filled) with its Cholesky factor;
// false if A is not positive definite.
func cholFactor(a []float64, p int) bool {
	for j := 0; j < p; j++ {
		d := a[j*p+j]
		for k := 0; k < j; k++ {
			d -= a[j*p+k] * a[j*p+k]
		}
		if !(d > 0) {
			return false
		}
		d = math.Sqrt(d)
		a[j*p+j] = d
		// Two rows at a time: each sum is a chain of dependent
		// subtractions, and two chains side by side take little more
		// time than one (this loop was a tenth of a refit of an hourly
		// series). Each row's sum takes the same operations in the same
		// order as alone.
		rj := a[j*p : j*p+j]
		i := j + 1
		for ; i+1 < p; i += 2 {
			s0, s1 := a[i*p+j], a[(i+1)*p+j]
			r0, r1 := a[i*p:i*p+j], a[(i+1)*p:(i+1)*p+j]
			for k, x := range rj {
				s0 -= r0[k] * x
				s1 -= r1[k] * x
			}
			a[i*p+j], a[(i+1)*p+j] = s0/d, s1/d
		}
		if i < p {
			s := a[i*p+j]
			for k := 0; k < j; k++ {
				s -= a[i*p+k] * a[j*p+k]
			}
			a[i*p+j] = s / d
		}
	}
	return true
}

// cholSubst solves A x = b in place (x into b), A's Cholesky factor in
// its lower triangle (see cholFactor).
func cholSubst(a, b []float64, p int) {
	for i := 0; i < p; i++ {
		s := b[i]
		for k := 0; k < i; k++ {
			s -= a[i*p+k] * b[k]
		}
		b[i] = s / a[i*p+i]
	}
	for i := p - 1; i >= 0; i-- {
		s := b[i]
		for k := i + 1; k < p; k++ {
			s -= a[k*p+i] * b[k]
		}
		b[i] = s / a[i*p+i]
	}
}
