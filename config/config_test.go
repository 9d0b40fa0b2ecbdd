package config

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load(nil)
	require.NoError(t, err)
	require.Equal(t, "both", c.Defaults.Direction)
	require.Equal(t, 0.001, c.Defaults.FalseAlarmRate)
	require.Len(t, c.Defaults.ForecastHorizons, 3)
	require.Equal(t, 1.0, c.Alerting.Warning.Score)
	require.True(t, c.Selected(labels.FromStrings("__name__", "up")))
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
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown field", "inclde: []", "field inclde not found"},
		{"bad selector", "include: ['{job=']", "include[0]"},
		{"bad direction", "defaults: {direction: sideways}", "defaults.direction"},
		{"bad rate", "defaults: {false_alarm_rate: 2}", "false_alarm_rate"},
		{"bad expr", "derived: [{name: x, expr: 'sum('}]", "derived[0].expr"},
		{"bad name", "derived: [{name: 'a b', expr: 'up'}]", "derived[0].name"},
		{"dup name", "derived: [{name: a, expr: up}, {name: a, expr: up}]", "used twice"},
		{"tiers", "alerting: {warning: {score: 5}, critical: {score: 2}}", "critical.score"},
		{"capacity", "alerting: {capacity: [{limit: 3}]}", "capacity[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.in))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
