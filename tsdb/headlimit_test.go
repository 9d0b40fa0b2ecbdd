package tsdb

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// limitRequest posts one sample at t of each series named by names, as a
// remote-write 1.0 or 2.0 request, and returns the answer.
func limitRequest(t *testing.T, h http.Handler, v2 bool, t0 int64, names ...string) (code int, body string, written string) {
	t.Helper()
	if !v2 {
		req := &prompb.WriteRequest{}
		for _, n := range names {
			req.Timeseries = append(req.Timeseries, series(t0, 1, "__name__", n, "job", "j"))
		}
		w := post(t, h, v1Body(t, req), nil)
		return w.Code, w.Body.String(), ""
	}
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for _, n := range names {
		req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", n, "job", "j"), nil),
			Samples:    []writev2.Sample{{Value: 1, Timestamp: t0}},
		})
	}
	req.Symbols = st.Symbols()
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	w := postV2(t, h, raw)
	return w.Code, w.Body.String(), w.Header().Get(headerSamplesWritten)
}

// TestHeadSeriesLimit: with --write.max-head-series at 3 and 2 series in
// the head, a request of those 2 and 3 new ones stores the 2 known
// series' samples and the first new series (the head is then at 3), and
// refuses the other 2 with a 400 naming the limit and the count, which
// the 2.0 written header does not count. The known series are taken at
// the limit in later requests, by the ref cache and without it.
func TestHeadSeriesLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v2        bool
		generic   bool
		cacheSize int
	}{
		{"v1 fast", false, false, 0},
		{"v1 generic", false, true, 0},
		{"v1 fast without ref cache", false, false, -1},
		{"v2 fast", true, false, 0},
		{"v2 generic", true, true, 0},
		{"v2 fast without ref cache", true, false, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := time.Now().UnixMilli()
			s := openTestStorage(t)
			reg := prometheus.NewRegistry()
			h := NewWriteHandler(nil, reg, s, WriteOptions{MaxHeadSeries: 3, HeadSeries: s.HeadSeries, SeriesCacheSize: tc.cacheSize})
			h.generic = tc.generic

			code, body, _ := limitRequest(t, h, tc.v2, ms, "a", "b")
			require.Equal(t, http.StatusNoContent, code, body)

			code, body, written := limitRequest(t, h, tc.v2, ms+1, "a", "c", "b", "d", "e")
			require.Equal(t, http.StatusBadRequest, code)
			require.Contains(t, body, "2 new series refused: the head holds 3 series, its limit (--write.max-head-series) is 3")
			require.Contains(t, body, `{__name__="d", job="j"}`)
			if tc.v2 {
				require.Equal(t, "3", written, "the written header counts what was stored: a, c and b")
			}
			require.Equal(t, uint64(3), s.HeadSeries())
			for name, want := range map[string]int{"a": 2, "b": 2, "c": 1, "d": 0, "e": 0} {
				require.Len(t, samples(t, s, name), want, name)
			}

			// At the limit, the series the head holds keep coming in.
			code, body, written = limitRequest(t, h, tc.v2, ms+2, "a", "b", "c")
			require.Equal(t, http.StatusNoContent, code, body)
			if tc.v2 {
				require.Equal(t, "3", written)
			}
			require.Len(t, samples(t, s, "c"), 2)

			require.Equal(t, 2.0, testutil.ToFloat64(h.metrics.rejected.WithLabelValues("float", "series_limit")))
			require.Equal(t, 2.0, testutil.ToFloat64(h.metrics.seriesRefused))
			require.Equal(t, 3.0, testutil.ToFloat64(h.metrics.seriesLimit))
		})
	}
}

