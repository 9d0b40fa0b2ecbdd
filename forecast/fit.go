package forecast

import "math"

// fitAll fits each candidate c with want[c] (every one if want is nil) on
// y and sets ok[c] to whether it could be fitted, as cands[c].fit(y, sc)
// would (false for the others). Two kinds of work are
// shared between the candidates: the values the candidates on the raw
// scale fit on, exp(y), are computed once rather than by each of them (see
// rawScale.fit), and the Theta candidates (Theta and the drift, on either
// scale) with the same first origin are fitted in pairs whose searches for
// α run side by side (see fitThetaPair).
func fitAll(ok []bool, cands []component, want []bool, y []float64, sc *fitScratch) {
	var raw []float64 // exp(y), once a candidate on the raw scale needs it
	type pending struct {
		th *theta
		y  []float64
		c  int
	}
	var small [16]pending // a refit has at most 6 or so
	thetas := small[:0]
	for c, comp := range cands {
		ok[c] = false
		if want != nil && !want[c] {
			continue
		}
		x := y
		if r, isRaw := comp.(*rawScale); isRaw {
			if raw == nil {
				raw = sc.floats(len(y))
				for i, v := range y {
					raw[i] = math.Exp(v)
				}
			}
			comp, x = r.c, raw
		}
		if th, isTheta := comp.(*theta); isTheta {
			thetas = append(thetas, pending{th, x, c})
			continue
		}
		ok[c] = comp.fit(x, sc)
	}
	for i := 0; i < len(thetas); i++ {
		a := thetas[i]
		j := i + 1
		for j < len(thetas) && thetas[j].th.warm() != a.th.warm() {
			j++
		}
		if j == len(thetas) {
			ok[a.c] = a.th.fit(a.y, sc)
			continue
		}
		b := thetas[j]
		ok[a.c], ok[b.c] = fitThetaPair(a.th, a.y, b.th, b.y, sc)
		// b is done: the ones between it and a move up a place.
		copy(thetas[j:], thetas[j+1:])
		thetas = thetas[:len(thetas)-1]
	}
}
