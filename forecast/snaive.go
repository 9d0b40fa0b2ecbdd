package forecast

import (
	"fmt"
	"math"
)

// seasonalNaive repeats the last season: ŷ_{n+h} = y_{n+h−m·⌈h/m⌉}. It is
// the floor every other model has to beat.
//
// With diff it is the seasonal random walk of the differences,
// ARIMA(0,1,0)(0,1,0)_m: the last season's course from the latest value,
// plus the change over the last season for each season ahead,
//
//	ŷ_{n+h} = y_{n+j−m} + k·(y_n − y_{n−m}),  h = j + (k−1)·m, 1 ≤ j ≤ m.
//
// The plain repeat forecasts the last season's levels: on a sawtooth (a
// disk cleaned up every 8 hours) it lags the ramp by what the series
// gained since a season ago, and when the periodic event stops it goes on
// forecasting the level after the drop for a whole season, 20 below a disk
// filling up (make bench-capacity). The differences carry the ramp's slope
// from the latest value, and a drop that did not come is no longer in them
// once its time has passed.
//
// With raw it works on the original values while the ensemble works on
// their logarithm, as rawScale would run it, with the same arithmetic:
// the exponential of each value it forecasts from, the logarithm of each
// forecast. It keeps the values as given, not their exponentials, so that
// it can read the ring of a component on the ensemble's scale: the
// exponentials are taken at each forecast (min(h, m) of them), not once
// per value at its update, which made a step of a series with a season
// (two updates and an 80-step forecast) about 1.1 µs dearer, 8.0 → 9.2 µs
// at a season of 360 (CPU time, median of 7). The plain repeat and the
// differences' of one forecast take them once between them (seasonExps),
// which with the season copied out of the ring rather than read through a
// call per value took 9% of the instructions off such a step
// (BenchmarkForecastStep shape=season=360, cachegrind).
//
// Its state is nothing but the latest values, which every seasonal naive
// of an ensemble holds alike: after the final fit they read one ring (see
// shareSeasonRing), the longest any of them needs, pushed to by the one
// that owns it. Each kept the last season as float64s of its own before,
// the plain and the differences' on both scales four copies of one
// season: 11.7 KB of the 18.8 KB a Model with a daily season at 360 steps
// held, 2.9 KB so (TestModelHeldBytesSeasonal).
type seasonalNaive struct {
	r    *seasonRing
	m    int32 // the season
	diff bool
	raw  bool
	own  bool // r is this component's: update pushes to it
}

// seasonRing is a ring of the latest values, oldest at pos.
type seasonRing struct {
	v   []float64
	pos int32 // oldest entry, where the next value goes
}

func newSeasonalNaive(m int) *seasonalNaive { return new(seasonalNaive).init(m, false) }

// newSeasonalDiff returns the seasonal random walk of the differences with
// season m (see seasonalNaive).
func newSeasonalDiff(m int) *seasonalNaive { return new(seasonalNaive).init(m, true) }

// init makes s what newSeasonalNaive(m) (diff false) or newSeasonalDiff(m)
// returns, except that a ring of s's own stays, for fit to reuse if it is
// of the length it needs: fit overwrites all of it, and nothing reads it
// before (see fitScratch.recycle).
func (s *seasonalNaive) init(m int, diff bool) *seasonalNaive {
	var r *seasonRing
	if s.own {
		r = s.r
	}
	*s = seasonalNaive{r: r, own: r != nil, m: int32(max(m, 1)), diff: diff}
	return s
}

func (s *seasonalNaive) name() string {
	n := fmt.Sprintf("snaive-%d", s.m)
	if s.diff {
		n = fmt.Sprintf("sdiff-%d", s.m)
	}
	if s.raw {
		n = "raw-" + n
	}
	return n
}

// span is how many of the latest values the forecasts read: y_{n−m+1} to
// y_n, and y_{n−m} too with diff.
func (s *seasonalNaive) span() int {
	if s.diff {
		return int(s.m) + 1
	}
	return int(s.m)
}

