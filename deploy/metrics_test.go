package deploy

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/freeport"
	"github.com/omen-sidecar/omen/internal/ready"
)

// fromCollectors are produced by client_golang's collectors, not by a
// literal name in omen's code: versioncollector.NewCollector("omen") and the
// Go and process collectors.
var fromCollectors = map[string]bool{
	"omen_build_info": true, "process_resident_memory_bytes": true,
	"go_memstats_heap_inuse_bytes": true, "go_goroutines": true,
}

// omenCode returns the Go source of omen's non-test code outside deploy/
// and rules/, where each metric omen defines is named in a string literal.
func omenCode(t *testing.T) string {
	t.Helper()
	var src strings.Builder
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "deploy", "rules", ".git", "out", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			src.Write(b)
		}
		return nil
	})
	require.NoError(t, err)
	return src.String()
}

// TestReferencedMetricsAreDefined checks each omen series the dashboards and
// rules may name is defined in omen's code, so a renamed metric fails here
// instead of leaving an empty panel or an alert that never fires.
func TestReferencedMetricsAreDefined(t *testing.T) {
	code := omenCode(t)
	for _, m := range append(append([]string{}, omenMetrics...), omenHistograms...) {
		if fromCollectors[m] {
			continue
		}
		require.Contains(t, code, `"`+m+`"`, "no Go code defines the metric %s", m)
	}

	// And the generated rules name only those (or what Prometheus and the
	// embedded TSDB produce, or their own records).
	for _, g := range baseRules(t).Groups {
		for _, r := range g.Rules {
			e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			require.NoError(t, err)
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					require.True(t, knownMetric(t, vs.Name), "rule %s%s names %s", r.Alert, r.Record, vs.Name)
				}
				return nil
			})
		}
	}
}

// docLabels are omen's label names the documentation writes like metrics:
// the scrape's omen_instance and the alerts' routing labels.
var docLabels = map[string]bool{"omen_instance": true, "omen_alert": true, "omen_action": true}

// adapterMetric matches prometheus-adapter's external metrics
// (`as: omen_forecast_15m` in overlays/predictive-scaling-hpa), which the
// adapter serves to the HPA, not omen.
var adapterMetric = regexp.MustCompile(`(?m)^\s*as: (omen_\S+)`)

// TestDocumentedMetricsAreDefined checks each omen_* metric the README,
// docs/reference.md, docs/deploy.md and the runbooks name is defined in
// omen's code, so that a renamed or removed metric does not leave readers
// watching, or alerting on, a series that never comes.
func TestDocumentedMetricsAreDefined(t *testing.T) {
	code := omenCode(t)
	adapter := map[string]bool{}
	for _, m := range adapterMetric.FindAllStringSubmatch(string(read(t, "kubernetes/overlays/predictive-scaling-hpa/prometheus-adapter.yaml")), -1) {
		adapter[m[1]] = true
	}
	require.True(t, adapter["omen_forecast_15m"], "prometheus-adapter.yaml serves omen_forecast_15m")
	name := regexp.MustCompile(`\bomen_[a-z0-9_]*[a-z0-9]\b`)
	for _, doc := range []string{"../README.md", "../docs/reference.md", "../docs/deploy.md", "runbooks.md"} {
		text := string(read(t, doc))
		locs := name.FindAllStringIndex(text, -1)
		require.NotEmpty(t, locs, doc)
		for _, l := range locs {
			m := text[l[0]:l[1]]
			// A recording rule's name (namespace_job:omen_scored_series:count)
			// or a family's prefix (omen_incident_*) is no metric of omen's.
			if docLabels[m] || fromCollectors[m] || adapter[m] || (l[0] > 0 && text[l[0]-1] == ':') ||
				(l[1] < len(text) && (text[l[1]] == ':' || text[l[1]] == '*')) {
				continue
			}
			base := m
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, s); ok && strings.Contains(code, `"`+b+`"`) {
					base = b
				}
			}
			require.True(t, strings.Contains(code, `"`+base+`"`), "%s names the metric %s, which no Go code defines", doc, m)
		}
	}
}

// metricDoc is a row of docs/reference.md's "omen's own metrics" table.
type metricDoc struct {
	typ    string
	labels []string
	// input says the series carry the input's labels besides these.
	input bool
}

// documentedMetrics reads docs/reference.md's table of omen's own metrics:
// `name` | type | labels (`a`, `b`, "the input's") | meaning.
func documentedMetrics(t *testing.T) map[string]metricDoc {
	t.Helper()
	text := string(read(t, "../docs/reference.md"))
	i := strings.Index(text, "\n## omen's own metrics\n")
	require.GreaterOrEqual(t, i, 0, "docs/reference.md has no \"omen's own metrics\"")
	text = text[i+1:]
	if j := strings.Index(text[3:], "\n## "); j >= 0 {
		text = text[:j+3]
	}
	row := regexp.MustCompile("^\\| `(omen_[a-z0-9_]+)` \\| ([a-z]+) \\|([^|]*)\\|")
	label := regexp.MustCompile("`([a-z_]+)`")
	docs := map[string]metricDoc{}
	for _, line := range strings.Split(text, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		_, dup := docs[m[1]]
		require.False(t, dup, "docs/reference.md lists %s twice", m[1])
		d := metricDoc{typ: m[2], input: strings.Contains(m[3], "the input's")}
		for _, l := range label.FindAllStringSubmatch(m[3], -1) {
			d.labels = append(d.labels, l[1])
		}
		docs[m[1]] = d
	}
	require.NotEmpty(t, docs)
	return docs
}

