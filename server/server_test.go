package server

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gregexp "github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

func do(t *testing.T, h http.Handler, method, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	b, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return rec.Code, string(b), rec.Result().Header
}

func TestLifecycle(t *testing.T) {
	var ready atomic.Bool
	reloadErr := errors.New("defaults.direction: bad")
	var failReload atomic.Bool
	reg := prometheus.NewRegistry()
	m := NewMux(reg)
	reload := func() error {
		if failReload.Load() {
			return reloadErr
		}
		return nil
	}
	var quits atomic.Int32
	quit := func() { quits.Add(1) }
	Lifecycle{Ready: ready.Load, Reload: reload, Quit: quit, Enabled: true}.Register(m)
	off := NewMux(prometheus.NewRegistry())
	Lifecycle{Ready: ready.Load, Reload: reload, Quit: quit}.Register(off)
	m.Handle("/api/v1/x", "/api/v1/x", RequireReady(ready.Load)(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))

	for _, tc := range []struct {
		name         string
		ready, fail  bool
		method, path string
		code         int
		body         string
	}{
		{"healthy while opening", false, false, "GET", "/-/healthy", 200, "Healthy"},
		{"not ready while opening", false, false, "GET", "/-/ready", 503, "not ready"},
		{"API 503 while opening", false, false, "GET", "/api/v1/x", 503, "not ready"},
		{"ready", true, false, "GET", "/-/ready", 200, "Ready"},
		{"API once ready", true, false, "GET", "/api/v1/x", 200, "ok"},
		{"reload needs POST", true, false, "GET", "/-/reload", 405, "POST"},
		{"reload", true, false, "POST", "/-/reload", 200, "reloaded"},
		{"reload PUT", true, false, "PUT", "/-/reload", 200, "reloaded"},
		{"reload failure says why", true, true, "POST", "/-/reload", 500, reloadErr.Error()},
		{"quit needs POST", true, false, "GET", "/-/quit", 405, "POST"},
		{"quit", true, false, "POST", "/-/quit", 200, "Goodbye"},
		// As Prometheus: probes are GET or HEAD.
		{"healthy HEAD", false, false, "HEAD", "/-/healthy", 200, ""},
		{"healthy POST", true, false, "POST", "/-/healthy", 405, ""},
		{"ready DELETE", true, false, "DELETE", "/-/ready", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready.Store(tc.ready)
			failReload.Store(tc.fail)
			code, body, hdr := do(t, m, tc.method, tc.path)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.body)
			if code == 503 && tc.path == "/api/v1/x" {
				require.NotEmpty(t, hdr.Get("Retry-After"))
			}
		})
	}
	// Every request above was counted by handler and code.
	require.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("/-/reload", "500")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.requests.WithLabelValues("/-/reload", "200")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("/api/v1/x", "503")))

	// Without --web.enable-lifecycle, as Prometheus without it: 403, and
	// nothing reloaded.
	failReload.Store(true)
	code, body, _ := do(t, off, "POST", "/-/reload")
	require.Equal(t, 403, code)
	require.Contains(t, body, "Lifecycle API is not enabled")
	code, _, _ = do(t, off, "GET", "/-/reload")
	require.Equal(t, 405, code)
	code, _, _ = do(t, off, "POST", "/-/quit")
	require.Equal(t, 403, code)
	require.Equal(t, int32(1), quits.Load(), "the enabled one's POST only")

	// Enabled with no action wired: 403 too, where calling the nil
	// function panicked the handler (net/http drops the connection).
	unwired := NewMux(prometheus.NewRegistry())
	Lifecycle{Ready: ready.Load, Enabled: true}.Register(unwired)
	for _, path := range []string{"/-/reload", "/-/quit"} {
		code, _, _ = do(t, unwired, "POST", path)
		require.Equal(t, 403, code, path)
	}
}

func TestPprof(t *testing.T) {
	m := NewMux(prometheus.NewRegistry())
	m.HandlePprof()
	code, body, _ := do(t, m, "GET", "/debug/pprof/")
	require.Equal(t, 200, code)
	require.Contains(t, body, "goroutine")
}

