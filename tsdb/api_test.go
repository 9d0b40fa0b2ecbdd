package tsdb

import (
	"context"
	"encoding/json"
	"github.com/prometheus/prometheus/config"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
)

// seed appends two series, one sample every 15s for 10 minutes ending at end.
func seed(t testing.TB, s *Storage, end time.Time) {
	t.Helper()
	app := s.AppenderV2(context.Background())
	for _, job := range []string{"a", "b"} {
		ls := labels.FromStrings("__name__", "requests_total", "job", job)
		var ref storage.SeriesRef
		for i := 0; i <= 40; i++ {
			var err error
			ts := end.Add(time.Duration(i-40) * 15 * time.Second).UnixMilli()
			ref, err = app.Append(ref, ls, 0, ts, float64(i*10), nil, nil, storage.AppendV2Options{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

func newTestAPI(t testing.TB) (*httptest.Server, time.Time) {
	return newTestAPIWith(t, nil)
}

// newTestAPIWith is newTestAPI with options changed by mod.
func newTestAPIWith(t testing.TB, mod func(*APIOptions)) (*httptest.Server, time.Time) {
	s := openTestStorage(t)
	end := time.Now().Truncate(time.Second)
	seed(t, s, end)
	o := DefaultAPIOptions()
	o.Flags = map[string]string{"storage.tsdb.path": "/var/omen"}
	if mod != nil {
		mod(&o)
	}
	h := NewAPI(nil, nil, nil, s, NewEngine(discard(), nil, o), o, func(f http.HandlerFunc) http.HandlerFunc { return f })
	srv := httptest.NewServer(http.StripPrefix("", h))
	t.Cleanup(srv.Close)
	return srv, end
}

func getJSON(t testing.TB, u string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return resp.StatusCode, out
}

// TestQueryAPIShapes checks the responses against the shapes documented at
// prometheus.io/docs/prometheus/latest/querying/api/.
func TestQueryAPIShapes(t *testing.T) {
	srv, end := newTestAPI(t)
	ts := strconv.FormatInt(end.Unix(), 10)
	start := strconv.FormatInt(end.Add(-5*time.Minute).Unix(), 10)

	code, r := getJSON(t, srv.URL+"/api/v1/query?"+url.Values{"query": {`rate(requests_total{job="a"}[1m])`}, "time": {ts}}.Encode())
	require.Equal(t, 200, code)
	require.Equal(t, "success", r["status"])
	data := r["data"].(map[string]any)
	require.Equal(t, "vector", data["resultType"])
	res := data["result"].([]any)
	require.Len(t, res, 1)
	el := res[0].(map[string]any)
	require.Equal(t, map[string]any{"job": "a"}, el["metric"])
	val := el["value"].([]any)
	require.Equal(t, float64(end.Unix()), val[0])
	require.Equal(t, "0.6666666666666666", val[1], "10 per 15s, as a string as Prometheus encodes values")

	// Prometheus 3's feature list: it answered 500 ("feature registry
	// not configured").
	code, r = getJSON(t, srv.URL+"/api/v1/features")
	require.Equal(t, 200, code, r)
	require.Equal(t, "success", r["status"])

	code, r = getJSON(t, srv.URL+"/api/v1/query_range?"+url.Values{"query": {"requests_total"}, "start": {start}, "end": {ts}, "step": {"60"}}.Encode())
	require.Equal(t, 200, code)
	data = r["data"].(map[string]any)
	require.Equal(t, "matrix", data["resultType"])
	res = data["result"].([]any)
	require.Len(t, res, 2)
	vals := res[0].(map[string]any)["values"].([]any)
	require.Len(t, vals, 6)

	code, r = getJSON(t, srv.URL+"/api/v1/series?"+url.Values{"match[]": {"requests_total"}}.Encode())
	require.Equal(t, 200, code)
	require.ElementsMatch(t, []any{
		map[string]any{"__name__": "requests_total", "job": "a"},
		map[string]any{"__name__": "requests_total", "job": "b"},
	}, r["data"])

	code, r = getJSON(t, srv.URL+"/api/v1/labels")
	require.Equal(t, 200, code)
	require.Equal(t, []any{"__name__", "job"}, r["data"])

	code, r = getJSON(t, srv.URL+"/api/v1/label/job/values")
	require.Equal(t, 200, code)
	require.Equal(t, []any{"a", "b"}, r["data"])

	code, r = getJSON(t, srv.URL+"/api/v1/status/buildinfo")
	require.Equal(t, 200, code)
	require.Contains(t, r["data"], "goVersion")

	code, r = getJSON(t, srv.URL+"/api/v1/status/flags")
	require.Equal(t, 200, code)
	require.Equal(t, map[string]any{"storage.tsdb.path": "/var/omen"}, r["data"])

	// Errors keep Prometheus's format.
	code, r = getJSON(t, srv.URL+"/api/v1/query?query=sum(")
	require.Equal(t, 400, code)
	require.Equal(t, "error", r["status"])
	require.Equal(t, "bad_data", r["errorType"])
	require.Contains(t, r["error"], "parse error")
}

// TestScrapeEndpointsAnswerEmpty checks the endpoints of what omen has none
// of (targets, scrape pools, rules, alerts, Alertmanagers) against what
// Prometheus 2.42 answers without any: empty lists, never null (the
// differential test in e2e found "scrapePools":null and
// "droppedTargetCounts":null). Notifications are Prometheus 3's (2.42 has
// no such endpoint: 404): the real Prometheus 3 answers "data":[] with
// none, omen answered null, which a client iterating the list fails on.
func TestScrapeEndpointsAnswerEmpty(t *testing.T) {
	srv, _ := newTestAPI(t)
	for _, tc := range []struct {
		path string
		want any
	}{
		{"/api/v1/notifications", []any{}},
		{"/api/v1/scrape_pools", map[string]any{"scrapePools": []any{}}},
		// droppedTargetCounts is Prometheus 3's; 2.42 has no such field.
		{"/api/v1/targets", map[string]any{"activeTargets": []any{}, "droppedTargets": []any{}, "droppedTargetCounts": map[string]any{}}},
		{"/api/v1/alertmanagers", map[string]any{"activeAlertmanagers": []any{}, "droppedAlertmanagers": []any{}}},
		{"/api/v1/rules", map[string]any{"groups": []any{}}},
		{"/api/v1/alerts", map[string]any{"alerts": []any{}}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, r := getJSON(t, srv.URL+tc.path)
			require.Equal(t, http.StatusOK, code, r)
			require.Equal(t, tc.want, r["data"])
		})
	}
}

// TestRemoteRead reads through the prometheus module's own remote-read
// client with both response types.
func TestRemoteRead(t *testing.T) {
	// A concurrency limit of 0 is no limit (--storage.remote.read-concurrent-limit),
	// as Prometheus documents it; it admitted no read at all.
	for _, limit := range []int{10, 0} {
		srv, end := newTestAPIWith(t, func(o *APIOptions) { o.MaxConcurrent = limit })
		testRemoteRead(t, srv, end)
	}
}

func testRemoteRead(t *testing.T, srv *httptest.Server, end time.Time) {
	u, err := url.Parse(srv.URL + "/api/v1/read")
	require.NoError(t, err)
	for _, rt := range []prompb.ReadRequest_ResponseType{prompb.ReadRequest_SAMPLES, prompb.ReadRequest_STREAMED_XOR_CHUNKS} {
		t.Run(rt.String(), func(t *testing.T) {
			c, err := remote.NewReadClient("test", &remote.ClientConfig{
				URL: &config_util.URL{URL: u}, Timeout: model.Duration(5 * time.Second),
				ChunkedReadLimit: 1 << 20, AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{rt},
			})
			require.NoError(t, err)
			q := &prompb.Query{
				StartTimestampMs: end.Add(-time.Hour).UnixMilli(), EndTimestampMs: end.UnixMilli(),
				Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "job", Value: "b"}},
			}
			ss, err := c.Read(context.Background(), q, true)
			require.NoError(t, err)
			require.True(t, ss.Next())
			require.Equal(t, `{__name__="requests_total", job="b"}`, ss.At().Labels().String())
			it := ss.At().Iterator(nil)
			n := 0
			var last float64
			for it.Next() == chunkenc.ValFloat {
				_, last = it.At()
				n++
			}
			require.Equal(t, 41, n)
			require.Equal(t, 400.0, last)
			require.False(t, ss.Next())
			require.NoError(t, ss.Err())
		})
	}
}

// TestAdminAPI checks Prometheus's admin endpoints: refused unless enabled,
// and when enabled a snapshot that the real promtool reads back, a
// deletion that queries no longer see, and tombstone cleanup.
func TestAdminAPI(t *testing.T) {
	post := func(t *testing.T, u string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(u, "", nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var out map[string]any
		if len(b) > 0 {
			require.NoError(t, json.Unmarshal(b, &out), string(b))
		}
		return resp.StatusCode, out
	}
	for _, tc := range []struct {
		name   string
		enable bool
	}{{"disabled", false}, {"enabled", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStorage(t)
			end := time.Now().Truncate(time.Second)
			seed(t, s, end)
			o := DefaultAPIOptions()
			o.EnableAdmin = tc.enable
			srv := httptest.NewServer(NewAPI(nil, nil, nil, s, NewEngine(discard(), nil, o), o, func(f http.HandlerFunc) http.HandlerFunc { return f }))
			t.Cleanup(srv.Close)
			admin := srv.URL + "/api/v1/admin/tsdb/"

			code, r := post(t, admin+"snapshot")
			if !tc.enable {
				// Prometheus's answer, errorType and status alike.
				require.Equal(t, http.StatusInternalServerError, code)
				require.Equal(t, "unavailable", r["errorType"])
				require.Equal(t, "admin APIs disabled", r["error"])
				_, err := os.Stat(filepath.Join(s.opts.Path, "snapshots"))
				require.ErrorIs(t, err, os.ErrNotExist)
				code, _ = post(t, admin+"delete_series?"+url.Values{"match[]": {"requests_total"}}.Encode())
				require.Equal(t, http.StatusInternalServerError, code)
				return
			}
			require.Equal(t, http.StatusOK, code, r)
			name := r["data"].(map[string]any)["name"].(string)
			dir := filepath.Join(s.opts.Path, "snapshots", name)

			// Restoring it (opening a TSDB on the directory, as omen or
			// Prometheus started on it would) gives the head's samples back,
			// 41 per series, and the real promtool reads it.
			db, err := tsdb.Open(dir, nil, nil, tsdb.DefaultOptions(), nil)
			require.NoError(t, err)
			q, err := db.Querier(math.MinInt64, math.MaxInt64)
			require.NoError(t, err)
			ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "requests_total"))
			var got []int
			for ss.Next() {
				n := 0
				for it := ss.At().Iterator(nil); it.Next() != chunkenc.ValNone; {
					n++
				}
				got = append(got, n)
			}
			require.NoError(t, ss.Err())
			require.NoError(t, q.Close())
			require.NoError(t, db.Close())
			require.Equal(t, []int{41, 41}, got)
			// promtool 2.42 wants the wal directory the restore created.
			if promtool, err := exec.LookPath("promtool"); err == nil {
				out, err := exec.Command(promtool, "tsdb", "dump", "--match", `requests_total{job="b"}`, dir).CombinedOutput()
				require.NoError(t, err, string(out))
				require.Equal(t, 41, strings.Count(string(out), `{__name__="requests_total", job="b"}`), string(out))
			} else if os.Getenv("OMEN_E2E") == "1" {
				t.Fatal("promtool not found on PATH; make deps-e2e installs it")
			}

			code, r = post(t, admin+"delete_series?"+url.Values{"match[]": {`requests_total{job="a"}`}}.Encode())
			require.Equal(t, http.StatusNoContent, code, r)
			// Queries no longer see the deleted samples (the series API lists
			// the series until compaction, as Prometheus's does).
			code, r = getJSON(t, srv.URL+"/api/v1/query?"+url.Values{"query": {"count_over_time(requests_total[15m])"}, "time": {strconv.FormatInt(end.Unix(), 10)}}.Encode())
			require.Equal(t, 200, code)
			res := r["data"].(map[string]any)["result"].([]any)
			require.Len(t, res, 1)
			require.Equal(t, map[string]any{"job": "b"}, res[0].(map[string]any)["metric"])
			require.Equal(t, "41", res[0].(map[string]any)["value"].([]any)[1])

			code, r = post(t, admin+"clean_tombstones")
			require.Equal(t, http.StatusNoContent, code, r)
		})
	}
}

