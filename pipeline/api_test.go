package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/detect"
)

// apiEnv has a spiky and a quiet series scored.
func apiEnv(t testing.TB) (*env, *http.ServeMux) {
	e := newEnv(t, "", nil, func(o *Options) {
		o.Stats = func() (int, map[string]float64) { return 7, map[string]float64{"out_of_order": 2} }
		o.Build = BuildInfo{Version: "1.2.3", Revision: "abc", GoVersion: "go1.26"}
	})
	// 450 samples: the forecaster (30 s steps) is ready after 384.
	spiky := seasonal(450, 21)
	spiky[449] += 50
	a := labels.FromStrings("__name__", "load", "job", "spiky")
	b := labels.FromStrings("__name__", "load", "job", "quiet")
	quiet := seasonal(450, 22)
	for i := range spiky {
		e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{a, b}, []float64{spiky[i], quiet[i]})
	}
	e.sync()
	mux := http.NewServeMux() // as `omen serve` mounts them
	mux.Handle("GET /api/v1/anomalies", e.p.AnomaliesHandler())
	mux.Handle("GET /api/v1/status/omen", e.p.StatusHandler())
	return e, mux
}

func TestAnomaliesAPI(t *testing.T) {
	_, mux := apiEnv(t)
	type anomaly struct {
		Labels    map[string]string `json:"labels"`
		Score     float64           `json:"score"`
		Since     time.Time         `json:"since"`
		Value     float64           `json:"value"`
		Yhat      float64           `json:"yhat"`
		YhatLower float64           `json:"yhat_lower"`
		YhatUpper float64           `json:"yhat_upper"`
		Member    string            `json:"member"`
		Feature   string            `json:"feature"`
		Ready     bool              `json:"ready"`
		Timestamp time.Time         `json:"timestamp"`
	}
	type resp struct {
		Status string `json:"status"`
		Data   struct {
			Anomalies []anomaly `json:"anomalies"`
		} `json:"data"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}
	tests := []struct {
		name  string
		query url.Values
		code  int
		jobs  []string
	}{
		{"all, highest first", nil, 200, []string{"spiky", "quiet"}},
		{"limit", url.Values{"limit": {"1"}}, 200, []string{"spiky"}},
		{"limit 0: none", url.Values{"limit": {"0"}}, 200, []string{"spiky", "quiet"}},
		{"match", url.Values{"match[]": {`load{job="quiet"}`}}, 200, []string{"quiet"}},
		{"match on for's name", url.Values{"match[]": {`{__name__="nothing"}`}}, 200, nil},
		{"bad limit", url.Values{"limit": {"-1"}}, 400, nil},
		{"bad selector", url.Values{"match[]": {`{job=`}}, 400, nil},
		{"empty selector", url.Values{"match[]": {`{}`}}, 400, nil},
		{"only empty matchers", url.Values{"match[]": {`{job=""}`}}, 400, nil},
		{"an empty set beside another", url.Values{"match[]": {`load{job="quiet"}`, `{job=~".*"}`}}, 400, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies?"+tc.query.Encode(), nil))
			require.Equal(t, tc.code, rec.Code, rec.Body.String())
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var r resp
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r))
			if tc.code != 200 {
				require.Equal(t, "error", r.Status)
				require.Equal(t, "bad_data", r.ErrorType)
				require.NotEmpty(t, r.Error)
				return
			}
			require.Equal(t, "success", r.Status)
			var jobs []string
			for _, a := range r.Data.Anomalies {
				jobs = append(jobs, a.Labels["job"])
				require.Equal(t, "load", a.Labels["for"])
				require.NotContains(t, a.Labels, "__name__")
				require.True(t, a.Ready)
				require.Equal(t, t0.Add(449*stepMs*time.Millisecond), a.Timestamp)
				require.LessOrEqual(t, a.YhatLower, a.Yhat)
				require.LessOrEqual(t, a.Yhat, a.YhatUpper)
				if a.Labels["job"] == "spiky" {
					require.Greater(t, a.Score, 1.0)
					require.Equal(t, a.Timestamp, a.Since)
					require.NotEmpty(t, a.Member)
					require.NotEmpty(t, a.Feature)
				}
			}
			require.Equal(t, tc.jobs, jobs)
		})
	}
}

func TestStatusAPI(t *testing.T) {
	e, mux := apiEnv(t)
	e.p.updateIngestRate()
	e.clock.set(t0.Add(10 * time.Second))
	e.push(t0.UnixMilli()+450*stepMs, "", []labels.Labels{labels.FromStrings("__name__", "load", "job", "quiet")}, []float64{100})
	e.p.updateIngestRate()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status/omen", nil))
	require.Equal(t, 200, rec.Code)
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Ingest   float64            `json:"ingest_samples_per_second"`
			Stored   int                `json:"series_stored"`
			Scored   int                `json:"series_scored"`
			Warming  int                `json:"models_warming"`
			Rejected map[string]float64 `json:"rejected"`
			Config   string             `json:"config"`
			Build    map[string]string  `json:"build"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r))
	require.Equal(t, "success", r.Status)
	require.InDelta(t, 0.1, r.Data.Ingest, 1e-9, "1 sample in 10 s")
	require.Equal(t, 7, r.Data.Stored)
	require.Equal(t, 2, r.Data.Scored)
	require.Equal(t, 0, r.Data.Warming)
	require.Equal(t, map[string]float64{"out_of_order": 2}, r.Data.Rejected)
	require.Contains(t, r.Data.Config, "false_alarm_rate")
	require.Equal(t, map[string]string{"version": "1.2.3", "revision": "abc", "goVersion": "go1.26"}, r.Data.Build)
}

