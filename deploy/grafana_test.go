package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// omenMetrics are the series `omen serve` exposes (outputs and self-monitoring);
// a dashboard naming anything else shows an empty panel.
var omenMetrics = []string{
	"anomaly_score", "yhat", "yhat_lower", "yhat_upper", "forecast", "forecast_lower", "forecast_upper",
	"omen_http_requests_total", "omen_remote_write_samples_received_total", "omen_remote_write_samples_appended_total",
	"omen_remote_write_samples_rejected_total", "omen_remote_write_requests_inflight", "omen_tsdb_head_series", "omen_storage_writable",
	"omen_tsdb_head_series_limit", "omen_remote_write_series_refused_total",
	"omen_series_scored", "omen_series_over_budget_total", "omen_series_over_budget", "omen_models_warming", "omen_model_ready",
	"omen_warm_start_remote_read_pending", "omen_warm_start_remote_read_failures_total",
	"omen_incident_peak_score", "omen_incident_duration_seconds",
	"omen_anomalies_total", "omen_scoring_queue_length", "omen_scoring_dropped_total", "omen_scoring_lag_seconds",
	"omen_snapshot_failures_total", "omen_snapshot_last_success_timestamp_seconds", "omen_snapshot_interval_seconds", "omen_config_last_reload_successful",
	"omen_forecast_mase", "omen_forecast_interval_coverage_ratio", "omen_forward_backlog_skipped_total", "omen_build_info",
	// client_golang's Go and process collectors, registered by omen serve.
	"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_goroutines",
}

// omenHistograms are exposed as _bucket, _sum and _count.
var omenHistograms = []string{"omen_http_request_duration_seconds", "omen_inference_duration_seconds"}

// prometheusMetrics are Prometheus's own: the scrape's up, the alerts' state.
var prometheusMetrics = []string{"up", "ALERTS", "ALERTS_FOR_STATE"}

// varValue stands for a query variable's value; as a metric name it means
// the user picks the metric (the drill-down's input).
const varValue = "VAR"

// knownMetric reports whether a dashboard may name metric.
func knownMetric(t *testing.T, name string) bool {
	t.Helper()
	// The embedded TSDB's and the forwarding queues' (forward's tests check
	// the names the rules use are there).
	if name == varValue || strings.HasPrefix(name, "prometheus_tsdb_") || strings.HasPrefix(name, "prometheus_remote_storage_") {
		return true
	}
	for _, lists := range [][]string{omenMetrics, prometheusMetrics} {
		for _, m := range lists {
			if m == name {
				return true
			}
		}
	}
	for _, h := range omenHistograms {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if h+s == name {
				return true
			}
		}
	}
	_, ok := findRule(baseRules(t), name)
	return ok
}

type dashboard struct {
	UID        string   `json:"uid"`
	Title      string   `json:"title"`
	Tags       []string `json:"tags"`
	Panels     []gpanel `json:"panels"`
	Templating struct {
		List []gvar `json:"list"`
	} `json:"templating"`
}

type gpanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels      []gpanel        `json:"panels"`
	FieldConfig json.RawMessage `json:"fieldConfig"`
}

type gvar struct {
	Name    string          `json:"name"`
	Type    string          `json:"type"`
	Query   json.RawMessage `json:"query"`
	Options []struct {
		Value string `json:"value"`
	} `json:"options"`
}

// varRef matches $var, ${var} and ${var:format} in an expression.
var varRef = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)

// substitute replaces Grafana's variables with values PromQL accepts where
// they stand: durations for intervals and custom horizons, varValue for
// label values.
func substitute(t *testing.T, expr string, vars map[string]gvar) string {
	t.Helper()
	return varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		switch name {
		case "__rate_interval", "__interval":
			return "1m"
		case "__range":
			return "1h"
		}
		v, ok := vars[name]
		require.True(t, ok, "expression %q uses undefined variable $%s", expr, name)
		if v.Type == "custom" {
			require.NotEmpty(t, v.Options)
			return v.Options[0].Value
		}
		return varValue
	})
}

