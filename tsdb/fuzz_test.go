package tsdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// The fuzz targets feed arbitrary bytes to the decoders through the real
// handlers: whatever the input, the answer is a status below 500 (or the
// 503 of an overload, which cannot happen here), and nothing panics.
// `make fuzz` runs them for longer; `go test` runs their seeds.

func fuzzWrite(f *testing.F, contentType string, seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	s := openTestStorage(f)
	h := NewWriteHandler(nil, nil, s, WriteOptions{MaxRequestBytes: 1 << 20, MaxDecodedBytes: 4 << 20})
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, body := range [][]byte{raw, snappy.Encode(nil, raw)} {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
			r.Header.Set("Content-Encoding", "snappy")
			r.Header.Set("Content-Type", contentType)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code >= 500 {
				t.Fatalf("status %d for a client's bytes: %s", w.Code, w.Body.String())
			}
		}
	})
}

func FuzzWriteV1(f *testing.F) {
	ms := time.Now().UnixMilli()
	good, _ := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		series(ms, 1, "__name__", "a", "job", "x"),
		{Labels: []prompb.Label{{Name: "__name__", Value: "h"}}, Histograms: []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 2}, Timestamp: ms, Schema: 0, PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveDeltas: []int64{2}}}},
	}})
	fuzzWrite(f, "application/x-protobuf", [][]byte{good, {}, {0x0a, 0x00}, {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}})
}

func FuzzWriteV2(f *testing.F) {
	ms := time.Now().UnixMilli()
	good, _ := proto.Marshal(&writev2.Request{Symbols: []string{"", "__name__", "a"}, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}},
	}})
	// The 2.0 paths beyond float samples: metadata (type, help, unit),
	// exemplars, integer and float native histograms, and one of custom
	// buckets (schema -53), each a series of its own.
	st := writev2.NewSymbolTable()
	h := &histogram.Histogram{Count: 4, Sum: 4.5, Schema: 0, ZeroThreshold: 0.001, ZeroCount: 1,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 0},
		NegativeSpans: []histogram.Span{{Offset: -1, Length: 1}}, NegativeBuckets: []int64{1}}
	nhcb := &histogram.FloatHistogram{Count: 3, Sum: 2, Schema: histogram.CustomBucketsSchema,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []float64{1, 1, 1}, CustomValues: []float64{0.1, 0.5, 1}}
	rich := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "requests_total", "job", "api"), nil),
			Samples:    []writev2.Sample{{Value: 10, Timestamp: ms - 1000, StartTimestamp: ms - 60_000}, {Value: 12, Timestamp: ms}},
			Exemplars:  []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "abc"), nil), Value: 1, Timestamp: ms}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Requests."), UnitRef: st.Symbolize("requests")},
		},
		{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "latency_seconds", "job", "api"), nil),
			Histograms: []writev2.Histogram{writev2.FromIntHistogram(0, ms, h)},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, UnitRef: st.Symbolize("seconds")},
		},
		{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "latency_float_seconds"), nil),
			Histograms: []writev2.Histogram{writev2.FromFloatHistogram(0, ms, h.ToFloat(nil))},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGEHISTOGRAM},
		},
		{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "latency_nhcb_seconds"), nil),
			Histograms: []writev2.Histogram{writev2.FromFloatHistogram(0, ms, nhcb)},
		},
	}}
	rich.Symbols = st.Symbols()
	richRaw, err := proto.Marshal(rich)
	require.NoError(f, err)
	fuzzWrite(f, "application/x-protobuf;proto=io.prometheus.write.v2.Request", [][]byte{good, richRaw, richRaw[:len(richRaw)*2/3], {}, {0x12, 0x02, 0x0a, 0x00}})
}