// TestIngestRateBetweenBatches: a Prometheus scraping every 15 s sends
// one batch per scrape, so a 10 s tick may see none. The status API's rate
// reaches back a minute: it never reads 0 while batches come, and once the
// minute is full it is within one batch of the true rate (over one tick it
// read 0 at every third tick and 0.7/s at the others for 0.47/s).
func TestIngestRateBetweenBatches(t *testing.T) {
	e, mux := apiEnv(t)
	series := make([]labels.Labels, 7)
	for i := range series {
		series[i] = labels.FromStrings("__name__", "up", "job", "quiet", "instance", strconv.Itoa(i))
	}
	values := make([]float64, len(series))
	start := t0.Add(450 * stepMs * time.Millisecond)
	e.clock.set(start)
	e.p.updateIngestRate()
	status := func() float64 {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status/omen", nil))
		require.Equal(t, 200, rec.Code)
		var r struct {
			Data struct {
				Ingest float64 `json:"ingest_samples_per_second"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r))
		return r.Data.Ingest
	}
	const want = 7.0 / 15 // samples per second
	for s := 1; s <= 180; s++ {
		now := start.Add(time.Duration(s) * time.Second)
		e.clock.set(now)
		if s%15 == 0 {
			e.push(now.UnixMilli(), model.MetricTypeGauge, series, values)
		}
		if s%10 != 0 || s < 15 {
			continue
		}
		e.p.updateIngestRate()
		got := status()
		require.Positive(t, got, "at %d s", s)
		if s >= 60+15 {
			require.InDelta(t, want, got, 7.0/60, "at %d s", s)
		}
	}
}

// TestPromtoolCheckMetrics runs the real promtool over everything the
// pipeline exposes: its self metrics and the output families.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("OMEN_E2E") == "1" {
			t.Fatal("promtool not found on PATH; make deps-e2e installs it")
		}
		t.Skip("promtool not found on PATH (set OMEN_E2E=1 to make this a failure)")
	}
	e, _ := apiEnv(t)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(e.p.Collector()))
	for _, g := range []prometheus.Gatherer{e.reg, reg} {
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(g, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		body := rec.Body.String()
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewBufferString(body)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool: %s\n%s", out, body)
		require.Empty(t, string(out))
	}
	// Every family named in the contract is there.
	mfs, err := prometheus.Gatherers{e.reg, reg}.Gather()
	require.NoError(t, err)
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, n := range append(AllFamilies, "omen_series_scored", "omen_series_forecasting", "omen_series_over_budget_total", "omen_models_warming",
		"omen_model_ready", "omen_inference_duration_seconds", "omen_scoring_queue_length",
		"omen_scoring_dropped_total", "omen_scoring_lag_seconds", "omen_snapshot_failures_total",
		"omen_snapshot_last_success_timestamp_seconds", "omen_anomalies_total") {
		require.True(t, have[n], n)
	}
}

func TestFamiliesAndFloor(t *testing.T) {
	e, _ := apiEnv(t)
	e.p.family = map[string]bool{FamilyScore: true}
	e.p.opts.ScoreFloor = 1
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(e.p.Collector()))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
	}
	// The forecast accuracy is per input name and horizon, not per series:
	// no family filter or floor applies to it.
	require.NotZero(t, got["omen_forecast_mase"])
	delete(got, "omen_forecast_mase")
	delete(got, "omen_forecast_interval_coverage_ratio")
	// The anomalous series is in an incident: its incident gauges go out
	// whatever the filter, as the alerting rules read them.
	require.Equal(t, map[string]int{"anomaly_score": 1, "omen_model_ready": 2,
		"omen_incident_peak_score": 1, "omen_incident_duration_seconds": 1}, got)
}

// TestCollectorInputLabelClash: an input label named like an output label
// (for; horizon on the forecasts) is kept as exported_<name>, as
// Prometheus's scrape keeps a target's clashing labels, so inputs that
// differ only in it stay apart on /metrics and in the TSDB.
func TestCollectorInputLabelClash(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	for _, in := range []string{"a", "b"} {
		e.feed(labels.FromStrings("__name__", "x", "horizon", "input", "for", in), model.MetricTypeGauge, seasonal(450, 9))
	}
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(e.p.Collector()))
	mfs, err := reg.Gather()
	require.NoError(t, err, "no two outputs have the same labels")
	seen := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "forecast" && mf.GetName() != "anomaly_score" {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			require.Equal(t, "x", ls["for"])
			require.Contains(t, []string{"a", "b"}, ls["exported_for"])
			if mf.GetName() == "forecast" {
				require.Contains(t, []string{"5m", "15m", "30m"}, ls["horizon"])
				require.Equal(t, "input", ls["exported_horizon"])
			} else {
				require.Equal(t, "input", ls["horizon"], "no clash outside the forecasts")
			}
			seen[mf.GetName()+"/"+ls["exported_for"]]++
		}
	}
	require.Equal(t, map[string]int{"anomaly_score/a": 1, "anomaly_score/b": 1, "forecast/a": 3, "forecast/b": 3}, seen)
	require.Equal(t, 0.0, testutil.ToFloat64(e.p.m.outputErrors), "the inputs' outputs are appended to two series")
	require.Len(t, query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "x")), 2)
	for _, a := range e.p.Anomalies(nil) { // the API names the outputs' labels
		require.Equal(t, "x", a.Labels["for"])
		require.Contains(t, []string{"a", "b"}, a.Labels["exported_for"])
	}
}

// TestAnomaliesAPIInfiniteValue: ±Inf samples are valid, stored and
// scored; one as a series' latest value made the whole list a 200 with an
// empty body (encoding/json refuses Inf), for every series, in Grafana and
// the UI alike.
func TestAnomaliesAPIInfiniteValue(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	vs := seasonal(100, 3)
	vs[99] = math.Inf(1)
	e.feed(labels.FromStrings("__name__", "inf_metric"), model.MetricTypeGauge, vs)
	e.feed(labels.FromStrings("__name__", "requests_total"), "", []float64{1, 2, 3})
	rec := httptest.NewRecorder()
	e.p.AnomaliesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Anomalies []map[string]any `json:"anomalies"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r), rec.Body.String())
	require.Len(t, r.Data.Anomalies, 2)
	for _, a := range r.Data.Anomalies {
		switch a["labels"].(map[string]any)["for"] {
		case "inf_metric":
			require.Nil(t, a["value"], "+Inf as null")
			require.Equal(t, false, a["counter"])
		case "requests_total":
			require.Equal(t, true, a["counter"], "scored as a rate")
		}
	}
}

// TestAnomaliesAPIReceived: each entry says when omen received its latest
// sample, on omen's clock, beside that sample's timestamp, on its sender's:
// the web UI tells a silent series by the first (it read the timestamp
// against the browser's clock, and every series of a Prometheus whose clock
// was 10 minutes behind read "no data for 10m" while it sent), and times an
// incident on the series' own clock from the two.
func TestAnomaliesAPIReceived(t *testing.T) {
	for _, tc := range []struct {
		name   string
		behind time.Duration // the sender's clock against omen's
	}{
		{"clocks agree", 0},
		{"sender 1h behind", time.Hour},
		{"sender 10m behind", 10 * time.Minute},
		{"sender 30s behind", 30 * time.Second},
		{"sender 30s ahead", -30 * time.Second},
		{"sender 5m ahead", -5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			ls := labels.FromStrings("__name__", "load", "job", "api")
			vs := seasonal(40, 5)
			var received time.Time
			for i, v := range vs {
				received = t0.Add(time.Duration(i) * stepMs * time.Millisecond).Add(7 * time.Millisecond)
				e.clock.set(received)
				e.push(received.Add(-tc.behind).UnixMilli(), model.MetricTypeGauge, []labels.Labels{ls}, []float64{v})
				e.sync()
			}
			e.clock.set(received.Add(time.Minute)) // asked a minute after
			rec := httptest.NewRecorder()
			e.p.AnomaliesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies", nil))
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			var r struct {
				Data struct {
					Anomalies []struct {
						Timestamp time.Time `json:"timestamp"`
						Received  time.Time `json:"received"`
					} `json:"anomalies"`
				} `json:"data"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r), rec.Body.String())
			require.Len(t, r.Data.Anomalies, 1)
			a := r.Data.Anomalies[0]
			require.Equal(t, received.Add(-tc.behind).UTC(), a.Timestamp, "the sample's own time")
			require.Equal(t, received.UTC(), a.Received, "omen's clock when it came")
		})
	}
}

// TestAnomaliesAPIWarmingHasNoBand: a series still warming up is listed
// with its score (0) but no band, as /metrics shows none; the API gave the
// detector's early band, built on a few samples.
func TestAnomaliesAPIWarmingHasNoBand(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	e.feed(labels.FromStrings("__name__", "young"), model.MetricTypeGauge, seasonal(10, 4))
	rec := httptest.NewRecorder()
	e.p.AnomaliesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	var r struct {
		Data struct {
			Anomalies []map[string]any `json:"anomalies"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r), rec.Body.String())
	require.Len(t, r.Data.Anomalies, 1)
	a := r.Data.Anomalies[0]
	require.Equal(t, false, a["ready"])
	require.InDelta(t, 0, a["score"], 0)
	require.NotNil(t, a["value"])
	for _, k := range []string{"yhat", "yhat_lower", "yhat_upper"} {
		require.Contains(t, a, k)
		require.Nil(t, a[k], k)
	}
}

// TestAnomaliesExplainPeak: an active incident is explained by what drove
// its peak, which orders the list, not by its latest sample (a soak's shift
// that peaked at 20 from the shift member was listed as the novelty member
// of a value inside its band).
func TestAnomaliesExplainPeak(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "temperature")
	vs := seasonal(710, 3)
	vs[700] += 1000
	e.feed(ls, model.MetricTypeGauge, vs)

	d, err := detect.New(detectOptions(config0().Defaults))
	require.NoError(t, err)
	var peak, last detect.Result
	for i, v := range vs {
		r := d.Update(t0.UnixMilli()+int64(i)*stepMs, v)
		if i == 700 {
			peak = r
		}
		last = r
	}
	require.Greater(t, peak.Score, 1.0)
	require.NotEqual(t, peak.Member, last.Member, "the test needs a latest sample explained otherwise")
	got := e.p.Anomalies(nil)
	require.Len(t, got, 1)
	require.True(t, got[0].Active)
	require.Equal(t, peak.Member, got[0].Member)
	require.Equal(t, peak.Feature, got[0].Feature)
}

// TestNonMeasurements: a finite input near math.MaxFloat64 (Java's
// Double.MAX_VALUE, a JMX exporter's "no value") scored +Inf, which made
// /api/v1/anomalies answer 500 for every series and left an infinite band
// on /metrics. Such a sentinel is no value now, as a NaN: score 0, no band,
// no incident (an idle stretch of it was one, for as long as it lasted).
// ±Inf scores out of range (1.5) and opens an incident (it scored 0; then,
// 1.5 without one, so no alert). None of them is learnt by the forecaster
// (its band's edge was, so forecasts went on for an hour of +Inf) or by
// the MASE's scale (one sentinel made it 1e303).
func TestNonMeasurements(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      float64
		score  float64
		active bool
	}{
		{"MaxFloat64", math.MaxFloat64, 0, false},
		{"1e39", -1e39, 0, false},
		{"NaN", math.NaN(), 0, false},
		{"+Inf", math.Inf(1), detect.OutOfRangeScore, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := seasonal(600, 4)
			for range 240 { // an hour at 15 s
				vs = append(vs, tc.v)
			}
			e := newEnv(t, "", nil, nil)
			e.feed(labels.FromStrings("__name__", "jmx_min", "job", "x"), model.MetricTypeGauge, vs)
			e.feed(labels.FromStrings("__name__", "other", "job", "y"), model.MetricTypeGauge, seasonal(300, 4))

			rec := httptest.NewRecorder()
			e.p.AnomaliesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies", nil))
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "jmx_min")}})
			require.Len(t, got, 1)
			require.Equal(t, tc.score, float64(got[0].Score))
			require.Equal(t, tc.active, got[0].Active)

			var buf bytes.Buffer
			require.NoError(t, e.p.WriteOutputs(&buf))
			for _, line := range strings.Split(buf.String(), "\n") {
				if strings.Contains(line, `for="jmx_min"`) {
					require.NotContains(t, line, "Inf", line)
					require.False(t, strings.HasPrefix(line, "forecast"), "no forecast after an hour without a measurement: %s", line)
				}
			}
			var s *series
			for _, w := range e.p.workers {
				w.view(func(x *series) {
					if x.name == "jmx_min" {
						s = x
					}
				})
			}
			require.NotNil(t, s)
			require.Less(t, s.absDif, 100.0, "the MASE's scale")
		})
	}
}