func checkExpr(t *testing.T, where, expr string, vars map[string]gvar) {
	t.Helper()
	q := substitute(t, expr, vars)
	e, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	require.NoError(t, err, "%s: %s", where, q)
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
		}
		require.True(t, knownMetric(t, name), "%s: %q selects %q, which neither omen nor Prometheus produces", where, expr, name)
		return nil
	})
}

// labelValues matches Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// TestDashboards loads every dashboard, parses every panel's and variable's
// PromQL with Prometheus's parser, and checks each metric it names is one
// omen or Prometheus produces.
func TestDashboards(t *testing.T) {
	files, err := filepath.Glob("grafana/dashboards/*.json")
	require.NoError(t, err)
	require.Len(t, files, 3, "overview, series drill-down, health")
	uids := map[string]bool{}
	var all []dashboard
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var d dashboard
			require.NoError(t, json.Unmarshal(read(t, f), &d))
			require.NotEmpty(t, d.Title)
			require.Regexp(t, `^[a-z0-9-]{1,40}$`, d.UID)
			require.False(t, uids[d.UID], "uid %s used twice", d.UID)
			uids[d.UID] = true
			require.Contains(t, d.Tags, "omen")

			vars := map[string]gvar{}
			for _, v := range d.Templating.List {
				vars[v.Name] = v
			}
			require.Equal(t, "datasource", vars["datasource"].Type, "panels pick the data source through $datasource")
			for _, v := range d.Templating.List {
				if v.Type != "query" {
					continue
				}
				var q struct {
					Query string `json:"query"`
				}
				require.NoError(t, json.Unmarshal(v.Query, &q))
				m := labelValues.FindStringSubmatch(q.Query)
				require.NotNil(t, m, "variable %s: want label_values(selector, label), got %q", v.Name, q.Query)
				checkExpr(t, "variable "+v.Name, m[1], vars)
			}

			ids := map[int]bool{}
			var walk func(ps []gpanel)
			n := 0
			walk = func(ps []gpanel) {
				for _, p := range ps {
					require.False(t, ids[p.ID], "panel id %d used twice", p.ID)
					ids[p.ID] = true
					require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "panel %q wider than the grid", p.Title)
					walk(p.Panels)
					if p.Type == "row" || p.Type == "text" {
						continue
					}
					require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
					require.NotNil(t, p.Datasource)
					require.Equal(t, "${datasource}", p.Datasource.UID, "panel %q", p.Title)
					for _, tg := range p.Targets {
						require.NotEmpty(t, tg.Expr, "panel %q target %s", p.Title, tg.RefID)
						checkExpr(t, "panel "+p.Title, tg.Expr, vars)
						n++
					}
				}
			}
			walk(d.Panels)
			require.GreaterOrEqual(t, n, 5)
			all = append(all, d)
		})
	}
	// Links between dashboards point at dashboards that exist.
	for _, f := range files {
		for _, m := range regexp.MustCompile(`/d/([a-z0-9-]+)/`).FindAllStringSubmatch(string(read(t, f)), -1) {
			require.True(t, uids[m[1]], "%s links to unknown dashboard %s", f, m[1])
		}
	}
	require.Len(t, all, 3)
}

// TestDashboardsShowWhatTheIssueAsks checks the series drill-down plots the
// value, the band, the forecast and the score, and the overview the top
// anomalies and anomalies per namespace and job.
func TestDashboardsShowWhatTheIssueAsks(t *testing.T) {
	exprs := func(f string) string {
		var d dashboard
		require.NoError(t, json.Unmarshal(read(t, f), &d))
		var b strings.Builder
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				b.WriteString(tg.Expr + "\n")
			}
		}
		return b.String()
	}
	series := exprs("grafana/dashboards/omen-series.json")
	for _, want := range []string{`{__name__="$for"`, "yhat{", "yhat_lower{", "yhat_upper{", "forecast{", "forecast_upper{", "anomaly_score{"} {
		require.Contains(t, series, want)
	}
	overview := exprs("grafana/dashboards/omen-overview.json")
	for _, want := range []string{"topk(", "sum by (namespace)", "namespace_job:omen_anomalous_series:count"} {
		require.Contains(t, overview, want)
	}
	health := exprs("grafana/dashboards/omen-health.json")
	for _, m := range []string{"omen_remote_write_samples_rejected_total", "omen_scoring_lag_seconds", "omen_snapshot_last_success_timestamp_seconds", "omen_models_warming", "omen_series_over_budget_total"} {
		require.Contains(t, health, m)
	}
}