// TestStatusRuntimeInfoAndConfig: runtimeinfo reports the last reload's
// outcome, the memory limit and both retentions (it claimed a success
// always, and no limit); status/config shows the remote writes omen runs,
// not Prometheus's default scrape configuration.
func TestStatusRuntimeInfoAndConfig(t *testing.T) {
	s := openTestStorage(t)
	loaded := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	o := DefaultAPIOptions()
	o.Reloaded = func() (bool, time.Time) { return false, loaded }
	o.RetentionSize = 10 << 30
	u, err := url.Parse("https://u:secret@mimir.example/api/v1/push")
	require.NoError(t, err)
	rw := config.DefaultRemoteWriteConfig
	rw.URL = &config_util.URL{URL: u}
	o.Config = func() config.Config { return config.Config{RemoteWriteConfigs: []*config.RemoteWriteConfig{&rw}} }
	h := NewAPI(nil, nil, nil, s, NewEngine(discard(), nil, o), o, func(f http.HandlerFunc) http.HandlerFunc { return f })
	srv := httptest.NewServer(h)
	defer srv.Close()

	old := debug.SetMemoryLimit(1 << 30)
	defer debug.SetMemoryLimit(old)
	code, r := getJSON(t, srv.URL+"/api/v1/status/runtimeinfo")
	require.Equal(t, 200, code)
	d := r["data"].(map[string]any)
	require.Equal(t, false, d["reloadConfigSuccess"])
	require.Equal(t, "2026-12-03T10:00:00Z", d["lastConfigTime"])
	require.Equal(t, float64(1<<30), d["GOMEMLIMIT"])
	require.Contains(t, d["storageRetention"], "10GiB")
	require.Equal(t, "15d or 10GiB", retention(15*24*time.Hour, 10<<30))
	require.Equal(t, "15d", retention(15*24*time.Hour, 0))

	code, r = getJSON(t, srv.URL+"/api/v1/status/config")
	require.Equal(t, 200, code)
	yml := r["data"].(map[string]any)["yaml"].(string)
	require.Contains(t, yml, "remote_write:")
	require.Contains(t, yml, "mimir.example")
	require.NotContains(t, yml, "secret")
	require.NotContains(t, yml, "scrape_interval")
}

