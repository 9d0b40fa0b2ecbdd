package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load(nil)
	require.NoError(t, err)
	require.Equal(t, "both", c.Defaults.Direction)
	require.Equal(t, 0.0015, c.Defaults.FalseAlarmRate)
	require.Len(t, c.Defaults.ForecastHorizons, 3)
	require.Equal(t, 1.0, c.Alerting.Warning.Score)
	require.True(t, c.Selected(labels.FromStrings("__name__", "up")))
}

// TestLoadEmptyDocuments: a leading or trailing "---" (an empty second
// document) is no second configuration.
func TestLoadEmptyDocuments(t *testing.T) {
	for _, in := range []string{"---\ninclude: ['{job=\"a\"}']\n", "include: ['{job=\"a\"}']\n---\n", "include: ['{job=\"a\"}']\n---\n# nothing\n---\n"} {
		c, err := Load([]byte(in))
		require.NoError(t, err, in)
		require.Len(t, c.Include, 1, in)
	}
}

func TestLoadFull(t *testing.T) {
	c, err := Load([]byte(`
include: ['{job="api"}']
exclude: ['{__name__=~"go_.*"}']
defaults: {false_alarm_rate: 0.01}
overrides:
  - match: '{__name__="errors_total"}'
    direction: up
derived:
  - name: error_ratio
    expr: sum(rate(errors_total[5m])) / sum(rate(requests_total[5m]))
    interval: 1m
alerting:
  capacity:
    - {name: ApiSaturation, for: requests_total, limit: 1000}
`))
	require.NoError(t, err)
	require.True(t, c.Selected(labels.FromStrings("__name__", "x", "job", "api")))
	require.False(t, c.Selected(labels.FromStrings("__name__", "x", "job", "db")))
	require.False(t, c.Selected(labels.FromStrings("__name__", "go_goroutines", "job", "api")))
	s := c.ScoringFor(labels.FromStrings("__name__", "errors_total"))
	require.Equal(t, "up", s.Direction)
	require.Equal(t, 0.01, s.FalseAlarmRate, "overrides inherit defaults")
	require.Equal(t, model.Duration(time.Minute), c.Derived[0].Interval)
	require.Equal(t, model.Duration(30*time.Minute), c.Alerting.Capacity[0].Horizon)
	require.Equal(t, "up", c.Alerting.Capacity[0].Direction, "the default direction")
}

// TestLoadCapacityForms: a capacity's limit is a constant or a series, and
// the forecast rises to it or falls to it.
func TestLoadCapacityForms(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		direction string
		limit     float64
		expr      string
		on        []string
	}{
		{"constant", "{name: Full, for: disk, limit: 100}", "up", 100, "", nil},
		{"a floor of 0", "{name: Empty, for: free, direction: down, limit: 0}", "down", 0, "", nil},
		{"a series, all labels", "{name: Full, for: used, limit_expr: size}", "up", 0, "size", nil},
		{"a series, on labels", "{name: Oom, for: mem, limit_expr: 'lim{resource=\"memory\"}', on: [namespace, pod]}", "up", 0, `lim{resource="memory"}`, []string{"namespace", "pod"}},
		{"a floor that is a series", "{name: Low, for: free, direction: down, limit_expr: '0.1 * size'}", "down", 0, "0.1 * size", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load([]byte("alerting: {capacity: [" + tc.in + "]}"))
			require.NoError(t, err)
			got := c.Alerting.Capacity[0]
			require.Equal(t, tc.direction, got.Direction)
			require.Equal(t, tc.limit, got.Limit)
			require.Equal(t, tc.expr, got.LimitExpr)
			require.Equal(t, tc.on, got.On)
			// The configuration the status API shows loads back the same:
			// a limit_expr's shown without the limit 0 it leaves unset.
			out, err := c.YAML()
			require.NoError(t, err)
			back, err := Load(out)
			require.NoError(t, err, "%s", out)
			back.Alerting.Capacity[0].set, got.set = nil, nil
			require.Equal(t, got, back.Alerting.Capacity[0])
		})
	}
}