func (s *seasonalNaive) fit(y []float64, _ *fitScratch) bool {
	n := s.span()
	if len(y) < n {
		return false
	}
	if !s.own || len(s.r.v) != n {
		s.r, s.own = &seasonRing{v: make([]float64, n)}, true
	}
	copy(s.r.v, y[len(y)-n:])
	s.r.pos = 0
	return true
}

func (s *seasonalNaive) update(v float64) {
	if !s.own {
		return // the ring's owner pushes v
	}
	r := s.r
	r.v[r.pos] = v
	if r.pos++; int(r.pos) == len(r.v) {
		r.pos = 0
	}
}

// shareSeasonRing makes the seasonal naive components among comps, fitted
// on the same values, read the ring of the one that holds the most: its
// latest values are theirs. The others' rings go.
func shareSeasonRing(comps []component) {
	var owner *seasonalNaive
	for _, c := range comps {
		if s, ok := c.(*seasonalNaive); ok && (owner == nil || len(s.r.v) > len(owner.r.v)) {
			owner = s
		}
	}
	for _, c := range comps {
		if s, ok := c.(*seasonalNaive); ok && s != owner {
			s.r, s.own = owner.r, false
		}
	}
}

func (s *seasonalNaive) forecast(dst []float64) { s.forecastWith(dst, nil, nil) }

// seasonExps lends the raw seasonal naive components of one ensemble
// forecast the exponentials of the last season's values, exp(y_{n−m+1}) …
// exp(y_{n−m+k}), that the first of a season m took: the plain one and the
// differences' of a season read the same values from the same ring, and
// each took min(h, m) exponentials of them at every forecast (80 of the
// about 400 in a step of an 80-step forecast of a series with a season).
// Held for a forecast only: kept between forecasts, as the ring's values
// are, they were 8 bytes more a value of the season for each Model.
type seasonExps struct {
	r *seasonRing // the ring v's values are of; nil: none yet
	m int32
	v []float64
}

// rawSeasonPair reports whether two of comps are raw seasonal naives of
// one season, which share their exponentials through a seasonExps: with
// none to share them with, keeping them cost a forecast of two seasons (a
// raw seasonal naive of the longer one alone) 1% more instructions.
func rawSeasonPair(comps []component) bool {
	for i, c := range comps {
		s, ok := c.(*seasonalNaive)
		if !ok || !s.raw {
			continue
		}
		for _, d := range comps[i+1:] {
			if t, ok := d.(*seasonalNaive); ok && t.raw && t.m == s.m {
				return true
			}
		}
	}
	return false
}

// get returns the exponentials of s's first k values if s is raw and ex
// holds them.
func (ex *seasonExps) get(s *seasonalNaive, k int) ([]float64, bool) {
	if ex == nil || !s.raw || ex.r != s.r || ex.m != s.m || len(ex.v) < k {
		return nil, false
	}
	return ex.v[:k], true
}

// put keeps v, the exponentials of s's first len(v) values if s is raw,
// ex holds none yet and has room for them.
func (ex *seasonExps) put(s *seasonalNaive, v []float64) {
	if ex == nil || !s.raw || ex.r != nil || cap(ex.v) < len(v) {
		return
	}
	ex.r, ex.m, ex.v = s.r, s.m, append(ex.v[:0], v...)
}

