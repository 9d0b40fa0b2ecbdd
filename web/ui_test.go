package web

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/detect"
)

// screenshotPath is where a UI test leaves its screenshot, a test artefact:
// $OMEN_UI_SCREENSHOT_DIR, else web/testdata/out (gitignored). docs/ui.png
// is a copy of one.
func screenshotPath(t *testing.T, name string) string {
	dir := os.Getenv("OMEN_UI_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "out")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return filepath.Join(dir, name)
}

// TestUIFakeAPI opens the page in headless Chromium against the API contract
// served by fakeAPI, with one planted anomaly among normal series, and checks
// what an SRE would: the anomaly is listed first, its chart draws the value,
// the expected band, the forecast cone and the score, the label filter and
// live refresh work, and nothing is loaded from outside omen.
func TestUIFakeAPI(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1440, 900)

	start := time.Now()
	planted := fakeInput{
		name: "http_requests_total", labels: map[string]string{"job": "api", "instance": "a:1"},
		base: 100, amp: 20, spike: 16, spikeFrom: start.Add(-25 * time.Minute), member: "level", feature: "value",
	}
	inputs := []fakeInput{
		{name: "http_requests_total", labels: map[string]string{"job": "api", "instance": "b:1"}, base: 100, amp: 20},
		{name: "node_load1", labels: map[string]string{"job": "node", "instance": "n:9100"}, base: 2, amp: 0.5},
		planted,
		{name: "db_query_seconds", labels: map[string]string{"job": "db", "instance": "d:1"}, base: 0.3, amp: 0.05},
		{name: "db_connections", labels: map[string]string{"job": "db", "instance": "d:2"}, base: 40, amp: 5},
	}
	fake, srv := serveFake(t, inputs, time.Second)

	runUIChecks(t, br, srv.URL, uiCase{
		wantFirst: `for="http_requests_total",instance="a:1",job="api"`, explanation: "level / value",
		filter: `job="db"`, horizons: len(fakeHorizons), conePixels: 1000, shot: "ui-fake-api.png",
		status: []string{"1235 samples/s", "out of order", "0.0.0-test", "scoring:"},
	})
	require.Empty(t, fake.unexpectedRequests(), "the page asked for something outside the API contract")
}

// serveFake serves the page, refreshing every refresh, and a fakeAPI of
// inputs behind it.
func serveFake(t *testing.T, inputs []fakeInput, refresh time.Duration) (*fakeAPI, *httptest.Server) {
	return serveFakeAt(t, time.Now, inputs, refresh)
}

// serveFakeAt is serveFake with the fake API's clock, which stamps its
// answers' Date as omen's server does.
func serveFakeAt(t *testing.T, now func() time.Time, inputs []fakeInput, refresh time.Duration) (*fakeAPI, *httptest.Server) {
	fake := newFakeAPI(t, now, inputs)
	return fake, servePage(t, fake, refresh)
}

// servePage serves the page, refreshing every refresh, and api behind it.
func servePage(t *testing.T, api http.Handler, refresh time.Duration) *httptest.Server {
	page, err := New(nil, Options{RefreshInterval: refresh})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", api)
	mux.Handle("/", page)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestUIStatusCounts: the status panel shows counts whole, as the API
// gives them: 120 scored series read "120.0" (the three significant digits
// of any number), and a count past a million "1.23e+6".
func TestUIStatusCounts(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1280, 800)
	var inputs []fakeInput
	for i := range 120 {
		inputs = append(inputs, fakeInput{name: "up", labels: map[string]string{"instance": strconv.Itoa(i)}, base: 1})
	}
	fake, srv := serveFake(t, inputs, time.Hour)
	br.open(srv.URL + "/")
	br.waitFor("the status", `window.omen && omen.loads.status > 0`, 30*time.Second)
	var got map[string]string
	br.eval(&got, `var out = {};
document.querySelectorAll("#status-list dt").forEach(function (dt) { out[dt.textContent] = dt.nextElementSibling.textContent; });
document.querySelectorAll("#summary li").forEach(function (li) { out[li.firstChild.textContent.trim()] = li.querySelector("b").textContent; });
return out;`)
	stored := strconv.Itoa(len(fake.series()))
	for k, want := range map[string]string{
		"Series stored": stored, "Series scored": "120", "Models warming": "1", "Rejected: out of order": "2",
		"stored": stored, "scored": "120", "warming": "1", "rejected": "3",
	} {
		require.Equal(t, want, got[k], k)
	}
}

// TestUIGroup: a multivariate group is listed with the member that moved
// most, and its chart says it has no value, band or forecast of its own
// rather than "no forecast yet"; its member's name, here one a detector
// member also has, is not explained as that detector member.
func TestUIGroup(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1280, 800)
	start := time.Now()
	_, srv := serveFake(t, []fakeInput{
		{name: "node_load1", labels: map[string]string{"job": "node"}, base: 2, amp: 0.5},
		{name: "pod_health", labels: map[string]string{"pod": "a"}, base: 1, amp: 0.5, spike: 8,
			spikeFrom: start.Add(-20 * time.Minute), member: "level", group: true},
	}, time.Hour)

	br.open(srv.URL + "/")
	br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
	var first struct {
		Key   string `json:"key"`
		Title string `json:"title"`
		Text  string `json:"text"`
	}
	br.eval(&first, `var tr = document.querySelector("#anomalies tbody tr");
return {key: tr.dataset.key, title: tr.cells[4].title, text: tr.innerText};`)
	require.Equal(t, `for="pod_health",pod="a"`, first.Key)
	require.Contains(t, first.Text, "level / joint")
	require.Equal(t, "multivariate group: its member level moved most against the others", first.Title)

	openFirstSeries(br)
	var chart struct {
		Note   string `json:"note"`
		Values int    `json:"values"`
		Scores int    `json:"scores"`
	}
	br.eval(&chart, `function count(a) { return a.filter(function (v) { return v != null; }).length; }
return {note: document.getElementById("series-note").textContent,
  values: count(omen.charts.main.data[1]), scores: count(omen.charts.score.data[1])};`)
	require.Contains(t, chart.Note, "A multivariate group")
	require.NotContains(t, chart.Note, "no forecast yet")
	require.Zero(t, chart.Values, "a group has no value series")
	require.Greater(t, chart.Scores, 100, "its score is drawn")
}

