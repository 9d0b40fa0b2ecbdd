package e2e

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestForwardToPrometheus forwards omen's outputs to the real Prometheus's
// remote-write receiver, with a remote_write section of omen's
// configuration file (its write relabelling and queue settings apply), and
// takes the receiver down for a while: once it is back, it holds every
// output omen stored, each input's anomaly_score sample for sample, and
// none of the inputs or of the families the relabelling drops.
func TestForwardToPrometheus(t *testing.T) {
	need(t, "prometheus")
	promData, promPort := filepath.Join(t.TempDir(), "data"), freePort(t)
	promCfg := func(string) string { return "global:\n  scrape_interval: 1m\n" }
	prom := startPrometheusAt(t, promData, promPort, promCfg, "--web.enable-remote-write-receiver")
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)

	cfg := filepath.Join(t.TempDir(), "omen.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`remote_write:
  - url: %s/api/v1/write
    write_relabel_configs:
      - source_labels: [__name__]
        regex: yhat_lower|yhat_upper
        action: drop
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
`, promURL)), 0o644))
	omen := startOmen(t, "", "--config.file="+cfg, "--output.tsdb-interval=0s")

	const series = 5
	var n int
	write := func(rounds int) {
		for range rounds {
			now := time.Now().UnixMilli()
			req := &prompb.WriteRequest{}
			for s := range series {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  []prompb.Label{{Name: "__name__", Value: "fwd_temperature"}, {Name: "instance", Value: fmt.Sprint(s)}},
					Samples: []prompb.Sample{{Timestamp: now, Value: 100 + 10*math.Sin(float64(n)/5) + float64(s)}},
				})
			}
			code, body := remoteWriteV1(t, omen.URL, req)
			require.Equal(t, 204, code, body)
			n++
			time.Sleep(50 * time.Millisecond)
		}
	}
	write(40)
	countOf := func(base, q string) map[string]float64 {
		out := map[string]float64{}
		vs, err := query(t, base, q, time.Now())
		if err != nil {
			return out
		}
		for _, v := range vs {
			out[v.Metric["instance"]] = v.F()
		}
		return out
	}
	const scores = `count_over_time(anomaly_score{for="fwd_temperature"}[10m])`
	waitFor(t, 60*time.Second, "the first scores upstream", func() bool { return len(countOf(promURL, scores)) == series })

	// The receiver goes away while omen keeps scoring, and comes back.
	prom.Stop()
	write(60)
	startPrometheusAt(t, promData, promPort, promCfg, "--web.enable-remote-write-receiver")
	write(10)

	want := countOf(omen.URL, scores)
	require.Len(t, want, series)
	for _, c := range want {
		require.Equal(t, float64(n), c, "omen scored every sample")
	}
	waitFor(t, 90*time.Second, "every score upstream", func() bool {
		got := countOf(promURL, scores)
		t.Logf("upstream %v, omen %v", got, want)
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
	// The same values, not only as many.
	const sum = `sum_over_time(anomaly_score{for="fwd_temperature"}[10m])`
	require.Equal(t, countOf(omen.URL, sum), countOf(promURL, sum))
	require.NotEmpty(t, countOf(promURL, `count_over_time(yhat{for="fwd_temperature"}[10m])`), "yhat is forwarded")
	require.NotEmpty(t, countOf(omen.URL, `count_over_time(yhat_upper{for="fwd_temperature"}[10m])`))
	require.Empty(t, countOf(promURL, `count_over_time(yhat_upper{for="fwd_temperature"}[10m])`), "dropped by the file's write relabelling")
	require.Empty(t, countOf(promURL, `count_over_time(fwd_temperature[10m])`), "inputs are not forwarded")
}
