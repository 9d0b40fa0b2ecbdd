package forecast

import "math"

// rawScale runs a component on the original values while the ensemble
// works on their logarithm: it exponentiates what it is given and takes the
// logarithm of what it forecasts.
//
// Offering each model on both scales lets validation choose per series and
// horizon: on the M4 Hourly self-split the log scale gave the better sMAPE
// (relative errors, multiplicative seasons) and the value scale the better
// MASE (absolute errors on series whose swings do not grow with the level);
// both together beat either.
type rawScale struct {
	c component
}

func (r *rawScale) name() string { return "raw-" + r.c.name() }

func (r *rawScale) fit(y []float64, sc *fitScratch) bool {
	x := sc.floats(len(y))
	for i, v := range y {
		x[i] = math.Exp(v)
	}
	return r.c.fit(x, sc)
}

func (r *rawScale) update(v float64) { r.c.update(math.Exp(v)) }

func (r *rawScale) compact() {
	if k, ok := r.c.(compacter); ok {
		k.compact()
	}
}

// forecast maps non-positive forecasts (a trend run below zero) to the
// smallest positive number: their validation error is then huge and their
// weight nil.
func (r *rawScale) forecast(dst []float64) { r.forecastSteps(dst, nil) }

// forecastSteps is forecast taking the logarithms at the places steps only
// (all of them if nil; see ensemble.forecastSteps).
func (r *rawScale) forecastSteps(dst []float64, steps []int) {
	r.c.forecast(dst)
	logsAt(dst, steps)
}
