package tsdb

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
)

// openTestStorage opens a real TSDB in a temporary directory.
func openTestStorage(t testing.TB) *Storage {
	t.Helper()
	return openTestStorageWindow(t, 0)
}

// openTestStorageWindow is openTestStorage with an out-of-order window.
func openTestStorageWindow(t testing.TB, window time.Duration) *Storage {
	t.Helper()
	s := NewStorage(nil, nil, Options{Path: t.TempDir(), MaxExemplars: 1000, OutOfOrderTimeWindow: window})
	require.NoError(t, s.Open())
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func v1Body(t testing.TB, req *prompb.WriteRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	return snappy.Encode(nil, b)
}

func series(t int64, v float64, ls ...string) prompb.TimeSeries {
	ts := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: t, Value: v}}}
	for i := 0; i < len(ls); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: ls[i], Value: ls[i+1]})
	}
	return ts
}

func post(t testing.TB, h http.Handler, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	r.Header.Set("Content-Encoding", "snappy")
	r.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// samples reads back every float sample of the series matching name.
func samples(t testing.TB, s *Storage, name string) map[int64]float64 {
	t.Helper()
	out := map[int64]float64{}
	selectSeries(t, s, name, func(series storage.Series) {
		it := series.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			out[ts] = v
		}
		require.NoError(t, it.Err())
	})
	return out
}

func TestWriteV1BadInput(t *testing.T) {
	now := time.Now()
	ms := now.UnixMilli()
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{MaxRequestBytes: 4096, Now: func() time.Time { return now }})

	// Data accepted first must survive everything below.
	good := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "kept", "job", "a")}})
	require.Equal(t, http.StatusNoContent, post(t, h, good, nil).Code)

	big := make([]byte, 8192) // incompressible, so over the 4096-byte limit after snappy
	_, _ = rand.NewChaCha8([32]byte{1}).Read(big)
	garbage := snappy.Encode(nil, []byte{0xff, 0xff, 0xff, 0x01, 0x02})
	drift := DefaultWriteOptions().MaxFutureDrift.Milliseconds()
	for _, tc := range []struct {
		name string
		body []byte
		hdr  map[string]string
		code int
		want string
	}{
		{"metadata only", v1Body(t, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{{MetricFamilyName: "x", Type: prompb.MetricMetadata_GAUGE}}}), nil, 204, ""},
		{"truncated snappy", good[:len(good)/2], nil, 400, "decode snappy"},
		{"not snappy", []byte("hello there"), nil, 400, "decode snappy"},
		{"garbage protobuf", garbage, nil, 400, "decode remote-write 1.0 request"},
		{"empty body", nil, nil, 400, "empty request body"},
		{"no metric name", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "job", "a")}}), nil, 400, "no __name__ label"},
		{"duplicate label", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "x", "job", "a", "job", "b")}}), nil, 400, `duplicate label name "job"`},
		{"duplicate label apart", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "job", "a", "__name__", "x", "job", "b")}}), nil, 400, `duplicate label name "job"`},
		{"invalid label name", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "x", "b\xffad", "a")}}), nil, 400, "invalid label name"},
		// Names are quoted where Prometheus's labels.String quotes them:
		// written raw, an invalid name put its bytes in the UTF-8 answer,
		// and a UTF-8 name with quotes and commas read as other labels.
		{"invalid label name quoted", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "x", "b\xffad", "a")}}), nil, 400, `series 0 {__name__="x", "b\xffad"="a"}`},
		{"UTF-8 label name quoted", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "x", `a", b="c`, "\xff")}}), nil, 400, `series 0 {__name__="x", "a\", b=\"c"="\xff"}`},
		{"empty label name", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "", "v", "__name__", "x")}}), nil, 400, "empty label name"},
		{"zero timestamp", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(0, 1, "__name__", "x")}}), nil, 400, "not after the Unix epoch"},
		{"negative timestamp", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(-5, 1, "__name__", "x")}}), nil, 400, "not after the Unix epoch"},
		{"far future", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms+3600_000, 1, "__name__", "x")}}), nil, 400, "in the future"},
		// The drift bounds how far ahead a sample may be, that far included.
		{"at the future limit", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms+drift, 1, "__name__", "edge")}}), nil, 204, ""},
		{"past the future limit", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms+drift+1, 1, "__name__", "edge")}}), nil, 400, "in the future"},
		{"out of order", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms-60_000, 1, "__name__", "kept", "job", "a")}}), nil, 400, "out of order"},
		// Older than the head appends (a sender hours behind, or history
		// written by hand): refused for good, not a 5xx retried forever.
		{"too old", v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms-3*3600_000, 1, "__name__", "old")}}), nil, 400, "out of bounds"},
		{"oversize", snappy.Encode(nil, big), nil, 413, "exceeds the limit"},
		{"content type", good, map[string]string{"Content-Type": "application/json"}, 415, "unsupported Content-Type"},
		{"encoding", good, map[string]string{"Content-Encoding": "gzip"}, 415, "unsupported Content-Encoding"},
		{"unknown proto", good, map[string]string{"Content-Type": "application/x-protobuf;proto=foo.Bar"}, 415, "unsupported Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := post(t, h, tc.body, tc.hdr)
			require.Equal(t, tc.code, w.Code, w.Body.String())
			require.Contains(t, w.Body.String(), tc.want)
		})
	}
	require.Equal(t, map[int64]float64{ms: 1}, samples(t, s, "kept"), "nothing accepted before is lost")

	t.Run("method", func(t *testing.T) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/write", nil))
		require.Equal(t, http.StatusMethodNotAllowed, w.Code)
	})
}

