package pipeline

import (
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// authenticated serves h to requests auth accepts, and 401 to the others,
// as a Prometheus behind --web.config.file or a Mimir gateway does.
func authenticated(h http.Handler, auth func(r *http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !auth(r) {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loadConfig writes yml and the files beside it to a directory, and loads
// it as a start does (relative file names are the file's directory's).
func loadConfig(t *testing.T, yml string, files map[string]string) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	path := filepath.Join(dir, "omen.yml")
	require.NoError(t, os.WriteFile(path, []byte(yml), 0o600))
	c, err := config.LoadFile(path)
	require.NoError(t, err)
	return c, dir
}

// TestBackfillRemoteReadAuthenticated: the configuration file's remote_read
// entry gives the warm start's upstream its credentials, TLS and headers
// as Prometheus's remote_read does; before it, only a URL with user:pass
// could, and an upstream behind a bearer token, a private CA or a tenant
// header warmed nothing.
func TestBackfillRemoteReadAuthenticated(t *testing.T) {
	const n = 150
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	vs := seasonal(n+1, 9)
	for _, tc := range []struct {
		name  string
		tls   bool
		auth  func(r *http.Request) bool
		entry string // the remote_read entry after its url
		files map[string]string
	}{
		{
			name:  "basic_auth password_file",
			auth:  func(r *http.Request) bool { u, p, ok := r.BasicAuth(); return ok && u == "omen" && p == "s3cret" },
			entry: "    basic_auth: {username: omen, password_file: pw}\n",
			// A trailing newline, as `echo` and a Secret's file leave.
			files: map[string]string{"pw": "s3cret\n"},
		},
		{
			name:  "authorization credentials_file",
			auth:  func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer t0ken" },
			entry: "    authorization: {credentials_file: token}\n",
			files: map[string]string{"token": "t0ken"},
		},
		{
			name:  "tenant header",
			auth:  func(r *http.Request) bool { return r.Header.Get("X-Scope-OrgID") == "team-a" },
			entry: "    headers: {X-Scope-OrgID: team-a}\n",
		},
		{
			name:  "TLS with a private CA",
			tls:   true,
			auth:  func(r *http.Request) bool { return r.TLS != nil },
			entry: "    tls_config: {ca_file: ca.pem}\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := authenticated(upstream(t, []labels.Labels{ls}, vs[:n], atStep), tc.auth)
			srv := httptest.NewUnstartedServer(h)
			files := map[string]string{}
			for k, v := range tc.files {
				files[k] = v
			}
			if tc.tls {
				srv.StartTLS()
				files["ca.pem"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
			} else {
				srv.Start()
			}
			defer srv.Close()
			cfg, _ := loadConfig(t, fmt.Sprintf("remote_read:\n  - url: %s/api/v1/read\n%s", srv.URL, tc.entry), files)

			e := newEnv(t, "", cfg, func(o *Options) { o.Workers = 1 })
			e.clock.set(t0.Add(n * stepMs * time.Millisecond))
			e.push(atStep(n), model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e.backfilled(t)
			require.Zero(t, testutil.ToFloat64(e.p.m.backfillFailed))
			requireFedInOrder(t, e, func(*series) bool { return true }, vs, "warmed from the authenticated upstream")
		})
	}
}

// TestBackfillRemoteReadWrongPassword: an upstream refusing omen's
// credentials costs the warm start, not the scoring: the series scores
// cold, the failure is counted and logged with the upstream's status, and
// once the password file holds the right password (a rotated Secret) the
// next read after the backoff warms it, without a reload, as
// Prometheus reads a password_file at each request.
func TestBackfillRemoteReadWrongPassword(t *testing.T) {
	const n = 150
	ls := labels.FromStrings("__name__", "temperature")
	vs := seasonal(n+1, 5)
	h := authenticated(upstream(t, []labels.Labels{ls}, vs[:n], atStep), func(r *http.Request) bool {
		_, p, ok := r.BasicAuth()
		return ok && p == "right"
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	cfg, dir := loadConfig(t, fmt.Sprintf("remote_read:\n  - url: %s/api/v1/read\n    basic_auth: {username: omen, password_file: pw}\n", srv.URL), map[string]string{"pw": "wrong"})

	var logs syncbuf.Buffer
	e := newEnvLogged(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)), func(o *Options) { o.Workers = 1 })
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(atStep(n), model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
	e.sync()
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.backfillFailed) >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.NotNil(t, e.onlySeries(), "scored cold meanwhile")
	require.Zero(t, testutil.ToFloat64(e.p.m.warmed))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "401") }, 5*time.Second, 10*time.Millisecond)
	require.NotContains(t, logs.String(), "wrong", "the password is not logged")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "pw"), []byte("right"), 0o600))
	time.Sleep(3 * backfillPoll)
	e.clock.set(e.clock.Now().Add(time.Minute))
	e.backfilled(t)
	requireFedInOrder(t, e, func(*series) bool { return true }, vs, "warmed once the password file is right")
}

