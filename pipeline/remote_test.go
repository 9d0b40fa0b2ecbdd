package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
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

// newBackfill is newBackfillFrom of the remote_read entry u stands for.
func newBackfill(u string, maxQueued int) (*backfill, error) {
	c, err := URLReadConfig(u)
	if err != nil {
		return nil, err
	}
	return newBackfillFrom(c, maxQueued)
}

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
	humidity := labels.FromStrings("__name__", "humidity", "job", "a")
	a := up.AppenderV2(context.Background())
	for i, v := range vs[:n] {
		for _, x := range []struct {
			ls labels.Labels
			v  float64
		}{{ls, v}, {other, 1000 + v}, {humidity, v}} {
			_, err := a.Append(0, x.ls, 0, t0.UnixMilli()+int64(i)*stepMs, x.v, nil, nil, storage.AOptions{})
			require.NoError(t, err)
		}
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
				o.Workers = 1 // one request for both
			})
			// With other series, as a deployment's first request has
			// many: the labels that series of two metric names have
			// beyond their requests' are the external ones.
			e.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls, other, humidity}, []float64{vs[n], 1000 + vs[n], vs[n]})
			e.backfilled(t)
			require.Equal(t, 3*tc.warmed, testutil.ToFloat64(e.p.m.warmed))
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "temperature"), eq("instance", "")}})
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

	srv := httptest.NewServer(upstream(t, []labels.Labels{ls}, vs[:split], at))
	defer srv.Close()

	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL })
	// The newer part is in omen's TSDB already (written before the series
	// was scored, e.g. history remote-written by hand): straight into the
	// TSDB, past the scorers.
	a := e.db.AppenderV2(context.Background())
	for i := split; i < n; i++ {
		_, err := a.Append(0, ls, 0, at(i), vs[i], nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, a.Commit())
	e.push(at(n), model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
	e.backfilled(t)
	require.Equal(t, float64(n), testutil.ToFloat64(e.p.m.warmed))

	ref, err := detect.New(detectOptions(config0().Defaults))
	require.NoError(t, err)
	for i, v := range vs {
		ref.Update(at(i), v)
	}
	requireSameState(t, ref, e, "older history from upstream first, then the local")
}

// requireFedInOrder checks that the series pick selects has the detector
// state of one fed vs, the i-th at atStep(i), in order.
func requireFedInOrder(t *testing.T, e *env, pick func(*series) bool, vs []float64, msg string) {
	t.Helper()
	ref, err := detect.New(detectOptions(config0().Defaults))
	require.NoError(t, err)
	for i, v := range vs {
		ref.Update(atStep(i), v)
	}
	want, err := ref.MarshalBinary()
	require.NoError(t, err)
	var got []byte
	for _, w := range e.p.workers {
		w.view(func(s *series) {
			if pick(s) {
				got, err = s.det.MarshalBinary()
			}
		})
	}
	require.NoError(t, err)
	require.Equal(t, want, got, msg)
}

// refusing serves h, counting requests in hits, but answers 400 to a
// request with a matcher on a value refuse refuses, as an upstream does
// to a query over its limits.
func refusing(t *testing.T, h http.Handler, hits *atomic.Int32, refuse func(value string) bool) http.Handler {
	return intercepting(t, h, hits, refuse, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "query over the limits", http.StatusBadRequest)
	})
}

// stalling is refusing that answers such a request never: it waits until
// the client gives up, as an upstream choking on a series does.
func stalling(t *testing.T, h http.Handler, hits *atomic.Int32, stall func(value string) bool) http.Handler {
	return intercepting(t, h, hits, stall, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
}

// intercepting serves h, counting requests in hits, but has act answer a
// request with a matcher on a value match matches.
func intercepting(t *testing.T, h http.Handler, hits *atomic.Int32, match func(value string) bool, act http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		r.Body = io.NopCloser(bytes.NewReader(body))
		req, err := remote.DecodeReadRequest(r)
		require.NoError(t, err)
		for _, q := range req.Queries {
			for _, m := range q.Matchers {
				if match(m.Value) {
					act(w, r)
					return
				}
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}

// named returns series of the given metric names and no other label.
func named(names ...string) []labels.Labels {
	lss := make([]labels.Labels, len(names))
	for i, n := range names {
		lss[i] = labels.FromStrings("__name__", n)
	}
	return lss
}

// atStep is the time of the i-th sample of the tests' series.
func atStep(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }

// upstream is Prometheus's remote-read handler over a TSDB that holds
// vs[i] at at(i) for each series of lss.
func upstream(t *testing.T, lss []labels.Labels, vs []float64, at func(int) int64) http.Handler {
	return upstreamWith(t, labels.EmptyLabels(), lss, vs, at)
}

// upstreamWith is upstream adding the external labels ext to what it
// answers, as a Prometheus server with external labels does.
func upstreamWith(t *testing.T, ext labels.Labels, lss []labels.Labels, vs []float64, at func(int) int64) http.Handler {
	up := openDB(t, t.TempDir())
	t.Cleanup(func() { _ = up.Close() })
	a := up.AppenderV2(context.Background())
	for _, ls := range lss {
		for i, v := range vs {
			_, err := a.Append(0, ls, 0, at(i), v, nil, nil, storage.AOptions{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, a.Commit())
	return remote.NewReadHandler(nil, nil, up, func() promconfig.Config {
		return promconfig.Config{GlobalConfig: promconfig.GlobalConfig{ExternalLabels: ext}}
	}, 0, 1, 1<<20)
}

// TestBackfillSlowUpstreamScoresMeanwhile: the remote reads run off the
// scorer workers. While the upstream takes its time, new series and the
// others on their workers are scored from local history (a read used to
// hold its worker's every series for up to its timeout, and 50 ms reads
// made a burst of 10 000 new series take minutes); when the history
// comes, the models are remade from it and what came since.
func TestBackfillSlowUpstreamScoresMeanwhile(t *testing.T) {
	const n = 150
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	vs := seasonal(n+3, 5)
	at := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	h := upstream(t, []labels.Labels{ls}, vs[:n], at)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	other := labels.FromStrings("__name__", "load", "job", "a")
	for i := n; i < n+3; i++ {
		e.push(at(i), model.MetricTypeGauge, []labels.Labels{ls, other}, []float64{vs[i], 1})
		e.sync() // returns: the worker is not waiting for the upstream
	}
	got := e.p.Anomalies(nil)
	require.Len(t, got, 2, "both scored while the read waits")
	for _, a := range got {
		require.False(t, a.Ready, "no history yet")
	}
	require.Equal(t, 2.0, testutil.ToFloat64(e.p.m.backfillPending))

	close(release)
	e.backfilled(t)
	got = e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "temperature")}})
	require.Len(t, got, 1)
	require.True(t, got[0].Ready, "warm from the upstream's history")
	requireFedInOrder(t, e, func(s *series) bool { return s.name == "temperature" }, vs, "the upstream's history, then the samples scored while it was read")
}

// TestBackfillSubsetInOneBatch: one request's labels are a subset of
// another's ({__name__="x"} and x{job="a"}), so the latter's series comes
// back in both queries of the batch, over both ranges. Each request takes
// its own range only: x{job="a"}, whose newer history is local, replayed
// the upstream's copy of that too, out of order, and its detector ended
// off the in-order one.
func TestBackfillSubsetInOneBatch(t *testing.T) {
	const n, split = 300, 200
	a := labels.FromStrings("__name__", "x")
	b := labels.FromStrings("__name__", "x", "job", "a")
	vs := seasonal(n+1, 9)
	h := upstream(t, []labels.Labels{a, b}, vs[:n], atStep)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			http.Error(w, "down", http.StatusInternalServerError) // so both wait and go in one batch
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	ap := e.db.AppenderV2(context.Background())
	for i := split; i < n; i++ {
		_, err := ap.Append(0, b, 0, atStep(i), vs[i], nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, ap.Commit())
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(atStep(n), model.MetricTypeGauge, []labels.Labels{a, b}, []float64{vs[n], vs[n]})
	e.sync()
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.backfillFailed) >= 1 }, 30*time.Second, 10*time.Millisecond)
	time.Sleep(3 * backfillPoll)
	e.clock.set(e.clock.Now().Add(time.Minute))
	e.backfilled(t)
	require.Equal(t, int32(2), hits.Load(), "one batch for both")
	require.Equal(t, float64(n+split+(n-split)), testutil.ToFloat64(e.p.m.warmed), "a's history, b's older upstream and newer local")
	requireFedInOrder(t, e, func(s *series) bool { return labels.Equal(s.in, b) }, vs, "b's history in order, once")
}

