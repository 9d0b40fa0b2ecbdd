package forecast

import (
	"math"
	"math/bits"
	"slices"

	"github.com/omen-sidecar/omen/detect"
)

// Validation settings: forecasts are made from origins every valStride
// samples over the last valOrigins·valStride+H samples of the history,
// with the parameters fitted on what came before the first origin (at
// least half of the history, or a third of a short one: see minOrigins).
//
// The stride divides none of the usual season lengths (24 and 168 hours,
// 60 minutes, 1440 minutes), so the origins fall at every phase of a season
// in turn. With 12 they fell at two hours of the day only on hourly data,
// and the conformal errors missed the others: on the M4 Hourly streaming
// replay the intervals covered 89.2% (91.6% once the history was full)
// against 91.0% (93.3%) with 11, MSIS 10.46 against 9.64 and sMAPE 10.50
// against 10.41; 13 gave 91.0% and 9.74. The batch self-split barely moves
// (sMAPE 9.246 → 9.235, MASE 0.789 → 0.7895, coverage 94.87% → 94.79%).
// fitStride at 11 too was better streaming (MSIS 9.44, sMAPE 10.35) but
// worse in batch (sMAPE 9.276, MASE 0.793), so it stays.
//
// A short history has few origins at that stride, and a quantile of a
// handful of errors is too narrow (83% coverage with under 320 samples,
// 82% ten steps ahead): below minOrigins the origins start after the first
// third of the history instead of the half, with the stride shrunk to fit
// minOrigins (88.9% ten steps ahead, 92.3% sixty; MSIS 8.61 → 7.56 and
// 12.22 → 11.22; sMAPE 11.53 → 11.79 and 14.20 → 14.11). With the half
// kept and the stride shrunk alone it was 85.4% overall; starting after a
// third at every length cost sMAPE once the history was longer (10.58
// overall against 10.41), as candidates validated on shorter fits choose
// worse there.
const (
	valOrigins = 25
	valStride  = 11
	fitStride  = 12 // origins of the multi-step errors parameters are fitted on
	minOrigins = 8
)

// ensemble is the per-series combination of components chosen by
// rolling-origin validation, with conformal interval offsets per horizon.
type ensemble struct {
	H     int
	comps []component
	// The weights per horizon, sparse: weights[h*width+j] is the weight at
	// horizon h+1 of component of[h*width+j], the non-zero ones of each
	// horizon in component order, then zeros; with of empty (width is the
	// number of components), of component j. The combiner gives weight to
	// the best five candidates at a horizon and every candidate used at
	// some horizon is kept, so a dense matrix (H times the components) held
	// zeros for the others: 8 components at the pipeline's 80 horizons,
	// 5 376 B of a forecast series' ~17 KB, against 3 200 + 416 B so
	// (TestModelHeldBytes). Each weight is held as a whole number of
	// 1/weightUnit, a horizon's summing to exactly weightUnit, so the
	// combination stays affine (weights summing to exactly 1) whatever the
	// rounding, and forecast scales by a power of two, exactly, instead of
	// dividing: 800 B here instead of 3 200 as float64s.
	// of holds, when the rows are sparse, which component each weight is
	// of: with at most maskComps components, a bit per component (two
	// bytes a horizon, low byte first; the weights of a row are those of
	// its set bits in order), else an index per weight (fewer than 256
	// components, see buildComponents). The bits took the 8 components of
	// TestModelHeldBytes' Model, 5 weights a row, from 400 bytes (the
	// 416 size class) to 160.
	weights []uint16
	of      []uint8
	width   int // entries per horizon in weights (and in of, as indices)
	// The interval offsets per horizon, on the transformed scale, as
	// float32s rounded outwards (lo down, hi up): the band is never
	// narrower than conformal made it, and wider by at most 2^-24 of the
	// offsets (6e-9 of a value on the log scale at a typical 0.1). The
	// lower offsets then the upper (see lo and hi) in one array: a slice
	// header less, and the ensemble fits the 112-byte size class instead
	// of the 144 (TestModelHeldBytes).
	band []float32
}

// lo and hi are the lower and upper interval offsets, H each.
func (e *ensemble) lo() []float32 { return e.band[:e.H] }
func (e *ensemble) hi() []float32 { return e.band[e.H : 2*e.H] }

// maskComps is the most components ensemble.of holds as bits.
const maskComps = 16

// weightUnit is what a horizon's weights sum to in ensemble.weights. A
// weight rounded to 0 (below 2^-16) changes the forecast by less than that
// share of the spread between the components'.
const weightUnit = 1 << 15

// reuse returns e emptied for a new fit of horizon H, its arrays kept (a
// new ensemble if e is nil): a refit replaces the ensemble whole, and at
// 10k forecast series refitting every few minutes these arrays were a
// seventh of all the process allocated at steady state.
func (e *ensemble) reuse(H int) *ensemble {
	if e == nil {
		return &ensemble{H: H}
	}
	clear(e.comps) // the old components go; their memory with them
	*e = ensemble{H: H, comps: e.comps[:0], weights: e.weights, of: e.of, band: e.band}
	return e
}

// outward returns x as float32s in dst's array if it holds them (a new one
// otherwise), each rounded towards side (−1: down, 1: up). Rounding is
// monotone, so the offsets keep conformal's order and signs. An offset
// beyond float32's range (3.4e38, of a series of values beyond it on their
// own scale) is held at its largest: finite, as the forecasts' readers
// interpolate between bands, where an infinite one made NaNs.
func outward(dst []float32, x []float64, side float64) []float32 {
	if cap(dst) < len(x) {
		dst = make([]float32, len(x))
	}
	dst = dst[:len(x)]
	for i, v := range x {
		f := float32(clampFloat32(v))
		if (float64(f)-v)*side < 0 && math.Abs(float64(f)) < math.MaxFloat32 {
			f = math.Nextafter32(f, float32(side))
		}
		dst[i] = f
	}
	return dst
}

