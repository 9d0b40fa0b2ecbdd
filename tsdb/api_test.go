package tsdb

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// seed appends two series, one sample every 15s for 10 minutes ending at end.
func seed(t testing.TB, s *Storage, end time.Time) {
	t.Helper()
	app := s.AppenderV2(context.Background())
	for _, job := range []string{"a", "b"} {
		ls := labels.FromStrings("__name__", "requests_total", "job", job)
		var ref storage.SeriesRef
		for i := 0; i <= 40; i++ {
			var err error
			ts := end.Add(time.Duration(i-40) * 15 * time.Second).UnixMilli()
			ref, err = app.Append(ref, ls, 0, ts, float64(i*10), nil, nil, storage.AppendV2Options{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

func newTestAPI(t testing.TB) (*httptest.Server, time.Time) {
	s := openTestStorage(t)
	end := time.Now().Truncate(time.Second)
	seed(t, s, end)
	o := DefaultAPIOptions()
	o.Flags = map[string]string{"storage.tsdb.path": "/var/omen"}
	h := NewAPI(nil, nil, nil, s, NewEngine(discard(), nil, o), o, func(f http.HandlerFunc) http.HandlerFunc { return f })
	srv := httptest.NewServer(http.StripPrefix("", h))
	t.Cleanup(srv.Close)
	return srv, end
}

func getJSON(t testing.TB, u string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return resp.StatusCode, out
}

// TestQueryAPIShapes checks the responses against the shapes documented at
// prometheus.io/docs/prometheus/latest/querying/api/.
func TestQueryAPIShapes(t *testing.T) {
	srv, end := newTestAPI(t)
	ts := strconv.FormatInt(end.Unix(), 10)
	start := strconv.FormatInt(end.Add(-5*time.Minute).Unix(), 10)

	code, r := getJSON(t, srv.URL+"/api/v1/query?"+url.Values{"query": {`rate(requests_total{job="a"}[1m])`}, "time": {ts}}.Encode())
	require.Equal(t, 200, code)
	require.Equal(t, "success", r["status"])
	data := r["data"].(map[string]any)
	require.Equal(t, "vector", data["resultType"])
	res := data["result"].([]any)
	require.Len(t, res, 1)
	el := res[0].(map[string]any)
	require.Equal(t, map[string]any{"job": "a"}, el["metric"])
	val := el["value"].([]any)
	require.Equal(t, float64(end.Unix()), val[0])
	require.Equal(t, "0.6666666666666666", val[1], "10 per 15s, as a string as Prometheus encodes values")

	code, r = getJSON(t, srv.URL+"/api/v1/query_range?"+url.Values{"query": {"requests_total"}, "start": {start}, "end": {ts}, "step": {"60"}}.Encode())
	require.Equal(t, 200, code)
	data = r["data"].(map[string]any)
	require.Equal(t, "matrix", data["resultType"])
	res = data["result"].([]any)
	require.Len(t, res, 2)
	vals := res[0].(map[string]any)["values"].([]any)
	require.Len(t, vals, 6)

	code, r = getJSON(t, srv.URL+"/api/v1/series?"+url.Values{"match[]": {"requests_total"}}.Encode())
	require.Equal(t, 200, code)
	require.ElementsMatch(t, []any{
		map[string]any{"__name__": "requests_total", "job": "a"},
		map[string]any{"__name__": "requests_total", "job": "b"},
	}, r["data"])

	code, r = getJSON(t, srv.URL+"/api/v1/labels")
	require.Equal(t, 200, code)
	require.Equal(t, []any{"__name__", "job"}, r["data"])

	code, r = getJSON(t, srv.URL+"/api/v1/label/job/values")
	require.Equal(t, 200, code)
	require.Equal(t, []any{"a", "b"}, r["data"])

	code, r = getJSON(t, srv.URL+"/api/v1/status/buildinfo")
	require.Equal(t, 200, code)
	require.Contains(t, r["data"], "goVersion")

	code, r = getJSON(t, srv.URL+"/api/v1/status/flags")
	require.Equal(t, 200, code)
	require.Equal(t, map[string]any{"storage.tsdb.path": "/var/omen"}, r["data"])

	// Errors keep Prometheus's format.
	code, r = getJSON(t, srv.URL+"/api/v1/query?query=sum(")
	require.Equal(t, 400, code)
	require.Equal(t, "error", r["status"])
	require.Equal(t, "bad_data", r["errorType"])
	require.Contains(t, r["error"], "parse error")
}

// TestRemoteRead reads through the prometheus module's own remote-read
// client with both response types.
func TestRemoteRead(t *testing.T) {
	srv, end := newTestAPI(t)
	u, err := url.Parse(srv.URL + "/api/v1/read")
	require.NoError(t, err)
	for _, rt := range []prompb.ReadRequest_ResponseType{prompb.ReadRequest_SAMPLES, prompb.ReadRequest_STREAMED_XOR_CHUNKS} {
		t.Run(rt.String(), func(t *testing.T) {
			c, err := remote.NewReadClient("test", &remote.ClientConfig{
				URL: &config_util.URL{URL: u}, Timeout: model.Duration(5 * time.Second),
				ChunkedReadLimit: 1 << 20, AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{rt},
			})
			require.NoError(t, err)
			q := &prompb.Query{
				StartTimestampMs: end.Add(-time.Hour).UnixMilli(), EndTimestampMs: end.UnixMilli(),
				Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "job", Value: "b"}},
			}
			ss, err := c.Read(context.Background(), q, true)
			require.NoError(t, err)
			require.True(t, ss.Next())
			require.Equal(t, `{__name__="requests_total", job="b"}`, ss.At().Labels().String())
			it := ss.At().Iterator(nil)
			n := 0
			var last float64
			for it.Next() == chunkenc.ValFloat {
				_, last = it.At()
				n++
			}
			require.Equal(t, 41, n)
			require.Equal(t, 400.0, last)
			require.False(t, ss.Next())
			require.NoError(t, ss.Err())
		})
	}
}
