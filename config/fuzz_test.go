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
		// What /api/v1/status/config shows loads again, as itself.
		out, err := c.YAML()
		if err != nil {
			t.Fatalf("YAML of a loaded config: %v", err)
		}
		c2, err := Load(out)
		if err != nil {
			t.Fatalf("its YAML does not load: %v\n%s", err, out)
		}
		out2, err := c2.YAML()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("its YAML loads as another (%v):\n%s\nthen\n%s", err, out, out2)
		}
	})
}