// combiner turns the validation errors of the candidates at one horizon
// into their (unnormalised) combination weights; +Inf marks a candidate
// that could not be fitted.
type combiner func(valErr []float64, sc *fitScratch) []float64

// buildComponents returns the candidate models for the given seasons: the
// first is the main one, each further one an alternative long season.
//
// With logScale (y is the logarithm of positive values) every candidate is
// offered on both scales, see rawScale. Additive Holt-Winters on the log
// scale is the multiplicative model; the classical multiplicative
// recursion on the values (holtWinters with mult) was measured as an extra
// candidate too and made the M4 Hourly self-split slightly worse (sMAPE
// 9.267 against 9.246, MASE 0.791 against 0.789) at 35% more refit time, so
// it is not offered.
//
// The candidates are appended to cs[:0] (a refit's scratch, so that the
// list is not garbage at each refit).
func buildComponents(cs []component, seasons []int, H int, logScale bool, sc *fitScratch) []component {
	cs = buildScale(cs[:0], seasons, H, sc)
	if logScale {
		n := len(cs)
		cs = buildScale(cs, seasons, H, sc)
		for i, c := range cs[n:] {
			if s, ok := c.(*seasonalNaive); ok {
				s.raw = true // rawScale's arithmetic, on the ensemble's values (see seasonalNaive)
				continue
			}
			cs[n+i] = sc.rawScale(c)
		}
	}
	if len(seasons) == 0 {
		// A steady trend, continued (see newDrift), on the values only: a
		// disk fills by so many bytes an hour, not by a share of what it
		// holds. It makes the refit of a series without a season on the
		// values 44% dearer (BenchmarkRefit shape=rate, CPU time: 0.31
		// ms to 0.45), about 1 ms of CPU a second at 10 000 such series.
		var d component = sc.drift(1, H)
		if logScale {
			d = sc.rawScale(d)
		}
		cs = append(cs, d)
	}
	return cs
}

// buildScale appends the candidates on one scale to cs, built in sc's
// spares (see fitScratch.recycle).
func buildScale(cs []component, seasons []int, H int, sc *fitScratch) []component {
	if len(seasons) == 0 {
		return append(cs, sc.holtWinters(false, nil, H), sc.theta(1, H))
	}
	p1 := seasons[0]
	// The trend candidates too: a season is a candidate, not a verdict.
	// Detrended, a ramp whose steps vary a little wanders like a random
	// walk, whose periodogram can pass for a season; fitted with seasonal
	// candidates only, it was forecast falling (TestModelTrendDespite-
	// SpuriousSeason). On M4 Hourly (make bench-m4) they took sMAPE 9.236
	// to 9.172, MASE 0.790 to 0.785; a refit costs 5-10% more.
	cs = append(cs,
		sc.holtWinters(false, nil, H), sc.theta(1, H),
		sc.seasonalNaive(p1, false),
		sc.holtWinters(false, seasons[:1], H),
		sc.theta(p1, H),
		sc.fourierReg(seasons[:1], H),
	)
	if len(seasons) == 1 {
		// The seasonal random walk of the differences (see
		// seasonalNaive). On a disk cleaned up every 8 hours (make
		// bench-capacity, median of 5 seeds) it took the forecasts' MAE
		// against predict_linear's best window from 1.43 to 0.31 times at
		// 5m, 1.02 to 0.15 at 30m and 0.28 to 0.14 at 4h. With a second
		// season it is not offered: the last day's course is the wrong
		// one on the week's turning days, and offered there too it took
		// the M4 Hourly self-split's coverage from 94.98% to 94.87%;
		// offered for the longest season instead, sMAPE from 9.172 to
		// 9.210. With one season only, sMAPE 9.172 → 9.167, MASE 0.7851
		// → 0.7850, coverage 94.98% → 94.95%. On the values only (as the
		// drift) it was about as good on M4 (9.168, 94.96%), but the
		// seasonal naive, on both scales, then took two of the five
		// places at long horizons to its one, and the disk's capacity
		// alert in the run whose cleanups stopped latest came 44 minutes
		// later (206 against 250 before the fill).
		cs = append(cs, sc.seasonalNaive(p1, true))
	}
	for _, p2 := range seasons[1:] {
		two := []int{p1, p2}
		cs = append(cs,
			sc.seasonalNaive(p2, false),
			sc.holtWinters(false, two, H),
			sc.theta(p2, H),
			sc.fourierReg(two, H),
		)
	}
	return cs
}

// fitEnsemble validates the candidates on y (transformed scale), derives
// the weights and the interval offsets, and fits the kept components on
// the whole of y. The ensemble is nil if no component can be fitted.
//
// warm holds the Holt-Winters parameters of the previous fit's validation
// fits; a candidate found there starts its validation fit from them (see
// warmStart), and the parameters of this fit's validation fits are returned
// for the next.
//
// When no candidate can be fitted on the validation's first part (a short
// history without a season: Theta and Holt-Winters need about twice the
// horizon), the naive forecast is validated alone, so the intervals still
// come from the series' own errors at each horizon; before, the Model
// carried the last value forward with a zero-width interval until the
// history grew (320 samples at an 80-step horizon).
func fitEnsemble(y []float64, seasons []int, logScale bool, H int, coverage float64, comb combiner, warm []warmStart, old *ensemble, sc *fitScratch) (*ensemble, []warmStart) {
	if old != nil {
		// The components old has are the Model's until this refit, which
		// replaces them (see reuse): its candidates are built in them,
		// whose arrays are of the sizes these seasons need.
		sc.recycle(old.comps, nil)
	}
	cands := buildComponents(sc.candidates(), seasons, H, logScale, sc)
	e, next := fitCandidates(y, cands, H, coverage, comb, warm, old, sc)
	var kept []component
	if e != nil {
		kept = e.comps
	}
	sc.recycle(cands, kept)
	sc.release(cands)
	if e == nil {
		e, _ = fitCandidates(y, []component{newSeasonalNaive(1)}, H, coverage, comb, nil, old, sc)
	}
	return e, next
}

