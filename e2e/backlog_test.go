package e2e

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBacklogAfterOutage: omen unreachable while the real Prometheus
// scrapes on and buffers in its WAL, then back, and Prometheus replaying the
// backlog as fast as its shards go. Two variants: omen hung (SIGSTOP: the
// sends time out) and omen stopped and started again on its data (the
// model snapshot). An exporter serves, every 5 s, a control gauge, a gauge
// that spikes during the outage and a counter of about 50 a second; omen
// holds an hour of their history. Once Prometheus has caught up:
//   - omen holds every sample Prometheus scraped (counted against
//     Prometheus's own TSDB over the same range);
//   - each stored sample was scored, at its timestamp (one anomaly_score
//     per input sample: --output.tsdb-interval=0);
//   - the spike scores above 1 at its own timestamps, and nothing else
//     does (the gap, the burst, the counter rated across them);
//   - while the backlog is sent, omen_scored_sample_latest_timestamp_seconds
//     says how far behind the scores are;
//   - the spike's incident, over in sample time before the backlog's end
//     (--detect.incident-hold a quarter of the outage), is listed in
//     /api/v1/anomalies and seen by the Prometheus that scrapes omen's
//     /metrics, which the generated alerts run on. It was exposed only
//     for the second the burst took to score, and no scrape saw it;
//   - no incident of the control or the counter is: the history written
//     in one go before the series went live is no backlog, and an
//     anomaly in it is not held on omen's clock.
//
// OMEN_BACKLOG=1 runs it (about 2 minutes: not in make test's budget),
// OMEN_BACKLOG_OUTAGE sets the outage (default 75s; the review also ran
// 5m), OMEN_BACKLOG_PORT a base of fixed ports (10 from it) instead of
// free ones.
const (
	blStep    = 5 * time.Second
	blControl = "bl_control"
	blSpiky   = "bl_spiky"
	blCounter = "bl_requests_total"
	blSpike   = 60.0
)

func blGaugeAt(name string, tMs int64) float64 {
	return 100 + 10*math.Sin(2*math.Pi*float64(tMs)/600_000) + 2*noise(name, tMs)
}

func blCounterAt(tMs int64) float64 {
	return math.Round(50*float64(tMs)/1000 + 20*noise(blCounter, tMs))
}

type blExporter struct {
	origin int64
	spike  atomic.Bool
}

func (e *blExporter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	tm := time.Now().UnixMilli() - e.origin
	s := blGaugeAt(blSpiky, tm)
	if e.spike.Load() {
		s += blSpike
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# TYPE %s gauge\n%s %g\n# TYPE %s gauge\n%s %g\n# TYPE %s counter\n%s %g\n",
		blControl, blControl, blGaugeAt(blControl, tm), blSpiky, blSpiky, s, blCounter, blCounter, blCounterAt(tm))
}

// blRaw is the raw samples of q (a range selector) at at, per series (by
// its for label, or __name__).
func blRaw(t testing.TB, base, q string, at time.Time) map[string][][2]float64 {
	t.Helper()
	return rawSamples(t, base, q, at, func(m map[string]string) string {
		if k := m["for"]; k != "" {
			return k
		}
		return m["__name__"]
	})
}

func TestBacklogAfterOutage(t *testing.T) {
	if os.Getenv("OMEN_BACKLOG") == "" {
		t.Skip("OMEN_BACKLOG=1 runs omen's outage and Prometheus's backlog (about 2 minutes; not part of make test's budget)")
	}
	need(t, "prometheus")
	outage := 75 * time.Second
	if v := os.Getenv("OMEN_BACKLOG_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err)
		outage = d
	}
	portBase := 0
	if v := os.Getenv("OMEN_BACKLOG_PORT"); v != "" {
		portBase, _ = strconv.Atoi(v)
	}
	for i, variant := range []string{"hung", "restart"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			port := func(k int) int {
				if portBase == 0 {
					return freePort(t)
				}
				return portBase + 5*i + k
			}
			blRun(t, variant, outage, port)
		})
	}
}

