package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// prometheus3 returns the Prometheus 3 server that `make deps-prom3` builds
// into bin/prometheus3 from e2e/prometheus3, the prometheus module version
// omen's go.mod requires: Debian's Prometheus (2.42) speaks remote-write
// 1.0 only. Missing, it fails the test under OMEN_E2E=1 (make test), as
// need does, and skips it otherwise.
func prometheus3(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(filepath.Dir(file)), "bin", "prometheus3")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("OMEN_E2E") == "1" {
			t.Fatalf("%s: %v; make deps-prom3 builds it", bin, err)
		}
		t.Skipf("%s: %v (make deps-prom3 builds it; set OMEN_E2E=1 to make this a failure)", bin, err)
	}
	return bin
}

// TestPrometheus3IsGoModsVersion keeps e2e/prometheus3 on the prometheus
// module version omen's go.mod requires: the tests of remote-write 2.0
// are against the release omen is built with.
func TestPrometheus3IsGoModsVersion(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	version := func(gomod string) string {
		b, err := os.ReadFile(gomod)
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/prometheus/prometheus" {
				return f[1]
			}
		}
		t.Fatalf("%s does not require github.com/prometheus/prometheus", gomod)
		return ""
	}
	require.Equal(t, version(filepath.Join(root, "go.mod")), version(filepath.Join(root, "e2e", "prometheus3", "go.mod")),
		"e2e/prometheus3/go.mod: run go get github.com/prometheus/prometheus@<go.mod's version> && go mod tidy there")
}

// startPrometheus3 starts Prometheus 3 with the configuration cfg returns
// for its listen address, and waits until it is ready.
func startPrometheus3(t testing.TB, cfg func(addr string) string, extra ...string) *proc {
	t.Helper()
	p := launchPrometheusBin(t, prometheus3(t), filepath.Join(t.TempDir(), "data"), freePort(t), cfg, extra...)
	p.name = "prometheus3"
	p.WaitReady(60 * time.Second)
	return p
}

// p3Exporter serves, through client_golang (protobuf when Prometheus asks
// for it, which it does for native histograms), what a service exposes:
// a counter named without _total (a counter only by its metadata), a
// gauge named with it (a gauge only by its metadata), a classic and a
// native histogram, and exemplars on the counter. Every scrape moves them.
type p3Exporter struct {
	mu       sync.Mutex
	n        int
	requests prometheus.Counter
	queue    prometheus.Gauge
	latency  prometheus.Histogram
	size     prometheus.Histogram
	handler  http.Handler
}

const (
	p3Counter = "e2e_p3_requests"    // a counter without _total
	p3Gauge   = "e2e_p3_queue_total" // a gauge with _total
)

func newP3Exporter() *p3Exporter {
	reg := prometheus.NewRegistry()
	e := &p3Exporter{
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: p3Counter, Help: "Requests served."}),
		queue:    prometheus.NewGauge(prometheus.GaugeOpts{Name: p3Gauge, Help: "Items queued."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "e2e_p3_latency_seconds", Help: "Latency.",
			Buckets: []float64{0.01, 0.1, 1}}),
		size: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "e2e_p3_size_bytes", Help: "Sizes.",
			NativeHistogramBucketFactor: 1.1}),
	}
	reg.MustRegister(e.requests, e.queue, e.latency, e.size)
	e.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
	return e
}

func (e *p3Exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.n++
	n := float64(e.n)
	e.requests.(prometheus.ExemplarAdder).AddWithExemplar(1+math.Mod(n, 3), prometheus.Labels{"trace_id": strconv.Itoa(e.n)})
	e.queue.Set(10 + 5*math.Sin(n/7))
	for i := range 3 {
		e.latency.Observe(math.Mod(n*0.037+float64(i)*0.3, 2))
		e.size.Observe(100 + math.Mod(n*37+float64(i)*101, 1000))
	}
	e.mu.Unlock()
	e.handler.ServeHTTP(w, r)
}

