package forward

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"
)

// receiver is a remote-write endpoint that records what it stored. While
// fail returns a status, it answers with it and stores nothing.
type receiver struct {
	mu       sync.Mutex
	got      map[string]int // series and timestamp -> times received
	requests int
	auth     []string // basic auth, user:password
	authz    []string // the Authorization header as it came
	tenants  []string
	fail     func(n int) int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	user, pass, _ := r.BasicAuth()
	rc.auth = append(rc.auth, user+":"+pass)
	rc.authz = append(rc.authz, r.Header.Get("Authorization"))
	rc.tenants = append(rc.tenants, r.Header.Get("X-Scope-OrgID"))
	if rc.fail != nil {
		if code := rc.fail(rc.requests); code != 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(code)
			return
		}
	}
	raw, err := snappy.Decode(nil, b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, ts := range req.Timeseries {
		var sb strings.Builder
		for _, l := range ts.Labels {
			sb.WriteString(l.Name + "=" + l.Value + ",")
		}
		for _, s := range ts.Samples {
			rc.got[fmt.Sprintf("%s@%d=%g", sb.String(), s.Timestamp, s.Value)]++
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// received returns how many distinct samples arrived and how many arrived
// more than once.
func (rc *receiver) received() (distinct, repeated int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.got {
		distinct++
		if n > 1 {
			repeated++
		}
	}
	return distinct, repeated
}

func newReceiver(fail func(int) int) (*receiver, *httptest.Server) {
	rc := &receiver{got: map[string]int{}, fail: fail}
	return rc, httptest.NewServer(rc)
}

// appendOutputs logs n samples for each of series output series in commits
// of one sample per series, at times from now on (a new queue sends what is
// logged after it started, as Prometheus's do).
func appendOutputs(t *testing.T, f *Forwarder, series, n int, start time.Time) {
	t.Helper()
	for i := range n {
		app := f.AppenderV2(context.Background())
		require.NotNil(t, app)
		for s := range series {
			ls := labels.FromStrings("__name__", "anomaly_score", "for", "temperature", "instance", fmt.Sprint(s))
			_, err := app.Append(0, ls, 0, start.Add(time.Duration(i)*time.Second).UnixMilli(), float64(i), nil, nil, storage.AOptions{})
			require.NoError(t, err)
		}
		require.NoError(t, app.Commit())
	}
}

// TestForwardingSurvivesAnOutage: an upstream that answers 503 for a while
// (longer than the old in-memory queue could hold) gets every output once
// it is back, each once; the log, not memory, held them meanwhile.
func TestForwardingSurvivesAnOutage(t *testing.T) {
	var down sync.Mutex
	outage := true
	rc, srv := newReceiver(func(int) int {
		down.Lock()
		defer down.Unlock()
		if outage {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	defer srv.Close()

	f, err := New(nil, prometheus.NewRegistry(), t.TempDir(), []string{srv.URL}, time.Minute)
	require.NoError(t, err)
	require.NoError(t, f.ApplyConfig(nil))
	defer f.Close()
	const series, n = 50, 40
	appendOutputs(t, f, series, n, time.Now().Add(time.Second))
	require.Eventually(t, func() bool { f.rs.Notify(); rc.mu.Lock(); defer rc.mu.Unlock(); return rc.requests >= 3 }, 30*time.Second, 10*time.Millisecond)
	d, _ := rc.received()
	require.Zero(t, d, "nothing stored during the outage")

	down.Lock()
	outage = false
	down.Unlock()
	// Live, every commit wakes the queue's log reader; here the burst is
	// over, so wake it as those would.
	require.Eventually(t, func() bool { f.rs.Notify(); d, _ := rc.received(); return d == series*n }, 60*time.Second, 50*time.Millisecond)
	_, rep := rc.received()
	require.Zero(t, rep, "each output once")
}

// TestForwardingCloseFlushes: outputs logged just before shutdown are sent
// before Close returns; a password in a URL is used as basic auth and never
// shown in the metrics.
func TestForwardingCloseFlushes(t *testing.T) {
	rc, srv := newReceiver(nil)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	u := strings.Replace(srv.URL, "http://", "http://alice:s3cret@", 1)
	f, err := New(nil, reg, t.TempDir(), []string{u}, time.Minute)
	require.NoError(t, err)
	require.NoError(t, f.ApplyConfig(nil))
	const series, n = 20, 5
	appendOutputs(t, f, series, n, time.Now().Add(time.Second))

	mfs, err := reg.Gather()
	require.NoError(t, err)
	seen := false
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotContains(t, l.GetValue(), "s3cret", "%s", mf.GetName())
				seen = seen || (l.GetName() == "url" && l.GetValue() == srv.URL)
			}
		}
	}
	// The metrics omen's forwarding alerts (rules/health.go) use.
	for _, m := range []string{"prometheus_remote_storage_highest_timestamp_in_seconds", "prometheus_remote_storage_queue_highest_sent_timestamp_seconds", "prometheus_remote_storage_samples_failed_total"} {
		require.True(t, names[m], m)
	}

	start := time.Now()
	require.NoError(t, f.Close())
	require.Less(t, time.Since(start), 30*time.Second, "no wait for the flush deadline once all is sent")
	d, rep := rc.received()
	require.Equal(t, series*n, d)
	require.Zero(t, rep)
	require.Contains(t, rc.auth, "alice:s3cret")
	require.Nil(t, f.AppenderV2(context.Background()), "closed")
	require.True(t, seen, "the endpoint is named without its credentials")
}

// TestForwardingReload: without a remote write nothing is logged; a reload
// that adds one starts forwarding, with the configuration file's settings;
// one that removes it stops.
func TestForwardingReload(t *testing.T) {
	rc, srv := newReceiver(nil)
	defer srv.Close()
	f, err := New(nil, prometheus.NewRegistry(), t.TempDir(), nil, time.Minute)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.ApplyConfig(nil))
	require.Nil(t, f.AppenderV2(context.Background()), "nothing to forward to")

	rw, err := URLConfig(srv.URL)
	require.NoError(t, err)
	rw.HTTPClientConfig.BasicAuth = nil
	rw.Headers = map[string]string{"X-Scope-OrgID": "team-a"}
	rw.QueueConfig.BatchSendDeadline = model.Duration(100 * time.Millisecond)
	require.NoError(t, f.ApplyConfig([]*promconfig.RemoteWriteConfig{rw}))
	appendOutputs(t, f, 3, 4, time.Now().Add(time.Second))
	require.Eventually(t, func() bool { f.rs.Notify(); d, _ := rc.received(); return d == 12 }, 30*time.Second, 20*time.Millisecond)
	rc.mu.Lock()
	require.Contains(t, rc.tenants, "team-a", "the file's headers are sent")
	rc.mu.Unlock()
	require.NoError(t, f.ApplyConfig(nil))
	require.Nil(t, f.AppenderV2(context.Background()), "removed")
}

func TestURLConfig(t *testing.T) {
	for _, u := range []string{"", "mimir:9009/api/v1/push", "ftp://a/b", "http://", "://x"} {
		_, err := URLConfig(u)
		require.Error(t, err, u)
	}
	_, err := URLConfig("http://u:pw@[::1")
	require.ErrorContains(t, err, "unparsable")
	require.NotContains(t, err.Error(), "pw")
	c, err := URLConfig("https://u:p,w@mimir.example/api/v1/push")
	require.NoError(t, err)
	q := promconfig.DefaultQueueConfig
	q.RetryOnRateLimit = true
	require.Equal(t, q, c.QueueConfig)
	// The credentials move to basic auth: the module logs queue URLs as
	// they are, and logged the password.
	require.Equal(t, "https://mimir.example/api/v1/push", c.URL.String())
	require.Equal(t, "u", c.HTTPClientConfig.BasicAuth.Username)
	require.Equal(t, "p,w", string(c.HTTPClientConfig.BasicAuth.Password))
}

// TestForwardingReloadDoesNotStallScoring: a reload that removes a queue
// whose receiver is down takes up to the flush deadline (the queue tries to
// send what it holds); meanwhile the scorers, which ask for an appender on
// every batch and commit outputs to it, must not wait for it. They did,
// and dropped batches: first for the appender, then in the commit (the log
// tells the queues of it, and the remote storage's notice waited on the
// reload's lock).
func TestForwardingReloadDoesNotStallScoring(t *testing.T) {
	rc, srv := newReceiver(func(int) int { return http.StatusServiceUnavailable })
	defer srv.Close()
	f, err := New(nil, prometheus.NewRegistry(), t.TempDir(), nil, 3*time.Second)
	require.NoError(t, err)
	defer f.Close()
	rw, err := URLConfig(srv.URL)
	require.NoError(t, err)
	rw.QueueConfig.BatchSendDeadline = model.Duration(10 * time.Millisecond)
	require.NoError(t, f.ApplyConfig([]*promconfig.RemoteWriteConfig{rw}))
	appendOutputs(t, f, 5, 3, time.Now().Add(time.Second))
	// The queue holds a batch the receiver keeps refusing.
	require.Eventually(t, func() bool { f.rs.Notify(); rc.mu.Lock(); defer rc.mu.Unlock(); return rc.requests >= 1 }, 30*time.Second, 10*time.Millisecond)

	reloaded := make(chan error)
	start := time.Now()
	go func() { reloaded <- f.ApplyConfig(nil) }()
	time.Sleep(200 * time.Millisecond) // the reload is stopping the queue
	ls := labels.FromStrings("__name__", "anomaly_score", "for", "temperature")
	for i := range 20 {
		got := make(chan error)
		go func() {
			app := f.AppenderV2(context.Background())
			if app == nil {
				got <- fmt.Errorf("no appender")
				return
			}
			if _, err := app.Append(0, ls, 0, time.Now().Add(time.Duration(10+i)*time.Second).UnixMilli(), 1, nil, nil, storage.AOptions{}); err != nil {
				got <- err
				return
			}
			got <- app.Commit()
		}()
		select {
		case err := <-got:
			require.NoError(t, err)
		case <-time.After(500 * time.Millisecond):
			t.Fatal("an output's append or commit waits for the reload")
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, <-reloaded)
	took := time.Since(start)
	t.Logf("reload took %s", took)
	require.Greater(t, took, 2*time.Second, "the reload did wait for the queue to give up")
}

// TestForwardingClosed: after Close, neither appends nor a late reload
// open the log again (a second open panicked on its metrics).
func TestForwardingClosed(t *testing.T) {
	_, srv := newReceiver(nil)
	defer srv.Close()
	f, err := New(nil, prometheus.NewRegistry(), t.TempDir(), []string{srv.URL}, time.Second)
	require.NoError(t, err)
	require.NoError(t, f.ApplyConfig(nil))
	require.NoError(t, f.Close())
	require.Error(t, f.ApplyConfig(nil))
	require.Nil(t, f.AppenderV2(context.Background()))
	require.NoError(t, f.Close())
}

// TestForwardingOpenFails: a log that cannot be opened (its lock file is
// a folder here) is an error at start and at every later reload, never a
// panic from registering the module's metrics twice.
func TestForwardingOpenFails(t *testing.T) {
	_, srv := newReceiver(nil)
	defer srv.Close()
	dir := t.TempDir()
	// The log's lock file cannot be made where a folder is (a leftover
	// log, by contrast, is dropped at open).
	require.NoError(t, os.Mkdir(filepath.Join(dir, "lock"), 0o755))
	f, err := New(nil, prometheus.NewRegistry(), dir, []string{srv.URL}, time.Second)
	require.NoError(t, err)
	require.Error(t, f.ApplyConfig(nil))
	require.ErrorContains(t, f.ApplyConfig(nil), "restart")
	require.Nil(t, f.AppenderV2(context.Background()))
	require.NoError(t, f.Close())
}

// TestForwardingOutageAcrossTruncations: an upstream down for 4 hours gets
// every output once it is back, as the README promises; time is scaled
// down, the log's truncation period in the ratio of 4 h to the test's
// outage. The module's truncation deletes the log's oldest segments whether
// or not a queue has read them; the queue's reader, waiting on its full
// queue, then failed on the missing segment and started again from the
// present: at a 15 min period, the whole backlog of an outage longer than
// ~45 min was skipped (here: 100 of 1470 outputs arrived).
func TestForwardingOutageAcrossTruncations(t *testing.T) {
	const outage = 3 * time.Second
	o := startOutage(t, truncateEvery/(4*time.Hour/outage))
	n := o.logFor(outage)
	require.Eventually(t, func() bool { o.f.rs.Notify(); d, _ := o.rc.received(); return d == n }, 30*time.Second, 50*time.Millisecond,
		"every output logged during the outage arrives")
	_, rep := o.rc.received()
	require.Zero(t, rep, "each output once")
	require.Zero(t, testutil.ToFloat64(o.f.skips.m), "nothing skipped")
}

// TestForwardingCountsSkippedBacklog: an outage longer than the log keeps
// (its truncation deletes segments the queue's reader has not read, and the
// reader starts again from the present) loses outputs, which only an
// `error tailing WAL` in the log told: omen_forward_backlog_skipped_total
// now counts it, for the queue as the module's metrics name it, whatever
// the log level (omen's logger discards here). Its series is there at 0
// from the queue's start, so that increase() sees the first skip, and goes
// with the queue.
func TestForwardingCountsSkippedBacklog(t *testing.T) {
	// Ten truncations in the outage: each deletes the oldest segments.
	const outage = 2 * time.Second
	o := startOutage(t, outage/10)

	// The skipped counter names the queue as the module's metrics do.
	mfs, err := o.reg.Gather()
	require.NoError(t, err)
	var queueLabels, skipLabels []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "prometheus_remote_storage_shards":
				queueLabels = append(queueLabels, fmt.Sprint(m.GetLabel()))
			case "omen_forward_backlog_skipped_total":
				skipLabels = append(skipLabels, fmt.Sprint(m.GetLabel()))
				require.Zero(t, m.GetCounter().GetValue(), "there at 0 from the start")
			}
		}
	}
	require.Len(t, queueLabels, 1)
	require.Equal(t, queueLabels, skipLabels)

	n := o.logFor(outage)
	require.Eventually(t, func() bool { o.f.rs.Notify(); return testutil.ToFloat64(o.f.skips.m) >= 1 }, 30*time.Second, 50*time.Millisecond,
		"the skip is counted")
	d, _ := o.rc.received()
	t.Logf("%d of %d outputs forwarded, %g skips", d, n, testutil.ToFloat64(o.f.skips.m))
	require.Less(t, d, n, "outputs were lost")

	require.NoError(t, o.f.ApplyConfig(nil))
	require.Zero(t, testutil.CollectAndCount(o.f.skips.m), "the removed queue's series goes")
}

