package config

import "testing"

// FuzzLoad: any bytes give a valid configuration or an error, never a panic;
// a configuration that loads has its defaults filled.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"", "include: ['{job=\"a\"}']", "defaults: {direction: up, false_alarm_rate: 0.01}",
		"derived: [{name: x, expr: 'sum(rate(a[5m]))', interval: 1m}]",
		"alerting: {capacity: [{name: c, for: x, limit: 3}]}", "overrides: [{match: '{a=\"b\"}', direction: down}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Load(in)
		if err != nil {
			return
		}
		if c.Defaults.Direction == "" || c.Defaults.FalseAlarmRate <= 0 || len(c.Defaults.ForecastHorizons) == 0 {
			t.Fatalf("loaded config without defaults: %+v", c.Defaults)
		}
	})
}
