package pipeline

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/stretchr/testify/require"
)

// TestBackfillRemoteRead warms a new series from an upstream served by
// Prometheus's own remote-read handler, when omen's TSDB has no history.
func TestBackfillRemoteRead(t *testing.T) {
	const n = 150
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	vs := seasonal(n+1, 5)

	up := openDB(t, t.TempDir())
	defer up.Close()
	// A series with one label more matches the same equality matchers;
	// its history is not this series' and must not be replayed.
	other := labels.NewBuilder(ls).Set("instance", "b").Labels()
	a := up.AppenderV2(context.Background())
	for i, v := range vs[:n] {
		_, err := a.Append(0, ls, 0, t0.UnixMilli()+int64(i)*stepMs, v, nil, nil, storage.AOptions{})
		require.NoError(t, err)
		_, err = a.Append(0, other, 0, t0.UnixMilli()+int64(i)*stepMs, 1000+v, nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, a.Commit())
	srv := httptest.NewServer(remote.NewReadHandler(nil, nil, up, func() promconfig.Config { return promconfig.Config{} }, 0, 1, 1<<20))
	defer srv.Close()

	tests := []struct {
		name      string
		maxPoints int
		warmed    float64
	}{
		{"all history", 1000, n},
		{"budget", 100, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) {
				o.BackfillRemoteReadURL = srv.URL
				o.BackfillMaxPoints = tc.maxPoints
			})
			e.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e.sync()
			require.Equal(t, tc.warmed, testutil.ToFloat64(e.p.m.warmed))
			got := e.p.Anomalies(nil)
			require.Len(t, got, 1)
			require.True(t, got[0].Ready, "warm from the upstream's history")
		})
	}
}

// TestRemoteWriteForwarding checks that the outputs reach a remote-write
// receiver through the prometheus module's write client.
func TestRemoteWriteForwarding(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		raw, err := snappy.Decode(nil, b)
		require.NoError(t, err)
		var req prompb.WriteRequest
		require.NoError(t, req.Unmarshal(raw))
		mu.Lock()
		for _, ts := range req.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "__name__" {
					got[l.Value] += len(ts.Samples)
				}
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	e := newEnv(t, "", nil, func(o *Options) { o.RemoteWriteURLs = []string{srv.URL} })
	e.feed(labels.FromStrings("__name__", "temperature"), model.MetricTypeGauge, seasonal(100, 4))
	e.stop() // flushes the forwarder's last batch
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 100, got["anomaly_score"])
	require.Equal(t, 100-64, got["yhat"])
	require.Zero(t, got["temperature"], "inputs are not forwarded")
}

// TestRemoteWriteForwardingShutdownAndCredentials: a batch being retried
// when shutdown begins still gets its last tries (it was cut off with
// "context canceled" and lost), and a password in the URL is used but never
// shown in omen's metrics.
func TestRemoteWriteForwardingShutdownAndCredentials(t *testing.T) {
	var mu sync.Mutex
	got, requests := map[string]int{}, 0
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		mu.Lock()
		defer mu.Unlock()
		requests++
		user, pass, _ := r.BasicAuth()
		auth = append(auth, user+":"+pass)
		if requests <= 3 { // a slow, failing upstream at first
			time.Sleep(300 * time.Millisecond)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		raw, err := snappy.Decode(nil, b)
		require.NoError(t, err)
		var req prompb.WriteRequest
		require.NoError(t, req.Unmarshal(raw))
		for _, ts := range req.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "__name__" {
					got[l.Value] += len(ts.Samples)
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://alice:s3cret@", 1)

	e := newEnv(t, "", nil, func(o *Options) { o.RemoteWriteURLs = []string{u} })
	const series, n = 25, 100 // 2500 scores: the first batch of 2000 is sent while feeding
	for i := range series {
		e.feed(labels.FromStrings("__name__", "temperature", "i", strconv.Itoa(i)), model.MetricTypeGauge, seasonal(n, uint64(i)))
	}
	e.sync()
	e.stop() // while the first batch is still being retried
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, series*n, got["anomaly_score"], "every score delivered")
	require.Contains(t, auth, "alice:s3cret")

	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	seen := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotContains(t, l.GetValue(), "s3cret", "%s", mf.GetName())
				if l.GetName() == "url" && strings.Contains(l.GetValue(), "alice:xxxxx@") {
					seen = true
				}
			}
		}
	}
	require.True(t, seen, "the endpoint is named with its password masked")
}