// TestBackfillPendingSurvivesRestart: a series still waiting for its
// history at a snapshot is saved without its local-only models, so after a
// restart it warms again and asks again; it used to be restored as warm
// and never read for.
func TestBackfillPendingSurvivesRestart(t *testing.T) {
	const n = 150
	ls := labels.FromStrings("__name__", "temperature")
	vs := seasonal(n+2, 5)
	h := upstream(t, []labels.Labels{ls}, vs[:n], atStep)
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.SnapshotPath = path }
	dir := t.TempDir()
	e := newEnv(t, dir, nil, opts)
	e.push(atStep(n), model.MetricTypeGauge, []labels.Labels{ls}, vs[n:n+1])
	e.sync()
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.backfillFailed) >= 1 }, 30*time.Second, 10*time.Millisecond)
	e.stop()
	require.NoError(t, e.db.Close())
	down.Store(false)
	e2 := newEnv(t, dir, nil, opts)
	e2.push(atStep(n+1), model.MetricTypeGauge, []labels.Labels{ls}, vs[n+1:])
	e2.backfilled(t)
	got := e2.p.Anomalies(nil)
	require.Len(t, got, 1)
	require.True(t, got[0].Ready, "warm from the upstream after the restart")
	require.Equal(t, float64(n+1), testutil.ToFloat64(e2.p.m.warmed), "the local sample, then the upstream's history")
}

// TestBackfillDeadRequestsDropped: the requests of series dropped while
// they wait (deleted from the head here) are not read for, and leave the
// pending count; they held their series in memory and the queue's room.
func TestBackfillDeadRequestsDropped(t *testing.T) {
	const n = 150
	lss := named("a", "b", "c")
	h := upstream(t, lss, seasonal(n, 3), atStep)
	var down atomic.Bool
	down.Store(true)
	var queries atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		r.Body = io.NopCloser(bytes.NewReader(body))
		req, err := remote.DecodeReadRequest(r)
		require.NoError(t, err)
		queries.Add(int32(len(req.Queries)))
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss[:2], []float64{1, 1})
	e.sync()
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.backfillFailed) >= 1 }, 30*time.Second, 10*time.Millisecond)
	time.Sleep(3 * backfillPoll)
	var refs []storage.SeriesRef
	for _, w := range e.p.workers {
		w.view(func(s *series) { refs = append(refs, s.ref) })
	}
	e.p.SeriesDeleted(refs)
	e.sync()
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss[2:], []float64{1})
	e.sync()
	down.Store(false)
	e.clock.set(e.clock.Now().Add(2 * backfillBackoffFirst))
	e.backfilled(t)
	require.Equal(t, int32(1), queries.Load(), "c's alone")
	require.Equal(t, float64(n), testutil.ToFloat64(e.p.m.warmed))
}

// TestBackfillNotASiblingsHistory: a series new upstream too has no
// history there, and its equality matchers select only series with more
// labels: errors_total{code="500"} those with a handler as well. Their
// history is not its own, unless what they have more is the upstream's
// external labels, which every series of an answer has.
func TestBackfillNotASiblingsHistory(t *testing.T) {
	const n = 100
	sibling := labels.FromStrings("__name__", "errors_total", "code", "500", "handler", "/login")
	known := labels.FromStrings("__name__", "requests_total", "code", "200")
	known2 := labels.FromStrings("__name__", "latency_seconds", "code", "200")
	fresh := labels.FromStrings("__name__", "errors_total", "code", "500")
	for _, tc := range []struct {
		name   string
		ext    labels.Labels
		warmed float64 // of known's and fresh's
	}{
		{"no external labels", labels.EmptyLabels(), 2 * n},
		{"external labels", labels.FromStrings("cluster", "eu1"), 2 * n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(upstreamWith(t, tc.ext, []labels.Labels{sibling, known, known2}, seasonal(n, 3), atStep))
			defer srv.Close()
			e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
			e.clock.set(t0.Add(n * stepMs * time.Millisecond))
			e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, []labels.Labels{known, known2, fresh}, []float64{1, 1, 1})
			e.backfilled(t)
			require.Equal(t, tc.warmed, testutil.ToFloat64(e.p.m.warmed), "the known series' history only")
			for _, a := range e.p.Anomalies(nil) {
				require.Equal(t, a.Labels["for"] != "errors_total", a.Ready, "%v", a.Labels)
			}
		})
	}
}

// TestBackfillExternalSetsSurviveRestart: the external label sets learnt
// from the upstream's answers are saved in the snapshot. After a restart
// only new series ask for history, one at a time; a lone new series with
// the upstream's external labels warmed from local history alone until its
// set came again on two metric names (and a sibling's set seen on two
// families could be taken first). A snapshot of another upstream's sets is
// not taken.
func TestBackfillExternalSetsSurviveRestart(t *testing.T) {
	const n = 100
	known := labels.FromStrings("__name__", "requests_total", "code", "200")
	known2 := labels.FromStrings("__name__", "latency_seconds", "code", "200")
	lone := labels.FromStrings("__name__", "temperature", "room", "a")
	srv := httptest.NewServer(upstreamWith(t, labels.FromStrings("cluster", "eu1"), []labels.Labels{known, known2, lone}, seasonal(n, 3), atStep))
	defer srv.Close()
	dir, path, opts := runBeforeRestart(t, srv.URL, n, known, known2)

	other, err := newBackfill("http://elsewhere:9090/api/v1/read", 10)
	require.NoError(t, err)
	require.NoError(t, other.loadExtSets(filepath.Join(filepath.Dir(path), ExtSetsFile), t0))
	require.Empty(t, other.ext, "another upstream's sets")

	e2 := newEnv(t, dir, nil, opts)
	e2.clock.set(t0.Add((n + 1) * stepMs * time.Millisecond))
	e2.push(e2.clock.Now().UnixMilli(), model.MetricTypeGauge, []labels.Labels{lone}, []float64{1})
	e2.backfilled(t)
	require.Equal(t, float64(n), testutil.ToFloat64(e2.p.m.warmed), "the lone new series' upstream history")
	got := e2.p.Anomalies(nil)
	require.Len(t, got, 1)
	require.True(t, got[0].Ready)
}

