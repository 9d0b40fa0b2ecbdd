package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestPrometheusUnderRoutePrefix runs the real Prometheus against an omen
// served under a path, as behind a reverse proxy or an ingress at
// https://ops.example.com/omen/ that forwards the whole path (the model of
// Prometheus's --web.external-url): Prometheus remote-writes to
// <prefix>/api/v1/write, reads back from <prefix>/api/v1/read and scrapes
// <prefix>/metrics; nothing is served outside the prefix but the redirect
// of "/".
func TestPrometheusUnderRoutePrefix(t *testing.T) {
	need(t, "prometheus")
	omen := startOmenUnder(t, "", "/omen", "--web.external-url=https://ops.example.com/omen/")
	root := strings.TrimSuffix(omen.URL, "/omen")

	// A series only omen has, to prove remote read under the prefix; the
	// same request at the root is refused and stores nothing.
	now := time.Now()
	seed := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "omen_only_series"}, {Name: "source", Value: "omen"}}}
	for i := range 60 {
		seed.Samples = append(seed.Samples, prompb.Sample{Timestamp: now.Add(time.Duration(i-60) * time.Second).UnixMilli(), Value: float64(i)})
	}
	code, body := remoteWriteV1(t, root, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{seed}})
	require.Equal(t, http.StatusNotFound, code, body)
	require.Contains(t, body, "--web.route-prefix")
	code, body = remoteWriteV1(t, omen.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{seed}})
	require.Equal(t, http.StatusNoContent, code, body)

	// Outside the prefix: "/" redirects to the page, the rest is a 404,
	// as in Prometheus; /-/healthy is under the prefix.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path, location string
		code           int
	}{
		{"/", "/omen/", http.StatusFound},
		{"/omen", "/omen/", http.StatusMovedPermanently},
		{"/omen/", "", http.StatusOK},
		{"/omen/-/healthy", "", http.StatusOK},
		{"/-/healthy", "", http.StatusNotFound},
		{"/metrics", "", http.StatusNotFound},
		{"/api/v1/query?query=up", "", http.StatusNotFound},
	} {
		resp, err := noFollow.Get(root + tc.path)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, tc.code, resp.StatusCode, tc.path)
		require.Equal(t, tc.location, resp.Header.Get("Location"), tc.path)
	}

	prom := startPrometheus(t, func(addr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['%s']}]
  - job_name: omen
    metrics_path: /omen/metrics
    static_configs: [{targets: ['%s']}]
remote_write:
  - url: %[3]s/api/v1/write
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
    write_relabel_configs: [{source_labels: [job], regex: prometheus, action: keep}]
remote_read:
  - url: %[3]s/api/v1/read
    read_recent: true
    required_matchers: {source: omen}
`, addr, omen.Addr, omen.URL)
	})

	// Remote write under the prefix: what Prometheus scraped of itself
	// arrives in omen, queried through omen's API under the prefix.
	waitFor(t, 90*time.Second, "Prometheus's series in omen", func() bool {
		o, err := query(t, omen.URL, `count(prometheus_build_info{job="prometheus"})`, time.Time{})
		return err == nil && len(o) == 1 && o[0].F() == 1
	})
	// Remote read under the prefix: Prometheus answers with omen's series.
	res, err := query(t, prom.URL, `omen_only_series{source="omen"}`, now.Add(-time.Second))
	require.NoError(t, err)
	require.Len(t, res, 1, "Prometheus should read omen_only_series from omen")
	require.Equal(t, 59.0, res[0].F())
	// The scrape of <prefix>/metrics, whose request metrics keep the
	// handler names of a server at "/" (the generated rules select
	// handler="/api/v1/write").
	waitFor(t, 60*time.Second, "omen's remote-write requests counted under their handler", func() bool {
		v, err := query(t, prom.URL, `sum(omen_http_requests_total{job="omen", handler="/api/v1/write", code="204"})`, time.Time{})
		return err == nil && len(v) == 1 && v[0].F() >= 2
	})
}