// TestTopAnomalies: the first limit entries of the anomalies list are those
// of the whole list, in its order (active incidents first, by peak, then
// the rest by score), and making them costs allocations for those entries,
// not for every series: the page's 25 of 100000 series took 280 ms and
// 110 MB an answer, an entry with its labels' map for each series
// (BenchmarkAnomalies: 29 ms and 66 kB with this).
func TestTopAnomalies(t *testing.T) {
	const n, spiked = 3000, 40
	e := newEnv(t, "", nil, func(o *Options) { o.ForecastMaxSeries = 0 })
	ls := make([]labels.Labels, n)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "g", "instance", fmt.Sprint(i))
	}
	vs := make([]float64, n)
	for round := range 80 {
		for i := range vs {
			vs[i] = float64((round + i) % 7)
			if round == 79 && i%(n/spiked) == 0 { // incidents of different peaks
				vs[i] = float64(20 + i)
			}
		}
		e.push(t0.UnixMilli()+int64(round)*stepMs, "", ls, vs)
	}
	e.sync()

	all := e.p.Anomalies(nil)
	require.Len(t, all, n)
	require.True(t, all[spiked/2].Active, "the test needs incidents")
	require.False(t, all[len(all)-1].Active, "and series in none")
	byKey := map[string]Anomaly{}
	for _, a := range all {
		byKey[a.Labels["instance"]] = a
	}
	for _, limit := range []int{1, 7, 25, spiked, spiked + 10, n, n + 5} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			got := e.p.TopAnomalies(nil, limit)
			require.Len(t, got, min(limit, n))
			for i, a := range got {
				// Series of equal rank may come in either order: the
				// entry at i ranks as the whole list's does, and is that
				// series' entry.
				require.Equal(t, all[i].Active, a.Active, i)
				require.Equal(t, rank(&all[i]), rank(&a), i)
				require.Equal(t, byKey[a.Labels["instance"]], a)
			}
		})
	}
	allocs := testing.AllocsPerRun(5, func() { e.p.TopAnomalies(nil, 25) })
	require.Less(t, allocs, float64(n/4), "allocations for the series not listed")
}

