package server

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// writeWebConfig writes a web config with the given users (plaintext
// passwords, hashed here at bcrypt's lowest cost to keep the test quick).
func writeWebConfig(t *testing.T, path string, users map[string]string, extra string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(extra)
	if len(users) > 0 {
		b.WriteString("basic_auth_users:\n")
		for u, p := range users {
			h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
			require.NoError(t, err)
			fmt.Fprintf(&b, "  %s: %s\n", u, h)
		}
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
}

func newAuthServer(t *testing.T, path string) (*httptest.Server, *BasicAuth) {
	t.Helper()
	h, a := newAuthHandler(t, path)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, a
}

// newAuthHandler is the handler of newAuthServer: a few of omen's paths,
// each answering "ok <path>", behind the basic auth of the file at path.
func newAuthHandler(t *testing.T, path string) (http.Handler, *BasicAuth) {
	t.Helper()
	conf, err := LoadWebConfig(nil, path)
	require.NoError(t, err)
	a, err := NewBasicAuth(nil, prometheus.NewRegistry(), conf, HealthyPath)
	require.NoError(t, err)
	mux := http.NewServeMux()
	for _, p := range []string{"/metrics", "/api/v1/query", "/api/v1/write", "/-/ready", HealthyPath, "/{$}"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok " + r.URL.Path)) })
	}
	return a.Wrap(mux), a
}

func get(t *testing.T, url, user, pass string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

func TestBasicAuth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	writeWebConfig(t, path, map[string]string{"alice": "s3cret", "bob": "hunter2"},
		"http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
	srv, a := newAuthServer(t, path)

	for _, tc := range []struct {
		name, path, user, pass string
		code                   int
	}{
		{"no credentials", "/metrics", "", "", http.StatusUnauthorized},
		{"no credentials, root", "/", "", "", http.StatusUnauthorized},
		{"no credentials, ready", "/-/ready", "", "", http.StatusUnauthorized},
		{"no credentials, write", "/api/v1/write", "", "", http.StatusUnauthorized},
		{"wrong password", "/api/v1/query", "alice", "hunter2", http.StatusUnauthorized},
		{"unknown user", "/api/v1/query", "mallory", "s3cret", http.StatusUnauthorized},
		{"empty password", "/api/v1/query", "alice", "", http.StatusUnauthorized},
		{"right password", "/api/v1/query", "alice", "s3cret", http.StatusOK},
		{"right password again (cached)", "/metrics", "alice", "s3cret", http.StatusOK},
		{"wrong password after a cached right one", "/metrics", "alice", "s3cret!", http.StatusUnauthorized},
		{"another user", "/-/ready", "bob", "hunter2", http.StatusOK},
		{"healthy without credentials", "/-/healthy", "", "", http.StatusOK},
		{"healthy with wrong credentials", "/-/healthy", "alice", "nope", http.StatusOK},
		{"path that cleans to healthy is not exempt", "/-/ready/../healthy", "", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, srv.URL+tc.path, tc.user, tc.pass)
			require.Equal(t, tc.code, resp.StatusCode)
			require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			if tc.code == http.StatusUnauthorized {
				require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic")
			} else {
				require.Empty(t, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	require.Equal(t, 9.0, testutil.ToFloat64(a.failures)) // the 401 rows above
}

// TestBasicAuthReload: the file is re-read when it changes, a changed
// password replaces the cached one, and a broken file keeps the last good
// configuration rather than opening or closing the door.
func TestBasicAuthReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	writeWebConfig(t, path, map[string]string{"alice": "old"}, "")
	srv, _ := newAuthServer(t, path)
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/metrics", "alice", "old").StatusCode)

	// A later modification time makes the change visible even on file
	// systems with coarse timestamps.
	touch := func() {
		future := time.Now().Add(time.Hour)
		require.NoError(t, os.Chtimes(path, future, future))
	}
	writeWebConfig(t, path, map[string]string{"alice": "new"}, "")
	touch()
	require.Equal(t, http.StatusUnauthorized, get(t, srv.URL+"/metrics", "alice", "old").StatusCode)
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/metrics", "alice", "new").StatusCode)

	require.NoError(t, os.WriteFile(path, []byte("basic_auth_users: [not, a, map]\n"), 0o600))
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/metrics", "alice", "new").StatusCode)
	require.Equal(t, http.StatusUnauthorized, get(t, srv.URL+"/metrics", "", "").StatusCode)

	// No users, as a file caught half-written reads: authentication stays
	// on (turning it off takes a restart).
	writeWebConfig(t, path, nil, "http_server_config: {http2: true}\n")
	touch()
	require.Equal(t, http.StatusUnauthorized, get(t, srv.URL+"/metrics", "", "").StatusCode)
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	require.Equal(t, http.StatusUnauthorized, get(t, srv.URL+"/metrics", "", "").StatusCode)
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/metrics", "alice", "new").StatusCode)
}

// TestWebConfigWeakens: at runtime a new file may add or change users and
// certificates, but not turn authentication or TLS off.
func TestWebConfigWeakens(t *testing.T) {
	users := &web.Config{Users: map[string]config_util.Secret{"alice": "x"}}
	tlsOn := &web.Config{TLSConfig: web.TLSConfig{TLSCertPath: "c", TLSKeyPath: "k"}}
	for _, tc := range []struct {
		name     string
		old, new *web.Config
		want     string
	}{
		{"users removed", users, &web.Config{}, "turning authentication off needs a restart"},
		{"tls removed", tlsOn, &web.Config{}, "turning TLS off needs a restart"},
		{"users added", &web.Config{}, users, ""},
		{"users kept", users, users, ""},
		{"tls kept", tlsOn, tlsOn, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := weakens(tc.old, tc.new)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestLoadWebConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"not bcrypt", "basic_auth_users:\n  alice: plaintext\n", "hashedSecret too short"},
		{"unknown key", "basic_auth: {}\n", "field basic_auth not found"},
		{"header not allowed", "http_server_config:\n  headers:\n    Server: omen\n", `"Server" can not be configured`},
		{"missing key file", "tls_server_config:\n  cert_file: c.pem\n", "missing one of key or key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yml")
			require.NoError(t, os.WriteFile(p, []byte(tc.content), 0o600))
			_, err := LoadWebConfig(nil, p)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := LoadWebConfig(nil, filepath.Join(dir, "absent.yml"))
	require.ErrorContains(t, err, "no such file")
}

// BenchmarkBasicAuth measures the per-request cost once a password is
// cached (no bcrypt): go test -run '^$' -bench BasicAuth -benchmem ./server/
func BenchmarkBasicAuth(b *testing.B) {
	path := filepath.Join(b.TempDir(), "web.yml")
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	require.NoError(b, err)
	require.NoError(b, os.WriteFile(path, []byte("basic_auth_users:\n  alice: "+string(h)+"\n"), 0o600))
	conf, err := LoadWebConfig(nil, path)
	require.NoError(b, err)
	a, err := NewBasicAuth(nil, nil, conf, HealthyPath)
	require.NoError(b, err)
	handler := a.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.SetBasicAuth("alice", "pw")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		handler.ServeHTTP(w, req)
	}
	require.Equal(b, http.StatusOK, w.Code)
}

// TestBasicAuthConcurrent runs requests with right and wrong passwords
// while the file changes, for the race detector (go test -race).
func TestBasicAuthConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	writeWebConfig(t, path, map[string]string{"alice": "pw"}, "")
	srv, _ := newAuthServer(t, path)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				pass, want := "pw", http.StatusOK
				if (i+j)%3 == 0 {
					pass, want = "nope", http.StatusUnauthorized
				}
				require.Equal(t, want, get(t, srv.URL+"/metrics", "alice", pass).StatusCode)
			}
		}()
	}
	for i := range 5 {
		writeWebConfig(t, path, map[string]string{"alice": "pw", "bob": fmt.Sprint(i)}, "")
		future := time.Now().Add(time.Duration(i+1) * time.Hour)
		require.NoError(t, os.Chtimes(path, future, future))
	}
	wg.Wait()
}