// fitCandidates is fitEnsemble with the candidates given. The ensemble it
// returns reuses old's arrays (see reuse); old must not be used after.
func fitCandidates(y []float64, cands []component, H int, coverage float64, comb combiner, warm []warmStart, old *ensemble, sc *fitScratch) (*ensemble, []warmStart) {
	n := len(y)
	stride := valStride
	origins := valOrigins
	for origins > 1 && n-H-(origins-1)*stride < n/2 {
		origins--
	}
	if origins < minOrigins {
		if span := n - H - n/3; span > 0 {
			stride = max(1, min(valStride, span/(minOrigins-1)))
			origins = min(valOrigins, span/stride+1)
		}
	}
	start := n - H - (origins-1)*stride // first origin
	nc := len(cands)
	// errs[c][o*H+h]: validation error of candidate c at origin o, horizon h+1.
	errs := sc.rowsOf(nc)
	ok := sc.flagsOf(nc)
	buf := sc.floats(H)
	// The warm starts are gathered on the stack and kept (next) exactly as
	// long as they are: the Model holds them until the refit after the
	// next (as its warmIn), and an append's doubling left 8 places for 6
	// (TestWarmStartsExact).
	var found [16]warmStart
	gathered := found[:0]
	for _, comp := range cands {
		if hw, raw := holtWintersOf(comp); hw != nil {
			hw.last = findWarm(warm, raw, hw.m1, hw.m2)
		}
	}
	if start >= 16 {
		fitAll(ok, cands, nil, y[:start], sc)
	}
	for c, comp := range cands {
		if !ok[c] {
			continue
		}
		hw, raw := holtWintersOf(comp)
		if hw != nil {
			gathered = append(gathered, newWarmStart(raw, hw))
		}
		errs[c] = sc.floats(origins * H)
		o := 0
		for t := start; ; t++ {
			if (t-start)%stride == 0 && o < origins {
				comp.forecast(buf)
				for h := range H {
					errs[c][o*H+h] = y[t+h] - buf[h]
				}
				o++
				if o == origins {
					break
				}
			}
			comp.update(y[t])
		}
	}
	var next []warmStart
	if len(gathered) > 0 {
		next = slices.Clone(gathered)
	}
	// Per horizon, the mean absolute validation error of each candidate over
	// the horizons around it: which model is best depends on how far ahead
	// (a smoothed level wins at one step, a well-estimated season at 48).
	// absErr[c*H+h] sums a candidate's absolute errors at horizon h over
	// the origins once, so that each window below adds up horizons, not
	// horizons times origins (which was a tenth of a refit).
	absErr := sc.floats(nc * H)
	for c := range cands {
		if !ok[c] {
			continue
		}
		for o := range origins {
			for h, e := range errs[c][o*H : (o+1)*H] {
				absErr[c*H+h] += math.Abs(e)
			}
		}
	}
	// w[h*nc+c]: candidate c's weight at horizon h+1.
	w := sc.floats(H * nc)
	valErr := sc.floats(nc)
	used := sc.flagsOf(nc)
	for h := range H {
		hw := selectWindow(h)
		lo, hi := max(0, h-hw), min(H-1, h+hw)
		for c := range cands {
			if !ok[c] {
				valErr[c] = math.Inf(1)
				continue
			}
			var s float64
			for _, a := range absErr[c*H+lo : c*H+hi+1] {
				s += a
			}
			valErr[c] = s / float64(origins*(hi-lo+1))
			if math.IsNaN(valErr[c]) {
				valErr[c] = math.Inf(1)
			}
		}
		wh := w[h*nc : (h+1)*nc]
		copy(wh, comb(valErr, sc))
		var sum float64
		for _, v := range wh {
			sum += v
		}
		if sum == 0 {
			return nil, next
		}
		for c := range wh {
			wh[c] /= sum
			used[c] = used[c] || wh[c] > 0
		}
	}
	// Combined validation errors for the intervals.
	cerr := sc.floats(origins * H)
	for c := range cands {
		if !used[c] {
			continue
		}
		for o := range origins {
			for h := range H {
				cerr[o*H+h] += w[h*nc+c] * errs[c][o*H+h]
			}
		}
	}
	e := old.reuse(H)
	lo, hi := conformal(cerr, origins, stride, H, coverage, sc)
	if cap(e.band) < 2*H {
		e.band = make([]float32, 2*H)
	}
	e.band = e.band[:2*H]
	outward(e.lo(), lo, -1)
	outward(e.hi(), hi, 1)
	// Final fit on everything. A candidate that validated but cannot be
	// fitted on the longer history (it should not happen) gives its weight
	// to the others.
	keep := sc.intsOf()
	defer func() { sc.keepInts(keep) }()
	fitAll(ok, cands, used, y, sc)
	for c, comp := range cands {
		if ok[c] { // used, and fitted on the whole
			if k, ok := comp.(compacter); ok {
				k.compact()
			}
			keep = append(keep, c)
			e.comps = append(e.comps, comp)
		}
	}
	if len(keep) == 0 {
		return nil, next
	}
	shareSeasonRing(e.comps)
	// The widest horizon's count of non-zero weights sets the width.
	e.width = 0
	for h := range H {
		n := 0
		for _, c := range keep {
			if w[h*nc+c] > 0 {
				n++
			}
		}
		if n == 0 {
			n = len(keep) // equal weights, below
		}
		e.width = max(e.width, n)
	}
	// As wide as the components, the rows are dense, without indices.
	dense := e.width == len(keep)
	if cap(e.weights) < H*e.width {
		e.weights = make([]uint16, H*e.width)
	}
	e.weights = e.weights[:H*e.width]
	clear(e.weights)
	e.of = e.of[:0]
	masks := len(keep) <= maskComps
	if !dense {
		n := H * e.width
		if masks {
			n = 2 * H
		}
		if cap(e.of) < n {
			e.of = make([]uint8, n)
		}
		e.of = e.of[:n]
		clear(e.of)
	}
	for h := range H {
		var sum float64
		for _, c := range keep {
			sum += w[h*nc+c]
		}
		row := e.weights[h*e.width : (h+1)*e.width]
		j := 0
		for i, c := range keep {
			x := 1 / float64(len(keep))
			if sum > 0 {
				x = w[h*nc+c] / sum
			}
			q := uint16(math.Round(x * weightUnit))
			switch {
			case dense:
				row[i] = q
			case q != 0 && masks: // a zero adds nothing to forecast's sum
				row[j] = q
				e.of[2*h+i/8] |= 1 << (i % 8)
				j++
			case q != 0:
				row[j], e.of[h*e.width+j] = q, uint8(i)
				j++
			}
		}
		// The rounding's remainder (a few units) goes to the largest
		// weight, at least weightUnit/len(keep), so the row sums to
		// exactly weightUnit.
		total, big := 0, 0
		for k, q := range row {
			total += int(q)
			if q > row[big] {
				big = k
			}
		}
		row[big] = uint16(int(row[big]) + weightUnit - total)
	}
	return e, next
}