// TestAnomaliesEmptyIsAList: with no series to list (none scored yet, all
// silent, or a selector matching none) the anomalies are [], as
// Prometheus's API gives an empty list, not null: on f2557c6 a client
// reading the list's length (Python's len, JavaScript's .length) failed
// on it.
func TestAnomaliesEmptyIsAList(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	e.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{labels.FromStrings("__name__", "g")}, []float64{1})
	e.sync()
	for _, tc := range []struct{ name, query string }{
		{name: "matching none", query: "match[]=nothing"},
		{name: "limit", query: "match[]=nothing&limit=3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			e.p.AnomaliesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies?"+tc.query, nil))
			require.Equal(t, http.StatusOK, rec.Code)
			require.JSONEq(t, `{"status":"success","data":{"anomalies":[]}}`, rec.Body.String())
		})
	}
}

// TestStatusDoesNotWaitForScorers: the status API, which the page asks for
// every 15 s in each open tab, counted the warming models by walking every
// series under each scorer's lock (6 ms of CPU an answer at 50 000 series,
// stalling the scorers meanwhile, and no answer at all while a scorer held
// its lock). It reads the count omen_models_warming keeps, so the two agree.
func TestStatusDoesNotWaitForScorers(t *testing.T) {
	e, mux := apiEnv(t)
	// A new series is still warming.
	e.push(t0.UnixMilli()+450*stepMs, model.MetricTypeGauge, []labels.Labels{labels.FromStrings("__name__", "load", "job", "new")}, []float64{1})
	e.sync()
	w := e.p.workers[0]
	w.mu.Lock()
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status/omen", nil))
		answered <- rec
	}()
	var rec *httptest.ResponseRecorder
	select {
	case rec = <-answered:
		w.mu.Unlock()
	case <-time.After(5 * time.Second):
		w.mu.Unlock()
		<-answered
		require.FailNow(t, "the status API waited for a scorer's lock")
	}
	require.Equal(t, http.StatusOK, rec.Code)
	var r struct {
		Data struct {
			Warming int `json:"models_warming"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r))
	require.Equal(t, 1, r.Data.Warming)
	require.Equal(t, float64(r.Data.Warming), testutil.ToFloat64(e.p.m.warming), "omen_models_warming")
}

// busyGate is a query gate with no free slot, as the anomalies API's is
// while AnomalyConcurrency requests match: Insert waits for the context.
type busyGate struct{ inserts int }

func (g *busyGate) Insert(ctx context.Context, _ string) (int, error) {
	g.inserts++
	<-ctx.Done()
	return 0, ctx.Err()
}
func (g *busyGate) Delete(int) { panic("busyGate: nothing was admitted") }

// TestAnomaliesAPIBounds: an unauthenticated client cannot make the
// anomalies API hold the scorers' locks or a core for long. A request waits
// for a slot of its gate (NewGate) at most --query.timeout, then
// gets 503 with Retry-After (Prometheus's remote write retries on it); more
// than maxAnomalyMatchers selectors are a 400 naming the cap (1000 regexes
// held a core 1.7 s at 50 000 series); a request whose client went away
// stops matching.
// anomaliesEnvelope is an anomalies API answer, its entries left raw.
type anomaliesEnvelope struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		Anomalies []json.RawMessage `json:"anomalies"`
	} `json:"data"`
}

func TestAnomaliesAPIBounds(t *testing.T) {
	selectors := func(n int) string {
		q := url.Values{}
		for i := range n {
			q.Add("match[]", fmt.Sprintf(`{job=~"spiky|x%d"}`, i))
		}
		return q.Encode()
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		gate    bool
		ctx     context.Context
		query   string
		code    int
		errType string
		errHas  string
	}{
		{"selectors at the cap", false, context.Background(), selectors(maxAnomalyMatchers), 200, "", ""},
		{"selectors over the cap", false, context.Background(), selectors(maxAnomalyMatchers + 1), 400, "bad_data", fmt.Sprintf("at most %d", maxAnomalyMatchers)},
		// Go's own cap on query parameters, reached before ours.
		{"10 001 selectors", false, context.Background(), selectors(10001), 400, "bad_data", "parse form"},
		{"no free slot until the timeout", true, context.Background(), "limit=0", 503, "timeout", "slot of the anomalies API"},
		{"client gone", false, gone, "limit=0", 499, "canceled", "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gate := &busyGate{}
			e, _ := apiEnv(t)
			if tc.gate {
				e.p.opts.QueryGate = gate
			}
			e.p.opts.QueryTimeout = 50 * time.Millisecond
			rec := httptest.NewRecorder()
			req := httptest.NewRequestWithContext(tc.ctx, http.MethodGet, "/api/v1/anomalies?"+tc.query, nil)
			e.p.AnomaliesHandler().ServeHTTP(rec, req)
			require.Equal(t, tc.code, rec.Code, rec.Body.String())
			var got anomaliesEnvelope
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			if tc.code == 200 {
				require.Len(t, got.Data.Anomalies, 1, "the spiky series, matched by each selector")
				return
			}
			require.Equal(t, tc.errType, got.ErrorType)
			require.Contains(t, got.Error, tc.errHas)
			require.Empty(t, got.Data.Anomalies)
			if tc.code == 503 {
				require.Equal(t, 1, gate.inserts)
				require.NotEmpty(t, rec.Header().Get("Retry-After"))
			}
		})
	}
}

// TestTopAnomaliesStopsWhenCancelled: the walk over the series checks its
// context under the scorers' locks, and a cancelled walk caches no partial
// match.
func TestTopAnomaliesStopsWhenCancelled(t *testing.T) {
	e, _ := apiEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sel := [][]*labels.Matcher{{eq("job", "spiky")}}
	_, err := e.p.topAnomalies(ctx, sel, 0)
	require.ErrorIs(t, err, context.Canceled)
	got, err := e.p.topAnomalies(context.Background(), sel, 0)
	require.NoError(t, err)
	require.Len(t, got, 1, "not the cancelled walk's empty match from the cache")
}

// discardResponse is an http.ResponseWriter that keeps nothing of the body,
// so that what an answer allocates is the handler's alone.
type discardResponse struct {
	h     http.Header
	code  int
	bytes int
}

func (d *discardResponse) Header() http.Header { return d.h }
func (d *discardResponse) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}
func (d *discardResponse) Write(b []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	d.bytes += len(b)
	return len(b), nil
}

// TestAnomaliesAPIUnlimitedIsLean: a limit=0 answer is written as it is
// encoded, each entry's labels in one reused map, not built whole with a map
// per series and marshalled into one buffer first: that took ~80 MB of heap
// an answer at 50 000 series (some 1 600 B a series), and six at once raised
// the RSS by 650 MB. What stays is the sorted list of entries (~200 B a
// series, doubled by its growth at worst).
func TestAnomaliesAPIUnlimitedIsLean(t *testing.T) {
	const series = 4000
	e := warmEnv(t, series)
	h := e.p.AnomaliesHandler()
	serve := func() *discardResponse {
		d := &discardResponse{h: http.Header{}}
		h.ServeHTTP(d, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies?limit=0", nil))
		return d
	}
	serve() // the match cache and the pools warm
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := serve()
	runtime.ReadMemStats(&after)
	require.Equal(t, http.StatusOK, d.code)
	require.Greater(t, d.bytes, series*200, "every series listed")
	perSeries := float64(after.TotalAlloc-before.TotalAlloc) / series
	t.Logf("%.0f B allocated a series, %d B answered", perSeries, d.bytes)
	// Kept: the list's entries (184 B each); passing: each entry's encoding
	// (its floats and times marshalled, its labels sorted), some 400 B.
	if !raceEnabled {
		require.Less(t, perSeries, 800.0)
	}

	// apiOK's answer, though written in chunks: its envelope byte for
	// byte, its entries (ties in score come in the scorers' map order).
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies?limit=0", nil))
	want := httptest.NewRecorder()
	apiOK(want, map[string]any{"anomalies": e.p.TopAnomalies(nil, 0)})
	require.Greater(t, rec.Body.Len(), 4*anomaliesFlushBytes, "several chunks")
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	const head, tail = `{"data":{"anomalies":[{`, `}]},"status":"success"}` + "\n"
	require.True(t, strings.HasPrefix(want.Body.String(), head) && strings.HasSuffix(want.Body.String(), tail))
	require.True(t, strings.HasPrefix(rec.Body.String(), head) && strings.HasSuffix(rec.Body.String(), tail))
	entries := func(b []byte) []string {
		var r struct {
			Data struct {
				Anomalies []json.RawMessage `json:"anomalies"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(b, &r))
		out := make([]string, len(r.Data.Anomalies))
		for i, a := range r.Data.Anomalies {
			out[i] = string(a)
		}
		return out
	}
	got := entries(rec.Body.Bytes())
	require.Len(t, got, series)
	require.ElementsMatch(t, entries(want.Body.Bytes()), got)
}