// TestUIDerived: a derived input's chart says its values are not stored,
// and draws its band and score; it said "0 samples" beside them, as of an
// input that never sent one (measured on a derived input evaluated every
// 10 s for 14 minutes: "0 samples, 10 with an expected band").
func TestUIDerived(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1280, 800)
	start := time.Now()
	_, srv := serveFake(t, []fakeInput{
		{name: "node_load1", labels: map[string]string{"job": "node"}, base: 2, amp: 0.5},
		{name: "error_ratio", labels: map[string]string{"service": "api"}, base: 0.1, amp: 0.02, spike: 1,
			spikeFrom: start.Add(-20 * time.Minute), derived: true},
	}, time.Hour)
	br.open(srv.URL + "/")
	br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
	openFirstSeries(br)
	var chart struct {
		Key    string `json:"key"`
		Note   string `json:"note"`
		Values int    `json:"values"`
		Bands  int    `json:"bands"`
		Scores int    `json:"scores"`
	}
	br.eval(&chart, `function count(a) { return a.filter(function (v) { return v != null; }).length; }
return {key: document.querySelector("#anomalies tbody tr").dataset.key, note: document.getElementById("series-note").textContent,
  values: count(omen.charts.main.data[1]), bands: count(omen.charts.main.data[3]), scores: count(omen.charts.score.data[1])};`)
	require.Equal(t, `for="error_ratio",service="api"`, chart.Key)
	require.Contains(t, chart.Note, "A derived input: its values are evaluated, not stored")
	require.NotContains(t, chart.Note, "0 samples")
	require.Zero(t, chart.Values)
	require.Greater(t, chart.Bands, 100, "its band is drawn")
	require.Greater(t, chart.Scores, 100, "its score is drawn")
}

// openFirstSeries clicks the first row's series and waits for its chart.
func openFirstSeries(br *browser) {
	br.click(`#anomalies tbody tr:first-child .series-link`)
	br.waitFor("the series chart", `document.getElementById("series").dataset.state === "ready"`, 30*time.Second)
}

// uiCase is what runUIChecks expects of a page.
type uiCase struct {
	wantFirst   string   // the planted series' key: its sorted labels, as the page renders them
	explanation string   // the first row's "member / feature"; empty: any
	filter      string   // a label filter that excludes the planted series
	horizons    int      // forecast horizons omen writes
	conePixels  int      // least pixels of cone fill (its width depends on the forecaster)
	status      []string // texts the status panel shows besides its headings
	shot        string   // the screenshot's file name
}