// TestCORS: --web.cors.origin (Prometheus's, default .*) lets a browser
// page on an allowed origin read the API; an origin it does not match gets
// no header.
func TestCORS(t *testing.T) {
	s := openTestStorage(t)
	o := DefaultAPIOptions()
	var err error
	o.CORSOrigin, err = CompileCORSOrigin(`https?://grafana\.example`)
	require.NoError(t, err)
	h := NewAPI(nil, nil, nil, s, NewEngine(discard(), nil, o), o, func(f http.HandlerFunc) http.HandlerFunc { return f })
	srv := httptest.NewServer(h)
	defer srv.Close()
	for origin, want := range map[string]string{"https://grafana.example": "https://grafana.example", "https://grafana.example.evil": ""} {
		r, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/query?query=1", nil)
		require.NoError(t, err)
		r.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.Header.Get("Access-Control-Allow-Origin"), origin)
	}
	_, err = CompileCORSOrigin("([")
	require.ErrorContains(t, err, "--web.cors.origin")
}

// blockingQueryable's Select waits until release is closed, so a query
// over it holds its slot of the engine's concurrency.
type blockingQueryable struct{ started, release chan struct{} }

func (b blockingQueryable) Querier(int64, int64) (storage.Querier, error) { return b, nil }
func (b blockingQueryable) Select(context.Context, bool, *storage.SelectHints, ...*labels.Matcher) storage.SeriesSet {
	b.started <- struct{}{}
	<-b.release
	return storage.EmptySeriesSet()
}
func (blockingQueryable) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}
func (blockingQueryable) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}
func (blockingQueryable) Close() error { return nil }