// TestBackfillExternalLabelSets: which upstream series with labels beyond
// a request's are the request's own, the beyond being external labels.
// Each set of extra label names is learnt apart, known once on two metric
// names, and not taken when a smaller known set is part of it (a
// sibling's: {cluster, handler} where the upstream adds {cluster}) or when
// exact matches show the upstream adds nothing. A single learnt
// intersection narrowed, or emptied, for good and then refused every
// series' own history; learnt sets alone took siblings'.
func TestBackfillExternalLabelSets(t *testing.T) {
	result := func(name string, extra ...string) bfResult {
		ls := labels.FromStrings("__name__", name, "job", "j")
		from := labels.NewBuilder(ls)
		for i := 0; i+1 < len(extra); i += 2 {
			from.Set(extra[i], extra[i+1])
		}
		return bfResult{bfReq: bfReq{ls: ls}, older: ring{t: []int64{1}, v: []float64{1}, k: 1}, from: from.Labels()}
	}
	type answer struct {
		rs   []bfResult
		kept []bool
	}
	for _, tc := range []struct {
		name    string
		answers []answer
	}{
		{"one source", []answer{
			{[]bfResult{result("a", "cluster", "eu")}, []bool{false}}, // one metric name: not yet known
			{[]bfResult{result("b", "cluster", "eu"), result("c", "cluster", "eu")}, []bool{true, true}},
			{[]bfResult{result("errors_total", "cluster", "eu", "handler", "/login")}, []bool{false}},
			{[]bfResult{result("requests_total", "cluster", "eu", "handler", "/login")}, []bool{false}}, // a sibling's, known or not
			{[]bfResult{result("a", "cluster", "eu")}, []bool{true}},
		}},
		{"HA pair", []answer{
			{[]bfResult{result("a", "cluster", "eu", "replica", "1"), result("b", "cluster", "eu", "replica", "2")}, []bool{true, true}},
		}},
		{"two sources", []answer{
			{[]bfResult{result("a", "cluster", "eu"), result("b", "region", "us")}, []bool{false, false}},
			{[]bfResult{result("c", "cluster", "eu"), result("d", "region", "us")}, []bool{true, true}},
		}},
		{"one histogram's siblings", []answer{
			{[]bfResult{result("req_count", "cluster", "eu", "handler", "/login"), result("req_sum", "cluster", "eu", "handler", "/login")}, []bool{false, false}},
		}},
		{"no external labels", []answer{
			{[]bfResult{result("a"), result("b", "handler", "/login"), result("c", "handler", "/login")}, []bool{true, false, false}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := newBackfill("http://upstream/api/v1/read", 10)
			require.NoError(t, err)
			var late []lateSet
			for i, a := range tc.answers {
				b.keepOwn(a.rs, t0)
				kept := make([]bool, len(a.rs))
				for j, r := range a.rs {
					kept[j] = r.older.len() > 0
				}
				require.Equal(t, a.kept, kept, "answer %d", i)
				late = append(late, b.lateSets()...)
			}
			// Histories dropped before their set was learnt as external
			// are said once it is; a sibling's set never is.
			// Their requests are kept, to be read again.
			again := func(name string) []bfReq {
				return []bfReq{{ls: labels.FromStrings("__name__", name, "job", "j"), again: true}}
			}
			switch tc.name {
			case "one source":
				require.Equal(t, []lateSet{{names: "cluster", n: 1, example: `{__name__="a", job="j"}`, reqs: again("a")}}, late)
			case "two sources":
				require.ElementsMatch(t, []lateSet{{names: "cluster", n: 1, example: `{__name__="a", job="j"}`, reqs: again("a")}, {names: "region", n: 1, example: `{__name__="b", job="j"}`, reqs: again("b")}}, late)
			default:
				require.Empty(t, late)
			}
		})
	}

	// Readers learn side by side; past the cap, sets not yet known make
	// room.
	b, err := newBackfill("http://upstream/api/v1/read", 10)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				b.keepOwn([]bfResult{result(fmt.Sprint("m", i, j), "cluster", "eu", fmt.Sprint("x", i, j), "1")}, t0)
			}
		}()
	}
	wg.Wait()
	rs := []bfResult{result("late1", "zone", "a"), result("late2", "zone", "a")}
	b.keepOwn(rs, t0)
	require.Positive(t, rs[0].older.len(), "a set new after the cap is learnt")
}

// queueAlone returns a backfill queue of at most max requests to test
// alone, and a maker of requests of one live series, told apart by n.
func queueAlone(t *testing.T, max int) (*backfill, func(n, limit int) bfReq) {
	b, err := newBackfill("http://upstream/api/v1/read", max)
	require.NoError(t, err)
	s := &series{}
	w := &worker{series: map[storage.SeriesRef]*series{0: s}}
	return b, func(n, limit int) bfReq { return bfReq{w: w, s: s, n: n, limit: limit} }
}

// reqNs returns the requests' n.
func reqNs(rs []bfReq) []int {
	out := []int{}
	for _, r := range rs {
		out = append(out, r.n)
	}
	return out
}

func atT0() time.Time { return t0 }

// TestBackfillQueueOrder: requests are taken oldest first, a failed batch
// goes back to the front, and the queue's storage is reused, not copied
// on every take (it was, for 100 000 queued requests).
func TestBackfillQueueOrder(t *testing.T) {
	b, req := queueAlone(t, 5000)
	for i := range 3000 {
		require.Equal(t, 1, b.request(req(i, 0)))
	}
	var got []int
	first := b.take(context.Background(), atT0, 64)
	b.retry(first)
	for {
		b.mu.Lock()
		left := len(b.queue) - b.head
		require.LessOrEqual(t, b.head, max(1024, len(b.queue)/2+64), "taken requests are dropped from the front now and then")
		b.mu.Unlock()
		if left == 0 {
			break
		}
		rs := b.take(context.Background(), atT0, 64)
		if len(got) == 128 {
			b.retry(rs) // a failure in the middle
			rs = b.take(context.Background(), atT0, 64)
		}
		got = append(got, reqNs(rs)...)
	}
	want := make([]int, 3000)
	for i := range want {
		want[i] = i
	}
	require.Equal(t, want, got)
	require.Equal(t, 5000, b.request(make([]bfReq, 6000)...), "bounded")
	require.Zero(t, b.request(bfReq{}))
}

// TestBackfillLimitsAnywhere: every request taken bounds its batch, not
// only the first: a request that timed out or was refused alone stays
// alone when a retried batch goes before it (it was batched with that
// one, and they timed out together), and halving keeps a smaller limit.
func TestBackfillLimitsAnywhere(t *testing.T) {
	b, req := queueAlone(t, 100)
	b.request(req(9, 0), req(10, 0))
	b.retry([]bfReq{req(0, 1)})                       // stuck, alone
	b.retry([]bfReq{req(1, 0), req(2, 4), req(3, 0)}) // a batch failed meanwhile
	for _, want := range [][]int{{1, 2, 3}, {0}, {9, 10}} {
		require.Equal(t, want, reqNs(b.take(context.Background(), atT0, 64)))
	}
	b.request(req(1, 0), req(2, 2), req(3, 0))
	require.Equal(t, []int{1, 2}, reqNs(b.take(context.Background(), atT0, 64)), "a limit of 2 at the second place")

	rs := []bfReq{req(0, 1), req(1, 0), req(2, 8), req(3, 0)}
	halve(rs)
	require.Equal(t, []int{1, 2, 2, 2}, []int{rs[0].limit, rs[1].limit, rs[2].limit, rs[3].limit})
}