// TestWriteAnomaliesEncodeError: an entry JSON cannot hold (a time past
// the year 9999) is a 500 before anything is written, and aborts the
// connection after, so no client takes a cut answer for a whole one.
func TestWriteAnomaliesEncodeError(t *testing.T) {
	entries := func(n, bad int) []Anomaly {
		list := make([]Anomaly, n)
		for i := range list {
			list[i] = Anomaly{in: labels.FromStrings("__name__", "x", "i", strconv.Itoa(i)), name: "x", Timestamp: t0}
		}
		list[bad].Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		return list
	}
	tests := []struct {
		name   string
		n, bad int
		abort  bool
	}{
		{"first entry", 10, 0, false},
		{"last entry of an answer within one chunk", 10, 9, false},
		{"after a chunk went out", 2000, 1999, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			write := func() { writeAnomalies(rec, entries(tc.n, tc.bad)) }
			if tc.abort {
				require.PanicsWithValue(t, http.ErrAbortHandler, write)
				require.Equal(t, http.StatusOK, rec.Code, "the status went with the first chunk")
				require.False(t, json.Valid(rec.Body.Bytes()))
				return
			}
			write()
			require.Equal(t, http.StatusInternalServerError, rec.Code)
			require.Contains(t, rec.Body.String(), "encode response")
		})
	}
}

