package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/loadgen"
	"github.com/omen-sidecar/omen/pipeline"
)

// grafanaGetOnly is the list of paths Grafana's Prometheus data source
// sends with GET even when the data source's HTTP method is POST (its
// endpointsSupportOnlyGet, pkg/promlib/client/client.go of grafana/grafana),
// spelled as Grafana spells them: a resource path is matched by prefix as
// it comes, so "api/v1/rules" (no leading slash, as the front end asks for
// it) is not in the list and goes as a POST first.
var grafanaGetOnly = []string{
	"api/v1/label/", "api/v1/metadata", "/api/v1/targets", "/api/v1/rules", "/api/v1/alerts",
	"/api/v1/targets/metadata", "/api/v1/alertmanagers", "/api/v1/status/config", "/api/v1/status/flags",
	"/api/v1/status/runtimeinfo", "/api/v1/status/buildinfo", "/api/v1/status/tsdb", "/api/v1/status/walreplay",
	"/api/v1/notifications",
}

// grafanaCall is one thing Grafana's Prometheus data source does, as the
// HTTP requests its back end (pkg/promlib) sends for it.
type grafanaCall struct {
	name   string
	source string // the file of grafana/grafana that makes the request
	kind   grafanaKind
	// path as Grafana has it: a resource's CallResourceRequest.Path, or
	// the path under the data source's URL.
	path string
	// query is the URL's query string, body the form body the front end
	// sent (a resource call) or the query's parameters (a query).
	query, body url.Values
	// method is the data source's HTTP method (jsonData.httpMethod; POST
	// when unset, the default of Grafana's back end and config page).
	method string
	// compare: "json" the whole answer, "shape" its keys and types (build
	// information), "status" only the status code, content type and the
	// answer's status field (the flags' names are the server's own).
	compare string
	// ok: Grafana needs a 200 with status success here (an error is shown,
	// or a feature turns itself off).
	ok bool
}

type grafanaKind int

const (
	// A query (QueryRange, QueryInstant, QueryExemplars in client.go):
	// POST with a form body, or GET.
	grafanaQuery grafanaKind = iota
	// A resource (QueryResource in client.go): GET for the paths of
	// grafanaGetOnly or a GET data source; else POST, and on a 405 or a
	// 400 the same again as a GET with the body's parameters in the URL.
	grafanaResource
	// A request of Grafana's alerting through the data source proxy
	// (public/app/features/alerting/unified/api/buildInfo.ts,
	// pkg/services/ngalert/api/lotex_ruler.go): a GET as given.
	grafanaProxy
)

// requests returns the HTTP requests Grafana's back end sends for c, in
// order: the second, if any, only if the first answered 405 or 400.
func (c grafanaCall) requests() []diffRequest {
	path := "/" + strings.TrimPrefix(c.path, "/")
	merged := func() url.Values {
		v := url.Values{}
		for _, p := range []url.Values{c.query, c.body} {
			for k, vs := range p {
				v[k] = append(v[k], vs...)
			}
		}
		return v
	}
	get := diffRequest{name: c.name + " GET", method: http.MethodGet, path: path, params: merged()}
	switch c.kind {
	case grafanaQuery:
		if c.method == http.MethodGet {
			return []diffRequest{get}
		}
		return []diffRequest{{name: c.name + " POST", method: http.MethodPost, form: true, path: path, params: c.body}}
	case grafanaResource:
		getOnly := c.method == http.MethodGet
		for _, p := range grafanaGetOnly {
			getOnly = getOnly || strings.HasPrefix(c.path, p)
		}
		if getOnly {
			return []diffRequest{get}
		}
		post := diffRequest{name: c.name + " POST", method: http.MethodPost, path: path, params: c.body, form: true}
		if len(c.query) > 0 {
			// Parameters in the URL, an empty form body: fetch puts
			// params in the URL when form is false.
			post = diffRequest{name: c.name + " POST", method: http.MethodPost, path: path, params: c.query,
				headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}
		}
		return []diffRequest{post, get}
	}
	return []diffRequest{get}
}

// send does c against the server at base as Grafana's back end does it and
// returns the answer Grafana goes on with.
func (c grafanaCall) send(t testing.TB, base string) diffAnswer {
	t.Helper()
	var a diffAnswer
	for i, r := range c.requests() {
		var err error
		a, err = fetch(base, r)
		require.NoError(t, err, r.name)
		if i == 0 && a.Code != http.StatusMethodNotAllowed && a.Code != http.StatusBadRequest {
			break
		}
	}
	if m, ok := a.Body.(map[string]any); ok {
		switch c.compare {
		case "shape":
			m["data"] = shapeOf(m["data"])
		case "status":
			m["data"] = m["data"] != nil
		}
	}
	return a
}

