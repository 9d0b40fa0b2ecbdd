package forward

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// BenchmarkForwardSeries logs one output sample for each of 100 000 series
// per iteration (the cost per sample), against a receiver that takes
// everything, and reports the memory forwarding holds per output series
// (the log's series and the queue's copy of their labels) for sizing.
func BenchmarkForwardSeries(b *testing.B) {
	const series = 100_000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	ls := make([]labels.Labels, series)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "anomaly_score", "for", "http_requests_total", "job", "api",
			"instance", fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250), "namespace", "shop", "code", "200")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := New(nil, prometheus.NewRegistry(), b.TempDir(), []string{srv.URL}, time.Minute)
	require.NoError(b, err)
	require.NoError(b, f.ApplyConfig(nil))
	defer f.Close()
	t0 := time.Now().Add(time.Second).UnixMilli()
	b.ResetTimer()
	for n := range b.N {
		app := f.AppenderV2(context.Background())
		for i := range ls {
			if _, err := app.Append(0, ls[i], 0, t0+int64(n)*1000, float64(i), nil, nil, storage.AOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Let the queue read the log (and so intern the labels) before measuring.
	time.Sleep(2 * time.Second)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/sample")
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/series, "heap-B/series")
}
