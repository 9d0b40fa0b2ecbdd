package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The OpenTelemetry Collector's prometheusremotewrite exporter as a sender:
// e2e/otelcol builds a collector of the OTLP receiver and that exporter
// (make deps-otelcol; a separate module, as its cold build takes minutes).
// TestOTelCollector sends OTLP metrics through it to omen, through a proxy
// that records what the exporter sent (make otelcol-fixtures keeps them in
// testdata/otelcol for TestOTelCollectorReplay, which make test runs).

// otelcolBinary is $OMEN_OTELCOL, the collector make deps-otelcol built.
// Not under make test, to which the collector's cold build would add 3 to 9
// minutes on two cores: it skips unless set (make test-otelcol sets it).
func otelcolBinary(t testing.TB) string {
	t.Helper()
	return binaryFromEnv(t, "OMEN_OTELCOL", "make test-otelcol builds the collector and runs this test")
}

// otelNames are the metric names the exporter makes of otlpMetrics' by
// its translation strategy: with suffixes (its default) a monotonic sum
// gets _total and a unit its suffix; without, the names alone, so that a
// counter is known as one by the metadata only.
type otelNames struct{ gauge, counter, histogram, native string }

var (
	withSuffixes    = otelNames{"e2e_queue_depth", "e2e_requests_total", "e2e_request_duration_seconds", "e2e_payload_size_bytes"}
	withoutSuffixes = otelNames{"e2e_queue_depth", "e2e_requests", "e2e_request_duration", "e2e_payload_size"}
)

// otlpMetrics is one OTLP/JSON export request: a gauge, a monotonic
// cumulative sum, a histogram and an exponential histogram (a native one
// in Prometheus) of one resource, each one point at ts.
// Values are functions of i, so that a lost or reordered request shows.
func otlpMetrics(i int, ts, start time.Time) []byte {
	attr := func(k, v string) map[string]any {
		return map[string]any{"key": k, "value": map[string]any{"stringValue": v}}
	}
	nanos := func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }
	point := map[string]any{"timeUnixNano": nanos(ts), "startTimeUnixNano": nanos(start), "attributes": []any{attr("http.route", "/pay")}}
	with := func(kv ...any) map[string]any {
		p := map[string]any{}
		for k, v := range point {
			p[k] = v
		}
		for j := 0; j < len(kv); j += 2 {
			p[kv[j].(string)] = kv[j+1]
		}
		return p
	}
	n := int64(i + 1)
	req := map[string]any{"resourceMetrics": []any{map[string]any{
		"resource": map[string]any{"attributes": []any{
			attr("service.name", "checkout"), attr("service.instance.id", "i-1"), attr("host.name", "h1"),
		}},
		"scopeMetrics": []any{map[string]any{
			"scope": map[string]any{"name": "e2e"},
			"metrics": []any{
				map[string]any{"name": "e2e.queue.depth", "unit": "{item}", "gauge": map[string]any{
					"dataPoints": []any{with("asDouble", 10+5*math.Sin(float64(i)/3))}}},
				map[string]any{"name": "e2e.requests", "unit": "{request}", "sum": map[string]any{
					"aggregationTemporality": 2, "isMonotonic": true,
					"dataPoints": []any{with("asInt", strconv.FormatInt(100*n, 10))}}},
				map[string]any{"name": "e2e.request.duration", "unit": "s", "histogram": map[string]any{
					"aggregationTemporality": 2,
					"dataPoints": []any{with("count", strconv.FormatInt(10*n, 10), "sum", 0.3*float64(n),
						"bucketCounts", []string{strconv.FormatInt(5*n, 10), strconv.FormatInt(4*n, 10), strconv.FormatInt(n, 10)},
						"explicitBounds", []float64{0.1, 0.5})}}},
				map[string]any{"name": "e2e.payload.size", "unit": "By", "exponentialHistogram": map[string]any{
					"aggregationTemporality": 2,
					"dataPoints": []any{with("count", strconv.FormatInt(10*n, 10), "sum", 100*float64(n), "scale", 0, "zeroCount", "0",
						"positive", map[string]any{"offset": 0, "bucketCounts": []string{strconv.FormatInt(5*n, 10), strconv.FormatInt(5*n, 10)}})}}},
			},
		}},
	}}}
	b, _ := json.Marshal(req)
	return b
}