// outage is a forwarder whose one queue's receiver is down until logFor
// returns.
type outage struct {
	t   *testing.T
	f   *Forwarder
	rc  *receiver
	reg *prometheus.Registry

	mu   sync.Mutex
	down bool
}

// startOutage starts a forwarder whose log truncates every truncate, with
// one queue to a receiver that answers 503.
func startOutage(t *testing.T, truncate time.Duration) *outage {
	t.Helper()
	o := &outage{t: t, reg: prometheus.NewRegistry(), down: true}
	var srv *httptest.Server
	o.rc, srv = newReceiver(func(int) int {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.down {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	t.Cleanup(srv.Close)
	var err error
	o.f, err = New(nil, o.reg, t.TempDir(), nil, time.Minute)
	require.NoError(t, err)
	o.f.truncateEvery = truncate
	rw, err := URLConfig(srv.URL)
	require.NoError(t, err)
	// A queue that fills at once, so its log reader waits, as a full
	// queue's does seconds into a live outage.
	rw.QueueConfig.Capacity, rw.QueueConfig.MaxSamplesPerSend, rw.QueueConfig.MaxShards = 20, 10, 1
	rw.QueueConfig.BatchSendDeadline = model.Duration(10 * time.Millisecond)
	rw.QueueConfig.MinBackoff, rw.QueueConfig.MaxBackoff = model.Duration(10*time.Millisecond), model.Duration(50*time.Millisecond)
	require.NoError(t, o.f.ApplyConfig([]*promconfig.RemoteWriteConfig{rw}))
	t.Cleanup(func() { _ = o.f.Close() }) // before the receiver's: cleanups run last first
	return o
}

// logFor logs outputs of 10 series for d, then ends the outage, and returns
// how many it logged.
func (o *outage) logFor(d time.Duration) int {
	const series = 10
	start, begin := time.Now().Add(time.Second), time.Now()
	n := 0
	for ; time.Since(begin) < d; n++ {
		appendOutputs(o.t, o.f, series, 1, start.Add(time.Duration(n)*10*time.Millisecond))
		time.Sleep(20 * time.Millisecond) // a commit every 20 ms, as the scorers' batches come
	}
	o.mu.Lock()
	o.down = false
	o.mu.Unlock()
	return series * n
}

// TestForwardingRestartStartsAnEmptyLog: what an earlier run logged is
// never sent after a restart (a queue's reader skips the samples older than
// its start), so a start drops it. Kept, it was replayed at every start,
// and an omen restarted more often than the truncation period never
// truncated it: the log grew with every run.
func TestForwardingRestartStartsAnEmptyLog(t *testing.T) {
	_, srv := newReceiver(nil)
	defer srv.Close()
	dir := t.TempDir()
	for run := range 3 {
		reg := prometheus.NewRegistry()
		f, err := New(nil, reg, dir, []string{srv.URL}, time.Second)
		require.NoError(t, err)
		require.NoError(t, f.ApplyConfig(nil))
		require.Zero(t, gathered(t, reg, "omen_forward_prometheus_agent_active_series"), "run %d: nothing of the previous runs replayed", run)
		appendOutputs(t, f, 5, 3, time.Now().Add(time.Second))
		require.Equal(t, 5.0, gathered(t, reg, "omen_forward_prometheus_agent_active_series"))
		require.NoError(t, f.Close())
	}
}

// gathered returns the value of the unlabelled gauge name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1, name)
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}

// TestForwardingFileURLCredentials: a user and password in the URL of the
// configuration file's remote_write are sent as they were, and never
// logged: the module logs a queue's URL as it is, at its start, its stop
// and every failed send. Beside credentials of the file's own the password
// was still logged; what is sent there was measured before the URL lost
// its user: Go's HTTP client makes the URL's user the Authorization header
// first, which basic_auth and authorization then leave as it is, and which
// OAuth 2.0 replaces.
func TestForwardingFileURLCredentials(t *testing.T) {
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"oauthTok","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokens.Close()
	for _, tc := range []struct {
		name     string
		userinfo string
		http     config_util.HTTPClientConfig
		wantAuth string // the Authorization header the receiver got
	}{
		{name: "user and password", userinfo: "bob:filePW@", wantAuth: "Basic Ym9iOmZpbGVQVw=="},
		{name: "user only", userinfo: "bob@", wantAuth: "Basic Ym9iOg=="},
		{name: "no user", wantAuth: ""},
		{name: "beside basic_auth", userinfo: "bob:filePW@", http: config_util.HTTPClientConfig{BasicAuth: &config_util.BasicAuth{Username: "carol", Password: "other"}},
			wantAuth: "Basic Ym9iOmZpbGVQVw=="},
		{name: "beside authorization", userinfo: "bob:filePW@", http: config_util.HTTPClientConfig{Authorization: &config_util.Authorization{Type: "Bearer", Credentials: "tok"}},
			wantAuth: "Basic Ym9iOmZpbGVQVw=="},
		{name: "beside oauth2", userinfo: "bob:filePW@", http: config_util.HTTPClientConfig{OAuth2: &config_util.OAuth2{ClientID: "id", ClientSecret: "s", TokenURL: tokens.URL}},
			wantAuth: "Bearer oauthTok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, srv := newReceiver(nil)
			defer srv.Close()
			var logs syncbuf.Buffer
			reg := prometheus.NewRegistry()
			f, err := New(slog.New(slog.NewTextHandler(&logs, nil)), reg, t.TempDir(), nil, time.Minute)
			require.NoError(t, err)
			u, err := url.Parse(strings.Replace(srv.URL, "http://", "http://"+tc.userinfo, 1))
			require.NoError(t, err)
			rw := promconfig.DefaultRemoteWriteConfig
			rw.URL = &config_util.URL{URL: u}
			rw.HTTPClientConfig = tc.http
			rw.HTTPClientConfig.FollowRedirects = true
			rw.QueueConfig.BatchSendDeadline = model.Duration(10 * time.Millisecond)
			file := []*promconfig.RemoteWriteConfig{&rw}
			require.NoError(t, f.ApplyConfig(file))
			appendOutputs(t, f, 2, 2, time.Now().Add(time.Second))
			require.Eventually(t, func() bool { f.rs.Notify(); d, _ := rc.received(); return d == 4 }, 30*time.Second, 20*time.Millisecond)
			require.NoError(t, f.ApplyConfig(nil)) // the queue stops: logged too
			require.NoError(t, f.Close())

			rc.mu.Lock()
			require.Contains(t, rc.authz, tc.wantAuth)
			rc.mu.Unlock()
			require.Equal(t, strings.TrimSuffix(tc.userinfo, "@"), rw.URL.User.String(), "the file's configuration is not changed")
			require.Contains(t, logs.String(), "url="+srv.URL, "the queue's log lines name the URL")
			require.NotContains(t, logs.String(), "filePW")
			shown, err := yaml.Marshal(f.Configs(file))
			require.NoError(t, err)
			require.NotContains(t, string(shown), "filePW", "status/config")
		})
	}
}

// TestForwardingFailedReloadKeepsQueues: a reload the remote storage
// refuses (a new remote write's CA file not there yet, one given twice)
// leaves the queues as they were. The module refused it midway, with the
// unchanged queue taken out of its list: it ran on untracked, and the
// reload after it, back to the first configuration, started that queue
// again and panicked on its metrics registered twice.
func TestForwardingFailedReloadKeepsQueues(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func(keep, other *promconfig.RemoteWriteConfig) []*promconfig.RemoteWriteConfig
	}{
		{name: "a client that cannot be made", bad: func(keep, other *promconfig.RemoteWriteConfig) []*promconfig.RemoteWriteConfig {
			other.HTTPClientConfig.TLSConfig.CAFile = filepath.Join(t.TempDir(), "ca.pem")
			return []*promconfig.RemoteWriteConfig{keep, other}
		}},
		{name: "a remote write given twice", bad: func(keep, other *promconfig.RemoteWriteConfig) []*promconfig.RemoteWriteConfig {
			return []*promconfig.RemoteWriteConfig{keep, other, other}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, keep, other := twoQueues(t)

			reg := prometheus.NewRegistry()
			f, err := New(nil, reg, t.TempDir(), nil, time.Second)
			require.NoError(t, err)
			defer f.Close()
			require.NoError(t, f.ApplyConfig([]*promconfig.RemoteWriteConfig{keep}))
			require.Error(t, f.ApplyConfig(tc.bad(keep, other)))
			require.NotPanics(t, func() { require.NoError(t, f.ApplyConfig([]*promconfig.RemoteWriteConfig{keep})) })
			require.Equal(t, 1, testutil.CollectAndCount(reg, "prometheus_remote_storage_shards"), "one queue")

			// The queue kept is the one tracked: it still forwards.
			appendOutputs(t, f, 2, 2, time.Now().Add(time.Second))
			require.Eventually(t, func() bool { f.rs.Notify(); d, _ := rc.received(); return d == 4 }, 30*time.Second, 20*time.Millisecond)
		})
	}
}

