package rules

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/template"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// update rewrites testdata/omen.rules.yml: go test ./rules -run TestGolden -update
var update = flag.Bool("update", false, "rewrite the golden rule file from testdata/omen.yml")

// tool returns the path of an external program. Under OMEN_E2E=1 (make test)
// a missing tool fails the test, as the Makefile is meant to install it;
// elsewhere the test is skipped.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("OMEN_E2E") == "1" {
			t.Fatalf("%s not found but OMEN_E2E=1: run make deps-e2e", name)
		}
		t.Skipf("%s not installed (Debian package prometheus); make test installs it", name)
	}
	return p
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
}

// TestGolden keeps testdata/omen.rules.yml, which the promtool unit tests
// load, equal to what omen generates today.
func TestGolden(t *testing.T) {
	cfg, err := config.LoadFile("testdata/omen.yml")
	require.NoError(t, err)
	got, err := Render(cfg)
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile("testdata/omen.rules.yml", got, 0o644))
	}
	want, err := os.ReadFile("testdata/omen.rules.yml")
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "generated rules changed: review, then go test ./rules -run TestGolden -update")
}

// TestPromtoolCheck runs `promtool check rules` on the rules generated from
// several configurations.
func TestPromtoolCheck(t *testing.T) {
	promtool := tool(t, "promtool")
	for _, tc := range []struct{ name, yaml string }{
		{"default", ""},
		{"testdata", mustRead(t, "testdata/omen.yml")},
		{"custom group and tiers", `
alerting:
  warning: {score: 1.5, for: 10m}
  critical: {score: 4, for: 30m}
  group_by: [cluster, namespace, service]
  capacity:
    - {name: QueueFull, for: queue_depth, limit: 1e6, horizon: 1h}
defaults:
  forecast_horizons: [10m, 1h, 6h]
`},
		// The capacity alerts the documentation shows.
		{"docs/reference.md capacity alerts", capacityExample(t)},
		{"deploy/kubernetes/base/omen.yml commented", uncommented(t, "../deploy/kubernetes/base/omen.yml", "# alerting:\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]byte(tc.yaml))
			require.NoError(t, err)
			if strings.Contains(tc.yaml, "capacity:") {
				require.NotEmpty(t, cfg.Alerting.Capacity)
			}
			b, err := Render(cfg)
			require.NoError(t, err)
			f := filepath.Join(t.TempDir(), "omen.rules.yml")
			require.NoError(t, os.WriteFile(f, b, 0o644))
			run(t, "", promtool, "check", "rules", f)
		})
	}
}

// TestPromtoolUnit runs the promtool unit tests in testdata: each alert
// fires on the input it should, with the annotations it should, and stays
// silent on normal input.
func TestPromtoolUnit(t *testing.T) {
	promtool := tool(t, "promtool")
	tests, err := filepath.Glob("testdata/*.test.yml")
	require.NoError(t, err)
	require.Len(t, tests, 3)
	for _, f := range tests {
		t.Run(filepath.Base(f), func(t *testing.T) {
			run(t, "testdata", promtool, "test", "rules", filepath.Base(f))
		})
	}
}

// capacityExample returns the YAML block of docs/reference.md's Capacity
// alerts section.
func capacityExample(t *testing.T) string {
	t.Helper()
	_, sec, ok := strings.Cut(mustRead(t, "../docs/reference.md"), "\n### Capacity alerts\n")
	require.True(t, ok, "docs/reference.md has a Capacity alerts section")
	_, block, ok := strings.Cut(sec, "```yaml\n")
	require.True(t, ok, "the section has a YAML example")
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	return block
}

// uncommented returns the commented-out lines of path from the one that
// is from on, without their "# ".
func uncommented(t *testing.T, path, from string) string {
	t.Helper()
	_, rest, ok := strings.Cut(mustRead(t, path), from)
	require.True(t, ok, "%s has %q", path, from)
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(from, "# "))
	for l := range strings.Lines(rest) {
		if !strings.HasPrefix(l, "# ") {
			break
		}
		b.WriteString(strings.TrimPrefix(l, "# "))
	}
	return b.String()
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// find returns the rule named name (alert or record) in rg.
func find(rg rulefmt.RuleGroups, name string) (rulefmt.Rule, bool) {
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			if r.Alert == name || r.Record == name {
				return r, true
			}
		}
	}
	return rulefmt.Rule{}, false
}

func TestGenerateFollowsConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		rule       string
		expr, for_ string
	}{
		// The tiers' for is the incident's duration, in the expression: the
		// gauges exist only during an incident, so the alerts need no for.
		{"default warning", "", AlertSeriesAnomalous, `label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(omen_incident_peak_score > 1 and omen_incident_duration_seconds >= 300, "exported_exported_exported_severity", "$1", "exported_exported_severity", "(.*)"), "exported_exported_severity", "$1", "exported_severity", "(.*)"), "exported_severity", "$1", "severity", "(.*)"), "exported_exported_exported_omen_alert", "$1", "exported_exported_omen_alert", "(.*)"), "exported_exported_omen_alert", "$1", "exported_omen_alert", "(.*)"), "exported_omen_alert", "$1", "omen_alert", "(.*)"), "exported_exported_exported_alertname", "$1", "exported_exported_alertname", "(.*)"), "exported_exported_alertname", "$1", "exported_alertname", "(.*)"), "exported_alertname", "$1", "alertname", "(.*)")`, "0s"},
		{"default critical", "", AlertAnomalyCritical, "max by (namespace, job) (omen_incident_peak_score > 2 and omen_incident_duration_seconds >= 300)", "0s"},
		{"tiers", "alerting: {warning: {score: 1.5, for: 2m}, critical: {score: 6, for: 1h}}", AlertAnomalyCritical, "max by (namespace, job) (omen_incident_peak_score > 6 and omen_incident_duration_seconds >= 3600)", "0s"},
		{"warning at once", "alerting: {warning: {score: 2, for: 0s}}", AlertSeriesAnomalous, `label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(omen_incident_peak_score > 2, "exported_exported_exported_severity", "$1", "exported_exported_severity", "(.*)"), "exported_exported_severity", "$1", "exported_severity", "(.*)"), "exported_severity", "$1", "severity", "(.*)"), "exported_exported_exported_omen_alert", "$1", "exported_exported_omen_alert", "(.*)"), "exported_exported_omen_alert", "$1", "exported_omen_alert", "(.*)"), "exported_omen_alert", "$1", "omen_alert", "(.*)"), "exported_exported_exported_alertname", "$1", "exported_exported_alertname", "(.*)"), "exported_exported_alertname", "$1", "exported_alertname", "(.*)"), "exported_alertname", "$1", "alertname", "(.*)")`, "0s"},
		{"group_by", "alerting: {group_by: [cluster]}", "cluster:omen_anomalous_series:count", "count by (cluster) (omen_incident_peak_score > 1)", "0s"},
		{"grouped by severity", "alerting: {group_by: [namespace, severity]}", AlertAnomalyCritical, `label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(max by (namespace, severity) (omen_incident_peak_score > 2 and omen_incident_duration_seconds >= 300), "exported_exported_exported_severity", "$1", "exported_exported_severity", "(.*)"), "exported_exported_severity", "$1", "exported_severity", "(.*)"), "exported_severity", "$1", "severity", "(.*)"), "exported_exported_exported_omen_alert", "$1", "exported_exported_omen_alert", "(.*)"), "exported_exported_omen_alert", "$1", "exported_omen_alert", "(.*)"), "exported_omen_alert", "$1", "omen_alert", "(.*)"), "exported_exported_exported_alertname", "$1", "exported_exported_alertname", "(.*)"), "exported_exported_alertname", "$1", "exported_alertname", "(.*)"), "exported_alertname", "$1", "alertname", "(.*)")`, "0s"},
		// alertname too: Prometheus sets it on every alert, over the group's.
		{"grouped by alertname", "alerting: {group_by: [alertname]}", AlertAnomalyCritical, `label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(max by (alertname) (omen_incident_peak_score > 2 and omen_incident_duration_seconds >= 300), "exported_exported_exported_severity", "$1", "exported_exported_severity", "(.*)"), "exported_exported_severity", "$1", "exported_severity", "(.*)"), "exported_severity", "$1", "severity", "(.*)"), "exported_exported_exported_omen_alert", "$1", "exported_exported_omen_alert", "(.*)"), "exported_exported_omen_alert", "$1", "exported_omen_alert", "(.*)"), "exported_omen_alert", "$1", "omen_alert", "(.*)"), "exported_exported_exported_alertname", "$1", "exported_exported_alertname", "(.*)"), "exported_exported_alertname", "$1", "exported_alertname", "(.*)"), "exported_alertname", "$1", "alertname", "(.*)")`, "0s"},
		{"per label record", "", "namespace:omen_anomalous_series:count", "count by (namespace) (omen_incident_peak_score > 1)", "0s"},
		{
			"capacity horizons up to the limit", `
defaults: {forecast_horizons: [5m, 1h, 2h]}
overrides: [{match: '{job="db"}', forecast_horizons: [30m]}]
alerting: {capacity: [{name: Full, for: disk, limit: 10, horizon: 1h, resolve_margin: 0}]}`,
			"Full", `label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(max without (horizon) (forecast_upper{for="disk", horizon=~"5m|30m|1h"}) >= 10, "exported_exported_exported_severity", "$1", "exported_exported_severity", "(.*)"), "exported_exported_severity", "$1", "exported_severity", "(.*)"), "exported_severity", "$1", "severity", "(.*)"), "exported_exported_exported_omen_alert", "$1", "exported_exported_omen_alert", "(.*)"), "exported_exported_omen_alert", "$1", "exported_omen_alert", "(.*)"), "exported_omen_alert", "$1", "omen_alert", "(.*)"), "exported_exported_exported_alertname", "$1", "exported_exported_alertname", "(.*)"), "exported_exported_alertname", "$1", "exported_alertname", "(.*)"), "exported_alertname", "$1", "alertname", "(.*)")`, "5m",
		},
		{
			// A derived input's horizons are its own: a capacity alert on
			// it at 2h selects its 2h forecasts, not the defaults' 5m to
			// 30m, which it has none at.
			"capacity on a derived input's horizons", `
derived: [{name: web_rps, expr: 'sum(rate(http_requests_total[5m]))', forecast_horizons: [2h]}]
alerting: {capacity: [{name: WebBusy, for: web_rps, limit: 100, horizon: 2h, resolve_margin: 0}]}`,
			"WebBusy", `label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(max without (horizon) (forecast_upper{for="web_rps", horizon=~"2h"}) >= 100, "exported_exported_exported_severity", "$1", "exported_exported_severity", "(.*)"), "exported_exported_severity", "$1", "exported_severity", "(.*)"), "exported_severity", "$1", "severity", "(.*)"), "exported_exported_exported_omen_alert", "$1", "exported_exported_omen_alert", "(.*)"), "exported_exported_omen_alert", "$1", "exported_omen_alert", "(.*)"), "exported_omen_alert", "$1", "omen_alert", "(.*)"), "exported_exported_exported_alertname", "$1", "exported_exported_alertname", "(.*)"), "exported_exported_alertname", "$1", "exported_alertname", "(.*)"), "exported_alertname", "$1", "alertname", "(.*)")`, "5m",
		},
		{
			"capacity match", `alerting: {capacity: [{name: Full, for: disk, match: '{dev=~"sd.+"}', limit: 0.5, resolve_margin: 0}]}`,
			"Full", `label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(label_replace(max without (horizon) (forecast_upper{for="disk", horizon=~"5m|15m|30m", dev=~"sd.+"}) >= 0.5, "exported_exported_exported_severity", "$1", "exported_exported_severity", "(.*)"), "exported_exported_severity", "$1", "exported_severity", "(.*)"), "exported_severity", "$1", "severity", "(.*)"), "exported_exported_exported_omen_alert", "$1", "exported_exported_omen_alert", "(.*)"), "exported_exported_omen_alert", "$1", "exported_omen_alert", "(.*)"), "exported_omen_alert", "$1", "omen_alert", "(.*)"), "exported_exported_exported_alertname", "$1", "exported_exported_alertname", "(.*)"), "exported_exported_alertname", "$1", "exported_alertname", "(.*)"), "exported_alertname", "$1", "alertname", "(.*)")`, "5m",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]byte(tc.yaml))
			require.NoError(t, err)
			rg, err := Generate(cfg)
			require.NoError(t, err)
			r, ok := find(rg, tc.rule)
			require.True(t, ok, "rule %s not generated", tc.rule)
			require.Equal(t, tc.expr, r.Expr)
			require.Equal(t, tc.for_, r.For.String())
		})
	}
}