// TestBackfillRefusedSeriesIsolated: a request the upstream refuses (a 400:
// a limit, a series it cannot read) is not an outage. The batch is split
// until the refused series is alone, which is left to local history; the
// others get theirs, and no request holds the queue up for good. An
// upstream that refuses everything (a wrong path) is treated as down: the
// reads back off, and no series is given up on (they were, one by one,
// and none was read once the URL was fixed).
func TestBackfillRefusedSeriesIsolated(t *testing.T) {
	const n = 100
	lss := named("a", "b", "c", "d", "e", "f", "poison")
	h := upstream(t, lss, seasonal(n, 3), atStep)
	var hits atomic.Int32
	var refuseAll atomic.Bool
	srv := httptest.NewServer(refusing(t, h, &hits, func(v string) bool { return refuseAll.Load() || v == "poison" }))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss, []float64{1, 1, 1, 1, 1, 1, 1})
	e.backfilled(t)
	require.Equal(t, float64(6*n), testutil.ToFloat64(e.p.m.warmed), "all but the refused one")
	for _, a := range e.p.Anomalies(nil) {
		require.Equal(t, a.Labels["for"] != "poison", a.Ready, "%v", a.Labels)
	}
	require.LessOrEqual(t, hits.Load(), int32(2*len(lss)), "splitting, not a storm")

	// An upstream that refuses everything from the start (a wrong path):
	// the reads back off, and no series is given up on.
	refuseAll.Store(true)
	hits.Store(0)
	e = newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	var more []labels.Labels
	var ones []float64
	for i := range 3 * backfillMaxRefusals {
		more, ones = append(more, labels.FromStrings("__name__", fmt.Sprint("m", i))), append(ones, 1)
	}
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, more, ones)
	e.sync()
	time.Sleep(10 * backfillPoll)
	// Split down to single series, each tried alone, then paused.
	burst := hits.Load()
	require.LessOrEqual(t, burst, int32(4*len(more)))
	time.Sleep(5 * backfillPoll)
	require.Equal(t, burst, hits.Load(), "paused")
	require.Equal(t, float64(3*backfillMaxRefusals), testutil.ToFloat64(e.p.m.backfillPending))
	// Backoffs pass, a few requests each, until each series has been
	// refused alone, again and again (bisecting 24 takes ~47 requests).
	require.Eventually(t, func() bool {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax))
		return hits.Load() >= 80
	}, 30*time.Second, 2*backfillPoll)
	require.Equal(t, float64(3*backfillMaxRefusals), testutil.ToFloat64(e.p.m.backfillPending), "none given up")
	// The upstream fixed: they are all read.
	refuseAll.Store(false)
	require.Eventually(t, func() bool {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax))
		return testutil.ToFloat64(e.p.m.backfillPending) == 0
	}, 30*time.Second, 2*backfillPoll)
}

// TestBackfillLoneRefusedGivenUp: a series the upstream refuses alone,
// with nothing else queued, is given up on after three refusals (each
// pausing the reads) if the upstream ever answered; it was requeued and
// retried at once, its refusals pausing every read for minutes, and a good
// series batched with it waited for good.
func TestBackfillLoneRefusedGivenUp(t *testing.T) {
	const n = 100
	lss := named("good", "poison", "later")
	var hits atomic.Int32
	srv := httptest.NewServer(refusing(t, upstream(t, lss, seasonal(n, 3), atStep), &hits, func(v string) bool { return v == "poison" }))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss[:1], []float64{1})
	e.backfilled(t)
	e.push(e.clock.Now().UnixMilli()+stepMs, model.MetricTypeGauge, lss[1:2], []float64{1})
	e.sync()
	require.Eventually(t, func() bool {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax))
		return testutil.ToFloat64(e.p.m.backfillPending) == 0
	}, 30*time.Second, 2*backfillPoll)
	require.LessOrEqual(t, hits.Load(), int32(1+3+backfillReaders), "three refusals alone")
	e.push(e.clock.Now().UnixMilli()+2*stepMs, model.MetricTypeGauge, lss[2:], []float64{1})
	e.backfilled(t)
	require.Equal(t, float64(2*n), testutil.ToFloat64(e.p.m.warmed), "good and later")
	e.requireSettled(t)
}

// TestBackfillLoneTimeoutGivenUp: a series whose read always times out
// (the upstream chokes on it) was retried after every backoff for good,
// each timeout pausing every read. Once it has timed out alone three times
// while the upstream answered others, it warms from local history alone.
// It stays alone once it timed out alone: the good series queued during
// the backoffs are not batched with it, to time out with it. Timeouts
// while nothing else is answered (an outage) do not count.
func TestBackfillLoneTimeoutGivenUp(t *testing.T) {
	const n, goods = 100, 6
	lss := named("stuck")
	for i := range goods {
		lss = append(lss, labels.FromStrings("__name__", fmt.Sprint("good", i)))
	}
	var hits, dragged atomic.Int32
	var down atomic.Bool
	h := stalling(t, upstream(t, lss, seasonal(n, 3), atStep), &hits, func(v string) bool { return down.Load() || v == "stuck" })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		r.Body = io.NopCloser(bytes.NewReader(body))
		req, err := remote.DecodeReadRequest(r)
		require.NoError(t, err)
		if len(req.Queries) > 1 && strings.Contains(req.String(), `"stuck"`) {
			dragged.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.goodWhileStuck(t, lss[0], lss[1], &hits, n, 100*time.Millisecond) // that timeout counts
	// Generous: the wait failed once at 5 s with other tests loading the machine.
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.backfillFailed) >= 1 }, 30*time.Second, 5*time.Millisecond)

	// An outage: nothing is answered, and stuck's timeouts do not count.
	down.Store(true)
	for range 5 {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax))
		time.Sleep(2 * backfillPoll)
	}
	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.backfillPending), "not given up in an outage")
	down.Store(false)

	// Good series come, one per backoff, and are answered while stuck's
	// reads time out.
	for i := 1; i < goods; i++ {
		e.push(e.clock.Now().UnixMilli()+int64(i+1)*stepMs, model.MetricTypeGauge, lss[1+i:2+i], []float64{1})
		e.sync()
		e.clock.set(e.clock.Now().Add(backfillBackoffMax))
		time.Sleep(2 * backfillPoll)
	}
	require.Eventually(t, func() bool {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax))
		return testutil.ToFloat64(e.p.m.backfillPending) == 0
	}, 30*time.Second, 2*backfillPoll)
	require.Equal(t, float64(goods*n), testutil.ToFloat64(e.p.m.warmed), "the good ones read, stuck given up")
	require.Zero(t, dragged.Load(), "a good series batched with stuck")
	e.requireSettled(t)
}