// warmStart is the result of one Holt-Winters candidate's validation fit,
// the starting point of the same candidate's validation fit at the next
// refit: Nelder-Mead from there with a small simplex and a third of the
// evaluations (see holtWinters.fit) instead of from a generic start. The
// validation fit of the previous refit saw only samples from before the
// current validation origins (its window started RefitEvery samples
// earlier), so starting from it does not leak the validation period into
// the choice of weights; starting from the previous final fit would.
type warmStart struct {
	// key packs the candidate (raw, m1, m2) and the count n of its
	// parameters into one word (see newWarmKey): as fields of their own
	// with their padding, a warmStart was 56 bytes, and a Model holds two
	// slices of them (warm and warmIn), 6 each on a daily and weekly series,
	// 352 B a slice against 288 so (TestModelHeldBytes).
	key warmKey
	p   [5]float64
}

// warmKey is raw in bit 63, n in bits 60-62 and m1 and m2 in bits 30-59
// and 0-29: seasons are at most History/2 (2^19) long.
type warmKey uint64

const warmSeasonBits = 30

// newWarmKey packs its arguments; ok is false if a season does not fit
// (a corrupt snapshot) or n exceeds the parameters a warmStart holds.
func newWarmKey(raw bool, m1, m2 uint32, n int) (k warmKey, ok bool) {
	if m1 >= 1<<warmSeasonBits || m2 >= 1<<warmSeasonBits || n < 0 || n > len(warmStart{}.p) {
		return 0, false
	}
	k = warmKey(m1)<<warmSeasonBits | warmKey(m2) | warmKey(n)<<(2*warmSeasonBits)
	if raw {
		k |= 1 << 63
	}
	return k, true
}

func (k warmKey) raw() bool  { return k>>63 == 1 }
func (k warmKey) n() int     { return int(k>>(2*warmSeasonBits)) & 7 }
func (k warmKey) m1() uint32 { return uint32(k>>warmSeasonBits) & (1<<warmSeasonBits - 1) }
func (k warmKey) m2() uint32 { return uint32(k) & (1<<warmSeasonBits - 1) }

// sameCandidate reports whether k and o are of one candidate, whatever
// their parameters' count.
func (k warmKey) sameCandidate(o warmKey) bool {
	const n = 7 << (2 * warmSeasonBits)
	return k&^n == o&^n
}

func newWarmStart(raw bool, hw *holtWinters) warmStart {
	k, _ := newWarmKey(raw, uint32(hw.m1), uint32(hw.m2), len(hw.last))
	w := warmStart{key: k}
	copy(w.p[:], hw.last)
	return w
}

// findWarm returns a copy of the parameters of the candidate (raw, m1, m2)
// in warm, nil if it is not there.
func findWarm(warm []warmStart, raw bool, m1, m2 int32) []float64 {
	k, _ := newWarmKey(raw, uint32(m1), uint32(m2), 0)
	for _, w := range warm {
		if w.key.sameCandidate(k) {
			return append([]float64(nil), w.p[:w.key.n()]...)
		}
	}
	return nil
}

// holtWintersOf returns the Holt-Winters model inside c, if any, and
// whether it works on the raw scale.
func holtWintersOf(c component) (*holtWinters, bool) {
	switch c := c.(type) {
	case *holtWinters:
		return c, false
	case *rawScale:
		hw, _ := c.c.(*holtWinters)
		return hw, true
	}
	return nil, false
}

