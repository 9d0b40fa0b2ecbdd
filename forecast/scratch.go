package forecast

import (
	"slices"
	"sync"
)

// fitScratch lends one refit its temporary float64 buffers: a backing
// array carved up in turn and reused by the next refit, instead of a dozen
// slices per refit left to the garbage collector (the refits were more
// than half of what `omen serve` allocated at 100k series in the steady
// state, and allocation is what sets how often the collector runs).
// Nothing a fitted model keeps may come from it.
type fitScratch struct {
	buf []float64
	off int

	// A refit's candidates and its per-candidate rows and flags, cleared
	// after use (see release): the pool holds no component of a model.
	comps []component
	rows  [][]float64
	flags []bool
	foff  int
	ints  []int

	spares spares
}

// spares are candidates of earlier refits that no ensemble kept, for a
// later refit to build its own in (see recycle): each refit made some
// thirty objects (components, their arrays, the rawScale wrappers) of
// which the ensemble kept about half. A component is put here only once
// nothing else refers to it, and init makes it what its constructor would
// have, so a refit fits the same to the bit with spares or without.
type spares struct {
	hw []*holtWinters
	th []*theta
	sn []*seasonalNaive
	fr []*fourierReg
	rs []*rawScale
}

// maxSpares bounds each kind of spare: a refit's candidates are at most
// 2 scales × 4 seasonal naives, and fewer of each other kind.
const maxSpares = 8

// spare returns one of l, the latest for which fits reports true if
// there is one (its arrays are of the sizes needed, so init reuses them),
// else the latest; a new T if l is empty.
func spare[T any](l *[]*T, fits func(*T) bool) *T {
	n := len(*l)
	if n == 0 {
		return new(T)
	}
	i := n - 1
	for j := n - 1; j >= 0; j-- {
		if fits((*l)[j]) {
			i = j
			break
		}
	}
	x := (*l)[i]
	(*l)[i] = (*l)[n-1]
	(*l)[n-1] = nil
	*l = (*l)[:n-1]
	return x
}

func anySpare[T any](*T) bool { return true }

func keepSpare[T any](l *[]*T, x *T) {
	if len(*l) < maxSpares {
		*l = append(*l, x)
	}
}

// recycle keeps the candidates cs that kept (an ensemble's components)
// does not hold, for a refit to build its own in: a refit's candidates
// that its ensemble did not keep, and the components of the ensemble it
// replaces (compacted: init makes what compact dropped). Nothing may use
// them after.
func (s *fitScratch) recycle(cs, kept []component) {
	if s == nil {
		return
	}
	for _, c := range cs {
		if !slices.Contains(kept, c) {
			s.spares.put(c)
		}
	}
}

func (sp *spares) put(c component) {
	switch x := c.(type) {
	case *rawScale:
		sp.put(x.c)
		x.c = nil
		keepSpare(&sp.rs, x)
	case *holtWinters:
		if x.hwFit != nil { // nil once compacted; init makes another
			*x.hwFit = hwFit{} // drops what it held of the scratch
		}
		keepSpare(&sp.hw, x)
	case *theta:
		keepSpare(&sp.th, x)
	case *seasonalNaive:
		keepSpare(&sp.sn, x)
	case *fourierReg:
		keepSpare(&sp.fr, x)
	}
}

// The constructors of the refit's candidates, in spares where there are
// any (a nil scratch has none).

func (s *fitScratch) holtWinters(mult bool, seasons []int, H int) *holtWinters {
	if s == nil {
		return newHoltWinters(mult, seasons, H)
	}
	return spare(&s.spares.hw, anySpare).init(mult, seasons, H)
}

func (s *fitScratch) theta(m, H int) *theta {
	if s == nil {
		return newTheta(m, H)
	}
	return spare(&s.spares.th, func(th *theta) bool { return cap(th.seas) == max(m, 1) }).init(m, H)
}

func (s *fitScratch) drift(m, H int) *theta {
	if s == nil {
		return newDrift(m, H)
	}
	return spare(&s.spares.th, func(th *theta) bool { return cap(th.seas) == max(m, 1) }).initDrift(m, H)
}

