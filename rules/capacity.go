package rules

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
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
//
// With a resolve margin, a firing alert holds while the bound stays
// within it of the limit (see hysteresis).
func (g generator) capacityRules(cfg *config.Config) ([]rulefmt.Rule, error) {
	caps := cfg.Alerting.Capacity
	out := make([]rulefmt.Rule, 0, len(caps))
	for i, c := range caps {
		where := fmt.Sprintf("alerting.capacity[%d] %q", i, c.Name)
		if !alertName.MatchString(c.Name) {
			return nil, fmt.Errorf("%s: name must match %s", where, alertName)
		}
		d := up
		if c.Direction == config.CapacityDown {
			d = down
		}
		hs := inputHorizons(cfg, c.For)
		var within, byHorizon []string
		for _, h := range hs {
			if h <= c.Horizon {
				within = append(within, regexp.QuoteMeta(h.String()))
				// One query per horizon, in the ascending order of hs:
				// sorted by the label, 15m came before 5m.
				byHorizon = append(byHorizon, fmt.Sprintf(`{{ with query (printf "%[2]s{%%shorizon=%%q}" $sel %[1]q) }} %[1]s: {{ . | first | value | humanize }}{{ end }}`, h.String(), d.bound))
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
		sel := d.bound + "{" + strings.Join(append(matchers, extra...), ", ") + "}"
		bound := fmt.Sprintf("%s without (horizon) (%s)", d.agg, sel)
		lim := limitOf(c, d)
		summary := lim.prelude + fmt.Sprintf(`{{ $labels.for }} is forecast to %s {{ $value | humanize }} within %s, `, d.verb, c.Horizon)
		reached := fmt.Sprintf("at or %s its limit %s", d.rel, lim.text)
		expr := exportRuleLabels(fmt.Sprintf("%s %s %s", bound, d.op, lim.rhs))
		// A percentage of a limit of 0 is no margin either.
		if m, relative := c.Margin(); m == 0 || relative && c.LimitExpr == "" && c.Limit == 0 {
			summary += reached
		} else {
			expr = hysteresis(c.Name, expr, exportRuleLabels(fmt.Sprintf("%s %s %s", bound, d.op, lim.hold(m, relative))))
			shown := c.ResolveMargin
			if !relative {
				shown = fmt.Sprintf("{{ %s | humanize }}", strconv.FormatFloat(m, 'e', -1, 64))
			}
			summary += fmt.Sprintf("{{ if %s }}%s{{ else }}back %s its limit %s by less than its resolve margin %s{{ end }}",
				lim.reached, reached, d.back, lim.text, shown)
		}
		out = append(out, rulefmt.Rule{
			Alert: c.Name,
			Expr:  expr,
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
				"summary":     summary + ".",
				"description": forecastTmpl(d.side + " forecast bound by horizon:" + strings.Join(byHorizon, "") + ". Now: " + inputValue + "." + lim.note),
				"runbook_url": g.runbookURL("OmenCapacityForecast"),
			},
		})
	}
	return out, nil
}

// Warnings returns what in cfg's capacity alerts makes rules that are
// valid but probably not what was meant, one line each naming the entry:
// a ceiling of 0 (limit: 0, direction up), which fires on every series of
// the input that never goes negative, as omen keeps their forecasts at
// or above 0 (a floor of 0, free bytes running out, is direction: down).
// Warned, not refused as an entry without a horizon is: a series that
// goes negative (a temperature, a balance) may rise to 0, and the rule
// cannot tell. cfg must have been validated.
func Warnings(cfg *config.Config) []string {
	var out []string
	for i, c := range cfg.Alerting.Capacity {
		if c.LimitExpr == "" && c.Limit == 0 && c.Direction == config.CapacityUp {
			out = append(out, fmt.Sprintf("alerting.capacity[%d] %q: limit 0 with direction up fires on every series of %s that never goes negative (omen keeps their forecasts at or above 0); a floor of 0 is direction: down", i, c.Name, c.For))
		}
	}
	return out
}

// direction holds what a capacity rule's direction sets: the bound it
// reads and how, its comparison with the limit (op, and cmp in templates),
// the words of its summary, and the sign of the resolve margin's move of
// the limit (down for a ceiling, up for a floor).
type direction struct {
	bound, agg, op, cmp, side, verb, rel, back string
	sign                                       float64
}

var (
	up   = direction{"forecast_upper", "max", ">=", "ge", "Upper", "reach", "above", "below", -1}
	down = direction{"forecast_lower", "min", "<=", "le", "Lower", "fall to", "below", "above", 1}
)

// hysteresis returns the expression of an alert that fires on fire and,
// once firing, holds on hold (the bound within the resolve margin of the
// limit, which fire implies): the self-reference of Prometheus's ALERTS
// series, as in prometheus/prometheus#10536, rather than a longer
// keep_firing_for, which holds every alert as long, even one whose bound
// went far back. Both sides carry the rule's labels moved aside
// (exportRuleLabels), the alert and its ALERTS series their values set by
// the rule, hence ignoring them. The ALERTS series of this evaluation's
// alert is the previous evaluation's: where the rules' evaluator does
// not query what it writes (vmalert without remote write), or reads it
// with labels the alert does not have (a ruler's external labels), the
// alert only does without the hold.
func hysteresis(name, fire, hold string) string {
	return fmt.Sprintf(`%s or (%s and ignoring (%s, alertstate) ALERTS{alertname=%q, alertstate="firing"})`,
		fire, hold, strings.Join(ruleLabels, ", "), name)
}

// limit is a capacity's limit in a rule: rhs the right side of the
// comparison, hold that side moved by a resolve margin (a fraction of the
// limit's magnitude if relative, else in its unit) to where a firing
// alert holds; text the template printing its value and reached the
// template condition of $value having reached it, both after prelude;
// note the description's words on it.
type limit struct {
	rhs, text, reached, prelude, note string
	hold                              func(margin float64, relative bool) string
}

// limitOf returns the limit of the capacity c read as d reads it.
func limitOf(c config.Capacity, d direction) limit {
	if c.LimitExpr == "" {
		return limit{
			rhs:  num(c.Limit),
			text: num(c.Limit),
			// A float's literal: text/template compares no float with an int.
			reached: fmt.Sprintf("%s $value %s", d.cmp, strconv.FormatFloat(c.Limit, 'e', -1, 64)),
			hold: func(m float64, relative bool) string {
				if relative {
					m *= math.Abs(c.Limit)
				}
				return num(c.Limit + d.sign*m)
			},
		}
	}
	join, series, shift, query := limitSeries(c, d.bound)
	op := "+"
	if d.sign < 0 {
		op = "-"
	}
	return limit{
		rhs: join + shift(series),
		prelude: preludeSel + `{{- $lim := 0.0 -}}{{- $hasLim := false -}}` +
			fmt.Sprintf(`{{- with query (printf %q $sel) -}}{{- $lim = . | first | value -}}{{- $hasLim = true -}}{{- end -}}`, query),
		text:    `{{ if $hasLim }}{{ $lim | humanize }}{{ else }}n/a{{ end }}`,
		reached: fmt.Sprintf("or (not $hasLim) (%s $value $lim)", d.cmp),
		note:    fmt.Sprintf(` Limit: {{ %q }}.`, c.LimitExpr),
		hold: func(m float64, relative bool) string {
			if relative {
				return join + shift(fmt.Sprintf("(%s %s abs(%s) * %s)", series, op, series, num(m)))
			}
			return join + shift(fmt.Sprintf("(%s %s %s)", series, op, num(m)))
		},
	}
}

// limitSeries returns, for a capacity whose limit is a series, the
// matching its rule's comparison joins the limit with, the limit's
// expression, what its result goes through before the join (shift), and
// printf's format of the query of its value in the annotations (after
// preludeSel, which defines $sel).
//
// The forecasts carry the input's labels, `for` and `horizon` (the rule
// aggregates horizon away); the limit's series its own labels and name.
// Without `on` they match on every label but those two (and the names,
// which PromQL's matching leaves out): a limit computed from series
// labelled as the input, such as node_filesystem_size_bytes for
// node_filesystem_avail_bytes; group_left keeps `for` on the alert, which
// one-to-one matching drops with the labels it ignores. An input's own
// `for` and `horizon` are exported_for and exported_horizon on its
// forecasts (exported_exported_for on those of an input's exported_for,
// and so on), and for and horizon on a limit labelled as the input: the
// shift copies them to the forecasts' names, or no limit matched these
// inputs. With `on`, on those labels only, the limit aggregated by them
// to the tightest (the lowest ceiling, the highest floor), so that
// duplicates of it (two kube-state-metrics replicas) do not fail the
// rule's evaluation, and group_left again, as several inputs can share
// one limit (the containers of a pod, one pod's limit). `group_left ()`:
// without its parentheses, a limit starting with one, (a - b), is read
// as its labels.
func limitSeries(c config.Capacity, bound string) (join, series string, shift func(string) string, format string) {
	tightest := "min"
	if c.Direction == config.CapacityDown {
		tightest = "max"
	}
	on := strings.Join(c.On, ", ")
	series = fmt.Sprintf("%s by (%s) (%s)", tightest, on, c.LimitExpr)
	join = fmt.Sprintf("on (%s) group_left () ", on)
	shift = func(e string) string { return e }
	query := series + " and on (" + on + ")"
	if len(c.On) == 0 {
		series = "(" + c.LimitExpr + ")"
		join = "ignoring (for, horizon) group_left () "
		shift = func(e string) string { return exportLabels(e, omenLabels) }
		query = shift(series) + " and ignoring (for, horizon)"
	}
	// printf's format: the expression's own % (PromQL's modulo) doubled.
	return join, series, shift, strings.ReplaceAll(query, "%", "%%") + " " + bound + "{%s}"
}

// omenLabels are the labels omen sets on its forecasts over the input's.
var omenLabels = []string{"for", "horizon"}

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
		case model.MetricNameLabel, "for", "horizon":
			return nil, fmt.Errorf("match %q: %s is set by the rule; select on the input's labels only", sel, m.Name)
		}
		out = append(out, m.String())
	}
	return out, nil
}