// p3WriteConfig is a Prometheus 3 configuration that scrapes jobs (name,
// then URL, of each) every second, native histograms too, classic ones
// converted to native histograms with custom buckets (NHCB, schema -53),
// and remote-writes 2.0 to omen.
func p3WriteConfig(omenURL string, jobs ...string) func(string) string {
	var sc strings.Builder
	for i := 0; i+1 < len(jobs); i += 2 {
		fmt.Fprintf(&sc, "  - job_name: %s\n    static_configs: [{targets: ['%s']}]\n", jobs[i], strings.TrimPrefix(jobs[i+1], "http://"))
	}
	return func(string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_native_histograms: true
  convert_classic_histograms_to_nhcb: true
scrape_configs:
%sremote_write:
  - url: %s/api/v1/write
    protobuf_message: io.prometheus.write.v2.Request
    send_native_histograms: true
    metadata_config: {send: false}
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
`, sc.String(), omenURL)
	}
}

// p3WithExternalLabels inserts external labels into a p3WriteConfig's
// global section.
func p3WithExternalLabels(cfg func(string) string, labels string) func(string) string {
	return func(addr string) string {
		return strings.Replace(cfg(addr), "global:\n", "global:\n  external_labels: "+labels+"\n", 1)
	}
}

// p3OutputsDrop is the README's write relabelling of omen's outputs, so
// that what omen forwards to Prometheus 3 is not written back.
const p3OutputsDrop = `[{source_labels: [__name__], regex: 'anomaly_score|yhat|yhat_lower|yhat_upper|forecast|forecast_lower|forecast_upper', action: drop}]`

// TestPrometheus3RemoteWrite2 runs the real Prometheus 3 as a
// remote-write 2.0 sender and receiver with omen: Prometheus 3 scrapes a
// test exporter and itself every second, remote-writes to omen with
// protobuf_message io.prometheus.write.v2.Request (native histograms,
// exemplars, and the per-series metadata of metadata-wal-records), reads
// back from omen, and receives omen's outputs, which omen forwards as 2.0.
func TestPrometheus3RemoteWrite2(t *testing.T) {
	prometheus3(t)
	exp := httptest.NewServer(newP3Exporter())
	defer exp.Close()
	expAddr := strings.TrimPrefix(exp.URL, "http://")

	// omen forwards its outputs to Prometheus 3's receiver, as 2.0 too.
	promPort := freePort(t)
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	cfg := filepath.Join(t.TempDir(), "omen.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`remote_write:
  - url: %s/api/v1/write
    protobuf_message: io.prometheus.write.v2.Request
    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}
`, promURL)), 0o644))
	omen := startOmen(t, "", "--config.file="+cfg, "--output.tsdb-interval=0s")

	// A series that only omen has, for remote read.
	now := time.Now()
	seed := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "omen_only_series"}, {Name: "source", Value: "omen"}}}
	for i := range 60 {
		seed.Samples = append(seed.Samples, prompb.Sample{Timestamp: now.Add(time.Duration(i-60) * time.Second).UnixMilli(), Value: float64(i)})
	}
	code, body := remoteWriteV1(t, omen.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{seed}})
	require.Equal(t, http.StatusNoContent, code, body)

	// metadata_config's send is off: with 2.0, metadata goes with each
	// series (metadata-wal-records), and Prometheus 3 warns that the
	// setting is ignored.
	prom := launchPrometheusBin(t, prometheus3(t), filepath.Join(t.TempDir(), "data"), promPort, func(addr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_native_histograms: true
scrape_configs:
  - job_name: exporter
    static_configs: [{targets: ['%[1]s']}]
  - job_name: prometheus3
    static_configs: [{targets: ['%[2]s']}]
remote_write:
  - url: %[3]s/api/v1/write
    protobuf_message: io.prometheus.write.v2.Request
    send_native_histograms: true
    send_exemplars: true
    metadata_config: {send: false}
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
    write_relabel_configs: %[4]s
remote_read:
  - url: %[3]s/api/v1/read
    read_recent: true
    required_matchers: {source: omen}
`, expAddr, addr, omen.URL, p3OutputsDrop)
	}, "--enable-feature=metadata-wal-records,exemplar-storage",
		"--web.enable-remote-write-receiver",
		"--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request")
	prom.name = "prometheus3"
	prom.WaitReady(60 * time.Second)

	t.Run("every sample arrives", func(t *testing.T) {
		// The inputs (omen's outputs carry for=<input>) in a window that
		// ended a few seconds ago, sample for sample.
		waitSameSamples(t, prom.URL, omen.URL, `{job=~"exporter|prometheus3", for=""}[20s]`,
			func() time.Time { return time.Now().Add(-5 * time.Second) }, 100)
	})

	t.Run("counters known from metadata", func(t *testing.T) {
		waitFor(t, 60*time.Second, "the exporter's series scored", func() bool {
			return len(anomaliesOf(t, omen.URL, p3Counter)) == 1 && len(anomaliesOf(t, omen.URL, p3Gauge)) == 1
		})
		require.True(t, anomaliesOf(t, omen.URL, p3Counter)[0].Counter, "%s is a counter by its 2.0 metadata", p3Counter)
		require.False(t, anomaliesOf(t, omen.URL, p3Gauge)[0].Counter, "%s is a gauge by its 2.0 metadata", p3Gauge)
		m := string(metricsText(t, omen.URL))
		require.Regexp(t, `omen_model_ready\{[^}]*for="`+p3Counter+`"[^}]*kind="counter"`, m)
		require.Regexp(t, `omen_model_ready\{[^}]*for="`+p3Gauge+`"[^}]*kind="gauge"`, m)
		data, err := apiGet(t, omen.URL, "/api/v1/metadata", url.Values{"metric": {p3Counter}})
		require.NoError(t, err)
		var md map[string][]struct{ Type, Help string }
		require.NoError(t, json.Unmarshal(data, &md))
		require.Equal(t, []struct{ Type, Help string }{{"counter", "Requests served."}}, md[p3Counter])
	})

	t.Run("scored outputs", func(t *testing.T) {
		for _, s := range []struct{ name, job string }{
			{p3Counter, "exporter"}, {p3Gauge, "exporter"}, {"e2e_p3_latency_seconds_bucket", "exporter"},
		} {
			// 0 until the model has warmed up (64 samples), the band
			// (yhat) after it.
			q := fmt.Sprintf(`anomaly_score{for=%q, job=%q}`, s.name, s.job)
			waitFor(t, 60*time.Second, q+" in omen", func() bool {
				res, err := query(t, omen.URL, q, time.Time{})
				return err == nil && len(res) > 0
			})
		}
		// Forwarded as 2.0 to Prometheus 3's receiver.
		q := fmt.Sprintf(`anomaly_score{for=%q, job="exporter"}`, p3Counter)
		waitFor(t, 60*time.Second, q+" in Prometheus 3", func() bool {
			res, err := query(t, prom.URL, q, time.Time{})
			return err == nil && len(res) == 1
		})
	})

	t.Run("remote read", func(t *testing.T) {
		res, err := query(t, prom.URL, `omen_only_series{source="omen"}`, now.Add(-time.Second))
		require.NoError(t, err)
		require.Len(t, res, 1, "Prometheus 3 should read omen_only_series from omen")
		require.Equal(t, 59.0, res[0].F())
	})

	t.Run("exemplars", func(t *testing.T) {
		waitFor(t, 30*time.Second, "exemplars stored", func() bool {
			v, err := metricValue(omen.URL, `omen_remote_write_samples_appended_total{type="exemplar"}`)
			return err == nil && v > 0
		})
	})

	t.Run("no failures on either side", func(t *testing.T) {
		// Prometheus 3 counts as failed what omen's written headers
		// leave out, 2xx or not, and drops what omen refuses with a 4xx.
		m := familySums(t, prom.URL)
		for _, f := range []string{"prometheus_remote_storage_samples_failed_total", "prometheus_remote_storage_histograms_failed_total",
			"prometheus_remote_storage_exemplars_failed_total", "prometheus_remote_storage_samples_retried_total"} {
			require.Contains(t, m, f)
			require.Zero(t, m[f], f)
		}
		for _, f := range []string{"prometheus_remote_storage_samples_total", "prometheus_remote_storage_histograms_total",
			"prometheus_remote_storage_exemplars_total"} {
			require.Positive(t, m[f], f)
		}
		logs, err := os.ReadFile(prom.log)
		require.NoError(t, err)
		for _, line := range strings.Split(string(logs), "\n") {
			if strings.Contains(line, "component=remote") && (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) {
				t.Errorf("Prometheus 3 logged: %s", line)
			}
		}
		// omen took every request whole.
		om := familySums(t, omen.URL)
		require.Zero(t, om["omen_remote_write_samples_rejected_total"])
		require.NotRegexp(t, `omen_http_requests_total\{code="[45]\d\d",handler="/api/v1/write"\}`, string(metricsText(t, omen.URL)))
		// And omen's queue to Prometheus 3 did not fail either.
		require.Zero(t, om["prometheus_remote_storage_samples_failed_total"])
		require.Positive(t, om["prometheus_remote_storage_samples_total"])
	})
}