// TestGrafanaProvisioning decodes the provisioning files strictly into the
// fields Grafana reads and checks they point at omen and the dashboards.
func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name      string         `json:"name"`
			UID       string         `json:"uid"`
			Type      string         `json:"type"`
			Access    string         `json:"access"`
			URL       string         `json:"url"`
			IsDefault bool           `json:"isDefault"`
			JSONData  map[string]any `json:"jsonData"`
		} `json:"datasources"`
	}
	require.NoError(t, strictYAML(read(t, "grafana/provisioning/datasources/omen.yaml"), &ds))
	require.Equal(t, 1, ds.APIVersion)
	var omen bool
	for _, d := range ds.Datasources {
		require.Equal(t, "prometheus", d.Type, "the dashboards need Prometheus-type data sources")
		// Grafana 9.2 to 10 asks /api/v1/label/<name>/values?match[]= for
		// the variables' label_values(anomaly_score, for) only when the
		// data source says it is a Prometheus of 2.24 or later; otherwise
		// it reads every anomaly_score series from /api/v1/series (4.2 MB
		// for 20 000 series, at each refresh). omen's buildinfo reports
		// omen's version, which Grafana's detection cannot place.
		require.Equal(t, "Prometheus", d.JSONData["prometheusType"], d.Name)
		v, ok := d.JSONData["prometheusVersion"].(string)
		require.True(t, ok, "%s: prometheusVersion is a string", d.Name)
		var major, minor, patch int
		_, err := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch)
		require.NoError(t, err, "%s: prometheusVersion %q is semver", d.Name, v)
		require.True(t, major > 2 || major == 2 && minor >= 24, "%s: prometheusVersion %s is before 2.24, the labels API's match[]", d.Name, v)
		u, err := url.Parse(d.URL)
		require.NoError(t, err)
		if d.UID == "omen" {
			omen = true
			require.Equal(t, "omen.omen.svc:9201", u.Host, "omen's Service in the Kubernetes base")
		}
	}
	require.True(t, omen)

	var dp struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name                  string `json:"name"`
			OrgID                 int    `json:"orgId"`
			Folder                string `json:"folder"`
			Type                  string `json:"type"`
			DisableDeletion       bool   `json:"disableDeletion"`
			AllowUIUpdates        bool   `json:"allowUiUpdates"`
			UpdateIntervalSeconds int    `json:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `json:"path"`
				FoldersFromFilesStructure bool   `json:"foldersFromFilesStructure"`
			} `json:"options"`
		} `json:"providers"`
	}
	require.NoError(t, strictYAML(read(t, "grafana/provisioning/dashboards/omen.yaml"), &dp))
	require.Len(t, dp.Providers, 1)
	require.Equal(t, "file", dp.Providers[0].Type)
	require.True(t, filepath.IsAbs(dp.Providers[0].Options.Path))
	_, err := os.Stat("grafana/dashboards")
	require.NoError(t, err)
}

// TestSeriesValueByKind evaluates the series dashboard's value query with
// Prometheus's engine: what omen scored decides how the input is drawn
// beside its band (omen_model_ready's kind), not its name. By the name, a
// gauge named _count (connections now) was drawn as an irate, jumping
// between 1 and 20, and a counter without _total as its running total.
func TestSeriesValueByKind(t *testing.T) {
	var d dashboard
	require.NoError(t, json.Unmarshal(read(t, "grafana/dashboards/omen-series.json"), &d))
	var expr string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if strings.HasPrefix(tg.Expr, "(({__name__=\"$for\"") && expr == "" {
				expr = tg.Expr
			}
		}
	}
	require.NotEmpty(t, expr, "the value query")
	// jobs_processed has a kind label of its own (exported_kind on
	// omen_model_ready), items_done an exported_kind (exported_exported_kind); http_requests_total and queue_depth have no
	// omen_model_ready (the omen data source, a time before the label, a
	// series gone from /metrics): by their names then.
	st := promqltest.LoadedStorage(t, `
