package pipeline

import (
	"context"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestWarmStartReadsOwnHistory: a new series is warmed from its own
// history in the TSDB only, never from a series whose labels include its
// own (equality matchers select both), and a stale marker in it (Prometheus
// writes one when a target goes away) is not a sample: it used to turn the
// forecast accuracy's MASE scale into NaN for good.
func TestWarmStartReadsOwnHistory(t *testing.T) {
	const n, live = 300, 300
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	vs := seasonal(n+live, 3)
	tests := []struct {
		name     string
		superset bool // a series with one label more has history too
		stale    bool // the history ends with a stale marker
		warmed   float64
	}{
		{"own history", false, false, n},
		{"superset series present", true, false, n},
		{"stale marker", false, true, n - 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			other := labels.NewBuilder(ls).Set("instance", "b").Labels()
			app := e.db.AppenderV2(context.Background())
			for i := range n {
				ts, v := t0.UnixMilli()+int64(i)*stepMs, vs[i]
				if tc.stale && i == n-1 {
					v = math.Float64frombits(value.StaleNaN)
				}
				_, err := app.Append(0, ls, 0, ts, v, nil, nil, storage.AOptions{})
				require.NoError(t, err)
				if tc.superset {
					_, err = app.Append(0, other, 0, ts, 1000+v, nil, nil, storage.AOptions{})
					require.NoError(t, err)
				}
			}
			require.NoError(t, app.Commit())
			for i := n; i < n+live; i++ {
				e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{vs[i]})
			}
			e.sync()
			require.Equal(t, tc.warmed, testutil.ToFloat64(e.p.m.warmed))
			got := e.p.Anomalies(nil)
			require.Len(t, got, 1)
			require.Less(t, got[0].Score, 1.0, "the live samples are like the history")
			require.Less(t, float64(got[0].Yhat), 500.0, "expected from this series' values (~100), not the other's (~1100)")
			scale := e.onlySeries().absDif
			require.False(t, math.IsNaN(scale) || math.IsInf(scale, 0) || scale <= 0, "MASE scale %v", scale)
			a := e.p.acc()
			a.mu.Lock()
			defer a.mu.Unlock()
			require.NotEmpty(t, a.m, "forecast accuracy is measured")
		})
	}
}
