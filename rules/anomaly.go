package rules

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"

	"github.com/omen-sidecar/omen/config"
)

// Alert names of the anomaly group.
const (
	AlertSeriesAnomalous = "OmenSeriesAnomalous"
	AlertAnomalyCritical = "OmenAnomalyCritical"
)

// The per-series incident gauges omen exposes on /metrics while an input
// is in an incident (see the pipeline): the alerting rules read these, not
// anomaly_score, whose follow-up scores the detector damps.
const (
	metricIncidentPeak     = "omen_incident_peak_score"
	metricIncidentDuration = "omen_incident_duration_seconds"
	// metricModelReady is on /metrics for every scored input, whatever its
	// score.
	metricModelReady = "omen_model_ready"
)

// incidents selects the series in an incident that reached tier t: peak
// score above t.Score and an event that has gone on for t.For.
func incidents(t config.Tier) string { return incidentsOf(t, "") }

// incidentsOf is incidents with sel after each metric name: "{%s}" makes it
// a template's printf format over a selector, one argument per "%s".
func incidentsOf(t config.Tier, sel string) string {
	expr := fmt.Sprintf("%s%s > %s", metricIncidentPeak, sel, num(t.Score))
	if secs := time.Duration(t.For).Seconds(); secs > 0 {
		expr = fmt.Sprintf("%s and %s%s >= %s", expr, metricIncidentDuration, sel, num(secs))
	}
	return expr
}

// tierQuery returns, for a template over the group selector $sel, the
// printf format and arguments of incidents(t) in the group.
func tierQuery(t config.Tier) (format, args string) {
	format = incidentsOf(t, "{%s}")
	return format, strings.Repeat(" $sel", strings.Count(format, "%s"))
}

// forWording words a tier's duration for the descriptions ("" for none).
func forWording(t config.Tier) string {
	if t.For == 0 {
		return ""
	}
	return fmt.Sprintf(" for %s or more", t.For)
}

// goneOn words a tier's duration for the summaries ("" for none).
func goneOn(t config.Tier) string {
	if t.For == 0 {
		return ""
	}
	return fmt.Sprintf(" has gone on for %s or more", t.For)
}

// recordingRules aggregate anomaly_score per group, count the scored
// series per group, and count the series in an incident (any that scored
// above the warning tier within the incident hold) per group, per group
// label and overall. The counts only exist while some series is in one, as
// usual for count(); dashboards add `or vector(0)` where they need a zero.
func (g generator) recordingRules() []rulefmt.Rule {
	w := num(g.warning.Score)
	anomalous := fmt.Sprintf("%s > %s", metricIncidentPeak, w)
	rules := []rulefmt.Rule{
		{Record: g.level() + ":anomaly_score:max", Expr: fmt.Sprintf("max %s (anomaly_score)", g.by())},
		// omen_model_ready, one per scored input, not anomaly_score, which
		// --output.score-floor hides below the floor: with a floor of 0.5,
		// 2 of 200 scored series counted, and the overview's share of
		// series anomalous was of those.
		{Record: g.level() + ":omen_scored_series:count", Expr: fmt.Sprintf("count %s (%s)", g.by(), metricModelReady)},
		{Record: g.level() + ":omen_anomalous_series:count", Expr: fmt.Sprintf("count %s (%s)", g.by(), anomalous)},
	}
	if len(g.groupBy) > 1 {
		for _, l := range g.groupBy {
			rules = append(rules, rulefmt.Rule{
				Record: l + ":omen_anomalous_series:count",
				Expr:   fmt.Sprintf("count by (%s) (%s)", l, anomalous),
			})
		}
	}
	rules = append(rules, rulefmt.Rule{
		Record: "omen:anomalous_series:count",
		Expr:   fmt.Sprintf("count(%s)", anomalous),
	})
	return rules
}