// twoQueues is a receiver, and two remote writes to it: keep, which sends
// at once, and other.
func twoQueues(t *testing.T) (rc *receiver, keep, other *promconfig.RemoteWriteConfig) {
	t.Helper()
	rc, srv := newReceiver(nil)
	t.Cleanup(srv.Close)
	keep, err := URLConfig(srv.URL)
	require.NoError(t, err)
	keep.QueueConfig.BatchSendDeadline = model.Duration(10 * time.Millisecond)
	other, err = URLConfig(srv.URL + "/other")
	require.NoError(t, err)
	return rc, keep, other
}

// TestConfigsAsRun: /api/v1/status/config shows the remote writes as the
// queues run them. It showed `metadata_config: {send: true}`, Prometheus's
// default, for every queue while none sends metadata.
func TestConfigsAsRun(t *testing.T) {
	f, err := New(nil, prometheus.NewRegistry(), t.TempDir(), []string{"http://flag.example/push"}, time.Minute)
	require.NoError(t, err)
	file := promconfig.DefaultRemoteWriteConfig
	u, err := url.Parse("http://file.example/push")
	require.NoError(t, err)
	file.URL = &config_util.URL{URL: u}
	require.True(t, file.MetadataConfig.Send, "Prometheus's default")
	cfgs := f.Configs([]*promconfig.RemoteWriteConfig{&file})
	require.Len(t, cfgs, 2)
	for _, c := range cfgs {
		require.False(t, c.MetadataConfig.Send, c.URL.String())
	}
	require.True(t, file.MetadataConfig.Send, "the file's configuration is not changed")
	require.True(t, f.flags[0].MetadataConfig.Send, "nor the flags'")
}

