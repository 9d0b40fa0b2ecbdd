package tsdb

import (
	"net/http"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// postUnsorted posts ts as postVersion does, but with each series' labels
// in the order given, in 2.0 as well (postVersion sorts those).
func postUnsorted(t *testing.T, h http.Handler, v2 bool, ts []prompb.TimeSeries) int {
	t.Helper()
	if !v2 {
		return postVersion(t, h, false, ts).Code
	}
	st := writev2.NewSymbolTable()
	var req writev2.Request
	for _, s := range ts {
		var e writev2.TimeSeries
		for _, l := range s.Labels {
			e.LabelsRefs = append(e.LabelsRefs, st.Symbolize(l.Name), st.Symbolize(l.Value))
		}
		for _, smp := range s.Samples {
			e.Samples = append(e.Samples, writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		req.Timeseries = append(req.Timeseries, e)
	}
	req.Symbols = st.Symbols()
	raw, err := proto.Marshal(&req)
	require.NoError(t, err)
	return postV2(t, h, raw).Code
}

// TestWriteUnsortedLabels: vmagent sends a scraped series' labels in the
// order the exposition gave them with the target's (instance, job)
// appended, so most are not sorted. Prometheus's and VictoriaMetrics's
// receivers sort them; omen refused them with 400 ("labels not sorted"),
// which vmagent answers by dropping the whole block. They are stored
// sorted, on every decoding path, request after request (the ref cache
// must not serve one series for another), and a name that comes twice is
// still refused even when the two are not next to each other.
func TestWriteUnsortedLabels(t *testing.T) {
	for _, path := range decodingPaths {
		t.Run(path.name, func(t *testing.T) {
			s := openTestStorage(t)
			now := time.Now()
			h := NewWriteHandler(nil, nil, s, WriteOptions{Now: func() time.Time { return now }})
			h.generic = path.generic
			ms := now.Add(-time.Minute).UnixMilli()
			for i := range int64(3) {
				code := postUnsorted(t, h, path.v2, []prompb.TimeSeries{
					series(ms+i, float64(i), "__name__", "req_total", "path", "/a", "instance", "h:1", "job", "j"),
					series(ms+i, float64(10+i), "__name__", "req_total", "path", "/b", "instance", "h:1", "job", "j"),
					series(ms+i, float64(20+i), "job", "j", "instance", "h:1", "__name__", "req_total", "path", "/a", "code", "500"),
				})
				require.Equal(t, http.StatusNoContent, code, "request %d", i)
			}
			got := map[string]map[int64]float64{}
			forEachSeries(t, s, "req_total", func(ls labels.Labels, smp map[int64]float64) { got[ls.String()] = smp })
			require.Equal(t, map[string]map[int64]float64{
				`{__name__="req_total", instance="h:1", job="j", path="/a"}`:             {ms: 0, ms + 1: 1, ms + 2: 2},
				`{__name__="req_total", instance="h:1", job="j", path="/b"}`:             {ms: 10, ms + 1: 11, ms + 2: 12},
				`{__name__="req_total", code="500", instance="h:1", job="j", path="/a"}`: {ms: 20, ms + 1: 21, ms + 2: 22},
			}, got)

			code := postUnsorted(t, h, path.v2, []prompb.TimeSeries{series(ms+5, 1, "__name__", "dup", "job", "a", "path", "/a", "job", "b")})
			require.Equal(t, http.StatusBadRequest, code)
			require.Empty(t, samples(t, s, "dup"))
		})
	}
}