// startBlockedQuery starts the query "up" over a blockingQueryable and
// returns once it holds its slot; closing q.release ends it, its error
// then on done.
func startBlockedQuery(t *testing.T, engine *promql.Engine) (blockingQueryable, <-chan error) {
	t.Helper()
	q := blockingQueryable{started: make(chan struct{}), release: make(chan struct{})}
	first, err := engine.NewInstantQuery(context.Background(), q, nil, "up", time.Unix(1000, 0))
	require.NoError(t, err)
	done := make(chan error)
	go func() {
		defer first.Close()
		done <- first.Exec(context.Background()).Err
	}()
	<-q.started
	return q, done
}

// TestQueryConcurrencyBounded: --query.max-concurrency, as in Prometheus.
// Without it any number of queries ran at once (40 heavy ones took the
// process from 0.6 to 4.2 GB beside ingest).
func TestQueryConcurrencyBounded(t *testing.T) {
	tr, err := NewQueryTracker(nil, t.TempDir(), 1)
	require.NoError(t, err)
	defer tr.Close()
	o := DefaultAPIOptions()
	o.Tracker = tr
	reg := prometheus.NewRegistry()
	engine := NewEngine(nil, reg, o)
	q, done := startBlockedQuery(t, engine)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = engine.NewInstantQuery(ctx, q, nil, "up", time.Unix(1000, 0))
	require.ErrorIs(t, err, context.DeadlineExceeded, "waits for the one slot")
	require.ErrorContains(t, err, "waiting for a query slot, all 1 of --query.max-concurrency busy", "says what it waited for")

	close(q.release)
	require.NoError(t, <-done)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_engine_queries_concurrent_max" {
			require.Equal(t, 1.0, mf.GetMetric()[0].GetGauge().GetValue())
			found = true
		}
	}
	require.True(t, found)
}