// TestBackfillParkedNotStranded: a series refused alone waits aside while
// another request may yet be answered; when that last one was settled
// otherwise (its series gone, here; or given up) rather than answered,
// nothing queued the parked one again, and it waited for good.
func TestBackfillParkedNotStranded(t *testing.T) {
	const n = 100
	lss := named("stuck", "good", "poison")
	var hits, refusals atomic.Int32
	h := refusing(t, upstream(t, lss, seasonal(n, 3), atStep), &refusals, func(v string) bool { return v == "poison" })
	srv := httptest.NewServer(stalling(t, h, &hits, func(v string) bool { return v == "stuck" }))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.goodWhileStuck(t, lss[0], lss[1], &hits, n, 300*time.Millisecond)
	e.push(e.clock.Now().UnixMilli()+2*stepMs, model.MetricTypeGauge, lss[2:], []float64{1})
	e.sync()
	require.Eventually(t, func() bool {
		e.p.bf.mu.Lock()
		defer e.p.bf.mu.Unlock()
		return len(e.p.bf.parked) == 1
	}, 30*time.Second, 5*time.Millisecond, "poison refused alone, waiting aside")
	var stuck []storage.SeriesRef
	for _, w := range e.p.workers {
		w.view(func(s *series) {
			if s.name == "stuck" {
				stuck = append(stuck, s.ref)
			}
		})
	}
	e.p.SeriesDeleted(stuck)
	e.sync()
	require.Eventually(t, func() bool {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax))
		return testutil.ToFloat64(e.p.m.backfillPending) == 0
	}, 30*time.Second, 2*backfillPoll, "poison retried and given up too, not parked for good")
	e.requireSettled(t)
}

// TestBackfillExactMatchesNotSaved: an upstream without external labels
// teaches that exact matches come (every set with labels beyond is a
// sibling's). Saved, that refused every series' own history after a
// restart once the same URL's upstream had been given external labels
// (a Prometheus that joined Thanos); it is learnt again from one exact
// match instead. The sets that are saved are forgotten when not seen for
// --backfill.max-age.
func TestBackfillExactMatchesNotSaved(t *testing.T) {
	const n = 100
	a := labels.FromStrings("__name__", "requests_total", "code", "200")
	b := labels.FromStrings("__name__", "latency_seconds", "code", "200")
	c := labels.FromStrings("__name__", "temperature", "room", "a")
	var cur atomic.Pointer[http.Handler]
	h1 := upstream(t, []labels.Labels{a, b, c}, seasonal(n, 3), atStep)
	cur.Store(&h1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*cur.Load()).ServeHTTP(w, r) }))
	defer srv.Close()
	dir, _, opts := runBeforeRestart(t, srv.URL, n, a)

	h2 := upstreamWith(t, labels.FromStrings("cluster", "eu1"), []labels.Labels{a, b, c}, seasonal(n, 3), atStep)
	cur.Store(&h2)
	e2 := newEnv(t, dir, nil, opts)
	e2.clock.set(t0.Add((n + 1) * stepMs * time.Millisecond))
	e2.push(e2.clock.Now().UnixMilli(), model.MetricTypeGauge, []labels.Labels{b, c}, []float64{1, 1})
	e2.backfilled(t)
	require.Equal(t, float64(2*n), testutil.ToFloat64(e2.p.m.warmed), "two new series of two families with their own history")

}

// TestBackfillExtSetsExpire: a learnt set not seen for --backfill.max-age
// is forgotten, in memory and when loaded after a restart, and with it
// the known sets it is part of: a sibling's set ({cluster, handler}), kept
// fresh by new series that take no history while the external one
// ({cluster}) came only with series that have history upstream, was no
// longer refused once {cluster} expired. Seeing a sibling's set refreshes
// the external one, which its series carry too. A set seen in the future
// (the clock was ahead) counts as seen now.
func TestBackfillExtSetsExpire(t *testing.T) {
	bf, err := newBackfill("http://upstream/api/v1/read", 10)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), ExtSetsFile)
	sib := "cluster\xffhandler"
	for _, tc := range []struct {
		name  string
		sets  map[string]extSet
		at    time.Time
		known []string
	}{
		{"within max-age", map[string]extSet{"cluster": {first: "a", known: true, seen: t0.Unix()}}, t0.Add(bf.maxAge), []string{"cluster"}},
		{"past it", map[string]extSet{"cluster": {first: "a", known: true, seen: t0.Unix()}}, t0.Add(bf.maxAge + time.Second), nil},
		{"a sibling's goes with it", map[string]extSet{
			"cluster": {first: "a", known: true, seen: t0.Unix()},
			sib:       {first: "b", known: true, seen: t0.Add(bf.maxAge).Unix()},
		}, t0.Add(bf.maxAge + time.Second), nil},
		{"seen in the future", map[string]extSet{"cluster": {first: "a", known: true, seen: t0.Add(30 * 24 * time.Hour).Unix()}}, t0.Add(bf.maxAge + time.Second), []string{"cluster"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bf.ext = maps.Clone(tc.sets)
			require.NoError(t, bf.saveExtSets(path))
			bf.ext = nil
			require.NoError(t, bf.loadExtSets(path, tc.at))
			require.ElementsMatch(t, tc.known, slices.Collect(maps.Keys(bf.ext)), "loaded")
			bf.ext = maps.Clone(tc.sets)
			bf.keepOwn(nil, tc.at)
			require.ElementsMatch(t, tc.known, slices.Collect(maps.Keys(bf.ext)), "in memory")
		})
	}

	// A sibling's set seen keeps the external set fresh.
	result := func(extra ...string) bfResult {
		ls := labels.FromStrings("__name__", "errors_total", "code", "503")
		from := labels.NewBuilder(ls)
		for i := 0; i+1 < len(extra); i += 2 {
			from.Set(extra[i], extra[i+1])
		}
		return bfResult{bfReq: bfReq{ls: ls}, older: ring{t: []int64{1}, v: []float64{1}, k: 1}, from: from.Labels()}
	}
	bf.ext = map[string]extSet{
		"cluster": {first: "a", known: true, seen: t0.Unix()},
		sib:       {first: "b", known: true, seen: t0.Unix()},
	}
	rs := []bfResult{result("cluster", "eu", "handler", "/login")}
	bf.keepOwn(rs, t0.Add(bf.maxAge/2))
	require.Zero(t, rs[0].older.len(), "a sibling's history")
	rs = []bfResult{result("cluster", "eu", "handler", "/login")}
	bf.keepOwn(rs, t0.Add(bf.maxAge+time.Minute))
	require.Zero(t, rs[0].older.len(), "a sibling's history, after max-age since the external set's own last came")
	require.True(t, bf.ext["cluster"].known)
}

// TestBackfillExtSetsNameNoSecret: the upstream is saved with the sets as
// a hash of its URL without its user: a password, or a token in the query,
// is not written, and a changed password keeps the sets.
func TestBackfillExtSetsNameNoSecret(t *testing.T) {
	b, err := newBackfill("http://alice:pw@prom:9090/api/v1/read?api_key=s3cr3t", 10)
	require.NoError(t, err)
	b.ext = map[string]extSet{"cluster": {first: "a", known: true, seen: t0.Unix()}}
	path := filepath.Join(t.TempDir(), ExtSetsFile)
	require.NoError(t, b.saveExtSets(path))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, secret := range []string{"s3cr3t", "alice", "pw@"} {
		require.NotContains(t, string(raw), secret)
	}
	other, err := newBackfill("http://alice:rotated@prom:9090/api/v1/read?api_key=s3cr3t", 10)
	require.NoError(t, err)
	require.NoError(t, other.loadExtSets(path, t0))
	require.True(t, other.ext["cluster"].known)
}

