package forecast

import "slices"

// stepWindow is the number of recent sampling intervals whose median is
// the inferred step.
const stepWindow = 9

// stepEstimator infers the sampling interval as the median of the last
// stepWindow positive timestamp differences: robust to the odd late or
// missing sample, and able to follow a changed scrape interval.
type stepEstimator struct {
	diffs [stepWindow]int64
	// int32s, in one word: with the Model's flags gathered, the Model fits
	// the 320-byte size class instead of the 352.
	n    int32 // differences seen, saturating at stepWindow
	next int32
}

func (s *stepEstimator) add(d int64) {
	if d <= 0 {
		return
	}
	s.diffs[s.next] = d
	s.next = (s.next + 1) % stepWindow
	s.n = min(s.n+1, stepWindow)
}

// step returns the median difference, or 0 before the first one.
func (s *stepEstimator) step() int64 {
	if s.n == 0 {
		return 0
	}
	var tmp [stepWindow]int64
	d := tmp[:s.n]
	copy(d, s.diffs[:s.n])
	slices.Sort(d)
	return d[(s.n-1)/2]
}