// grafanaCalls lists what Grafana's Prometheus data source asks of a
// server it is pointed at, from grafana/grafana's source, at the times of
// the corpus c: the data source's "Save & test", its start-up probes, the
// query editor's lookups, the dashboards' variables and panels, and the
// probes of Grafana's alerting.
func grafanaCalls(c diffCorpus) []grafanaCall {
	secs := func(d time.Duration) string { return strconv.FormatInt(c.base.Add(d).Unix(), 10) }
	ms := func(d time.Duration) string { return strconv.FormatInt(c.base.Add(d).UnixMilli(), 10) }
	start, end := secs(0), secs(199*diffStep)
	v := func(kv ...string) url.Values {
		out := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	perMethod := []grafanaCall{
		// "Save & test": the instant query 1+1 at the end of a time
		// range from 1 s to 4 s after the epoch.
		grafanaCall{name: "health check", source: "pkg/promlib/healthcheck.go", kind: grafanaQuery, path: "api/v1/query",
			body: v("query", "1+1", "time", "4"), compare: "json", ok: true},
		// After it, the flavour: build information, whose features
		// (none: Prometheus; some: Mimir) tell Grafana what it talks
		// to. The path has no leading slash: a POST first.
		grafanaCall{name: "heuristics buildinfo", source: "pkg/promlib/heuristics.go", kind: grafanaResource, path: "api/v1/status/buildinfo",
			compare: "shape", ok: true},
		// The config page's version detection.
		grafanaCall{name: "version-detect buildinfo", source: "pkg/promlib/resource/resource.go", kind: grafanaResource, path: "/api/v1/status/buildinfo",
			compare: "shape", ok: true},
		// The data source's start: recording rules (for the query
		// editor's expansion) and whether exemplars are there, with
		// start and end in milliseconds as the front end sends them.
		grafanaCall{name: "loadRules", source: "packages/grafana-prometheus/src/datasource.ts", kind: grafanaResource, path: "api/v1/rules",
			compare: "json", ok: true},
		grafanaCall{name: "areExemplarsAvailable", source: "packages/grafana-prometheus/src/datasource.ts", kind: grafanaResource, path: "api/v1/query_exemplars",
			query: v("query", "test", "start", ms(-30*time.Minute), "end", ms(199*diffStep)), compare: "json", ok: true},
		// The query editor's metric and label lookups (the labels
		// and series POSTs carry their parameters in the body).
		grafanaCall{name: "metric names", source: "packages/grafana-prometheus/src/resource_clients.ts", kind: grafanaResource, path: "api/v1/label/__name__/values",
			query: v("limit", "40000", "start", start, "end", end), compare: "json", ok: true},
		grafanaCall{name: "label names", source: "packages/grafana-prometheus/src/resource_clients.ts", kind: grafanaResource, path: "api/v1/labels",
			body: v("limit", "40000", "start", start, "end", end), compare: "json", ok: true},
		grafanaCall{name: "label names match", source: "packages/grafana-prometheus/src/language_provider.ts", kind: grafanaResource, path: "api/v1/labels",
			body: v("start", start, "end", end, "match[]", "diff_dup", "match[]", "diff_requests_total"), compare: "json", ok: true},
		grafanaCall{name: "label values match", source: "packages/grafana-prometheus/src/resource_clients.ts", kind: grafanaResource, path: "api/v1/label/job/values",
			query: v("limit", "40000", "start", start, "end", end, "match[]", `{__name__=~"diff_.+"}`), compare: "json", ok: true},
		grafanaCall{name: "series", source: "packages/grafana-prometheus/src/resource_clients.ts", kind: grafanaResource, path: "api/v1/series",
			body: v("start", start, "end", end, "match[]", "diff_dup", "limit", "40000"), compare: "json", ok: true},
		grafanaCall{name: "metadata", source: "packages/grafana-prometheus/src/language_provider.ts", kind: grafanaResource, path: "api/v1/metadata",
			query: v("limit", "40000"), compare: "status", ok: true},
		// Code mode's suggestions: the back end builds the URL.
		grafanaCall{name: "suggestions labels", source: "pkg/promlib/resource/resource.go", kind: grafanaResource, path: "/api/v1/labels",
			query: v("match[]", `diff_dup{a="x"}`, "start", start, "end", end, "limit", "100"), compare: "json", ok: true},
		grafanaCall{name: "suggestions label values", source: "pkg/promlib/resource/resource.go", kind: grafanaResource, path: "/api/v1/label/b/values",
			query: v("match[]", `diff_dup{a="x"}`, "start", start, "end", end, "limit", "100"), compare: "json", ok: true},
		// A dashboard variable: label_values(metric, label).
		grafanaCall{name: "variable label_values", source: "packages/grafana-prometheus/src/metric_find_query.ts", kind: grafanaResource, path: "api/v1/label/code/values",
			query: v("match[]", "diff_requests_total", "start", start, "end", end), compare: "json", ok: true},
		// Panels: a range query (start and end aligned to the step,
		// between samples here), an instant one, and the exemplars
		// of a panel that asks for them.
		grafanaCall{name: "query_range", source: "pkg/promlib/client/client.go", kind: grafanaQuery, path: "api/v1/query_range",
			body:    v("query", "sum by (job) (rate(diff_requests_total[2m]))", "start", secs(7*time.Second), "end", secs(190*diffStep+7*time.Second), "step", "60"),
			compare: "json", ok: true},
		grafanaCall{name: "query instant", source: "pkg/promlib/client/client.go", kind: grafanaQuery, path: "api/v1/query",
			body: v("query", "diff_dup", "time", secs(100*diffStep+7*time.Second)), compare: "json", ok: true},
		grafanaCall{name: "query_exemplars", source: "pkg/promlib/client/client.go", kind: grafanaQuery, path: "api/v1/query_exemplars",
			body: v("query", "diff_requests_total", "start", start, "end", end), compare: "json", ok: true},
		// A query the server refuses: Grafana shows its error.
		grafanaCall{name: "query bad", source: "pkg/promlib/client/client.go", kind: grafanaQuery, path: "api/v1/query",
			body: v("query", "sum(", "time", end), compare: "json"},
	}
	var calls []grafanaCall
	for _, m := range []string{http.MethodPost, http.MethodGet} {
		for _, c := range perMethod {
			c.method = m
			c.name += " (data source " + m + ")"
			calls = append(calls, c)
		}
	}
	return append(calls,
		// Grafana's alerting, for a Prometheus data source: build
		// information (a 404: Cortex), else the fallback query; then
		// Thanos's flags (answered: the ruler probe follows) and the
		// ruler probe, whose 404 "page not found" says no ruler; the
		// rules, as the alert list reads them.
		grafanaCall{name: "alerting buildinfo", source: "public/app/features/alerting/unified/api/buildInfo.ts", kind: grafanaProxy, path: "/api/v1/status/buildinfo", compare: "shape", ok: true},
		grafanaCall{name: "alerting buildinfo fallback", source: "public/app/features/alerting/unified/api/buildInfo.ts", kind: grafanaProxy, path: "/api/v1/query",
			query: v("query", "prometheus_build_info"), compare: "json", ok: true},
		grafanaCall{name: "alerting flags", source: "public/app/features/alerting/unified/api/buildInfo.ts", kind: grafanaProxy, path: "/api/v1/status/flags", compare: "status", ok: true},
		grafanaCall{name: "alerting ruler probe", source: "pkg/services/ngalert/api/lotex_ruler.go", kind: grafanaProxy, path: "/rules/test/test", compare: "json"},
		grafanaCall{name: "alerting mimir ruler probe", source: "pkg/services/ngalert/api/lotex_ruler.go", kind: grafanaProxy, path: "/config/v1/rules/test/test", compare: "json"},
		grafanaCall{name: "alerting rules", source: "pkg/services/ngalert/api/lotex_prom.go", kind: grafanaProxy, path: "/api/v1/rules", compare: "json", ok: true},
	)
}

// TestGrafanaRequestsMatchPrometheus242 sends what Grafana's Prometheus
// data source sends (grafanaCalls, each with its file in grafana/grafana)
// to Prometheus 2.42 and to omen holding the same data, with the data
// source's HTTP method POST (Grafana's default) and GET and the back end's
// fallback from POST to GET, and requires the same answers, and a success
// wherever Grafana needs one.
func TestGrafanaRequestsMatchPrometheus242(t *testing.T) {
	need(t, "prometheus")
	base := time.Now().Add(-55 * time.Minute).Truncate(time.Minute)
	corpus := newDiffCorpus(base, nil)
	prom := startPrometheus(t, func(string) string { return "global: {}\n" },
		"--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage,native-histograms")
	omen := startOmen(t, "", "--output.tsdb-families=")
	for i, w := range corpus.writes {
		for _, p := range []*proc{prom, omen} {
			code, body := remoteWriteV1(t, p.URL, w)
			require.Less(t, code, 300, "write %d to %s: %s", i, p.name, body)
		}
	}
	calls := grafanaCalls(corpus)
	require.GreaterOrEqual(t, len(calls), 40)
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			pa, oa := c.send(t, prom.URL), c.send(t, omen.URL)
			pj, err := json.Marshal(pa)
			require.NoError(t, err)
			oj, err := json.Marshal(oa)
			require.NoError(t, err)
			if c.ok {
				require.Equal(t, http.StatusOK, pa.Code, "Prometheus: %s", pj)
				if m, ok := pa.Body.(map[string]any); ok {
					require.Equal(t, "success", m["status"], "Prometheus: %s", pj)
				}
			}
			require.JSONEq(t, string(pj), string(oj), "%s (%s): Prometheus 2.42 and omen answer otherwise", c.name, c.source)
		})
	}
}