// manyRefused serves 16 series bad0 to bad15, which it refuses, and good,
// which it answers with n samples: the series, the upstream and its
// request count.
func manyRefused(t *testing.T, n int) ([]labels.Labels, *httptest.Server, *atomic.Int32) {
	t.Helper()
	var lss []labels.Labels
	for i := range 16 {
		lss = append(lss, labels.FromStrings("__name__", fmt.Sprint("bad", i)))
	}
	lss = append(lss, labels.FromStrings("__name__", "good"))
	h := upstream(t, lss, seasonal(n, 3), atStep)
	hits := new(atomic.Int32)
	srv := httptest.NewServer(refusing(t, h, hits, func(v string) bool { return strings.HasPrefix(v, "bad") }))
	t.Cleanup(srv.Close)
	return lss, srv, hits
}

// TestBackfillManyRefused: many series the upstream refuses (a job whose
// queries it will not answer) went past the refusals in a row that mark an
// upstream refusing everything, and from then on their batch was retried
// whole after every backoff: the good series in it was never read. The
// splitting goes on, paced by the backoff, until each refused series is
// alone and dropped.
func TestBackfillManyRefused(t *testing.T) {
	const n = 100
	lss, srv, hits := manyRefused(t, n)
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	ones := make([]float64, len(lss))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss, ones)
	e.sync()
	// Backoffs pass until every request is answered or refused alone.
	require.Eventually(t, func() bool {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax + time.Second))
		return testutil.ToFloat64(e.p.m.backfillPending) == 0
	}, 20*time.Second, 2*backfillPoll)
	require.Equal(t, float64(n), testutil.ToFloat64(e.p.m.warmed), "the good one read")
	require.LessOrEqual(t, hits.Load(), int32(4*len(lss)), "splitting, not a storm")
	e.requireSettled(t)
}

// runBeforeRestart runs omen warming from upstream with a snapshot: the
// first sample of each of lss, each warmed with the upstream's n samples,
// then it stops (taking the snapshot). It returns the TSDB's directory,
// the snapshot's path and the options, to start again with.
func runBeforeRestart(t *testing.T, upstream string, n int, lss ...labels.Labels) (string, string, func(*Options)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.BackfillRemoteReadURL = upstream; o.SnapshotPath = path; o.Workers = 1 }
	dir := t.TempDir()
	e := newEnv(t, dir, nil, opts)
	e.clock.set(t0.Add(time.Duration(n) * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss, make([]float64, len(lss)))
	e.backfilled(t)
	require.Equal(t, float64(len(lss)*n), testutil.ToFloat64(e.p.m.warmed))
	e.stop()
	require.NoError(t, e.db.Close())
	return dir, path, opts
}

// goodWhileStuck sets reads to time out after timeout, sends stuck's first
// sample, and once its read is on the way (hits) good's, which the
// upstream answers (n samples) while stuck's read hangs.
func (e *env) goodWhileStuck(t *testing.T, stuck, good labels.Labels, hits *atomic.Int32, n int, timeout time.Duration) {
	t.Helper()
	e.p.bf.up().timeout = timeout
	e.clock.set(t0.Add(time.Duration(n) * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, []labels.Labels{stuck}, []float64{1})
	e.sync()
	require.Eventually(t, func() bool { return hits.Load() >= 1 }, 30*time.Second, 5*time.Millisecond)
	e.push(e.clock.Now().UnixMilli()+stepMs, model.MetricTypeGauge, []labels.Labels{good}, []float64{1})
	e.sync()
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.warmed) == float64(n) }, 30*time.Second, 5*time.Millisecond)
}

// requireSettled checks that the backfill queue holds nothing once every
// request was answered or given up on: a request counted off twice made
// the queue think none was left while some were read, pausing the reads
// for nothing (or, below zero, never).
func (e *env) requireSettled(t *testing.T) {
	t.Helper()
	b := e.p.bf
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Zero(t, b.fresh, "requests being read")
	require.Empty(t, b.parked)
	require.Equal(t, b.head, len(b.queue))
}

// TestBackfillRefusedDoNotStallOthers: a run of series the upstream
// refuses, queued with a good one, costs the good one no pause: each was
// refused alone, pausing every read, and with 63 of them the good series
// waited 3 hours of backoffs.
func TestBackfillRefusedDoNotStallOthers(t *testing.T) {
	const n, bad = 100, 63
	lss := named("good0")
	for i := range bad {
		lss = append(lss, labels.FromStrings("__name__", fmt.Sprint("bad", i)))
	}
	lss = append(lss, labels.FromStrings("__name__", "good1"))
	var hits atomic.Int32
	srv := httptest.NewServer(refusing(t, upstream(t, lss, seasonal(n, 3), atStep), &hits, func(v string) bool { return strings.HasPrefix(v, "bad") }))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss[:1], []float64{1})
	e.backfilled(t)
	e.push(e.clock.Now().UnixMilli()+stepMs, model.MetricTypeGauge, lss[1:], make([]float64, bad+1))
	e.sync()
	start := e.clock.Now()
	require.Eventually(t, func() bool {
		e.p.bf.mu.Lock()
		until := e.p.bf.until
		e.p.bf.mu.Unlock()
		if until.After(e.clock.Now()) {
			e.clock.set(until.Add(time.Millisecond)) // the backoff passes
		}
		return testutil.ToFloat64(e.p.m.warmed) == 2*n
	}, 30*time.Second, 3*backfillPoll)
	require.LessOrEqual(t, e.clock.Now().Sub(start), backfillBackoffFirst+time.Second, "good1 waited for at most one backoff")
	require.Eventually(t, func() bool {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax))
		return testutil.ToFloat64(e.p.m.backfillPending) == 0
	}, 30*time.Second, 2*backfillPoll, "the refused ones given up on")
}