load 15s
  pg_stat_activity_count{namespace="db", job="pg", instance="a"} 20 22 19 21 20 40
  omen_model_ready{for="pg_stat_activity_count", kind="gauge", namespace="db", job="pg", instance="a"} 1 1 1 1 1 1
  nginx_connections_accepted{namespace="web", job="nginx", instance="b"} 0 150 300 450 600 750
  omen_model_ready{for="nginx_connections_accepted", kind="counter", namespace="web", job="nginx", instance="b"} 1 1 1 1 1 1
  jobs_processed{namespace="q", job="app", instance="c", kind="batch"} 0 150 300 450 600 750
  omen_model_ready{for="jobs_processed", kind="counter", exported_kind="batch", namespace="q", job="app", instance="c"} 1 1 1 1 1 1
  http_requests_total{namespace="web", job="api", instance="d"} 0 150 300 450 600 750
  queue_depth{namespace="q", job="app", instance="e"} 5 5 5 5 5 7
  tasks_done{namespace="q", job="app", instance="f"} 0 150 300 450 600 750
  omen_model_ready{for="tasks_done", kind="counter", namespace="q", job="app", instance="f"} 1 1 1 stale
  app_requests{namespace="q", job="app", instance="g"} 0 150 300 450 600 750
  omen_model_ready{for="app_requests", kind="gauge", namespace="q", job="app", instance="g"} 1 1 stale
  omen_model_ready{for="app_requests", kind="counter", namespace="q", job="app", instance="g"} _ _ _ 1 1 1
  items_done{namespace="q", job="app", instance="i", exported_kind="x"} 0 150 300 450 600 750
  omen_model_ready{for="items_done", kind="counter", exported_exported_kind="x", namespace="q", job="app", instance="i"} 1 1 1 1 1 1
  counter_later{namespace="q", job="app", instance="h"} 0 150 300 450 600 750
  omen_model_ready{for="counter_later", kind="gauge", namespace="q", job="app", instance="h"} 1 1 stale
  omen_model_ready{for="counter_later", kind="counter", namespace="q", job="app", instance="h"} _ _ _ 1 stale
`)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1e6)
	for _, tc := range []struct {
		for_ string
		want float64
	}{{"pg_stat_activity_count", 40}, {"nginx_connections_accepted", 10}, {"jobs_processed", 10}, {"http_requests_total", 10}, {"queue_depth", 7}, {"tasks_done", 10}, {"app_requests", 10}, {"counter_later", 10}, {"items_done", 10}} { // tasks_done: omen's scrape failed, or it restarted; app_requests: retyped, gauge to counter; counter_later: the same, then omen's scrape failed
		q := strings.NewReplacer("$for", tc.for_, "$namespace", ".*", "$job", ".*", "$instance", ".*").Replace(expr)
		qr, err := engine.NewInstantQuery(context.Background(), st, nil, q, time.Unix(75, 0))
		require.NoError(t, err)
		res := qr.Exec(context.Background())
		require.NoError(t, res.Err)
		vec, err := res.Vector()
		require.NoError(t, err)
		require.Len(t, vec, 1, tc.for_)
		require.InDelta(t, tc.want, vec[0].F, 1e-9, tc.for_)
		qr.Close()
	}
}

// TestOverviewCountsReadZero evaluates the overview's per-job panels with
// Prometheus's engine over the recording rules' series, as Grafana's range
// query does: a job omen scores with no series in an incident reads 0, not
// nothing, as one line per job. The rules count omen_incident_peak_score >
// 1, which has no series for such a job, so the panels were empty on a
// healthy fleet, and once an incident ended its line stopped at 1: the
// legend's last value said one series was still anomalous.
func TestOverviewCountsReadZero(t *testing.T) {
	// api has one series in an incident for the first three steps; db
	// never has one.
	st := promqltest.LoadedStorage(t, `