// TestBackfillRemoteReadFlagAndFile: --backfill.remote-read-url and the
// file's remote_read may name the same upstream (the file's credentials
// are then used); two upstreams are refused, naming both without their
// passwords.
func TestBackfillRemoteReadFlagAndFile(t *testing.T) {
	file := func(u string) *config.Config {
		c, _ := loadConfig(t, "remote_read:\n  - url: "+u+"\n    headers: {X-Scope-OrgID: team-a}\n", nil)
		return c
	}
	for _, tc := range []struct {
		name, flag string
		cfg        *config.Config
		wantErr    string
		wantHeader bool
	}{
		{name: "flag alone", flag: "http://up:9090/api/v1/read"},
		{name: "file alone", cfg: file("http://up:9090/api/v1/read"), wantHeader: true},
		{name: "same upstream", flag: "http://alice:pw@up:9090/api/v1/read", cfg: file("http://up:9090/api/v1/read"), wantHeader: true},
		{name: "two upstreams", flag: "http://alice:s3cr3t@other:9090/api/v1/read", cfg: file("http://up:9090/api/v1/read"), wantErr: "remote_read url http://up:9090/api/v1/read and --backfill.remote-read-url http://alice:xxxxx@other:9090/api/v1/read: two upstreams"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{BackfillRemoteReadURL: tc.flag}
			rr, err := o.remoteRead(tc.cfg)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.NotContains(t, err.Error(), "s3cr3t")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantHeader, rr.Headers["X-Scope-OrgID"] == "team-a")
		})
	}
}

