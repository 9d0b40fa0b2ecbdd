package web

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// waitFirstAnomaly waits until omen's /api/v1/anomalies lists a series with
// labels want first, scored above 1.
func waitFirstAnomaly(t *testing.T, base string, want map[string]string) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Minute)
	var last string
	for {
		select {
		case <-deadline:
			t.Fatalf("omen did not list %v first; it answered %s", want, last)
		case <-tick.C:
		}
		resp, err := http.Get(base + "/api/v1/anomalies?limit=5")
		require.NoError(t, err)
		var body struct {
			Data struct {
				Anomalies []struct {
					Labels map[string]string `json:"labels"`
					Score  float64           `json:"score"`
				} `json:"anomalies"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		require.NoError(t, resp.Body.Close())
		require.NoError(t, err)
		b, _ := json.Marshal(body.Data.Anomalies)
		last = string(b)
		if a := body.Data.Anomalies; len(a) > 0 && a[0].Score > 1 && equalMaps(a[0].Labels, want) {
			return
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestUIRealPipeline: six hours of normal history of three series are
// remote-written into the real `omen serve` binary, then one sample far outside
// its band on one of them; the page must list that series first and chart
// it from the scorer's own output series.
func TestUIRealPipeline(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1440, 900)
	base := startOmen(t)
	writePlantedAnomaly(t, base)
	runUIChecks(t, br, base, uiCase{
		wantFirst: `for="queue_depth",instance="a:1",job="api"`,
		filter:    `job="db"`, horizons: 3, shot: "ui-real-pipeline.png",
	})
}

// writePlantedAnomaly remote-writes six hours of normal history of three
// series to omen at base, then one sample far outside its band on one of
// them, queue_depth{job="api",instance="a:1"}, and waits until omen lists
// it first.
func writePlantedAnomaly(t *testing.T, base string) {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	planted := fakeInput{name: "queue_depth", labels: map[string]string{"job": "api", "instance": "a:1"}, base: 100, amp: 20}
	gen := newFakeAPI(t, time.Now, []fakeInput{
		{name: "queue_depth", labels: map[string]string{"job": "api", "instance": "b:1"}, base: 100, amp: 20},
		planted,
		{name: "db_connections", labels: map[string]string{"job": "db", "instance": "d:2"}, base: 40, amp: 5},
	})
	step := 15 * time.Second
	remoteWrite(t, base, inputSeries(gen), now.Add(-step), 6*time.Hour, step)
	// The incident: the next sample of the planted series jumps by eight
	// times its daily swing, the others go on as before. omen's detectors
	// damp repeated alarms, so a fresh outlier is what is on top now.
	planted.spike, planted.spikeFrom = 8*planted.amp, now
	gen.inputs[1] = planted
	remoteWrite(t, base, inputSeries(gen), now, 0, step)
	waitFirstAnomaly(t, base, map[string]string{"for": "queue_depth", "job": "api", "instance": "a:1"})
}

// inputSeries are the fake's input series, without omen's outputs.
func inputSeries(gen *fakeAPI) []fakeSeries {
	var in []fakeSeries
	for _, s := range gen.series() {
		if _, out := s.labels["for"]; !out {
			in = append(in, s)
		}
	}
	return in
}

// TestUIRealPipelineAwkwardLabels: series the page once could not chart,
// through the real binary: a UTF-8 label name (its selector needs the name
// quoted), input labels named for and horizon (kept on the outputs as
// exported_for and, on the forecasts, exported_horizon), and a counter,
// whose band is a per-second rate and whose values must be charted as one.
func TestUIRealPipelineAwkwardLabels(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1280, 900)
	base := startOmen(t)
	now := time.Now().Truncate(time.Second)
	wave := func(t float64) float64 { return math.Sin(2 * math.Pi * t / 3600) }
	inputs := []fakeSeries{
		{map[string]string{"__name__": "load", "service.name": "checkout", "job": "x"}, func(t float64) float64 { return 50 + 10*wave(t) }},
		{map[string]string{"__name__": "jobs", "for": "batch", "horizon": "h1", "job": "y"}, func(t float64) float64 { return 20 + 5*wave(t) }},
		{map[string]string{"__name__": "reqs_total", "job": "z"}, func(t float64) float64 { return 3*(t-1.7e9) + 600*wave(t) }},
	}
	remoteWrite(t, base, inputs, now, 6*time.Hour, 15*time.Second)

	var listed []map[string]any
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/api/v1/anomalies")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Anomalies []map[string]any `json:"anomalies"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&body) != nil {
			return false
		}
		listed = body.Data.Anomalies
		return len(listed) == 3
	}, time.Minute, 200*time.Millisecond)

	for i, a := range listed {
		ls, _ := json.Marshal(a["labels"])
		t.Run(string(ls), func(t *testing.T) {
			// A new query string each time: a changed hash alone does not
			// load the page again.
			br.open(fmt.Sprintf("%s/?case=%d#series=%s", base, i, url.QueryEscape(string(ls))))
			br.waitFor("the series chart", `document.getElementById("series").dataset.state === "ready" || document.getElementById("series").dataset.state === "error"`, 30*time.Second)
			var got struct {
				State, Error       string
				Points, Band, Cone int
				Last, Yhat         float64
			}
			br.eval(&got, `var s = document.getElementById("series").dataset, d = omen.data || {main: [[], [], []]};
function last(a) { for (var i = a.length - 1; i >= 0; i--) if (a[i] != null) return a[i]; return null; }
return {State: s.state, Error: document.getElementById("error").textContent, Points: Number(s.points), Band: Number(s.bandPoints),
  Cone: Number(s.conePoints), Last: last(d.main[1]), Yhat: last(d.main[2])};`)
			t.Logf("%+v", got)
			require.Equal(t, "ready", got.State, got.Error)
			require.Greater(t, got.Points, 100, "input values charted")
			require.Greater(t, got.Band, 50, "band charted (its stored points, a minute apart)")
			require.Equal(t, 3, got.Cone, "forecasts at every horizon")
			require.InEpsilon(t, got.Yhat, got.Last, 0.5, "values on the band's scale (a counter as its rate)")
		})
	}
}