// runUIChecks drives the page at base and checks it against c.
func runUIChecks(t *testing.T, br *browser, base string, c uiCase) {
	wantFirst, filter := c.wantFirst, c.filter
	br.open(base + "/")
	br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0 && omen.loads.status > 0`, 30*time.Second)

	var rows []struct {
		Key   string  `json:"key"`
		Score float64 `json:"score"`
		Hot   bool    `json:"hot"`
		Text  string  `json:"text"`
	}
	br.eval(&rows, `return Array.from(document.querySelectorAll("#anomalies tbody tr")).map(function (tr) {
  return {key: tr.dataset.key, score: Number(tr.dataset.score), hot: tr.cells[0].classList.contains("hot"), text: tr.innerText};
});`)
	require.GreaterOrEqual(t, len(rows), 2, "anomaly rows")
	require.Equal(t, wantFirst, rows[0].Key, "the planted anomaly is listed first")
	require.Greater(t, rows[0].Score, 1.0)
	require.True(t, rows[0].Hot, "the first row is marked anomalous")
	require.Regexp(t, `\w / \w`, rows[0].Text, "the explanation names detector and feature")
	if c.explanation != "" {
		require.Contains(t, rows[0].Text, c.explanation)
	}
	require.Contains(t, rows[0].Text, "ago", "the row says since when")
	for i := 1; i < len(rows); i++ {
		require.LessOrEqual(t, rows[i].Score, rows[i-1].Score, "rows sorted by score")
	}

	// omen's clock, read from omen (the same host's as the browser's here).
	var clock struct {
		Offset, RTT float64
	}
	br.eval(&clock, `return omen.clock || {offset: 1e12}; // none: omen did not answer time()`)
	require.Less(t, math.Abs(clock.Offset), 2000.0, "omen's clock against the browser's, ms (round trip %v ms)", clock.RTT)

	var status string
	br.eval(&status, `return document.getElementById("status").textContent + " " + document.getElementById("summary").textContent;`)
	for _, want := range append([]string{"Ingest rate", "Series stored", "Series scored", "Models warming", "Rejected", "Version", "Go"}, c.status...) {
		require.Contains(t, status, want, "status panel")
	}

	// Live refresh: the list reloads on its own, then is paused so the rows
	// stay put while the test clicks.
	br.waitFor("a live refresh", `omen.loads.anomalies >= 2`, 30*time.Second)
	br.click("#live")
	br.waitFor("the last live refresh to finish", `!omen.busy()`, 30*time.Second)
	openFirstSeries(br)

	var chart struct {
		Selected   string  `json:"selected"`
		Series     int     `json:"series"`
		Bands      int     `json:"bands"`
		Values     int     `json:"values"`
		Yhat       int     `json:"yhat"`
		Lower      int     `json:"lower"`
		Upper      int     `json:"upper"`
		Above      int     `json:"above"` // lower <= upper everywhere both exist
		Cone       int     `json:"cone"`
		ConeOpen   int     `json:"coneOpen"` // horizons with lower < forecast < upper
		Scores     int     `json:"scores"`
		MaxScore   float64 `json:"maxScore"`
		Threshold  float64 `json:"threshold"`
		BandPixels int     `json:"bandPixels"`
		ConePixels int     `json:"conePixels"`
		LinePixels int     `json:"linePixels"`
		HotPixels  int     `json:"hotPixels"`
		Foreign    []string
	}
	br.eval(&chart, `
var m = omen.charts.main, s = omen.charts.score;
function count(a) { return a.filter(function (v) { return v != null; }).length; }
var lo = m.data[3], hi = m.data[4], above = 0;
for (var i = 0; i < lo.length; i++) if (lo[i] != null && hi[i] != null && lo[i] <= hi[i]) above++;
var coneOpen = 0;
for (var i = 0; i < m.data[5].length; i++) {
  var f = m.data[5][i], fl = m.data[6][i], fu = m.data[7][i];
  if (f != null && fl != null && fu != null && fl < f && f < fu) coneOpen++;
}
// Pixels of the band and cone fills as drawn on the canvas (translucent
// colours over a transparent canvas), of opaque line ink, and of the
// anomaly shading in the score chart.
function pixels(u, want) {
  var c = u.ctx, img = c.getImageData(0, 0, c.canvas.width, c.canvas.height).data, n = 0;
  for (var p = 0; p < img.length; p += 4) if (want(img[p], img[p + 1], img[p + 2], img[p + 3])) n++;
  return n;
}
function near(r, g, b, R, G, B) { return Math.abs(r - R) < 16 && Math.abs(g - G) < 16 && Math.abs(b - B) < 16; }
return {
  selected: omen.state.selectedKey, series: m.series.length, bands: (m.bands || []).length,
  values: count(m.data[1]), yhat: count(m.data[2]), lower: count(lo), upper: count(hi), above: above,
  cone: count(m.data[5]), coneOpen: coneOpen, scores: count(s.data[1]),
  maxScore: Math.max.apply(null, s.data[1].filter(function (v) { return v != null; })),
  threshold: s.data[2][0],
  bandPixels: pixels(m, function (r, g, b, a) { return near(r, g, b, 0, 114, 178) && a > 20 && a < 70; }),
  conePixels: pixels(m, function (r, g, b, a) { return near(r, g, b, 0, 158, 115) && a > 30 && a < 90; }),
  linePixels: pixels(m, function (r, g, b, a) { return a > 200; }),
  hotPixels: pixels(s, function (r, g, b, a) { return near(r, g, b, 213, 94, 0) && a > 15 && a < 60; }),
  Foreign: performance.getEntriesByType("resource").map(function (e) { return e.name; })
    .filter(function (u) { return u.indexOf(location.origin + "/") !== 0; })
};`)
	t.Logf("chart: %+v", chart)
	// The screenshot before the chart assertions, so a failure leaves
	// one too; live again, as an SRE would leave the page.
	br.click("#live")
	shot := screenshotPath(t, c.shot)
	br.screenshot(shot)
	t.Logf("screenshot: %s", shot)
	// Paused again: a live refresh rebuilds the rows the steps below use.
	br.click("#live")
	br.waitFor("the last live refresh to finish", `!omen.busy()`, 30*time.Second)

	require.Equal(t, wantFirst, chart.Selected)
	require.Equal(t, 8, chart.Series, "value, yhat, band edges, forecast and cone edges")
	require.Equal(t, 2, chart.Bands, "expected band and forecast cone")
	require.Greater(t, chart.Values, 100, "value points over the range")
	// The band's points are its stored values (a minute apart in the
	// real binary, which stores the scored last hour of the history).
	require.Greater(t, chart.Yhat, 50, "yhat points")
	require.Greater(t, chart.Lower, 50, "band points")
	require.Equal(t, chart.Lower, chart.Above, "band lower below upper")
	require.Equal(t, c.horizons+1, chart.Cone, "cone: the last value and each horizon")
	// So are the score's (and every sample's above 1).
	require.Greater(t, chart.Scores, 50, "score points")
	require.Greater(t, chart.MaxScore, 1.0, "the planted anomaly scores above 1")
	require.Equal(t, 1.0, chart.Threshold, "threshold line at 1")
	require.Greater(t, chart.BandPixels, 1000, "the band is painted")
	require.Equal(t, c.horizons, chart.ConeOpen, "each horizon has an interval around its forecast")
	require.GreaterOrEqual(t, chart.ConePixels, c.conePixels, "the cone is painted")
	require.Greater(t, chart.LinePixels, 1000, "lines are painted")
	// The anomaly's shade: the anti-aliased edges of the orange threshold
	// and start lines alone give ~75 such pixels, a one-sample shade (8 px
	// wide, partly under those lines and the score's spike) ~380.
	require.Greater(t, chart.HotPixels, 200, "the anomaly is marked")
	require.Empty(t, chart.Foreign, "nothing loaded from outside omen")

	// The label filter goes to the API as a selector and only matching
	// series come back.
	var before int
	br.eval(&before, `return omen.loads.anomalies;`)
	br.typeInto("#match", filter)
	br.click(`#filter button[type="submit"]`)
	br.waitFor("the filtered list", `omen.loads.anomalies > `+strconv.Itoa(before), 30*time.Second)
	var keys []string
	br.eval(&keys, `return Array.from(document.querySelectorAll("#anomalies tbody tr")).map(function (tr) { return tr.dataset.key; });`)
	require.NotEmpty(t, keys, "rows matching %s", filter)
	for _, k := range keys {
		require.Contains(t, k, filter, "filtered rows")
		require.NotEqual(t, wantFirst, k)
	}
	// Keyboard: Enter on a row's series button opens that series.
	br.do(http.MethodPost, br.base+"/element/"+br.find(`#anomalies tbody tr:first-child .series-link`)+"/value", map[string]string{"text": "\uE007"}, nil)
	br.waitFor("the keyboard-selected series", `omen.state.selectedKey === `+strconv.Quote(keys[0])+` && document.getElementById("series").dataset.state === "ready"`, 30*time.Second)

	// A reload keeps the open series: it is in the URL's fragment.
	br.eval(nil, `location.reload(); return null;`)
	br.waitFor("the series after a reload", `window.omen && omen.loads.series > 0 && omen.state.selectedKey === `+strconv.Quote(keys[0]), 30*time.Second)

	var errText string
	br.eval(&errText, `return document.getElementById("error").hidden ? "" : document.getElementById("error").textContent;`)
	require.Empty(t, errText, "the page reported an API error")
}