// nopAppender takes every sample and commits.
type nopAppender struct{ storage.AppenderV2 }

func (nopAppender) Append(ref storage.SeriesRef, _ labels.Labels, _, _ int64, _ float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AOptions) (storage.SeriesRef, error) {
	return ref, nil
}
func (nopAppender) Commit() error { return nil }

// TestNewestCommitted: Close waits for the queues to send up to the newest
// output time committed: the greatest of a batch, not its last (a batch of
// several series need not be in time order), nor a later, older batch's.
// A tracker keeping a batch's last time failed no test; Close could then
// stop waiting before the newest outputs were sent. The subtests run in
// order on one Forwarder.
func TestNewestCommitted(t *testing.T) {
	f := &Forwarder{}
	commit := func(ts ...int64) {
		a := &tracker{AppenderV2: nopAppender{}, f: f, maxT: math.MinInt64}
		for i, ts := range ts {
			_, err := a.Append(0, labels.FromStrings("i", fmt.Sprint(i)), 0, ts, 1, nil, nil, storage.AOptions{})
			require.NoError(t, err)
		}
		require.NoError(t, a.Commit())
	}
	for _, tc := range []struct {
		name string
		ts   []int64
		want int64
	}{
		{"batch out of order", []int64{3000, 1000}, 3000},
		{"older batch later", []int64{2000}, 3000},
		{"newer batch", []int64{4000, 3500}, 4000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			commit(tc.ts...)
			require.Equal(t, tc.want, f.maxT.Load())
		})
	}
}

