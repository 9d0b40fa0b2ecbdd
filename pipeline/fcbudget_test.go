package pipeline

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// TestForecastBudgetGivenBack: series that came while --forecast.max-series
// was full get a forecaster once series that stopped free it, as
// --detect.max-series's room goes to the series that were over it.
func TestForecastBudgetGivenBack(t *testing.T) {
	for _, tc := range []struct {
		name          string
		old, newcomer int
		budget        int
	}{
		{"one for one", 2, 2, 2},
		{"more newcomers than room", 2, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) { o.MaxSeries, o.ForecastMaxSeries = 100, tc.budget })
			mk := func(p string, n int) (ls []labels.Labels, vs []float64) {
				for i := range n {
					ls = append(ls, labels.FromStrings("__name__", "g", "pod", p+string(rune('a'+i))))
					vs = append(vs, 1)
				}
				return
			}
			old, ov := mk("old-", tc.old)
			nw, nv := mk("new-", tc.newcomer)
			e.push(t0.UnixMilli(), model.MetricTypeGauge, old, ov)
			e.sync()
			require.Equal(t, int64(tc.budget), e.p.forecasting.Load())
			e.push(t0.UnixMilli()+stepMs, model.MetricTypeGauge, nw, nv) // a deploy: new pods while the old still count
			e.sync()
			// The old pods leave; the sweep drops them after StaleAfter.
			later := t0.Add(2 * time.Hour)
			e.clock.set(later)
			e.push(later.UnixMilli(), model.MetricTypeGauge, nw, nv)
			e.sync()
			for range 2 {
				for _, w := range e.p.workers {
					w.sweep()
				}
			}
			e.push(later.UnixMilli()+stepMs, model.MetricTypeGauge, nw, nv)
			e.sync()
			require.Equal(t, int64(tc.newcomer), e.p.scored.Load())
			require.Equal(t, int64(min(tc.budget, tc.newcomer)), e.p.forecasting.Load(), "the freed forecaster budget is used")
		})
	}
}