// selectWindow is the half-width of the horizons whose validation errors
// choose the weights for horizon index h: wider further out, where
// neighbouring horizons behave alike and more errors steady the choice.
func selectWindow(h int) int { return 1 + h/4 }

func (e *ensemble) update(v float64) {
	for _, c := range e.comps {
		c.update(v)
	}
}

// forecast writes the combined forecast for 1..len(dst) steps, the
// components' forecasts going into scratch from sc. Each horizon's sum
// runs over its non-zero weights in component order: a term of weight 0,
// left out, added exactly 0 to it.
func (e *ensemble) forecast(dst []float64, sc *fitScratch) { e.forecastSteps(dst, nil, sc) }

// forecastSteps is forecast at the places steps of dst only (ascending,
// without repeats, below len(dst); all of them if nil), the same bits
// there; the other places are left as they are. The components' recursions
// still run through every step (Holt-Winters' damped sums and the Fourier
// residual's powers are sums and products taken step by step, whose bits
// a closed form would not keep), but their logarithms and exponentials
// (rawScale, a raw seasonal naive) and the combination are taken at steps
// only: they were most of a forecast's cost, and the live forecasters read
// two steps around each of a few horizons of 60 or more.
func (e *ensemble) forecastSteps(dst []float64, steps []int, sc *fitScratch) {
	n := len(dst)
	fs := sc.floats(len(e.comps) * n)
	var ex *seasonExps // see seasonExps
	if rawSeasonPair(e.comps) {
		ex = &seasonExps{v: sc.floats(n)[:0]}
	}
	for i, c := range e.comps {
		switch c := c.(type) {
		case *seasonalNaive:
			c.forecastWith(fs[i*n:(i+1)*n], ex, steps)
		case *rawScale:
			c.forecastSteps(fs[i*n:(i+1)*n], steps)
		default:
			c.forecast(fs[i*n : (i+1)*n])
		}
	}
	count := n
	if steps != nil {
		count = len(steps)
	}
	if len(e.of) > 0 && len(e.comps) <= maskComps {
		for i := range count {
			h := i
			if steps != nil {
				h = steps[i]
			}
			row := e.weights[h*e.width : (h+1)*e.width]
			var s float64
			// The set bits, lowest first: the components of the row's
			// weights in order, as the indices' loop below adds them.
			for m, j := uint16(e.of[2*h])|uint16(e.of[2*h+1])<<8, 0; m != 0; m, j = m&(m-1), j+1 {
				s += float64(row[j]) * fs[bits.TrailingZeros16(m)*n+h]
			}
			dst[h] = s * (1.0 / weightUnit)
		}
		return
	}
	for i := range count {
		h := i
		if steps != nil {
			h = steps[i]
		}
		var s float64
		for j, q := range e.weights[h*e.width : (h+1)*e.width] {
			if q == 0 {
				continue
			}
			i := j
			if len(e.of) > 0 {
				i = int(e.of[h*e.width+j])
			}
			s += float64(q) * fs[i*n+h]
		}
		dst[h] = s * (1.0 / weightUnit)
	}
}

// conformal returns the lower and upper offsets per horizon from the
// validation errors err[o*H+h], origins stride samples apart: the
// empirical (1−c)/2 and (1+c)/2 quantiles of the errors at horizons within
// ±2 of h, so that every quantile rests on about 5·origins errors, widened
// where those errors are too few independent ones for a quantile (see
// fewErrors).
//
// The pool of a horizon shares four of its five horizons with the next
// one's: the order statistics near its ends come from each horizon's few
// smallest and largest errors, found once (see errorEnds), not from a scan
// of every pool.
func conformal(err []float64, origins, stride, H int, coverage float64, sc *fitScratch) (lo, hi []float64) {
	return conformalFrom(err, origins, stride, H, coverage, newErrorEnds(err, origins, H, coverage, sc), sc)
}

// conformalFrom is conformal with the horizons' ends given; with the zero
// errorEnds, each pool's quantiles are taken from the pool.
func conformalFrom(err []float64, origins, stride, H int, coverage float64, ends errorEnds, sc *fitScratch) (lo, hi []float64) {
	lo, hi = sc.floats(H), sc.floats(H)
	pool := sc.floats(5 * origins)[:0]
	for h := range H {
		a, b := max(0, h-2), min(H-1, h+2)
		// Split-conformal finite-sample correction: the ⌈(n+1)q⌉-th of n
		// errors rather than the q-quantile, which covers at least q of a
		// new exchangeable error.
		n := float64((b - a + 1) * origins)
		q := min(1, (1+coverage)/2*(n+1)/n)
		var near bool
		lo[h], hi[h], near = ends.quantiles(a, b, 1-q, q)
		pool = pool[:0]
		if !near {
			// The pool's quantiles, as they were before errorEnds, whose
			// SelectK reorders the pool fewErrors below reads.
			pool = appendPool(pool, err, origins, H, a, b)
			lo[h] = quantile(pool, 1-q)
			hi[h] = quantile(pool, q)
		}
		if k := independentErrors(err, origins, stride, H, h); k < minOrigins {
			if near {
				pool = appendPool(pool, err, origins, H, a, b)
			}
			// At most maxWiden times the quantiles' offsets: s is not
			// robust, and where the validation errors were wild (a daily
			// series' 24h forecasts from a history of a few days) the
			// band exp(t·s) on the log scale went from 2.5 to 470
			// standard deviations of the series wide on average.
			l, u := fewErrors(pool, k, coverage)
			lo[h], hi[h] = min(lo[h], max(l, maxWiden*lo[h])), max(hi[h], min(u, maxWiden*hi[h]))
		}
	}
	// The interval holds the forecast: where every validation error had
	// one sign (a steady under-forecast of growth, say), the quantiles
	// alone put the band wholly on one side, forecast_lower above
	// forecast.
	for h := range H {
		lo[h], hi[h] = min(lo[h], 0), max(hi[h], 0)
	}
	// Intervals do not shrink with the horizon: uncertainty only grows.
	for h := 1; h < H; h++ {
		lo[h] = min(lo[h], lo[h-1])
		hi[h] = max(hi[h], hi[h-1])
	}
	return lo, hi
}