// anomalyRules tickets single series and pages on groups, on incidents: an
// incident opens at a score above 1 and lasts while the detector's event
// goes on, plus the incident hold. The detector scores a lasting change
// above 1 at its start only and damps what follows while it takes the
// change in, so `anomaly_score > 1` held for minutes almost never happens,
// even in a real incident; a tier's `for` is how long the incident's event
// must have gone on, which a glitch or a false alarm (over at once) never
// reaches. An incident that reached the warning tier on one series is
// usually worth a look, rarely worth waking someone: it goes out as a
// warning carrying the value, the band and an explanation. A page is one
// per group (namespace and job by default) with an incident that reached
// the critical tier; Alertmanager inhibits the group's single-series
// tickets while the page fires. Both resolve when the incident ends, after
// keep_firing_for (alerting.keep_firing_for, 2m), which bridges a failed
// scrape of omen or its restart: the incident gauges leave /metrics then.
func (g generator) anomalyRules() []rulefmt.Rule {
	w, c := num(g.warning.Score), num(g.crit.Score)
	page := fmt.Sprintf("max %s (%s)", g.by(), incidents(g.crit))
	critQ, critArgs := tierQuery(g.crit)
	warnQ, warnArgs := tierQuery(g.warning)
	if slices.ContainsFunc(g.groupBy, func(l string) bool { return slices.Contains(ruleLabels, l) }) {
		page = exportRuleLabels(page)
	}
	return []rulefmt.Rule{
		{
			Alert:         AlertSeriesAnomalous,
			Expr:          exportRuleLabels(incidents(g.warning)),
			KeepFiringFor: g.keepFiring,
			Labels: map[string]string{
				LabelSeverity: "warning",
				LabelKind:     KindAnomaly,
			},
			Annotations: map[string]string{
				"summary":     fmt.Sprintf(`{{ $labels.for }} is anomalous: an incident with peak score {{ $value | printf "%%.2f" }} (above %s)%s.`, w, goneOn(g.warning)),
				"value":       seriesTmpl(inputValue),
				"expected":    seriesTmpl(expectedBand),
				"explanation": seriesTmpl(explanation),
				"runbook_url": g.runbookURL(AlertSeriesAnomalous),
			},
		},
		{
			Alert:         AlertAnomalyCritical,
			Expr:          page,
			KeepFiringFor: g.keepFiring,
			Labels: map[string]string{
				LabelSeverity: "critical",
				LabelKind:     KindAnomaly,
			},
			Annotations: map[string]string{
				"summary": fmt.Sprintf(`Anomalies in %s: an incident with peak score {{ $value | printf "%%.2f" }} (above %s)%s.`, groupName(g.groupBy), c, goneOn(g.crit)),
				// The counts and the worst are of the incidents that reached
				// a tier, its for included, as the alerts are: counted by
				// peak alone, a glitch (over at once, which never pages) was
				// one of the "series above 2" and, peaking highest, headed
				// the list, over the incident that paged.
				"description": groupTmpl(g.groupBy, fmt.Sprintf(
					`{{ with query (printf "count(%s)"%s) }}{{ . | first | value }}{{ else }}0{{ end }} series in incidents above %s%s, `+
						`{{ with query (printf "count(%s)"%s) }}{{ . | first | value }}{{ else }}0{{ end }} above %s%s. Worst:`,
					critQ, critArgs, c, forWording(g.crit), warnQ, warnArgs, w, forWording(g.warning))+
					worst(g.groupBy, "("+critQ+") or ("+warnQ+")", critArgs+warnArgs)),
				"runbook_url": g.runbookURL(AlertAnomalyCritical),
			},
		},
	}
}

// worst lists the five highest incident peaks of the group in $sel among
// the incidents the printf format q selects (with args), highest first,
// each as its input's name and the labels that tell it from the group's
// other series (for http_requests_total{instance="b"} (2.00)): by name
// alone, the series of one metric in a group (its pods, its status codes)
// read the same, and the page did not say which to look at.
func worst(groupBy []string, q, args string) string {
	var skip strings.Builder
	for _, l := range append([]string{model.MetricNameLabel, "for"}, groupBy...) {
		fmt.Fprintf(&skip, " (ne $k %q)", l)
	}
	return fmt.Sprintf(`{{ range query (printf "sort_desc(topk(5, %s))"%s) }} {{ .Labels.for }}`+
		`{{- $l := "" }}{{ range $k, $v := .Labels }}{{ if and%s }}{{ $l = printf "%%s%%s=%%q, " $l $k $v }}{{ end }}{{ end }}`+
		`{{- with $l }}{{ "{" }}{{ reReplaceAll ", $" "" . }}{{ "}" }}{{ end }} ({{ .Value | printf "%%.2f" }}){{ end }}`,
		q, args, skip.String())
}
