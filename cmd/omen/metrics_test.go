package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/ready"
)

// startServe runs `omen serve` with flags on a free port until the test
// ends, and returns its base URL once it is ready.
func startServe(t *testing.T, flags ...string) string {
	t.Helper()
	addr := freeAddr(t)
	app := kingpin.New("omen", "")
	cmd := registerServe(app, registerLogFlags(app))
	_, err := app.Parse(append([]string{"serve", "--web.listen-address=" + addr}, flags...))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	base := "http://" + addr
	require.Eventually(t, func() bool { return ready.OK(base) }, 30*time.Second, 20*time.Millisecond)
	return base
}

// TestModuleMetricsOnMetrics: omen's /metrics, with nothing forwarded
// (no --remote-write.url), has the remote storage's counters that
// Prometheus shows with no remote_write configured (2.42 and 3 alike,
// run with an empty configuration: the four below, at 0). On 400a4a5 they
// were registered only once the forwarding log opened, and missing.
func TestModuleMetricsOnMetrics(t *testing.T) {
	base := startServe(t, "--storage.tsdb.path="+t.TempDir(), "--web.shutdown-grace=0s", "--log.level=error")

	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	for _, name := range []string{
		"prometheus_remote_storage_samples_in_total",
		"prometheus_remote_storage_exemplars_in_total",
		"prometheus_remote_storage_histograms_in_total",
		"prometheus_remote_storage_string_interner_zero_reference_releases_total",
	} {
		_, ok := mfs[name]
		require.True(t, ok, "%s on /metrics", name)
		require.Len(t, mfs[name].GetMetric(), 1, name)
		require.Empty(t, mfs[name].GetMetric()[0].GetLabel(), name)
	}
}
