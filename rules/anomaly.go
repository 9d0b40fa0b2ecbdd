package rules

import (
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/model/rulefmt"
)

// Alert names of the anomaly group.
const (
	AlertSeriesAnomalous = "OmenSeriesAnomalous"
	AlertAnomalyCritical = "OmenAnomalyCritical"
)

// recordingRules aggregate anomaly_score per group, per group label and
// overall. The counts only exist while some series is anomalous, as usual
// for count(); dashboards add `or vector(0)` where they need a zero.
func (g generator) recordingRules() []rulefmt.Rule {
	w := num(g.warning.Score)
	rules := []rulefmt.Rule{
		{Record: g.level() + ":anomaly_score:max", Expr: fmt.Sprintf("max %s (anomaly_score)", g.by())},
		{Record: g.level() + ":omen_scored_series:count", Expr: fmt.Sprintf("count %s (anomaly_score)", g.by())},
		{Record: g.level() + ":omen_anomalous_series:count", Expr: fmt.Sprintf("count %s (anomaly_score > %s)", g.by(), w)},
	}
	if len(g.groupBy) > 1 {
		for _, l := range g.groupBy {
			rules = append(rules, rulefmt.Rule{
				Record: l + ":omen_anomalous_series:count",
				Expr:   fmt.Sprintf("count by (%s) (anomaly_score > %s)", l, w),
			})
		}
	}
	rules = append(rules, rulefmt.Rule{
		Record: "omen:anomalous_series:count",
		Expr:   fmt.Sprintf("count(anomaly_score > %s)", w),
	})
	return rules
}

// anomalyRules tickets single series and pages on groups. A score above the
// warning tier on one series is usually worth a look, rarely worth waking
// someone: it goes out as a warning carrying the value, the band and an
// explanation. A page is one per group (namespace and job by default) whose
// worst series stays above the critical tier; Alertmanager inhibits the
// group's single-series tickets while the page fires.
func (g generator) anomalyRules() []rulefmt.Rule {
	w, c := num(g.warning.Score), num(g.crit.Score)
	page := fmt.Sprintf("max %s (anomaly_score) > %s", g.by(), c)
	if slices.Contains(g.groupBy, LabelSeverity) || slices.Contains(g.groupBy, LabelKind) {
		page = exportRuleLabels(page)
	}
	return []rulefmt.Rule{
		{
			Alert: AlertSeriesAnomalous,
			Expr:  exportRuleLabels(fmt.Sprintf("anomaly_score > %s", w)),
			For:   g.warning.For,
			Labels: map[string]string{
				LabelSeverity: "warning",
				LabelKind:     KindAnomaly,
			},
			Annotations: map[string]string{
				"summary":     fmt.Sprintf(`{{ $labels.for }} is anomalous: score {{ $value | printf "%%.2f" }} has stayed above %s for %s.`, w, g.warning.For),
				"value":       seriesTmpl(inputValue),
				"expected":    seriesTmpl(expectedBand),
				"explanation": seriesTmpl(explanation),
				"runbook_url": g.runbookURL(AlertSeriesAnomalous),
			},
		},
		{
			Alert: AlertAnomalyCritical,
			Expr:  page,
			For:   g.crit.For,
			Labels: map[string]string{
				LabelSeverity: "critical",
				LabelKind:     KindAnomaly,
			},
			Annotations: map[string]string{
				"summary": fmt.Sprintf(`Anomalies in %s: the worst score {{ $value | printf "%%.2f" }} has stayed above %s for %s.`, groupName(g.groupBy), c, g.crit.For),
				"description": groupTmpl(g.groupBy, fmt.Sprintf(
					`{{ with query (printf "count(anomaly_score{%%s} > %[1]s)" $sel) }}{{ . | first | value }}{{ else }}0{{ end }} series score above %[1]s and `+
						`{{ with query (printf "count(anomaly_score{%%s} > %[2]s)" $sel) }}{{ . | first | value }}{{ else }}0{{ end }} above %[2]s. Worst:`+
						`{{ range query (printf "topk(5, anomaly_score{%%s})" $sel) | sortByLabel "for" }} {{ .Labels.for }} ({{ .Value | printf "%%.2f" }}){{ end }}`,
					c, w)),
				"runbook_url": g.runbookURL(AlertAnomalyCritical),
			},
		},
	}
}