// capturedRequest is one request the exporter sent, and what it was told.
type capturedRequest struct {
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
	Status int         `json:"status"`
}

// recordingProxy passes the exporter's requests to omen and records them;
// the first fail503 are answered as an overloaded omen answers (503 and
// Retry-After) without reaching it.
type recordingProxy struct {
	target  string
	fail503 int32
	mu      sync.Mutex
	reqs    []capturedRequest
	seen    atomic.Int32
}

func (p *recordingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	keep := http.Header{}
	for _, k := range []string{"Content-Type", "Content-Encoding", "X-Prometheus-Remote-Write-Version", "User-Agent"} {
		if v := r.Header.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	status := 0
	var answer []byte
	if p.seen.Add(1) <= p.fail503 {
		w.Header().Set("Retry-After", "1")
		status = http.StatusServiceUnavailable
		answer = []byte("too many remote-write requests in flight (e2e proxy)\n")
		w.WriteHeader(status)
		_, _ = w.Write(answer)
	} else {
		req, _ := http.NewRequest(http.MethodPost, p.target, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		answer, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		status = resp.StatusCode
		w.WriteHeader(status)
		_, _ = w.Write(answer)
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, capturedRequest{Header: keep, Body: body, Status: status})
	p.mu.Unlock()
}

func (p *recordingProxy) requests() []capturedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]capturedRequest(nil), p.reqs...)
}

// startOtelcol starts the collector with the exporter's settings extra
// (YAML lines, indented under the exporter) sending to endpoint, and
// waits until its OTLP/HTTP receiver answers; it returns the receiver's
// and the collector's own metrics' URLs.
func startOtelcol(t *testing.T, bin, endpoint, extra string, gates ...string) (otlpURL, telemetryURL string, p *proc) {
	t.Helper()
	otlpPort, telPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:%d"}
exporters:
  prometheusremotewrite:
    endpoint: %s
    retry_on_failure: {initial_interval: 50ms, max_interval: 1s, max_elapsed_time: 2m}
%s
service:
  telemetry:
    metrics:
      level: detailed
      readers:
        - pull: {exporter: {prometheus: {host: 127.0.0.1, port: %d}}}
  pipelines:
    metrics: {receivers: [otlp], exporters: [prometheusremotewrite]}
`, otlpPort, endpoint, extra, telPort)
	file := filepath.Join(t.TempDir(), "otelcol.yml")
	require.NoError(t, os.WriteFile(file, []byte(cfg), 0o644))
	args := []string{"--config=file:" + file}
	if len(gates) > 0 {
		args = append(args, "--feature-gates="+strings.Join(gates, ","))
	}
	p = start(t, "otelcol", otlpPort, bin, args...)
	otlpURL = fmt.Sprintf("http://127.0.0.1:%d/v1/metrics", otlpPort)
	telemetryURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", telPort)
	waitFor(t, 60*time.Second, "the collector's OTLP receiver", func() bool {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("the collector exited:\n%s", tail(b, 4000))
		default:
		}
		resp, err := http.Get(telemetryURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return otlpURL, telemetryURL, p
}

// collectorMetric sums the collector's own metric family on its /metrics
// (every series of it), 0 if none: a counter of failures has no series
// until the first.
func collectorMetric(t testing.TB, telemetryURL, family string) float64 {
	t.Helper()
	resp, err := http.Get(telemetryURL)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	sum := 0.0
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(family) + `(?:_total)?(?:\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		sum += v
	}
	return sum
}