func (s *fitScratch) seasonalNaive(m int, diff bool) *seasonalNaive {
	if s == nil {
		return new(seasonalNaive).init(m, diff)
	}
	n := max(m, 1) // the ring's length, see span
	if diff {
		n++
	}
	return spare(&s.spares.sn, func(s *seasonalNaive) bool { return s.own && len(s.r.v) == n }).init(m, diff)
}

func (s *fitScratch) fourierReg(periods []int, H int) *fourierReg {
	if s == nil {
		return newFourierReg(periods, H)
	}
	return spare(&s.spares.fr, func(f *fourierReg) bool { return slices.Equal(f.periods, periods) }).init(periods, H)
}

func (s *fitScratch) rawScale(c component) *rawScale {
	if s == nil {
		return &rawScale{c: c}
	}
	r := spare(&s.spares.rs, anySpare)
	r.c = c
	return r
}

// fitScratches holds one fitScratch per concurrent refit. A pool, not a
// field of Model: the buffers are needed only during a refit, which is
// rare per model, so per-model buffers would be memory held for nothing.
var fitScratches = sync.Pool{New: func() any { return new(fitScratch) }}

// floats returns n zeroed values, valid until the scratch is returned to
// the pool; from a nil scratch, newly allocated ones. Capacity is n, so an
// append cannot spill into the next slice.
func (s *fitScratch) floats(n int) []float64 {
	if s == nil {
		return make([]float64, n)
	}
	return carve(&s.buf, &s.off, n, 4096)
}

// carve returns the n zeroed values of *buf from *off, and moves *off
// past them; with fewer left, a larger array (at least least values) is
// carved from: the slices handed out so far stay valid on the old one,
// and the next refit starts on the larger one.
func carve[T any](buf *[]T, off *int, n, least int) []T {
	if *off+n > len(*buf) {
		*buf = make([]T, max(2*len(*buf), 2*n, least))
		*off = 0
	}
	x := (*buf)[*off : *off+n : *off+n]
	*off += n
	clear(x)
	return x
}

// flagsOf returns n false flags, valid until reset; from a nil scratch,
// newly allocated ones. Capacity is n.
func (s *fitScratch) flagsOf(n int) []bool {
	if s == nil {
		return make([]bool, n)
	}
	return carve(&s.flags, &s.foff, n, 64)
}

// rowsOf returns n nil rows, for one user at a time until release.
func (s *fitScratch) rowsOf(n int) [][]float64 {
	if s == nil {
		return make([][]float64, n)
	}
	if cap(s.rows) < n {
		s.rows = make([][]float64, n)
	}
	s.rows = s.rows[:n]
	clear(s.rows)
	return s.rows
}

// intsOf returns an empty slice to append to, for one user at a time;
// keepInts gives its (grown) array back.
func (s *fitScratch) intsOf() []int {
	if s == nil {
		return nil
	}
	return s.ints[:0]
}

func (s *fitScratch) keepInts(x []int) {
	if s != nil {
		s.ints = x[:0]
	}
}

// candidates returns an empty slice to build a refit's candidates in, for
// one refit at a time; release gives it back, cleared.
func (s *fitScratch) candidates() []component {
	if s == nil {
		return nil
	}
	return s.comps[:0]
}

// release gives back the candidates slice cs and drops what the scratch
// refers to of the refit: its components, and the rows (into buf).
func (s *fitScratch) release(cs []component) {
	if s == nil {
		return
	}
	clear(cs)
	s.comps = cs[:0]
	clear(s.rows)
}

// reset makes the whole scratch available again.
func (s *fitScratch) reset() {
	s.off, s.foff = 0, 0
	clear(s.rows)
}

// getFitScratch returns an empty scratch; putFitScratch gives it back.
func getFitScratch() *fitScratch { return fitScratches.Get().(*fitScratch) }

func putFitScratch(s *fitScratch) {
	s.reset()
	fitScratches.Put(s)
}
