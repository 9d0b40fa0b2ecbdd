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
	d := len(x0)
	// The simplex's rows on the stack for the models here (at most five
	// parameters).
	var rows [6][]float64
	pts := rows[:0]
	if d+1 > len(rows) {
		pts = make([][]float64, 0, d+1)
	}
	pts = pts[:d+1]
	val := sc.floats(d + 1)
	for i := range pts {
		pts[i] = sc.floats(d)
		copy(pts[i], x0)
		if i > 0 {
			pts[i][i-1] += step
		}
		val[i] = f(pts[i])
	}
	evals := d + 1
	cen := sc.floats(d)
	xr := sc.floats(d)
	xe := sc.floats(d)
	for evals < maxEval {
		// Order: best first, worst last (insertion sort: d is tiny).
		for i := 1; i <= d; i++ {
			for j := i; j > 0 && val[j] < val[j-1]; j-- {
				val[j], val[j-1] = val[j-1], val[j]
				pts[j], pts[j-1] = pts[j-1], pts[j]
			}
		}
		if math.Abs(val[d]-val[0]) <= 1e-7*(math.Abs(val[0])+1e-12) {
			break
		}
		clear(cen)
		for i := 0; i < d; i++ {
			for j := range cen {
				cen[j] += pts[i][j] / float64(d)
			}
		}
		for j := range xr {
			xr[j] = cen[j] + (cen[j] - pts[d][j])
		}
		fr := f(xr)
		evals++
		switch {
		case fr < val[0]:
			for j := range xe {
				xe[j] = cen[j] + 2*(cen[j]-pts[d][j])
			}
			fe := f(xe)
			evals++
			if fe < fr {
				copy(pts[d], xe)
				val[d] = fe
			} else {
				copy(pts[d], xr)
				val[d] = fr
			}
		case fr < val[d-1]:
			copy(pts[d], xr)
			val[d] = fr
		default:
			// Contract towards the better of the worst point and its reflection.
			if fr < val[d] {
				for j := range xe {
					xe[j] = cen[j] + 0.5*(xr[j]-cen[j])
				}
			} else {
				for j := range xe {
					xe[j] = cen[j] + 0.5*(pts[d][j]-cen[j])
				}
			}
			fc := f(xe)
			evals++
			if fc < math.Min(fr, val[d]) {
				copy(pts[d], xe)
				val[d] = fc
				continue
			}
			for i := 1; i <= d; i++ {
				for j := range pts[i] {
					pts[i][j] = pts[0][j] + 0.5*(pts[i][j]-pts[0][j])
				}
				val[i] = f(pts[i])
				evals++
			}
		}
	}
	best := 0
	for i := range val {
		if val[i] < val[best] {
			best = i
		}
	}
	return pts[best]
}

// logistic maps R to (lo, hi).
func logistic(x, lo, hi float64) float64 { return lo + (hi-lo)/(1+math.Exp(-x)) }

// logit is the inverse of logistic.
func logit(y, lo, hi float64) float64 {
	p := (y - lo) / (hi - lo)
	return math.Log(p / (1 - p))
}
