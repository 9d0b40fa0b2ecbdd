package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
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
