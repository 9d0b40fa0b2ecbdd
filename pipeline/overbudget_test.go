package pipeline

import (
	"math"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/stretchr/testify/require"
)

// TestOverBudgetLeaves: a series refused for the budget that then goes
// stale (its pod left) is no longer "not scored now": it leaves the
// omen_series_over_budget gauge at its marker, and takes none of the room
// the sweep gives to the refused series still sending.
func TestOverBudgetLeaves(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.MaxSeries = 2 })
	var ls []labels.Labels
	var vs []float64
	for i := range 5 {
		ls = append(ls, labels.FromStrings("__name__", "g", "i", string(rune('a'+i))))
		vs = append(vs, 1)
	}
	e.push(t0.UnixMilli(), model.MetricTypeGauge, ls, vs)
	e.sync()
	require.Equal(t, int64(3), e.p.overBudgetNow.Load())
	var refused []labels.Labels
	scored := map[string]bool{}
	for _, a := range e.p.Anomalies(nil) {
		scored[a.Labels["i"]] = true
	}
	for _, l := range ls {
		if !scored[l.Get("i")] {
			refused = append(refused, l)
		}
	}
	stale := math.Float64frombits(value.StaleNaN)
	e.push(t0.UnixMilli()+stepMs, model.MetricTypeGauge, refused, []float64{stale, stale, stale})
	e.sync()
	require.Equal(t, int64(0), e.p.overBudgetNow.Load(), "refused series that left are not over the budget now")
}
