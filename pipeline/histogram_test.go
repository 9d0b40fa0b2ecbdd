package pipeline

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestNativeHistogramsCounted: native histogram samples are stored, not
// scored, and say so (they were skipped without a trace: no output, no
// counter, no word in the docs).
func TestNativeHistogramsCounted(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "rpc_duration_seconds", "job", "a")
	for i := range 5 {
		a := e.app.AppenderV2(context.Background())
		h := &histogram.Histogram{Count: uint64(10 * i), Sum: float64(i), Schema: 0, ZeroThreshold: 1e-128,
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{int64(10 * i)}}
		_, err := a.Append(0, ls, 0, t0.UnixMilli()+int64(i)*stepMs, 0, h, nil, storage.AOptions{})
		require.NoError(t, err)
		require.NoError(t, a.Commit())
	}
	e.sync()
	require.Equal(t, 5.0, testutil.ToFloat64(e.p.m.histogramsNotScored))
	require.Empty(t, e.p.Anomalies(nil))
	q, err := e.db.Querier(0, t0.UnixMilli()+10*stepMs)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "rpc_duration_seconds"))
	require.True(t, ss.Next(), "stored")
}

// TestCreatedTimestampsNotScored: OpenMetrics' <family>_created series (a
// counter's, histogram's or summary's creation time) step at every restart
// of their process, and opened an incident each time (peak ~7); they are
// not scored. A gauge or counter that is merely named so is.
func TestCreatedTimestampsNotScored(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	e.p.NoteTypes([]string{"req", "lat_seconds", "up", "rpc_total"}, []model.MetricType{model.MetricTypeCounter, model.MetricTypeHistogram, model.MetricTypeGauge, model.MetricTypeCounter})
	for _, tc := range []struct {
		name   string
		typ    model.MetricType
		scored bool
	}{
		{"req_created", "", false},                        // 1.0: its family req declared a counter
		{"lat_seconds_created", "", false},                // a histogram's
		{"rpc_created", model.MetricTypeCounter, false},   // 2.0: rpc_total's
		{"sum_created", model.MetricTypeSummary, false},   // 2.0: a summary's, by its own type
		{"up_created", "", true},                          // up is a gauge
		{"kube_pod_created", model.MetricTypeGauge, true}, // a timestamp gauge of its own
		{"users_created", model.MetricTypeCounter, true},  // a counter named so
		{"req_total", model.MetricTypeCounter, true},      // the counter itself
	} {
		e.feed(labels.FromStrings("__name__", tc.name, "job", "a"), tc.typ, seasonal(100, 3))
	}
	scored := map[string]bool{}
	for _, a := range e.p.Anomalies(nil) {
		scored[a.Labels["for"]] = true
	}
	require.Equal(t, map[string]bool{"up_created": true, "kube_pod_created": true, "users_created": true, "req_total": true}, scored)
}

// TestCreatedFamiliesBounded: the creation-timestamp series NoteTypes
// remembers are bounded by their own number: histograms and summaries,
// which never enter the counter/gauge declarations, grew it without end.
func TestCreatedFamiliesBounded(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	for _, typ := range []model.MetricType{model.MetricTypeHistogram, model.MetricTypeSummary} {
		var fams []string
		var types []model.MetricType
		for i := range maxDeclared + 5000 {
			fams = append(fams, fmt.Sprintf("%s_%d_seconds", typ, i))
			types = append(types, typ)
		}
		e.p.NoteTypes(fams, types)
	}
	require.Len(t, *e.p.created.Load(), maxDeclared)
}