// persistent is the lag-one autocorrelation of the errors across the
// origins above which they are taken to persist (a season's noise gives
// about 0 ± 1/√origins): below it, the span's count does not apply, and
// with the larger count alone a daily series' 6h band at 8 origins was
// widened by the noise of ρ, 1.3 → 3.5 standard deviations wide.
const persistent = 0.5

// maxWiden bounds fewErrors' widening, see conformal. At 1.5 the random
// walk of TestModelIntervalsCoverPersistentErrors is covered 87% and 86%
// 30 and 60 steps ahead (about 88% unbounded), and the wild 24h band
// of a daily series 6.2 standard deviations wide on average (2.5 before
// the widening).
const maxWiden = 1.5

// independentErrors is about how many independent errors the origins give
// at horizon h+1 (0-based h). Errors that persist, a random walk's or a
// drifting level's, are shared by origins closer than the horizon, so the
// origins' span holds 1 + (origins−1)·stride/(h+1) independent ones: the
// live forecaster's 17 origins 11 steps apart are 4 at 60 steps, and the
// (1±c)/2 quantiles of their pooled errors were about their largest, near
// one standard deviation (a random walk's 30m forecasts through the
// pipeline covered 77%). Errors that do not persist from one origin to the
// next (a season's noise: their lag-one autocorrelation ρ across the
// origins at most persistent) are as many as the origins; errors that do
// count the larger of the span's and origins·(1−ρ)/(1+ρ).
func independentErrors(err []float64, origins, stride, H, h int) float64 {
	span := 1 + float64((origins-1)*stride)/float64(h+1)
	var mean float64
	for o := range origins {
		mean += err[o*H+h]
	}
	mean /= float64(origins)
	var c0, c1 float64
	for o := range origins {
		d := err[o*H+h] - mean
		c0 += d * d
		if o > 0 {
			c1 += d * (err[(o-1)*H+h] - mean)
		}
	}
	rho := 0.0
	if c0 > 0 {
		rho = min(0.99, max(0, c1/c0))
	}
	if rho <= persistent {
		return float64(origins)
	}
	return max(span, float64(origins)*(1-rho)/(1+rho))
}

// fewErrors returns the interval offsets for errors that are about k
// independent draws: mean ± t·s, s their standard deviation and t Student's
// quantile with k−1 degrees of freedom, so that the width rests on every
// error, not on the one or two largest, and grows as the draws get fewer.
// The errors' mean keeps a steady bias (a damped trend under-forecasting a
// ramp) to one side, as the quantiles do: about zero, the pipeline's 30m
// band of a disk filling up (2e5 a second, noise 5e6, at 15 s) was 4.9
// times as wide. On the M4 Hourly streaming replay (before persistent and
// maxWiden), t with k−1 degrees of freedom rather than k took the coverage
// from 93.7% to 94.1% for MSIS 9.43 → 9.80; s corrected to k draws
// besides (×√(k/(k−1))) gave 94.5% for MSIS 10.74.
func fewErrors(pool []float64, k, coverage float64) (lo, hi float64) {
	n := float64(len(pool))
	var mean float64
	for _, e := range pool {
		mean += e
	}
	mean /= n
	var ss float64
	for _, e := range pool {
		ss += (e - mean) * (e - mean)
	}
	k = max(2, k)
	s := math.Sqrt(ss / n)
	t := studentT(math.Sqrt2*math.Erfinv(coverage), k-1)
	return mean - t*s, mean + t*s
}

// studentT approximates Student's t quantile with nu degrees of freedom at
// the standard normal quantile z by the first two terms of its
// Cornish–Fisher expansion (Abramowitz and Stegun 26.7.5):
// t ≈ z + (z³+z)/(4ν) + (5z⁵+16z³+3z)/(96ν²). At z = 1.96 it is 2.73
// against 2.78 for ν = 4, 3.07 against 3.18 for ν = 3, 3.85 against 4.30
// for ν = 2, 7.2 against 12.7 for ν = 1: short where the draws are fewest,
// where the quantiles' band still stands beside it (see conformal).
func studentT(z, nu float64) float64 {
	z2 := z * z
	return z + z*(z2+1)/(4*nu) + z*(5*z2*z2+16*z2+3)/(96*nu*nu)
}

// quantile is the linearly interpolated q-quantile of x, which it may
// reorder: the two order statistics it needs are selected, not sorted for
// (the conformal offsets take two quantiles each of 80 pools per refit;
// sorting them was a tenth of a refit).
func quantile(x []float64, q float64) float64 {
	if len(x) == 0 {
		return 0
	}
	i, f, last := quantilePos(len(x), q)
	lo, next := orderStats(x, i)
	return interpolate(lo, next, f, last)
}

// quantilePos is where the linearly interpolated q-quantile of n values
// lies: f of the way from the i-th smallest (0-based) to the next, or with
// last the largest, i = n−1, alone.
func quantilePos(n int, q float64) (i int, f float64, last bool) {
	p := q * float64(n-1)
	i = int(p)
	if i >= n-1 {
		return n - 1, 0, true
	}
	return i, p - float64(i), false
}