// TestUIExplanationFits: on a 1440 px wide screen, with series labelled as
// node exporters' are and the detector's longest feature names, every
// row's explanation is inside the list's panel. The "why" of each anomaly
// was cut off behind a horizontal scroll bar ("shift / mean_sh",
// "seasonal / value_season_", measured on omen fed 1038 series), so that an
// SRE saw what was anomalous but not which member and feature drove it:
// the value column held the band beside the value on one line under a
// header that could not wrap, and feature names could not break. A
// Prometheus's own metric names are longer than node exporters':
// prometheus_engine_query_duration_seconds_count{ could not break either,
// and pushed the value and the explanation past the panel at 1400 px
// (omen fed Debian's Prometheus 2.42 and node_exporter).
func TestUIExplanationFits(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	start := time.Now()
	var inputs []fakeInput
	for i, mf := range [][2]string{
		{"seasonal", "value_season_ago"}, {"long", "value_long_season_ago"}, {"novelty", "recent_context"},
		{"shift", "mean_short"}, {"range", "value_range"}, {"forest", "feature_vector"},
	} {
		inputs = append(inputs, fakeInput{
			name: "request_latency_seconds", labels: map[string]string{"job": "svc1" + strconv.Itoa(i), "instance": "10.0.2.12" + strconv.Itoa(i) + ":9100"},
			base: 0.2 + float64(i)*100, amp: 0.05 + float64(i)*10, spike: 1 + float64(i)*100, spikeFrom: start.Add(-time.Duration(i+1) * time.Minute),
			member: mf[0], feature: mf[1],
		})
	}
	for _, name := range []string{"prometheus_engine_query_duration_seconds_count", "prometheus_tsdb_compaction_chunk_samples_bucket"} {
		inputs = append(inputs, fakeInput{
			name: name, labels: map[string]string{"job": "prometheus", "instance": "localhost:9090", "slice": "inner_eval"},
			base: 0.5, amp: 0.1, spike: 30, spikeFrom: start.Add(-3 * time.Minute), member: "shift", feature: "mean_short",
		})
	}
	_, srv := serveFake(t, inputs, time.Hour)
	for _, size := range [][2]int{{1440, 900}, {1400, 900}, {1280, 800}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			br := startBrowser(t, size[0], size[1])
			br.open(srv.URL + "/")
			br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
			var got struct {
				Rows     int      `json:"rows"`
				Clipped  []string `json:"clipped"`
				Overflow int      `json:"overflow"`
			}
			br.eval(&got, `var now = document.getElementById("now"), right = now.getBoundingClientRect().right, clipped = [];
var rows = document.querySelectorAll("#anomalies tbody tr");
rows.forEach(function (tr) {
  var c = tr.cells[4];
  if (c.getBoundingClientRect().right > right + 0.5) clipped.push(c.innerText.replace(/\s+/g, " "));
});
return {rows: rows.length, clipped: clipped, overflow: now.scrollWidth - now.clientWidth};`)
			require.Equal(t, len(inputs), got.Rows)
			require.Empty(t, got.Clipped, "explanations past the panel's edge")
			require.LessOrEqual(t, got.Overflow, 0, "the list scrolls sideways")
		})
	}
}

// TestUIMemberTooltips: every detector member's explanation says in words
// what it looks for. The novelty and long members had none, so a row
// driven by novelty (one of the 25 rows of omen fed 1038 series) said only
// "detector novelty, feature recent_context".
func TestUIMemberTooltips(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	members := []string{"level", "seasonal", "lag", "shift", "variance", "spectral", "forest", "range", "long", "novelty", "flat"}
	var inputs []fakeInput
	for i, m := range members {
		require.NotEmpty(t, detect.FeatureOf(m), "%s is one of detect's members", m)
		inputs = append(inputs, fakeInput{name: "up", labels: map[string]string{"instance": m}, base: float64(i + 1), amp: 1,
			member: m, feature: detect.FeatureOf(m)})
	}
	_, srv := serveFake(t, inputs, time.Hour)
	br := startBrowser(t, 1280, 800)
	br.open(srv.URL + "/")
	br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
	var titles map[string]string
	br.eval(&titles, `var out = {};
document.querySelectorAll("#anomalies tbody tr").forEach(function (tr) { out[tr.cells[4].querySelector("b").textContent] = tr.cells[4].title; });
return out;`)
	require.Len(t, titles, len(members))
	for _, m := range members {
		want := "detector " + m + ", feature " + detect.FeatureOf(m)
		require.NotEqual(t, want, titles[m], "%s is explained in words", m)
		require.True(t, strings.HasSuffix(titles[m], ": "+want), "%s: %q", m, titles[m])
	}
}