// waitSameSamples waits until the range-vector query sel at at() selects
// the same samples in Prometheus 3 (promURL) and omen, of at least
// minSeries series, native histograms among them.
func waitSameSamples(t *testing.T, promURL, omenURL, sel string, at func() time.Time, minSeries int) {
	t.Helper()
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last comparison: %s", last)
		}
	}()
	waitFor(t, 90*time.Second, "omen to hold every sample of "+sel+" Prometheus 3 scraped", func() bool {
		when := at()
		p, err1 := rangeSamples(t, promURL, sel, when)
		o, err2 := rangeSamples(t, omenURL, sel, when)
		if err1 != nil || err2 != nil {
			last = fmt.Sprintf("prometheus3 %v, omen %v", err1, err2)
			return false
		}
		last = diffSamples(p, o)
		return last == "" && len(p) >= minSeries && hasHistograms(p)
	})
}

// rangeSamples runs the range-vector query q at time at and returns each
// series' samples (floats and histograms, as the API's JSON has them) by
// its labels.
func rangeSamples(t testing.TB, base, q string, at time.Time) (map[string]string, error) {
	t.Helper()
	data, err := apiGet(t, base, "/api/v1/query", url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}})
	if err != nil {
		return nil, err
	}
	var res struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric     map[string]string `json:"metric"`
			Values     json.RawMessage   `json:"values"`
			Histograms json.RawMessage   `json:"histograms"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	if res.ResultType != "matrix" {
		return nil, fmt.Errorf("result type %q, want matrix", res.ResultType)
	}
	out := make(map[string]string, len(res.Result))
	for _, r := range res.Result {
		out[model.LabelSet(toLabelSet(r.Metric)).String()] = string(r.Values) + " " + string(r.Histograms)
	}
	return out, nil
}

func toLabelSet(m map[string]string) model.LabelSet {
	ls := make(model.LabelSet, len(m))
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// hasHistograms reports whether some series of s has native histograms.
func hasHistograms(s map[string]string) bool {
	for _, v := range s {
		if !strings.HasSuffix(v, " ") {
			return true
		}
	}
	return false
}

// diffSamples describes the first few differences between want and got,
// or returns "" when they are the same.
func diffSamples(want, got map[string]string) string {
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, "missing "+k)
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: want %.300s, got %.300s", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, "extra "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "\n")
}

// familySums reads base's /metrics and sums each family over its series.
func familySums(t testing.TB, base string) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(metricsText(t, base)))
	require.NoError(t, err)
	out := map[string]float64{}
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				out[name] += m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] += m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[name] += m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// longLabelExporter serves a gauge with a label value of 5000 bytes:
// Prometheus 3 stores it, omen refuses it (beyond its label value limit,
// 4096 bytes). Samples it could not store that Prometheus 3 does store
// are hard to come by otherwise: Prometheus refuses samples too far in the
// future at its scrape, and sends only its WAL (out-of-order samples go
// to another log).
type longLabelExporter struct{}

func (longLabelExporter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# TYPE e2e_p3_long gauge\ne2e_p3_long{blob=%q} 1\n", strings.Repeat("x", 5000))
}

// TestPrometheus3Refusals has Prometheus 3 remote-write 2.0 to an omen
// that refuses some of it: overloaded (--write.max-inflight-requests=1
// under a flood of other writes), it answers 503 with Retry-After, which
// Prometheus 3 retries; a series beyond its label limits it answers 400, which
// Prometheus 3 does not retry, counting as failed what omen's written
// headers leave out. omen stores the valid rest of a request it answers
// 400, so nothing but the refused samples is lost, and Prometheus 3's
// failed count is exactly omen's refusals.
func TestPrometheus3Refusals(t *testing.T) {
	prometheus3(t)
	exp := httptest.NewServer(newP3Exporter())
	defer exp.Close()
	long := httptest.NewServer(longLabelExporter{})
	defer long.Close()
	omen := startOmen(t, "", "--write.max-inflight-requests=1")
	prom := startPrometheus3(t, p3WriteConfig(omen.URL, "exporter", exp.URL, "long", long.URL), "--enable-feature=metadata-wal-records")
	waitFor(t, 60*time.Second, "Prometheus 3's samples in omen", func() bool {
		res, err := query(t, omen.URL, `up{job="exporter"}`, time.Time{})
		return err == nil && len(res) == 1
	})

	// Overload: other writers keep omen's one request slot busy until
	// Prometheus 3 has been refused and has retried.
	// Its samples 1 ms apart from 30 minutes back: at 100 ms a fast omen
	// took the flood's rounds to 10 minutes ahead of the clock within the
	// wait, its workers stopped at the 400 for samples too far in the
	// future, and Prometheus 3 was never refused.
	start := time.Now()
	w := newAckWriter("e2e_p3_flood", 2000, 4, start.Add(-30*time.Minute).UnixMilli(), 1)
	w.start(omen.URL)
	waitFor(t, 60*time.Second, "Prometheus 3 to be refused and retry", func() bool {
		return w.bad.Load() != nil || familySums(t, prom.URL)["prometheus_remote_storage_samples_retried_total"] > 0
	})
	w.stop()
	end := time.Now()
	require.Nil(t, w.bad.Load(), "overload must never be answered with 4xx: %v", w.bad.Load())
	require.Positive(t, w.retry.Load())

	// Every sample of the exporter from before the overload to after it
	// arrives, though some were in requests answered 400.
	at := end.Add(3 * time.Second)
	waitSameSamples(t, prom.URL, omen.URL, fmt.Sprintf(`{job="exporter", for=""}[%dms]`, at.Sub(start).Milliseconds()+5000),
		func() time.Time { return at }, 5)

	// What Prometheus 3 counts as failed is what omen refused, once both
	// have settled (the newest refused sample may be in flight).
	var last string
	waitFor(t, 30*time.Second, "Prometheus 3's failed samples to match omen's refusals", func() bool {
		m, om := familySums(t, prom.URL), familySums(t, omen.URL)
		last = fmt.Sprintf("prometheus3 failed %g, retried %g; omen refused %g", m["prometheus_remote_storage_samples_failed_total"],
			m["prometheus_remote_storage_samples_retried_total"], om["omen_remote_write_samples_rejected_total"])
		return m["prometheus_remote_storage_samples_failed_total"] > 0 &&
			m["prometheus_remote_storage_samples_failed_total"] == om["omen_remote_write_samples_rejected_total"] &&
			m["prometheus_remote_storage_histograms_failed_total"] == 0
	})
	t.Log(last)
	rej, err := query(t, omen.URL, `omen_remote_write_samples_rejected_total{reason!="invalid_labels"} > 0`, time.Time{})
	require.NoError(t, err)
	require.Empty(t, rej, "omen refused only the long label's samples")
}

// TestPrometheus3StartTimestamps has Prometheus 3 send start (created)
// timestamps, which it keeps with st-storage and reads from the protobuf
// scrape of client_golang's counters and histograms, to omen under
// created-timestamp-zero-ingestion: omen stores a zero sample at each
// series' start, which Prometheus 3 (storing the start timestamp in its
// chunks instead) has not, and its written headers still count exactly
// the samples sent, none failed.
func TestPrometheus3StartTimestamps(t *testing.T) {
	prometheus3(t)
	exp := httptest.NewServer(newP3Exporter())
	defer exp.Close()
	omen := startOmen(t, "", "--enable-feature=created-timestamp-zero-ingestion")
	prom := startPrometheus3(t, p3WriteConfig(omen.URL, "exporter", exp.URL), "--enable-feature=metadata-wal-records,st-storage")

	q := fmt.Sprintf(`min_over_time(%s{job="exporter"}[5m])`, p3Counter)
	waitFor(t, 60*time.Second, "the counter's zero sample at its start in omen", func() bool {
		res, err := query(t, omen.URL, q, time.Time{})
		return err == nil && len(res) == 1 && res[0].F() == 0
	})
	res, err := query(t, prom.URL, q, time.Time{})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Positive(t, res[0].F(), "Prometheus 3 stores no zero sample")
	// The classic histogram arrives as Prometheus 3 converted it, one
	// series of custom buckets.
	nhcb, err := rangeSamples(t, omen.URL, `e2e_p3_latency_seconds{job="exporter"}[1m]`, time.Now())
	require.NoError(t, err)
	require.Len(t, nhcb, 1)
	require.True(t, hasHistograms(nhcb), "%v", nhcb)

	m := familySums(t, prom.URL)
	require.Positive(t, m["prometheus_remote_storage_samples_total"])
	for _, f := range []string{"prometheus_remote_storage_samples_failed_total", "prometheus_remote_storage_histograms_failed_total"} {
		require.Contains(t, m, f)
		require.Zero(t, m[f], f)
	}
	require.Zero(t, familySums(t, omen.URL)["omen_remote_write_samples_rejected_total"])
}

// TestPrometheus3HAPair has an HA pair of Prometheus 3 remote-write 2.0 to
// omen under --write.ha-replica-label: omen stores the elected replica's
// series and answers the other's requests 202, with written headers that
// count what it dropped as taken, so that neither Prometheus counts a
// sample failed (a 2xx whose headers count nothing is a failure to
// Prometheus 3).
func TestPrometheus3HAPair(t *testing.T) {
	prometheus3(t)
	exp := httptest.NewServer(newP3Exporter())
	defer exp.Close()
	omen := startOmen(t, "", "--write.ha-replica-label=replica", "--write.ha-cluster-label=cluster")
	var proms []*proc
	for _, r := range []string{"a", "b"} {
		proms = append(proms, startPrometheus3(t, p3WithExternalLabels(p3WriteConfig(omen.URL, "exporter", exp.URL), "{cluster: c1, replica: "+r+"}"),
			"--enable-feature=metadata-wal-records"))
	}
	waitFor(t, 60*time.Second, "the other replica's samples dropped", func() bool {
		return familySums(t, omen.URL)["omen_ha_deduplicated_samples_total"] > 100
	})
	res, err := query(t, omen.URL, `up{job="exporter"}`, time.Time{})
	require.NoError(t, err)
	require.Len(t, res, 1, "one replica's series, without the replica label")
	require.Equal(t, map[string]string{"__name__": "up", "cluster": "c1", "instance": strings.TrimPrefix(exp.URL, "http://"), "job": "exporter"}, res[0].Metric)
	for i, p := range proms {
		m := familySums(t, p.URL)
		require.Positive(t, m["prometheus_remote_storage_samples_total"], "replica %d", i)
		for _, f := range []string{"prometheus_remote_storage_samples_failed_total", "prometheus_remote_storage_histograms_failed_total"} {
			require.Contains(t, m, f)
			require.Zero(t, m[f], "replica %d: %s", i, f)
		}
	}
	require.Zero(t, familySums(t, omen.URL)["omen_remote_write_samples_rejected_total"])
}