// countingGate is a query gate of one slot that records whether it was
// held when the answer was written.
type countingGate struct {
	held, inserts int
	heldAtWrite   bool
}

func (g *countingGate) Insert(context.Context, string) (int, error) {
	g.held++
	g.inserts++
	return 1, nil
}
func (g *countingGate) Delete(int) { g.held-- }

// gateWatchResponse notes, at the answer's first write, whether the gate's
// slot was still held.
type gateWatchResponse struct {
	*httptest.ResponseRecorder
	g       *countingGate
	watched bool
}

func (w *gateWatchResponse) Write(b []byte) (int, error) {
	if !w.watched {
		w.watched, w.g.heldAtWrite = true, w.g.held > 0
	}
	return w.ResponseRecorder.Write(b)
}

// TestAnomaliesAPIFreesSlotBeforeWriting: the query slot is freed once the
// list is made, before it is written, as the engine frees a query's: with
// no write timeout, clients that read slowly or not at all held its slots.
func TestAnomaliesAPIFreesSlotBeforeWriting(t *testing.T) {
	e, _ := apiEnv(t)
	g := &countingGate{}
	e.p.opts.QueryGate = g
	w := &gateWatchResponse{ResponseRecorder: httptest.NewRecorder(), g: g}
	e.p.AnomaliesHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies?limit=0", nil))
	require.Equal(t, http.StatusOK, w.Code)
	require.True(t, w.watched)
	require.Equal(t, 1, g.inserts)
	require.False(t, g.heldAtWrite, "the slot was held while the answer was written")
	require.Zero(t, g.held)
}

// TestNewGate: a gate of n slots admits n at once; the next waits for a
// Delete, or for its context, whose error it returns.
func TestNewGate(t *testing.T) {
	g := NewGate(2)
	ctx := context.Background()
	for range 2 {
		_, err := g.Insert(ctx, "")
		require.NoError(t, err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	_, err := g.Insert(short, "")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	g.Delete(0)
	_, err = g.Insert(ctx, "")
	require.NoError(t, err)
}