// TestCapacityHysteresis: with a resolve margin, a capacity alert fires
// on its limit and, once firing (its own ALERTS series), holds on the
// limit moved by the margin: towards the bound's side of it, a fraction
// of its magnitude or a number. promtool runs the rules in
// testdata/capacity.test.yml.
func TestCapacityHysteresis(t *testing.T) {
	for _, tc := range []struct{ name, capacity, fire, hold string }{
		{"a ceiling, 5% by default", `{name: C, for: x, limit: 200}`, `) >= 200,`, `) >= 190,`},
		{"a negative ceiling", `{name: C, for: x, limit: -200, resolve_margin: 10%}`, `) >= -200,`, `) >= -220,`},
		{"a floor, a number", `{name: C, for: x, direction: down, limit: 0, resolve_margin: 1e9}`, `) <= 0,`, `) <= 1000000000,`},
		// A percentage of 0 is no margin: the rule is the plain one.
		{"a floor, 5% of 0", `{name: C, for: x, direction: down, limit: 0}`, `) <= 0,`, ""},
		{"a series on labels", `{name: C, for: x, limit_expr: 'lim', on: [pod], resolve_margin: 10%}`,
			`>= on (pod) group_left () min by (pod) (lim),`, `>= on (pod) group_left () (min by (pod) (lim) - abs(min by (pod) (lim)) * 0.1),`},
		{"a floor that is a series, a number", `{name: C, for: x, direction: down, limit_expr: '0.1 * size', resolve_margin: 2.5}`,
			// (each through the label_replace calls of exportLabels)
			`(0.1 * size),`, `((0.1 * size) + 2.5),`},
		{"off", `{name: C, for: x, limit: 200, resolve_margin: 0}`, `) >= 200,`, ""},
		{"off as a percentage", `{name: C, for: x, limit: 200, resolve_margin: 0%}`, `) >= 200,`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]byte("alerting: {capacity: [" + tc.capacity + "]}"))
			require.NoError(t, err)
			rg, err := Generate(cfg)
			require.NoError(t, err)
			r, ok := find(rg, "C")
			require.True(t, ok)
			fire, hold, held := strings.Cut(r.Expr, " or (")
			require.Contains(t, fire, tc.fire)
			if tc.hold == "" {
				require.False(t, held, "no hold without a margin: %s", r.Expr)
				require.NotContains(t, r.Expr, "ALERTS")
				return
			}
			require.True(t, held, r.Expr)
			require.Contains(t, hold, tc.hold)
			require.True(t, strings.HasSuffix(hold, `) and ignoring (severity, omen_alert, alertname, alertstate) ALERTS{alertname="C", alertstate="firing"})`), hold)
			// The hold is the fire's rule with its limit moved.
			require.Equal(t, fire, strings.Replace(strings.TrimSuffix(hold, ` and ignoring (severity, omen_alert, alertname, alertstate) ALERTS{alertname="C", alertstate="firing"})`), tc.hold, tc.fire, 1))
		})
	}
}