func blRun(t *testing.T, variant string, outage time.Duration, port func(int) int) {
	end := time.Now().Truncate(blStep)
	exp := &blExporter{origin: end.UnixMilli()}
	lis, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port(0)))
	require.NoError(t, err)
	srv := &http.Server{Handler: exp}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	instance := lis.Addr().String()

	dir := t.TempDir()
	omenPort := port(1)
	// A hold shorter than half the outage: the spike's incident is over in
	// sample time before the backlog's end.
	args := []string{"--output.tsdb-interval=0", "--snapshot.interval=1h", "--detect.incident-hold=" + (outage / 4).String()}
	omen := omenAt(t, dir, omenPort, args...)
	omen.WaitReady(60 * time.Second)

	// An hour of history at the scrape interval, with the scrape's labels.
	var req prompb.WriteRequest
	for _, s := range []struct {
		name string
		f    func(int64) float64
	}{
		{blControl, func(tm int64) float64 { return blGaugeAt(blControl, tm) }},
		{blSpiky, func(tm int64) float64 { return blGaugeAt(blSpiky, tm) }},
		{blCounter, blCounterAt},
	} {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: s.name}, {Name: "instance", Value: instance}, {Name: "job", Value: "exporter"}}}
		for tm := end.Add(-time.Hour).UnixMilli(); tm < end.UnixMilli(); tm += blStep.Milliseconds() {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: tm, Value: s.f(tm - end.UnixMilli())})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	code, body := remoteWriteV1(t, omen.URL, &req)
	require.Equal(t, http.StatusNoContent, code, body)
	waitFor(t, 120*time.Second, "history scored", func() bool {
		n := 0
		for _, a := range anomaliesOf(t, omen.URL, "") {
			if a.Ready {
				n++
			}
		}
		return n == 3
	})

	promPort := port(2)
	prom := startPrometheusAt(t, filepath.Join(t.TempDir(), "data"), promPort, func(addr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: exporter
    static_configs: [{targets: ['%s']}]
  - job_name: prometheus
    static_configs: [{targets: ['%s']}]
  - job_name: omen
    static_configs: [{targets: ['%s']}]
remote_write:
  - url: %s/api/v1/write
    name: omen
    remote_timeout: 10s
    write_relabel_configs: [{source_labels: [job], regex: exporter, action: keep}]
`, instance, addr, omen.Addr, omen.URL)
	})
	live := time.Now()
	// Live samples flow before the outage.
	waitFor(t, 60*time.Second, "live samples scored", func() bool {
		v := metricsGauge(t, omen.URL, "omen_scored_sample_latest_timestamp_seconds", "")
		return v > float64(live.Unix()+15)
	})

	behind := `max_over_time(prometheus_remote_storage_highest_timestamp_in_seconds[5m]) - ignoring(remote_name, url) group_right() max_over_time(prometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name="omen"}[5m])`
	downAt := time.Now()
	switch variant {
	case "hung":
		require.NoError(t, omen.cmd.Process.Signal(syscall.SIGSTOP))
	case "restart":
		omen.Stop()
	}
	t.Logf("%s: omen down at %s for %s", variant, downAt.Format(time.TimeOnly), outage)
	spikeAt := downAt.Add(outage / 2)
	time.Sleep(time.Until(spikeAt))
	exp.spike.Store(true)
	time.Sleep(2 * blStep)
	exp.spike.Store(false)
	spikeEnd := time.Now()
	time.Sleep(time.Until(downAt.Add(outage)))
	if v, err := query(t, prom.URL, behind, time.Time{}); err == nil && len(v) == 1 {
		t.Logf("%s: OmenRemoteWriteBehind's expression at the end of the outage: %.0f s", variant, v[0].F())
	}
	upAt := time.Now()
	switch variant {
	case "hung":
		require.NoError(t, omen.cmd.Process.Signal(syscall.SIGCONT))
	case "restart":
		omen = omenAt(t, dir, omenPort, args...)
		omen.WaitReady(60 * time.Second)
	}

	// Catch-up: sample omen's self-metrics until the scores are within two
	// scrapes of now.
	type obs struct {
		at             time.Duration
		lag, latestAge float64
	}
	var seen []obs
	waitFor(t, 120*time.Second, "omen's scores caught up", func() bool {
		now := time.Now()
		latest := metricsGauge(t, omen.URL, "omen_scored_sample_latest_timestamp_seconds", "")
		lag := metricsGauge(t, omen.URL, "omen_scoring_lag_seconds", "")
		seen = append(seen, obs{now.Sub(upAt), lag, float64(now.UnixMilli())/1000 - latest})
		return float64(now.Unix())-latest < 2*blStep.Seconds()
	})
	caught := time.Now()
	// At once (the hold on omen's clock runs from the burst): the
	// spike's incident is listed.
	listed := false
	for _, a := range anomaliesOf(t, omen.URL, blSpiky) {
		listed = listed || a.Active && a.PeakScore > 1
	}
	assert.True(t, listed, "the spike's incident is not listed in /api/v1/anomalies after the catch-up")
	var trace []string
	for _, o := range seen {
		trace = append(trace, fmt.Sprintf("+%.1fs lag=%.1f latest_age=%.1f", o.at.Seconds(), o.lag, o.latestAge))
	}
	t.Logf("%s: caught up %.1f s after omen was back; self-metrics:\n%s", variant, caught.Sub(upAt).Seconds(), strings.Join(trace, "\n"))
	maxAge := 0.0
	for _, o := range seen {
		if o.latestAge < 1e6 { // not 0: nothing scored yet since a restart
			maxAge = max(maxAge, o.latestAge)
		}
	}
	assert.Greater(t, maxAge, outage.Seconds()-2*blStep.Seconds(),
		"omen_scored_sample_latest_timestamp_seconds showed the scores up to date while the backlog was sent")

	// Every sample Prometheus scraped since the history, stored and scored.
	at := caught.Add(-2 * blStep)
	window := fmt.Sprintf("[%ds]", int(at.Sub(end).Seconds()))
	for _, n := range []string{blControl, blSpiky, blCounter} {
		sel := fmt.Sprintf(`%s{instance=%q}%s`, n, instance, window)
		inProm := blRaw(t, prom.URL, sel, at)[n]
		inOmen := blRaw(t, omen.URL, sel, at)[n]
		scores := blRaw(t, omen.URL, fmt.Sprintf(`anomaly_score{for=%q, instance=%q}%s`, n, instance, window), at)[n]
		t.Logf("%s: %s: Prometheus %d samples, omen %d, anomaly_score %d", variant, n, len(inProm), len(inOmen), len(scores))
		assert.Equal(t, inProm, inOmen, "%s: omen's samples differ from Prometheus's", n)
		var ts []float64
		for _, s := range inOmen {
			if s[0] > float64(live.Unix()) {
				ts = append(ts, s[0])
			}
		}
		var sts []float64
		for _, s := range scores {
			if s[0] > float64(live.Unix()) {
				sts = append(sts, s[0])
			}
		}
		assert.Equal(t, ts, sts, "%s: anomaly_score not stored at each input sample's timestamp", n)
		over := 0
		for _, s := range scores {
			if s[1] > 1 {
				over++
				inSpike := s[0] >= float64(spikeAt.Unix())-1 && s[0] <= float64(spikeEnd.Unix())+1
				if n != blSpiky || !inSpike {
					t.Errorf("%s: %s scored %.2f at %s (outage %s to %s)", variant, n, s[1],
						time.Unix(int64(s[0]), 0).Format(time.TimeOnly), downAt.Format(time.TimeOnly), upAt.Format(time.TimeOnly))
				}
			}
		}
		if n == blSpiky {
			var around []string
			for _, s := range scores {
				if s[0] >= float64(spikeAt.Unix())-15 && s[0] <= float64(spikeEnd.Unix())+15 {
					around = append(around, fmt.Sprintf("%s %.2f", time.Unix(int64(s[0]), 0).Format(time.TimeOnly), s[1]))
				}
			}
			t.Logf("%s: spike %s-%s scores: %s", variant, spikeAt.Format(time.TimeOnly), spikeEnd.Format(time.TimeOnly), strings.Join(around, ", "))
			assert.GreaterOrEqual(t, over, 1, "the spike during the outage scored above 1 nowhere")
		}
	}
	// What a user sees on return: the Prometheus that scrapes omen, which
	// the generated alerts run on, sees the spike's incident.
	peak := fmt.Sprintf(`max_over_time(omen_incident_peak_score{for=%q}[10m])`, blSpiky)
	waitFor(t, 60*time.Second, "Prometheus to scrape the spike's incident from omen", func() bool {
		v, err := query(t, prom.URL, peak, time.Time{})
		return err == nil && len(v) == 1 && v[0].F() > 1
	})
	// And no other: nothing else scored above 1 since the history.
	others := `max_over_time(omen_incident_peak_score{for!="` + blSpiky + `"}[1h])`
	v, err := query(t, prom.URL, others, time.Time{})
	require.NoError(t, err)
	require.Empty(t, v, "incidents other than the spike's scraped from omen")
}