func TestWriteV1SpecialValuesAndPartial(t *testing.T) {
	now := time.Now()
	ms := now.UnixMilli()
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{Now: func() time.Time { return now }})

	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "special"}}, Samples: []prompb.Sample{
			{Timestamp: ms - 3000, Value: math.NaN()}, {Timestamp: ms - 2000, Value: math.Inf(1)}, {Timestamp: ms - 1000, Value: math.Inf(-1)},
		}},
	}}
	require.Equal(t, http.StatusNoContent, post(t, h, v1Body(t, req), nil).Code)
	got := samples(t, s, "special")
	require.Len(t, got, 3)
	require.True(t, math.IsNaN(got[ms-3000]))
	require.True(t, math.IsInf(got[ms-2000], 1))
	require.True(t, math.IsInf(got[ms-1000], -1))

	// One bad series among good ones: the good are stored, the answer is 400.
	req = &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		series(ms, 1, "__name__", "good1"),
		series(ms, 2, "job", "no-name"),
		series(ms, 3, "__name__", "good2"),
	}}
	w := post(t, h, v1Body(t, req), nil)
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, w.Body.String(), "1 sample(s) rejected, the rest stored")
	require.Equal(t, map[int64]float64{ms: 1}, samples(t, s, "good1"))
	require.Equal(t, map[int64]float64{ms: 3}, samples(t, s, "good2"))
}

// TestWriteNotReady: a write while the TSDB opens is a 503 the sender
// retries, and the retries are logged as rejections are: a warning at most
// once a minute, with the count since (each was a warning: 4292 in a 3.6 s
// WAL replay).
func TestWriteNotReady(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := NewStorage(nil, nil, Options{Path: t.TempDir()})
	h := NewWriteHandler(logger, nil, s, WriteOptions{})
	body := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(time.Now().UnixMilli(), 1, "__name__", "x")}})
	for range 3 {
		w := post(t, h, body, nil)
		require.Equal(t, http.StatusServiceUnavailable, w.Code, "the sender must retry while the TSDB opens")
		require.NotEmpty(t, w.Header().Get("Retry-After"))
	}
	require.Equal(t, 1, strings.Count(buf.String(), "level=WARN"), buf.String())
	require.Contains(t, buf.String(), "TSDB not ready")
	require.Contains(t, buf.String(), "failed_requests=1")
}

// v2Client is the prometheus module's own remote-write client, sending 2.0
// to base, as a Prometheus sending 2.0 would.
func v2Client(t testing.TB, base string) remote.WriteClient {
	t.Helper()
	u, err := url.Parse(base)
	require.NoError(t, err)
	c, err := remote.NewWriteClient("test", &remote.ClientConfig{
		URL: &config_util.URL{URL: u}, Timeout: model.Duration(5 * time.Second), WriteProtoMsg: remoteapi.WriteV2MessageType,
	})
	require.NoError(t, err)
	return c
}