// TestWarnings: a ceiling of 0 is generated (a series that goes negative
// may rise to 0) but warned of, naming the entry; a floor of 0, a ceiling
// other than 0 and a limit that is a series are not.
func TestWarnings(t *testing.T) {
	for _, tc := range []struct{ name, capacity, want string }{
		{"a ceiling of 0", `{name: Full, for: disk, limit: 0}`,
			`alerting.capacity[1] "Full": limit 0 with direction up fires on every series of disk that never goes negative (omen keeps their forecasts at or above 0); a floor of 0 is direction: down`},
		{"a ceiling of 0, direction given", `{name: Full, for: disk, limit: 0, direction: up}`, `alerting.capacity[1] "Full": limit 0 with direction up`},
		{"a floor of 0", `{name: Empty, for: free, limit: 0, direction: down}`, ""},
		{"a ceiling of -0.5", `{name: Thaw, for: temp, limit: -0.5}`, ""},
		{"a series", `{name: Full, for: disk, limit_expr: size}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]byte("alerting: {capacity: [{name: Other, for: x, limit: 1}, " + tc.capacity + "]}"))
			require.NoError(t, err)
			_, err = Render(cfg)
			require.NoError(t, err, "generated all the same")
			got := Warnings(cfg)
			if tc.want == "" {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			require.Contains(t, got[0], tc.want)
		})
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, tc := range []struct{ name, yaml, err string }{
		{"horizon too short", `alerting: {capacity: [{name: Full, for: disk, limit: 1, horizon: 1m}]}`, "no forecast horizon is within 1m"},
		{"metric name in match", `alerting: {capacity: [{name: Full, for: disk, match: 'disk{a="b"}', limit: 1}]}`, "__name__ is set by the rule"},
		{"horizon in match", `alerting: {capacity: [{name: Full, for: disk, match: '{horizon="5m"}', limit: 1}]}`, "horizon is set by the rule"},
		// A capacity alert named as one of omen's own: Alertmanager's
		// inhibitions (deploy/alertmanager) and the runbooks take it for
		// that one, OmenAnomalyCritical's firing silenced every
		// OmenSeriesAnomalous of its namespace and job.
		{"an anomaly alert's name", `alerting: {capacity: [{name: OmenAnomalyCritical, for: disk, limit: 1}]}`, `alerting.capacity[0] "OmenAnomalyCritical": the name of one of omen's own alerts`},
		{"a health alert's name", `alerting: {capacity: [{name: OmenDown, for: disk, limit: 1}]}`, `alerting.capacity[0] "OmenDown": the name of one of omen's own alerts`},
		// The horizons are the input's: a derived input's own, a scraped
		// input's the defaults' and overrides'. Any input's counted, the
		// rule selected horizons its input has no forecasts at, and never
		// fired.
		{"derived input's horizons beyond", `
derived: [{name: web_rps, expr: 'sum(rate(http_requests_total[5m]))', forecast_horizons: [2h]}]
alerting: {capacity: [{name: WebBusy, for: web_rps, limit: 100, horizon: 30m}]}`, `no forecast horizon is within 30m: web_rps is forecast at [2h]`},
		{"derived input without forecasts", `
derived: [{name: web_rps, expr: 'sum(rate(http_requests_total[5m]))', forecast_horizons: []}]
alerting: {capacity: [{name: WebBusy, for: web_rps, limit: 100}]}`, `no forecast horizon is within 30m: web_rps is forecast at []`},
		{"scraped input, forecasts off", `
defaults: {forecast_horizons: []}
derived: [{name: web_rps, expr: 'sum(rate(http_requests_total[5m]))', forecast_horizons: [5m]}]
alerting: {capacity: [{name: DiskFull, for: disk, limit: 100}]}`, `no forecast horizon is within 30m: disk is forecast at []`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]byte(tc.yaml))
			require.NoError(t, err)
			_, err = Render(cfg)
			require.ErrorContains(t, err, tc.err)
		})
	}
	_, err := Generate(nil)
	require.Error(t, err)
}