// TestUIForecastConeAtSampleTime: the series chart draws each forecast at
// the time it is for, its sample time plus its horizon, and the cone from
// the value at the time the forecasts were made. omen stores a forecast at
// the time of the sample it was made at (a minute apart, at
// --forecast.interval), and the page drew it at the chart's end (omen's
// now) plus its horizon: a forecast interval and a scrape interval late at
// most with a sender on time, 3 minutes and more late with a sender whose
// clock is 3 minutes behind omen's; with one 10 minutes behind, the newest
// forecasts were past the instant query's 5-minute lookback and no cone
// was drawn at all.
func TestUIForecastConeAtSampleTime(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1280, 900)
	base := startOmen(t)
	now := time.Now().Truncate(time.Second)
	senders := []struct {
		instance string
		behind   time.Duration // the sender's clock against omen's
	}{
		{"on-time", 0},
		{"behind-3m", 3 * time.Minute},
		{"behind-10m", 10 * time.Minute},
		{"ahead-4m", -4 * time.Minute},
	}
	// Six hours of history each, by the half hour, in time order: the
	// head takes samples down to an hour before its latest only.
	const step, chunk = 15 * time.Second, 30 * time.Minute
	for end := now.Add(-6*time.Hour + chunk); !end.After(now); end = end.Add(chunk) {
		for _, s := range senders {
			in := fakeInput{name: "queue_depth", labels: map[string]string{"job": "api", "instance": s.instance}, base: 100, amp: 20}
			remoteWrite(t, base, []fakeSeries{{map[string]string{"__name__": in.name, "job": "api", "instance": s.instance}, in.value}},
				end.Add(-s.behind), chunk-step, step)
		}
	}
	for i, s := range senders {
		t.Run(s.instance, func(t *testing.T) {
			sel := fmt.Sprintf(`{__name__=~"forecast|forecast_lower|forecast_upper",for="queue_depth",job="api",instance=%q}`, s.instance)
			last := float64(now.Add(-s.behind).Unix())
			// The stored forecasts: each series' latest sample, as omen's
			// query API gives them raw, once the latest is made: the
			// forecasts come a minute apart in sample time, on samples
			// 15 s apart, so the one of the history's last minute is the
			// last one.
			type point struct{ T, F, Lo, Hi float64 }
			var want map[string]*point // by horizon
			var newest float64
			var answer string
			done := func() bool {
				want, newest = map[string]*point{}, 0
				rs, err := queryRaw(base, sel+"[30m]", last)
				if err != nil {
					answer = err.Error()
					return false
				}
				answer = fmt.Sprint(rs)
				for _, r := range rs {
					at := r.Values[len(r.Values)-1]
					p := want[r.Metric["horizon"]]
					if p == nil {
						p = &point{T: at.T}
						want[r.Metric["horizon"]] = p
					}
					if p.T != at.T {
						return false // a horizon's forecast and interval are stored at one time
					}
					newest = max(newest, at.T)
					switch r.Metric["__name__"] {
					case "forecast":
						p.F = at.V
					case "forecast_lower":
						p.Lo = at.V
					case "forecast_upper":
						p.Hi = at.V
					}
				}
				return len(want) == 3 && newest > last-60
			}
			for deadline := time.Now().Add(2 * time.Minute); !done(); time.Sleep(200 * time.Millisecond) {
				require.True(t, time.Now().Before(deadline), "omen stores forecasts at 3 horizons, the latest of the history's last minute; it answered %s", answer)
			}
			require.LessOrEqual(t, newest, last, "forecasts are made at samples")
			for h, p := range want {
				d, err := model.ParseDuration(h)
				require.NoError(t, err)
				p.T += time.Duration(d).Seconds()
			}

			ls, err := json.Marshal(map[string]string{"for": "queue_depth", "job": "api", "instance": s.instance})
			require.NoError(t, err)
			br.open(fmt.Sprintf("%s/?case=%d#series=%s", base, i, url.QueryEscape(string(ls))))
			br.waitFor("the series chart", `document.getElementById("series").dataset.state === "ready" && omen.state.selectedKey !== ""`, 30*time.Second)
			var cone []point
			var chart struct {
				Cone   []point `json:"cone"`
				Gaps   int     `json:"gaps"`   // nulls in the value's line, from its first point to its last
				Before float64 `json:"before"` // the values either side of the cone's start
				After  float64 `json:"after"`
			}
			br.eval(&chart, `var d = omen.data.main, out = [], first = -1, last = -1, gaps = 0, before = null, after = null;
for (var i = 0; i < d[0].length; i++) {
  if (d[5][i] != null) out.push({T: d[0][i], F: d[5][i], Lo: d[6][i], Hi: d[7][i]});
  if (d[1][i] != null) { if (first < 0) first = i; last = i; }
}
for (var i = first; i <= last; i++) if (d[1][i] === null) gaps++;
for (var i = 0; out.length && i < d[0].length; i++) {
  if (d[1][i] == null) continue;
  if (d[0][i] <= out[0].T) before = d[1][i];
  if (d[0][i] >= out[0].T && after === null) after = d[1][i];
}
return {cone: out, gaps: gaps, before: before, after: after === null ? before : after};`)
			cone = chart.Cone
			t.Logf("stored: %v; drawn: %+v", want, cone)
			require.Len(t, cone, 4, "the cone: its start and 3 horizons")
			for h, p := range want {
				var got *point
				for j := range cone[1:] {
					if math.Abs(cone[1+j].T-p.T) < 1e-3 {
						got = &cone[1+j]
					}
				}
				require.NotNil(t, got, "horizon %s: a point at its forecast's time %v plus %s", h, p.T, h)
				require.InDelta(t, p.F, got.F, 1e-9*math.Abs(p.F), h)
				require.InDelta(t, p.Lo, got.Lo, 1e-9*math.Abs(p.Lo), h)
				require.InDelta(t, p.Hi, got.Hi, 1e-9*math.Abs(p.Hi), h)
			}
			require.InDelta(t, newest, cone[0].T, 1e-3, "the cone starts at the newest forecasts' sample time")
			require.GreaterOrEqual(t, cone[0].F, min(chart.Before, chart.After), "the cone starts on the value's line")
			require.LessOrEqual(t, cone[0].F, max(chart.Before, chart.After), "the cone starts on the value's line")
			require.Zero(t, chart.Gaps, "the value's line is not broken where the cone starts")
		})
	}
}