// TestCloseWhileTheLogTruncates: Close never waits for good on a
// truncation of the log that comes due as it closes. The prometheus
// module's agent DB takes its lock in Close and then waits for its
// truncation loop, which takes the same lock to truncate: a truncation
// due then (its timer and Close's stop both ready, the loop's select picks
// either) waited on Close, and Close on it, for good. Every millisecond
// here, as 1 Close in a few did with TestForwardingCountsSkippedBacklog's
// 200 ms on a loaded machine (its cleanup hung the package for 14 minutes).
func TestCloseWhileTheLogTruncates(t *testing.T) {
	_, srv := newReceiver(func(int) int { return 0 })
	defer srv.Close()
	stuck := 0
	for i := range 20 {
		f, err := New(nil, prometheus.NewRegistry(), t.TempDir(), nil, 100*time.Millisecond)
		require.NoError(t, err)
		f.truncateEvery, f.closeLogWait = time.Millisecond, 100*time.Millisecond
		rw, err := URLConfig(srv.URL)
		require.NoError(t, err)
		require.NoError(t, f.ApplyConfig([]*promconfig.RemoteWriteConfig{rw}))
		appendOutputs(t, f, 2, 1, time.Now())
		closed := make(chan error, 1)
		go func() { closed <- f.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				stuck++
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("Close %d still waiting after 30s", i)
		}
	}
	t.Logf("%d of 20 closes left the log closing", stuck)
}