// TestWriteV2FromPrometheusClient drives the handler with the prometheus
// module's own remote-write client, as a Prometheus sending 2.0 would.
func TestWriteV2FromPrometheusClient(t *testing.T) {
	s := openTestStorage(t)
	srv := httptest.NewServer(NewWriteHandler(nil, nil, s, WriteOptions{}))
	defer srv.Close()
	c := v2Client(t, srv.URL)

	ms := time.Now().UnixMilli()
	st := writev2.NewSymbolTable()
	h := histogram.Histogram{Count: 3, Sum: 4.5, Schema: 0, ZeroThreshold: 0.001, ZeroCount: 1,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 0}}
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "http_requests_total", "job", "api"), nil),
			Samples:    []writev2.Sample{{Value: 10, Timestamp: ms - 1000}, {Value: 12, Timestamp: ms}},
			Exemplars:  []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "abc"), nil), Value: 1, Timestamp: ms}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Requests.")},
		},
		{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "latency_seconds", "job", "api"), nil),
			Histograms: []writev2.Histogram{writev2.FromIntHistogram(0, ms, &h)},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM},
		},
	}}
	req.Symbols = st.Symbols()
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	stats, err := c.Store(context.Background(), snappy.Encode(nil, raw), 0)
	require.NoError(t, err)
	require.Equal(t, 2, stats.Samples)
	require.Equal(t, 1, stats.Histograms)
	require.Equal(t, 1, stats.Exemplars)
	require.Equal(t, map[int64]float64{ms - 1000: 10, ms: 12}, samples(t, s, "http_requests_total"))

	// The histogram and the exemplar are stored, not dropped.
	q, err := s.Querier(0, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "latency_seconds"))
	require.True(t, ss.Next())
	it := ss.At().Iterator(nil)
	require.Equal(t, chunkenc.ValHistogram, it.Next())
	_, got := it.AtHistogram(nil)
	require.Equal(t, uint64(3), got.Count)
	eq, err := s.ExemplarQuerier(context.Background())
	require.NoError(t, err)
	ex, err := eq.Select(0, math.MaxInt64, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total")})
	require.NoError(t, err)
	require.Len(t, ex, 1)
	require.Equal(t, "abc", ex[0].Exemplars[0].Labels.Get("trace_id"))

	// A 2.0 request with a bad series: 400 naming it, the rest stored and counted.
	req = &writev2.Request{Symbols: []string{"", "__name__", "ok", "job"}, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}},
		{LabelsRefs: []uint32{3, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}},
		{LabelsRefs: []uint32{1, 9}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}},
		{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 2, Timestamp: ms + 1}}, Metadata: writev2.Metadata{HelpRef: 40}},
	}}
	raw, err = proto.Marshal(req)
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	r.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
	r.Header.Set("Content-Encoding", "snappy")
	w := httptest.NewRecorder()
	NewWriteHandler(nil, nil, s, WriteOptions{}).ServeHTTP(w, r)
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, w.Body.String(), "series 1: series has no __name__ label")
	require.Contains(t, w.Body.String(), "series 2: label reference outside the symbols table")
	require.Contains(t, w.Body.String(), "series 3: metadata:")
	require.Equal(t, "1", w.Header().Get(headerSamplesWritten))
	require.Equal(t, map[int64]float64{ms: 1}, samples(t, s, "ok"))

	// An exemplar with a reference outside the symbols table is left out
	// and counted; its series' sample is stored and the request is not
	// failed (a sender would count the stored sample failed).
	req = &writev2.Request{Symbols: []string{"", "__name__", "ex"}, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 3, Timestamp: ms + 2}}, Exemplars: []writev2.Exemplar{{LabelsRefs: []uint32{1, 55}, Value: 1, Timestamp: ms + 2}}},
	}}
	raw, err = proto.Marshal(req)
	require.NoError(t, err)
	w = postV2(t, NewWriteHandler(nil, nil, s, WriteOptions{}), raw)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	require.Equal(t, "1", w.Header().Get(headerSamplesWritten))
	require.Equal(t, "0", w.Header().Get(headerExemplarsWritten))
	require.Equal(t, map[int64]float64{ms + 2: 3}, samples(t, s, "ex"))
}

var _ storage.AppendableV2 = (*Storage)(nil)