// TestNotificationsLive: /api/v1/notifications/live answers as the real
// Prometheus 3 does with no notification pending (checked with
// /work/main/bin/prometheus3 and curl, with and without Accept:
// text/event-stream): 200, text/event-stream, headers flushed at once and
// the stream held open, as the OpenAPI description omen serves says
// (200 only). omen answered 204 No Content, which an EventSource takes as
// a failed connection (the Prometheus UI's then shows a connection
// error). The stream ends when its client goes, or when StreamsDone is
// closed (the server's shutdown), else an http.Server's Shutdown waited
// its whole grace for every open stream.
func TestNotificationsLive(t *testing.T) {
	done := make(chan struct{})
	srv, _ := newTestAPIWith(t, func(o *APIOptions) { o.StreamsDone = done })
	for _, accept := range []string{"", "text/event-stream"} {
		t.Run("accept="+accept, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/notifications/live", nil)
			require.NoError(t, err)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
			require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
			// The client leaves: the body ends.
			cancel()
			_, err = io.ReadAll(resp.Body)
			require.Error(t, err)
		})
	}
	resp, err := http.Get(srv.URL + "/api/v1/notifications/live")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	read := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); read <- err }()
	close(done) // the server shuts down: the stream ends, empty
	select {
	case err := <-read:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the stream did not end at the shutdown")
	}
}

// TestNotificationsLiveSubscribersBounded: the live streams are bounded as
// Prometheus 3's are (--web.max-notifications-subscribers, 16): a stream
// holds its connection, a slot of --web.max-connections, for as long as its
// client stays, and past the bound a subscription is refused with 204 at
// once, its connection free again. Checked against the real
// /work/main/bin/prometheus3 (--web.max-connections=20, 30 streams by curl
// -N): 16 answered 200, 14 answered 204, /-/healthy 200; omen (a064bd8)
// answered 200 to all and held every slot, /-/healthy and remote write
// waiting to be accepted. A stream that ends gives its place back.
func TestNotificationsLiveSubscribersBounded(t *testing.T) {
	const max = 3
	srv, _ := newTestAPIWith(t, func(o *APIOptions) { o.MaxNotificationsSubscribers = max })
	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/notifications/live", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp, cancel
	}
	var cancels []context.CancelFunc
	for range max {
		resp, cancel := open()
		defer resp.Body.Close()
		cancels = append(cancels, cancel)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	resp, cancel := open()
	defer cancel()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "one stream more than the bound")
	_, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the refusal ends at once")
	require.NoError(t, resp.Body.Close())

	// One client goes: its place is given back (once its handler has
	// returned, so asked until then).
	cancels[0]()
	require.Eventually(t, func() bool {
		resp, cancel := open()
		defer cancel()
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 10*time.Millisecond)
	for _, c := range cancels[1:] {
		c()
	}
}

// TestQueryTrackerClosedUnderQuery: a query still running when the tracker
// is closed (a shutdown whose requests outlived their 5 s after being
// cancelled: a cancelled query at 1 ms steps under -race on a loaded
// machine) ends without touching the tracker's unmapped file. It wrote its
// slot there at its end and killed the process with SIGSEGV (seen in
// cmd/omen's TestAnomaliesAnswerWhileQueriesFillSlots, the crash landing in
// the next test). New queries are refused once Close was called.
func TestQueryTrackerClosedUnderQuery(t *testing.T) {
	dir := t.TempDir()
	tr, err := NewQueryTracker(nil, dir, 2)
	require.NoError(t, err)
	engine := NewEngine(nil, prometheus.NewRegistry(), APIOptions{QueryTimeout: time.Minute, MaxSamples: 1000, LookbackDelta: 5 * time.Minute, Tracker: tr})
	q, done := startBlockedQuery(t, engine)

	require.NoError(t, tr.Close()) // the query still runs
	_, err = engine.NewInstantQuery(context.Background(), q, nil, "up", time.Unix(1000, 0))
	require.ErrorIs(t, err, errTrackerClosed, "a query after Close")
	close(q.release)
	require.NoError(t, <-done)
	// The file the tracker mapped is left to the next start, which
	// reads it: no query is listed in it as running.
	b, err := os.ReadFile(filepath.Join(dir, "queries.active"))
	require.NoError(t, err)
	require.NotContains(t, string(b), "up")
}
