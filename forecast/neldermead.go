package forecast

import "math"

// nelderMead minimises f over R^d from x0 with the Nelder–Mead simplex
// (reflection 1, expansion 2, contraction ½, shrink ½) and returns the best
// point found after at most maxEval evaluations. The parameters of every
// model here are mapped to R^d by a logistic, so no bounds are needed.
//
// It is small and allocation-free on purpose: gonum's optimize package
// would do, but costs more per call than the objectives it minimises here.
// Its points come from sc (nil: allocated), and so does the point it
// returns, valid as long as the scratch is: a refit minimises a dozen
// objectives, and their simplexes were a fifth of what a refit left to the
// garbage collector (BenchmarkRefit).
func nelderMead(f func([]float64) float64, x0 []float64, step float64, maxEval int, sc *fitScratch) []float64 {
	var s simplexSearch
	s.init(x0, step, maxEval, sc)
	for x, ok := s.next(); ok; x, ok = s.next() {
		s.tell(f(x))
	}
	return s.best()
}

// simplexSearch is nelderMead one value at a time, as goldenSearch is the
// golden-section search: next gives the point whose value the search
// needs, tell takes that value. Driven so, two searches run side by side
// (see fitHoltWintersPair), each taking the steps it would alone.
type simplexSearch struct {
	d int
	// The simplex's points: rows for the models here (at most five
	// parameters), big beyond (see points). Not a slice of rows held
	// here: the search would point into itself, and so go to the heap.
	rows     [6][]float64
	big      [][]float64
	val      []float64
	cen      []float64
	xr, xe   []float64
	fr       float64
	evals    int
	maxEval  int
	stage    int // what the point asked for is, see the simplex* constants
	i        int // the point of the first simplex or of a shrink asked for
	finished bool
}

// The stages of a simplexSearch: the value it waits for is of the first
// simplex's point i, of the reflection, of the expansion, of the
// contraction, or of the shrunk point i.
const (
	simplexFirst = iota
	simplexReflect
	simplexExpand
	simplexContract
	simplexShrink
)

func (s *simplexSearch) init(x0 []float64, step float64, maxEval int, sc *fitScratch) {
	d := len(x0)
	s.d, s.maxEval = d, maxEval
	s.big = nil
	if d+1 > len(s.rows) {
		s.big = make([][]float64, d+1)
	}
	pts := s.points()
	s.val = sc.floats(d + 1)
	for i := range pts {
		pts[i] = sc.floats(d)
		copy(pts[i], x0)
		if i > 0 {
			pts[i][i-1] += step
		}
	}
	s.cen = sc.floats(d)
	s.xr = sc.floats(d)
	s.xe = sc.floats(d)
	s.stage, s.i = simplexFirst, 0
}

// points returns the simplex's d+1 points.
func (s *simplexSearch) points() [][]float64 {
	if s.big != nil {
		return s.big
	}
	return s.rows[:s.d+1]
}

// next returns the point whose value the search needs; ok is false once
// it has converged or spent its evaluations (see best).
func (s *simplexSearch) next() (x []float64, ok bool) {
	if s.finished {
		return nil, false
	}
	switch s.stage {
	case simplexFirst, simplexShrink:
		return s.points()[s.i], true
	case simplexReflect:
		return s.xr, true
	}
	return s.xe, true
}

// tell takes the value at the point next returned, and moves the simplex.
func (s *simplexSearch) tell(v float64) {
	d, pts, val := s.d, s.points(), s.val
	switch s.stage {
	case simplexFirst:
		val[s.i] = v
		if s.i++; s.i <= d {
			return
		}
		s.evals = d + 1
	case simplexReflect:
		fr := v
		s.fr = fr
		s.evals++
		switch {
		case fr < val[0]:
			for j := range s.xe {
				s.xe[j] = s.cen[j] + 2*(s.cen[j]-pts[d][j])
			}
			s.stage = simplexExpand
			return
		case fr < val[d-1]:
			copy(pts[d], s.xr)
			val[d] = fr
		default:
			// Contract towards the better of the worst point and its reflection.
			if fr < val[d] {
				for j := range s.xe {
					s.xe[j] = s.cen[j] + 0.5*(s.xr[j]-s.cen[j])
				}
			} else {
				for j := range s.xe {
					s.xe[j] = s.cen[j] + 0.5*(pts[d][j]-s.cen[j])
				}
			}
			s.stage = simplexContract
			return
		}
	case simplexExpand:
		fe := v
		s.evals++
		if fe < s.fr {
			copy(pts[d], s.xe)
			val[d] = fe
		} else {
			copy(pts[d], s.xr)
			val[d] = s.fr
		}
	case simplexContract:
		fc := v
		s.evals++
		if !(fc < math.Min(s.fr, val[d])) {
			s.stage, s.i = simplexShrink, 1
			s.shrink()
			return
		}
		copy(pts[d], s.xe)
		val[d] = fc
	case simplexShrink:
		val[s.i] = v
		s.evals++
		if s.i++; s.i <= d {
			s.shrink()
			return
		}
	}
	s.iterate()
}

// shrink moves point i halfway towards the best.
func (s *simplexSearch) shrink() {
	pts := s.points()
	p, best := pts[s.i], pts[0]
	for j := range p {
		p[j] = best[j] + 0.5*(p[j]-best[j])
	}
}

// iterate starts the next step: it orders the simplex and sets the
// reflection of the worst point, or finishes the search.
func (s *simplexSearch) iterate() {
	d, pts, val := s.d, s.points(), s.val
	if s.evals >= s.maxEval {
		s.finished = true
		return
	}
	// Order: best first, worst last (insertion sort: d is tiny).
	for i := 1; i <= d; i++ {
		for j := i; j > 0 && val[j] < val[j-1]; j-- {
			val[j], val[j-1] = val[j-1], val[j]
			pts[j], pts[j-1] = pts[j-1], pts[j]
		}
	}
	if math.Abs(val[d]-val[0]) <= 1e-7*(math.Abs(val[0])+1e-12) {
		s.finished = true
		return
	}
	cen := s.cen
	clear(cen)
	for i := 0; i < d; i++ {
		for j := range cen {
			cen[j] += pts[i][j] / float64(d)
		}
	}
	for j := range s.xr {
		s.xr[j] = cen[j] + (cen[j] - pts[d][j])
	}
	s.stage = simplexReflect
}

// best returns the point of the least value.
func (s *simplexSearch) best() []float64 {
	best := 0
	for i := range s.val {
		if s.val[i] < s.val[best] {
			best = i
		}
	}
	return s.points()[best]
}

// logistic maps R to (lo, hi).
func logistic(x, lo, hi float64) float64 { return lo + (hi-lo)/(1+math.Exp(-x)) }

// logit is the inverse of logistic.
func logit(y, lo, hi float64) float64 {
	p := (y - lo) / (hi - lo)
	return math.Log(p / (1 - p))
}
