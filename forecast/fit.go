package forecast

import (
	"math"
	"slices"
)

// fitAll fits each candidate c with want[c] (every one if want is nil) on
// y and sets ok[c] to whether it could be fitted, as cands[c].fit(y, sc)
// would (false for the others). Two kinds of work are shared between the
// candidates: the values the candidates on the raw scale fit on, exp(y),
// are computed once rather than by each of them (see rawScale.fit), and
// the Theta, Holt-Winters and Fourier candidates are fitted in pairs
// (Theta and the drift, the same model on both scales) that share work or
// run their searches for parameters side by side (see fitThetaPair,
// fitHoltWintersPair and fitFourierPair).
func fitAll(ok []bool, cands []component, want []bool, y []float64, sc *fitScratch) {
	var raw []float64 // exp(y), once a candidate on the raw scale needs it
	type pending struct {
		comp component // a *theta, *holtWinters or *fourierReg
		y    []float64
		c    int
	}
	var small [16]pending // as many as two seasons on both scales give
	pend := small[:0]
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
		switch comp.(type) {
		case *theta, *holtWinters, *fourierReg:
			pend = append(pend, pending{comp, x, c})
			continue
		}
		ok[c] = comp.fit(x, sc)
	}
	for i := 0; i < len(pend); i++ {
		a := pend[i]
		j := i + 1
		for j < len(pend) && !pairs(a.comp, pend[j].comp) {
			j++
		}
		if j == len(pend) {
			ok[a.c] = a.comp.fit(a.y, sc)
			continue
		}
		b := pend[j]
		switch ca := a.comp.(type) {
		case *theta:
			ok[a.c], ok[b.c] = fitThetaPair(ca, a.y, b.comp.(*theta), b.y, sc)
		case *holtWinters:
			ok[a.c], ok[b.c] = fitHoltWintersPair(ca, a.y, b.comp.(*holtWinters), b.y, sc)
		case *fourierReg:
			ok[a.c], ok[b.c] = fitFourierPair(ca, a.y, b.comp.(*fourierReg), b.y, sc)
		}
		// b is done: the ones after it move up a place.
		copy(pend[j:], pend[j+1:])
		pend = pend[:len(pend)-1]
	}
}

// pairs reports whether a and b can be fitted side by side: two Thetas
// with the same first origin and horizon, two additive Holt-Winters models
// or two Fourier regressions with the same seasons and horizon.
func pairs(a, b component) bool {
	switch a := a.(type) {
	case *theta:
		b, ok := b.(*theta)
		return ok && a.warm() == b.warm() && a.H == b.H
	case *holtWinters:
		b, ok := b.(*holtWinters)
		return ok && !a.mult && !b.mult && a.m1 == b.m1 && a.m2 == b.m2 && a.horizon == b.horizon
	case *fourierReg:
		b, ok := b.(*fourierReg)
		return ok && a.H == b.H && slices.Equal(a.periods, b.periods)
	}
	return false
}
