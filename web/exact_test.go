package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// seriesLog records, for each query and range query the page sent, the
// label sets of the series in the answer and the answer's size.
type seriesLog struct {
	mu      sync.Mutex
	answers []seriesAnswer
}

type seriesAnswer struct {
	query  string
	bytes  int
	series []map[string]string
}

// wrap passes requests on to h, recording the answers to /api/v1/query and
// /api/v1/query_range but time()'s.
func (l *seriesLog) wrap(t *testing.T, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" && r.URL.Path != "/api/v1/query_range" {
			h.ServeHTTP(w, r)
			return
		}
		// The form read from a copy: h reads the body (time()'s POST).
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read request: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(raw))
		form := r.Clone(r.Context())
		form.Body = io.NopCloser(bytes.NewReader(raw))
		if err := form.ParseForm(); err != nil {
			t.Errorf("parse form: %v", err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		_, _ = w.Write(body)
		q := form.Form.Get("query")
		if q == "time()" {
			return
		}
		var env struct {
			Data struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
				} `json:"result"`
			} `json:"data"`
		}
		var rd io.Reader = bytes.NewReader(body)
		if rec.Header().Get("Content-Encoding") == "gzip" { // omen's
			zr, err := gzip.NewReader(rd)
			if err != nil {
				t.Errorf("answer to %s: %v", q, err)
				return
			}
			rd = zr
		}
		if err := json.NewDecoder(rd).Decode(&env); err != nil {
			t.Errorf("answer to %s: %v", q, err)
			return
		}
		a := seriesAnswer{query: q, bytes: len(body)}
		for _, s := range env.Data.Result {
			a.series = append(a.series, s.Metric)
		}
		l.mu.Lock()
		l.answers = append(l.answers, a)
		l.mu.Unlock()
	})
}

func (l *seriesLog) all() []seriesAnswer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seriesAnswer(nil), l.answers...)
}

// answered checks that every query the page sent was answered with series
// that lack the label other, and returns how many series and bytes.
func (l *seriesLog) answered(t *testing.T, other string) (series, size int) {
	t.Helper()
	answers := l.all()
	require.NotEmpty(t, answers)
	var others int
	var by []string
	for _, a := range answers {
		size += a.bytes
		series += len(a.series)
		for _, m := range a.series {
			if _, ok := m[other]; ok {
				others++
				if len(by) < 3 {
					by = append(by, a.query)
				}
			}
		}
	}
	t.Logf("%d queries answered %d series in %d bytes", len(answers), series, size)
	require.Zero(t, others, "series of others fetched, by %q", by)
	return series, size
}

// TestUIExactSeries: a series whose labels are a subset of other series'
// ({job="api"} beside 200 {job="api", instance="..."}) is charted from its
// own data alone. The page built its selectors from equality matchers,
// which match every series with more labels too: each of its five queries
// fetched the 200 others' as well (38.9 MB over 24 h in a browser, 3.4 s and
// 340 MB of heap), and dropped them only after.
func TestUIExactSeries(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1280, 800)
	for _, tc := range []struct {
		name    string
		counter bool
	}{
		{"gauge", false},
		{"counter", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			own := fakeInput{name: "queue_depth", labels: map[string]string{"job": "api"}, base: 100, amp: 20, counter: tc.counter}
			inputs := []fakeInput{own}
			for i := range 200 {
				inputs = append(inputs, fakeInput{name: "queue_depth", labels: map[string]string{"job": "api", "instance": "i-" + strconv.Itoa(i)},
					base: 1000 + 10*float64(i), amp: 20, counter: tc.counter})
			}
			fake := newFakeAPI(t, time.Now, inputs)
			var log seriesLog
			page, err := New(nil, Options{RefreshInterval: time.Hour, Range: time.Hour})
			require.NoError(t, err)
			mux := http.NewServeMux()
			mux.Handle("/api/v1/", log.wrap(t, fake))
			mux.Handle("/", page)
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)

			sel, err := json.Marshal(map[string]string{"for": own.name, "job": "api"})
			require.NoError(t, err)
			br.open(srv.URL + "/#series=" + url.PathEscape(string(sel)))
			br.waitFor("the series chart", `window.omen && omen.loads.series > 0 && document.getElementById("series").dataset.state === "ready"`, 60*time.Second)

			log.answered(t, "instance")

			var got struct {
				Xs     []float64  `json:"xs"`
				Values []*float64 `json:"values"`
			}
			br.eval(&got, `return {xs: omen.data.main[0], values: omen.data.main[1]};`)
			n := 0
			for i, v := range got.Values {
				if v != nil {
					require.InDelta(t, own.value(got.Xs[i]), *v, 1e-6, "the value drawn at %v", got.Xs[i])
					n++
				}
			}
			require.Greater(t, n, 200, "values drawn")
			require.Empty(t, fake.unexpectedRequests())
		})
	}
}