// TestUIAxisLabels: the value axis is wide enough for its tick labels, and
// the score chart's time axis stays aligned with the value chart's. At a
// fixed 60 px the ticks of a series in the millions ("5,000,000", a queue
// length of omen fed by omen loadgen) ran into the axis's "value" label.
func TestUIAxisLabels(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	for _, in := range []fakeInput{
		{name: "jobs_queue_length", labels: map[string]string{"queue": "thumbnails"}, base: 3e6, amp: 1e6},
		{name: "request_latency_seconds", labels: map[string]string{"job": "api"}, base: 0.0335, amp: 0.0011},
		{name: "up", labels: map[string]string{"job": "api"}, base: 1, amp: 0.5},
	} {
		t.Run(in.name, func(t *testing.T) {
			in.spike, in.spikeFrom = 4*in.amp, time.Now().Add(-10*time.Minute)
			_, srv := serveFake(t, []fakeInput{in}, time.Hour)
			br := startBrowser(t, 1280, 800)
			br.open(srv.URL + "/")
			br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
			openFirstSeries(br)
			var got struct {
				Ticks    []string `json:"ticks"`
				Widest   float64  `json:"widest"`
				Room     float64  `json:"room"`
				MainLeft float64  `json:"mainLeft"`
				ScoreLft float64  `json:"scoreLeft"`
			}
			br.eval(&got, `var m = omen.charts.main, s = omen.charts.score, ax = m.axes[1], ctx = m.ctx;
ctx.save(); ctx.font = Array.isArray(ax.font) ? ax.font[0] : ax.font;
var widest = 0;
(ax._values || []).forEach(function (v) { widest = Math.max(widest, ctx.measureText(String(v)).width / devicePixelRatio); });
ctx.restore();
return {ticks: (ax._values || []).map(String), widest: widest, room: ax._size - ax.ticks.size - ax.gap,
  mainLeft: m.bbox.left, scoreLeft: s.bbox.left};`)
			t.Logf("%+v", got)
			require.NotEmpty(t, got.Ticks)
			require.LessOrEqual(t, got.Widest, got.Room, "tick labels %v fit beside the axis label", got.Ticks)
			require.Equal(t, got.MainLeft, got.ScoreLft, "the charts' time axes are aligned")
		})
	}
}

// TestUISilentSeries: a series whose samples stopped says so in its row.
// omen lists it, with its last value, score and incident, until the
// lookback (5 m) has passed, then drops it; the row looked like that of a
// series still sending (measured: three series whose samples stopped were
// listed unchanged for 4 m 45 s, then were gone), so a pod that died in its
// incident read as an incident going on.
func TestUISilentSeries(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	start := time.Now()
	_, srv := serveFake(t, []fakeInput{
		{name: "container_memory_working_set_bytes", labels: map[string]string{"pod": "dead"}, base: 100, amp: 20,
			spike: 16, spikeFrom: start.Add(-8 * time.Minute), silentFor: 4 * time.Minute},
		{name: "container_memory_working_set_bytes", labels: map[string]string{"pod": "alive"}, base: 100, amp: 20,
			spike: 12, spikeFrom: start.Add(-8 * time.Minute)},
	}, time.Hour)
	br := startBrowser(t, 1280, 800)
	br.open(srv.URL + "/")
	br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
	var rows map[string]string
	br.eval(&rows, `var out = {};
document.querySelectorAll("#anomalies tbody tr").forEach(function (tr) { out[tr.dataset.key] = tr.cells[2].innerText.replace(/\s+/g, " "); });
return out;`)
	require.Len(t, rows, 2)
	require.Contains(t, rows[`for="container_memory_working_set_bytes",pod="dead"`], "no data for 4m")
	require.NotContains(t, rows[`for="container_memory_working_set_bytes",pod="alive"`], "no data")
}

// TestUISenderClockSkew: a row's "no data" badge and its incident's age
// are read on omen's clock and the series' own, not the browser's. They
// compared the browser's clock with the sample's timestamp, which the
// sender stamps: a Prometheus whose clock was 10 minutes behind omen's had
// every live row read "no data for 10m" and an incident begun 3 minutes
// before its latest sample read "13m ago"; a browser whose clock was 10 minutes behind omen's
// showed no badge on a series silent for 4 minutes.
func TestUISenderClockSkew(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	for _, tc := range []struct {
		name      string
		omenAhead time.Duration // omen's clock against the browser's
		behind    time.Duration // the sender's clock against omen's
		silentFor time.Duration
		badge     string // "" for none
	}{
		{"sender 10m behind, sending", 0, 10 * time.Minute, 0, ""},
		{"sender 10m behind, silent 4m", 0, 10 * time.Minute, 4 * time.Minute, "no data for 4m"},
		{"sender 5m ahead, silent 4m", 0, -5 * time.Minute, 4 * time.Minute, "no data for 4m"},
		{"browser 10m behind omen, silent 4m", 10 * time.Minute, 0, 4 * time.Minute, "no data for 4m"},
		{"browser 10m ahead of omen, sending", -10 * time.Minute, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			omenNow := func() time.Time { return time.Now().Add(tc.omenAhead) }
			// The incident began 3 minutes before the latest sample, on
			// the sender's clock.
			spikeFrom := omenNow().Add(-tc.silentFor - tc.behind - 3*time.Minute)
			_, srv := serveFakeAt(t, omenNow, []fakeInput{{name: "queue_depth", labels: map[string]string{"job": "api"}, base: 100, amp: 20,
				spike: 16, spikeFrom: spikeFrom, silentFor: tc.silentFor, behind: tc.behind}}, time.Hour)
			br := startBrowser(t, 1280, 800)
			br.open(srv.URL + "/")
			br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
			var cell string
			br.eval(&cell, `return document.querySelector("#anomalies tbody tr").cells[2].innerText.replace(/\s+/g, " ");`)
			require.Contains(t, cell, fmt.Sprintf("%dm ago", 3+int(tc.silentFor.Minutes())), "the incident's age, on the series' own clock")
			if tc.badge == "" {
				require.NotContains(t, cell, "no data")
			} else {
				require.Contains(t, cell, tc.badge)
			}
		})
	}
}

