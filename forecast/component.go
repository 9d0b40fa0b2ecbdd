package forecast

// component is one forecaster inside a Model. It works on the model's
// transformed scale (see transform) and on evenly spaced samples.
//
// fit estimates parameters and state from a history; afterwards update and
// forecast need no allocation and are O(1) and O(len(dst)). A component is
// built for a given set of seasons; a refit that finds other seasons builds
// new components.
type component interface {
	// fit estimates the parameters and the state from y, oldest first.
	// Afterwards the state is at the end of y. It reports false if y is too
	// short or degenerate for this component. Temporary buffers come from
	// sc (nil: allocated).
	fit(y []float64, sc *fitScratch) bool
	// update advances the state by one observation, parameters fixed.
	update(v float64)
	// forecast writes the forecasts 1..len(dst) steps after the last
	// observation into dst.
	forecast(dst []float64)
	// name identifies the component in tests and logs.
	name() string
}

// compacter is a component holding memory that only fitting needs. The
// ensemble calls compact after a component's final fit: a Model keeps its
// components for as long as its series lives, and is refitted with new ones.
type compacter interface{ compact() }