// TestHeadSeriesLimitRoomComesBack: series the head drops (no sample left
// in it after a compaction) make room for new ones; and a dropped series
// whose reference the write path still caches is a new series again, for
// the limit too: its stale reference made the head create it anew past
// the limit (Append falls back to the labels), until the handler forgot
// its references on the head's deletions.
func TestHeadSeriesLimitRoomComesBack(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{MaxHeadSeries: 2, HeadSeries: s.HeadSeries})
	s.OnSeriesDeleted(h.SeriesDeleted)
	const step = int64(15_000)
	t0 := time.Now().Add(-5 * time.Hour).UnixMilli()
	code, body, _ := limitRequest(t, h, false, t0, "gone") // cached by the write path
	require.Equal(t, http.StatusNoContent, code, body)
	app := s.AppenderV2(context.Background())
	for i := range int64(4 * 240) { // four hours of another series: the head compacts its first two
		_, err := app.Append(0, labels.FromStrings("__name__", "stays"), 0, t0+i*step, 1, nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	now := time.Now().UnixMilli()
	code, body, _ = limitRequest(t, h, false, now, "new")
	require.Equal(t, http.StatusBadRequest, code, "the head holds gone and stays")
	require.Contains(t, body, "1 new series refused")

	require.NoError(t, s.DB().Compact(context.Background()))
	require.Equal(t, uint64(1), s.HeadSeries(), "gone was dropped")
	code, body, _ = limitRequest(t, h, false, now, "new")
	require.Equal(t, http.StatusNoContent, code, body)
	code, body, _ = limitRequest(t, h, false, now, "gone")
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Equal(t, uint64(2), s.HeadSeries())
}

// TestHeadSeriesLimitOutputs: omen's outputs are appended by the scorers
// straight to the storage, not through remote write, and the limit
// refuses none of them: an input admitted below the limit gets its
// anomaly_score and band stored though they take the head past it (the
// scorers would otherwise score a series whose score no alert can see).
// Each output series the head creates past the limit is counted in
// omen_tsdb_head_series_created_over_limit_total, which said nothing
// before (the head went past its limit with no trace but the gauge);
// remote write's series never are (the write path creates none there),
// nor are the series a restart's WAL replay brings back.
func TestHeadSeriesLimitOutputs(t *testing.T) {
	const limit = 3
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	s := NewStorage(nil, reg, Options{Path: dir, MaxHeadSeries: limit})
	require.NoError(t, s.Open())
	h := NewWriteHandler(nil, nil, s, WriteOptions{MaxHeadSeries: limit, HeadSeries: s.HeadSeries})
	overLimit := func() float64 {
		return testutil.ToFloat64(s.overLimit)
	}
	ms := time.Now().UnixMilli()
	output := func(name string, t0 int64) {
		t.Helper()
		app := s.AppenderV2(context.Background())
		_, err := app.Append(0, labels.FromStrings("__name__", name, "job", "j"), 0, t0, 0.5, nil, nil, storage.AOptions{})
		require.NoError(t, err, "an output refused")
		require.NoError(t, app.Commit())
	}

	code, body, _ := limitRequest(t, h, false, ms, "in1", "in2")
	require.Equal(t, http.StatusNoContent, code, body)
	output("anomaly_score", ms) // in1's: the head's last room
	require.Equal(t, uint64(limit), s.HeadSeries())
	require.Zero(t, overLimit(), "at the limit, not past it")

	output("yhat", ms) // in2's, past the limit
	output("yhat_lower", ms)
	require.Equal(t, uint64(limit+2), s.HeadSeries())
	require.Equal(t, 2.0, overLimit())

	// Remote write creates nothing past the limit: its new series are
	// refused, and its known ones stored, neither counted.
	code, body, _ = limitRequest(t, h, false, ms+1, "in1", "in3")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "1 new series refused")
	output("yhat", ms+1) // known: nothing created
	require.Equal(t, uint64(limit+2), s.HeadSeries())
	require.Equal(t, 2.0, overLimit())

	// A restart replays the head's series from the WAL, past the limit:
	// not created by anything omen did since, not counted.
	require.NoError(t, s.Close())
	reg = prometheus.NewRegistry()
	s = NewStorage(nil, reg, Options{Path: dir, MaxHeadSeries: limit})
	require.NoError(t, s.Open())
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.Equal(t, uint64(limit+2), s.HeadSeries())
	require.Zero(t, overLimit())
}