// TestWebConfigRotationSameSizeAndMtime: a password rotated into a file of
// the same size whose modification time is kept (cp -p, rsync -t, a coarse
// clock) takes effect: the old password went on working until the file
// changed again or omen restarted.
func TestWebConfigRotationSameSizeAndMtime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	writeWebConfig(t, path, map[string]string{"bob": "old-password"}, "")
	srv, _ := newAuthServer(t, path)
	require.Equal(t, http.StatusOK, get(t, srv.URL+"/metrics", "bob", "old-password").StatusCode)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	writeWebConfig(t, path, map[string]string{"bob": "new-password"}, "") // bcrypt hashes are all 60 bytes
	require.NoError(t, os.Chtimes(path, fi.ModTime(), fi.ModTime()))
	time.Sleep(webConfigRecheck)
	for _, tc := range []struct {
		pass string
		code int
	}{{"old-password", http.StatusUnauthorized}, {"new-password", http.StatusOK}} {
		require.Equal(t, tc.code, get(t, srv.URL+"/metrics", "bob", tc.pass).StatusCode, tc.pass)
	}
}

// TestBasicAuthRateLimit: the web config's rate_limit answers 429 past its
// burst, except on the exempt paths: a liveness probe refused under load
// would have the orchestrator restart a healthy omen. Neither the limit
// nor the exemption was tested (both could be dropped).
func TestBasicAuthRateLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	writeWebConfig(t, path, nil, "rate_limit:\n  interval: 1h\n  burst: 2\n")
	srv, _ := newAuthServer(t, path)
	for i, tc := range []struct {
		path string
		code int
	}{
		{"/metrics", http.StatusOK},
		{"/metrics", http.StatusOK},
		{"/metrics", http.StatusTooManyRequests},
		{"/api/v1/write", http.StatusTooManyRequests},
		{HealthyPath, http.StatusOK},
		{HealthyPath, http.StatusOK},
		{HealthyPath, http.StatusOK},
	} {
		require.Equal(t, tc.code, get(t, srv.URL+tc.path, "", "").StatusCode, "request %d, %s", i, tc.path)
	}
}