// TestOTelCollector sends otlpN OTLP requests (one point of each metric
// at 15 s steps, ending now) through the real collector and its
// prometheusremotewrite exporter to omen, the first two answered 503 +
// Retry-After, and checks that omen has every sample under the names and
// labels the exporter made, knows the counter as one, does not score
// target_info, and that the collector counts nothing failed.
func TestOTelCollector(t *testing.T) {
	bin := otelcolBinary(t)
	const otlpN = 40
	for _, tc := range []struct {
		name  string
		extra string
		gates []string
		names otelNames
		omen  []string
	}{
		// The exporter's defaults, with metadata (off by default): 1.0.
		{name: "rw1", extra: "    send_metadata: true", names: withSuffixes},
		// 2.0 takes a feature gate and always carries metadata; without
		// suffixes the counter is known as one by it alone.
		{
			name:  "rw2",
			extra: "    protobuf_message: io.prometheus.write.v2.Request\n    translation_strategy: UnderscoreEscapingWithoutSuffixes",
			gates: []string{"exporter.prometheusremotewritexporter.enableSendingRW2"},
			names: withoutSuffixes,
		},
		// Five consumers send batches at once, so one series' samples
		// arrive out of order: omen's out-of-order window takes them.
		{
			name:  "parallel-consumers",
			extra: "    send_metadata: true\n    remote_write_queue: {num_consumers: 5}",
			gates: []string{"exporter.prometheusremotewritexporter.EnableMultipleWorkers"},
			names: withSuffixes,
			omen:  []string{"--storage.tsdb.out-of-order-time-window=30m"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			omen := startOmen(t, t.TempDir(), tc.omen...)
			proxy := &recordingProxy{target: omen.URL + "/api/v1/write", fail503: 2}
			ps := httptest.NewServer(proxy)
			defer ps.Close()
			otlpURL, telURL, col := startOtelcol(t, bin, ps.URL+"/api/v1/write", tc.extra, tc.gates...)

			end := time.Now().Truncate(time.Second)
			begin := end.Add(-time.Duration(otlpN-1) * 15 * time.Second)
			startTime := begin.Add(-time.Minute)
			for i := range otlpN {
				resp, err := http.Post(otlpURL, "application/json", bytes.NewReader(otlpMetrics(i, begin.Add(time.Duration(i)*15*time.Second), startTime)))
				require.NoError(t, err)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode, "OTLP export %d: %s", i, b)
			}

			// The exporter is done once every point was sent or failed.
			waitFor(t, 60*time.Second, "the exporter to send the "+strconv.Itoa(otlpN*4)+" points", func() bool {
				return collectorMetric(t, telURL, "otelcol_exporter_sent_metric_points")+collectorMetric(t, telURL, "otelcol_exporter_send_failed_metric_points") == otlpN*4
			})
			reqs := proxy.requests()
			statuses := map[int]int{}
			for _, r := range reqs {
				statuses[r.Status]++
			}
			t.Logf("%d remote-write requests, by omen's answer: %v; Content-Type %q", len(reqs), statuses, reqs[len(reqs)-1].Header.Get("Content-Type"))
			require.Zero(t, collectorMetric(t, telURL, "otelcol_exporter_send_failed_metric_points"), "the exporter's failed points (it drops a batch answered 4xx)")
			require.Zero(t, collectorMetric(t, telURL, "otelcol_exporter_prometheusremotewrite_failed_translations"), "the exporter's failed translations")
			require.False(t, col.logContains("Dropping data"), "the collector's log says it dropped data")
			for s, c := range statuses {
				require.Truef(t, s == http.StatusNoContent || s == http.StatusServiceUnavailable, "%d requests answered %d", c, s)
			}
			require.Equal(t, 2, statuses[http.StatusServiceUnavailable], "the 503s the proxy gave")

			requireOTelStored(t, omen.URL, tc.names, otlpN, end)

			require.Equal(t, float64(otlpN*4), collectorMetric(t, telURL, "otelcol_exporter_sent_metric_points"), "the exporter's sent points")
			if tc.gates != nil && strings.Contains(tc.extra, "v2.Request") {
				// 2.0's answer says how many samples were written, which
				// the exporter counts: each request's 8 (target_info, the
				// gauge, the counter, the histogram's 5).
				require.Equal(t, float64(otlpN*8), collectorMetric(t, telURL, "otelcol_exporter_prometheusremotewrite_written_samples"), "samples omen said it wrote")
				require.Equal(t, float64(otlpN), collectorMetric(t, telURL, "otelcol_exporter_prometheusremotewrite_written_histograms"), "histograms omen said it wrote")
			}

			if dir := os.Getenv("OMEN_OTELCOL_CAPTURE"); dir != "" {
				writeCapture(t, filepath.Join(dir, tc.name+".json"), reqs)
			}
		})
	}
}