load 30s
  namespace_job:omen_scored_series:count{namespace="shop", job="api"} 4 4 4 4 4 4
  namespace_job:omen_scored_series:count{namespace="shop", job="db"} 3 3 3 3 3 3
  namespace_job:omen_anomalous_series:count{namespace="shop", job="api"} 1 1 1 stale
`)
	for _, tc := range []struct {
		panel, by string
		want      map[string][]float64 // by label value -> values at 0, 30, ..., 150 s
	}{
		{"Anomalous series per job", "job", map[string][]float64{"api": {1, 1, 1, 0, 0, 0}, "db": {0, 0, 0, 0, 0, 0}}},
		{"Share of series anomalous per job", "job", map[string][]float64{"api": {0.25, 0.25, 0.25, 0, 0, 0}, "db": {0, 0, 0, 0, 0, 0}}},
		{"Anomalous series per namespace", "namespace", map[string][]float64{"shop": {1, 1, 1, 0, 0, 0}}},
	} {
		t.Run(tc.panel, func(t *testing.T) {
			expr := panelExpr(t, "omen-overview.json", tc.panel)
			got := map[string][]float64{}
			for _, s := range evaluate(t, st, expr, 0, 150) {
				key := s.Metric.Get(tc.by)
				// One line per job: two series of one job (the rule's, named,
				// and the 0s, unnamed) are two legend entries in Grafana.
				require.NotContains(t, got, key, "%s: two series for %s=%q", expr, tc.by, key)
				for _, p := range s.Floats {
					got[key] = append(got[key], p.F)
				}
			}
			require.Equal(t, tc.want, got, expr)
		})
	}
}

// TestSnapshotAgeBeforeFirstSnapshot evaluates the health dashboard's
// snapshot age: an instance that has not saved its models yet (its
// timestamp is 0 until --snapshot.interval after its start) is left out,
// not shown as the time since 1970 (the stat read 56.9 years in red for
// the first 5 minutes of every start with no snapshot on the volume).
func TestSnapshotAgeBeforeFirstSnapshot(t *testing.T) {
	expr := panelExpr(t, "omen-health.json", "Since last snapshot")
	st := promqltest.LoadedStorage(t, `
load 1m
  omen_snapshot_last_success_timestamp_seconds{job="omen", instance="new"} 0 0 0
  omen_snapshot_last_success_timestamp_seconds{job="omen", instance="old"} 0 0 60