// TestUIOmenClockBehindProxy: the page reads omen's clock from omen,
// however the proxy in front of it treats the Date header. It took omen's
// clock from the Date of omen's answers: behind a proxy that stamps its own
// Date (nginx replaces the upstream's), on a host whose clock is off
// omen's, or one that sends none, a browser 10 minutes behind omen read a
// series silent for 4 minutes as sending (no "no data" badge) and an
// incident begun 7 minutes before now as "0s ago". Here the browser's clock
// is 10 minutes behind omen's and the series' sender is on omen's.
func TestUIOmenClockBehindProxy(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	const omenAhead = 10 * time.Minute
	for _, tc := range []struct {
		name string
		date func() []string // the Date the proxy sends; nil: none
	}{
		{"Date from omen", func() []string { return []string{time.Now().Add(omenAhead).UTC().Format(http.TimeFormat)} }},
		{"Date from a proxy on the browser's clock", func() []string { return []string{time.Now().UTC().Format(http.TimeFormat)} }},
		{"Date from a proxy 5m behind omen", func() []string {
			return []string{time.Now().Add(omenAhead - 5*time.Minute).UTC().Format(http.TimeFormat)}
		}},
		{"no Date", func() []string { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			omenNow := func() time.Time { return time.Now().Add(omenAhead) }
			fake := newFakeAPI(t, omenNow, []fakeInput{{name: "queue_depth", labels: map[string]string{"job": "api"}, base: 100, amp: 20,
				spike: 16, spikeFrom: omenNow().Add(-7 * time.Minute), silentFor: 4 * time.Minute}})
			srv := servePage(t, dateProxy(fake, tc.date), time.Hour)
			br := startBrowser(t, 1280, 800)
			br.open(srv.URL + "/")
			br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
			var cell string
			br.eval(&cell, `return document.querySelector("#anomalies tbody tr").cells[2].innerText.replace(/\s+/g, " ");`)
			require.Contains(t, cell, "7m ago", "the incident's age on omen's clock")
			require.Contains(t, cell, "no data for 4m", "the silent series' badge on omen's clock")
		})
	}
}