// TestWriteReservedHistogramSchema: a native histogram with a schema
// reserved for finer exponential buckets than the head stores (9 to 52) is
// reduced to schema 8 and stored, as Prometheus's receiver does; refusing
// it was a 400, which a sender drops for good.
func TestWriteReservedHistogramSchema(t *testing.T) {
	ms := time.Now().UnixMilli()
	for _, tc := range []struct {
		name   string
		schema int32
		float  bool
		code   int
	}{
		{"schema 8", 8, false, http.StatusNoContent},
		{"schema 9", 9, false, http.StatusNoContent},
		{"schema 52", 52, false, http.StatusNoContent},
		{"float, schema 12", 12, true, http.StatusNoContent},
		{"schema 53: invalid", 53, false, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStorage(t)
			h := NewWriteHandler(nil, nil, s, WriteOptions{})
			ph := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 2}, Sum: 1, Timestamp: ms, Schema: tc.schema,
				PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 2}}, PositiveDeltas: []int64{1, 0}}
			if tc.float {
				ph = prompb.Histogram{Count: &prompb.Histogram_CountFloat{CountFloat: 2}, Sum: 1, Timestamp: ms, Schema: tc.schema,
					PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 2}}, PositiveCounts: []float64{1, 1}}
			}
			req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
				Labels: []prompb.Label{{Name: "__name__", Value: "h"}}, Histograms: []prompb.Histogram{ph},
			}}}
			w := post(t, h, v1Body(t, req), nil)
			require.Equal(t, tc.code, w.Code, w.Body.String())
			if tc.code != http.StatusNoContent {
				require.Contains(t, w.Body.String(), "schema")
				return
			}
			q, err := s.Querier(0, math.MaxInt64)
			require.NoError(t, err)
			defer q.Close()
			ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "h"))
			require.True(t, ss.Next())
			it := ss.At().Iterator(nil)
			vt := it.Next()
			require.NotEqual(t, chunkenc.ValNone, vt)
			_, fh := it.AtFloatHistogram(nil)
			require.Equal(t, min(tc.schema, 8), fh.Schema)
			require.Equal(t, 2.0, fh.Count)
		})
	}
}

// TestWriteV1Exemplars: a remote-write 1.0 request's exemplars are stored,
// in the entry of their series' samples or, as Prometheus's sender puts
// them, in an entry of their own without samples (they were dropped).
func TestWriteV1Exemplars(t *testing.T) {
	ms := time.Now().UnixMilli()
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{})
	ex := func(trace string, v float64, t int64) []prompb.Exemplar {
		return []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: trace}}, Value: v, Timestamp: t}}
	}
	together := series(ms, 7, "__name__", "http_requests_total", "job", "a")
	together.Exemplars = ex("t1", 7, ms)
	own := series(ms+1000, 8, "__name__", "http_requests_total", "job", "a")
	own.Samples = nil
	own.Exemplars = ex("t2", 8, ms+1000)
	sample := series(ms+1000, 8, "__name__", "http_requests_total", "job", "a")
	w := post(t, h, v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{together, sample, own}}), nil)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())

	eq, err := s.ExemplarQuerier(context.Background())
	require.NoError(t, err)
	got, err := eq.Select(0, math.MaxInt64, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total")})
	require.NoError(t, err)
	require.Len(t, got, 1)
	var traces []string
	for _, e := range got[0].Exemplars {
		traces = append(traces, e.Labels.Get("trace_id"))
	}
	require.Equal(t, []string{"t1", "t2"}, traces)
	require.Equal(t, map[int64]float64{ms: 7, ms + 1000: 8}, samples(t, s, "http_requests_total"))
}

