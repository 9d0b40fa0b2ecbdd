package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// TestExternalURL: Prometheus's cases (cmd/prometheus/main_test.go,
// TestComputeExternalURL and TestComputeExternalURLWithWebConfig: quotes
// refused, the default from the hostname and the listen port, https with
// TLS), and the path's normalisation that feeds the route prefix.
func TestExternalURL(t *testing.T) {
	host := func() (string, error) { return "omen-0", nil }
	for _, tc := range []struct {
		in, listen string
		tls        bool
		want       string // "" for an error
		wantPath   string
	}{
		{in: "", listen: "0.0.0.0:9090", want: "http://omen-0:9090"},
		{in: "", listen: ":9201", want: "http://omen-0:9201"},
		{in: "", listen: ":9201", tls: true, want: "https://omen-0:9201"},
		{in: "http://proxy.com/prometheus", listen: ":9201", want: "http://proxy.com/prometheus", wantPath: "/prometheus"},
		{in: "http://alertmanager.company.com", listen: ":9201", want: "http://alertmanager.company.com"},
		{in: "https://double--dash.de", listen: ":9201", want: "https://double--dash.de"},
		// An explicit URL keeps its scheme whatever the TLS of the listener.
		{in: "http://ops.example.com/omen/", listen: ":9201", tls: true, want: "http://ops.example.com/omen", wantPath: "/omen"},
		{in: "https://ops.example.com/omen///", listen: ":9201", want: "https://ops.example.com/omen", wantPath: "/omen"},
		{in: "https://ops.example.com/", listen: ":9201", want: "https://ops.example.com"},
		{in: "https://ops.example.com/a/b/", listen: ":9201", want: "https://ops.example.com/a/b", wantPath: "/a/b"},
		{in: "omen/", listen: ":9201", want: "/omen", wantPath: "/omen"},
		{in: "'https://url/prometheus'", listen: ":9201"},
		{in: "'relative/path/with/quotes'", listen: ":9201"},
		{in: "'http://starts/with/quote", listen: ":9201"},
		{in: "ends/with/quote\"", listen: ":9201"},
		{in: "http://[::1", listen: ":9201"},
		{in: "", listen: "no-port"},
	} {
		t.Run(tc.in+"@"+tc.listen, func(t *testing.T) {
			u, err := ExternalURL(tc.in, tc.listen, tc.tls, host)
			if tc.want == "" {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, u.String())
			require.Equal(t, tc.wantPath, u.Path)
		})
	}
	_, err := ExternalURL("", ":9201", false, func() (string, error) { return "", errors.New("no name") })
	require.ErrorContains(t, err, "no name")
}

// TestRoutePrefix: the external URL's path by default, and Prometheus's
// fix-ups of a prefix given without its leading slash or with a trailing
// one.
func TestRoutePrefix(t *testing.T) {
	for _, tc := range []struct{ flag, external, want string }{
		{"", "http://omen-0:9201", "/"},
		{"", "https://ops.example.com/omen", "/omen"},
		{"", "https://ops.example.com/a/b", "/a/b"},
		{"/", "https://ops.example.com/omen", "/"}, // a proxy that strips the path
		{"omen", "http://omen-0:9201", "/omen"},
		{"/omen/", "http://omen-0:9201", "/omen"},
		{"omen/", "http://omen-0:9201", "/omen"},
		{"/other", "https://ops.example.com/omen", "/other"},
	} {
		t.Run(tc.flag+"@"+tc.external, func(t *testing.T) {
			u, err := ExternalURL(tc.external, ":9201", false, DefaultHostname)
			require.NoError(t, err)
			require.Equal(t, tc.want, RoutePrefix(tc.flag, u))
		})
	}
}