`)
	for _, tc := range []struct {
		at   int64 // seconds
		want []float64
	}{
		{60, nil},            // no instance has saved its models yet: no value ("none yet")
		{150, []float64{90}}, // old saved at 60 s; new has not, and is not 150 s late
	} {
		require.Equal(t, tc.want, instant(t, st, expr, tc.at), "at %d s: %s", tc.at, expr)
	}
}

// panelExpr returns the query of the dashboard's panel title, its
// namespace and job variables at "All" (.*).
func panelExpr(t *testing.T, file, title string) string {
	t.Helper()
	var d dashboard
	require.NoError(t, json.Unmarshal(read(t, filepath.Join("grafana/dashboards", file)), &d))
	for _, p := range d.Panels {
		if p.Title == title {
			require.Len(t, p.Targets, 1, "panel %q", title)
			return strings.NewReplacer("$namespace", ".*", "$job", ".*").Replace(p.Targets[0].Expr)
		}
	}
	require.Failf(t, "no panel", "%s has no panel %q", file, title)
	return ""
}

// evaluate runs expr over st from second start to end at 30 s steps with
// Prometheus's engine, as Grafana's range query does.
func evaluate(t *testing.T, st storage.Queryable, expr string, start, end int64) promql.Matrix {
	t.Helper()
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1e6)
	qr, err := engine.NewRangeQuery(context.Background(), st, nil, expr, time.Unix(start, 0), time.Unix(end, 0), 30*time.Second)
	require.NoError(t, err)
	defer qr.Close()
	res := qr.Exec(context.Background())
	require.NoError(t, res.Err)
	m, err := res.Matrix()
	require.NoError(t, err)
	return m
}

// instant returns the values of expr at second at, one per series.
func instant(t *testing.T, st storage.Queryable, expr string, at int64) []float64 {
	t.Helper()
	var out []float64
	for _, s := range evaluate(t, st, expr, at, at) {
		out = append(out, s.Floats[0].F)
	}
	return out
}

// TestOverviewScoredSeries: the overview's count of scored series counts
// omen_model_ready, on /metrics for every scored series, as the recording
// rule does (8db5502): anomaly_score is left off /metrics below
// --output.score-floor, and with a floor of 0.5 the stat read 1 of 7
// scored series. On the omen data source, which stores anomaly_score for
// every scored series and no omen_model_ready, it counts those.
func TestOverviewScoredSeries(t *testing.T) {
	expr := panelExpr(t, "omen-overview.json", "Scored series")
	for _, tc := range []struct {
		name, load string
		want       float64
	}{
		{"Prometheus, score floor", `
load 30s
  omen_model_ready{for="a", job="api", kind="gauge"} 1
  omen_model_ready{for="b", job="api", kind="gauge"} 1
  omen_model_ready{for="c", job="api", kind="counter"} 0
  anomaly_score{for="a", job="api"} 1.5
`, 3},
		{"omen", `
load 30s
  anomaly_score{for="a", job="api"} 1.5
  anomaly_score{for="b", job="api"} 0.1
`, 2},
		{"nothing scored", `
load 30s
  up{job="api"} 1
`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := promqltest.LoadedStorage(t, tc.load)
			require.Equal(t, []float64{tc.want}, instant(t, st, expr, 0), expr)
		})
	}
}

// TestOverviewTopAnomaliesListsIncidents: the overview's "Top anomalies
// now" lists the series in an incident by their peak score, as omen's
// /api/v1/anomalies and web page do, then the others by their current
// score. It ranked by anomaly_score alone, which the detector damps after
// an event's first sample: a level shift of 30% on a series of 1038 scored
// 1.84 at its first sample and 0.26 at its fourth while omen still listed
// its incident first, and 25 quiet series scoring more pushed it out of
// the table.
func TestOverviewTopAnomaliesListsIncidents(t *testing.T) {
	expr := panelExpr(t, "omen-overview.json", "Top anomalies now")
	load := "load 30s\n" +
		"  anomaly_score{for=\"queue_depth\", job=\"api\", instance=\"shifted\"} 0.26\n" +
		"  omen_incident_peak_score{for=\"queue_depth\", job=\"api\", instance=\"shifted\"} 1.84\n"
	for i := range 30 {
		load += fmt.Sprintf("  anomaly_score{for=\"queue_depth\", job=\"api\", instance=\"q%d\"} %g\n", i, 0.3+float64(i)/50)
	}
	st := promqltest.LoadedStorage(t, load)
	res := evaluate(t, st, expr, 0, 0)
	require.Len(t, res, 25, expr)
	got := map[string]float64{}
	for _, s := range res {
		inst := s.Metric.Get("instance")
		require.NotContains(t, got, inst, "one row per series")
		got[inst] = s.Floats[0].F
	}
	require.Contains(t, got, "shifted", "the series in an incident is listed")
	require.Equal(t, 1.84, got["shifted"], "by its peak score")
	require.Contains(t, got, "q29", "the other rows are the highest current scores")
	require.NotContains(t, got, "q5")
}