// TestUIOmenClockQueued: the page does not hold its lists for omen's
// time() and does not take a late answer's clock. time() is a PromQL
// query: it waits for one of the engine's slots (--query.max-concurrency,
// up to --query.timeout, 2 minutes by default) behind the dashboards'
// queries, where /api/v1/anomalies and /api/v1/status/omen do not (the
// anomalies have a gate of their own). Every refresh waited for it before
// it asked for the lists: with the slots taken, the page showed nothing
// (the first load) or nothing new until each time() came back. And
// time() is evaluated when omen receives it, so an answer that waited
// came back with a clock behind by half the round trip, which the page
// took.
//
// Here omen (the fake, 10 minutes ahead of the browser) holds time() as a
// full engine does, evaluated on arrival: none answered, the lists load;
// the first answered at once and the next ones held, the lists go on
// refreshing on that first reading, one time() at a time, and an answer
// released after seconds in the queue does not move the page's clock.
func TestUIOmenClockQueued(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	const omenAhead = 10 * time.Minute
	omenNow := func() time.Time { return time.Now().Add(omenAhead) }
	for _, tc := range []struct {
		name        string
		answerFirst bool
	}{{"none answered", false}, {"first answered", true}} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeAPI(t, omenNow, []fakeInput{{name: "queue_depth", labels: map[string]string{"job": "api"}, base: 100, amp: 20,
				spike: 16, spikeFrom: omenNow().Add(-7 * time.Minute), silentFor: 4 * time.Minute}})
			q := &queuedClock{h: fake, now: omenNow, answerFirst: tc.answerFirst, gate: make(chan struct{})}
			srv := servePage(t, q, time.Second)
			t.Cleanup(q.releaseAll) // before the server's Close, which waits for the handlers
			br := startBrowser(t, 1280, 800)
			br.open(srv.URL + "/")
			br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0 && omen.loads.status > 0`, 25*time.Second)
			if !tc.answerFirst {
				return
			}
			var offset float64
			br.eval(&offset, `return omen.clock ? omen.clock.offset : 0;`)
			require.InDelta(t, omenAhead.Milliseconds(), offset, 2000, "omen's clock from the answer at once")

			var loads int
			br.eval(&loads, `return omen.loads.anomalies;`)
			br.waitFor("three refreshes of the list while time() is held", fmt.Sprintf(`omen.loads.anomalies >= %d`, loads+3), 25*time.Second)
			held, most, _ := q.counts()
			require.Positive(t, held, "a time() still held")
			require.Equal(t, 1, most, "time() queries held at once: one a page")
			var cell string
			br.eval(&cell, `return document.querySelector("#anomalies tbody tr").cells[2].innerText.replace(/\s+/g, " ");`)
			require.Contains(t, cell, "7m ago", "the incident's age on omen's clock, from its first reading")
			require.Contains(t, cell, "no data for 4m", "the silent series' badge on omen's clock")

			q.release() // those held so far come back, late; the next ones are held
			require.Eventually(t, func() bool { _, _, n := q.counts(); return n > 0 }, 30*time.Second, 10*time.Millisecond, "the held time() answered")
			br.eval(&loads, `return omen.loads.anomalies;`)
			br.waitFor("two refreshes after the late answer", fmt.Sprintf(`omen.loads.anomalies >= %d`, loads+2), 25*time.Second)
			br.eval(&offset, `return omen.clock.offset;`)
			require.InDelta(t, omenAhead.Milliseconds(), offset, 2000, "omen's clock after a time() answered late")
		})
	}
}

// queuedClock forwards to h, holding the page's time() queries as an
// engine whose slots are taken does: evaluated at their arrival (omen's
// now then, as Prometheus's API takes it), answered once released. With
// answerFirst the first is answered at once.
type queuedClock struct {
	h           http.Handler
	now         func() time.Time
	answerFirst bool

	mu                     sync.Mutex
	gate                   chan struct{} // closed by release
	n, held, most, answers int
	all                    bool // releaseAll: hold none from now on
}

func (q *queuedClock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/query" || r.ParseForm() != nil || r.Form.Get("query") != "time()" {
		q.h.ServeHTTP(w, r)
		return
	}
	r.Form.Set("time", strconv.FormatFloat(float64(q.now().UnixMilli())/1000, 'f', 3, 64))
	q.mu.Lock()
	q.n++
	if q.all || q.n == 1 && q.answerFirst {
		q.mu.Unlock()
		q.h.ServeHTTP(w, r)
		return
	}
	gate := q.gate
	q.held++
	q.most = max(q.most, q.held)
	q.mu.Unlock()
	select {
	case <-gate:
	case <-r.Context().Done():
	}
	q.h.ServeHTTP(w, r)
	q.mu.Lock()
	q.held--
	q.answers++
	q.mu.Unlock()
}

// release answers the time() queries held so far; the next ones are held.
func (q *queuedClock) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	close(q.gate)
	q.gate = make(chan struct{})
}

// releaseAll answers those held and every one after.
func (q *queuedClock) releaseAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.all = true
	close(q.gate)
	q.gate = make(chan struct{})
}

// counts returns the time() queries held now, the most held at once, and
// those answered after being held.
func (q *queuedClock) counts() (held, most, answers int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held, q.most, q.answers
}

// dateProxy forwards to h, replacing the Date of its answers with date's
// (none if nil), as a reverse proxy that stamps its own does.
func dateProxy(h http.Handler, date func() []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&dateWriter{ResponseWriter: w, date: date}, r)
	})
}

type dateWriter struct {
	http.ResponseWriter
	date  func() []string
	wrote bool
}

func (d *dateWriter) WriteHeader(code int) {
	if !d.wrote {
		d.wrote = true
		// A nil value suppresses the Date net/http would add.
		d.Header()["Date"] = d.date()
	}
	d.ResponseWriter.WriteHeader(code)
}

func (d *dateWriter) Write(b []byte) (int, error) {
	if !d.wrote {
		d.WriteHeader(http.StatusOK)
	}
	return d.ResponseWriter.Write(b)
}

// TestUISeriesChartSenderAhead: the series chart ends at omen's now or at
// the series' latest sample, whichever is later, and its forecast cone
// starts there. It ended at omen's now: for a sender whose clock is ahead
// of omen's by minutes (within the 10 omen accepts) the latest samples, the
// newest forecasts and the cone's start were not drawn, the cone hung
// where no sample was.
//
// Each forecast is drawn at the time it is for: the fake's forecast stored
// at t for horizon h is the expected value at t+h, so a point drawn at x
// is on the expected curve at x. They were drawn at the chart's end plus
// h: on a sender on time up to a forecast interval late, 3 minutes late on
// one 3 minutes behind, and none at all on one 10 minutes behind (the
// instant query at the end found no forecast in its 5m lookback).
func TestUISeriesChartSenderAhead(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	for _, tc := range []struct {
		name      string
		behind    time.Duration // the sender's clock against omen's
		silentFor time.Duration
	}{
		{"sender 5m ahead", -5 * time.Minute, 0},
		{"sender on time", 0, 0},
		{"sender 3m behind", 3 * time.Minute, 0},
		{"sender 10m behind", 10 * time.Minute, 0},
		{"silent 4m", 0, 4 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Omen's clock in the fake, frozen: the forecasts' sample
			// times do not move while the page loads.
			now := time.Now()
			in := fakeInput{name: "queue_depth", labels: map[string]string{"job": "api"}, base: 100, amp: 20,
				spike: 16, spikeFrom: now.Add(-tc.behind - tc.silentFor - 3*time.Minute), behind: tc.behind, silentFor: tc.silentFor}
			_, srv := serveFakeAt(t, func() time.Time { return now }, []fakeInput{in}, time.Hour)
			br := startBrowser(t, 1280, 800)
			br.open(srv.URL + "/")
			br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
			openFirstSeries(br)
			type point struct{ X, F float64 }
			var got struct {
				LastValue float64 `json:"lastValue"` // the latest value charted
				Cone      []point `json:"cone"`
				Step      float64 `json:"step"`
			}
			br.eval(&got, `var d = omen.data, xs = d.main[0], last = null, cone = [];
  for (var i = 0; i < xs.length; i++) { if (d.main[1][i] != null) last = xs[i]; if (d.main[5][i] != null) cone.push({X: xs[i], F: d.main[5][i]}); }
  return {lastValue: last, cone: cone, step: d.step};`)
			t.Logf("cone: %+v", got.Cone)
			latest := float64(now.Add(-tc.behind - tc.silentFor).Unix())
			if tc.behind < 0 {
				require.InDelta(t, latest, got.LastValue, got.Step+5, "the latest sample charted")
			}
			require.Len(t, got.Cone, len(fakeHorizons)+1, "the cone's start and each horizon")
			made := math.Floor(latest/fakeForecastEvery) * fakeForecastEvery
			require.Equal(t, made, got.Cone[0].X, "the cone starts at the newest forecasts' sample time")
			for _, p := range got.Cone[1:] {
				require.InDelta(t, in.expected(p.X), p.F, 1e-9, "the forecast drawn at %v is the one for that time", p.X)
				require.Contains(t, slices.Collect(maps.Values(fakeHorizons)), p.X-made, "at a horizon after the forecasts' sample time")
			}
		})
	}
}

// TestUITimeZone: the page's times are the browser's local time, as
// Grafana's are by default, and say which zone that is. They named none:
// "updated 3:12:37 PM", a start "12/5/2026, 3:12:30 PM" and the charts'
// time axes beside an API, alerts and logs in UTC, where an SRE away from
// UTC could not tell whether a time was the incident's start or hours off.
func TestUITimeZone(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	t.Setenv("TZ", "America/New_York") // chromedriver's browser inherits it
	start := time.Now()
	_, srv := serveFake(t, []fakeInput{
		{name: "queue_depth", labels: map[string]string{"job": "api"}, base: 100, amp: 20, spike: 16, spikeFrom: start.Add(-8 * time.Minute)},
	}, time.Hour)
	br := startBrowser(t, 1280, 800)
	br.open(srv.URL + "/")
	br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0 && document.getElementById("updated").textContent !== ""`, 30*time.Second)
	var got struct {
		Zone    string `json:"zone"`
		Updated string `json:"updated"`
		Since   string `json:"since"`
	}
	br.eval(&got, `return {zone: Intl.DateTimeFormat().resolvedOptions().timeZone, updated: document.getElementById("updated").textContent,
  since: document.querySelector("#anomalies tbody tr td:nth-child(3) span").title};`)
	require.Equal(t, "America/New_York", got.Zone, "the browser runs in the zone the test set")
	openFirstSeries(br)
	var note string
	br.eval(&note, `return document.getElementById("series-note").textContent;`)
	for _, s := range []string{got.Updated, got.Since, note} {
		require.Regexp(t, `\b(EST|EDT|GMT-[45])\b`, s, "names the zone")
	}
}

