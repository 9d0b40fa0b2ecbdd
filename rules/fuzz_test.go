package rules

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// FuzzRender: every configuration config.Load accepts gives a rule file
// (Render checks it with rulefmt, as Prometheus and promtool do when they
// load it), and its warnings, without a panic: a configuration the loader
// lets through is no rule file Prometheus refuses.
func FuzzRender(f *testing.F) {
	example, err := os.ReadFile("testdata/omen.yml")
	require.NoError(f, err)
	for _, s := range []string{
		"", string(example),
		"alerting: {warning: {score: 1.5, for: 10m}, critical: {score: 4, for: 30m}, group_by: [cluster], keep_firing_for: 5m, runbook_url: 'https://x/{{ $labels.job }}'}",
		"defaults: {forecast_horizons: [10m, 1h, 6h]}\nalerting: {capacity: [{name: QueueFull, for: queue_depth, limit: 1e6, horizon: 1h}]}",
		"alerting: {capacity: [{name: DiskFull, for: node_filesystem_avail_bytes, direction: down, limit: 0, match: '{mountpoint=\"/\"}', resolve_margin: 10%}]}",
		"alerting: {capacity: [{name: Mem, for: mem, limit_expr: 'node_memory_MemTotal_bytes', on: [instance]}]}",
		"derived: [{name: x, expr: 'sum(rate(a[5m]))', interval: 1m}]",
		"overrides: [{match: '{a=\"b\"}', direction: down, forecast_horizons: [2h]}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg, err := config.Load(in)
		if err != nil {
			return
		}
		_ = Warnings(cfg)
		if _, err := Render(cfg); err != nil {
			t.Fatalf("configuration loads, rules do not render: %v\n%s", err, in)
		}
	})
}