// TestUnknownUserCostsAsAKnownOne: the hash an unknown user's password is
// checked against has the users' highest bcrypt cost, so that an unknown
// user costs as much time as a wrong password (bcrypt's time is set by its
// cost: at 10 beside a user's 12, 69 against 270 ms, which told which users
// exist). Asserted on the cost rather than timed: a timing on a shared
// machine could fail by load alone.
func TestUnknownUserCostsAsAKnownOne(t *testing.T) {
	hash := func(cost int) config_util.Secret {
		h, err := bcrypt.GenerateFromPassword([]byte("s3cret"), cost)
		require.NoError(t, err)
		return config_util.Secret(h)
	}
	for _, tc := range []struct {
		name  string
		users map[string]config_util.Secret
		want  int
	}{
		{"one user at 11", map[string]config_util.Secret{"alice": hash(11)}, 11},
		{"the highest of 4 and 11", map[string]config_util.Secret{"alice": hash(bcrypt.MinCost), "bob": hash(11)}, 11},
		{"no valid hash", map[string]config_util.Secret{"alice": "not a hash"}, bcrypt.MinCost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &loadedWebConfig{cfg: &web.Config{Users: tc.users}}
			cost, err := bcrypt.Cost(l.dummyHash())
			require.NoError(t, err)
			require.Equal(t, tc.want, cost)
			require.Equal(t, l.dummyHash(), l.dummyHash(), "made once")
		})
	}
}

// loggedAuth is a handler answering 200 behind the basic auth of a web
// configuration with users and extra, logging at info into the buffer
// returned.
func loggedAuth(t *testing.T, users map[string]string, extra string) (http.Handler, *BasicAuth, *bytes.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "web.yml")
	writeWebConfig(t, path, users, extra)
	conf, err := LoadWebConfig(nil, path)
	require.NoError(t, err)
	buf := new(bytes.Buffer)
	logger := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := NewBasicAuth(logger, prometheus.NewRegistry(), conf)
	require.NoError(t, err)
	return a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})), a, buf
}

