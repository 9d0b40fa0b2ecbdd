package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// remoteWriteV1 posts a remote-write 1.0 request to omen.
func remoteWriteV1(t testing.TB, base string, req *prompb.WriteRequest) (int, string) {
	t.Helper()
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	r, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	require.NoError(t, err)
	r.Header.Set("Content-Encoding", "snappy")
	r.Header.Set("Content-Type", "application/x-protobuf")
	r.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestPrometheusRemoteWriteAndRead runs the real Prometheus against omen:
// Prometheus scrapes itself every second, remote-writes to omen, and reads
// back from omen the series that carry source="omen" (required_matchers
// keeps every other query local, so the comparisons below are between
// Prometheus's own data and omen's copy of it).
func TestPrometheusRemoteWriteAndRead(t *testing.T) {
	need(t, "prometheus")
	omen := startOmen(t, "")

	// A series that exists only in omen, to prove remote read.
	now := time.Now()
	var seed prompb.TimeSeries
	seed.Labels = []prompb.Label{{Name: "__name__", Value: "omen_only_series"}, {Name: "source", Value: "omen"}}
	for i := 0; i < 60; i++ {
		seed.Samples = append(seed.Samples, prompb.Sample{Timestamp: now.Add(time.Duration(i-60) * time.Second).UnixMilli(), Value: float64(i)})
	}
	code, body := remoteWriteV1(t, omen.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{seed}})
	require.Equal(t, http.StatusNoContent, code, body)

	prom := startPrometheus(t, func(addr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
  external_labels: {prometheus: main}
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['%s']}]
# As the README says: the external labels are dropped on the way to omen
# and not filtered by when reading back (omen's series lack them).
remote_write:
  - url: %[2]s/api/v1/write
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
    write_relabel_configs: [{action: labeldrop, regex: prometheus}]
    metadata_config: {send_interval: 1s}
remote_read:
  - url: %[2]s/api/v1/read
    read_recent: true
    required_matchers: {source: omen}
    filter_external_labels: false
`, addr, omen.URL)
	})

	// The series Prometheus scraped arrive in omen: the same number of
	// series at the same instant on both sides. Prometheus starts sending
	// after its WAL replay, and batches for up to a second.
	var last string
	waitFor(t, 90*time.Second, "omen to hold every series Prometheus scraped", func() bool {
		at := time.Now().Add(-5 * time.Second)
		q := `count({__name__=~".+", job="prometheus", for=""})` // omen's outputs carry for=<input>
		p, err1 := query(t, prom.URL, q, at)
		o, err2 := query(t, omen.URL, q, at)
		if err1 != nil || err2 != nil || len(p) != 1 || len(o) != 1 {
			last = fmt.Sprintf("prometheus %v %v, omen %v %v", p, err1, o, err2)
			return false
		}
		last = fmt.Sprintf("prometheus %g series, omen %g", p[0].F(), o[0].F())
		return p[0].F() > 100 && p[0].F() == o[0].F()
	})
	t.Log(last)

	// Remote read: a query on Prometheus returns the series only omen has.
	res, err := query(t, prom.URL, `omen_only_series{source="omen"}`, now.Add(-time.Second))
	require.NoError(t, err)
	require.Len(t, res, 1, "Prometheus should read omen_only_series from omen")
	require.Equal(t, 59.0, res[0].F())

	// omen's query API computes the same rate() over the same data.
	q := `sum by (job) (rate(prometheus_tsdb_head_samples_appended_total[10s]))`
	waitFor(t, 30*time.Second, "equal rate() on both sides", func() bool {
		at := time.Now().Add(-3 * time.Second)
		p, err1 := query(t, prom.URL, q, at)
		o, err2 := query(t, omen.URL, q, at)
		if err1 != nil || err2 != nil || len(p) != 1 || len(o) != 1 {
			last = fmt.Sprintf("prometheus %v %v, omen %v %v", p, err1, o, err2)
			return false
		}
		last = fmt.Sprintf("prometheus %v, omen %v", p[0].Value, o[0].Value)
		return p[0].F() > 0 && math.Abs(p[0].F()-o[0].F()) <= 1e-9*math.Abs(p[0].F())
	})
	t.Log("rate():", last)

	// The metadata Prometheus sends (remote-write 1.0: per family, in
	// requests of their own) is served as Prometheus serves its own.
	waitFor(t, 30*time.Second, "metadata from Prometheus", func() bool {
		data, err := apiGet(t, omen.URL, "/api/v1/metadata", url.Values{"metric": {"prometheus_http_requests_total"}})
		if err != nil {
			return false
		}
		var md map[string][]struct{ Type, Help string }
		return json.Unmarshal(data, &md) == nil && len(md["prometheus_http_requests_total"]) == 1 &&
			md["prometheus_http_requests_total"][0].Type == "counter" && md["prometheus_http_requests_total"][0].Help != ""
	})
	// So is that of omen's own outputs, which no sender describes.
	data, err := apiGet(t, omen.URL, "/api/v1/metadata", url.Values{"metric": {"anomaly_score"}})
	require.NoError(t, err)
	var md map[string][]struct{ Type, Help string }
	require.NoError(t, json.Unmarshal(data, &md))
	require.Len(t, md["anomaly_score"], 1, string(data))
	require.Equal(t, "gauge", md["anomaly_score"][0].Type)
	require.Contains(t, md["anomaly_score"][0].Help, "above 1 is anomalous")
	// A browser's preflight gets the CORS headers on omen's endpoints as on
	// Prometheus's API (--web.cors.origin's default allows any origin).
	for _, p := range []string{"/api/v1/metadata", "/api/v1/anomalies", "/api/v1/status/omen", "/api/v1/query"} {
		req, err := http.NewRequest(http.MethodOptions, omen.URL+p, nil)
		require.NoError(t, err)
		req.Header.Set("Origin", "https://grafana.example.com")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode, p)
		require.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"), p)
	}

	// omen accepted every request: nothing rejected, nothing failed.
	met, err := http.Get(omen.URL + "/metrics")
	require.NoError(t, err)
	defer met.Body.Close()
	var mb bytes.Buffer
	_, _ = mb.ReadFrom(met.Body)
	// The rejection counters are exposed from the start, all at 0.
	require.Contains(t, mb.String(), `omen_remote_write_samples_rejected_total{reason="out_of_order",type="float"} 0`+"\n")
	require.NotRegexp(t, `omen_remote_write_samples_rejected_total\{[^}]*\} [1-9]`, mb.String())
	require.Contains(t, mb.String(), `omen_http_requests_total{code="204",handler="/api/v1/write"}`)
}
