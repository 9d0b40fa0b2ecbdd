package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// The two series of the test exporter: a seasonal one (period 10 minutes)
// that gets the spike, and a control. Both carry deterministic noise, a hash
// of the second since the exporter's origin, so a run repeats: keyed on the
// wall clock's second, each run scored other noise, and the control's false
// alarms at the detector's budget (1.5e-3 a sample) raised its alert in 1
// run of 37.
const (
	seasonalName = "e2e_seasonal_value"
	controlName  = "e2e_control_value"
	spikeSize    = 1000.0
)

func noise(name string, tMs int64) float64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", name, tMs/1000)
	return float64(h.Sum64()%2001)/1000 - 1 // uniform in [-1, 1]
}

func seasonalAt(tMs int64) float64 {
	return 100 + 20*math.Sin(2*math.Pi*float64(tMs)/600000) + noise(seasonalName, tMs)
}

func controlAt(tMs int64) float64 { return 50 + noise(controlName, tMs) }

// exporter serves the two series at the time of each scrape.
type exporter struct {
	// origin is the time, in ms, the series' times are counted from (0:
	// the Unix epoch); writeHistory takes the same.
	origin int64
	spike  atomic.Bool
	// noControl: the control series leaves the exposition, and
	// Prometheus marks it stale.
	noControl atomic.Bool
}