// requireOTelStored checks what n of otlpMetrics' requests, the last at
// end, leave in omen: each of a series' samples once, under the names and
// labels the exporter made (the counter's values say which requests
// arrived); target_info stored; the counter known as one and the gauge as
// a gauge; target_info not scored.
func requireOTelStored(t *testing.T, base string, names otelNames, n int, end time.Time) {
	t.Helper()
	want := map[string]int{names.gauge: 1, names.counter: 1, names.histogram + "_sum": 1, names.histogram + "_count": 1, names.histogram + "_bucket": 3, names.native: 1}
	for name, series := range want {
		waitFor(t, 60*time.Second, fmt.Sprintf("%s's %d samples", name, n), func() bool {
			v, err := query(t, base, "count_over_time("+name+`{job="checkout",instance="i-1",http_route="/pay"}[1h])`, end)
			if err != nil || len(v) != series {
				return false
			}
			for _, s := range v {
				if s.F() != float64(n) {
					return false
				}
			}
			return true
		})
	}
	v, err := query(t, base, "sum_over_time("+names.counter+"[1h])", end)
	require.NoError(t, err)
	require.Len(t, v, 1)
	require.Equal(t, float64(100*n*(n+1)/2), v[0].F(), "the counter's samples, each once")

	// The exponential histogram is a native one: stored, not scored
	// (a derived input scores it).
	v, err = query(t, base, "histogram_count("+names.native+")", end)
	require.NoError(t, err)
	require.Len(t, v, 1, "%s a native histogram", names.native)
	require.Equal(t, float64(10*n), v[0].F(), "%s's count", names.native)

	ti, err := query(t, base, `count_over_time(target_info{job="checkout",instance="i-1",host_name="h1"}[1h])`, end)
	require.NoError(t, err)
	require.Len(t, ti, 1, "target_info stored")

	waitFor(t, 60*time.Second, "the inputs scored", func() bool {
		return len(anomaliesOf(t, base, names.counter)) == 1 && len(anomaliesOf(t, base, names.gauge)) == 1
	})
	require.True(t, anomaliesOf(t, base, names.counter)[0].Counter, "%s known as a counter", names.counter)
	require.False(t, anomaliesOf(t, base, names.gauge)[0].Counter, "%s known as a gauge", names.gauge)
	require.Empty(t, anomaliesOf(t, base, "target_info"), "target_info scored")
	require.Empty(t, anomaliesOf(t, base, names.native), "the native histogram scored")
}

// writeCapture keeps the requests omen stored (not the proxy's 503s,
// which never reached it) for TestOTelCollectorReplay.
func writeCapture(t *testing.T, file string, reqs []capturedRequest) {
	t.Helper()
	var kept []capturedRequest
	for _, r := range reqs {
		if r.Status != http.StatusServiceUnavailable {
			kept = append(kept, r)
		}
	}
	b, err := json.MarshalIndent(kept, "", " ")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
	require.NoError(t, os.WriteFile(file, append(b, '\n'), 0o644))
}
