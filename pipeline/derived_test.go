package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// TestDerivedInputs evaluates a configured PromQL expression over the TSDB
// and scores each series of its result under the derived input's name.
func TestDerivedInputs(t *testing.T) {
	cfg, err := config.Load([]byte(`
derived:
  - name: error_ratio
    expr: sum by (service) (errors) / sum by (service) (requests)
    interval: 1h
`))
	require.NoError(t, err)
	// The loop evaluates on the wall clock; the test calls evalDerived at
	// the samples' times instead, hence an interval longer than the test.
	e := newEnvEngine(t, "", cfg, promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute}), nil)

	// Gauges (no counter suffix), so the ratio is of the raw values.
	for i := range 10 {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, []labels.Labels{
			labels.FromStrings("__name__", "errors", "service", "api"),
			labels.FromStrings("__name__", "requests", "service", "api"),
		}, []float64{float64(i), 10})
		e.p.evalDerived(context.Background(), 0, time.UnixMilli(ts))
	}
	e.sync()
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "error_ratio")}})
	require.Len(t, got, 1)
	require.Equal(t, map[string]string{"for": "error_ratio", "service": "api"}, got[0].Labels)
	require.InDelta(t, 0.9, got[0].Value, 1e-12)
	out := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "error_ratio"))
	require.Len(t, out[labels.FromStrings("__name__", "anomaly_score", "for", "error_ratio", "service", "api").String()], 10)
	// Not written back as an input, and kept out of snapshots.
	require.Empty(t, query(t, e.db, eq("__name__", "error_ratio")))
}