// grafanaDashboard is what TestDashboardsOnOmen reads of a dashboard.
type grafanaDashboard struct {
	Time       struct{ From, To string } `json:"time"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			IncludeAll bool            `json:"includeAll"`
			AllValue   string          `json:"allValue"`
			Current    struct {
				Value any `json:"value"`
			} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
		Range   *bool  `json:"range"`
	} `json:"targets"`
}

// grafanaVarRef matches $var, ${var} and ${var:format}.
var grafanaVarRef = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)

// TestDashboardsOnOmen loads omen with four hours of history of loadgen's
// series (20, every 15 s: models warm, bands and forecasts written to its
// TSDB), then opens the shipped dashboards on omen as a Grafana data
// source, as Grafana does: each query variable from the label values API
// with match[] and the dashboard's time range (an "All" where the variable
// has one, else the first value), the custom ones at their saved value,
// $__interval and $__rate_interval as for the provisioned data source's
// 30 s scrape interval, then every panel's query as Grafana's back end
// sends it (a POST form, start and end aligned to the step). Every query
// must succeed; each that selects an output omen stores (anomaly_score,
// the band, the forecasts) or the input the drill-down picked must return
// data. The rest select what only the Prometheus that scrapes omen holds
// (omen's own metrics, the recording rules, ALERTS): empty on omen, which
// deploy/grafana/provisioning says.
func TestDashboardsOnOmen(t *testing.T) {
	omen := startOmen(t, "")
	opts := loadgen.DefaultOptions()
	opts.URL = omen.URL + "/api/v1/write"
	opts.Series, opts.Concurrency, opts.Rounds, opts.Warmup = 20, 1, 960, false
	opts.SampleInterval, opts.Backdate = 15*time.Second, 4*time.Hour
	res, err := loadgen.Run(context.Background(), nil, opts)
	require.NoError(t, err)
	require.Empty(t, res.Measured.Errors)
	require.EqualValues(t, 20*960, res.Measured.Accepted)
	stored := pipeline.StoredFamilies()
	// Scoring runs behind the writes: wait until every input has its
	// score and its 30-minute forecast at the last sample's time.
	last := time.Now()
	waitFor(t, 3*time.Minute, "every input's score and forecast stored", func() bool {
		for _, q := range []string{`count(last_over_time(anomaly_score[2m]))`, `count(last_over_time(forecast{horizon="30m"}[2m]))`} {
			v, err := query(t, omen.URL, q, last)
			if err != nil || len(v) != 1 || v[0].F() != 20 {
				return false
			}
		}
		return true
	})

	const step = 30 // s: the provisioned data sources' timeInterval
	builtin := map[string]string{"__interval": "30s", "__rate_interval": "2m"}
	files, err := filepath.Glob(filepath.Join("..", "deploy", "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	require.Len(t, files, 3)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			var d grafanaDashboard
			require.NoError(t, json.Unmarshal(b, &d))
			from, to := last.Add(-6*time.Hour), last
			require.Equal(t, "now-6h", d.Time.From)
			if d.Time.To == "now+30m" {
				to = to.Add(30 * time.Minute)
			}
			builtin["__range"] = strconv.Itoa(int(to.Sub(from).Seconds())) + "s"
			// open resolves the variables, with the pick-th value of the
			// first variable without "All" (the drill-down's input), and
			// queries every panel; it returns how many values there were
			// to pick from.
			open := func(pick int) int {
				choices := 0
				vals := map[string]string{}
				interpolate := func(s string) string {
					return grafanaVarRef.ReplaceAllStringFunc(s, func(ref string) string {
						m := grafanaVarRef.FindStringSubmatch(ref)
						if v, ok := builtin[m[1]+m[2]]; ok {
							return v
						}
						v, ok := vals[m[1]+m[2]]
						require.True(t, ok, "%q uses $%s before it is set", s, m[1]+m[2])
						return v
					})
				}
				for _, v := range d.Templating.List {
					switch v.Type {
					case "custom":
						vals[v.Name] = fmt.Sprint(v.Current.Value)
					case "query":
						var q struct {
							Query string `json:"query"`
						}
						require.NoError(t, json.Unmarshal(v.Query, &q))
						m := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`).FindStringSubmatch(interpolate(q.Query))
						require.NotNil(t, m, "variable %s: %s", v.Name, q.Query)
						// packages/grafana-prometheus/src/metric_find_query.ts
						data, err := apiGet(t, omen.URL, "/api/v1/label/"+m[2]+"/values", url.Values{
							"match[]": {m[1]}, "start": {strconv.FormatInt(from.Unix(), 10)}, "end": {strconv.FormatInt(to.Unix(), 10)},
						})
						require.NoError(t, err, "variable %s", v.Name)
						var options []string
						require.NoError(t, json.Unmarshal(data, &options))
						switch {
						case v.IncludeAll:
							vals[v.Name] = v.AllValue
						default:
							require.NotEmpty(t, options, "variable %s (%s) has no value to pick", v.Name, m[0])
							i := 0
							if choices == 0 {
								choices, i = len(options), pick
							}
							// Grafana's prometheusRegularEscape.
							vals[v.Name] = strings.ReplaceAll(options[i], `\`, `\\`)
						}
						if pick == 0 || !v.IncludeAll {
							t.Logf("$%s = %s (of %d values)", v.Name, vals[v.Name], len(options))
						}
					}
				}
				start, end := from.Unix()/step*step, to.Unix()/step*step
				var walk func([]grafanaPanel)
				withData := 0
				walk = func(ps []grafanaPanel) {
					for _, p := range ps {
						walk(p.Panels)
						for _, tg := range p.Targets {
							expr := interpolate(tg.Expr)
							r := diffRequest{method: http.MethodPost, form: true, path: "/api/v1/query_range",
								params: url.Values{"query": {expr}, "start": {strconv.FormatInt(start, 10)}, "end": {strconv.FormatInt(end, 10)}, "step": {strconv.Itoa(step)}}}
							if tg.Instant && (tg.Range == nil || !*tg.Range) {
								r.path, r.params = "/api/v1/query", url.Values{"query": {expr}, "time": {strconv.FormatInt(to.Unix(), 10)}}
							}
							a, err := fetch(omen.URL, r)
							require.NoError(t, err)
							body, _ := json.Marshal(a.Body)
							require.Equal(t, http.StatusOK, a.Code, "panel %q: %s: %s", p.Title, expr, body)
							result := a.Body.(map[string]any)["data"].(map[string]any)["result"].([]any)
							ast, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
							require.NoError(t, err)
							var want bool
							parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
								if vs, ok := n.(*parser.VectorSelector); ok {
									name := vs.Name
									for _, m := range vs.LabelMatchers {
										if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
											name = m.Value
										}
									}
									_, out := stored[name]
									want = want || out || (name != "" && name == vals["for"])
								}
								return nil
							})
							if want {
								require.NotEmpty(t, result, "panel %q shows no data on omen: %s", p.Title, expr)
								withData++
							} else if pick == 0 {
								t.Logf("panel %q: Prometheus's data only (%d series on omen)", p.Title, len(result))
							}
						}
					}
				}
				walk(d.Panels)
				t.Logf("%d queries with data on omen", withData)
				return choices
			}
			for pick, n := 0, open(0); pick+1 < n; pick++ {
				open(pick + 1)
			}
		})
	}
}