// rawSeries is one series of a range selector's answer: its raw samples.
type rawSeries struct {
	Metric map[string]string
	Values []struct{ T, V float64 }
}

// queryRaw evaluates the range selector q at omen at base at time at (unix
// seconds), and returns its series' raw samples.
func queryRaw(base, q string, at float64) ([]rawSeries, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q) + "&time=" + strconv.FormatFloat(at, 'f', -1, 64))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Values [][2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode %s: %w", q, err)
	}
	if body.Status != "success" || body.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("query %s: status %s, result type %s", q, body.Status, body.Data.ResultType)
	}
	out := make([]rawSeries, len(body.Data.Result))
	for i, r := range body.Data.Result {
		out[i].Metric = r.Metric
		for _, p := range r.Values {
			t, _ := p[0].(float64)
			s, _ := p[1].(string)
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("query %s: sample %v: %w", q, p, err)
			}
			out[i].Values = append(out[i].Values, struct{ T, V float64 }{t, v})
		}
	}
	return out, nil
}

// TestUIBandAtSampleTimes: the series chart draws the expected band
// through its stored values at their sample times. omen stores a series'
// outputs a minute apart (--output.tsdb-interval's default) of samples
// 15 s apart, and the page drew the range query's values at its 15 s
// step: each stored value repeated until the next, a staircase whose rise
// came up to a minute after the value's time, the band late on every
// slope. The drawn band must pass through each stored point and, between
// two, along the line joining them.
func TestUIBandAtSampleTimes(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1280, 900)
	base := startOmen(t)
	now := time.Now().Truncate(time.Second)
	in := fakeInput{name: "queue_depth", labels: map[string]string{"job": "api", "instance": "a:1"}, base: 100, amp: 20}
	const step, chunk = 15 * time.Second, 30 * time.Minute
	for end := now.Add(-6*time.Hour + chunk); !end.After(now); end = end.Add(chunk) {
		remoteWrite(t, base, []fakeSeries{{map[string]string{"__name__": in.name, "job": "api", "instance": "a:1"}, in.value}}, end, chunk-step, step)
	}
	// The stored band of the chart's last hour, once its latest minute is
	// scored.
	sel := `{__name__=~"yhat|yhat_lower|yhat_upper",for="queue_depth",job="api",instance="a:1"}[1h]`
	var stored map[string][]struct{ T, V float64 }
	var answer string
	done := func() bool {
		rs, err := queryRaw(base, sel, float64(now.Unix()))
		if err != nil {
			answer = err.Error()
			return false
		}
		answer = fmt.Sprint(rs)
		stored = map[string][]struct{ T, V float64 }{}
		for _, r := range rs {
			stored[r.Metric["__name__"]] = r.Values
		}
		lo := stored["yhat_lower"]
		return len(stored) == 3 && len(lo) > 30 && lo[len(lo)-1].T > float64(now.Unix())-60
	}
	for deadline := time.Now().Add(2 * time.Minute); !done(); time.Sleep(200 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "omen stores the band up to the history's last minute; it answered %s", answer)
	}

	openSeriesAt(t, br, base, map[string]string{"for": "queue_depth", "job": "api", "instance": "a:1"})
	// The lines as uPlot draws them: through the points that are not
	// null or undefined (undefined is spanned, null breaks the line).
	var drawn map[string][][2]float64
	br.eval(&drawn, `var d = omen.data.main, out = {}, names = ["yhat", "yhat_lower", "yhat_upper"];
for (var k = 0; k < 3; k++) {
  var pts = [];
  for (var i = 0; i < d[0].length; i++) if (d[2 + k][i] != null) pts.push([d[0][i], d[2 + k][i]]);
  out[names[k]] = pts;
}
return out;`)
	for name, vs := range stored {
		pts := drawn[name]
		require.NotEmpty(t, pts, name)
		checked := 0
		for i := 1; i < len(vs); i++ {
			a, b := vs[i-1], vs[i]
			if a.T < pts[0][0] || b.T > pts[len(pts)-1][0] {
				continue // outside the chart
			}
			tol := 1e-9 * max(1, math.Abs(a.V), math.Abs(b.V))
			got, ok := lineAt(pts, a.T)
			require.True(t, ok)
			require.InDelta(t, a.V, got, tol, "%s drawn at its stored sample time %v", name, time.Unix(int64(a.T), 0))
			mid := (a.T + b.T) / 2
			got, ok = lineAt(pts, mid)
			require.True(t, ok)
			require.InDelta(t, (a.V+b.V)/2, got, tol, "%s drawn between its stored samples at %v and %v", name, time.Unix(int64(a.T), 0), time.Unix(int64(b.T), 0))
			checked++
		}
		require.Greater(t, checked, 30, "%s: stored points within the chart", name)
	}
}

