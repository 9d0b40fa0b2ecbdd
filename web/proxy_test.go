package web

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pathLog is a reverse proxy's record of the paths it forwarded.
type pathLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *pathLog) add(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, p)
}

func (l *pathLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.paths...)
}

// TestUIBehindReverseProxy: the real `omen serve` behind a reverse proxy
// at /omen/, the model of Prometheus's --web.external-url, set up both
// ways Prometheus is. A proxy that forwards every path whole: omen serves
// under the external URL's path, and the page opened at the proxy's root
// is redirected to /omen/. A proxy that strips /omen before forwarding
// (and forwards nothing else): --web.route-prefix=/, omen serves at "/".
// Either way remote write goes through the proxy to /omen/api/v1/write,
// the page shows the planted anomaly, its chart and omen's status, and
// neither the proxy nor the browser saw a request outside /omen/ but that
// first "/".
func TestUIBehindReverseProxy(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1440, 900)
	for _, tc := range []struct {
		name  string
		strip bool
		flags []string
	}{
		{name: "whole path", flags: nil},
		{name: "stripped path", strip: true, flags: []string{"--web.route-prefix=/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				log    pathLog
				mu     sync.Mutex
				target http.Handler // set once omen runs
			)
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				log.add(r.URL.RequestURI())
				mu.Lock()
				h := target
				mu.Unlock()
				h.ServeHTTP(w, r)
			}))
			t.Cleanup(proxy.Close)
			path := "/omen"
			if tc.strip {
				path = ""
			}
			base := startOmenUnder(t, path, append([]string{"--web.external-url=" + proxy.URL + "/omen/"}, tc.flags...)...)
			u, err := url.Parse(base)
			require.NoError(t, err)
			u.Path = ""
			rp := httputil.NewSingleHostReverseProxy(u) // forwarded whole
			var h http.Handler = rp
			if tc.strip {
				// Only /omen/, without it (the page wants its slash).
				h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if !strings.HasPrefix(r.URL.Path, "/omen/") {
						http.NotFound(w, r)
						return
					}
					http.StripPrefix("/omen", rp).ServeHTTP(w, r)
				})
			}
			mu.Lock()
			target = h
			mu.Unlock()
			front := proxy.URL + "/omen"

			writePlantedAnomaly(t, front)

			runUIChecks(t, br, front, uiCase{
				wantFirst: `for="queue_depth",instance="a:1",job="api"`,
				filter:    `job="db"`, horizons: 3, shot: "ui-behind-proxy-" + strings.ReplaceAll(tc.name, " ", "-") + ".png",
			})
			if !tc.strip {
				// The proxy's root, as a user types it: redirected to the page.
				br.open(proxy.URL + "/")
				br.waitFor("the page at /omen/", `location.pathname === "/omen/" && window.omen && omen.loads.anomalies > 0 && omen.loads.status > 0`, 30*time.Second)
			}

			// What the browser fetched (the page, its assets, every API
			// call) is all under the prefix, as is what the proxy forwarded.
			var fetched []string
			br.eval(&fetched, `return [location.href].concat(performance.getEntriesByType("resource").map(function (e) { return e.name; }))`)
			var api, assets int
			for _, f := range fetched {
				require.True(t, strings.HasPrefix(f, front+"/"), "the browser fetched %s, outside %s/", f, front)
				api += strings.Count(f, front+"/api/v1/")
				assets += strings.Count(f, front+"/ui/static/")
			}
			require.Positive(t, api, "the page's API calls: %v", fetched)
			require.Positive(t, assets, "the page's assets: %v", fetched)
			seen := map[string]bool{}
			for _, p := range log.all() {
				if p == "/" && !tc.strip {
					seen["/"] = true
					continue
				}
				require.True(t, strings.HasPrefix(p, "/omen/"), "the proxy received %s, outside /omen/", p)
				for _, want := range []string{"/omen/api/v1/write", "/omen/api/v1/anomalies", "/omen/api/v1/status/omen", "/omen/api/v1/query_range", "/omen/ui/static/app.js"} {
					if strings.HasPrefix(p, want) {
						seen[want] = true
					}
				}
			}
			want := 6
			if tc.strip {
				want = 5
			}
			require.Len(t, seen, want, "requests the proxy received: %v", seen)
		})
	}
}