// TestBackfillRemoteReadReload: a reload that changes the upstream's
// credentials takes effect at the next read; one that adds, removes or
// moves the upstream is refused and changes nothing.
func TestBackfillRemoteReadReload(t *testing.T) {
	const n = 150
	ls := labels.FromStrings("__name__", "temperature")
	vs := seasonal(n+1, 5)
	h := authenticated(upstream(t, []labels.Labels{ls}, vs[:n], atStep), func(r *http.Request) bool {
		return r.Header.Get("Authorization") == "Bearer new"
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	entry := func(u, token string) string {
		return fmt.Sprintf("remote_read:\n  - url: %s/api/v1/read\n    authorization: {credentials: %s}\n", u, token)
	}
	old, _ := loadConfig(t, entry(srv.URL, "old"), nil)
	e := newEnv(t, "", old, func(o *Options) { o.Workers = 1 })
	before := e.p.bf.up()

	for _, tc := range []struct{ name, yml, wantErr string }{
		{"removed", "include: ['{job=\"a\"}']\n", "removed by a reload takes a restart"},
		{"moved", entry("http://elsewhere:9090", "new"), "moved elsewhere by a reload takes a restart"},
		{"two", entry(srv.URL, "new") + "  - url: http://elsewhere:9090/api/v1/read\n", "one upstream at most"},
	} {
		c, err := config.Load([]byte(tc.yml))
		if err == nil {
			var commit func()
			commit, err = e.p.PrepareConfig(c)
			require.Nil(t, commit, tc.name)
			require.Equal(t, err, e.p.ApplyConfig(c))
		}
		require.ErrorContains(t, err, tc.wantErr, tc.name)
		require.Same(t, before, e.p.bf.up(), "%s: the upstream in force is kept", tc.name)
	}
	same, _ := loadConfig(t, entry(srv.URL, "old"), nil)
	require.NoError(t, e.p.ApplyConfig(same))
	require.Same(t, before, e.p.bf.up(), "an unchanged entry keeps its client (and connections)")

	next, _ := loadConfig(t, entry(srv.URL, "new"), nil)
	commit, err := e.p.PrepareConfig(next)
	require.NoError(t, err)
	require.Same(t, before, e.p.bf.up(), "prepared, not committed: nothing changed")
	require.Same(t, same, e.p.cfg.Load(), "prepared, not committed: nothing changed")
	commit()
	require.NotSame(t, before, e.p.bf.up(), "committed: the new credentials' client")
	require.Same(t, next, e.p.cfg.Load())
	e.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e.push(atStep(n), model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
	e.backfilled(t)
	require.Zero(t, testutil.ToFloat64(e.p.m.backfillFailed))
	requireFedInOrder(t, e, func(*series) bool { return true }, vs, "warmed with the reloaded credentials")

	cold := newEnv(t, "", nil, nil)
	require.ErrorContains(t, cold.p.ApplyConfig(next), "given by a reload takes a restart")
	require.Nil(t, cold.p.bf)
}

// TestRemoteReadClientMetricsOnTheRegistry: the metrics of the module's
// remote-read client, which reads the warm start's upstream, are on the
// registry omen passes in, as they are on Prometheus's /metrics with a
// remote_read: the in-flight gauge of the upstream from the start, and
// the queries and their latency once it is read. The module registers
// them on client_golang's default registry, which omen's /metrics does
// not serve; on 400a4a5 none was on it.
func TestRemoteReadClientMetricsOnTheRegistry(t *testing.T) {
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	up := openDB(t, t.TempDir())
	defer up.Close()
	a := up.AppenderV2(context.Background())
	for i := range 10 {
		_, err := a.Append(0, ls, 0, t0.UnixMilli()+int64(i)*stepMs, float64(i), nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, a.Commit())
	srv := httptest.NewServer(remote.NewReadHandler(nil, nil, up, func() promconfig.Config { return promconfig.Config{} }, 0, 1, 1<<20))
	defer srv.Close()
	e := newEnv(t, "", nil, func(o *Options) { o.BackfillRemoteReadURL = srv.URL; o.Workers = 1 })
	// The series of this test's upstream: the module's vectors are the
	// process's, other tests' upstreams have theirs.
	ours := func(name string) []*dto.Metric {
		mfs, err := e.reg.Gather()
		require.NoError(t, err)
		var got []*dto.Metric
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "url" && l.GetValue() == srv.URL {
						got = append(got, m)
					}
				}
			}
		}
		return got
	}
	inflight := ours("prometheus_remote_read_client_queries")
	require.Len(t, inflight, 1, "the upstream's in-flight gauge, from the start")
	require.Zero(t, inflight[0].GetGauge().GetValue())

	e.push(t0.UnixMilli()+10*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{10})
	e.backfilled(t)
	require.Equal(t, 10.0, testutil.ToFloat64(e.p.m.warmed), "read from the upstream")
	queries := ours("prometheus_remote_read_client_queries_total")
	require.NotEmpty(t, queries)
	total := 0.0
	for _, m := range queries {
		total += m.GetCounter().GetValue()
	}
	require.Positive(t, total)
	latency := ours("prometheus_remote_read_client_request_duration_seconds")
	require.NotEmpty(t, latency)
	require.Positive(t, latency[0].GetHistogram().GetSampleCount())
}