// TestExemplarsTooFarInFuture: an exemplar later than the samples' limit
// (WriteOptions.MaxFutureDrift, 10 minutes as in Prometheus) is dropped
// and counted rejected, as Prometheus's receiver does, not stored ahead of
// every later one; the request's other exemplars and samples are written.
func TestExemplarsTooFarInFuture(t *testing.T) {
	now := time.Now()
	ms := now.UnixMilli()
	for _, path := range decodingPaths {
		t.Run(path.name, func(t *testing.T) {
			s := openTestStorage(t)
			h := NewWriteHandler(nil, nil, s, WriteOptions{Now: func() time.Time { return now }})
			h.generic = path.generic
			e := series(ms, 7, "__name__", "http_requests_total")
			e.Exemplars = []prompb.Exemplar{
				{Labels: []prompb.Label{{Name: "trace_id", Value: "now"}}, Value: 7, Timestamp: ms},
				{Labels: []prompb.Label{{Name: "trace_id", Value: "later"}}, Value: 7, Timestamp: ms + time.Hour.Milliseconds()},
			}
			w := postVersion(t, h, path.v2, []prompb.TimeSeries{e})
			require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			if path.v2 {
				require.Equal(t, "1", w.Header().Get(headerExemplarsWritten))
			}
			require.Equal(t, 1.0, testutil.ToFloat64(h.metrics.rejected.WithLabelValues("exemplar", "too_far_in_future")))
			eq, err := s.ExemplarQuerier(context.Background())
			require.NoError(t, err)
			got, err := eq.Select(0, math.MaxInt64, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total")})
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Len(t, got[0].Exemplars, 1)
			require.Equal(t, "now", got[0].Exemplars[0].Labels.Get("trace_id"))
			require.Equal(t, map[int64]float64{ms: 7}, samples(t, s, "http_requests_total"))
		})
	}
}

// TestRejectedCountersStartAtZero: every (type, reason) a sender can cause
// is exposed at 0 before the first rejection, so rate() and increase(),
// and OmenSamplesRejected, see the first burst (a counter born at 3600
// showed an increase of 0); the status page lists only what happened.
func TestRejectedCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewWriteHandler(nil, reg, openTestStorage(t), WriteOptions{})
	n, err := testutil.GatherAndCount(reg, "omen_remote_write_samples_rejected_total")
	require.NoError(t, err)
	want := 0
	for _, rs := range rejectReasons {
		want += len(rs)
	}
	require.Equal(t, want, n)
	for _, r := range []string{"out_of_order", "duplicate", "too_old", "invalid_labels"} {
		require.Zero(t, testutil.ToFloat64(h.metrics.rejected.WithLabelValues("float", r)), r)
	}
	require.Empty(t, h.Rejected())
}

// TestEmptyLabelValueDropped: a label with an empty value is no label, as
// in Prometheus, whose receiver stores such a series without it; omen
// refused the series with a 400, which a sender drops. On every decoding
// path, and again once the series is known (the fast paths' ref cache).
// A series whose only name is empty still has none.
func TestEmptyLabelValueDropped(t *testing.T) {
	for _, tc := range decodingPaths {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			s := openTestStorage(t)
			h := NewWriteHandler(nil, nil, s, WriteOptions{Now: func() time.Time { return now }})
			h.generic = tc.generic
			for i := range 2 {
				ms := now.UnixMilli() - int64(2-i)*1000
				w := postVersion(t, h, tc.v2, []prompb.TimeSeries{series(ms, float64(i), "__name__", "rev", "a", "", "job", "x")})
				require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			}
			q, err := s.Querier(math.MinInt64, math.MaxInt64)
			require.NoError(t, err)
			defer q.Close()
			ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "rev"))
			require.True(t, ss.Next())
			require.Equal(t, labels.FromStrings("__name__", "rev", "job", "x"), ss.At().Labels())
			require.False(t, ss.Next(), "one series")
			require.Len(t, samples(t, s, "rev"), 2)

			w := postVersion(t, h, tc.v2, []prompb.TimeSeries{series(now.UnixMilli(), 1, "__name__", "", "job", "x")})
			require.Equal(t, http.StatusBadRequest, w.Code)
			require.Contains(t, w.Body.String(), "no __name__ label")
		})
	}
}

