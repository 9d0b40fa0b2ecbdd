package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// diffStep is the corpus's sample interval, Prometheus's usual scrape
// interval.
const diffStep = 15 * time.Second

// diffCorpus is the data written to every server: base is its first
// sample's time, a whole minute, so the requests below can name instants
// at and between samples.
type diffCorpus struct {
	base   time.Time
	writes []*prompb.WriteRequest // in this order
}

// newDiffCorpus builds the series of the differential test: counters with
// a reset, gauges with odd values, a classic histogram and a summary, a
// series with a staleness marker in its middle, one that stops, label
// values that repeat across names and that need escaping, and one gauge
// for every metric name the shipped rules and dashboards query, with the
// labels they select on.
func newDiffCorpus(base time.Time, names []string) diffCorpus {
	const points = 200 // 50 minutes
	type series struct {
		labels []prompb.Label
		value  func(i int) float64
		hist   func(i int) *histogram.Histogram // a native histogram's, instead
		to     int                              // the first sample not sent
	}
	lbls := func(name string, kv ...string) []prompb.Label {
		ls := []prompb.Label{{Name: "__name__", Value: name}}
		for i := 0; i < len(kv); i += 2 {
			ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		sort.Slice(ls, func(a, b int) bool { return ls[a].Name < ls[b].Name })
		return ls
	}
	var all []series
	add := func(ls []prompb.Label, v func(int) float64) {
		all = append(all, series{labels: ls, value: v, to: points})
	}
	// A counter with a reset at the middle, and one growing by uneven steps.
	add(lbls("diff_requests_total", "job", "api", "instance", "a", "code", "200"), func(i int) float64 {
		if i >= points/2 {
			return float64((i-points/2)*3 + 1)
		}
		return float64(i * 7)
	})
	add(lbls("diff_requests_total", "job", "api", "instance", "b", "code", "500"), func(i int) float64 {
		return float64(i*i) * 0.1
	})
	// Gauges with values that test formatting: tiny, huge, negative zero,
	// infinities and a plain NaN.
	add(lbls("diff_temperature", "job", "api", "instance", "a"), func(i int) float64 {
		switch i % 50 {
		case 7:
			return math.Inf(1)
		case 8:
			return math.Inf(-1)
		case 9:
			return math.NaN()
		case 10:
			return math.Copysign(0, -1)
		case 11:
			return 5e-324
		case 12:
			return math.MaxFloat64
		}
		return 20 + 5*math.Sin(float64(i)/10) + 1.0/3
	})
	add(lbls("diff_temperature", "job", "api", "instance", "b"), func(i int) float64 { return float64(i%13) - 6.5 })
	// A classic histogram and a summary.
	for j, le := range []string{"0.1", "0.5", "1", "+Inf"} {
		add(lbls("diff_latency_seconds_bucket", "job", "api", "le", le), func(i int) float64 { return float64(i * (j + 1) * 2) })
	}
	add(lbls("diff_latency_seconds_sum", "job", "api"), func(i int) float64 { return float64(i) * 1.7 })
	add(lbls("diff_latency_seconds_count", "job", "api"), func(i int) float64 { return float64(i * 8) })
	for j, q := range []string{"0.5", "0.9", "0.99"} {
		add(lbls("diff_rpc_seconds", "job", "api", "quantile", q), func(i int) float64 { return 0.1*float64(j+1) + float64(i%5)/100 })
	}
	add(lbls("diff_rpc_seconds_sum", "job", "api"), func(i int) float64 { return float64(i) * 0.3 })
	add(lbls("diff_rpc_seconds_count", "job", "api"), func(i int) float64 { return float64(i) })
	// A native histogram (exponential buckets, schema 0), growing as a
	// counter does.
	all = append(all, series{labels: lbls("diff_native_seconds", "job", "api"), to: points, hist: func(i int) *histogram.Histogram {
		return &histogram.Histogram{
			Count: uint64(6 * i), ZeroCount: uint64(i), ZeroThreshold: 0.001, Sum: 1.25 * float64(i), Schema: 0,
			PositiveSpans:   []histogram.Span{{Offset: -1, Length: 3}},
			PositiveBuckets: []int64{int64(i), int64(i), int64(-i)}, // i, 2i, i
			NegativeSpans:   []histogram.Span{{Offset: 0, Length: 1}},
			NegativeBuckets: []int64{int64(i)},
		}
	}})
	// A staleness marker at sample 80, then samples again.
	add(lbls("diff_stale", "job", "api"), func(i int) float64 {
		if i == 80 {
			return math.Float64frombits(value.StaleNaN)
		}
		return float64(i)
	})
	// A series that stops at sample 100 with no marker.
	add(lbls("diff_stops", "job", "api"), func(i int) float64 { return 42 })
	all[len(all)-1].to = 100
	// Label values repeated across names and series.
	add(lbls("diff_dup", "a", "x", "b", "x"), func(i int) float64 { return 1 })
	add(lbls("diff_dup", "a", "x", "b", "y"), func(i int) float64 { return 2 })
	add(lbls("diff_dup", "a", "y", "b", "x"), func(i int) float64 { return 3 })
	// Values that need escaping in JSON, in PromQL and in the text format.
	for k, v := range []string{"/ünï/🙂", `with "quote"`, "back\\slash\nnewline", "{x=\"y\"}", " ", "a,b=c"} {
		add(lbls("diff_odd", "path", v), func(i int) float64 { return float64(k) })
	}
	// One gauge (counter, for _total) per name the rules and dashboards
	// read, with the labels they select on.
	for _, n := range names {
		for k, inst := range []string{"a", "b"} {
			ls := lbls(n, "namespace", "prod", "job", "api", "instance", inst, "for", "diff_requests_total", "horizon", []string{"15m", "5m"}[k], "kind", "gauge", "reason", "out_of_order")
			if strings.HasSuffix(n, "_total") || strings.HasSuffix(n, "_count") || strings.HasSuffix(n, "_sum") {
				add(ls, func(i int) float64 { return float64(i * (k + 2)) })
			} else if strings.HasSuffix(n, "_bucket") {
				for j, le := range []string{"0.5", "+Inf"} {
					add(append(append([]prompb.Label(nil), ls...), prompb.Label{Name: "le", Value: le}), func(i int) float64 { return float64(i * (k + 1) * (j + 1)) })
				}
			} else {
				add(ls, func(i int) float64 { return 1 + float64(k) + math.Sin(float64(i)/7) })
			}
		}
	}
	// The bucket series got their le after lbls sorted.
	for i := range all {
		sort.Slice(all[i].labels, func(a, b int) bool { return all[i].labels[a].Name < all[i].labels[b].Name })
	}

	var c diffCorpus
	c.base = base
	// Ten requests of 20 samples per series, in time order, as a sender's
	// queue sends them.
	for from := 0; from < points; from += 20 {
		req := &prompb.WriteRequest{}
		for k, s := range all {
			ts := prompb.TimeSeries{Labels: s.labels}
			for i := from; i < from+20 && i < points; i++ {
				if i >= s.to {
					continue
				}
				at := base.Add(time.Duration(i) * diffStep).UnixMilli()
				if s.hist != nil {
					ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(at, s.hist(i)))
					continue
				}
				ts.Samples = append(ts.Samples, prompb.Sample{Value: s.value(i), Timestamp: at})
				// Exemplars on the first counter, for query_exemplars.
				if k == 0 && i%20 == 5 {
					ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{
						Labels: []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("t%03d", i)}}, Value: float64(i), Timestamp: at,
					})
				}
			}
			if len(ts.Samples)+len(ts.Histograms) > 0 {
				req.Timeseries = append(req.Timeseries, ts)
			}
		}
		c.writes = append(c.writes, req)
	}
	// Metadata, as remote-write 1.0 sends it per family.
	c.writes = append(c.writes, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "diff_requests_total", Help: "Requests.", Unit: ""},
		{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "diff_temperature", Help: "Temperature.", Unit: "celsius"},
		{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "diff_latency_seconds", Help: "Latency."},
	}})
	return c
}

