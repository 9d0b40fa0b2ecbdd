package detect

import "math"

// Rolling keeps the mean and variance of the last w values of a stream whose
// window the caller holds (the detector's recent-sample ring): each Update
// adds the incoming value and removes the one leaving the window.
//
//	mean = Σx / n,   var = (Σx² - n·mean²) / (n-1)
//
// Running sums drift when values are large and close together, so Rebase
// recomputes them from the window exactly; the detector calls it every
// rollingRebase updates, which keeps the cost amortised O(1).
type Rolling struct {
	Sum, SumSq float64
	N          int32
	Updates    int32
}

// rollingRebase is the number of updates between exact recomputations.
const rollingRebase = 256

// Update adds in and, if evict, removes out.
func (r *Rolling) Update(in float64, out float64, evict bool) {
	r.Sum += in
	r.SumSq += in * in
	if evict {
		r.Sum -= out
		r.SumSq -= out * out
	} else {
		r.N++
	}
	r.Updates++
}

// Rebase recomputes the sums from the window's values.
func (r *Rolling) Rebase(window []float32) {
	var s, ss float64
	for _, v := range window {
		s += float64(v)
		ss += float64(v) * float64(v)
	}
	r.Sum, r.SumSq, r.N, r.Updates = s, ss, int32(len(window)), 0
}

// Mean returns the window mean, 0 if empty.
func (r *Rolling) Mean() float64 {
	if r.N == 0 {
		return 0
	}
	return r.Sum / float64(r.N)
}

// Var returns the unbiased window variance, 0 with fewer than two values.
func (r *Rolling) Var() float64 {
	if r.N < 2 {
		return 0
	}
	m := r.Sum / float64(r.N)
	return max(0, (r.SumSq-float64(r.N)*m*m)/float64(r.N-1))
}

// Std returns the window standard deviation.
func (r *Rolling) Std() float64 { return math.Sqrt(r.Var()) }
