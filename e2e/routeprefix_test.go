package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
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
	seed := countUp(now, 60, prompb.Label{Name: "__name__", Value: "omen_only_series"}, prompb.Label{Name: "source", Value: "omen"})
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

// TestStrippingProxy: omen behind a reverse proxy at /omen/ that strips
// the path before forwarding (a Kubernetes ingress's rewrite-target, a
// Traefik StripPrefix), set up as Prometheus is behind one:
// --web.external-url at the proxy's /omen/ and --web.route-prefix=/, the
// routes at "/" where the requests arrive. Through the proxy, remote write,
// the API, /metrics, the page and the probes answer, and a redirect leads
// back under /omen/, in its Location and its body's link: the proxy passes
// the Location on as omen wrote it. Left to default to the external URL's
// path, the route prefix is one the proxy never forwards: every path is a
// 404 that names the flag, and the page a redirect to itself.
func TestStrippingProxy(t *testing.T) {
	var (
		mu     sync.Mutex
		target http.Handler // set once omen runs
	)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := target
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	front := proxy.URL + "/omen"
	stripTo := func(p *proc) {
		u, err := url.Parse(p.URL)
		require.NoError(t, err)
		rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, "/omen")
			r.Out.URL.RawPath = ""
		}}
		mu.Lock()
		target = rp
		mu.Unlock()
	}

	stripTo(startOmen(t, "", "--web.external-url="+front+"/", "--web.route-prefix=/"))
	now := time.Now()
	ts := countUp(now, 30, prompb.Label{Name: "__name__", Value: "behind_stripping_proxy"}, prompb.Label{Name: "job", Value: "x"})
	code, body := remoteWriteV1(t, front, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}})
	require.Equal(t, http.StatusNoContent, code, body)
	res, err := query(t, front, `behind_stripping_proxy`, now.Add(-time.Second))
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, 29.0, res[0].F())

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (int, string, http.Header) {
		resp, err := noFollow.Get(front + path)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode, string(b), resp.Header
	}
	for _, tc := range []struct {
		path, contains, location string
		code                     int
	}{
		{"/-/healthy", "Healthy", "", http.StatusOK},
		{"/-/ready", "Ready", "", http.StatusOK},
		{"/metrics", `omen_http_requests_total{code="204",handler="/api/v1/write"} 1`, "", http.StatusOK},
		{"/", "ui/static/", "", http.StatusOK},
		{"/debug/pprof", `<a href="/omen/debug/pprof/">`, "/omen/debug/pprof/", http.StatusTemporaryRedirect},
		{"/api//v1/status/buildinfo", `<a href="/omen/api/v1/status/buildinfo">`, "/omen/api/v1/status/buildinfo", http.StatusTemporaryRedirect},
	} {
		code, body, h := get(tc.path)
		require.Equal(t, tc.code, code, "%s: %s", tc.path, body)
		require.Contains(t, body, tc.contains, tc.path)
		require.Equal(t, tc.location, h.Get("Location"), tc.path)
	}

	// The route prefix left to default: /omen, which the proxy strips
	// (the proxy forwards to the address alone, whatever the URL's path).
	stripTo(startOmenUnder(t, "", "/omen", "--web.external-url="+front+"/"))
	// (Its page, "/" at omen, redirects to /omen/, which comes back "/".)
	for _, p := range []string{"/-/ready", "/api/v1/query?query=up", "/metrics"} {
		code, body, _ := get(p)
		require.Equal(t, http.StatusNotFound, code, p)
		require.Contains(t, body, "--web.route-prefix", p)
	}
}

// countUp is a series of the labels ls counting 0 to n-1, a sample a
// second up to a second before now.
func countUp(now time.Time, n int, ls ...prompb.Label) prompb.TimeSeries {
	ts := prompb.TimeSeries{Labels: ls}
	for i := range n {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: now.Add(time.Duration(i-n) * time.Second).UnixMilli(), Value: float64(i)})
	}
	return ts
}