// TestInRequestOrder: samples of a series out of order, or at one time with
// two values, within one request (one entry, or entries together or apart) are
// answered 400 and counted rejected, as they would be a request later; the
// head used to drop them silently at commit while the sender was told they
// were written. The out-of-order window admits them as it does across
// requests. On every decoding path.
func TestInRequestOrder(t *testing.T) {
	ms := time.Now().UnixMilli()
	one := func(ts ...int64) []prompb.TimeSeries {
		e := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "rev"}}}
		for i, t := range ts {
			e.Samples = append(e.Samples, prompb.Sample{Timestamp: t, Value: float64(i)})
		}
		return []prompb.TimeSeries{e}
	}
	// Another series between a series' entries, as Prometheus sends a
	// batch (one sample per entry).
	other := func(t int64) []prompb.TimeSeries {
		return []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "other"}}, Samples: []prompb.Sample{{Timestamp: t, Value: 1}}}}
	}
	for _, tc := range []struct {
		name   string
		ts     []prompb.TimeSeries
		window time.Duration
		code   int
		want   string
		stored map[int64]float64
	}{
		{"in order", one(ms-2000, ms-1000, ms), 0, 204, "", map[int64]float64{ms - 2000: 0, ms - 1000: 1, ms: 2}},
		{"older than the one before", one(ms-1000, ms-2000, ms), 0, 400, "out of order", map[int64]float64{ms - 1000: 0, ms: 2}},
		{"within the out-of-order window", one(ms-1000, ms-2000, ms), time.Minute, 204, "", map[int64]float64{ms - 2000: 1, ms - 1000: 0, ms: 2}},
		{"two values at one time", one(ms, ms), 0, 400, "duplicate sample", map[int64]float64{ms: 0}},
		{"entries back to back", append(one(ms), one(ms-1000)...), 0, 400, "out of order", map[int64]float64{ms: 0}},
		{"entries apart, in order", slices.Concat(one(ms-1000), other(ms), one(ms)), 0, 204, "", map[int64]float64{ms - 1000: 0, ms: 0}},
		{"entries apart, older", slices.Concat(one(ms), other(ms), one(ms-1000)), 0, 400, "out of order", map[int64]float64{ms: 0}},
		{"entries apart, two values at one time", slices.Concat(one(ms-1000, ms), other(ms), one(ms)), 0, 400, "duplicate sample", map[int64]float64{ms - 1000: 0, ms: 1}},
		{"entries apart, one sample twice", slices.Concat(one(ms), other(ms), one(ms)), 0, 204, "", map[int64]float64{ms: 0}},
	} {
		for _, path := range decodingPaths {
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				s := openTestStorageWindow(t, tc.window)
				reg := prometheus.NewRegistry()
				h := NewWriteHandler(nil, reg, s, WriteOptions{OutOfOrderTimeWindow: tc.window})
				h.generic = path.generic
				w := postVersion(t, h, path.v2, tc.ts)
				require.Equal(t, tc.code, w.Code, w.Body.String())
				require.Contains(t, w.Body.String(), tc.want)
				require.Equal(t, tc.stored, samples(t, s, "rev"))
				if path.v2 {
					written := len(tc.stored)
					for _, e := range tc.ts {
						if e.Labels[0].Value == "other" {
							written++
						}
					}
					require.Equal(t, strconv.Itoa(written), w.Header().Get(headerSamplesWritten))
				}
			})
		}
	}
	// With a window the head judges by its own newest time, not the
	// request's: after a sample at T, T+20m then T+5m are both kept (the
	// window counted back from T+20m refused the second).
	for _, path := range decodingPaths {
		t.Run("ahead of the head/"+path.name, func(t *testing.T) {
			s := openTestStorageWindow(t, 10*time.Minute)
			h := NewWriteHandler(nil, nil, s, WriteOptions{OutOfOrderTimeWindow: 10 * time.Minute})
			h.generic = path.generic
			t0 := ms - 30*60_000
			require.Equal(t, 204, postVersion(t, h, path.v2, one(t0)).Code)
			w := postVersion(t, h, path.v2, one(t0+20*60_000, t0+5*60_000))
			require.Equal(t, 204, w.Code, w.Body.String())
			require.Len(t, samples(t, s, "rev"), 3)
		})
	}
}

