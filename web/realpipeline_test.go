package web

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"

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
			require.Greater(t, got.Band, 100, "band charted")
			require.Equal(t, 3, got.Cone, "forecasts at every horizon")
			require.InEpsilon(t, got.Yhat, got.Last, 0.5, "values on the band's scale (a counter as its rate)")
		})
	}
}