// interpolate is the quantile at quantilePos's f and last between the
// order statistics lo and next.
func interpolate(lo, next, f float64, last bool) float64 {
	if last {
		return lo
	}
	return lo*(1-f) + next*f
}

// nearEnd is the most order statistics orderStats keeps while scanning for
// those near an end of the data: within that many of the smallest or the
// largest, one scan with a short insertion-sorted list beats selection.
const nearEnd = 8

// orderStats returns the i-th smallest value of x (0-based) and the next
// (x's largest again if i is the last), ordered as cmp.Less orders them.
// The conformal quantiles are near the ends (the 3rd and 4th of 125 errors
// at the pipeline's 25 origins and 95% coverage): there, one scan keeping
// the few smallest (or largest) values so far costs about one comparison
// a value, where SelectK, which partitions, cost three selections of the
// whole pool, a third of a refit of a series without seasons (CPU profile
// of omen serve at 100 000 series). Elsewhere x is reordered by SelectK.
func orderStats(x []float64, i int) (float64, float64) {
	n := len(x)
	j := min(i+1, n-1)
	var keep [nearEnd]float64
	switch small, large := nearEndCount(n, i); {
	case small > 0:
		k := keepSmallest(keep[:0], x, small)
		return k[i], k[j]
	case large > 0:
		k := keepLargest(keep[:0], x, large)
		return k[n-1-i], k[n-1-j]
	}
	lo := detect.SelectK(x, i)
	// The next order statistic is the least of what SelectK left after x[i].
	return lo, detect.SelectK(x[i+1:], 0)
}

// nearEndCount is how many of n values orderStats keeps for the i-th
// smallest and the next: the small smallest, or the large largest, or
// neither (both 0) where it selects instead.
func nearEndCount(n, i int) (small, large int) {
	j := min(i+1, n-1)
	switch {
	case j < nearEnd:
		return j + 1, 0
	case n-1-i < nearEnd:
		return 0, n - i
	}
	return 0, 0
}

// appendPool appends to pool the errors err[o*H+hh] of the horizons hh
// from a to b, each horizon's origins in order.
func appendPool(pool, err []float64, origins, H, a, b int) []float64 {
	for hh := a; hh <= b; hh++ {
		for o := range origins {
			pool = append(pool, err[o*H+hh])
		}
	}
	return pool
}

// errorEnds holds, per horizon, the few smallest of its errors across the
// origins, ascending, and the few largest, descending, as keepSmallest and
// keepLargest leave them: what orderStats near an end of a conformal pool
// needs. The m smallest of a pool are among its horizons' m smallest each,
// and merged in the pool's order of horizons, an earlier horizon's first
// among equal values, they come in the order keepSmallest leaves the
// pool's (equal values in the order they come in the pool, the earlier
// horizon's, then the earlier origin's): the same bits, ±0 included. Each
// error is so scanned twice, not ten times (it is in five pools, each
// scanned for both ends), and no pool is copied: the pools' scans were 15%
// of a refit of a series without a season (BenchmarkRefit shape=rate, CPU
// profile), 10% so.
type errorEnds struct {
	small, large []float64 // horizon hh's at [hh*ns, hh*ns+ns) and [hh*nl, hh*nl+nl)
	ns, nl       int
	origins      int
}

// newErrorEnds finds the ends of each horizon's errors err[o*H+hh] that
// conformal's pools at the given coverage will ask for.
func newErrorEnds(err []float64, origins, H int, coverage float64, sc *fitScratch) errorEnds {
	e := errorEnds{origins: origins}
	for h := range H {
		a, b := max(0, h-2), min(H-1, h+2)
		n := (b - a + 1) * origins
		fn := float64(n)
		q := min(1, (1+coverage)/2*(fn+1)/fn)
		il, _, _ := quantilePos(n, 1-q)
		ih, _, _ := quantilePos(n, q)
		s0, l0 := nearEndCount(n, il)
		s1, l1 := nearEndCount(n, ih)
		e.ns = max(e.ns, min(s0, origins), min(s1, origins))
		e.nl = max(e.nl, min(l0, origins), min(l1, origins))
	}
	col := sc.floats(origins)
	e.small, e.large = sc.floats(H*e.ns), sc.floats(H*e.nl)
	for hh := range H {
		for o := range origins {
			col[o] = err[o*H+hh]
		}
		if e.ns > 0 {
			keepSmallest(e.small[hh*e.ns:hh*e.ns], col, e.ns)
		}
		if e.nl > 0 {
			keepLargest(e.large[hh*e.nl:hh*e.nl], col, e.nl)
		}
	}
	return e
}

// quantiles returns quantile(pool, qlo) and quantile(pool, qhi) of the pool
// of the horizons a to b (see appendPool), and whether both were near its
// ends: if not (near false), neither is returned.
func (e *errorEnds) quantiles(a, b int, qlo, qhi float64) (lo, hi float64, near bool) {
	n := (b - a + 1) * e.origins
	if n == 0 || b-a+1 > 5 {
		return 0, 0, false
	}
	il, fl, ll := quantilePos(n, qlo)
	ih, fh, lh := quantilePos(n, qhi)
	l0, l1, okl := e.orderStats(a, b, n, il)
	h0, h1, okh := e.orderStats(a, b, n, ih)
	if !okl || !okh {
		return 0, 0, false
	}
	return interpolate(l0, l1, fl, ll), interpolate(h0, h1, fh, lh), true
}