// TestBackfillUpstreamDownBacksOff: a failed remote read pauses the reads
// for a backoff that doubles, and its series are read again after it, not
// skipped for good (one failure in a burst of new series left thousands
// to a cold start); they score from local history meanwhile. An upstream
// that is down costs one request per backoff, however many series wait
// (one request carries up to backfillBatch of them); failures are counted,
// and the error logged has the URL's password masked.
func TestBackfillUpstreamDownBacksOff(t *testing.T) {
	const n = 100
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	lss := named(names...)
	h := upstream(t, lss, seasonal(n, 3), atStep)
	var hits atomic.Int32
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !healthy.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	u.User = url.UserPassword("alice", "s3cr3t")
	u.Path = "/api/v1/read"
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = u.String() })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	batch := func(names ...string) {
		var lss []labels.Labels
		var vs []float64
		for _, n := range names {
			lss, vs = append(lss, labels.FromStrings("__name__", n)), append(vs, 1)
		}
		e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss, vs)
		e.sync()
	}
	pending := func() float64 { return testutil.ToFloat64(e.p.m.backfillPending) }
	batch(names[:4]...)
	// The readers may split the four between them, each a request.
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.backfillFailed) >= 1 }, 30*time.Second, 10*time.Millisecond)
	time.Sleep(3 * backfillPoll)
	first := hits.Load()
	require.LessOrEqual(t, first, int32(backfillReaders), "a request for many series")
	require.Equal(t, float64(first), testutil.ToFloat64(e.p.m.backfillFailed))
	require.Equal(t, 4.0, pending(), "queued again")
	require.Len(t, e.p.Anomalies(nil), 4, "every series scored all the same")
	batch(names[4:6]...)
	time.Sleep(3 * backfillPoll)
	require.Equal(t, first, hits.Load(), "no read during the backoff")
	require.Equal(t, 6.0, pending())

	e.clock.set(e.clock.Now().Add(backfillBackoffFirst + time.Second))
	require.Eventually(t, func() bool { return hits.Load() > first }, 30*time.Second, 10*time.Millisecond, "read again after the backoff")
	time.Sleep(3 * backfillPoll)
	second := hits.Load()
	e.clock.set(e.clock.Now().Add(backfillBackoffFirst + time.Second))
	time.Sleep(3 * backfillPoll)
	require.Equal(t, second, hits.Load(), "the second backoff is twice the first")
	require.Equal(t, 6.0, pending())

	// The upstream is back: every series waiting gets its history.
	healthy.Store(true)
	e.clock.set(e.clock.Now().Add(backfillBackoffFirst))
	batch(names[6])
	hits.Store(0)
	e.backfilled(t)
	require.Equal(t, float64(len(names)*n), testutil.ToFloat64(e.p.m.warmed))
	require.Zero(t, testutil.ToFloat64(e.p.m.backfillSkipped))
	require.LessOrEqual(t, hits.Load(), int32(backfillReaders), "the seven in a request or a few")
	for _, a := range e.p.Anomalies(nil) {
		require.True(t, a.Ready, "%v warmed from the upstream", a.Labels)
	}

	// What the log says: the read client's error quotes the URL.
	healthy.Store(false)
	_, err = e.p.bf.rr.Read(context.Background(), &prompb.Query{}, false)
	require.Error(t, err)
	require.Contains(t, err.Error(), "s3cr3t", "the client's error quotes the password")
	msg := redact(err, e.p.bf.up().url)
	require.NotContains(t, msg, "s3cr3t")
	require.Contains(t, msg, "alice:xxxxx@")
}

// TestBackfillURLChecked: a backfill URL that is not absolute http(s) is
// refused, and the error does not repeat it (without its scheme, a URL
// parses with its password in plain sight).
func TestBackfillURLChecked(t *testing.T) {
	for _, u := range []string{"alice:s3cr3t@prom:9090/api/v1/read", "ftp://alice:s3cr3t@prom/api/v1/read", "/api/v1/read", "http://"} {
		_, err := newBackfill(u, 1)
		require.Error(t, err, u)
		require.NotContains(t, err.Error(), "s3cr3t")
	}
	_, err := newBackfill("https://alice:s3cr3t@prom:9090/api/v1/read", 1)
	require.NoError(t, err)
}

// TestBackfillExternalNamesChecked: --backfill.external-label takes label
// names or name=value pairs, comma separated or repeated.
func TestBackfillExternalNamesChecked(t *testing.T) {
	got, err := externalNames([]string{"cluster=eu1, replica", "region = us"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"cluster": "eu1", "replica": "", "region": "us"}, got)
	got, err = externalNames(nil)
	require.NoError(t, err)
	require.Nil(t, got, "unset: learnt")
	for _, bad := range []string{"__name__", "=eu", "cluster,cluster=eu"} {
		_, err = externalNames([]string{bad})
		require.ErrorContains(t, err, "backfill external label", bad)
	}
	db := openDB(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	_, err = New(nil, prometheus.NewRegistry(), db, nil, nil, Options{BackfillRemoteReadURL: "http://up/api/v1/read", BackfillExternalLabels: []string{"\xff"}})
	require.ErrorContains(t, err, "want a label name")
}

// TestBackfillNamedExternalLabels: with the external labels named, a new
// series takes an upstream series as its own history from the first
// answer if its labels beyond are all named, and of the named value where
// one is given: a store holding several sources (Thanos, a Mimir tenant)
// has other clusters' series of the same labels, and a name alone takes
// theirs for a series new upstream (names alone are for one Prometheus or
// an HA pair).
func TestBackfillNamedExternalLabels(t *testing.T) {
	const n = 100
	fresh := labels.FromStrings("__name__", "errors_total", "code", "500")
	withLabels := func(extra ...string) labels.Labels {
		b := labels.NewBuilder(fresh)
		for i := 0; i+1 < len(extra); i += 2 {
			b.Set(extra[i], extra[i+1])
		}
		return b.Labels()
	}
	for _, tc := range []struct {
		name     string
		ext      labels.Labels // the upstream's own external labels
		upstream []labels.Labels
		flag     []string
		warmed   float64
	}{
		{"a Prometheus with external labels, one series", labels.FromStrings("cluster", "eu1"), []labels.Labels{fresh}, []string{"cluster"}, n},
		{"a sibling's unnamed label", labels.FromStrings("cluster", "eu1"), []labels.Labels{withLabels("handler", "/login")}, []string{"cluster"}, 0},
		{"another source's, by name", labels.EmptyLabels(), []labels.Labels{withLabels("cluster", "us")}, []string{"cluster"}, n},
		{"another source's, by value", labels.EmptyLabels(), []labels.Labels{withLabels("cluster", "us")}, []string{"cluster=eu"}, 0},
		{"its own source's, by value", labels.EmptyLabels(), []labels.Labels{withLabels("cluster", "us"), withLabels("cluster", "eu")}, []string{"cluster=eu"}, n},
		{"a Prometheus's own external label, by value", labels.FromStrings("cluster", "eu"), []labels.Labels{fresh}, []string{"cluster=eu"}, n},
		// Federated, or pushed: the series stores the label itself, which
		// the remote_write's labeldrop took off; Prometheus rewrites an
		// equality matcher on its external label to cluster="".
		{"a series storing the external label itself, by value", labels.FromStrings("cluster", "eu"), []labels.Labels{withLabels("cluster", "eu")}, []string{"cluster=eu"}, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(upstreamWith(t, tc.ext, tc.upstream, seasonal(n, 3), atStep))
			defer srv.Close()
			e := newEnv(t, "", nil, func(o *Options) {
				o.BackfillRemoteReadURL, o.BackfillExternalLabels, o.Workers = srv.URL, tc.flag, 1
			})
			e.clock.set(t0.Add(n * stepMs * time.Millisecond))
			e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, []labels.Labels{fresh}, []float64{1})
			e.backfilled(t)
			require.Equal(t, tc.warmed, testutil.ToFloat64(e.p.m.warmed))
		})
	}
}

func lateResult(name string, extra ...string) bfResult {
	ls := labels.FromStrings("__name__", name, "job", "j")
	from := labels.NewBuilder(ls)
	for i := 0; i+1 < len(extra); i += 2 {
		from.Set(extra[i], extra[i+1])
	}
	return bfResult{bfReq: bfReq{ls: ls}, older: ring{t: []int64{1}, v: []float64{1}, k: 1}, from: from.Labels()}
}

// TestBackfillLateSetsNotSiblings: a sibling's set dropped before the
// external set was known, and seen on a second name after it was, was
// reported as late external labels, with the advice to name handler.
func TestBackfillLateSetsNotSiblings(t *testing.T) {
	b, err := newBackfill("http://upstream/api/v1/read", 10)
	require.NoError(t, err)
	var late []lateSet
	steps := [][]bfResult{
		{lateResult("errors_total", "cluster", "eu", "handler", "/login")}, // {cluster,handler}: unknown, no known part: counted
		{lateResult("a", "cluster", "eu")},
		{lateResult("b", "cluster", "eu")},                                   // {cluster} known
		{lateResult("requests_total", "cluster", "eu", "handler", "/login")}, // {cluster,handler} "known", but a sibling's
	}
	for _, rs := range steps {
		b.keepOwn(rs, t0)
		late = append(late, b.lateSets()...)
	}
	a := bfReq{ls: labels.FromStrings("__name__", "a", "job", "j"), again: true}
	require.Equal(t, []lateSet{{names: "cluster", n: 1, example: `{__name__="a", job="j"}`, reqs: []bfReq{a}}}, late)
}