// TestWrongCredentialsWarned: a sender with a wrong password (a rotated
// secret not rolled out to every Prometheus) is refused at every send, and
// omen logged it at debug alone: nothing where an operator looks, though
// every sample was lost. Requests with credentials that fail are a warning
// at once, then at most one a minute with the count since, and never name
// the user or the password; requests with none (a browser before its
// prompt) stay at debug.
func TestWrongCredentialsWarned(t *testing.T) {
	h, a, buf := loggedAuth(t, map[string]string{"alice": "s3cret"}, "")
	send := func(user, pass string) int {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/write", nil)
		if user != "" {
			r.SetBasicAuth(user, pass)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}

	for range 20 {
		require.Equal(t, http.StatusUnauthorized, send("", ""))
	}
	require.Empty(t, buf.String(), "no credentials is a browser's first request: not a warning")

	for range 100 {
		require.Equal(t, http.StatusUnauthorized, send("alice", "rotated-Pa55word"))
		require.Equal(t, http.StatusUnauthorized, send("mallory", "s3cret"))
	}
	out := buf.String()
	require.Equal(t, 1, strings.Count(out, "level=WARN"), out)
	require.Contains(t, out, "path=/api/v1/write")
	require.Contains(t, out, "remote=192.0.2.1:1234") // httptest's
	require.Contains(t, out, "refused_requests=1")
	for _, secret := range []string{"alice", "mallory", "rotated-Pa55word", "s3cret"} {
		require.NotContains(t, out, secret)
	}
	require.Equal(t, 220.0, testutil.ToFloat64(a.failures))
}

// TestRateLimitedWarned: a request refused with 429 by the web
// configuration's rate_limit is dropped by a sender that does not retry
// 429s (Prometheus by default, the OpenTelemetry Collector's exporter), and
// omen logged none of them. Now a warning at once, then at most one a
// minute with the count since.
func TestRateLimitedWarned(t *testing.T) {
	h, _, buf := loggedAuth(t, nil, "rate_limit:\n  interval: 1h\n  burst: 1\n")
	buf.Reset() // "Rate limiter is enabled"
	codes := map[int]int{}
	for range 101 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/v1/write", nil))
		codes[w.Code]++
	}
	require.Equal(t, map[int]int{http.StatusOK: 1, http.StatusTooManyRequests: 100}, codes)
	out := buf.String()
	require.Equal(t, 1, strings.Count(out, "level=WARN"), out)
	require.Contains(t, out, "path=/api/v1/write")
	require.Contains(t, out, "remote=192.0.2.1:1234")
	require.Contains(t, out, "refused_requests=1")
}

// TestRefusedLogBounded: the path a refusal's warning names is bounded.
// The rate_limit refuses before any credentials are asked, so anyone
// reaching the port chose the path, up to the HTTP server's 1 MiB request
// line: it went whole into the warning (a 1 MiB line a minute, past what a
// log shipper takes as one line) and into every debug line. Before the
// fix each line here was over 1 MiB.
func TestRefusedLogBounded(t *testing.T) {
	long := "/" + strings.Repeat("a", 1<<20)
	for _, tc := range []struct {
		name  string
		users map[string]string
		extra string
		creds bool
	}{
		{"rate_limit", nil, "rate_limit:\n  interval: 1h\n  burst: 1\n", false},
		{"wrong credentials", map[string]string{"alice": "s3cret"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _, buf := loggedAuth(t, tc.users, tc.extra)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)) // the burst
			buf.Reset()
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.URL.Path = long
			if tc.creds {
				r.SetBasicAuth("alice", "wrong")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.GreaterOrEqual(t, w.Code, 400)
			out := strings.TrimSpace(buf.String())
			require.Contains(t, out, "level=WARN")
			require.Contains(t, out, "path=/aaaa", "the start is kept")
			require.Less(t, len(out), 4<<10)
		})
	}
}

// TestLimitedSuppressedAllocFree: a request over the rate_limit, past the
// minute's warning, costs no allocation for its log line below debug. The
// rate_limit refuses before credentials, so anyone reaching the port makes
// as many as it likes; the debug line's arguments were boxed whether or
// not debug was on, 2 allocations a request (AllocsPerRun 2 on 9b4f153).
func TestLimitedSuppressedAllocFree(t *testing.T) {
	a := &BasicAuth{logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", nil)
	a.logLimited(r) // the warning
	require.Zero(t, testing.AllocsPerRun(100, func() { a.logLimited(r) }))
}
