package rules

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/omen-sidecar/omen/config"
)

// alertName holds capacity alert names to what users can match on in
// Alertmanager without quoting surprises.
var alertName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// capacityRules alert when the upper forecast bound of an input reaches its
// limit at any horizon up to the configured one: the capacity will probably
// be breached within that time, and the upper bound makes the warning early
// rather than late. Reaching counts (>=): a disk at its size is full, and a
// series held at its cap forecasts the cap with a band of width 0. The horizons are the label values omen writes,
// model.Duration strings such as 5m or 1h.
func (g generator) capacityRules(cfg *config.Config) ([]rulefmt.Rule, error) {
	caps := cfg.Alerting.Capacity
	out := make([]rulefmt.Rule, 0, len(caps))
	for i, c := range caps {
		where := fmt.Sprintf("alerting.capacity[%d] %q", i, c.Name)
		if !alertName.MatchString(c.Name) {
			return nil, fmt.Errorf("%s: name must match %s", where, alertName)
		}
		hs := inputHorizons(cfg, c.For)
		var within, byHorizon []string
		for _, h := range hs {
			if h <= c.Horizon {
				within = append(within, regexp.QuoteMeta(h.String()))
				// One query per horizon, in the ascending order of hs:
				// sorted by the label, 15m came before 5m.
				byHorizon = append(byHorizon, fmt.Sprintf(`{{ with query (printf "forecast_upper{%%shorizon=%%q}" $sel %[1]q) }} %[1]s: {{ . | first | value | humanize }}{{ end }}`, h.String()))
			}
		}
		if len(within) == 0 {
			return nil, fmt.Errorf("%s: no forecast horizon is within %s: %s is forecast at %v", where, c.Horizon, c.For, hs)
		}
		matchers := []string{fmt.Sprintf("for=%q", c.For), fmt.Sprintf("horizon=~%q", strings.Join(within, "|"))}
		extra, err := extraMatchers(c.Match)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		sel := "forecast_upper{" + strings.Join(append(matchers, extra...), ", ") + "}"
		limit := num(c.Limit)
		out = append(out, rulefmt.Rule{
			Alert: c.Name,
			Expr:  exportRuleLabels(fmt.Sprintf("max without (horizon) (%s) >= %s", sel, limit)),
			// Forecasts move with every sample; holding for the warning tier's
			// duration keeps one spike from paging. Kept firing as the
			// anomaly alerts are: a failed scrape of omen or its restart
			// takes the forecasts off /metrics for a while, which resolved
			// the alert and fired it again with a new notification.
			For:           g.warning.For,
			KeepFiringFor: g.keepFiring,
			Labels: map[string]string{
				LabelSeverity: "warning",
				LabelKind:     KindCapacity,
			},
			Annotations: map[string]string{
				"summary":     fmt.Sprintf(`{{ $labels.for }} is forecast to reach {{ $value | humanize }} within %s, at or above its limit %s.`, c.Horizon, limit),
				"description": forecastTmpl("Upper forecast bound by horizon:" + strings.Join(byHorizon, "") + ". Now: " + inputValue + "."),
				"runbook_url": g.runbookURL("OmenCapacityForecast"),
			},
		})
	}
	return out, nil
}

// extraMatchers returns the matchers of the capacity's optional selector.
// The metric name, `for` and `horizon` are set by the rule itself.
func extraMatchers(sel string) ([]string, error) {
	if sel == "" {
		return nil, nil
	}
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("match %q: %w", sel, err)
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		switch m.Name {
		case labels.MetricName, "for", "horizon":
			return nil, fmt.Errorf("match %q: %s is set by the rule; select on the input's labels only", sel, m.Name)
		}
		out = append(out, m.String())
	}
	return out, nil
}