// orderStats is orderStats of the pool of the horizons a to b (n errors)
// from the horizons' ends; ok is false where it would select.
func (e *errorEnds) orderStats(a, b, n, i int) (lo, next float64, ok bool) {
	j := min(i+1, n-1)
	switch small, large := nearEndCount(n, i); {
	case small > 0:
		lo, next = mergeEnds(e.small, e.ns, a, b, i, j, false)
		return lo, next, true
	case large > 0:
		lo, next = mergeEnds(e.large, e.nl, a, b, n-1-i, n-1-j, true)
		return lo, next, true
	}
	return 0, 0, false
}

// mergeEnds returns the r-th and s-th (0-based) of the merge of the
// ordered runs ends[hh*k:(hh+1)*k] for hh from a to b, ascending as less
// orders (desc: descending), an earlier run's first of equal values: the
// r-th and s-th keepSmallest (desc: keepLargest) keeps of the runs' values
// in turn. A merge compares the runs' heads only; keepSmallest of the
// runs' values one after the other inserted most of them into its list
// (each run starts below the list's last) and took twice as long.
func mergeEnds(ends []float64, k, a, b, r, s int, desc bool) (vr, vs float64) {
	var at [5]int // the runs' next places; a pool has at most five horizons
	for pos := range max(r, s) + 1 {
		best, v := -1, 0.0
		for hh := a; hh <= b; hh++ {
			p := at[hh-a]
			if p == k {
				continue
			}
			x, y := ends[hh*k+p], v
			if desc {
				x, y = y, x
			}
			if best < 0 || less(x, y) {
				best, v = hh, ends[hh*k+p]
			}
		}
		at[best-a]++
		if pos == r {
			vr = v
		}
		if pos == s {
			vs = v
		}
	}
	return vr, vs
}

// keepSmallest appends to dst[:0] the m smallest values of x, ascending
// (m at most cap(dst)). keepLargest appends the m largest, descending.
// Both order as cmp.Less does, NaN below every number (less), written out
// rather than passed as a function: the call per value was half their cost.
func keepSmallest(dst, x []float64, m int) []float64 {
	for _, v := range x {
		if len(dst) == m {
			if !less(v, dst[m-1]) {
				continue
			}
			dst = dst[:m-1]
		}
		dst = append(dst, v)
		for k := len(dst) - 1; k > 0 && less(dst[k], dst[k-1]); k-- {
			dst[k], dst[k-1] = dst[k-1], dst[k]
		}
	}
	return dst
}

func keepLargest(dst, x []float64, m int) []float64 {
	for _, v := range x {
		if len(dst) == m {
			if !less(dst[m-1], v) {
				continue
			}
			dst = dst[:m-1]
		}
		dst = append(dst, v)
		for k := len(dst) - 1; k > 0 && less(dst[k-1], dst[k]); k-- {
			dst[k], dst[k-1] = dst[k-1], dst[k]
		}
	}
	return dst
}

// less is cmp.Less for float64: NaN before every number.
func less(a, b float64) bool { return a < b || (a != a && b == b) }

// defaultCombiner is the combination rule Models use: the five candidates
// with the smallest validation error at a horizon, weighted by error^-8.
// The steep power makes it a soft selection: a clear winner takes nearly
// all the weight, near ties are averaged. On the M4 Hourly self-split this
// beat hard selection (best only), equal weights of the best two or three
// and flatter powers, in both sMAPE and MASE.
func defaultCombiner(valErr []float64, sc *fitScratch) []float64 {
	return combineInverseTop(5, 8)(valErr, sc)
}

// combineTop keeps the k best candidates by validation error and
// weighs them equally; of equal errors, the earlier candidate's is the
// better.
func combineTop(k int) combiner {
	return func(valErr []float64, sc *fitScratch) []float64 {
		w := sc.floats(len(valErr))
		var small [32]int // the candidates; a refit has at most 16 or so
		for _, i := range bestK(small[:0], valErr, k) {
			if !math.IsInf(valErr[i], 1) {
				w[i] = 1
			}
		}
		return w
	}
}

// bestK appends to dst[:0] the indices of the k smallest of v (all of them
// if fewer), ascending by value, then by index, found by insertion into a
// list of at most k: the combiner picks five of a dozen or so candidates at each of
// 80 horizons per refit, where sorting them all was 2% of a refit of a
// seasonal series (BenchmarkRefit shape=hourly, CPU profile). v holds no
// NaNs (fitCandidates makes them +Inf).
func bestK(dst []int, v []float64, k int) []int {
	idx := dst[:0]
	for i, x := range v {
		if k <= 0 || len(idx) == k && !(x < v[idx[k-1]]) {
			continue // after the k-th: an equal value's later index too
		}
		if len(idx) == k {
			idx = idx[:k-1]
		}
		idx = append(idx, i)
		for j := len(idx) - 1; j > 0 && x < v[idx[j-1]]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	return idx
}

// combineInverseTop weighs the k best candidates by valErr^-p, computed as
// (best/valErr)^p so that tiny or zero errors (a noise-free series) do
// not overflow: candidates tied at zero error share the weight equally.
func combineInverseTop(k int, p float64) combiner {
	top := combineTop(k)
	return func(valErr []float64, sc *fitScratch) []float64 {
		w := top(valErr, sc)
		best := math.Inf(1)
		for i, v := range valErr {
			if w[i] > 0 {
				best = min(best, v)
			}
		}
		for i, v := range valErr {
			switch {
			case w[i] == 0:
			case best == 0 && v == 0:
				w[i] = 1
			case best == 0:
				w[i] = 0
			default:
				w[i] = math.Pow(best/v, p)
			}
		}
		return w
	}
}