// diffWriteEdge is a write request whose answer is compared.
type diffWriteEdge struct {
	name string
	req  *prompb.WriteRequest
}

// diffWriteEdges are written after the corpus, in this order: a sample far
// older than the head, a series with a label name twice, an empty label
// value, a UTF-8 label name, unsorted labels, no metric name, and samples
// ahead of the clock, last because one an hour ahead moves Prometheus's
// head on and every sample at the corpus's end falls out of its bounds.
func diffWriteEdges(base time.Time) []diffWriteEdge {
	one := func(v float64, at time.Time, ls ...prompb.Label) *prompb.WriteRequest {
		return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: ls, Samples: []prompb.Sample{{Value: v, Timestamp: at.UnixMilli()}}}}}
	}
	end := base.Add(200 * diffStep)
	return []diffWriteEdge{
		{"old", one(1, base.Add(-48*time.Hour), prompb.Label{Name: "__name__", Value: "diff_edge_old"})},
		{"duplicate name", one(1, end, prompb.Label{Name: "__name__", Value: "diff_edge_dup"}, prompb.Label{Name: "a", Value: "1"}, prompb.Label{Name: "a", Value: "2"})},
		{"empty value", one(1, end, prompb.Label{Name: "__name__", Value: "diff_edge_empty"}, prompb.Label{Name: "a", Value: ""}, prompb.Label{Name: "b", Value: "1"})},
		{"utf-8 name", one(1, end, prompb.Label{Name: "__name__", Value: "diff.edge.utf8"}, prompb.Label{Name: "ünï", Value: "1"})},
		{"unsorted", one(1, end, prompb.Label{Name: "z", Value: "1"}, prompb.Label{Name: "__name__", Value: "diff_edge_unsorted"})},
		{"no name", one(1, end, prompb.Label{Name: "a", Value: "1"})},
		{"5m ahead", one(1, time.Now().Add(5*time.Minute), prompb.Label{Name: "__name__", Value: "diff_edge_ahead"})},
		{"1h ahead", one(1, time.Now().Add(time.Hour), prompb.Label{Name: "__name__", Value: "diff_edge_far_ahead"})},
	}
}

// diffRequest is one request sent to every server.
type diffRequest struct {
	name    string
	method  string
	path    string
	params  url.Values
	form    bool // params in a POST form body
	headers map[string]string
	// shape: compare the JSON's keys and types, not its values (build
	// information, flags, timings).
	shape bool
	// tol is the relative difference of sample values allowed beyond
	// 1e-12 (rounding).
	tol float64
	// expect, if not empty, is why omen may answer otherwise: a feature of
	// Prometheus 3 that 2.42 lacks, or one of omen's documented extras.
	expect string
}

// kind groups requests for the summary table.
func (r diffRequest) kind() string {
	k := r.path
	if strings.HasPrefix(k, "/api/v1/label/") {
		k = "/api/v1/label/<name>/values"
	}
	if r.method != "" && r.method != http.MethodGet {
		k += " " + r.method
	}
	return k
}

// Why the answers of Prometheus 3, whose code omen serves the API with,
// differ from 2.42's for the same data and request. Each is in docs/ or
// harmless to a client written for 2.42.
const (
	leftOpen = "Prometheus 3: range selectors and the lookback are left-open, a sample exactly at the window's start is out"
	newParam = "Prometheus 3 parameter that 2.42 ignores"
	extra    = "omen's documented extra"
	utf8Name = "Prometheus 3: UTF-8 label names (2.42 refuses them)"
	removed  = "Prometheus 3: holt_winters renamed double_exponential_smoothing, behind a feature flag"
	// diff_temperature has +Inf and -Inf in its windows.
	stddevInf  = "Prometheus 3: stddev_over_time of a window holding ±Inf is +Inf (2.42: NaN)"
	dotNewline = "Prometheus 3: . in a regular expression matches a newline"
	// Native histograms were experimental in 2.42, behind a flag.
	nativeHist = "Prometheus 3: native histograms' quantiles interpolate exponentially, their rate extrapolates otherwise in a series' first range"
)

