package pipeline

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