// TestPprofCmdlineRedacted: the command line the profiler shows hides the
// passwords of URLs, as /api/v1/status/flags does.
func TestPprofCmdlineRedacted(t *testing.T) {
	old := os.Args
	defer func() { os.Args = old }()
	os.Args = []string{"omen", "serve", "--remote-write.url=http://user:hunt@er2@mimir:9009/push", "--backfill.remote-read-url=http://bob:pw2@prom:9090/api/v1/read"}
	m := NewMux(prometheus.NewRegistry())
	m.HandlePprof()
	code, body, _ := do(t, m, "GET", "/debug/pprof/cmdline")
	require.Equal(t, 200, code)
	require.NotContains(t, body, "hunt")
	require.NotContains(t, body, "er2")
	require.NotContains(t, body, "pw2")
	require.Contains(t, body, "--remote-write.url=http://user:xxxxx@mimir:9009/push")
	require.Contains(t, body, "http://bob:xxxxx@prom:9090/api/v1/read")
}

func TestRedactURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://a:b@h/x", "http://a:xxxxx@h/x"},
		{"http://a:b@c@h/x", "http://a:xxxxx@h/x"},
		{"--remote-write.url=http://omen:pa,ss@h:1/w", "--remote-write.url=http://omen:xxxxx@h:1/w"},
		{"[https://u:p@m/push http://plain/push]", "[https://u:xxxxx@m/push http://plain/push]"},
		{"http://user@h/x", "http://user@h/x"},
		{"http://u:p%zz@h/", "http://xxxxx@h/"},
		{"/var/omen", "/var/omen"},
		{"a@b.c", "a@b.c"},
	} {
		require.Equal(t, tc.want, RedactURLs(tc.in), tc.in)
	}
}

func TestConfigLoader(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	path := filepath.Join(t.TempDir(), "omen.yml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o644)) }

	t.Run("no file means defaults", func(t *testing.T) {
		l, err := NewConfigLoader(logger, prometheus.NewRegistry(), "")
		require.NoError(t, err)
		require.Equal(t, config.Default().Defaults.Direction, l.Config().Defaults.Direction)
		require.NoError(t, l.Reload())
	})
	t.Run("a bad file at start is an error", func(t *testing.T) {
		write("defaults: {direction: sideways}\n")
		_, err := NewConfigLoader(logger, prometheus.NewRegistry(), path)
		require.ErrorContains(t, err, "sideways")
	})

	write("defaults: {direction: up}\n")
	reg := prometheus.NewRegistry()
	l, err := NewConfigLoader(logger, reg, path)
	require.NoError(t, err)
	require.Equal(t, "up", string(l.Config().Defaults.Direction))
	var applied []string
	var refuse atomic.Bool
	l.OnReload(func(c *config.Config) error {
		if refuse.Load() {
			return errors.New("listener refused")
		}
		applied = append(applied, string(c.Defaults.Direction))
		return nil
	})
	success := func() float64 {
		return testutil.ToFloat64(l.success)
	}

	for _, tc := range []struct {
		name, file string
		refuse     bool
		err        string
		want       string // direction in force afterwards
	}{
		{"good reload applies", "defaults: {direction: down}\n", false, "", "down"},
		{"bad YAML keeps the old", "{{{", false, "yaml", "down"},
		{"invalid value keeps the old", "defaults: {direction: sideways}\n", false, "sideways", "down"},
		{"a listener's refusal keeps the old", "defaults: {direction: up}\n", true, "listener refused", "down"},
		{"recovers", "defaults: {direction: both}\n", false, "", "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.file)
			refuse.Store(tc.refuse)
			err := l.Reload()
			if tc.err != "" {
				require.Error(t, err)
				require.Contains(t, strings.ToLower(err.Error()), tc.err)
				require.Equal(t, 0.0, success())
			} else {
				require.NoError(t, err)
				require.Equal(t, 1.0, success())
			}
			require.Equal(t, tc.want, string(l.Config().Defaults.Direction))
		})
	}
	require.Equal(t, []string{"down", "both"}, applied)
}

// TestConfigLoaderLogsStart: the start says which configuration file was
// loaded and what it holds, as Prometheus's "Completed loading of
// configuration file" does; only reloads were logged, so an operator could
// not tell from the logs whether omen had read the file at all.
func TestConfigLoaderLogsStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "omen.yml")
	require.NoError(t, os.WriteFile(path, []byte("include: ['{job=\"api\"}']\nderived:\n  - {name: ratio, expr: up}\n"), 0o644))
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"a file", path, []string{`msg="Configuration loaded"`, "file=" + path, "include=1", "exclude=0", "derived=1", "remote_write=0"}},
		{"none", "", []string{"No configuration file (--config.file); scoring every series with the defaults"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf strings.Builder
			_, err := NewConfigLoader(slog.New(slog.NewTextHandler(&buf, nil)), prometheus.NewRegistry(), tc.path)
			require.NoError(t, err)
			for _, w := range tc.want {
				require.Contains(t, buf.String(), w)
			}
		})
	}
}

func TestMetricsHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "omen_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	stream := func(w io.Writer) error {
		_, err := io.WriteString(w, "# HELP streamed A streamed family.\n# TYPE streamed gauge\nstreamed{for=\"x\"} 7\n")
		return err
	}
	h := MetricsHandler(slog.New(slog.DiscardHandler), reg, stream)

	// gzip twice: the second answer is written by a pooled writer reset to
	// a new response, which must be a whole stream of its own.
	for _, gz := range []bool{false, true, true} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Header().Get("Content-Type"), "text/plain; version=0.0.4")
		var body io.Reader = rec.Body
		if gz {
			require.Equal(t, "gzip", rec.Header().Get("Content-Encoding"))
			zr, err := gzip.NewReader(rec.Body)
			require.NoError(t, err)
			body = zr
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := parser.TextToMetricFamilies(body)
		require.NoError(t, err)
		require.Equal(t, 3.0, mfs["omen_test_total"].GetMetric()[0].GetCounter().GetValue())
		require.Equal(t, 7.0, mfs["streamed"].GetMetric()[0].GetGauge().GetValue())
	}
}

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"gzip, deflate"}, true},
		{[]string{"deflate, GZIP;q=0.5"}, true},
		{[]string{"gzip;q=0, identity"}, false},
		{[]string{"gzip; q=0.0"}, false},
		{[]string{"identity"}, false},
		{[]string{"*"}, true},
		{[]string{"*;q=0"}, false},
		{[]string{"*, gzip;q=0"}, false},
		{[]string{"identity", "gzip"}, true},
	} {
		require.Equal(t, tc.want, acceptsGzip(tc.header), "%q", tc.header)
	}
	h := MetricsHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), nil)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip;q=0, identity")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Empty(t, rec.Header().Get("Content-Encoding"))
	require.Equal(t, "Accept-Encoding", rec.Header().Get("Vary"))
}

// TestHandleAPIByRoute: the query API's requests are counted per route, as
// Prometheus counts its own (one label for the whole API lumped remote read
// together with Grafana's queries), with path parameters folded and any
// other path under one label, so the label's values stay a fixed set.
func TestHandleAPIByRoute(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMux(reg)
	m.HandleAPI("/api/v1/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for _, p := range []string{"/api/v1/query", "/api/v1/query", "/api/v1/read", "/api/v1/label/job/values",
		"/api/v1/label/instance/values", "/api/v1/nope/x", "/api/v1/status/buildinfo"} {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		require.Equal(t, http.StatusNoContent, rec.Code, p)
	}
	for name, want := range map[string]float64{
		"/api/v1/query": 2, "/api/v1/read": 1, "/api/v1/label/:name/values": 2, "/api/v1/other": 1, "/api/v1/status/buildinfo": 1,
	} {
		require.Equal(t, want, testutil.ToFloat64(m.requests.WithLabelValues(name, "204")), name)
	}
	n, err := testutil.GatherAndCount(reg, "omen_http_requests_total")
	require.NoError(t, err)
	require.Equal(t, 5, n)
}

// TestAPIEndpoint: omen's endpoints beside Prometheus's API answer as its
// do: CORS headers for the origins allowed, 204 to a preflight, 405 to
// another method.
func TestAPIEndpoint(t *testing.T) {
	cors, err := gregexp.Compile(`^(?:https://grafana\.example\.com)$`)
	require.NoError(t, err)
	h := APIEndpoint(cors, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("list")) }), http.MethodGet, http.MethodPost)
	for _, tc := range []struct {
		method, origin string
		code           int
		body, acao     string
	}{
		{http.MethodGet, "https://grafana.example.com", http.StatusOK, "list", "https://grafana.example.com"},
		{http.MethodPost, "", http.StatusOK, "list", ""},
		{http.MethodGet, "https://evil.example.com", http.StatusOK, "list", ""},
		{http.MethodOptions, "https://grafana.example.com", http.StatusNoContent, "", "https://grafana.example.com"},
		{http.MethodDelete, "https://grafana.example.com", http.StatusMethodNotAllowed, "Method Not Allowed\n", "https://grafana.example.com"},
	} {
		t.Run(tc.method+" "+tc.origin, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/api/v1/anomalies", nil)
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tc.code, rec.Code)
			require.Equal(t, tc.body, rec.Body.String())
			require.Equal(t, tc.acao, rec.Header().Get("Access-Control-Allow-Origin"))
			if tc.code == http.StatusMethodNotAllowed {
				require.Equal(t, "GET, POST, OPTIONS", rec.Header().Get("Allow"))
			}
		})
	}
}