// FuzzRemoteRead feeds the remote-read request decoder (Prometheus's, behind
// the API) and asserts a client's bytes never cause a 5xx.
func FuzzRemoteRead(f *testing.F) {
	good, _ := proto.Marshal(&prompb.ReadRequest{Queries: []*prompb.Query{{
		StartTimestampMs: 0, EndTimestampMs: 1 << 40,
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "job", Value: "a"}},
	}}, AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{prompb.ReadRequest_STREAMED_XOR_CHUNKS}})
	for _, s := range [][]byte{good, {}, {0x0a, 0x02, 0x08, 0x01}} {
		f.Add(s)
	}
	srv, _ := newTestAPI(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp, err := http.Post(srv.URL+"/api/v1/read", "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, raw)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// FuzzQueryParams fuzzes the query API's parameter parsing.
func FuzzQueryParams(f *testing.F) {
	for _, s := range [][3]string{
		{"up", "1700000000", ""}, {"rate(requests_total[1m])", "", "30s"}, {"sum(", "abc", "-1"},
		{`{__name__=~".+"}`, "2023-11-14T22:13:20Z", "1e9"}, {"requests_total @ end()", "-1e308", "0"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	srv, _ := newTestAPI(f)
	f.Fuzz(func(t *testing.T, q, ts, step string) {
		for _, u := range []string{
			srv.URL + "/api/v1/query?" + url.Values{"query": {q}, "time": {ts}}.Encode(),
			srv.URL + "/api/v1/query_range?" + url.Values{"query": {q}, "start": {ts}, "end": {ts}, "step": {step}}.Encode(),
			srv.URL + "/api/v1/series?" + url.Values{"match[]": {q}, "start": {ts}}.Encode(),
		} {
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// 503 is the engine's timeout or cancellation, which a costly
			// but valid query may legitimately hit.
			if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("%s: status %d", u, resp.StatusCode)
			}
		}
	})
}

// TestSmallInputsAllocateLittle: a few bytes claiming a huge length (the
// snappy header's decoded length, a protobuf length prefix, a packed
// repeated field) must not make a decoder allocate what they claim. The
// bound is generous (1 MiB for a request of a few dozen bytes); without the
// checks, the claims below cost tens of MiB each.
func TestSmallInputsAllocateLittle(t *testing.T) {
	const v2ContentType = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
	s := openTestStorage(t)
	uvarint := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	// A protobuf field header and a length claiming n bytes that are not there.
	lenField := func(field int, n uint64, rest ...byte) []byte {
		return append(append([]byte{byte(field<<3 | 2)}, uvarint(n)...), rest...)
	}
	for _, tc := range []struct {
		name, contentType string
		body              []byte // sent as is, not snappy-encoded again
	}{
		{"snappy header claims 100MiB", "application/x-protobuf", append(uvarint(100<<20), 0x00, 'x')},
		{"snappy header claims 127MiB, just under the limit", "application/x-protobuf", append(uvarint(127<<20), 0xfc, 0xff, 0xff)},
		{"v1 series of 1GiB", "application/x-protobuf", snappy.Encode(nil, lenField(1, 1<<30, 0x0a, 0x00))},
		{"v1 label of 1GiB", "application/x-protobuf", snappy.Encode(nil, lenField(1, 10, lenField(1, 1<<30, 0x0a)...))},
		{"v2 symbols of 1GiB", v2ContentType, snappy.Encode(nil, lenField(4, 1<<30, 'a'))},
		{"v2 packed label refs of 1GiB", v2ContentType, snappy.Encode(nil, lenField(5, 12, lenField(1, 1<<30, 0x01, 0x02)...))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A new handler each time: its pooled buffers must not hide
			// what the first request allocates.
			h := NewWriteHandler(nil, nil, s, DefaultWriteOptions())
			send := func() int {
				r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(tc.body))
				r.Header.Set("Content-Encoding", "snappy")
				r.Header.Set("Content-Type", tc.contentType)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w.Code
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			code := send()
			runtime.ReadMemStats(&after)
			require.Equal(t, http.StatusBadRequest, code)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "bytes allocated by a request of %d bytes", len(tc.body))
		})
	}
}

// FuzzMetadataParams fuzzes /api/v1/metadata's parameters (limit,
// limit_per_metric, metric): the answer is 200 with at most limit
// families, all of the metric asked for, or 400 bad_data; never a 5xx.
func FuzzMetadataParams(f *testing.F) {
	for _, s := range []string{"", "limit=1", "limit=-1", "limit=x", "limit_per_metric=1", "metric=jobs_total", "metric=up&limit=0", "limit=%zz", "limit=99999999999999999999"} {
		f.Add(s)
	}
	md := NewMetadata(nil, nil)
	for i, name := range []string{"jobs_total", "latency_seconds", "up", "é"} {
		md.note(name, metadata.Metadata{Type: model.MetricTypeCounter, Help: fmt.Sprint("help ", i), Unit: "u"}, nil)
	}
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/metadata", nil)
		r.URL.RawQuery = query
		w := httptest.NewRecorder()
		md.ServeHTTP(w, r)
		var got struct {
			Status    string                     `json:"status"`
			ErrorType string                     `json:"errorType"`
			Data      map[string]json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got), "%d: %s", w.Code, w.Body.String())
		switch w.Code {
		case http.StatusOK:
			require.Equal(t, "success", got.Status)
			if n, err := strconv.Atoi(r.FormValue("limit")); err == nil && n >= 0 {
				require.LessOrEqual(t, len(got.Data), n)
			}
			if m := r.FormValue("metric"); m != "" {
				for name := range got.Data {
					require.Equal(t, m, name)
				}
			}
		case http.StatusBadRequest:
			require.Equal(t, "bad_data", got.ErrorType)
		default:
			t.Fatalf("status %d for the parameters %q", w.Code, query)
		}
	})
}
