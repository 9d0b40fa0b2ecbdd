package pipeline

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// TestSilentSeriesLeaveAnomalies: an input whose samples stop without a
// staleness marker leaves /metrics after the lookback (series.silent); the
// anomalies API, "the top series by current score", must drop it then too,
// not list its last score until --detect.stale-after.
func TestSilentSeriesLeaveAnomalies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		after  time.Duration
		listed bool
	}{
		{"just after its last sample", time.Minute, true},
		{"past the lookback", 10 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			ls := labels.FromStrings("__name__", "g", "pod", "a")
			e.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{ls}, []float64{1})
			e.sync()
			e.clock.set(t0.Add(tc.after))
			var out bytes.Buffer
			require.NoError(t, e.p.WriteOutputs(&out))
			onMetrics := strings.Contains(out.String(), `anomaly_score{pod="a"`)
			require.Equal(t, tc.listed, onMetrics)
			require.Equal(t, onMetrics, len(e.p.Anomalies(nil)) == 1, "/api/v1/anomalies agrees with /metrics")
		})
	}
}
