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

// capacityRules alert when a forecast bound of an input reaches its limit
// at any horizon up to the configured one: the upper bound rising to it
// (direction up), or the lower bound falling to it (down). The capacity
// will probably be breached within that time, and the bound on the far
// side makes the warning early rather than late. Reaching counts (>= and
// <=): a disk at its size is full, a series held at its cap forecasts the
// cap with a band of width 0, and omen keeps the forecasts of a series
// that never went negative at or above 0, so the lower bound of free
// bytes running out is 0, never below (predict_linear's `< 0` would not
// fire). The horizons are the label values omen writes, model.Duration
// strings such as 5m or 1h.
func (g generator) capacityRules(cfg *config.Config) ([]rulefmt.Rule, error) {
	caps := cfg.Alerting.Capacity
	out := make([]rulefmt.Rule, 0, len(caps))
	for i, c := range caps {
		where := fmt.Sprintf("alerting.capacity[%d] %q", i, c.Name)
		if !alertName.MatchString(c.Name) {
			return nil, fmt.Errorf("%s: name must match %s", where, alertName)
		}
		bound, agg, op, side, verb, rel := "forecast_upper", "max", ">=", "Upper", "reach", "above"
		if c.Direction == config.CapacityDown {
			bound, agg, op, side, verb, rel = "forecast_lower", "min", "<=", "Lower", "fall to", "below"
		}
		hs := inputHorizons(cfg, c.For)
		var within, byHorizon []string
		for _, h := range hs {
			if h <= c.Horizon {
				within = append(within, regexp.QuoteMeta(h.String()))
				// One query per horizon, in the ascending order of hs:
				// sorted by the label, 15m came before 5m.
				byHorizon = append(byHorizon, fmt.Sprintf(`{{ with query (printf "%[2]s{%%shorizon=%%q}" $sel %[1]q) }} %[1]s: {{ . | first | value | humanize }}{{ end }}`, h.String(), bound))
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
		sel := bound + "{" + strings.Join(append(matchers, extra...), ", ") + "}"
		rhs, limit, limitNote := num(c.Limit), num(c.Limit), ""
		summary := fmt.Sprintf(`{{ $labels.for }} is forecast to %s {{ $value | humanize }} within %s, at or %s its limit `, verb, c.Horizon, rel)
		if c.LimitExpr != "" {
			rhs, limit = limitSeries(c, bound)
			summary = preludeSel + summary
			limitNote = fmt.Sprintf(` Limit: {{ %q }}.`, c.LimitExpr)
		}
		out = append(out, rulefmt.Rule{
			Alert: c.Name,
			Expr:  exportRuleLabels(fmt.Sprintf("%s without (horizon) (%s) %s %s", agg, sel, op, rhs)),
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
				"summary":     summary + limit + ".",
				"description": forecastTmpl(side + " forecast bound by horizon:" + strings.Join(byHorizon, "") + ". Now: " + inputValue + "." + limitNote),
				"runbook_url": g.runbookURL("OmenCapacityForecast"),
			},
		})
	}
	return out, nil
}

// limitSeries returns, for a capacity whose limit is a series, the right
// side of its rule's comparison and the annotation's template of the
// limit's value (after preludeSel, which defines $sel).
//
// The forecasts carry the input's labels, `for` and `horizon` (the rule
// aggregates horizon away); the limit's series its own labels and name.
// Without `on` they match on every label but `for` (and the names, which
// PromQL's matching leaves out): a limit computed from series labelled as
// the input, such as node_filesystem_size_bytes for
// node_filesystem_avail_bytes; group_left keeps `for` on the alert, which
// one-to-one matching drops with the labels it ignores. With `on`, on
// those labels only, the limit aggregated by them to the tightest (the
// lowest ceiling, the highest floor), so that duplicates of it (two
// kube-state-metrics replicas) do not fail the rule's evaluation, and
// group_left again, as several inputs can share one limit (the
// containers of a pod, one pod's limit). `group_left ()`: without its
// parentheses, a limit starting with one, (a - b), is read as its labels.
func limitSeries(c config.Capacity, bound string) (rhs, value string) {
	tightest := "min"
	if c.Direction == config.CapacityDown {
		tightest = "max"
	}
	on := strings.Join(c.On, ", ")
	limit := fmt.Sprintf("%s by (%s) (%s)", tightest, on, c.LimitExpr)
	rhs = fmt.Sprintf("on (%s) group_left () %s", on, limit)
	query := limit + " and on (" + on + ")"
	if len(c.On) == 0 {
		limit = "(" + c.LimitExpr + ")"
		rhs = "ignoring (for) group_left () " + limit
		query = limit + " and ignoring (for, horizon)"
	}
	// printf's format: the expression's own % (PromQL's modulo) doubled.
	format := strings.ReplaceAll(query, "%", "%%") + " " + bound + "{%s}"
	return rhs, fmt.Sprintf(`{{ with query (printf %q $sel) }}{{ . | first | value | humanize }}{{ else }}n/a{{ end }}`, format)
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