// TestEveryAlertHasARunbook checks each generated alert links to a section
// of deploy/runbooks.md that exists, and that docs/deploy.md, which lists
// the shipped alerts, names every one of the shipped rules (capacity
// alerts are the configuration's, named there by their entry).
func TestEveryAlertHasARunbook(t *testing.T) {
	cfg, err := config.Load([]byte(`alerting: {capacity: [{name: Full, for: disk, limit: 1}]}`))
	require.NoError(t, err)
	rg, err := Generate(cfg)
	require.NoError(t, err)
	book := mustRead(t, "../deploy/runbooks.md")
	guide := mustRead(t, "../docs/deploy.md")
	n := 0
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			url := r.Annotations["runbook_url"]
			require.True(t, strings.HasPrefix(url, DefaultRunbookURL), url)
			anchor := strings.TrimPrefix(url, DefaultRunbookURL)
			require.Contains(t, book, `<a id="`+anchor+`"></a>`, "deploy/runbooks.md has no section for %s", r.Alert)
			if g.Name != GroupCapacity {
				require.Contains(t, guide, "`"+r.Alert+"`", "docs/deploy.md does not list %s", r.Alert)
			}
		}
	}
	require.Greater(t, n, 10)
}

// TestRunbookURL: the alert name follows the configured base after a
// separator, added where the base has none.
func TestRunbookURL(t *testing.T) {
	for _, tc := range []struct{ base, want string }{
		{"https://runbooks.example.com/omen", "https://runbooks.example.com/omen/OmenSeriesAnomalous"},
		{"https://runbooks.example.com/omen/", "https://runbooks.example.com/omen/OmenSeriesAnomalous"},
		{"https://wiki.example.com/omen#", "https://wiki.example.com/omen#OmenSeriesAnomalous"},
		{"https://wiki.example.com/run?alert=", "https://wiki.example.com/run?alert=OmenSeriesAnomalous"},
		{"", DefaultRunbookURL + "OmenSeriesAnomalous"},
	} {
		cfg, err := config.Load([]byte("alerting: {runbook_url: '" + tc.base + "'}"))
		require.NoError(t, err)
		rg, err := Generate(cfg)
		require.NoError(t, err)
		r, ok := find(rg, AlertSeriesAnomalous)
		require.True(t, ok)
		require.Equal(t, tc.want, r.Annotations["runbook_url"], "base %q", tc.base)
	}
}