func (e *exporter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	now := time.Now().UnixMilli() - e.origin
	s := seasonalAt(now)
	if e.spike.Load() {
		s += spikeSize
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# TYPE %s gauge\n%s %g\n", seasonalName, seasonalName, s)
	if !e.noControl.Load() {
		fmt.Fprintf(w, "# TYPE %s gauge\n%s %g\n", controlName, controlName, controlAt(now))
	}
}

// writeHistory remote-writes span of past-dated samples, one a second,
// for both series with the labels Prometheus's scrape will give them, so
// the live samples continue the same series (of the exporter's origin).
// extra are the scrape's further target labels, named after job (remote
// write's labels are sorted by name).
func writeHistory(t *testing.T, base, instance string, origin int64, end time.Time, span time.Duration, extra ...prompb.Label) {
	const perRequest = 20000
	start := end.Add(-span).UnixMilli()
	stop := end.UnixMilli()
	for from := start; from < stop; from += perRequest * 1000 {
		var req prompb.WriteRequest
		for _, s := range []struct {
			name string
			f    func(int64) float64
		}{{seasonalName, seasonalAt}, {controlName, controlAt}} {
			ts := prompb.TimeSeries{Labels: append([]prompb.Label{
				{Name: "__name__", Value: s.name}, {Name: "instance", Value: instance}, {Name: "job", Value: "exporter"},
			}, extra...)}
			for tm := from; tm < min(from+perRequest*1000, stop); tm += 1000 {
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: tm, Value: s.f(tm - origin)})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		code, body := remoteWriteV1(t, base, &req)
		require.Equal(t, http.StatusNoContent, code, body)
	}
}

// waitHistoryScored waits until the history writeHistory wrote went
// through omen's scorer: both inputs are warm.
func waitHistoryScored(t *testing.T, base string) {
	t.Helper()
	waitFor(t, 120*time.Second, "the history to be scored", func() bool {
		for _, n := range []string{seasonalName, controlName} {
			a := anomaliesOf(t, base, n)
			if len(a) != 1 || !a[0].Ready {
				return false
			}
		}
		return true
	})
}

// e2eAnomaly is an entry of omen's /api/v1/anomalies.
type e2eAnomaly struct {
	Labels    map[string]string `json:"labels"`
	Score     float64           `json:"score"`
	Active    bool              `json:"active"`
	Since     *time.Time        `json:"since"`
	PeakScore float64           `json:"peak_score"`
	Value     float64           `json:"value"`
	Yhat      *float64          `json:"yhat"`
	YhatLower *float64          `json:"yhat_lower"`
	YhatUpper *float64          `json:"yhat_upper"`
	Ready     bool              `json:"ready"`
	Counter   bool              `json:"counter"`
	Timestamp time.Time         `json:"timestamp"`
}

// anomaliesOf reads omen's /api/v1/anomalies for the input series named
// (all of them for "").
func anomaliesOf(t testing.TB, base, name string) []e2eAnomaly {
	t.Helper()
	q := url.Values{}
	if name != "" {
		q.Set("match[]", name)
	}
	data, err := apiGet(t, base, "/api/v1/anomalies", q)
	require.NoError(t, err)
	var r struct {
		Anomalies []e2eAnomaly `json:"anomalies"`
	}
	require.NoError(t, json.Unmarshal(data, &r))
	return r.Anomalies
}

// metricsGauge returns the value of the gauge or counter family{for=name}
// (of the family's only series if name is "") on omen's /metrics, or NaN
// if absent.
func metricsGauge(t testing.TB, base, family, name string) float64 {
	t.Helper()
	return metricsGaugeWith(t, base, family, name, "")
}

// metricsGaugeWith is metricsGauge for the series with horizon=horizon too
// (any if "").
func metricsGaugeWith(t testing.TB, base, family, name, horizon string) float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(metricsText(t, base)))
	require.NoError(t, err)
	mf := fams[family]
	if mf == nil {
		return math.NaN()
	}
	for _, m := range mf.GetMetric() {
		ls := map[string]string{}
		for _, l := range m.GetLabel() {
			ls[l.GetName()] = l.GetValue()
		}
		if (name == "" || ls["for"] == name) && (horizon == "" || ls["horizon"] == horizon) {
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return math.NaN()
}

// requirePipeline fails fast, with the reason, if `omen serve` does not run
// the scoring pipeline (cmd/omen/serve.go wires pipeline.New).
func requirePipeline(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/status/omen")
	require.NoError(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/status/omen: %s; is the pipeline wired into cmd/omen/serve.go?", resp.Status)
	}
}

// generateRules writes the rules `omen rules generate` prints for the
// configuration cfg to a file and returns its path.
func generateRules(t *testing.T, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "omen.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o644))
	out, err := exec.Command(omenBinary(t), "rules", "generate", "--config.file="+cfgFile).Output()
	require.NoError(t, err)
	rulesFile := filepath.Join(dir, "omen.rules.yml")
	require.NoError(t, os.WriteFile(rulesFile, out, 0o644))
	return rulesFile
}

// TestScoringEndToEnd is issue 5's test: the real Prometheus scrapes a test
// exporter every second and remote-writes to omen, whose TSDB already holds
// a day of history of both series; a spike in one series must score above
// 1 on omen's /metrics, in omen's TSDB and in Prometheus (which scrapes
// omen), while the control stays below 1 inside its band. Then omen is
// restarted and must score without a new warm-up.
// The lasting spike fires the generated warning in Prometheus.
func TestScoringEndToEnd(t *testing.T) {
	need(t, "prometheus")
	// The history ends at the origin, a whole second, and the live samples
	// follow it: every run scores the same values.
	end := time.Now().Add(-2 * time.Second).Truncate(time.Second)
	exp := &exporter{origin: end.UnixMilli()}
	srv := httptest.NewServer(exp)
	defer srv.Close()
	instance := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	omenArgs := []string{"--storage.tsdb.out-of-order-time-window=2d", "--snapshot.interval=1h"}
	omen := startOmen(t, dir, omenArgs...)
	requirePipeline(t, omen.URL)
	writeHistory(t, omen.URL, instance, exp.origin, end, 24*time.Hour)

	waitHistoryScored(t, omen.URL)

	// Prometheus evaluates the rules `omen rules generate` makes, with a
	// warning tier for events of 5 s (the detector takes a change of 1 s
	// samples in within a minute or so; the default 5m is for 15 s ones).
	rulesFile := generateRules(t, "alerting: {warning: {score: 1, for: 5s}}\n")
	prom := startPrometheus(t, func(addr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: exporter
    static_configs: [{targets: ['%s']}]
  - job_name: omen
    static_configs: [{targets: ['%s']}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
    write_relabel_configs:
      - {source_labels: [job], regex: exporter, action: keep}
`, rulesFile, instance, omen.Addr, omen.URL)
	})

	// Live samples arrive and are scored; the control is quiet.
	waitFor(t, 60*time.Second, "live samples scored", func() bool {
		a := anomaliesOf(t, omen.URL, controlName)
		return len(a) == 1 && time.Since(a[0].Timestamp) < 5*time.Second
	})

	// The day of history at 1 s went through the scorers: outputs older
	// than the head appends in order were counted, not rejected; and the
	// forecaster (fed 29 s means) forecasts every default horizon, though
	// 30m is 1800 samples ahead.
	require.Positive(t, metricsGauge(t, omen.URL, "omen_output_history_skipped_total", ""))
	require.Zero(t, metricsGauge(t, omen.URL, "omen_output_append_failures_total", ""))
	for _, h := range []string{"5m", "15m", "30m"} {
		f := metricsGaugeWith(t, omen.URL, "forecast", seasonalName, h)
		require.False(t, math.IsNaN(f), "forecast{horizon=%q} on /metrics", h)
		require.InDelta(t, 100, f, 40, "forecast{horizon=%q}", h)
	}

	exp.spike.Store(true)
	spikeAt := time.Now()
	var score float64
	// 60 s, not the few scrape intervals it takes: on a loaded machine
	// (the packages' tests run side by side) Prometheus's send queue lags.
	waitFor(t, 60*time.Second, "anomaly_score > 1 on omen's /metrics", func() bool {
		score = metricsGauge(t, omen.URL, "anomaly_score", seasonalName)
		return score > 1
	})
	t.Logf("anomaly_score{for=%q} = %g on /metrics %s after the spike", seasonalName, score, time.Since(spikeAt).Round(time.Millisecond))

	// The spike is an incident: listed first and active, since about when
	// it began, and it stays so while the spike lasts even when the
	// detector damps the follow-up scores below 1.
	for range 3 {
		top := anomaliesOf(t, omen.URL, "")
		require.NotEmpty(t, top)
		require.Equal(t, seasonalName, top[0].Labels["for"], "the incident is listed first")
		require.True(t, top[0].Active)
		require.NotNil(t, top[0].Since)
		// Since is the incident's first score above 1: at the spike, or at
		// a false alarm up to the hold time (5m) before it.
		require.True(t, top[0].Since.Before(spikeAt.Add(10*time.Second)), "since %s, spike %s", top[0].Since, spikeAt)
		require.Greater(t, top[0].PeakScore, 1.0)
		time.Sleep(2 * time.Second)
	}

	// The control at the same moment: below 1, value inside its band.
	c := anomaliesOf(t, omen.URL, controlName)
	require.Len(t, c, 1)
	require.True(t, c[0].Ready)
	require.Less(t, c[0].Score, 1.0)
	require.NotNil(t, c[0].YhatLower)
	require.NotNil(t, c[0].YhatUpper)
	require.LessOrEqual(t, *c[0].YhatLower, c[0].Value)
	require.LessOrEqual(t, c[0].Value, *c[0].YhatUpper)
	require.Less(t, metricsGauge(t, omen.URL, "anomaly_score", controlName), 1.0)

	// In omen's TSDB, through its query API.
	q := fmt.Sprintf(`max_over_time(anomaly_score{for=%q, job="exporter"}[1m])`, seasonalName)
	waitFor(t, 30*time.Second, "anomaly_score > 1 in omen's TSDB", func() bool {
		res, err := query(t, omen.URL, q, time.Time{})
		return err == nil && len(res) == 1 && res[0].F() > 1
	})
	// The control's latest score (a maximum over many samples would be
	// above 1 at the false-alarm rate now and then, by design).
	res, err := query(t, omen.URL, fmt.Sprintf(`anomaly_score{for=%q}`, controlName), time.Time{})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Less(t, res[0].F(), 1.0, "control in omen's TSDB")

	// In Prometheus, which scrapes omen's /metrics.
	pq := fmt.Sprintf(`max_over_time(anomaly_score{job="omen", for=%q}[1m])`, seasonalName)
	waitFor(t, 30*time.Second, "anomaly_score > 1 in Prometheus", func() bool {
		res, err := query(t, prom.URL, pq, time.Time{})
		return err == nil && len(res) == 1 && res[0].F() > 1
	})

	// The lasting spike is an incident whose event goes on: the generated
	// warning fires in Prometheus, though anomaly_score is above 1 at the
	// spike's start only. The control raises none.
	alert := fmt.Sprintf(`ALERTS{alertname="OmenSeriesAnomalous", alertstate="firing", for=%q}`, seasonalName)
	waitFor(t, 60*time.Second, "OmenSeriesAnomalous firing in Prometheus", func() bool {
		res, err := query(t, prom.URL, alert, time.Time{})
		return err == nil && len(res) == 1
	})
	t.Logf("OmenSeriesAnomalous fired %s after the spike", time.Since(spikeAt).Round(time.Millisecond))
	res, err = query(t, prom.URL, fmt.Sprintf(`ALERTS{alertname="OmenSeriesAnomalous", for=%q}`, controlName), time.Time{})
	require.NoError(t, err)
	require.Empty(t, res, "the control raised an alert")

	// Restart: SIGTERM writes the final snapshot; the restarted omen
	// restores it and its first scores need no warm-up (and no history).
	exp.spike.Store(false)
	omen.Stop()
	restartAt := time.Now()
	omen2 := startOmen(t, dir, append(omenArgs, "--web.listen-address="+omen.Addr)...)
	waitFor(t, 60*time.Second, "scores after the restart", func() bool {
		for _, n := range []string{seasonalName, controlName} {
			a := anomaliesOf(t, omen2.URL, n)
			if len(a) != 1 || a[0].Timestamp.Before(restartAt) {
				return false
			}
		}
		return true
	})
	for _, n := range []string{seasonalName, controlName} {
		a := anomaliesOf(t, omen2.URL, n)
		require.True(t, a[0].Ready, "%s needed a new warm-up after the restart", n)
		require.Equal(t, 1.0, metricsGauge(t, omen2.URL, "omen_model_ready", n))
	}
	require.Contains(t, string(metricsText(t, omen2.URL)), "omen_warm_start_samples_total 0\n", "state came from the snapshot, not from history")

	// The control leaves the exporter: Prometheus remote-writes a
	// staleness marker for it, and its outputs go stale too, off
	// /metrics and out of PromQL's instant answers at once (not after
	// the lookback delta, or the hour until the models are dropped).
	exp.noControl.Store(true)
	waitFor(t, 30*time.Second, "the control's outputs gone from /metrics", func() bool {
		return math.IsNaN(metricsGauge(t, omen2.URL, "anomaly_score", controlName)) &&
			math.IsNaN(metricsGauge(t, omen2.URL, "omen_model_ready", controlName))
	})
	require.Empty(t, anomaliesOf(t, omen2.URL, controlName))
	// The markers are committed with the scorer's batch, just after the
	// series leaves /metrics.
	waitFor(t, 10*time.Second, "the stored anomaly_score marked stale", func() bool {
		res, err := query(t, omen2.URL, fmt.Sprintf(`anomaly_score{for=%q}`, controlName), time.Time{})
		return err == nil && len(res) == 0
	})
	require.False(t, math.IsNaN(metricsGauge(t, omen2.URL, "anomaly_score", seasonalName)), "the other input is untouched")
}

// TestDeclaredCounterScoredAsRate: a counter whose name does not end in
// _total is known as one only by the metadata Prometheus 2.42 sends in
// remote-write 1.0 requests of their own. omen scores it as a per-second
// rate once declared, not as its running total (a ramp whose forecasts
// and scores mean nothing).
func TestDeclaredCounterScoredAsRate(t *testing.T) {
	need(t, "prometheus")
	const name = "e2e_transferred_bytes"
	start := time.Now()
	// 100 bytes a second, stamped (as the text format allows) with the
	// millisecond it was counted at: a rate of 100 whenever Prometheus
	// scrapes. (Counted in whole seconds at the moment the scrape's
	// request came, and stamped by Prometheus with the scrape's start, a
	// request late by tens of milliseconds on a loaded machine read the
	// same second as the scrape before: a rise of 0 in a second, a rate
	// of 0, in 1 of 4 runs of this package under make test's load.)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		now := time.Now()
		fmt.Fprintf(w, "# HELP %s Bytes sent.\n# TYPE %s counter\n%s %g %d\n", name, name, name,
			float64(now.Sub(start).Milliseconds())/10, now.UnixMilli())
	}))
	defer srv.Close()
	// Two more targets declare one family two ways (a gauge by its name):
	// Prometheus sends both declarations, and omen types it by its name.
	var mixed []string
	for _, typ := range []string{"counter", "gauge"} {
		m := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprintf(w, "# TYPE e2e_mixed %s\ne2e_mixed %d\n", typ, 100*int64(time.Since(start)/time.Second))
		}))
		defer m.Close()
		mixed = append(mixed, strings.TrimPrefix(m.URL, "http://"))
	}
	omen := startOmen(t, t.TempDir())
	requirePipeline(t, omen.URL)
	startPrometheus(t, func(string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: exporter
    static_configs: [{targets: ['%s', '%s', '%s']}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
    metadata_config: {send: true, send_interval: 2s}
`, strings.TrimPrefix(srv.URL, "http://"), mixed[0], mixed[1], omen.URL)
	})
	var last []e2eAnomaly
	waitFor(t, 90*time.Second, "the declared counter scored as a rate", func() bool {
		last = anomaliesOf(t, omen.URL, name)
		return len(last) == 1 && last[0].Counter && time.Since(last[0].Timestamp) < 5*time.Second
	})
	// A rate of 100 (give or take omen's rounding of an interval near a
	// whole number of seconds to it), not a total in the thousands.
	require.InDelta(t, 100, last[0].Value, 10, "scored value")

	// Several metadata sends later, both of the mixed family's series are
	// gauges, as its name says, and stay so.
	time.Sleep(6 * time.Second)
	for range 3 {
		got := anomaliesOf(t, omen.URL, "e2e_mixed")
		require.Len(t, got, 2)
		for _, a := range got {
			require.False(t, a.Counter, "%s typed as a counter", a.Labels["instance"])
		}
		time.Sleep(2 * time.Second)
	}
}

// TestHAPairDeduplicated: two real Prometheus replicas of an HA pair scrape
// the same target and both remote-write to omen, with the Prometheus
// Operator's external labels: prometheus (the pair) and prometheus_replica.
// omen stores one series, without either label, from the replica that
// wrote first, drops the other's, and when that one stops takes the
// other's after the failover timeout.
func TestHAPairDeduplicated(t *testing.T) {
	need(t, "prometheus")
	const name = "e2e_ha_value"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE %s gauge\n%s %d\n", name, name, time.Now().Unix()%1000)
	}))
	defer srv.Close()
	omen := startOmen(t, t.TempDir(), "--write.ha-replica-label=prometheus_replica", "--write.ha-cluster-label=prometheus",
		"--write.ha-strip-cluster-label", "--write.ha-failover-timeout=3s")
	replica := func(r string) *proc {
		return startPrometheus(t, func(string) string {
			return fmt.Sprintf(`
global:
  scrape_interval: 1s
  external_labels: {prometheus: e2e/k8s, prometheus_replica: %s}
scrape_configs:
  - job_name: exporter
    static_configs: [{targets: ['%s']}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
`, r, strings.TrimPrefix(srv.URL, "http://"), omen.URL)
		})
	}
	// stored returns omen's series of the input and the time of the
	// latest sample.
	stored := func() (series []map[string]string, latest time.Time) {
		res, err := query(t, omen.URL, fmt.Sprintf(`timestamp(%s)`, name), time.Time{})
		require.NoError(t, err)
		for _, s := range res {
			series = append(series, s.Metric)
			if ts := time.Unix(int64(s.F()), 0); ts.After(latest) {
				latest = ts
			}
		}
		return series, latest
	}
	a := replica("a")
	waitFor(t, 60*time.Second, "replica a's samples in omen", func() bool {
		s, _ := stored()
		return len(s) == 1
	})
	replica("b")
	waitFor(t, 60*time.Second, "replica b's samples dropped as duplicates", func() bool {
		return metricsGauge(t, omen.URL, "omen_ha_deduplicated_samples_total", "") > 0
	})
	series, _ := stored()
	require.Equal(t, []map[string]string{{"instance": strings.TrimPrefix(srv.URL, "http://"), "job": "exporter"}}, series,
		"one series, without prometheus_replica and prometheus")

	a.Stop()
	stopped := time.Now()
	waitFor(t, 60*time.Second, "replica b elected and its samples stored", func() bool {
		_, latest := stored()
		return latest.After(stopped.Add(4 * time.Second))
	})
	require.Equal(t, 1.0, metricsGauge(t, omen.URL, "omen_ha_elected_replica_changes_total", ""))
	series, _ = stored()
	require.Len(t, series, 1)
}