// TestInRequestHistogramOrder: TestInRequestOrder for histograms. Two
// histograms of a series at one time, or a float and a histogram, in one
// request were answered 204 and counted written while the head kept one;
// a float after a histogram at its time was compared with the histogram's
// placeholder value 0. On every decoding path.
func TestInRequestHistogramOrder(t *testing.T) {
	ms := time.Now().UnixMilli()
	hist := func(t int64, c int64) prompb.Histogram {
		return prompb.FromIntHistogram(t, &histogram.Histogram{Count: uint64(c), Sum: 1, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{c}})
	}
	lbls := []prompb.Label{{Name: "__name__", Value: "hist"}}
	entry := func(fs []prompb.Sample, hs ...prompb.Histogram) prompb.TimeSeries {
		return prompb.TimeSeries{Labels: lbls, Samples: fs, Histograms: hs}
	}
	for _, tc := range []struct {
		name         string
		ts           []prompb.TimeSeries
		code         int
		floats, hist int // stored
	}{
		{"histograms in order", []prompb.TimeSeries{entry(nil, hist(ms-1000, 3), hist(ms, 4))}, 204, 0, 2},
		{"two histograms at one time", []prompb.TimeSeries{entry(nil, hist(ms, 3), hist(ms, 4))}, 400, 0, 1},
		{"one histogram twice", []prompb.TimeSeries{entry(nil, hist(ms, 3), hist(ms, 3))}, 204, 0, 1},
		{"a float and a histogram at one time", []prompb.TimeSeries{entry([]prompb.Sample{{Timestamp: ms, Value: 1}}, hist(ms, 3))}, 400, 1, 0},
		{"a histogram, then a float 0 at its time", []prompb.TimeSeries{entry(nil, hist(ms, 3)), entry([]prompb.Sample{{Timestamp: ms}})}, 400, 0, 1},
	} {
		for _, path := range decodingPaths {
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				s := openTestStorage(t)
				h := NewWriteHandler(nil, nil, s, WriteOptions{})
				h.generic = path.generic
				w := postVersion(t, h, path.v2, tc.ts)
				require.Equal(t, tc.code, w.Code, w.Body.String())
				if tc.code == 400 {
					require.Contains(t, w.Body.String(), "duplicate sample")
				}
				floats, hists := countSamples(t, s, "hist")
				require.Equal(t, tc.floats, floats, "floats stored")
				require.Equal(t, tc.hist, hists, "histograms stored")
				if path.v2 {
					require.Equal(t, strconv.Itoa(floats), w.Header().Get(headerSamplesWritten))
					require.Equal(t, strconv.Itoa(hists), w.Header().Get(headerHistogramsWritten))
				}
			})
		}
	}
}

// countSamples counts the float and histogram samples stored of the
// series named name.
func countSamples(t testing.TB, s *Storage, name string) (floats, hists int) {
	t.Helper()
	selectSeries(t, s, name, func(series storage.Series) {
		it := series.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt == chunkenc.ValFloat {
				floats++
			} else {
				hists++
			}
		}
		require.NoError(t, it.Err())
	})
	return floats, hists
}

// TestRejectionMessageBounded: a 400 quotes the refused series, cut short:
// a label value may be kilobytes, which the sender has already.
func TestRejectionMessageBounded(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{})
	long := strings.Repeat("é", 2000) // 4000 bytes, two a rune
	w := post(t, h, v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(time.Now().UnixMilli(), 1, "job", long)}}), nil)
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, w.Body.String(), "no __name__ label")
	require.Less(t, w.Body.Len(), 1024)
	require.Contains(t, w.Body.String(), "…")
	require.True(t, utf8.ValidString(w.Body.String()))
}

// TestRejectedLoggedAsWarning: a rejected request is logged where an
// operator looks, at most once a minute with the count since (it was at
// debug alone, while Prometheus counted every sample of each batch failed).
func TestRejectedLoggedAsWarning(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := openTestStorage(t)
	h := NewWriteHandler(logger, nil, s, WriteOptions{})
	bad := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(time.Now().UnixMilli(), 1, "job", "a")}})
	for range 3 {
		require.Equal(t, http.StatusBadRequest, post(t, h, bad, nil).Code)
	}
	require.Equal(t, 1, strings.Count(buf.String(), "level=WARN"), buf.String())
	require.Contains(t, buf.String(), "no __name__ label")
	require.Contains(t, buf.String(), "rejected_requests=1")
}