// TestUIScoreAtSampleTimes: the score chart draws anomaly_score through
// its stored values at their sample times, at every range. The page drew
// the range query's values at its step grid (max(15 s, range/720)): each
// stored value held until the next grid time, so a score was drawn up to a
// step late and, where the step is longer than the samples' spacing (24 h:
// 120 s over scores 15 s apart while above 1), only the one before each
// grid time was drawn at all: a single-sample spike showed only if a grid
// time fell within the 15 s after it, one time in eight, else the chart
// showed no score above 1 and no shading where the incident was.
//
// Single-sample spikes in the last hour of six hours of history (omen
// scores that hour of a new series' history, the rest warms its models;
// its detectors damp spikes like those they have seen, so the first one or
// two score above 1); the chart at 24 h must pass through every stored
// score (a minute apart, and 15 s apart about a spike) at its time.
func TestUIScoreAtSampleTimes(t *testing.T) {
	if testing.Short() && !e2e() {
		t.Skip("browser test; runs with OMEN_E2E=1 or without -short")
	}
	br := startBrowser(t, 1280, 900)
	base := startOmen(t)
	now := time.Now().Truncate(time.Second)
	in := fakeInput{name: "queue_depth", labels: map[string]string{"job": "api", "instance": "a:1"}, base: 100, amp: 20}
	const step, span = 15 * time.Second, 6 * time.Hour
	// Each spike four times the one before: omen's detectors damp
	// alarms like those they have seen.
	spikes := map[int64]float64{}
	for k := range 8 {
		spikes[now.Add(-50*time.Minute+time.Duration(k)*(6*time.Minute+step)).Unix()] = 8 * in.amp * math.Pow(4, float64(k))
	}
	value := func(t float64) float64 {
		return in.value(t) + spikes[int64(t)]
	}
	remoteWrite(t, base, []fakeSeries{{map[string]string{"__name__": in.name, "job": "api", "instance": "a:1"}, value}}, now, span, step)

	sel := `anomaly_score{for="queue_depth",job="api",instance="a:1"}[7h]`
	var stored []struct{ T, V float64 }
	var answer string
	high := func() (n int) {
		for _, p := range stored {
			if p.V > 1 {
				n++
			}
		}
		return n
	}
	done := func() bool {
		rs, err := queryRaw(base, sel, float64(now.Unix()))
		if err != nil || len(rs) != 1 {
			answer = fmt.Sprint(rs, err)
			return false
		}
		stored = rs[0].Values
		answer = fmt.Sprintf("%d scores, %d above 1, the latest at %v", len(stored), high(), time.Unix(int64(stored[len(stored)-1].T), 0))
		return stored[len(stored)-1].T > float64(now.Unix())-60 && high() > 0
	}
	for deadline := time.Now().Add(2 * time.Minute); !done(); time.Sleep(200 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "omen stores scores above 1 and up to the history's last minute; %s", answer)
	}

	openSeriesAt(t, br, base, map[string]string{"for": "queue_depth", "job": "api", "instance": "a:1"})
	br.click(`.ranges button[data-range="86400"]`)
	br.waitFor("the 24h chart", `document.getElementById("series").dataset.state === "ready" && omen.data.step === 120`, 30*time.Second)
	// The score's line as uPlot draws it: through its points that are not
	// null or undefined.
	var drawn [][2]float64
	br.eval(&drawn, `var d = omen.data.score, pts = [];
for (var i = 0; i < d[0].length; i++) if (d[1][i] != null) pts.push([d[0][i], d[1][i]]);
return pts;`)
	require.NotEmpty(t, drawn)
	var missed, checked []string
	for _, p := range stored {
		if p.T < drawn[0][0] || p.T > drawn[len(drawn)-1][0] {
			continue // outside the chart
		}
		got, ok := lineAt(drawn, p.T)
		if !ok || math.Abs(got-p.V) > 1e-6*max(1, p.V) {
			missed = append(missed, fmt.Sprintf("%s: stored %.3g, drawn %.3g", time.Unix(int64(p.T), 0).Format(time.TimeOnly), p.V, got))
		}
		if p.V > 1 {
			checked = append(checked, time.Unix(int64(p.T), 0).Format(time.TimeOnly))
		}
	}
	require.NotEmpty(t, checked, "stored scores above 1 within the chart")
	require.Empty(t, missed, "stored scores the chart does not draw at their time (%d of %d; above 1 at %v)", len(missed), len(stored), checked)
}

// openSeriesAt opens the page at base with the chart of the series labels
// (the outputs', with for), as a link to it does, and waits for the chart.
func openSeriesAt(t *testing.T, br *browser, base string, labels map[string]string) {
	t.Helper()
	ls, err := json.Marshal(labels)
	require.NoError(t, err)
	br.open(fmt.Sprintf("%s/#series=%s", base, url.QueryEscape(string(ls))))
	br.waitFor("the series chart", `document.getElementById("series").dataset.state === "ready" && omen.state.selectedKey !== ""`, 30*time.Second)
}

// lineAt is the line through pts (in time order), as uPlot draws it, at
// x; false outside it.
func lineAt(pts [][2]float64, x float64) (float64, bool) {
	for i := 1; i < len(pts); i++ {
		if a, b := pts[i-1], pts[i]; a[0] <= x && x <= b[0] {
			if b[0] == a[0] {
				return a[1], true
			}
			return a[1] + (b[1]-a[1])*(x-a[0])/(b[0]-a[0]), true
		}
	}
	return 0, false
}