// TestHealthRulesSelectOmensJob: a health alert on a series whose name omen
// shares with Prometheus (up, prometheus_tsdb_*, prometheus_remote_storage_*)
// selects omen's by job, or it fires on the Prometheus evaluating it (its
// own failed compaction, its own remote-write backlog), as docs/deploy.md
// says; omen_* series are omen's whatever their job. The exception is
// OmenRemoteWriteBehind, which reads the sending Prometheus's queue to omen:
// it selects job!="omen" and the queue by remote_name, or it fired on every
// remote_write the Prometheus has.
func TestHealthRulesSelectOmensJob(t *testing.T) {
	rg, err := Generate(config.Default())
	require.NoError(t, err)
	checked := 0
	for _, g := range rg.Groups {
		if g.Name != GroupHealth {
			continue
		}
		for _, r := range g.Rules {
			e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			require.NoError(t, err, r.Alert)
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok || strings.HasPrefix(vs.Name, "omen_") {
					return nil
				}
				checked++
				has := func(name string, typ labels.MatchType, value string) bool {
					return slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
						return m.Name == name && m.Type == typ && (value == "" || m.Value == value)
					})
				}
				if r.Alert == "OmenRemoteWriteBehind" {
					require.True(t, has("job", labels.MatchNotEqual, OmenJob), "%s reads %s without job!=%q", r.Alert, vs, OmenJob)
					if vs.Name != "prometheus_remote_storage_highest_timestamp_in_seconds" { // the queue's series
						require.True(t, has("remote_name", labels.MatchRegexp, ""), "%s reads %s without remote_name", r.Alert, vs)
					}
					return nil
				}
				require.True(t, has("job", labels.MatchEqual, OmenJob), "%s reads %s without job=%q", r.Alert, vs, OmenJob)
				return nil
			})
		}
	}
	require.Greater(t, checked, 3, "health rules on Prometheus-named series")
}

// TestCapacityLimitQuery expands the summary of a capacity alert whose limit
// is a series, with Prometheus's template expander, and checks the query
// it sends for the limit's value: the expression as written (its %, PromQL's
// modulo, and its quotes survive printf and the template's string), joined
// with this alert's forecasts as the rule joins them.
func TestCapacityLimitQuery(t *testing.T) {
	const expr = `max_conn{server=~"pg-.+"} % 1000`
	for _, tc := range []struct {
		name, capacity, want, summary string
	}{
		// The bound 40 below the ceiling 42: within the resolve margin of
		// an alert that holds; without one, the alert's summary does not
		// compare (the rule fires at the limit only).
		{"all labels", `{name: Busy, for: conns, limit_expr: '` + expr + `'}`,
			exportLabels(`(`+expr+`)`, omenLabels) + ` and ignoring (for, horizon) forecast_upper{for="conns",instance="db1",}`,
			"conns is forecast to reach 40 within 30m, back below its limit 42 by less than its resolve margin 5%."},
		{"no margin", `{name: Busy, for: conns, limit_expr: '` + expr + `', resolve_margin: 0}`,
			exportLabels(`(`+expr+`)`, omenLabels) + ` and ignoring (for, horizon) forecast_upper{for="conns",instance="db1",}`,
			"conns is forecast to reach 40 within 30m, at or above its limit 42."},
		{"on labels, a floor", `{name: Idle, for: conns, direction: down, limit_expr: '` + expr + `', on: [instance]}`,
			`max by (instance) (` + expr + `) and on (instance) forecast_lower{for="conns",instance="db1",}`,
			"conns is forecast to fall to 40 within 30m, at or below its limit 42."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]byte("alerting: {capacity: [" + tc.capacity + "]}"))
			require.NoError(t, err)
			rg, err := Generate(cfg)
			require.NoError(t, err)
			r, ok := find(rg, cfg.Alerting.Capacity[0].Name)
			require.True(t, ok)
			var queries []string
			query := func(_ context.Context, q string, _ time.Time) (promql.Vector, error) {
				queries = append(queries, q)
				return promql.Vector{{F: 42}}, nil
			}
			ls := map[string]string{"for": "conns", "instance": "db1"}
			data := template.AlertTemplateData(ls, nil, "", promql.Sample{F: 40})
			// The variables Prometheus's alerting rules define first.
			defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
			got, err := template.NewTemplateExpander(context.Background(), defs+r.Annotations["summary"], "summary", data, 0, query, nil, nil).Expand()
			require.NoError(t, err)
			require.Equal(t, []string{tc.want}, queries)
			require.Equal(t, tc.summary, got)
		})
	}
}
