package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHeadSeriesLimitWithPrometheus: the real Prometheus 2.42 scrapes a
// target whose series explode (20 new ones at every scrape, beside 10
// steady ones) and remote-writes them to omen started with
// --write.max-head-series=100. Once the head holds 100 series, omen
// refuses the new ones with a 400, which Prometheus drops without
// retrying: its samples failed grow, its retries stay at 0, and the
// requests keep coming at the scrape rate, no storm. The steady series
// are stored all along, in the very requests that were refused in part,
// and the head stays at the limit (one shard: no request appends beside
// another).
func TestHeadSeriesLimitWithPrometheus(t *testing.T) {
	need(t, "prometheus")
	const limit = 100
	omen := startOmen(t, "", "--detect.max-series=0", fmt.Sprintf("--write.max-head-series=%d", limit))

	var scrapes atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1)
		var b strings.Builder
		for i := range 10 {
			fmt.Fprintf(&b, "steady{i=\"%d\"} %d\n", i, n)
		}
		for i := range 20 * n {
			fmt.Fprintf(&b, "exploding{id=\"%d\"} 1\n", i)
		}
		_, _ = io.WriteString(w, b.String())
	}))
	t.Cleanup(target.Close)

	prom := startPrometheus(t, func(string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: explode
    static_configs: [{targets: ['%s']}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s, max_shards: 1, min_shards: 1, min_backoff: 100ms, max_backoff: 1s}
`, strings.TrimPrefix(target.URL, "http://"), omen.URL)
	})

	waitFor(t, 90*time.Second, "omen to refuse series", func() bool {
		v, err := metricValue(omen.URL, "omen_remote_write_series_refused_total")
		return err == nil && v > 0
	})
	refusedAt := time.Now()
	head, err := metricValue(omen.URL, "omen_tsdb_head_series")
	require.NoError(t, err)
	require.Equal(t, float64(limit), head)

	// The steady series keep arriving: their newest sample in omen moves
	// on past the first refusal, the whole time at the limit.
	waitFor(t, 60*time.Second, "steady series stored after the limit", func() bool {
		res, err := query(t, omen.URL, `min(timestamp(steady))`, time.Now())
		if err != nil || len(res) != 1 {
			return false
		}
		return res[0].F() > float64(refusedAt.Add(5*time.Second).Unix())
	})
	res, err := query(t, omen.URL, `count(steady)`, time.Now())
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, 10.0, res[0].F())
	head, err = metricValue(omen.URL, "omen_tsdb_head_series")
	require.NoError(t, err)
	require.Equal(t, float64(limit), head, "refused series stay out of the head")

	// Prometheus dropped what omen refused, and retried nothing.
	failed, err := sumMetric(prom.URL, "prometheus_remote_storage_samples_failed_total")
	require.NoError(t, err)
	require.Positive(t, failed)
	retried, err := sumMetric(prom.URL, "prometheus_remote_storage_samples_retried_total")
	require.NoError(t, err)
	require.Zero(t, retried, "a 400 is not retried")
	// No retry storm: at most a request a second or so (one scrape a second,
	// one shard, batches sent every second), not one per backoff.
	n0, err := sumMetric(omen.URL, `omen_http_requests_total{code="400",handler="/api/v1/write"`)
	require.NoError(t, err)
	time.Sleep(5 * time.Second)
	n1, err := sumMetric(omen.URL, `omen_http_requests_total{code="400",handler="/api/v1/write"`)
	require.NoError(t, err)
	t.Logf("Prometheus: %g samples failed, %g retried; omen: %g answers of 400 in 5 s", failed, retried, n1-n0)
	require.LessOrEqual(t, n1-n0, 15.0, "400s in 5 s")
	require.Positive(t, n1-n0, "the explosion goes on, and so do the refusals")
}

// sumMetric sums the samples of a /metrics page whose line starts with
// prefix (a name, or a name and the start of its labels).
func sumMetric(base, prefix string) (float64, error) {
	page, err := metricsPage(base)
	if err != nil {
		return 0, err
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		rest := line[len(prefix):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{' && rest[0] != ',' && rest[0] != '}') {
			continue // another metric whose name starts with prefix's
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, fmt.Errorf("%s not on %s/metrics", prefix, base)
	}
	return sum, nil
}