// shippedExprs returns the expressions of the generated rules, of the
// shipped dashboards (their variables given the values a user picking one
// series would give them) and of the KEDA and prometheus-adapter examples.
func shippedExprs(t testing.TB) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	var exprs []string
	b, err := os.ReadFile(filepath.Join(root, "rules", "testdata", "omen.rules.yml"))
	require.NoError(t, err)
	var rf struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &rf))
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	vars := strings.NewReplacer(
		"$__rate_interval", "1m", "$__interval", "15s", "${horizon}", "15m", "$horizon", "15m",
		"${namespace}", "prod", "$namespace", "prod", "${job}", "api", "$job", "api",
		"${instance}", "(a|b)", "$instance", "(a|b)", "${for}", "diff_requests_total", "$for", "diff_requests_total",
	)
	dashboards, err := filepath.Glob(filepath.Join(root, "deploy", "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	exprRe := regexp.MustCompile(`"expr":\s*("(?:[^"\\]|\\.)*")`)
	for _, d := range dashboards {
		b, err := os.ReadFile(d)
		require.NoError(t, err)
		for _, m := range exprRe.FindAllSubmatch(b, -1) {
			var e string
			require.NoError(t, json.Unmarshal(m[1], &e))
			exprs = append(exprs, vars.Replace(e))
		}
	}
	// KEDA's trigger queries, as it sends them.
	b, err = os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "overlays", "predictive-scaling-keda", "scaledobject.yaml"))
	require.NoError(t, err)
	var so struct {
		Spec struct {
			Triggers []struct {
				Metadata map[string]string `yaml:"metadata"`
			} `yaml:"triggers"`
		} `yaml:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(b, &so))
	for _, tr := range so.Spec.Triggers {
		exprs = append(exprs, tr.Metadata["query"])
	}
	// prometheus-adapter's metricsQuery, with its template filled in as
	// it fills it in for an HPA in namespace prod, and its seriesQuery.
	b, err = os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "overlays", "predictive-scaling-hpa", "prometheus-adapter.yaml"))
	require.NoError(t, err)
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	require.NoError(t, yaml.Unmarshal(b, &cm))
	var ad struct {
		ExternalRules []struct {
			SeriesQuery  string `yaml:"seriesQuery"`
			MetricsQuery string `yaml:"metricsQuery"`
		} `yaml:"externalRules"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &ad))
	require.NotEmpty(t, ad.ExternalRules)
	for _, r := range ad.ExternalRules {
		name := strings.SplitN(r.SeriesQuery, "{", 2)[0]
		exprs = append(exprs, r.SeriesQuery, strings.NewReplacer(
			"<<.GroupBy>>", "namespace", "<<.Series>>", name, "<<.LabelMatchers>>", `namespace="prod",for="diff_requests_total"`,
		).Replace(r.MetricsQuery))
	}
	return exprs
}

// metricNames returns the metric names the expressions select.
func metricNames(t testing.TB, exprs []string) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range exprs {
		ast, err := parser.NewParser(parser.Options{}).ParseExpr(e)
		require.NoError(t, err, e)
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
				seen[vs.Name] = true
			}
			return nil
		})
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// diffAnswer is what one server answered, normalised for comparison.
type diffAnswer struct {
	Code        int
	ContentType string
	Encoding    string
	Body        any
}

// diffClient asks for gzip only when a request says so, so that the
// transport does not undo it unseen.
var diffClient = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}

func fetch(base string, r diffRequest) (diffAnswer, error) {
	u := base + r.path
	var body io.Reader
	if r.form {
		body = strings.NewReader(r.params.Encode())
	} else if len(r.params) > 0 {
		u += "?" + r.params.Encode()
	}
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return diffAnswer{}, err
	}
	if r.form {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	resp, err := diffClient.Do(req)
	if err != nil {
		return diffAnswer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return diffAnswer{}, err
	}
	a := diffAnswer{Code: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Encoding: resp.Header.Get("Content-Encoding")}
	if a.Encoding == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return diffAnswer{}, fmt.Errorf("gzip: %w", err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return diffAnswer{}, fmt.Errorf("gzip: %w", err)
		}
	}
	var v any
	if json.Unmarshal(raw, &v) == nil {
		a.Body = v
	} else {
		a.Body = strings.TrimSpace(string(raw))
	}
	if r.shape {
		a.Body = shapeOf(a.Body)
	} else if m, ok := a.Body.(map[string]any); ok {
		// Timings differ by nature; their presence and names are compared.
		if d, ok := m["data"].(map[string]any); ok {
			if s, ok := d["stats"]; ok {
				d["stats"] = shapeOf(s)
			}
			if res, ok := d["result"].([]any); ok && !strings.Contains(r.params.Get("query"), "sort") && !strings.Contains(r.params.Get("query"), "topk") {
				sortResult(res)
			}
		}
	}
	return a, nil
}

// shapeOf replaces every leaf by its JSON type.
func shapeOf(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			m[k] = shapeOf(e)
		}
		return m
	case []any:
		if len(x) == 0 {
			return []any{}
		}
		return []any{shapeOf(x[0])}
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func sortResult(res []any) {
	key := func(e any) string {
		b, _ := json.Marshal(e)
		if m, ok := e.(map[string]any); ok && m["metric"] != nil {
			b, _ = json.Marshal(m["metric"])
		}
		return string(b)
	}
	sort.SliceStable(res, func(i, j int) bool { return key(res[i]) < key(res[j]) })
}

// diffRequests is the corpus of requests: what Grafana, prometheus-adapter,
// KEDA and promtool send, and the edges of each parameter.
func diffRequests(c diffCorpus, exprs []string) []diffRequest {
	b := c.base
	at := func(d time.Duration) string {
		return strconv.FormatFloat(float64(b.Add(d).UnixMilli())/1000, 'f', -1, 64)
	}
	rfc := func(d time.Duration) string { return b.Add(d).UTC().Format(time.RFC3339Nano) }
	last := 199 * diffStep
	var rs []diffRequest
	q := func(name string, p url.Values) {
		rs = append(rs, diffRequest{name: name, path: "/api/v1/query", params: p})
	}
	qr := func(name string, p url.Values) {
		rs = append(rs, diffRequest{name: name, path: "/api/v1/query_range", params: p})
	}
	// Every shipped expression, instant and over the whole range as
	// Grafana asks for it (a POST form, step aligned to the step).
	for i, e := range exprs {
		// At instants between samples, where Prometheus 3's left-open
		// windows make no difference; Grafana's aligned steps, at samples,
		// are below.
		q(fmt.Sprintf("shipped %d instant", i), url.Values{"query": {e}, "time": {at(150*diffStep + 7*time.Second)}})
		rs = append(rs, diffRequest{name: fmt.Sprintf("shipped %d range POST", i), method: http.MethodPost, form: true, path: "/api/v1/query_range",
			params: url.Values{"query": {e}, "start": {at(7 * time.Second)}, "end": {at(last)}, "step": {"60"}}})
	}
	exprsOfData := []string{
		"diff_requests_total", "rate(diff_requests_total[5m])", "irate(diff_requests_total[1m])", "increase(diff_requests_total[10m])",
		"resets(diff_requests_total[1h])", "diff_temperature", "avg_over_time(diff_temperature[5m])", "stddev_over_time(diff_temperature[10m])",
		"histogram_quantile(0.9, sum by (le) (rate(diff_latency_seconds_bucket[5m])))", "histogram_quantile(0.9, rate(diff_latency_seconds_bucket[5m]))",
		"rate(diff_latency_seconds_sum[5m]) / rate(diff_latency_seconds_count[5m])", "diff_rpc_seconds", "max by (quantile) (diff_rpc_seconds)",
		"diff_stale", "diff_stops", "count_over_time(diff_stale[10m])", "last_over_time(diff_stops[10m])", "absent(diff_stops)", "absent_over_time(diff_stops[1m])",
		"diff_dup", `diff_dup{a="x"}`, `diff_dup{b=~"x|y"}`, `count by (a) (diff_dup)`, `diff_dup{a="x"} == on(b) group_left diff_dup{a="y"}`,
		"diff_odd", `diff_odd{path="/ünï/🙂"}`, `diff_odd{path=~".*\n.*"}`, `diff_odd{path=~"with.*"}`, `label_replace(diff_odd, "p2", "$1", "path", "(.)(.*)")`,
		`{__name__=~"diff_.*", job="api"}`, `{job="api"}`, `sum by (__name__) ({__name__=~"diff_.+"})`, "time()", "vector(1)", `"a string"`, "1.5",
		"diff_requests_total offset 5m", "diff_requests_total offset -5m", "diff_requests_total @ start()", "diff_requests_total @ end()",
		fmt.Sprintf("diff_requests_total @ %s", at(10*diffStep)), "max_over_time(diff_temperature[10m:1m])", "rate(diff_requests_total[5m])[10m:30s]",
		"max_over_time(rate(diff_requests_total[1m])[5m:])", "diff_temperature > 21", "diff_temperature > bool 21", "-diff_temperature", "diff_temperature * 1e308",
		"sort_desc(diff_temperature)", "topk(1, diff_temperature)", "quantile(0.5, diff_temperature)", "predict_linear(diff_requests_total[10m], 600)",
		"deriv(diff_temperature[5m])", "holt_winters(diff_temperature[10m], 0.5, 0.5)", "changes(diff_temperature[10m])", "timestamp(diff_stale)",
		"sum(diff_requests_total) without (instance)", "count_values(\"v\", diff_dup)", "label_join(diff_dup, \"ab\", \"-\", \"a\", \"b\")",
		"rate(diff_temperature[5m])", "rate(diff_requests_total)", "sum(", "diff_requests_total[5m]", "no_such_metric", "diff_requests_total / 0",
		"diff_requests_total + on(code) diff_requests_total", "diff_dup + ignoring(b) diff_dup", `{__name__=""}`, `{a=~".*"}`,
		"histogram_quantile(0.5, diff_temperature)", "sum by (le) (diff_latency_seconds_bucket)", "sort(diff_stale)", "diff_stale[10m]",
		"last_over_time(diff_stale[10m])", "present_over_time(diff_stops[10m])", "quantile_over_time(0.5, diff_temperature[10m])",
		"diff_native_seconds", "rate(diff_native_seconds[5m])", "histogram_quantile(0.9, rate(diff_native_seconds[5m]))",
		"histogram_count(rate(diff_native_seconds[5m]))", "histogram_sum(diff_native_seconds)", "histogram_fraction(0, 1, diff_native_seconds)",
		"sum(rate(diff_native_seconds[5m]))", "histogram_quantile(0.5, diff_native_seconds)",
		"round(diff_temperature, 0.5)", "clamp(diff_temperature, 0, 25)", "sgn(diff_temperature)", "exp(1000)", "ln(-1)", "1/0", "-1/0", "0/0",
	}
	instants := map[string]time.Duration{
		"at a sample": 100 * diffStep, "between samples": 100*diffStep + 7*time.Second, "at the first": 0, "before the first": -time.Second,
		"at the stale marker": 80 * diffStep, "after the stale marker": 80*diffStep + time.Second,
		"lookback 4m59s after the stop": 99*diffStep + 4*time.Minute + 59*time.Second, "lookback 5m after the stop": 99*diffStep + 5*time.Minute,
		"lookback 5m1s after the stop": 99*diffStep + 5*time.Minute + time.Second, "5m after the last": last + 5*time.Minute,
	}
	// Instants on the sample grid put a sample at the start of every
	// window ([5m], [10m], the 5m lookback), which Prometheus 3 leaves out.
	onGrid := func(d time.Duration) bool { return d%diffStep == 0 }
	var instantNames []string
	for n := range instants {
		instantNames = append(instantNames, n)
	}
	sort.Strings(instantNames)
	for _, e := range exprsOfData {
		// A subquery's steps are aligned to its step, on the grid
		// wherever it is evaluated.
		sub := strings.Contains(e, ":]") || strings.Contains(e, ":30s]") || strings.Contains(e, ":1m]")
		why := func(grid bool) string {
			switch {
			case strings.HasPrefix(e, "holt_winters"):
				return removed
			case strings.Contains(e, "diff_native_seconds") && (strings.Contains(e, "rate") || strings.HasPrefix(e, "histogram_quantile(0.5")):
				return nativeHist
			case strings.HasPrefix(e, "stddev_over_time"):
				return stddevInf
			case strings.HasPrefix(e, "label_replace(diff_odd"):
				return dotNewline
			case grid || sub:
				return leftOpen
			}
			return ""
		}
		for _, n := range instantNames {
			rs = append(rs, diffRequest{name: e + " " + n, path: "/api/v1/query", params: url.Values{"query": {e}, "time": {at(instants[n])}}, expect: why(onGrid(instants[n]))})
		}
		rs = append(rs,
			diffRequest{name: e + " range", path: "/api/v1/query_range", params: url.Values{"query": {e}, "start": {at(0)}, "end": {at(last)}, "step": {"30"}}, expect: why(true)},
			diffRequest{name: e + " range unaligned", path: "/api/v1/query_range", params: url.Values{"query": {e}, "start": {at(7 * time.Second)}, "end": {at(last - 3*time.Second)}, "step": {"45s"}}, expect: why(false)},
		)
	}
	// Grafana aligns a range's start to its step: on the sample grid.
	for i, e := range exprs {
		rs = append(rs, diffRequest{name: fmt.Sprintf("shipped %d range aligned", i), path: "/api/v1/query_range",
			params: url.Values{"query": {e}, "start": {at(0)}, "end": {at(last)}, "step": {"60"}}, expect: leftOpen})
	}
	// Parameters' forms and edges.
	q("time RFC 3339", url.Values{"query": {"diff_temperature"}, "time": {rfc(100 * diffStep)}})
	q("time RFC 3339 offset", url.Values{"query": {"diff_temperature"}, "time": {b.Add(100 * diffStep).In(time.FixedZone("x", 3600)).Format(time.RFC3339)}})
	rs = append(rs, diffRequest{name: "time omitted", path: "/api/v1/query", params: url.Values{"query": {"vector(1)"}}, shape: true})
	q("time bad", url.Values{"query": {"vector(1)"}, "time": {"yesterday"}})
	rs = append(rs, diffRequest{name: "time empty", path: "/api/v1/query", params: url.Values{"query": {"vector(1)"}, "time": {""}}, shape: true})
	q("query missing", url.Values{"time": {at(0)}})
	q("query empty", url.Values{"query": {""}, "time": {at(0)}})
	q("timeout", url.Values{"query": {"diff_temperature"}, "time": {at(0)}, "timeout": {"5s"}})
	q("timeout bad", url.Values{"query": {"diff_temperature"}, "time": {at(0)}, "timeout": {"soon"}})
	q("timeout tiny", url.Values{"query": {"count_over_time(diff_temperature[1h:1s])"}, "time": {at(last)}, "timeout": {"1ns"}})
	q("stats all", url.Values{"query": {"rate(diff_requests_total[5m])"}, "time": {at(last - 8*time.Second)}, "stats": {"all"}})
	q("stats bogus", url.Values{"query": {"rate(diff_requests_total[5m])"}, "time": {at(last - 8*time.Second)}, "stats": {"yes"}})
	rs = append(rs, diffRequest{name: "lookback_delta 1m", path: "/api/v1/query", params: url.Values{"query": {"diff_stops"}, "time": {at(99*diffStep + 2*time.Minute)}, "lookback_delta": {"1m"}}, expect: newParam})
	rs = append(rs, diffRequest{name: "lookback_delta bad", path: "/api/v1/query", params: url.Values{"query": {"diff_stops"}, "time": {at(99 * diffStep)}, "lookback_delta": {"x"}}, expect: newParam})
	rs = append(rs, diffRequest{name: "limit", path: "/api/v1/query", params: url.Values{"query": {"diff_dup"}, "time": {at(0)}, "limit": {"1"}}, expect: newParam})
	qr("range stats all", url.Values{"query": {"rate(diff_requests_total[5m])"}, "start": {at(7 * time.Second)}, "end": {at(last)}, "step": {"60"}, "stats": {"all"}})
	qr("range RFC 3339", url.Values{"query": {"diff_temperature"}, "start": {rfc(7 * time.Second)}, "end": {rfc(last)}, "step": {"1m"}})
	qr("range 11000 points", url.Values{"query": {"diff_temperature"}, "start": {at(7 * time.Second)}, "end": {at(11007 * time.Second)}, "step": {"1.5"}})
	qr("range 11001 points", url.Values{"query": {"diff_temperature"}, "start": {at(0)}, "end": {at(11001 * time.Second)}, "step": {"1"}})
	qr("range end before start", url.Values{"query": {"diff_temperature"}, "start": {at(last)}, "end": {at(0)}, "step": {"60"}})
	qr("range step 0", url.Values{"query": {"diff_temperature"}, "start": {at(0)}, "end": {at(last)}, "step": {"0"}})
	qr("range step negative", url.Values{"query": {"diff_temperature"}, "start": {at(0)}, "end": {at(last)}, "step": {"-1"}})
	qr("range step missing", url.Values{"query": {"diff_temperature"}, "start": {at(0)}, "end": {at(last)}})
	qr("range start missing", url.Values{"query": {"diff_temperature"}, "end": {at(last)}, "step": {"60"}})
	rs = append(rs, diffRequest{name: "range lookback_delta", path: "/api/v1/query_range", params: url.Values{"query": {"diff_stops"}, "start": {at(0)}, "end": {at(last)}, "step": {"60"}, "lookback_delta": {"30s"}}, expect: newParam})
	qr("range scalar", url.Values{"query": {"time()"}, "start": {at(0)}, "end": {at(last)}, "step": {"60"}})
	qr("range string", url.Values{"query": {`"s"`}, "start": {at(0)}, "end": {at(last)}, "step": {"60"}})
	qr("range matrix", url.Values{"query": {`diff_temperature[5m]`}, "start": {at(0)}, "end": {at(last)}, "step": {"60"}})
	qr("range timeout", url.Values{"query": {"diff_temperature"}, "start": {at(0)}, "end": {at(last)}, "step": {"60"}, "timeout": {"1s"}})
	// Times and steps in every form the API reads, and out of range.
	for _, tm := range []string{"0", "-1", "1e9", "1796480707.5", "1e20", "-1e20", "NaN", "Inf", "-Inf", "+Inf",
		"2026-12-05T15:00:00.123456789+01:00", "-292273086-05-16T16:47:06Z", "292277026596-12-04T15:30:07Z", "2026-13-05T15:00:00Z", " 1"} {
		q("time "+tm, url.Values{"query": {"vector(1)"}, "time": {tm}})
		qr("range start "+tm, url.Values{"query": {"vector(1)"}, "start": {tm}, "end": {at(last)}, "step": {"3600"}})
		rs = append(rs, diffRequest{name: "series start " + tm, path: "/api/v1/series", params: url.Values{"match[]": {"diff_dup"}, "start": {tm}}})
	}
	for _, st := range []string{"15s", "1h30m", "1.5", "1e-3", "NaN", "Inf", "1y", "0.0001", "1d"} {
		why := map[string]string{"NaN": "Prometheus 3's error wording (NaN: overflows int64, 2.42: zero or negative)"}[st]
		rs = append(rs, diffRequest{name: "range step " + st, path: "/api/v1/query_range", params: url.Values{"query": {"diff_temperature"}, "start": {at(7 * time.Second)}, "end": {at(last)}, "step": {st}}, expect: why})
	}
	for _, to := range []string{"-1s", "0", "1.5", "1h"} {
		why := map[string]string{"0": "Prometheus 3 refuses timeout=0 with a 400 (2.42: 503, timed out in the queue)"}[to]
		rs = append(rs, diffRequest{name: "timeout " + to, path: "/api/v1/query", params: url.Values{"query": {"diff_temperature"}, "time": {at(7 * time.Second)}, "timeout": {to}}, expect: why})
	}
	// Two years at a 2h step, as Grafana's "Last 2 years" asks: the
	// subquery's default 1m step makes 1,051,260 steps, past omen's
	// documented bound of 1,000,000 (README, "One query cannot exhaust
	// memory").
	rs = append(rs, diffRequest{name: "subquery over two years", path: "/api/v1/query_range", params: url.Values{
		"query": {"max_over_time(rate(diff_requests_total[5m])[1h:])"}, "start": {at(-2 * 365 * 24 * time.Hour)}, "end": {at(last)}, "step": {"7200"},
	}, expect: extra})
	q("at far future", url.Values{"query": {"diff_temperature @ 1e10"}, "time": {at(7 * time.Second)}})
	rs = append(rs, diffRequest{name: "series end before start", path: "/api/v1/series", params: url.Values{"match[]": {"diff_dup"}, "start": {at(last)}, "end": {at(0)}}})
	rs = append(rs, diffRequest{name: "labels end before start", path: "/api/v1/labels", params: url.Values{"start": {at(last)}, "end": {at(0)}}})
	rs = append(rs,
		diffRequest{name: "query POST form", method: http.MethodPost, form: true, path: "/api/v1/query", params: url.Values{"query": {"diff_dup"}, "time": {at(50 * diffStep)}}},
		diffRequest{name: "query POST query string", method: http.MethodPost, path: "/api/v1/query", params: url.Values{"query": {"diff_dup"}, "time": {at(50 * diffStep)}}},
		diffRequest{name: "query gzip", path: "/api/v1/query", params: url.Values{"query": {"diff_dup"}, "time": {at(50 * diffStep)}}, headers: map[string]string{"Accept-Encoding": "gzip"}},
		diffRequest{name: "query_range gzip", path: "/api/v1/query_range", params: url.Values{"query": {"diff_temperature"}, "start": {at(0)}, "end": {at(last)}, "step": {"15"}}, headers: map[string]string{"Accept-Encoding": "gzip"}},
		diffRequest{name: "query OPTIONS", method: http.MethodOptions, path: "/api/v1/query"},
		diffRequest{name: "query OPTIONS CORS", method: http.MethodOptions, path: "/api/v1/query", headers: map[string]string{"Origin": "http://grafana.example", "Access-Control-Request-Method": "GET"}},
		diffRequest{name: "query HEAD", method: http.MethodHead, path: "/api/v1/query", params: url.Values{"query": {"1"}}},
		diffRequest{name: "query PUT", method: http.MethodPut, path: "/api/v1/query", params: url.Values{"query": {"1"}}},
		diffRequest{name: "query DELETE", method: http.MethodDelete, path: "/api/v1/query", params: url.Values{"query": {"1"}}},
		diffRequest{name: "labels HEAD", method: http.MethodHead, path: "/api/v1/labels"},
	)
	// Series, labels and label values, as Grafana's variables and
	// prometheus-adapter's discovery ask for them.
	win := url.Values{"start": {at(0)}, "end": {at(last)}}
	with := func(p url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, v := range p {
			out[k] = append([]string(nil), v...)
		}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	for _, path := range []string{"/api/v1/series", "/api/v1/labels", "/api/v1/label/job/values", "/api/v1/label/path/values", "/api/v1/label/__name__/values", "/api/v1/label/for/values"} {
		rs = append(rs,
			diffRequest{name: path + " no match", path: path, params: win},
			diffRequest{name: path + " match", path: path, params: with(win, "match[]", `{__name__=~"diff_.+"}`)},
			diffRequest{name: path + " match twice", path: path, params: with(win, "match[]", "diff_dup", "match[]", `diff_odd`)},
			diffRequest{name: path + " match empty", path: path, params: with(win, "match[]", "")},
			diffRequest{name: path + " match bad", path: path, params: with(win, "match[]", "diff_dup{")},
			diffRequest{name: path + " match empty matcher", path: path, params: with(win, "match[]", `{a=""}`)},
			diffRequest{name: path + " limit 1", path: path, params: with(win, "match[]", "diff_dup", "limit", "1"), expect: newParam},
			diffRequest{name: path + " limit bad", path: path, params: with(win, "match[]", "diff_dup", "limit", "x"), expect: newParam},
			diffRequest{name: path + " POST", method: http.MethodPost, form: true, path: path, params: with(win, "match[]", "diff_dup")},
			diffRequest{name: path + " no time", path: path, params: url.Values{"match[]": {"diff_dup"}}},
			diffRequest{name: path + " RFC 3339", path: path, params: url.Values{"match[]": {"diff_dup"}, "start": {rfc(0)}, "end": {rfc(last)}}},
			diffRequest{name: path + " start bad", path: path, params: url.Values{"match[]": {"diff_dup"}, "start": {"x"}}},
			diffRequest{name: path + " after the data", path: path, params: url.Values{"match[]": {"diff_dup"}, "start": {at(last + 3*time.Hour)}, "end": {at(last + 4*time.Hour)}}},
			diffRequest{name: path + " adapter", path: path, params: with(win, "match[]", `forecast{horizon="15m", for!=""}`)},
		)
	}
	rs = append(rs,
		diffRequest{name: "label bad name", path: "/api/v1/label/a-b/values", params: win, expect: utf8Name},
		diffRequest{name: "label utf-8 name", path: "/api/v1/label/U__" + "%C3%BCn%C3%AF" + "/values", params: win, expect: utf8Name},
		diffRequest{name: "label values missing", path: "/api/v1/label//values", params: win},
		diffRequest{name: "query_exemplars", path: "/api/v1/query_exemplars", params: url.Values{"query": {"diff_requests_total"}, "start": {at(0)}, "end": {at(last)}}},
		diffRequest{name: "query_exemplars bad", path: "/api/v1/query_exemplars", params: url.Values{"query": {"sum("}, "start": {at(0)}, "end": {at(last)}}},
		diffRequest{name: "format_query", path: "/api/v1/format_query", params: url.Values{"query": {`sum by(job)(rate(diff_requests_total{job="api"}[5m]))`}}},
		diffRequest{name: "format_query odd", path: "/api/v1/format_query", params: url.Values{"query": {`diff_odd{path="with \"quote\""} offset 5m`}}},
		diffRequest{name: "format_query bad", path: "/api/v1/format_query", params: url.Values{"query": {"sum("}}},
		diffRequest{name: "parse_query", path: "/api/v1/parse_query", params: url.Values{"query": {"sum(x)"}}, expect: "Prometheus 3 endpoint"},
		diffRequest{name: "metadata", path: "/api/v1/metadata", expect: extra},
		diffRequest{name: "metadata metric", path: "/api/v1/metadata", params: url.Values{"metric": {"diff_requests_total"}}, expect: extra},
		diffRequest{name: "metadata limit", path: "/api/v1/metadata", params: url.Values{"limit": {"1"}}, expect: extra},
		// omen's own handler: its errors and empty answers as 2.42's.
		diffRequest{name: "metadata limit bad", path: "/api/v1/metadata", params: url.Values{"limit": {"x"}}},
		diffRequest{name: "metadata limit negative", path: "/api/v1/metadata", params: url.Values{"limit": {"-1"}}, shape: true, expect: extra},
		diffRequest{name: "metadata limit 0", path: "/api/v1/metadata", params: url.Values{"limit": {"0"}}, shape: true, expect: extra},
		diffRequest{name: "metadata limit_per_metric bad", path: "/api/v1/metadata", params: url.Values{"limit_per_metric": {"x"}}, expect: newParam},
		diffRequest{name: "metadata limit_per_metric", path: "/api/v1/metadata", params: url.Values{"limit_per_metric": {"1"}, "metric": {"diff_temperature"}}, expect: extra},
		diffRequest{name: "metadata unknown metric", path: "/api/v1/metadata", params: url.Values{"metric": {"no_such_metric"}}},
		diffRequest{name: "metadata POST", method: http.MethodPost, form: true, path: "/api/v1/metadata", params: url.Values{"metric": {"no_such_metric"}}},
		diffRequest{name: "metadata HEAD", method: http.MethodHead, path: "/api/v1/metadata"},
		diffRequest{name: "metadata OPTIONS", method: http.MethodOptions, path: "/api/v1/metadata", headers: map[string]string{"Origin": "http://grafana.example"}},
		diffRequest{name: "metadata gzip", path: "/api/v1/metadata", params: url.Values{"metric": {"no_such_metric"}}, headers: map[string]string{"Accept-Encoding": "gzip"}},
		diffRequest{name: "targets", path: "/api/v1/targets", expect: "Prometheus 3 field droppedTargetCounts"},
		diffRequest{name: "targets metadata", path: "/api/v1/targets/metadata", params: url.Values{"metric": {"diff_requests_total"}}, expect: extra},
		diffRequest{name: "rules", path: "/api/v1/rules"},
		diffRequest{name: "alerts", path: "/api/v1/alerts"},
		diffRequest{name: "alertmanagers", path: "/api/v1/alertmanagers"},
		diffRequest{name: "scrape_pools", path: "/api/v1/scrape_pools"},
		diffRequest{name: "status config", path: "/api/v1/status/config", shape: true},
		diffRequest{name: "status flags", path: "/api/v1/status/flags", shape: true, expect: extra},
		diffRequest{name: "status runtimeinfo", path: "/api/v1/status/runtimeinfo", shape: true, expect: "Prometheus 3 fields (GOMEMLIMIT, hostname, serverTime)"},
		diffRequest{name: "status buildinfo", path: "/api/v1/status/buildinfo", shape: true},
		// Shapes: the ties of equal counts and the bytes per label name come
		// in another order and measure, headStats are equal.
		diffRequest{name: "status tsdb", path: "/api/v1/status/tsdb", shape: true},
		diffRequest{name: "status tsdb limit", path: "/api/v1/status/tsdb", params: url.Values{"limit": {"2"}}, shape: true},
		diffRequest{name: "status walreplay", path: "/api/v1/status/walreplay", shape: true},
		diffRequest{name: "unknown endpoint", path: "/api/v1/nope"},
		diffRequest{name: "admin off", method: http.MethodPost, path: "/api/v1/admin/tsdb/snapshot"},
		diffRequest{name: "read GET", path: "/api/v1/read"},
	)
	return rs
}

// TestQueryAPIMatchesPrometheus242 writes the same remote-write corpus to
// omen and to Prometheus 2.42, sends both the same requests, and compares
// the answers.
func TestQueryAPIMatchesPrometheus242(t *testing.T) {
	need(t, "prometheus")
	exprs := shippedExprs(t)
	names := metricNames(t, exprs)
	base := time.Now().Add(-55 * time.Minute).Truncate(time.Minute)
	corpus := newDiffCorpus(base, names)

	ports := [3]int{freePort(t), freePort(t), freePort(t)}
	prom := startPrometheusAt(t, filepath.Join(t.TempDir(), "data"), ports[0], func(string) string { return "global: {}\n" },
		"--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage,native-histograms")
	omen := startOmenAt(t, ports[1])
	// Prometheus 2.42 as Prometheus 3 bounds its windows: a lookback and
	// (leftOpenQuery) ranges 1 ms shorter leave out what Prometheus 3's
	// left-open windows leave out, samples being whole milliseconds. The
	// requests whose answers differ for that alone are compared with it.
	closed := startPrometheusAt(t, filepath.Join(t.TempDir(), "data"), ports[2], func(string) string { return "global: {}\n" },
		"--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage,native-histograms", "--query.lookback-delta=4m59s999ms")
	closed.name = "prometheus-left-open"

	for i, w := range corpus.writes {
		for _, p := range []*proc{prom, omen, closed} {
			code, body := remoteWriteV1(t, p.URL, w)
			require.Less(t, code, 300, "write %d to %s: %s", i, p.name, body)
		}
	}
	type tally struct{ same, expected, found int }
	kinds := map[string]*tally{}
	reasons := map[string]int{}
	var found []string
	compare := func(r diffRequest, pa, oa diffAnswer) {
		k := kinds[r.kind()]
		if k == nil {
			k = &tally{}
			kinds[r.kind()] = k
		}
		pj, _ := json.Marshal(pa)
		oj, _ := json.Marshal(oa)
		if bytes.Equal(pj, oj) {
			k.same++
			return
		}
		why := r.expect
		if why == "" {
			why = upstream(r, &pa, &oa)
		}
		if why != "" {
			k.expected++
			reasons[why]++
			return
		}
		k.found++
		pj, _ = json.Marshal(pa)
		oj, _ = json.Marshal(oa)
		found = append(found, fmt.Sprintf("%s: %s %s %v:\n  prometheus %s\n  omen       %s", r.name, r.method, r.path, r.params, clip(pj), clip(oj)))
	}
	for _, r := range diffRequests(corpus, exprs) {
		pa, err := fetch(prom.URL, r)
		require.NoError(t, err, r.name)
		if r.expect == leftOpen {
			lo := r
			lo.params = url.Values{}
			for k, v := range r.params {
				lo.params[k] = v
			}
			lo.params.Set("query", leftOpenQuery(r.params.Get("query")))
			pa, err = fetch(closed.URL, lo)
			require.NoError(t, err, r.name)
			r.name += " (against 2.42 with windows 1 ms shorter)"
			r.expect = ""
			// rate, increase and delta extrapolate over the range: 1 ms in
			// the shortest, 1m, is 1.7e-5 of it.
			r.tol = 3e-5
			reasons[leftOpen+"; checked against 2.42 with windows 1 ms shorter"]++
		}
		if r.name == "query_exemplars" {
			// The comparison means something only if there is something
			// to compare.
			require.NotEmpty(t, pa.Body.(map[string]any)["data"], "Prometheus stored no exemplars")
		}
		oa, err := fetch(omen.URL, r)
		require.NoError(t, err, r.name)
		compare(r, pa, oa)
	}
	// promtool query, as a user checks a server with it: its output
	// compared as text.
	promtool := need(t, "promtool")
	at := func(d time.Duration) string { return strconv.FormatInt(base.Add(d).Unix(), 10) }
	for _, args := range [][]string{
		{"instant", "--time=" + at(100*diffStep+7*time.Second), "URL", "diff_temperature"},
		{"instant", "--time=" + at(100*diffStep+7*time.Second), "URL", `sum by (job) (rate(diff_requests_total[5m]))`},
		{"instant", "-o", "json", "--time=" + at(100*diffStep+7*time.Second), "URL", "diff_odd"},
		{"range", "--start=" + at(7*time.Second), "--end=" + at(190*diffStep), "--step=1m", "URL", "diff_stale"},
		{"series", "--match=diff_dup", "--start=" + at(0), "--end=" + at(190*diffStep), "URL"},
		{"labels", "--start=" + at(0), "--end=" + at(190*diffStep), "URL", "path"},
	} {
		var outs [2]diffAnswer
		for i, p := range []*proc{prom, omen} {
			a := append([]string{"query"}, args...)
			for j := range a {
				if a[j] == "URL" {
					a[j] = p.URL
				}
			}
			out, err := exec.Command(promtool, a...).CombinedOutput()
			code := 0
			if err != nil {
				code = 1
			}
			// Prometheus leaves an instant vector and the series of one
			// match[] in the order it selects them since 2.52 (2.42 sorted
			// them by labels): compared in label order.
			var v []any
			var body any
			if json.Unmarshal(out, &v) == nil {
				sortResult(v)
				body = v
			} else {
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				sort.Strings(lines)
				body = lines
			}
			outs[i] = diffAnswer{Code: code, Body: body}
		}
		compare(diffRequest{name: "promtool " + strings.Join(args, " "), method: "promtool", path: "promtool query " + args[0]}, outs[0], outs[1])
	}
	// Remote read of every diff_ series over the corpus, both response
	// types, as Prometheus's remote_read and omen's own backfill send it.
	for _, rt := range []prompb.ReadRequest_ResponseType{prompb.ReadRequest_SAMPLES, prompb.ReadRequest_STREAMED_XOR_CHUNKS} {
		q := &prompb.Query{
			StartTimestampMs: base.UnixMilli(), EndTimestampMs: base.Add(200 * diffStep).UnixMilli(),
			Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_RE, Name: "__name__", Value: "diff_.+"}},
		}
		var outs [2]diffAnswer
		for i, p := range []*proc{prom, omen} {
			outs[i] = diffRemoteRead(t, p.URL, q, rt)
		}
		require.NotEmpty(t, outs[0].Body, "Prometheus read no series")
		compare(diffRequest{name: "remote read " + rt.String(), method: http.MethodPost, path: "/api/v1/read"}, outs[0], outs[1])
	}

	// Remote-read requests as a sender builds them, and wrong: several
	// queries in one, a regular expression that does not compile, no
	// matchers, an end before the start, bytes that are not a request.
	last := 199 * diffStep
	rq := func(start, end time.Duration, ms ...*prompb.LabelMatcher) *prompb.Query {
		return &prompb.Query{StartTimestampMs: base.Add(start).UnixMilli(), EndTimestampMs: base.Add(end).UnixMilli(), Matchers: ms}
	}
	m := func(typ prompb.LabelMatcher_Type, name, value string) *prompb.LabelMatcher {
		return &prompb.LabelMatcher{Type: typ, Name: name, Value: value}
	}
	for _, rr := range []struct {
		name, expect string
		body         []byte
	}{
		{"two queries", "", readBody(t, rq(0, last, m(prompb.LabelMatcher_EQ, "__name__", "diff_dup")), rq(10*diffStep, 20*diffStep, m(prompb.LabelMatcher_NEQ, "path", "")))},
		{"not-equal only", "", readBody(t, rq(0, last, m(prompb.LabelMatcher_NEQ, "job", "api"), m(prompb.LabelMatcher_EQ, "__name__", "diff_dup")))},
		// omen: 400, the client's mistake; 2.42: 500, which a client retries.
		{"bad regexp", extra, readBody(t, rq(0, last, m(prompb.LabelMatcher_RE, "__name__", "diff_(")))},
		{"no matchers", "", readBody(t, rq(0, last))},
		{"end before start", "", readBody(t, rq(last, 0, m(prompb.LabelMatcher_EQ, "__name__", "diff_dup")))},
		{"not a request", "", snappy.Encode(nil, []byte("not a protobuf"))},
		{"not snappy", "", []byte("not snappy")},
	} {
		var as [2]diffAnswer
		for i, p := range []*proc{prom, omen} {
			as[i] = postRead(t, p.URL, rr.body)
		}
		compare(diffRequest{name: "remote read " + rr.name, method: http.MethodPost, path: "/api/v1/read", expect: rr.expect}, as[0], as[1])
	}

	// Remote-write requests' framing, as senders other than Prometheus
	// get it wrong or leave it out. The request holds one sample at the
	// corpus's end, which both store.
	good, err := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "diff_edge_framing"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: base.Add(199 * diffStep).UnixMilli()}},
	}}})
	require.NoError(t, err)
	for _, f := range []struct {
		name, method, ctype, enc, version string
		body                              []byte
	}{
		{"as Prometheus 2.42 sends it", http.MethodPost, "application/x-protobuf", "snappy", "0.1.0", snappy.Encode(nil, good)},
		{"no headers", http.MethodPost, "", "", "", snappy.Encode(nil, good)},
		{"no version", http.MethodPost, "application/x-protobuf", "snappy", "", snappy.Encode(nil, good)},
		{"1.0 content type", http.MethodPost, "application/x-protobuf;proto=prometheus.WriteRequest", "snappy", "", snappy.Encode(nil, good)},
		{"not snappy", http.MethodPost, "application/x-protobuf", "snappy", "0.1.0", good},
		{"not protobuf", http.MethodPost, "application/x-protobuf", "snappy", "0.1.0", snappy.Encode(nil, []byte("{\"x\":1}"))},
		{"empty", http.MethodPost, "application/x-protobuf", "snappy", "0.1.0", nil},
		{"GET", http.MethodGet, "", "", "", nil},
	} {
		var as [2]diffAnswer
		for i, p := range []*proc{prom, omen} {
			req, err := http.NewRequest(f.method, p.URL+"/api/v1/write", bytes.NewReader(f.body))
			require.NoError(t, err)
			for k, v := range map[string]string{"Content-Type": f.ctype, "Content-Encoding": f.enc, "X-Prometheus-Remote-Write-Version": f.version} {
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			resp, err := diffClient.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			as[i] = diffAnswer{Code: resp.StatusCode}
		}
		compare(diffRequest{name: "write framing " + f.name, method: f.method, path: "/api/v1/write"}, as[0], as[1])
	}

	// The writes' edges last: a series one server refuses changes what
	// the other requests see.
	for _, e := range diffWriteEdges(base) {
		var as [2]diffAnswer
		for i, p := range []*proc{prom, omen} {
			code, _ := remoteWriteV1(t, p.URL, e.req)
			as[i] = diffAnswer{Code: code}
		}
		// omen refuses with a 400 what its README lists ("What omen
		// answers a sender"); 2.42 stores it, or answers 500 to a label
		// name twice, which the sender retries for ever.
		why := map[string]string{"duplicate name": extra, "no name": extra, "1h ahead": extra}[e.name]
		compare(diffRequest{name: "write " + e.name, method: http.MethodPost, path: "/api/v1/write", expect: why}, as[0], as[1])
	}

	var kindNames []string
	for n := range kinds {
		kindNames = append(kindNames, n)
	}
	sort.Strings(kindNames)
	t.Logf("%-40s %6s %9s %6s", "request kind", "same", "expected", "found")
	for _, n := range kindNames {
		k := kinds[n]
		t.Logf("%-40s %6d %9d %6d", n, k.same, k.expected, k.found)
	}
	for why, n := range reasons {
		t.Logf("expected %4d: %s", n, why)
	}
	for _, f := range found {
		t.Log(f)
	}
	require.Empty(t, found, "answers that differ from Prometheus 2.42's for no documented reason")
}

// leftOpenQuery returns q with every range and subquery range 1 ms
// shorter: in Prometheus 2.42 it selects the samples q selects in
// Prometheus 3, whose ranges leave out their start.
func leftOpenQuery(q string) string {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return q // an error either way
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch x := n.(type) {
		case *parser.MatrixSelector:
			x.Range -= time.Millisecond
		case *parser.SubqueryExpr:
			x.Range -= time.Millisecond
		}
		return nil
	})
	return expr.String()
}

// upstream returns why the two answers differ if it is a change of
// Prometheus 3 over 2.42 that a 2.42 client takes in its stride, after
// undoing it in both; "" if they still differ.
func upstream(r diffRequest, pa, oa *diffAnswer) string {
	var why []string
	same := func() bool {
		pj, _ := json.Marshal(pa)
		oj, _ := json.Marshal(oa)
		return bytes.Equal(pj, oj)
	}
	pm, _ := pa.Body.(map[string]any)
	om, _ := oa.Body.(map[string]any)
	if pm == nil || om == nil {
		return ""
	}
	if pe, oe := pm["error"], om["error"]; pe != nil && oe != nil {
		om["error"], pm["error"] = upstreamError(oe.(string)), upstreamError(pe.(string))
		if why = append(why, "Prometheus 3's error wording"); same() {
			return strings.Join(why, "; ")
		}
	}
	for _, k := range []string{"warnings", "infos"} {
		if _, ok := pm[k]; !ok && om[k] != nil {
			delete(om, k)
			if why = append(why, "Prometheus 3's PromQL annotations ("+k+")"); same() {
				return strings.Join(why, "; ")
			}
		}
	}
	if d, ok := om["data"].(map[string]any); ok {
		if st, ok := d["stats"].(map[string]any); ok {
			if smp, ok := st["samples"].(map[string]any); ok {
				delete(smp, "samplesRead")
				delete(smp, "seriesTouched")
				if why = append(why, "Prometheus 3's stats fields"); same() {
					return strings.Join(why, "; ")
				}
			}
		}
	}
	if r.path == "/api/v1/series" {
		// One match[] is selected unsorted since Prometheus 2.50.
		if pd, ok := pm["data"].([]any); ok {
			if od, ok := om["data"].([]any); ok {
				sortResult(pd)
				sortResult(od)
				if why = append(why, "Prometheus 3 does not sort /api/v1/series for one match[]"); same() {
					return strings.Join(why, "; ")
				}
			}
		}
	}
	if floatsClose(pa.Body, oa.Body, 1e-12) {
		return strings.Join(append(why, "Prometheus 3's float summation (Kahan) rounds otherwise, within 1e-12"), "; ")
	}
	if r.tol > 0 && floatsClose(pa.Body, oa.Body, r.tol) {
		return strings.Join(append(why, "extrapolation over a range 1 ms shorter"), "; ")
	}
	return ""
}

var (
	dupSeriesRe = regexp.MustCompile(`(hand-side of the operation: )\[(.*)\];`)
	bareQueryRe = regexp.MustCompile(`^invalid parameter "query": `)
)

// upstreamError words a 2.42 or 3 error message alike.
func upstreamError(e string) string {
	e = bareQueryRe.ReplaceAllString(e, "")
	e = strings.ReplaceAll(e, "Invalid time value", "invalid time value")
	e = strings.ReplaceAll(e, "unknown position: parse error", "1:1: parse error")
	// The series of a many-to-many error come in selection order.
	return dupSeriesRe.ReplaceAllStringFunc(e, func(m string) string {
		sub := dupSeriesRe.FindStringSubmatch(m)
		parts := strings.Split(sub[2], "}, {")
		for i := range parts {
			parts[i] = strings.Trim(parts[i], "{}")
		}
		sort.Strings(parts)
		return sub[1] + "[{" + strings.Join(parts, "}, {") + "}];"
	})
}

// floatsClose reports whether a and b are the same JSON but for sample
// values within a relative tol of each other.
func floatsClose(a, b any, tol float64) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !floatsClose(v, y[k], tol) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !floatsClose(x[i], y[i], tol) {
				return false
			}
		}
		return true
	case string:
		y, ok := b.(string)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, err1 := strconv.ParseFloat(x, 64)
		fy, err2 := strconv.ParseFloat(y, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		return math.Abs(fx-fy) <= tol*math.Max(math.Abs(fx), math.Abs(fy))
	}
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	return bytes.Equal(aj, bj)
}

// diffRemoteRead reads q from base with the real remote-read client and
// returns the series as text, one line a series with its samples.
func diffRemoteRead(t testing.TB, base string, q *prompb.Query, rt prompb.ReadRequest_ResponseType) diffAnswer {
	t.Helper()
	u, err := url.Parse(base + "/api/v1/read")
	require.NoError(t, err)
	c, err := remote.NewReadClient("diff", &remote.ClientConfig{
		URL: &config_util.URL{URL: u}, Timeout: model.Duration(10 * time.Second),
		ChunkedReadLimit: 1 << 24, AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{rt},
	})
	require.NoError(t, err)
	ss, err := c.Read(context.Background(), q, true)
	if err != nil {
		return diffAnswer{Code: 1, Body: err.Error()}
	}
	var lines []string
	for ss.Next() {
		var b strings.Builder
		b.WriteString(ss.At().Labels().String())
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			// The bits, so NaN and StaleNaN compare.
			fmt.Fprintf(&b, " %d:%x", ts, math.Float64bits(v))
		}
		lines = append(lines, b.String())
	}
	if err := ss.Err(); err != nil {
		return diffAnswer{Code: 2, Body: err.Error()}
	}
	return diffAnswer{Body: lines}
}

// readBody is a remote-read request of qs, SAMPLES, snappy-encoded.
func readBody(t testing.TB, qs ...*prompb.Query) []byte {
	t.Helper()
	raw, err := proto.Marshal(&prompb.ReadRequest{Queries: qs, AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{prompb.ReadRequest_SAMPLES}})
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

// postRead posts a remote-read body and returns the status code and,
// for a 200, each query's series as text.
func postRead(t testing.TB, base string, body []byte) diffAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/read", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Read-Version", "0.1.0")
	resp, err := diffClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := diffAnswer{Code: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		return a
	}
	dec, err := snappy.Decode(nil, raw)
	require.NoError(t, err)
	var rr prompb.ReadResponse
	require.NoError(t, proto.Unmarshal(dec, &rr))
	var queries [][]string
	for _, qr := range rr.Results {
		var lines []string
		for _, ts := range qr.Timeseries {
			var b strings.Builder
			for _, l := range ts.Labels {
				fmt.Fprintf(&b, "%s=%q,", l.Name, l.Value)
			}
			for _, smp := range ts.Samples {
				fmt.Fprintf(&b, " %d:%x", smp.Timestamp, math.Float64bits(smp.Value))
			}
			lines = append(lines, b.String())
		}
		// Prometheus 3 selects a SAMPLES answer's series unsorted (2.42
		// sorted them); its read client sorts them when asked to.
		sort.Strings(lines)
		queries = append(queries, lines)
	}
	a.Body = queries
	return a
}

func clip(b []byte) string {
	if len(b) > 1500 {
		return string(b[:1500]) + "…"
	}
	return string(b)
}

// startOmenAt starts omen on port with fresh storage, storing none of its
// own outputs so that the two servers hold the same series.
func startOmenAt(t testing.TB, port int) *proc {
	t.Helper()
	p := start(t, "omen", port, omenBinary(t), "serve", "--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--storage.tsdb.path="+t.TempDir(), "--output.tsdb-families=")
	p.WaitReady(60 * time.Second)
	return p
}
