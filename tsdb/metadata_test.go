package tsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// TestMetadataServed: the families' metadata of remote-write 1.0 requests
// (metadata-only, as Prometheus 2.x sends them) and of 2.0 series (by
// family: a classic histogram's _bucket series under the histogram's name)
// is served as Prometheus's /api/v1/metadata, which answered nothing.
func TestMetadataServed(t *testing.T) {
	s := openTestStorage(t)
	md := NewMetadata(nil, nil)
	// The scorers hear of each family's type once, and again only when it
	// changes (Prometheus re-sends every minute).
	types := map[string][]model.MetricType{}
	md.OnTypes(func(families []string, ts []model.MetricType) {
		for i, family := range families {
			types[family] = append(types[family], ts[i])
		}
	})
	h := NewWriteHandler(nil, nil, s, WriteOptions{Metadata: md})
	v1 := &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{MetricFamilyName: "http_requests_total", Type: prompb.MetricMetadata_COUNTER, Help: "Requests served."},
		{MetricFamilyName: "queue_depth", Type: prompb.MetricMetadata_GAUGE, Help: "Items waiting.", Unit: "items"},
	}}
	for range 2 {
		w := post(t, h, v1Body(t, v1), nil)
		require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	}
	require.Equal(t, map[string][]model.MetricType{"http_requests_total": {"counter"}, "queue_depth": {"gauge"}}, types)
	// Two targets declaring one family two ways, in one request: both
	// declarations reach the hook, in order.
	w := post(t, h, v1Body(t, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{MetricFamilyName: "jobs", Type: prompb.MetricMetadata_COUNTER},
		{MetricFamilyName: "jobs", Type: prompb.MetricMetadata_GAUGE},
	}}), nil)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	require.Equal(t, []model.MetricType{"counter", "gauge"}, types["jobs"])
	delete(types, "jobs")

	srv := httptest.NewServer(h)
	defer srv.Close()
	c := v2Client(t, srv.URL)
	st := writev2.NewSymbolTable()
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{{
		LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "latency_seconds_bucket", "le", "0.5"), nil),
		Samples:    []writev2.Sample{{Value: 3, Timestamp: time.Now().UnixMilli()}},
		Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: st.Symbolize("Latency.")},
	}}}
	req.Symbols = st.Symbols()
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	_, err = c.Store(context.Background(), snappy.Encode(nil, raw), 0)
	require.NoError(t, err)

	get := func(q string) map[string][]map[string]string {
		rec := httptest.NewRecorder()
		md.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/metadata"+q, nil))
		require.Equal(t, 200, rec.Code, rec.Body.String())
		var r struct {
			Status string
			Data   map[string][]map[string]string
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r))
		require.Equal(t, "success", r.Status)
		return r.Data
	}
	require.Equal(t, []model.MetricType{"histogram"}, types["latency_seconds"])
	all := get("")
	require.Equal(t, map[string][]map[string]string{
		"http_requests_total": {{"type": "counter", "help": "Requests served.", "unit": ""}},
		"queue_depth":         {{"type": "gauge", "help": "Items waiting.", "unit": "items"}},
		"latency_seconds":     {{"type": "histogram", "help": "Latency.", "unit": ""}},
		"jobs":                {{"type": "gauge", "help": "", "unit": ""}}, // the last declaration
	}, all)
	require.Len(t, get("?metric=queue_depth"), 1)
	require.Len(t, get("?limit=2"), 2)
	require.Empty(t, get("?metric=nope"))
}

// TestMetadataBounds: the store's memory is bounded (help cut at 1 KiB, at
// most maxFamilies families, the rest counted), a series sent without
// metadata does not erase what its family's sender said, and the answers
// carry the API's CORS headers.
func TestMetadataBounds(t *testing.T) {
	reg := prometheus.NewRegistry()
	cors, err := CompileCORSOrigin(".*")
	require.NoError(t, err)
	md := NewMetadata(reg, cors)
	md.noteV1([]prompb.MetricMetadata{{MetricFamilyName: "big", Type: prompb.MetricMetadata_GAUGE, Help: strings.Repeat("é", 1<<20)}})
	md.noteSeries("jobs_total", metadata.Metadata{Type: model.MetricTypeCounter, Help: "Jobs done."})
	md.noteSeries("jobs_total", metadata.Metadata{Type: model.MetricTypeUnknown})
	md.noteSeries("up", metadata.Metadata{Type: model.MetricTypeUnknown})
	require.Len(t, md.m["big"].Help, maxHelp) // 512 two-byte runes
	require.True(t, utf8.ValidString(md.m["big"].Help))
	require.Equal(t, "Jobs done.", md.m["jobs_total"].Help)
	require.NotContains(t, md.m, "up")

	for i := range maxFamilies {
		md.note(fmt.Sprint("f", i), metadata.Metadata{Type: model.MetricTypeGauge}, nil)
	}
	require.Len(t, md.m, maxFamilies)
	require.Equal(t, 2.0, testutil.ToFloat64(md.dropped), "big and jobs_total took two of the places: the loop's last two are dropped")

	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/api/v1/metadata?metric=big", nil)
	r.Header.Set("Origin", "https://grafana.example")
	md.ServeHTTP(rec, r)
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"), "as Prometheus answers for .*")
	rec = httptest.NewRecorder()
	md.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/metadata?limit_per_metric=x", nil))
	require.Equal(t, http.StatusBadRequest, rec.Code)
}
