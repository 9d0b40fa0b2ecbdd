package pipeline

import (
	"bytes"
	"flag"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/stretchr/testify/require"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of the tests that have them")

// TestWriteOutputsGolden pins the text WriteOutputs writes for a varied
// set of series, byte for byte but for the order of the samples within a
// family, which follows the workers' maps and so varies from scrape to
// scrape: escaped label values, UTF-8 label names (escaped, and
// value-encoded where escaping would clash), inputs lacking job or
// instance, labels that clash with for, kind and horizon, a counter,
// forecasters with their horizons, an incident, a warming series, a stale
// one (absent), and NaN, ±Inf, negative zero and values of every
// magnitude. The golden file was written by WriteOutputs before it was
// reworked to write each series' labels without building its label set
// for every family (go test -run TestWriteOutputsGolden -update ./pipeline
// rewrites it).
func TestWriteOutputsGolden(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.ForecastMaxSeries = 100 })
	ins := []labels.Labels{
		labels.FromStrings("__name__", "temperature", "room", `a "quoted"\ value`+"\nnext", "job", "web", "instance", "h:1"),
		labels.FromStrings("__name__", "load", "service.name", "api"),
		labels.FromStrings("__name__", "dup", "service.name", "a", "service_name", "b", "job", "j"),
		labels.FromStrings("__name__", "x", "kind", "db", "horizon", "h", "for", "f", "instance", "i"),
		labels.FromStrings("__name__", "x", "exported_kind", "db2", "3d.ok", "é"),
		labels.FromStrings("__name__", "gone", "job", "a"),
		labels.FromStrings("__name__", "grüße", "wert", "ünï\\"),
	}
	counter := labels.FromStrings("__name__", "requests_total", "job", "x")
	fresh := labels.FromStrings("__name__", "fresh", "instance", "z")
	const n = 800 // the forecasters are ready from the 384th sample
	vals := make([][]float64, len(ins))
	for i := range ins {
		vals[i] = seasonal(n, uint64(40+i))
	}
	vals[0][n-1] += 1000 // temperature ends in an incident
	ts := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	total := 0.0
	for i := range n {
		vs := make([]float64, len(ins))
		for j := range ins {
			vs[j] = vals[j][i]
		}
		if i == n-1 {
			vs[5] = math.Float64frombits(value.StaleNaN) // gone goes
		}
		e.push(ts(i), model.MetricTypeGauge, ins, vs)
		if i == 0 || i == n-2 {
			// A new input waits for the workers: its head ref sets its
			// forecaster's refit phase (refitPhase), and it came after
			// the outputs the workers were appending meanwhile, or
			// before: requests_total was ref 8, 12 or 15 by how far the
			// workers had got, and its forecast bands differed
			// (1 golden run in 15 under load).
			e.sync()
		}
		total += 10 + vals[1][i]/10
		e.push(ts(i), model.MetricTypeCounter, []labels.Labels{counter}, []float64{total})
		if i >= n-2 {
			if i == n-2 {
				e.sync()
			}
			e.push(ts(i), model.MetricTypeGauge, []labels.Labels{fresh}, []float64{float64(i)})
		}
		if i%256 == 255 {
			e.sync()
		}
	}
	e.sync()

	// Values no input gives in a few samples: set on the published state.
	for _, w := range e.p.workers {
		w.mu.Lock()
		for _, s := range w.series {
			switch s.name {
			case "load":
				s.pub.score, s.pub.yhat, s.pub.lower, s.pub.upper = 1.5e-7, -1e21, math.NaN(), math.Inf(1)
			case "dup":
				s.pub.score, s.pub.yhat, s.pub.lower, s.pub.upper = 123456789.125, 0.1+0.2, math.Copysign(0, -1), 5e-324
				if s.fc != nil && len(s.fc.pts) > 0 {
					s.fc.pts[0].Yhat, s.fc.pts[0].Lower, s.fc.pts[0].Upper = math.NaN(), math.Inf(-1), math.MaxFloat64
				}
			}
		}
		w.mu.Unlock()
	}

	var buf bytes.Buffer
	require.NoError(t, e.p.WriteOutputs(&buf))
	got := canonicalExposition(t, buf.String())
	for _, want := range []string{"\nforecast{", "\nomen_incident_peak_score{", `kind="counter"`, `fresh`, "U__", "NaN", "+Inf", "-Inf"} {
		require.Contains(t, got, want, "the golden case covers it")
	}
	require.NotContains(t, got, `for="gone"`)

	const path = "testdata/writeoutputs.golden"
	if *updateGolden {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got)
}

// canonicalExposition returns the text exposition out with the samples of
// each family sorted, after checking that each family's lines are
// contiguous, as the text format requires, under its HELP and TYPE lines.
func canonicalExposition(t *testing.T, out string) string {
	t.Helper()
	require.True(t, strings.HasSuffix(out, "\n"))
	var b strings.Builder
	var samples []string
	seen := map[string]bool{}
	flush := func() {
		slices.Sort(samples)
		for _, s := range samples {
			b.WriteString(s)
			b.WriteByte('\n')
		}
		samples = samples[:0]
	}
	family := ""
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if name, ok := strings.CutPrefix(l, "# HELP "); ok {
			flush()
			family, _, _ = strings.Cut(name, " ")
			require.False(t, seen[family], "%s written in two places", family)
			seen[family] = true
			b.WriteString(l + "\n")
			continue
		}
		if strings.HasPrefix(l, "# TYPE ") {
			require.Equal(t, "# TYPE "+family+" gauge", l)
			b.WriteString(l + "\n")
			continue
		}
		require.True(t, strings.HasPrefix(l, family+"{") || strings.HasPrefix(l, family+" "), "%q outside its family %s", l, family)
		samples = append(samples, l)
	}
	flush()
	return b.String()
}