// TestUIAllSilent: when no series has sent a sample for the lookback (none
// listed, series stored, nothing ingested), the empty list says so. omen leaves such series out of /api/v1/anomalies, and
// the page said "No series scored yet." beside 14402 stored series (a live
// omen whose Prometheus had stopped writing to it), which pointed an SRE
// at omen's warm-up rather than at the remote write that had stopped.
func TestUIAllSilent(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	for _, tc := range []struct {
		name   string
		inputs []fakeInput
		want   string
	}{
		{"silent", []fakeInput{{name: "queue_depth", labels: map[string]string{"job": "api"}, base: 100, amp: 20, silentFor: 10 * time.Minute}},
			"No series has sent a sample in the last 5 minutes"},
		{"empty", nil, "No series scored yet."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := serveFake(t, tc.inputs, time.Hour)
			br := startBrowser(t, 1280, 800)
			br.open(srv.URL + "/")
			br.waitFor("the list and the status", `window.omen && omen.loads.anomalies > 0 && omen.loads.status > 0`, 30*time.Second)
			var got string
			br.eval(&got, `var e = document.getElementById("anomalies-empty"); return e.hidden ? "" : e.textContent;`)
			require.Contains(t, got, tc.want)
		})
	}
}

// TestUICounterRate: a counter's value and band in the anomalies list say
// they are a per-second rate. omen fed node_exporter listed
// node_network_transmit_bytes_total{device="eth0"} as "0 (0–2515)" while
// the counter stood at 3e11 bytes: read as the counter, its value and band
// made no sense.
func TestUICounterRate(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	start := time.Now()
	_, srv := serveFake(t, []fakeInput{
		{name: "node_network_transmit_bytes_total", labels: map[string]string{"device": "eth0"}, base: 100, amp: 20,
			spike: 16, spikeFrom: start.Add(-3 * time.Minute), counter: true},
		{name: "node_load1", labels: map[string]string{"instance": "n:9100"}, base: 2, amp: 0.5},
	}, time.Hour)
	br := startBrowser(t, 1280, 800)
	br.open(srv.URL + "/")
	br.waitFor("the anomaly list", `window.omen && omen.loads.anomalies > 0`, 30*time.Second)
	var rows map[string]struct {
		Text  string `json:"text"`
		Title string `json:"title"`
	}
	br.eval(&rows, `var out = {};
document.querySelectorAll("#anomalies tbody tr").forEach(function (tr) { out[tr.dataset.key] = {text: tr.cells[3].innerText.replace(/\s+/g, " "), title: tr.cells[3].title}; });
return out;`)
	require.Len(t, rows, 2)
	counter, gauge := rows[`device="eth0",for="node_network_transmit_bytes_total"`], rows[`for="node_load1",instance="n:9100"`]
	require.Regexp(t, `^[0-9.e+-]+/s \([0-9.e+-]+–[0-9.e+-]+/s\)$`, counter.Text, "the rate and its band")
	require.Contains(t, counter.Title, "per-second rate")
	require.NotContains(t, gauge.Text, "/s")
	require.NotContains(t, gauge.Title, "rate")

	// Its chart says so too: the value axis showed 100 beside the
	// counter's name, with nothing to say it was not the counter.
	for _, tc := range []struct {
		key, want string
	}{
		{`device="eth0",for="node_network_transmit_bytes_total"`, "per-second rate"},
		{`for="node_load1",instance="n:9100"`, ""},
	} {
		br.eval(nil, `document.querySelector('#anomalies tbody tr[data-key="' + CSS.escape(arguments[0]) + '"] .series-link').click(); return null;`, tc.key)
		br.waitFor("the chart of "+tc.key, `omen.state.selectedKey === `+strconv.Quote(tc.key)+` && document.getElementById("series").dataset.state === "ready"`, 30*time.Second)
		var note string
		br.eval(&note, `return document.getElementById("series-note").textContent;`)
		if tc.want == "" {
			require.NotContains(t, note, "rate", tc.key)
		} else {
			require.Contains(t, note, tc.want, tc.key)
		}
	}
}