// forecastWith is forecast, the exponentials of a raw one shared through
// ex (which may be nil). With steps (see ensemble.forecastSteps), dst holds
// forecast's values at those places only: a raw one takes its
// exponentials and logarithms only where they are read.
func (s *seasonalNaive) forecastWith(dst []float64, ex *seasonExps, steps []int) {
	m := int(s.m)
	// The season's values, j = 1 to m, into dst's first m places (each
	// read, and with raw exponentiated, once), then each further season's
	// from them.
	first := min(len(dst), m)
	if v, ok := ex.get(s, first); ok {
		copy(dst, v)
	} else {
		s.season(dst[:first], steps)
		ex.put(s, dst[:first])
	}
	if s.diff {
		var last float64 // y_n: dst[m−1] holds it as at(m) reads it
		if first == m {
			last = dst[m-1]
		} else {
			last = s.at(m)
		}
		d := last - s.at(0)
		step := d
		for k := m; k < len(dst); k++ {
			if k%m == 0 {
				step += d // one more season ahead
			}
			dst[k] = dst[k%m] + step
		}
		for k := range first {
			dst[k] += d
		}
		if s.raw {
			logsAt(dst, steps)
		}
		return
	}
	// The plain repeat's further seasons are copies of the first: with raw,
	// of its logarithms, taken once.
	if s.raw && steps != nil {
		// Latest first: a place beyond the first season reads its place
		// in the first before that is taken in place (steps ascend
		// without repeats).
		for i := len(steps) - 1; i >= 0; i-- {
			k := steps[i]
			dst[k] = logPos(dst[k%m])
		}
		return
	}
	if s.raw {
		logs(dst[:first])
	}
	for k := m; k < len(dst); k++ {
		dst[k] = dst[k%m]
	}
}

// season writes y_{n−m+1} … y_{n−m+len(dst)} (len(dst) at most m) to dst,
// exponentiated with raw, as at reads them. With steps, only the places
// that forecastWith reads for them are exponentiated, the others hold the
// ring's values: place k mod m for each step k, and m−1 (y_n, a
// difference's last value; the places are the same for the plain repeat
// and the differences', so that they can share them through seasonExps).
func (s *seasonalNaive) season(dst []float64, steps []int) {
	r := s.r
	n := len(r.v)
	j := int(r.pos) + n - int(s.m) // at(1)'s place
	if j >= n {
		j -= n
	}
	// The ring's values up to its end, then from its start.
	k := copy(dst, r.v[j:])
	copy(dst[k:], r.v)
	if !s.raw {
		return
	}
	if steps == nil {
		for k, v := range dst {
			dst[k] = math.Exp(v)
		}
		return
	}
	// From the ring, not from dst: a place two steps share is taken once.
	m := int(s.m)
	at := func(p int) {
		if q := j + p; q < n {
			dst[p] = math.Exp(r.v[q])
		} else {
			dst[p] = math.Exp(r.v[q-n])
		}
	}
	for _, k := range steps {
		at(k % m)
	}
	if len(dst) == m {
		at(m - 1)
	}
}

// at is y_{n−m+i} (0 ≤ i ≤ m), exponentiated with raw. It sits in the
// ring at (b+i) mod len, b = pos+len−1−m; b+i is below 2·len, and not
// negative: i is 0 only with diff, whose ring holds y_{n−m}.
func (s *seasonalNaive) at(i int) float64 {
	r := s.r
	n := len(r.v)
	j := int(r.pos) + n - 1 - int(s.m) + i
	if j >= n {
		j -= n
	}
	if s.raw {
		return math.Exp(r.v[j])
	}
	return r.v[j]
}

// logs replaces each of x by its logarithm, a non-positive one (a forecast
// on the values run below zero) by the smallest positive number's: the
// ensemble's scale of a forecast on the values (see rawScale.forecast).
func logs(x []float64) {
	for k, v := range x {
		x[k] = logPos(v)
	}
}

// logsAt is logs of x at the places steps only; all of them if steps is
// nil.
func logsAt(x []float64, steps []int) {
	if steps == nil {
		logs(x)
		return
	}
	for _, k := range steps {
		x[k] = logPos(x[k])
	}
}

// logPos is the logarithm of v, of the smallest positive number if v is
// not positive.
func logPos(v float64) float64 { return math.Log(max(v, math.SmallestNonzeroFloat64)) }
