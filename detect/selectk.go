package detect

import "cmp"

// SelectK reorders x so that x[k] holds the value sorting x would put there,
// with no greater value before it and no smaller one after, and returns it.
// Values order as slices.Sort orders them (NaNs first), so the result is
// exactly the sorted one. Expected O(len(x)) rather than sorting's
// O(len(x)·log len(x)): the periodogram's median and the conformal
// quantiles need one or two order statistics, not the order.
func SelectK(x []float64, k int) float64 {
	lo, hi := 0, len(x)-1
	for hi-lo >= 12 {
		// Median of three as the pivot, which also sentinels both scans.
		m := lo + (hi-lo)/2
		if cmp.Less(x[m], x[lo]) {
			x[m], x[lo] = x[lo], x[m]
		}
		if cmp.Less(x[hi], x[lo]) {
			x[hi], x[lo] = x[lo], x[hi]
		}
		if cmp.Less(x[hi], x[m]) {
			x[hi], x[m] = x[m], x[hi]
		}
		p := x[m]
		i, j := lo, hi
		for i <= j {
			for cmp.Less(x[i], p) {
				i++
			}
			for cmp.Less(p, x[j]) {
				j--
			}
			if i <= j {
				x[i], x[j] = x[j], x[i]
				i++
				j--
			}
		}
		// x[lo..j] ≤ p ≤ x[i..hi], and everything between equals p.
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return x[k]
		}
	}
	// Insertion sort of the short remainder.
	for i := lo + 1; i <= hi; i++ {
		for j := i; j > lo && cmp.Less(x[j], x[j-1]); j-- {
			x[j], x[j-1] = x[j-1], x[j]
		}
	}
	return x[k]
}