// TestUIBasicAuthCredentialsInURL: the real omen behind basic auth
// (--web.config.file), its page opened as http://user:password@host/, as
// an SRE does from a link or a bookmark. The Fetch standard forbids
// credentials in a request's URL, and the page's API calls, relative to
// its own URL, carried them: every fetch threw ("Request cannot be
// constructed from a URL that includes credentials") and the page stayed
// empty. Also the selection of exactly one series (TestUIExactSeries)
// through Prometheus's own /api/v1/labels: {job="api"} beside 20
// {job="api", instance="..."}.
func TestUIBasicAuthCredentialsInURL(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	const user, pass = "sre", "s3cret-pass"
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	require.NoError(t, err)
	webCfg := filepath.Join(t.TempDir(), "web.yml")
	require.NoError(t, os.WriteFile(webCfg, fmt.Appendf(nil, "basic_auth_users:\n  %s: %s\n", user, hash), 0o600))
	base := startOmenAs(t, user+":"+pass+"@", "", "--web.config.file="+webCfg)

	now := time.Now().Truncate(time.Second)
	own := fakeInput{name: "queue_depth", labels: map[string]string{"job": "api"}, base: 100, amp: 20}
	gen := newFakeAPI(t, time.Now, []fakeInput{own})
	for i := range 20 {
		gen.inputs = append(gen.inputs, fakeInput{name: "queue_depth", labels: map[string]string{"job": "api", "instance": "i-" + strconv.Itoa(i)},
			base: 1000 + 10*float64(i), amp: 20})
	}
	step := 15 * time.Second
	remoteWrite(t, base, inputSeries(gen), now.Add(-step), 6*time.Hour, step)
	own.spike, own.spikeFrom = 8*own.amp, now
	gen.inputs[0] = own
	remoteWrite(t, base, inputSeries(gen), now, 0, step)
	waitFirstAnomaly(t, base, map[string]string{"for": "queue_depth", "job": "api"})

	// A proxy that records the answers, passing the browser's
	// credentials on.
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.User = nil
	var log seriesLog
	proxy := httptest.NewServer(log.wrap(t, httputil.NewSingleHostReverseProxy(u)))
	t.Cleanup(proxy.Close)
	front, err := url.Parse(proxy.URL)
	require.NoError(t, err)
	front.User = url.UserPassword(user, pass)

	br := startBrowser(t, 1280, 800)
	br.open(front.String() + "/")
	// Under WebDriver's script timeout (30 s), so that a page that
	// never loads says why.
	br.waitFor("the anomaly list and the status", `window.omen && omen.loads.anomalies > 0 && omen.loads.status > 0`, 20*time.Second)
	openFirstSeries(br)
	var got struct {
		Key    string `json:"key"`
		Points int    `json:"points"`
		Band   int    `json:"band"`
		Error  string `json:"error"`
	}
	br.eval(&got, `var s = document.getElementById("series").dataset;
return {key: omen.state.selectedKey, points: Number(s.points), band: Number(s.bandPoints), error: document.getElementById("error").textContent};`)
	require.Equal(t, `for="queue_depth",job="api"`, got.Key)
	require.Empty(t, got.Error)
	require.Positive(t, got.Points, "values charted")
	require.Positive(t, got.Band, "band charted")
	log.answered(t, "instance")
}
