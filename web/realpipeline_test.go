package web

import (
	"encoding/json"
	"net/http"
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

	now := time.Now().Truncate(time.Second)
	planted := fakeInput{name: "queue_depth", labels: map[string]string{"job": "api", "instance": "a:1"}, base: 100, amp: 20}
	gen := newFakeAPI(t, time.Now, []fakeInput{
		{name: "queue_depth", labels: map[string]string{"job": "api", "instance": "b:1"}, base: 100, amp: 20},
		planted,
		{name: "db_connections", labels: map[string]string{"job": "db", "instance": "d:2"}, base: 40, amp: 5},
	})
	var inputs []fakeSeries
	for _, s := range gen.series() {
		if _, out := s.labels["for"]; !out {
			inputs = append(inputs, s)
		}
	}
	step := 15 * time.Second
	remoteWrite(t, base, inputs, now.Add(-step), 6*time.Hour, step)
	// The incident: the next sample of the planted series jumps by eight
	// times its daily swing, the others go on as before. omen's detectors
	// damp repeated alarms, so a fresh outlier is what is on top now.
	planted.spike, planted.spikeFrom = 8*planted.amp, now
	gen.inputs[1] = planted
	var last []fakeSeries
	for _, s := range gen.series() {
		if _, out := s.labels["for"]; !out {
			last = append(last, s)
		}
	}
	remoteWrite(t, base, last, now, 0, step)

	waitFirstAnomaly(t, base, map[string]string{"for": "queue_depth", "job": "api", "instance": "a:1"})
	runUIChecks(t, br, base, uiCase{
		wantFirst: `for="queue_depth",instance="a:1",job="api"`,
		filter:    `job="db"`, horizons: 3, shot: "ui-real-pipeline.png",
	})
}