// TestForwardingMetricsOnTheRegistry: every metric of the forwarding
// queue is on the registry omen passes in, once, from the queue's start:
// the prometheus module registers the samples, exemplars and histograms
// counted in (and its string interner's counter) on its default registry,
// which omen's /metrics does not serve. On abf5690 they were missing
// from it.
func TestForwardingMetricsOnTheRegistry(t *testing.T) {
	_, srv := newReceiver(nil)
	defer srv.Close()
	f, reg := openForwarder(t, srv.URL)
	defer f.Close()
	counts := func() map[string]float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		got := map[string]float64{}
		for _, mf := range mfs {
			if _, dup := got[mf.GetName()]; dup {
				t.Fatalf("%s twice", mf.GetName())
			}
			if len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetCounter() != nil {
				got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
			} else {
				got[mf.GetName()] = math.NaN()
			}
		}
		return got
	}
	globals := []string{
		"prometheus_remote_storage_samples_in_total",
		"prometheus_remote_storage_exemplars_in_total",
		"prometheus_remote_storage_histograms_in_total",
		"prometheus_remote_storage_string_interner_zero_reference_releases_total",
	}
	before := counts()
	for _, name := range globals {
		require.Contains(t, before, name)
	}
	const series, n = 3, 2
	appendOutputs(t, f, series, n, time.Now().Add(time.Second))
	after := counts()
	// The module's counter is the process's: other tests' forwarders
	// count into it too, but none runs in parallel with this one.
	require.Equal(t, float64(series*n), after["prometheus_remote_storage_samples_in_total"]-before["prometheus_remote_storage_samples_in_total"])

	// A second forwarder on a registry of its own (a test's, a restart
	// in the process) shows them too.
	f2, reg2 := openForwarder(t, srv.URL)
	defer f2.Close()
	n2, err := testutil.GatherAndCount(reg2, globals...)
	require.NoError(t, err)
	require.Equal(t, len(globals), n2)
}