// TestMetricsTableCoversCode checks docs/reference.md's table of omen's own
// metrics against the code both ways: every omen_* name the code defines
// is in it (a new metric cannot go undocumented) and every row names one
// (a renamed one cannot stay in the table).
func TestMetricsTableCoversCode(t *testing.T) {
	code := omenCode(t)
	docs := documentedMetrics(t)
	for name := range docs {
		require.True(t, fromCollectors[name] || strings.Contains(code, `"`+name+`"`), "docs/reference.md lists %s, which no Go code defines", name)
	}
	// Names in string literals that are not metrics: labels, and the
	// forwarding log's prefix for the prometheus module's agent metrics.
	notMetrics := map[string]bool{"omen_forward_": true}
	for name := range docLabels {
		notMetrics[name] = true
	}
	for _, m := range regexp.MustCompile(`"(omen_[a-z0-9_]+)"`).FindAllStringSubmatch(code, -1) {
		if notMetrics[m[1]] {
			continue
		}
		_, ok := docs[m[1]]
		require.True(t, ok, "the code defines %s; docs/reference.md's \"omen's own metrics\" does not list it", m[1])
	}
}

// TestMetricsTableMatchesServe runs omen serve with a derived input and
// forwarding to a sink, writes a few samples to it, and checks each omen_*
// family on its /metrics against docs/reference.md's table: listed, with
// the type and the label names the table gives (the prometheus module's
// omen_forward_prometheus_* aside, which the table names as a prefix).
func TestMetricsTableMatchesServe(t *testing.T) {
	bin := buildOmen(t)
	docs := documentedMetrics(t)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer sink.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "omen.yml")
	write(t, cfg, []byte("derived: [{name: up_sum, expr: 'sum by (job) (up)', interval: 1s}]\n"+
		"remote_write: [{url: '"+sink.URL+"/api/v1/write'}]\n"))

	var base string
	for attempt := 1; ; attempt++ {
		port, err := freeport.Port()
		require.NoError(t, err)
		base = fmt.Sprintf("http://127.0.0.1:%d", port)
		var log bytes.Buffer
		cmd := exec.Command(bin, "serve", fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
			"--storage.tsdb.path="+filepath.Join(dir, "data"), "--config.file="+cfg)
		cmd.Stdout, cmd.Stderr = &log, &log
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		up := false
		require.Eventually(t, func() bool {
			select {
			case <-exited:
				return true
			default:
			}
			up = ready.OK(base)
			return up
		}, 60*time.Second, 50*time.Millisecond, "omen ready")
		if up {
			break
		}
		require.Less(t, attempt, 3, "omen exited:\n%s", log.String())
	}

	now := time.Now().UnixMilli()
	var ts []prompb.TimeSeries
	for _, job := range []string{"a", "b"} {
		ts = append(ts, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: job}},
			Samples: []prompb.Sample{{Timestamp: now - 2000, Value: 1}, {Timestamp: now - 1000, Value: 1}, {Timestamp: now, Value: 1}},
		})
	}
	raw, err := proto.Marshal(&prompb.WriteRequest{Timeseries: ts})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	require.NoError(t, err)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	// Wait for the derived input's evaluation and the scorers' outputs.
	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err = p.TextToMetricFamilies(resp.Body)
		return err == nil && fams["omen_derived_evaluation_last_timestamp_seconds"] != nil && fams["omen_model_ready"] != nil
	}, 60*time.Second, 200*time.Millisecond, "a derived evaluation and scored series on /metrics")

	n := 0
	for name, f := range fams {
		if !strings.HasPrefix(name, "omen_") || strings.HasPrefix(name, "omen_forward_prometheus_") {
			continue
		}
		d, ok := docs[name]
		require.True(t, ok, "/metrics has %s; docs/reference.md's \"omen's own metrics\" does not list it", name)
		require.Equal(t, d.typ, strings.ToLower(f.GetType().String()), "type of %s", name)
		for _, m := range f.GetMetric() {
			got := map[string]bool{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = true
			}
			for _, l := range d.labels {
				require.True(t, got[l], "%s on /metrics has no label %s, which docs/reference.md gives it: %v", name, l, m.GetLabel())
				delete(got, l)
			}
			if !d.input {
				require.Empty(t, got, "%s on /metrics has labels docs/reference.md does not give it", name)
			}
		}
		n++
	}
	require.GreaterOrEqual(t, n, 40, "omen_* families checked")
}
