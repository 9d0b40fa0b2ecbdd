package forecast

import "sync"

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