// TestBackfillLateSetsBounded: the bound on the sets counted reset every
// count, the external set's among them, so its lost history went unsaid.
func TestBackfillLateSetsBounded(t *testing.T) {
	b, err := newBackfill("http://upstream/api/v1/read", 10)
	require.NoError(t, err)
	b.keepOwn([]bfResult{lateResult("a", "monitor", "x")}, t0) // {monitor} dropped, n=1
	for i := range maxExtSets {
		b.keepOwn([]bfResult{lateResult(fmt.Sprint("s", i), "monitor", "x", fmt.Sprint("l", i), "1")}, t0)
	}
	b.keepOwn([]bfResult{lateResult("b", "monitor", "x")}, t0)
	b.keepOwn([]bfResult{lateResult("c", "monitor", "x")}, t0) // learnt for sure (two names after any eviction)
	require.True(t, b.ext["monitor"].known)
	a := bfReq{ls: labels.FromStrings("__name__", "a", "job", "j"), again: true}
	late := b.lateSets()
	require.Len(t, late, 1)
	// a's history counted still; b's too if the bound evicted the set
	// (an unknown one, any) before b came, which made it unknown again.
	require.Equal(t, "monitor", late[0].names)
	require.Equal(t, a, late[0].reqs[0])
	require.Len(t, late[0].reqs, late[0].n)
	require.LessOrEqual(t, late[0].n, 2)
}

// TestBackfillLateSetReadAgain: a series whose history came with the
// upstream's external labels before they were learnt (the first answer
// of a deployment, of one metric name) warmed from local history for
// good; once the set is learnt it is read again and warmed from upstream.
func TestBackfillLateSetReadAgain(t *testing.T) {
	const n = 100
	lone := labels.FromStrings("__name__", "temperature", "room", "a")
	other := labels.FromStrings("__name__", "requests_total", "code", "200")
	srv := httptest.NewServer(upstreamWith(t, labels.FromStrings("monitor", "example"), []labels.Labels{lone, other}, seasonal(n, 3), atStep))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, []labels.Labels{lone}, []float64{1})
	e.backfilled(t)
	require.Zero(t, testutil.ToFloat64(e.p.m.warmed), "{monitor} is not known yet")

	e.clock.set(t0.Add((n + 1) * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, []labels.Labels{other}, []float64{1})
	e.backfilled(t)
	require.Equal(t, float64(2*n), testutil.ToFloat64(e.p.m.warmed), "both series' histories, the lone one's read again")
	require.Zero(t, testutil.ToFloat64(e.p.m.backfillUnconfirmed))
	for _, a := range e.p.Anomalies(nil) {
		require.True(t, a.Ready, "%v", a.Labels)
	}
}

// TestBackfillLateReqsBounded: the requests kept to read again are
// bounded in all; the series beyond are counted, and the count of kept
// requests goes back with the sets that leave.
func TestBackfillLateReqsBounded(t *testing.T) {
	b, err := newBackfill("http://upstream/api/v1/read", 10)
	require.NoError(t, err)
	rs := make([]bfResult, maxLateReqs+6)
	for i := range rs {
		rs[i] = lateResult("a", "monitor", "x")
	}
	b.keepOwn(rs, t0)
	b.keepOwn([]bfResult{lateResult("e", "cluster", "eu", "handler", "/")}, t0) // over the bound: counted, not kept
	require.Equal(t, maxLateReqs, b.lateReqs)
	b.keepOwn([]bfResult{lateResult("b", "monitor", "x")}, t0)
	late := b.lateSets()
	require.Len(t, late, 1)
	require.Equal(t, maxLateReqs+6, late[0].n)
	require.Len(t, late[0].reqs, maxLateReqs)
	require.Zero(t, b.lateReqs)
	require.Equal(t, 1, b.dropped["cluster\xffhandler"].n)
}

// TestBackfillNoRemoteReadAPI: --backfill.remote-read-url at an upstream
// with no remote-read endpoint (VictoriaMetrics answers 400 "unsupported
// path requested"; a plain server 404). omen scores cold, and says so in
// one warning that names the cause and what to do; each backoff after it
// warned again with the generic "reads pause" or "read failed", which
// never said the upstream cannot answer.
func TestBackfillNoRemoteReadAPI(t *testing.T) {
	for _, c := range []struct {
		name string
		code int
		body string
	}{
		{"VictoriaMetrics", http.StatusBadRequest, `unsupported path requested: "/api/v1/read"`},
		{"not found", http.StatusNotFound, "404 page not found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, c.body, c.code) }))
			defer srv.Close()
			var logs syncbuf.Buffer
			e := newEnvLogged(t, nil, slog.New(slog.NewTextHandler(&logs, nil)), func(o *Options) {
				o.BackfillRemoteReadURL = srv.URL + "/api/v1/read"
				o.Workers = 1
			})
			e.clock.set(t0)
			lss := []labels.Labels{labels.FromStrings("__name__", "a"), labels.FromStrings("__name__", "b"), labels.FromStrings("__name__", "c")}
			e.push(t0.UnixMilli(), model.MetricTypeGauge, lss, []float64{1, 2, 3})
			e.sync()
			for i := range 4 {
				require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.backfillFailed) > float64(i) }, 30*time.Second, 10*time.Millisecond)
				time.Sleep(2 * backfillPoll)
				e.clock.set(e.clock.Now().Add(backfillBackoffMax + time.Second))
			}
			var scored int
			for _, w := range e.p.workers {
				w.view(func(*series) { scored++ })
			}
			require.Equal(t, len(lss), scored, "scored cold meanwhile")
			out := logs.String()
			require.Equal(t, 1, strings.Count(out, "level=WARN"), out)
			require.Contains(t, out, "does not serve Prometheus remote read")
			require.Contains(t, out, "VictoriaMetrics")
		})
	}
}

// TestBackfillManyRefusedLoggedSpaced: each series the upstream refuses
// alone was a warning of its own, so a job whose queries the upstream will
// not answer (its thousands of series) logged thousands of lines at once.
// They are spaced as the other per-request warnings are: the first at
// once, then at most one a minute with the count since, the rest at debug.
func TestBackfillManyRefusedLoggedSpaced(t *testing.T) {
	const n = 100
	lss, srv, _ := manyRefused(t, n)
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newEnvLogged(t, nil, logger, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(e.clock.Now().UnixMilli(), model.MetricTypeGauge, lss, make([]float64, len(lss)))
	e.sync()
	require.Eventually(t, func() bool {
		e.clock.set(e.clock.Now().Add(backfillBackoffMax + time.Second))
		return testutil.ToFloat64(e.p.m.backfillPending) == 0
	}, 20*time.Second, 2*backfillPoll)
	out := logs.String()
	require.Equal(t, 1, strings.Count(out, `msg="Warm start by remote read refused; the series warms from local history alone"`), out)
	require.Contains(t, out, "refused_series=1")
}