// TestWithRoutePrefix: every route under the prefix, reaching the mux as
// it would at "/" (so its request metrics keep their handler names); "/"
// and the bare prefix redirected to the page; nothing served outside.
func TestWithRoutePrefix(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMux(reg)
	Lifecycle{Ready: func() bool { return true }}.Register(m)
	m.HandleFunc("/{$}", "/", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("page " + r.URL.RawQuery)) })
	m.HandleAPI("/api/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("api " + r.URL.Path)) }))
	m.HandlePprof()

	for _, tc := range []struct {
		prefix, method, path string
		code                 int
		body, location       string
	}{
		{"/omen", "GET", "/omen/-/healthy", 200, "omen is Healthy.\n", ""},
		{"/omen", "GET", "/omen/-/ready", 200, "omen is Ready.\n", ""},
		{"/omen", "POST", "/omen/-/reload", 403, "Lifecycle API is not enabled.\n", ""},
		{"/omen", "GET", "/omen/api/v1/query?query=up", 200, "api /api/v1/query", ""},
		{"/omen", "GET", "/omen/api/v1/label/job/values", 200, "api /api/v1/label/job/values", ""},
		{"/omen", "GET", "/omen/", 200, "page ", ""},
		{"/omen", "GET", "/omen/debug/pprof/cmdline", 200, "", ""},
		{"/omen", "GET", "/", 302, "", "/omen/"},
		{"/omen", "HEAD", "/", 302, "", "/omen/"},
		{"/omen", "GET", "/omen", 301, "", "/omen/"},
		{"/omen", "GET", "/omen?x=1", 301, "", "/omen/?x=1"},
		// The mux's own redirects stay under the prefix, in the body's
		// link as in the Location (http.Redirect writes both).
		{"/omen", "GET", "/omen/debug/pprof", 307, `<a href="/omen/debug/pprof/">Temporary Redirect</a>.` + "\n\n", "/omen/debug/pprof/"},
		{"/omen", "GET", "/omen/api//v1/query", 307, `<a href="/omen/api/v1/query">Temporary Redirect</a>.` + "\n\n", "/omen/api/v1/query"},
		{"/", "GET", "/debug/pprof", 307, `<a href="/debug/pprof/">Temporary Redirect</a>.` + "\n\n", "/debug/pprof/"},
		{"/omen", "GET", "/", 302, `<a href="/omen/">Found</a>.` + "\n\n", "/omen/"},
		{"/a/b", "GET", "/a/b/-/healthy", 200, "omen is Healthy.\n", ""},
		{"/a/b", "GET", "/", 302, "", "/a/b/"},
		// Outside the prefix: 404, as in Prometheus (its /-/healthy too).
		{"/omen", "GET", "/-/healthy", 404, outsidePrefix("/omen") + "\n", ""},
		{"/omen", "POST", "/api/v1/write", 404, outsidePrefix("/omen") + "\n", ""},
		{"/omen", "GET", "/omenx/-/healthy", 404, outsidePrefix("/omen") + "\n", ""},
		{"/omen", "POST", "/", 404, outsidePrefix("/omen") + "\n", ""},
		{"/omen", "GET", "/metrics", 404, outsidePrefix("/omen") + "\n", ""},
		// No prefix: the mux itself.
		{"/", "GET", "/-/healthy", 200, "omen is Healthy.\n", ""},
		{"/", "GET", "/", 200, "page ", ""},
	} {
		t.Run(tc.prefix+" "+tc.method+" "+tc.path, func(t *testing.T) {
			code, body, h := do(t, WithRoutePrefix(tc.prefix, tc.prefix, m), tc.method, tc.path)
			require.Equal(t, tc.code, code, body)
			if tc.body != "" {
				require.Equal(t, tc.body, body)
			}
			require.Equal(t, tc.location, h.Get("Location"))
		})
	}
	// The handler names are those of the routes, without the prefix.
	require.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("/api/v1/query", "200")))
	require.Equal(t, 3.0, testutil.ToFloat64(m.requests.WithLabelValues("/-/healthy", "200")))

	// With no prefix the handler is the mux itself: the default is today's.
	require.Same(t, http.Handler(m), WithRoutePrefix("/", "", m))
	require.Same(t, http.Handler(m), WithRoutePrefix("/", "/", m))
}

// TestWithRoutePrefixEscapedPath: a path with an escaped slash loses the
// prefix in its raw form too.
func TestWithRoutePrefixEscapedPath(t *testing.T) {
	var got string
	h := WithRoutePrefix("/omen", "/omen", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.URL.EscapedPath() }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/omen/api/v1/label/a%2Fb/values", nil))
	require.Equal(t, "/api/v1/label/a%2Fb/values", got)
}

