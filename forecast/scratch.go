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
	if s.off+n > len(s.buf) {
		// A larger array; the slices handed out so far stay valid on the
		// old one, and the next refit starts on the larger one.
		s.buf = make([]float64, max(2*len(s.buf), 2*n, 4096))
		s.off = 0
	}
	x := s.buf[s.off : s.off+n : s.off+n]
	s.off += n
	clear(x)
	return x
}

// getFitScratch returns an empty scratch; putFitScratch gives it back.
func getFitScratch() *fitScratch { return fitScratches.Get().(*fitScratch) }

func putFitScratch(s *fitScratch) {
	s.off = 0
	fitScratches.Put(s)
}