// TestCapacityResolveMargin: a capacity alert's resolve margin is a
// percentage of its limit (5% unless given), a number in the limit's unit,
// or 0 for none; the status API's YAML loads back the same.
func TestCapacityResolveMargin(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		shown    string
		margin   float64
		relative bool
		err      string
	}{
		{"default", "", "5%", 0.05, true, ""},
		{"a percentage", "resolve_margin: 10%", "10%", 0.1, true, ""},
		{"a fraction of a percent", "resolve_margin: '0.5%'", "0.5%", 0.005, true, ""},
		{"a number", "resolve_margin: 1e9", "1e9", 1e9, false, ""},
		{"off", "resolve_margin: 0", "0", 0, false, ""},
		{"off as a percentage", "resolve_margin: 0%", "0%", 0, true, ""},
		{"negative", "resolve_margin: -1", "", 0, false, `alerting.capacity[0].resolve_margin "-1": want a finite number, 0 or more`},
		{"the whole limit", "resolve_margin: 100%", "", 0, false, `alerting.capacity[0].resolve_margin "100%": want a percentage below 100`},
		{"not a number", "resolve_margin: 5 percent", "", 0, false, `alerting.capacity[0].resolve_margin "5 percent": want a percentage of the limit (5%) or a number in its unit (1e9)`},
		{"infinite", "resolve_margin: Inf", "", 0, false, `want a finite number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := "alerting: {capacity: [{name: Full, for: disk, limit: 100"
			if tc.in != "" {
				in += ", " + tc.in
			}
			c, err := Load([]byte(in + "}]}"))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			got := &c.Alerting.Capacity[0]
			require.Equal(t, tc.shown, got.ResolveMargin)
			m, rel := got.Margin()
			require.InDelta(t, tc.margin, m, 1e-12)
			require.Equal(t, tc.relative, rel)
			out, err := c.YAML()
			require.NoError(t, err)
			back, err := Load(out)
			require.NoError(t, err, "%s", out)
			require.Equal(t, got.ResolveMargin, back.Alerting.Capacity[0].ResolveMargin)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown field", "inclde: []", "field inclde not found"},
		// The duration's own error named neither the field nor the line.
		{"bad interval", "derived:\n  - {name: a, expr: up}\n  - {name: b, expr: up, interval: 1x}\n", `line 3: derived[1].interval "1x"`},
		{"negative interval", "derived: [{name: a, expr: up, interval: -5s}]", `derived[0].interval "-5s"`},
		{"bad horizon", "defaults: {forecast_horizons: [5m, bogus]}", `defaults.forecast_horizons[1] "bogus"`},
		{"bad tier for", "alerting: {warning: {for: soon}}", `alerting.warning.for "soon"`},
		{"bad capacity horizon", "alerting: {capacity: [{name: Full, for: disk, limit: 1, horizon: 2y3}]}", `alerting.capacity[0].horizon "2y3"`},
		// The second document, typo and all, was ignored.
		{"two documents", "---\ninclude: ['{job=\"a\"}']\n---\nbogus: 1\n", "more than one YAML document"},
		{"bad selector", "include: ['{job=']", "include[0]"},
		{"bad direction", "defaults: {direction: sideways}", "defaults.direction"},
		{"bad rate", "defaults: {false_alarm_rate: 2}", "false_alarm_rate"},
		{"a rate below the floor", "overrides: [{match: '{a=\"b\"}', false_alarm_rate: 1e-20}]", "overrides[0].false_alarm_rate 1e-20: want a value in [1e-09, 0.5)"},
		{"bad expr", "derived: [{name: x, expr: 'sum('}]", "derived[0].expr"},
		{"bad name", "derived: [{name: 'a b', expr: 'up'}]", "derived[0].name"},
		{"dup name", "derived: [{name: a, expr: up}, {name: a, expr: up}]", "used twice"},
		{"tiers", "alerting: {warning: {score: 5}, critical: {score: 2}}", "critical.score"},
		// Bounds at their edges: detect refuses a rate of 0.5, so a
		// reload to it stopped all scoring; a critical tier just below the
		// warning one is refused as a far one is.
		{"rate at the bound", "defaults: {false_alarm_rate: 0.5}", "false_alarm_rate 0.5"},
		{"tiers close", "alerting: {warning: {score: 2}, critical: {score: 1.5}}", "critical.score 1.5 is below warning.score 2"},
		{"negative tier for", "alerting: {warning: {for: -5m}}", "alerting.warning.for"},
		{"capacity", "alerting: {capacity: [{limit: 3}]}", "capacity[0]"},
		// NaN passed the range checks, then every detector refused it: a
		// reload to it stopped all scoring.
		{"NaN rate", "defaults: {false_alarm_rate: .nan}", "false_alarm_rate"},
		{"NaN deviation", "defaults: {min_deviation_abs: .nan}", "min_deviation_abs"},
		{"infinite deviation", "overrides: [{match: '{a=\"b\"}', min_deviation_rel: .inf}]", "overrides[0]"},
		{"explicit zero rate", "defaults: {false_alarm_rate: 0}", "false_alarm_rate 0"},
		{"horizon twice", "defaults: {forecast_horizons: [5m, 5m]}", "5m twice"},
		{"too many horizons", "defaults: {forecast_horizons: [1m, 2m, 3m, 4m, 5m, 6m, 7m, 8m, 9m]}", "at most 8"},
		{"range vector", "derived: [{name: x, expr: 'up[5m]'}]", "want an instant vector or a scalar"},
		{"string", "derived: [{name: x, expr: '\"a\"'}]", "want an instant vector or a scalar"},
		{"at modifier", "derived: [{name: x, expr: 'up @ 100'}]", "derived[0].expr: @ pins"},
		{"at end", "derived: [{name: x, expr: 'sum(up @ end())'}]", "derived[0].expr: @ pins"},
		{"negative offset", "derived: [{name: x, expr: 'rate(up[5m] offset -1m)'}]", "derived[0].expr: offset -1m reads"},
		{"member negative offset", "derived: [{name: g, members: [{name: a, expr: up}, {name: b, expr: 'max_over_time(up[5m:1m] offset -2m)'}]}]", "members[1].expr: offset -2m reads"},
		{"NaN score", "alerting: {warning: {score: .nan}}", "warning.score"},
		{"zero score", "alerting: {warning: {score: 0}}", "warning.score 0"},
		{"group_by twice", "alerting: {group_by: [job, job]}", "twice"},
		{"explicit zero interval", "derived: [{name: a, expr: up, interval: 0s}]", `derived[0].interval 0s: want at least 1s`},
		{"interval under 1s", "derived: [{name: a, expr: up, interval: 999ms}]", `derived[0].interval 999ms: want at least 1s`},
		{"output name", "derived: [{name: yhat, expr: up}]", `derived[0].name "yhat": the name of one of omen's outputs`},
		{"omen name", "derived: [{name: omen_up, expr: up}]", `derived[0].name "omen_up"`},
		{"capacity on a group", "derived: [{name: g, members: [{name: a, expr: up}, {name: b, expr: up}]}]\nalerting: {capacity: [{name: Full, for: g, limit: 1}]}", `alerting.capacity[0].for "g": a multivariate group`},
		{"group and expr", "derived: [{name: g, expr: up, members: [{name: a, expr: up}, {name: b, expr: up}]}]", "both expr and members"},
		{"neither expr nor members", "derived: [{name: g}]", "want expr, or members"},
		// Accepted, they did nothing: a group has no value of its own.
		{"group min deviation", "derived: [{name: g, min_deviation_abs: 5, members: [{name: a, expr: up}, {name: b, expr: up}]}]", "derived[0].min_deviation_abs: not for a group"},
		{"group relative deviation", "derived: [{name: g, min_deviation_rel: 0, members: [{name: a, expr: up}, {name: b, expr: up}]}]", "derived[0].min_deviation_rel: not for a group"},
		{"group horizons", "derived: [{name: g, forecast_horizons: [5m], members: [{name: a, expr: up}, {name: b, expr: up}]}]", "derived[0].forecast_horizons: not for a group"},
		{"group flatline", "derived: [{name: g, flatline: true, members: [{name: a, expr: up}, {name: b, expr: up}]}]", "derived[0].flatline: not for a group"},
		{"by without members", "derived: [{name: g, expr: up, by: [pod]}]", "derived[0].by: only for a group"},
		{"one member", "derived: [{name: g, members: [{name: a, expr: up}]}]", "members: 1; want 2 to 8"},
		{"member twice", "derived: [{name: g, members: [{name: a, expr: up}, {name: a, expr: up}]}]", "members[1].name \"a\": used twice"},
		{"member name", "derived: [{name: g, members: [{name: a, expr: up}, {name: 'b c', expr: up}]}]", "members[1].name"},
		{"member expr", "derived: [{name: g, members: [{name: a, expr: up}, {name: b, expr: 'rate(x[5m]'}]}]", "derived[0].members[1].expr"},
		{"member range vector", "derived: [{name: g, members: [{name: a, expr: up}, {name: b, expr: 'x[5m]'}]}]", "members[1].expr: a range vector"},
		{"by twice", "derived: [{name: g, by: [pod, pod], members: [{name: a, expr: up}, {name: b, expr: up}]}]", "\"pod\" twice"},
		{"by name", "derived: [{name: g, by: [__name__], members: [{name: a, expr: up}, {name: b, expr: up}]}]", "by[0]"},
		{"capacity name", "alerting: {capacity: [{name: 'disk full', for: disk, limit: 1}]}", "capacity[0].name"},
		{"capacity without limit", "alerting: {capacity: [{name: Full, for: disk}]}", "alerting.capacity[0]: limit or limit_expr is required"},
		{"NaN limit", "alerting: {capacity: [{name: Full, for: disk, limit: .nan}]}", "limit NaN"},
		{"capacity direction", "alerting: {capacity: [{name: Full, for: disk, limit: 1, direction: both}]}", `alerting.capacity[0].direction "both": want up (forecast_upper rising to the limit) or down (forecast_lower falling to it)`},
		{"limit and limit_expr", "alerting: {capacity: [{name: Full, for: disk, limit: 1, limit_expr: disk_size}]}", "alerting.capacity[0]: both limit and limit_expr; want one"},
		{"limit 0 and limit_expr", "alerting: {capacity: [{name: Full, for: disk, limit: 0, limit_expr: disk_size}]}", "both limit and limit_expr"},
		{"empty limit_expr", "alerting: {capacity: [{name: Full, for: disk, limit_expr: ''}]}", "alerting.capacity[0].limit_expr: missing; want a PromQL expression"},
		{"bad limit_expr", "alerting: {capacity: [{name: Full, for: disk, limit_expr: 'sum(disk_size'}]}", "alerting.capacity[0].limit_expr: "},
		{"scalar limit_expr", "alerting: {capacity: [{name: Full, for: disk, limit_expr: '1024 * 1024'}]}", "alerting.capacity[0].limit_expr: a scalar; want an instant vector (a constant is limit)"},
		{"range limit_expr", "alerting: {capacity: [{name: Full, for: disk, limit_expr: 'disk_size[5m]'}]}", "alerting.capacity[0].limit_expr: a range vector; want an instant vector"},
		{"on without limit_expr", "alerting: {capacity: [{name: Full, for: disk, limit: 1, on: [pod]}]}", "alerting.capacity[0].on: only with limit_expr"},
		{"on a bad name", "alerting: {capacity: [{name: Full, for: disk, limit_expr: disk_size, on: ['a-b']}]}", `alerting.capacity[0].on[0] "a-b": not a label name`},
		{"on the forecasts' horizon", "alerting: {capacity: [{name: Full, for: disk, limit_expr: disk_size, on: [pod, horizon]}]}", `alerting.capacity[0].on[1] "horizon": a label of the forecasts only`},
		{"on for", "alerting: {capacity: [{name: Full, for: disk, limit_expr: disk_size, on: [for]}]}", `alerting.capacity[0].on[0] "for": a label of the forecasts only`},
		{"on __name__", "alerting: {capacity: [{name: Full, for: disk, limit_expr: disk_size, on: [__name__]}]}", `alerting.capacity[0].on[0] "__name__"`},
		{"on twice", "alerting: {capacity: [{name: Full, for: disk, limit_expr: disk_size, on: [pod, pod]}]}", `alerting.capacity[0].on: "pod" twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.in))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestValidationErrorsLocated: an error found once the file decoded names
// the line of the field at fault, as the decoder's own errors do; it named
// the field's path alone (derived[12].expr), and the user counted entries.
func TestValidationErrorsLocated(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"second of a list", "derived:\n  - name: a\n    expr: up\n  - name: a\n    expr: up\n", `line 4: derived[1].name "a": used twice`},
		{"an expression", "derived:\n  - name: a\n    expr: up\n  - name: b\n    expr: sum(\n", "line 5: derived[1].expr: "},
		{"a selector", "include:\n  - '{job=\"a\"}'\n  - '{job='\n", `line 3: include[1] "{job="`},
		{"an override's field", "overrides:\n  - match: '{a=\"b\"}'\n    direction: sideways\n", `line 3: overrides[0].direction "sideways"`},
		{"a section", "alerting:\n  warning: {score: 5}\n  critical: {score: 2}\n", "line 2: alerting: critical.score"},
		{"a member", "derived:\n  - name: g\n    members:\n      - {name: a, expr: up}\n      - {name: b, expr: 'x[5m]'}\n", "line 5: derived[0].members[1].expr: a range vector"},
		{"a group's option", "derived:\n  - name: g\n    members: [{name: a, expr: up}, {name: b, expr: up}]\n    forecast_horizons: [5m]\n", "line 4: derived[0].forecast_horizons: not for a group"},
		// Fields left out: their entry's line, and what is missing, where
		// the parser said "unknown position: parse error: no expression
		// found in input", and no line.
		{"a missing name", "derived:\n  - expr: up\n", `line 2: derived[0].name "": want a valid metric name`},
		{"a member's missing expr", "derived:\n  - name: g\n    members:\n      - {name: a, expr: up}\n      - {name: b}\n", "line 5: derived[0].members[1].expr: missing; want a PromQL expression"},
		{"an override's missing match", "overrides:\n  - direction: up\n", "line 2: overrides[0].match: missing; want a series selector"},
		{"an empty selector", "exclude:\n  - '{job=\"a\"}'\n  - ' '\n", "line 3: exclude[1]: missing; want a series selector"},
		{"a capacity alert", "alerting:\n  capacity:\n    - {name: 'disk full', for: disk, limit: 1}\n", `line 3: alerting.capacity[0].name "disk full"`},
		{"an empty group_by", "alerting:\n  group_by: []\n", "line 2: alerting.group_by: empty; want the labels"},
		{"a capacity alert's horizon of 0s", "alerting:\n  capacity:\n    - name: Full\n      for: disk\n      limit: 1\n      horizon: 0s\n", "line 6: alerting.capacity[0].horizon 0s: want a positive duration"},
		{"a capacity alert's name twice", "alerting:\n  capacity:\n    - {name: Full, for: disk, limit: 1}\n    - {name: Full, for: disk, limit: 2}\n", `line 4: alerting.capacity[1].name "Full": used twice`},
		{"a remote write", "remote_write:\n  - url: http://a\n    name: x\n  - url: http://b\n    name: x\n", `line 5: remote_write[1].name "x": used twice`},
		{"a remote read's required_matchers", "remote_read:\n  - url: http://a\n    required_matchers: {job: a}\n", "line 3: remote_read[0].required_matchers: not for omen"},
		{"a second remote read", "remote_read:\n  - url: http://a\n  - url: http://b\n", "line 3: remote_read[1]: one upstream at most"},
		{"a remote read's bad timeout", "remote_read:\n  - url: http://a\n  - url: http://b\n    remote_timeout: 5sec\n", `remote_read[1] (line 3): unknown unit "sec"`},
		{"a remote read's password twice", "remote_read:\n  - url: http://a\n    basic_auth: {username: u, password: p, password_file: f}\n", "remote_read[0] (line 2): at most one of basic_auth password, password_file & password_ref must be configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.in))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestRemoteReadShownRedacted: the status API shows the remote_read entry
// with its secrets as <secret>, as Prometheus's /api/v1/status/config
// does, and its file names, which are not secrets.
func TestRemoteReadShownRedacted(t *testing.T) {
	c, err := Load([]byte("remote_read:\n  - url: https://prom:9090/api/v1/read\n    basic_auth: {username: omen, password: HUNTER2}\n    tls_config: {cert_file: /etc/omen/tls.crt, key_file: /etc/omen/tls.key}\n    headers: {X-Scope-OrgID: team-a}\n"))
	require.NoError(t, err)
	b, err := c.YAML()
	require.NoError(t, err)
	require.NotContains(t, string(b), "HUNTER2")
	require.Contains(t, string(b), "password: <secret>")
	require.Contains(t, string(b), "key_file: /etc/omen/tls.key")
	require.Contains(t, string(b), "X-Scope-OrgID: team-a")
}

// TestExplicitZeros: a field the file gives, even as zero or an empty list,
// is not inherited: an override can turn a minimum deviation off or
// forecasts off, a tier can fire at once.
func TestExplicitZeros(t *testing.T) {
	c, err := Load([]byte(`
defaults: {min_deviation_abs: 5, min_deviation_rel: 0.1}
overrides:
  - {match: '{job="a"}', min_deviation_abs: 0}
  - {match: '{job="b"}', forecast_horizons: []}
  - {match: '{job="c"}', direction: up}
alerting: {warning: {score: 2, for: 0s}, keep_firing_for: 0s}
`))
	require.NoError(t, err)
	a := c.ScoringFor(labels.FromStrings("job", "a"))
	require.Equal(t, 0.0, a.MinDeviationAbs, "explicit 0")
	require.Equal(t, 0.1, a.MinDeviationRel, "inherited")
	require.Len(t, a.ForecastHorizons, 3)
	require.Empty(t, c.ScoringFor(labels.FromStrings("job", "b")).ForecastHorizons, "no forecasts")
	cs := c.ScoringFor(labels.FromStrings("job", "c"))
	require.Equal(t, 5.0, cs.MinDeviationAbs, "unset fields inherit")
	require.Len(t, cs.ForecastHorizons, 3)
	require.Equal(t, model.Duration(0), c.Alerting.Warning.For)
	require.Equal(t, model.Duration(5*time.Minute), c.Alerting.Critical.For)
	require.Equal(t, model.Duration(0), *c.Alerting.KeepFiringFor, "explicit 0")
	d, err := Load(nil)
	require.NoError(t, err)
	require.Equal(t, model.Duration(2*time.Minute), *d.Alerting.KeepFiringFor, "default")
}

// TestHorizonsAreASet: forecast horizons read in ascending order whatever
// the order written, so that a file listing the same horizons otherwise is
// the same configuration: the scorers compared a reload's horizons with a
// forecaster's as a list, and [30m, 5m, 15m] started every series again
// from history (pipeline's TestReloadAppliesOptions). The defaults' list,
// inherited and shared, is left as it is.
func TestHorizonsAreASet(t *testing.T) {
	m := func(ds ...string) []model.Duration {
		out := make([]model.Duration, len(ds))
		for i, d := range ds {
			var err error
			out[i], err = model.ParseDuration(d)
			require.NoError(t, err)
		}
		return out
	}
	c, err := Load([]byte(`
defaults: {forecast_horizons: [30m, 5m, 15m]}
overrides:
  - {match: '{job="a"}', forecast_horizons: [2h, 1h]}
  - {match: '{job="b"}', direction: up}
derived:
  - {name: r, expr: up, forecast_horizons: [10m, 1m]}
`))
	require.NoError(t, err)
	require.Equal(t, m("5m", "15m", "30m"), c.Defaults.ForecastHorizons)
	require.Equal(t, m("1h", "2h"), c.ScoringFor(labels.FromStrings("job", "a")).ForecastHorizons)
	require.Equal(t, m("5m", "15m", "30m"), c.ScoringFor(labels.FromStrings("job", "b")).ForecastHorizons)
	require.Equal(t, m("1m", "10m"), c.Derived[0].ForecastHorizons)
	d, err := Load([]byte("defaults: {forecast_horizons: [5m, 15m, 30m]}"))
	require.NoError(t, err)
	require.Equal(t, d.Defaults, c.Defaults, "the same horizons, the same configuration")
	require.Equal(t, m("5m", "15m", "30m"), defaultHorizons, "not sorted in place")
}

// TestFlatlineInherits: the opt-in flat member is inherited from the
// defaults unless an override or a derived input says otherwise, an
// explicit false included.
func TestFlatlineInherits(t *testing.T) {
	c, err := Load([]byte(`
defaults: {flatline: true}
overrides:
  - {match: '{job="a"}', flatline: false}
  - {match: '{job="b"}', direction: up}
derived:
  - {name: ratio, expr: 'sum(rate(errors_total[5m]))'}
`))
	require.NoError(t, err)
	for _, tc := range []struct {
		job  string
		want bool
	}{{"a", false}, {"b", true}, {"c", true}} {
		require.Equal(t, tc.want, c.ScoringFor(labels.FromStrings("job", tc.job)).Flatline, "job %s", tc.job)
	}
	require.True(t, c.Derived[0].Flatline, "derived inputs inherit too")
	d, err := Load(nil)
	require.NoError(t, err)
	require.False(t, d.Defaults.Flatline, "off by default")
	out, err := c.YAML()
	require.NoError(t, err)
	require.Contains(t, string(out), "flatline: false", "an explicit false is shown")
}

// TestYAMLKeepsExplicitZeros: the configuration the status API shows
// reads back as the one loaded; omitempty dropped the explicit zeros that
// override a default (no forecasts, a minimum deviation of 0, alerts that
// fire at once), so the page showed them inheriting it.
func TestYAMLKeepsExplicitZeros(t *testing.T) {
	const yml = `
defaults: {min_deviation_abs: 5, min_deviation_rel: 0.1}
overrides:
  - {match: '{job="a"}', min_deviation_abs: 0}
  - {match: '{job="b"}', forecast_horizons: []}
  - {match: '{job="c"}', direction: up}
derived:
  - {name: ratio, expr: 'sum(rate(errors_total[5m])) / sum(rate(requests_total[5m]))', min_deviation_rel: 0, forecast_horizons: []}
alerting:
  warning: {score: 2, for: 0s}
  keep_firing_for: 0s
  capacity: [{name: DiskFull, for: disk_used_bytes, limit: 100}]
`
	c, err := Load([]byte(yml))
	require.NoError(t, err)
	out, err := c.YAML()
	require.NoError(t, err)
	t.Logf("%s", out)
	for _, want := range []string{"min_deviation_abs: 0\n", "forecast_horizons: []\n", "min_deviation_rel: 0\n", "for: 0s\n"} {
		require.Contains(t, string(out), want)
	}
	back, err := Load(out)
	require.NoError(t, err, "the shown configuration loads")
	for _, job := range []string{"a", "b", "c", "d"} {
		ls := labels.FromStrings("job", job)
		want, got := c.ScoringFor(ls), back.ScoringFor(ls)
		want.set, got.set = nil, nil // the shown file names every field
		require.Equal(t, want, got, "job %s", job)
	}
	require.Equal(t, c.Derived[0].ForecastHorizons, back.Derived[0].ForecastHorizons)
	require.Equal(t, c.Derived[0].MinDeviationRel, back.Derived[0].MinDeviationRel)
	require.Equal(t, c.Alerting.Warning.For, back.Alerting.Warning.For)
	require.Equal(t, *c.Alerting.KeepFiringFor, *back.Alerting.KeepFiringFor)

	// Nothing set, nothing added: the defaults' file shows as before.
	d, err := Load(nil)
	require.NoError(t, err)
	dy, err := d.YAML()
	require.NoError(t, err)
	plain, err := yaml.Marshal(d)
	require.NoError(t, err)
	require.Equal(t, string(plain), string(dy))
}

// TestReadmeExample loads the README's configuration example, so that it
// stays a valid file: its derived inputs, group and all.
func TestReadmeExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, block, ok := strings.Cut(string(b), "```yaml\ninclude:")
	require.True(t, ok, "README has the configuration example")
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	c, err := Load([]byte("include:" + block))
	require.NoError(t, err)
	g := c.DerivedNamed("pod_health")
	require.NotNil(t, g)
	require.True(t, g.IsGroup())
	require.Equal(t, []string{"namespace", "pod"}, g.By)
	require.Len(t, g.Members, 4)
	require.Empty(t, g.ForecastHorizons, "a group has no forecasts")
}

// TestDerivedSignature: what a derived input computes, as its models know
// it: a reformatted expression or reordered group labels keep it, another
// expression, member order or label set change it.
func TestDerivedSignature(t *testing.T) {
	sig := func(d string) string {
		c, err := Load([]byte("derived: [" + d + "]"))
		require.NoError(t, err)
		return c.Derived[0].Signature()
	}
	require.Equal(t, sig("{name: a, expr: 'x*2'}"), sig("{name: a, expr: 'x  *  2', interval: 1m}"))
	require.NotEqual(t, sig("{name: a, expr: 'x*2'}"), sig("{name: a, expr: 'x*3'}"))
	g := "{name: g, by: [%s], members: [%s]}"
	ab, ba := "{name: a, expr: x}, {name: b, expr: y}", "{name: b, expr: y}, {name: a, expr: x}"
	require.Equal(t, sig(fmt.Sprintf(g, "pod, namespace", ab)), sig(fmt.Sprintf(g, "namespace, pod", ab)))
	require.NotEqual(t, sig(fmt.Sprintf(g, "pod", ab)), sig(fmt.Sprintf(g, "pod", ba)))
	require.NotEqual(t, sig(fmt.Sprintf(g, "pod", ab)), sig(fmt.Sprintf(g, "node", ab)))
	require.NotEqual(t, sig("{name: a, expr: 'x'}"), sig(fmt.Sprintf(g, "", ab)))
}

// TestMergeKeyCountsAsGiven: a field given through a YAML merge key
// (`<<: *anchor`) is as given as one written out: an override's explicit
// `forecast_horizons: []` and `min_deviation_abs: 0` inherited the
// defaults' horizons and 5 through one.
func TestMergeKeyCountsAsGiven(t *testing.T) {
	for _, merge := range []string{"<<: *quiet", "<<: [*quiet]"} {
		c, err := Load([]byte(`
defaults: {min_deviation_abs: 5}
overrides:
  - &quiet
    match: '{job="batch"}'
    forecast_horizons: []
    min_deviation_abs: 0
  - ` + merge + `
    match: '{job="cron"}'
`))
		require.NoError(t, err, merge)
		for i, o := range c.Overrides {
			require.Empty(t, o.ForecastHorizons, "%s: overrides[%d]", merge, i)
			require.Zero(t, o.MinDeviationAbs, "%s: overrides[%d]", merge, i)
		}
	}
}

// TestRemoteWriteErrorsLocated: a remote_write entry that does not decode
// is named with its line; Prometheus's errors name neither (`unknown unit
// "sec"`, a relabelling's regexp).
func TestRemoteWriteErrorsLocated(t *testing.T) {
	for _, tc := range []struct{ entry, want string }{
		{"queue_config: {batch_send_deadline: 5sec}", `remote_write[1] (line 3): `},
		{"write_relabel_configs: [{source_labels: [__name__], regex: '(', action: drop}]", `remote_write[1] (line 3): `},
		{"headerz: {a: b}", `line 4: field headerz not found`},
	} {
		_, err := Load([]byte("remote_write:\n  - url: http://a\n  - url: http://b\n    " + tc.entry + "\n"))
		require.ErrorContains(t, err, tc.want, tc.entry)
	}
	// Entries sharing settings through an anchor: the wrong one is named
	// (each was decoded alone, and a merge key's anchor was "unknown").
	_, err := Load([]byte("remote_write:\n  - &rw\n    url: http://a\n    remote_timeout: 30s\n  - <<: *rw\n    url: http://b\n  - url: http://c\n    queue_config: {batch_send_deadline: 5sec}\n"))
	require.ErrorContains(t, err, `remote_write[2] (line 7): unknown unit "sec"`)
}

// TestGroupLeavesDefaults: a group does not take the defaults' options it
// has no use for (no forecasts shown on the status page), and does not
// refuse them either: only its own entry's are refused (TestLoadErrors).
func TestGroupLeavesDefaults(t *testing.T) {
	c, err := Load([]byte("defaults: {min_deviation_abs: 5, flatline: true, forecast_horizons: [5m]}\nderived: [{name: g, direction: up, members: [{name: a, expr: up}, {name: b, expr: up}]}]\n"))
	require.NoError(t, err)
	require.Equal(t, "up", c.Derived[0].Direction)
	require.Empty(t, c.Derived[0].ForecastHorizons)
}

// TestRemoteWriteURLErrorsHidePasswords: a URL that does not parse is
// quoted whole by net/url's error, password and all, and that error is
// what `omen check config`, a failed start and a failed reload's log line
// show. The problem and the entry must still be named.
func TestRemoteWriteURLErrorsHidePasswords(t *testing.T) {
	for _, tc := range []struct{ name, entry, want string }{
		{"url", `url: "http://u:SECRET%zz@h/w"`, `remote_write[0] (line 2): parse "http://xxxxx@h/w": invalid URL escape "%zz"`},
		{"url, @ in the password", `url: "https://u:SEC@RET%zz@h/w"`, `parse "https://xxxxx@h/w"`},
		{"proxy_url", "url: http://h/w\n    proxy_url: \"http://u:SECRET%zz@proxy:3128\"", `parse "http://xxxxx@proxy:3128"`},
		{"quote and non-ASCII in the password", `url: 'http://u:SE"CR\ETé%zz@h/w'`, `parse "http://xxxxx@h/w"`},
		{"no scheme", `url: "//u:SECRET%zz@h/w"`, `parse "xxxxx@h/w"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte("remote_write:\n  - " + tc.entry + "\n"))
			require.Error(t, err)
			require.NotContains(t, err.Error(), "SECRET")
			require.NotContains(t, err.Error(), "RET")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestNullIsNotGiven: `group_by:` and a capacity alert's `horizon:` with
// no value (null, as a template leaves an unset value) are left out, as
// they were: the defaults (namespace, job; 30m). The refusals of an
// explicit `group_by: []` and `horizon: 0s` took them for those, and a
// file that loaded stopped the start, for a capacity alert with a "0s"
// the file does not say.
func TestNullIsNotGiven(t *testing.T) {
	for _, body := range []string{
		"alerting:\n  group_by:\n  capacity:\n    - {name: Full, for: disk, limit: 1, horizon: }\n",
		"alerting:\n  group_by: ~\n  capacity:\n    - {name: Full, for: disk, limit: 1, horizon: null}\n",
	} {
		c, err := Load([]byte(body))
		require.NoError(t, err, body)
		require.Equal(t, []string{"namespace", "job"}, c.Alerting.GroupBy)
		require.Equal(t, model.Duration(30*time.Minute), c.Alerting.Capacity[0].Horizon)
	}
	_, err := Load([]byte("alerting: {group_by: []}"))
	require.ErrorContains(t, err, "alerting.group_by: empty")
	_, err = Load([]byte("alerting: {capacity: [{name: Full, for: disk, limit: 1, horizon: 0s}]}"))
	require.ErrorContains(t, err, "horizon 0s")
}

// TestCapacityNameSharedAcrossInputs: one name on two inputs is one alert
// for several inputs (its ALERTS series differ by `for`; promtool's rule
// tests pass on them), as Prometheus's rules may share a name; twice on
// one input it is refused (the same ALERTS series twice).
func TestCapacityNameSharedAcrossInputs(t *testing.T) {
	c, err := Load([]byte("alerting:\n  capacity:\n    - {name: Full, for: disk, limit: 1}\n    - {name: Full, for: mem, limit: 2}\n"))
	require.NoError(t, err)
	require.Len(t, c.Alerting.Capacity, 2)
	_, err = Load([]byte("alerting:\n  capacity:\n    - {name: Full, for: disk, limit: 1}\n    - {name: Full, for: disk, limit: 2, match: '{a=\"b\"}'}\n"))
	require.ErrorContains(t, err, `line 4: alerting.capacity[1].name "Full": used twice for "disk"`)
}

// TestRunbookURLTemplate: a runbook URL is an annotation's template in the
// rules omen generates; one Prometheus would not parse is refused at load
// (it loaded, and every generated rule file was then refused), one it
// parses is taken.
func TestRunbookURLTemplate(t *testing.T) {
	_, err := Load([]byte("alerting: {runbook_url: 'https://wiki/{{ $labels.namespace }}/'}"))
	require.NoError(t, err)
	_, err = Load([]byte("alerting: {runbook_url: 'https://x/{{ $sabels.job }}'}"))
	require.ErrorContains(t, err, `alerting.runbook_url "https://x/{{ $sabels.job }}"`)
	require.ErrorContains(t, err, `undefined variable "$sabels"`)
}

// TestOverrideNeverReached: the first matching override wins, so one whose
// selector has every matcher of an earlier one's (the same selector, however
// written, or a narrower one after it) never applies. It loaded, and was
// silently dead; it is refused, as promtool refuses a rule group named
// twice, and one that only overlaps an earlier one is taken.
func TestOverrideNeverReached(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"the same match", `overrides: [{match: '{job="a"}', direction: up}, {match: '{job="a"}', direction: down}]`,
			`overrides[1].match "{job=\"a\"}": never applies: overrides[0] ("{job=\"a\"}") selects the same series, and the first match wins; remove one`},
		{"the same match written otherwise", `overrides: [{match: 'up{job="a"}'}, {match: '{job = "a", __name__="up"}'}]`,
			"overrides[1].match \"{job = \\\"a\\\", __name__=\\\"up\\\"}\": never applies: overrides[0] (\"up{job=\\\"a\\\"}\") selects the same series"},
		{"a narrower one after", `overrides: [{match: '{job="a"}'}, {match: '{x="1"}'}, {match: '{instance="i", job="a"}'}]`,
			`overrides[2].match "{instance=\"i\", job=\"a\"}": never applies: overrides[0] ("{job=\"a\"}") selects every series it does, and the first match wins; put it before overrides[0]`},
		{"located", "overrides:\n  - match: '{job=\"a\"}'\n  - match: '{job=\"a\"}'\n", `line 3: overrides[1].match`},
		// A matcher written twice counts once: the same series, or a
		// narrower selector, whatever the matchers' count.
		{"the same match, a matcher written twice", `overrides: [{match: '{job="a", job="a"}'}, {match: '{job="a"}'}]`,
			`overrides[0] ("{job=\"a\", job=\"a\"}") selects the same series, and the first match wins; remove one`},
		{"a narrower one after, a matcher written twice", `overrides: [{match: '{job="a", job="a"}'}, {match: '{job="a", x="1"}'}]`,
			`overrides[0] ("{job=\"a\", job=\"a\"}") selects every series it does, and the first match wins; put it before overrides[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.in))
			require.ErrorContains(t, err, tc.want)
		})
	}
	for _, in := range []string{
		`overrides: [{match: '{instance="i", job="a"}'}, {match: '{job="a"}'}]`, // narrower first: both apply
		`overrides: [{match: '{job="a"}'}, {match: '{job=~"a"}'}]`,              // not provably the same: taken
		`overrides: [{match: '{job="a", x="1"}'}, {match: '{job="a", x="2"}'}]`,
	} {
		_, err := Load([]byte(in))
		require.NoError(t, err, in)
	}
}