// TestWithRoutePrefixBasicAuth: wrapped around the web configuration's
// basic auth, as omen serve wraps it, the prefix leaves <prefix>/-/healthy
// the one path without credentials (a liveness probe carries none).
func TestWithRoutePrefixBasicAuth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	writeWebConfig(t, path, map[string]string{"alice": "s3cret"}, "")
	auth, _ := newAuthHandler(t, path)
	h := WithRoutePrefix("/omen", "/omen", auth)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/omen/-/healthy", http.StatusOK},
		{"/omen/-/ready", http.StatusUnauthorized},
		{"/-/healthy", http.StatusNotFound},
	} {
		code, body, _ := do(t, h, http.MethodGet, tc.path)
		require.Equal(t, tc.code, code, "%s: %s", tc.path, body)
		if code == http.StatusOK {
			require.Equal(t, "ok "+HealthyPath, body)
		}
	}
}

// TestWithRoutePrefixWriter: below the prefix a handler still flushes a
// streamed answer and sets its read deadline (remote read and remote
// write do), through a real server.
func TestWithRoutePrefixWriter(t *testing.T) {
	srv := httptest.NewServer(WithRoutePrefix("/omen", "/omen", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("frame"))
		if err := rc.Flush(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, isFlusher := w.(http.Flusher)
		_, _ = fmt.Fprintf(w, " flusher=%t", isFlusher)
	})))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/omen/api/v1/read")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "frame flusher=true", string(b))
}

// TestWithRoutePrefixRedirectBody: the link in the body of a redirect
// below the prefix gains the prefix as its Location does, and only the
// link http.Redirect writes: another body, or one whose length the handler
// said, goes out as written.
func TestWithRoutePrefixRedirectBody(t *testing.T) {
	for _, tc := range []struct {
		name       string
		h          http.HandlerFunc
		body, want string
	}{
		{
			name: "http.Redirect",
			h:    func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/a&b/", http.StatusFound) },
			want: `<a href="/omen/a&amp;b/">Found</a>.` + "\n\n",
		},
		{
			name: "a body of its own",
			h: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Location", "/x/")
				w.WriteHeader(http.StatusFound)
				_, _ = w.Write([]byte(`moved to <a href="/x/">x</a>`))
			},
			want: `moved to <a href="/x/">x</a>`,
		},
		{
			name: "a length said",
			h: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Location", "/x/")
				w.Header().Set("Content-Length", "15")
				w.WriteHeader(http.StatusFound)
				_, _ = w.Write([]byte(`<a href="/x/">x`))
			},
			want: `<a href="/x/">x`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, h := do(t, WithRoutePrefix("/omen", "/omen", tc.h), http.MethodGet, "/omen/y")
			require.Equal(t, http.StatusFound, code)
			require.True(t, strings.HasPrefix(h.Get("Location"), "/omen/"), h.Get("Location"))
			require.Equal(t, tc.want, body)
		})
	}
}

// TestWithRoutePrefixExternalPath: the redirects of the routes lead under
// the path clients reach omen at, where the route prefix is another: "/"
// behind a proxy that strips /omen, /other behind one that rewrites /omen
// to it. The redirects outside the routes stay the route prefix's, as in
// Prometheus.
func TestWithRoutePrefixExternalPath(t *testing.T) {
	m := NewMux(prometheus.NewRegistry())
	Lifecycle{Ready: func() bool { return true }}.Register(m)
	m.HandlePprof()
	for _, tc := range []struct {
		prefix, external, path string
		code                   int
		location               string
	}{
		{"/", "/omen", "/debug/pprof", 307, "/omen/debug/pprof/"},
		{"/", "/omen/", "/debug/pprof", 307, "/omen/debug/pprof/"},
		{"/", "/omen", "/-/healthy", 200, ""},
		{"/other", "/omen", "/other/debug/pprof", 307, "/omen/debug/pprof/"},
		{"/other", "/omen", "/other/-/healthy", 200, ""},
		{"/other", "/omen", "/", 302, "/other/"},
	} {
		t.Run(tc.prefix+" "+tc.external+" "+tc.path, func(t *testing.T) {
			code, body, h := do(t, WithRoutePrefix(tc.prefix, tc.external, m), http.MethodGet, tc.path)
			require.Equal(t, tc.code, code, body)
			require.Equal(t, tc.location, h.Get("Location"))
			if tc.location != "" {
				require.Contains(t, body, `<a href="`+tc.location+`">`)
			}
		})
	}
}
