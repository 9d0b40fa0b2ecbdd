package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHandlerPaths(t *testing.T) {
	h, err := New(nil, Options{})
	require.NoError(t, err)

	for _, tc := range []struct {
		method, path string
		code         int
		ctype        string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<title>omen</title>`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/ui/static/app.js", 200, "text/javascript; charset=utf-8", "api/v1/anomalies"},
		{"GET", "/ui/static/style.css", 200, "text/css; charset=utf-8", "--anomaly"},
		{"GET", "/ui/static/vendor/uPlot.iife.min.js", 200, "text/javascript; charset=utf-8", "uPlot"},
		{"GET", "/ui/static/vendor/uPlot.min.css", 200, "text/css; charset=utf-8", ".uplot"},
		{"GET", "/ui/static/", 404, "", ""},
		{"GET", "/ui/static/vendor/", 404, "", ""},
		{"GET", "/ui/static/index.html", 404, "", ""},
		{"GET", "/ui/static/nope.js", 404, "", ""},
		{"GET", "/index.html", 404, "", ""},
		{"GET", "/api/v1/query", 404, "", ""},
		{"POST", "/", 405, "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			require.Equal(t, tc.code, rec.Code, rec.Body.String())
			if tc.ctype != "" {
				require.Equal(t, tc.ctype, rec.Header().Get("Content-Type"))
			}
			if tc.code == 200 {
				require.Contains(t, rec.Header().Get("Content-Security-Policy"), "default-src 'self'")
			}
			require.Contains(t, rec.Body.String(), tc.contains)
		})
	}
}

// TestIndexAssets checks that the page names each of its assets by a
// relative URL carrying the asset's content hash, and that the handler
// serves each such URL.
func TestIndexAssets(t *testing.T) {
	h, err := New(nil, Options{RefreshInterval: 7 * time.Second, Range: time.Hour})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page := rec.Body.String()
	require.Contains(t, page, `<meta name="omen-refresh-ms" content="7000">`)
	require.Contains(t, page, `<meta name="omen-range-seconds" content="3600">`)

	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	var assets []string
	for _, m := range refs {
		if m[1] == "data:," { // the empty favicon, so the browser asks for none
			continue
		}
		require.Regexp(t, `^ui/static/[\w/.]+\?v=[0-9a-f]{16}$`, m[1], "relative, hashed asset URL")
		assets = append(assets, m[1])
	}
	require.Len(t, assets, 4, "uPlot's script and style, ours")
	for _, a := range assets {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/"+a, nil))
		require.Equal(t, http.StatusOK, rec.Code, a)
		tag := rec.Header().Get("ETag")
		require.Contains(t, a, strings.Trim(tag, `"`), "URL carries the ETag")

		// A browser holding the asset revalidates it without a body.
		req := httptest.NewRequest("GET", "/"+a, nil)
		req.Header.Set("If-None-Match", tag)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusNotModified, rec.Code, a)
	}
}

// TestNoExternalURLs keeps the page offline: none of our own assets names
// another origin (uPlot's built file is checked by TestUIFakeAPI in the
// browser, which records every resource the page loads).
func TestNoExternalURLs(t *testing.T) {
	static, err := fs.Sub(staticFS, "static")
	require.NoError(t, err)
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		f, err := static.Open(name)
		require.NoError(t, err)
		b, err := io.ReadAll(f)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		require.NotRegexp(t, `(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`, string(b), name)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		err  string
	}{
		{"defaults", Options{}, ""},
		{"set", Options{RefreshInterval: 5 * time.Second, Range: 30 * time.Minute}, ""},
		{"refresh too fast", Options{RefreshInterval: time.Millisecond}, "refresh interval 1ms"},
		{"range too short", Options{Range: time.Second}, "range 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := New(nil, tc.opts)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.Nil(t, h)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, h)
		})
	}
}