// TestModuleCountersWithoutForwarding: with nothing forwarded (no
// --remote-write.url, no remote_write), the module's counters it keeps on
// its default registry are on omen's registry all the same, as Prometheus
// (2.42 and 3) shows them, at 0, with no remote_write configured. On
// 400a4a5 they were registered only once the forwarding log opened, and
// missing from /metrics otherwise.
func TestModuleCountersWithoutForwarding(t *testing.T) {
	reg := prometheus.NewRegistry()
	f, err := New(nil, reg, t.TempDir(), nil, time.Minute)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.ApplyConfig(nil))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]int{}
	for _, mf := range mfs {
		if slices.Contains(moduleGlobals, mf.GetName()) {
			require.Equal(t, dto.MetricType_COUNTER, mf.GetType(), mf.GetName())
			require.Len(t, mf.GetMetric(), 1, mf.GetName())
			require.Empty(t, mf.GetMetric()[0].GetLabel(), mf.GetName())
			got[mf.GetName()]++
		}
	}
	for _, name := range moduleGlobals {
		require.Equal(t, 1, got[name], name)
	}
}

// openForwarder starts a forwarder to url on a registry of its own, with a
// flush deadline of a minute; the caller closes it.
func openForwarder(t *testing.T, url string) (*Forwarder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	f, err := New(nil, reg, t.TempDir(), []string{url}, time.Minute)
	require.NoError(t, err)
	require.NoError(t, f.ApplyConfig(nil))
	return f, reg
}