// TestRemoteWriteURLMustBeHTTP: a remote_write (or remote_read) whose url is not an
// absolute http(s) URL is refused at load, naming the entry, as
// --remote-write.url refuses it (forward.URLConfig). Prometheus takes
// `ftp://x` (promtool check config passes it) and its queue then fails
// every send with "unsupported protocol scheme", a line a minute.
func TestRemoteWriteURLMustBeHTTP(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"ftp://h/w", `remote_write[1].url "ftp://h/w": want an absolute http(s) URL`},
		{"file:///etc/passwd", `remote_write[1].url "file:///etc/passwd": want an absolute http(s) URL`},
		{"/api/v1/write", `remote_write[1].url "/api/v1/write": want an absolute http(s) URL`},
		{"http:///w", `remote_write[1].url "http:///w": want an absolute http(s) URL`},
		{"ftp://u:SECRET@h/w", `remote_write[1].url "ftp://u:xxxxx@h/w": want an absolute http(s) URL`},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := Load([]byte("remote_write:\n  - url: http://a/w\n  - url: " + tc.url + "\n"))
			require.EqualError(t, err, "line 3: "+tc.want)
		})
	}
	for _, u := range []string{"http://h/w", "HTTPS://h:9/w", "https://u:p@h/w"} {
		_, err := Load([]byte("remote_write:\n  - url: " + u + "\n"))
		require.NoError(t, err, u)
	}
	// remote_read's upstream likewise: every warm start's read failed.
	_, err := Load([]byte("remote_read:\n  - url: ftp://h/r\n"))
	require.EqualError(t, err, `line 2: remote_read[0].url "ftp://h/r": want an absolute http(s) URL`)
}