// TestUnsupportedMediaTypeLogged: a sender configured with the wrong
// Content-Type or Content-Encoding (an OpenTelemetry exporter pointed at
// remote write, a proxy that gzips) gets 415 at every send and drops each
// batch. Prometheus logs each as an error; omen logged none at all, so its
// log showed nothing of a sender whose every sample was lost. Now they are
// warned of as other rejections are: once, then at most once a minute
// with the count since.
func TestUnsupportedMediaTypeLogged(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want string
	}{
		{"content-type", map[string]string{"Content-Type": "text/plain"}, "unsupported Content-Type"},
		{"content-encoding", map[string]string{"Content-Encoding": "gzip"}, `unsupported Content-Encoding \"gzip\"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
			h := NewWriteHandler(logger, nil, openTestStorage(t), WriteOptions{})
			for range 100 {
				require.Equal(t, http.StatusUnsupportedMediaType, post(t, h, []byte("x"), tc.hdr).Code)
			}
			require.Equal(t, 1, strings.Count(buf.String(), "level=WARN"), buf.String())
			require.Contains(t, buf.String(), "code=415")
			require.Contains(t, buf.String(), tc.want)
		})
	}
}

// TestRejectedNamesTheSender: the warning of a rejected request names the
// sender (its address and User-Agent), at debug too: with several
// Prometheus servers writing to one omen, it said why a request was
// rejected but not whose, so an operator could not tell which one to fix.
func TestRejectedNamesTheSender(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := NewWriteHandler(logger, nil, openTestStorage(t), WriteOptions{})
	for range 2 {
		w := post(t, h, []byte("garbage"), map[string]string{"User-Agent": "Prometheus/2.42.0"})
		require.Equal(t, http.StatusBadRequest, w.Code)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, buf.String())
	require.Contains(t, lines[0], "level=WARN")
	require.Contains(t, lines[1], "level=DEBUG")
	for _, l := range lines {
		require.Contains(t, l, "remote=192.0.2.1:1234") // httptest's
		require.Contains(t, l, "user_agent=Prometheus/2.42.0")
	}
}

// TestRejectedLogBounded: what a rejected request's warning takes from
// its headers is bounded. A header may hold up to the HTTP server's 1 MiB:
// a 415's Content-Type or Content-Encoding (which its error quotes) and
// any rejection's User-Agent went whole into the warning, a line of a MiB
// once a minute, and into every debug line, more than a log shipper takes
// as one line (Docker splits at 16 KiB, journald at 48 KiB, Loki refuses
// over 256 KiB by default), so the one warning that named the sender was
// cut or dropped. Before the fix each line here was over 1 MiB.
func TestRejectedLogBounded(t *testing.T) {
	huge := strings.Repeat("a", 1<<20)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		code int
	}{
		{"content-type", map[string]string{"Content-Type": "application/" + huge}, http.StatusUnsupportedMediaType},
		{"content-encoding", map[string]string{"Content-Encoding": huge}, http.StatusUnsupportedMediaType},
		{"user-agent", map[string]string{"User-Agent": huge}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			h := NewWriteHandler(logger, nil, openTestStorage(t), WriteOptions{})
			for range 2 {
				w := post(t, h, []byte("garbage"), tc.hdr)
				require.Equal(t, tc.code, w.Code)
				require.Less(t, w.Body.Len(), 4<<10, "the answer")
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			require.Len(t, lines, 2)
			require.Contains(t, lines[0], "level=WARN")
			for _, l := range lines {
				require.Less(t, len(l), 4<<10)
				require.Contains(t, l, "aaaa", "the start is kept")
			}
		})
	}
}

// TestUnsupportedMediaTypeSpacedApart: a 415 (a sender's Content-Type or
// Content-Encoding omen does not read: a rotated sender configuration, a
// proxy that gzips) is warned of on its own spacing, not the 400s': a
// flood of 400s from one sender hid the first 415 of another for up to a
// minute. And its warning does not say "err says what omen stored", as
// the 400s' did: nothing of a 415 was read, let alone stored.
func TestUnsupportedMediaTypeSpacedApart(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := NewWriteHandler(logger, nil, openTestStorage(t), WriteOptions{})
	for range 10 {
		require.Equal(t, http.StatusBadRequest, post(t, h, []byte("garbage"), nil).Code)
	}
	require.Equal(t, http.StatusUnsupportedMediaType, post(t, h, []byte("x"), map[string]string{"Content-Encoding": "gzip"}).Code)
	require.Equal(t, http.StatusBadRequest, post(t, h, []byte("garbage"), nil).Code)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, "the first 400's warning and the first 415's: %s", buf.String())
	require.Contains(t, lines[0], "code=400")
	require.Contains(t, lines[1], "code=415")
	require.Contains(t, lines[1], "rejected_requests=1", "its own count")
	require.NotContains(t, lines[1], "stored")
	require.Contains(t, lines[1], "nothing of it was read")
}