// TestConfigReadableDuringReload: a reload whose listener takes long (a
// changed remote-write queue flushing to a dead upstream, up to the flush
// deadline) held the lock the readers take: /api/v1/status/config and
// runtimeinfo waited a minute.
func TestConfigReadableDuringReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "omen.yml")
	require.NoError(t, os.WriteFile(path, []byte("{}\n"), 0o644))
	l, err := NewConfigLoader(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), path)
	require.NoError(t, err)
	release := make(chan struct{})
	entered := make(chan struct{})
	l.OnReload(func(*config.Config) error { close(entered); <-release; return nil })
	reloaded := make(chan error)
	go func() { reloaded <- l.Reload() }()
	<-entered
	got := make(chan struct{})
	go func() { l.Config(); l.Reloaded(); close(got) }()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Error("Config() waits for a reload in progress")
	}
	close(release)
	require.NoError(t, <-reloaded)
	<-got
}

// TestApplyBetweenReloads: a component that takes its first configuration
// while a reload runs (the forwarding log, opened once the server answers)
// read the old one and applied it over the reload's.
func TestApplyBetweenReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "omen.yml")
	require.NoError(t, os.WriteFile(path, []byte("exclude: ['{a=\"old\"}']\n"), 0o644))
	l, err := NewConfigLoader(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), path)
	require.NoError(t, err)
	entered, release := make(chan struct{}), make(chan struct{})
	l.OnReload(func(*config.Config) error { close(entered); <-release; return nil })
	require.NoError(t, os.WriteFile(path, []byte("exclude: ['{a=\"new\"}']\n"), 0o644))
	reloaded := make(chan error)
	go func() { reloaded <- l.Reload() }()
	<-entered
	applied := make(chan []string)
	go func() {
		_ = l.Apply(func(c *config.Config) error { applied <- c.Exclude; return nil })
	}()
	select {
	case got := <-applied:
		t.Fatalf("applied %v while the reload ran", got)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-reloaded)
	require.Equal(t, []string{`{a="new"}`}, <-applied)
}

// BenchmarkMetricsHandler is one scrape of a stream of 100 000 lines shaped
// like omen's outputs, plain and gzipped as Prometheus asks for it: the
// handler's CPU per line, and the bytes it sends.
//
//	go test -run '^$' -bench MetricsHandler -benchmem ./server
func BenchmarkMetricsHandler(b *testing.B) {
	const lines = 100000
	var text []byte
	for i := range lines {
		text = fmt.Appendf(text, "anomaly_score{cpu=\"%d\",for=\"node_cpu_seconds_total\",instance=\"10.0.%d.%d:9100\",job=\"node\",mode=\"idle\"} %g\n",
			i%64, i/256%256, i%256, float64(i%1000)/997)
	}
	stream := func(w io.Writer) error {
		for off := 0; off < len(text); off += 64 << 10 { // as WriteOutputs' bufio flushes
			if _, err := w.Write(text[off:min(off+64<<10, len(text))]); err != nil {
				return err
			}
		}
		return nil
	}
	h := MetricsHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), stream)
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			b.ReportAllocs()
			var sent int
			for range b.N {
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept-Encoding", enc)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				sent = rec.Body.Len()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
			b.ReportMetric(float64(sent)/lines, "B/line")
		})
	}
}

// TestNilLoggerIsNoOp: a nil logger means no logging, as for every
// constructor here (STYLE.md, constructors), not a panic at the first line
// logged: the config loader logs as it loads and reloads, the metrics
// handler when a gatherer fails in part.
func TestNilLoggerIsNoOp(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"config loader", func(t *testing.T) {
			l, err := NewConfigLoader(nil, nil, "")
			require.NoError(t, err)
			require.NoError(t, l.Reload())
		}},
		{"metrics handler", func(t *testing.T) {
			reg := prometheus.NewRegistry()
			g := prometheus.Gatherers{reg, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
				return nil, errors.New("a collector failed")
			})}
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: "omen_test_total", Help: "A counter."})
			reg.MustRegister(c)
			rec := httptest.NewRecorder()
			MetricsHandler(nil, g, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			require.Equal(t, http.StatusOK, rec.Code, "what was gathered is served")
			require.Contains(t, rec.Body.String(), "omen_test_total")
		}},
	} {
		t.Run(tc.name, tc.run)
	}
}
