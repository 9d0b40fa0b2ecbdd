package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
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

// TestReferencedMetricsAreDefined checks each omen series the dashboards and
// rules may name is defined in omen's code, so a renamed metric fails here
// instead of leaving an empty panel or an alert that never fires.
func TestReferencedMetricsAreDefined(t *testing.T) {
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
	code := src.String()
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
