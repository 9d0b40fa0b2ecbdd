package pipeline

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/detect"
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
	// An upstream with external labels adds them to every series it
	// returns; the input came without them (the shipped remote_write
	// drops them), and no history was found.
	ext := httptest.NewServer(remote.NewReadHandler(nil, nil, up, func() promconfig.Config {
		return promconfig.Config{GlobalConfig: promconfig.GlobalConfig{ExternalLabels: labels.FromStrings("prometheus", "main")}}
	}, 0, 1, 1<<20))
	defer ext.Close()

	tests := []struct {
		name      string
		url       string
		maxPoints int
		warmed    float64
	}{
		{"all history", srv.URL, 1000, n},
		{"budget", srv.URL, 100, 100},
		{"external labels", ext.URL, 1000, n},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) {
				o.BackfillRemoteReadURL = tc.url
				o.BackfillMaxPoints = tc.maxPoints
			})
			e.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e.sync()
			require.Equal(t, tc.warmed, testutil.ToFloat64(e.p.m.warmed))
			got := e.p.Anomalies(nil)
			require.Len(t, got, 1)
			require.True(t, got[0].Ready, "warm from the upstream's history")
			// From ls's history, not the other series' (1000 higher).
			require.InDelta(t, 100, float64(got[0].Yhat), 40)
		})
	}
}

// fakeForward records what the pipeline forwards, by series.
type fakeForward struct {
	mu        sync.Mutex
	committed map[string]int
	rolled    int
}

func (f *fakeForward) AppenderV2(context.Context) storage.AppenderV2 {
	return &fakeForwardApp{f: f, pending: map[string]int{}}
}

type fakeForwardApp struct {
	storage.AppenderV2 // unused methods panic
	f                  *fakeForward
	pending            map[string]int
}

func (a *fakeForwardApp) Append(_ storage.SeriesRef, ls labels.Labels, _, _ int64, _ float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AOptions) (storage.SeriesRef, error) {
	a.pending[ls.String()]++
	return 0, nil
}

func (a *fakeForwardApp) Commit() error {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	for k, n := range a.pending {
		a.f.committed[k] += n
	}
	return nil
}

func (a *fakeForwardApp) Rollback() error {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	a.f.rolled++
	return nil
}

// TestForwardsWhatIsStored: the forwarder gets exactly the outputs the
// TSDB stored, with their labels (the forwarding log has series of its
// own), and never an input. The forwarding itself (a log tailed by
// Prometheus's queues) is tested in package forward.
func TestForwardsWhatIsStored(t *testing.T) {
	fw := &fakeForward{committed: map[string]int{}}
	e := newEnv(t, "", nil, func(o *Options) {
		o.Forward = fw
		o.OutputInterval = 5 * time.Minute // not every result is stored
	})
	e.feed(labels.FromStrings("__name__", "temperature", "job", "a"), model.MetricTypeGauge, seasonal(300, 4))
	stored := map[string]int{}
	for _, fam := range AllFamilies {
		for k, vs := range query(t, e.db, eq("__name__", fam)) {
			stored[k] = len(vs)
		}
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	require.NotEmpty(t, stored)
	require.Equal(t, stored, fw.committed)
	require.Less(t, stored[`{__name__="anomaly_score", for="temperature", job="a"}`], 300, "the output interval applies")
}

// TestBackfillLocalAndRemote: a warm start that takes the older history
// from the upstream and the newer from omen's TSDB replays them in time
// order, so the models end as a detector fed the whole history.
func TestBackfillLocalAndRemote(t *testing.T) {
	const n, split = 150, 100
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	vs := seasonal(n+1, 9)
	at := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }

	up := openDB(t, t.TempDir())
	defer up.Close()
	a := up.AppenderV2(context.Background())
	for i := range split {
		_, err := a.Append(0, ls, 0, at(i), vs[i], nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, a.Commit())
	srv := httptest.NewServer(remote.NewReadHandler(nil, nil, up, func() promconfig.Config { return promconfig.Config{} }, 0, 1, 1<<20))
	defer srv.Close()

	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL })
	// The newer part is in omen's TSDB already (written before the series
	// was scored, e.g. history remote-written by hand): straight into the
	// TSDB, past the scorers.
	a = e.db.AppenderV2(context.Background())
	for i := split; i < n; i++ {
		_, err := a.Append(0, ls, 0, at(i), vs[i], nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, a.Commit())
	e.push(at(n), model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
	e.sync()
	require.Equal(t, float64(n), testutil.ToFloat64(e.p.m.warmed))

	ref, err := detect.New(detectOptions(config0().Defaults))
	require.NoError(t, err)
	for i, v := range vs {
		ref.Update(at(i), v)
	}
	requireSameState(t, ref, e, "older history from upstream first, then the local")
}

// TestBackfillUpstreamDownBacksOff: after a failed remote read the warm
// starts skip it for a while, so an upstream that is down or hangs costs
// one read per backoff, not one per new series on its worker (each up to
// the read's timeout while the worker's other series wait); failures and
// skips are counted, and the error logged has the URL's password masked.
func TestBackfillUpstreamDownBacksOff(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	u.User = url.UserPassword("alice", "s3cr3t")
	u.Path = "/api/v1/read"
	e := newEnv(t, "", nil, func(o *Options) {
		o.BackfillRemoteReadURL = u.String()
		o.Workers = 1
	})
	batch := func(names ...string) {
		var lss []labels.Labels
		var vs []float64
		for _, n := range names {
			lss, vs = append(lss, labels.FromStrings("__name__", n)), append(vs, 1)
		}
		e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss, vs)
		e.sync()
	}
	batch("a", "b", "c", "d")
	require.Equal(t, int32(1), hits.Load(), "one read, then the backoff")
	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.backfillFailed))
	require.Equal(t, 3.0, testutil.ToFloat64(e.p.m.backfillSkipped))
	require.Len(t, e.p.Anomalies(nil), 4, "every series scored all the same")

	e.clock.set(e.clock.Now().Add(backfillBackoffFirst + time.Second))
	batch("e", "f")
	require.Equal(t, int32(2), hits.Load(), "tried again after the backoff")
	require.Equal(t, 2.0, testutil.ToFloat64(e.p.m.backfillFailed))
	require.Equal(t, 4.0, testutil.ToFloat64(e.p.m.backfillSkipped))
	e.clock.set(e.clock.Now().Add(backfillBackoffFirst + time.Second))
	batch("g")
	require.Equal(t, int32(2), hits.Load(), "the second backoff is twice the first")

	// What the log says: the read client's error quotes the URL.
	_, err = e.p.bf.rr.Read(context.Background(), &prompb.Query{}, false)
	require.Error(t, err)
	require.Contains(t, err.Error(), "s3cr3t", "the client's error quotes the password")
	msg := redact(err, e.p.bf.url)
	require.NotContains(t, msg, "s3cr3t")
	require.Contains(t, msg, "alice:xxxxx@")
}

// TestBackfillURLChecked: a backfill URL that is not absolute http(s) is
// refused, and the error does not repeat it (without its scheme, a URL
// parses with its password in plain sight).
func TestBackfillURLChecked(t *testing.T) {
	for _, u := range []string{"alice:s3cr3t@prom:9090/api/v1/read", "ftp://alice:s3cr3t@prom/api/v1/read", "/api/v1/read", "http://"} {
		_, err := newBackfill(u)
		require.Error(t, err, u)
		require.NotContains(t, err.Error(), "s3cr3t")
	}
	_, err := newBackfill("https://alice:s3cr3t@prom:9090/api/v1/read")
	require.NoError(t, err)
}
