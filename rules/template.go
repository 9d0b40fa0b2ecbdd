package rules

import (
	"fmt"
	"strings"
)

// Alert annotations query Prometheus for the context of the alert: the value
// of the input, omen's expected band, the other anomalous series of a group.
// Go templates cannot build a selector from a label map in one call, so each
// annotation starts with a prelude that folds $labels into selector strings
// (text/template allows reassigning a variable inside range since Go 1.11).
//
// Label values are quoted with %q: Go's quoting is a subset of what PromQL
// string literals accept, so any label value round-trips.

// preludeSeries defines, for an alert on a single scored series:
//   - $sel: the matchers of all its labels but __name__, trailing comma
//     included (PromQL accepts it), to select yhat, yhat_lower, ... of the
//     same input (without the exported_ copies exportRuleLabels adds, and
//     with the input's own exported_ labels it moved a level down under
//     their own names: $n; and without omen_instance, which the scrape
//     puts on the incident gauges only, not on the outputs nor the input);
//   - $in: the selector of the input series itself: __name__ is the value of
//     `for`, the other labels are the same minus `for`, an input's own
//     label for being exported_for on the outputs (exported_for
//     exported_exported_for, and so on);
//   - $q and $per: the query of the value omen scored, and its unit: a
//     counter's (omen_model_ready{kind="counter"}: by its metadata, or by
//     its name without: _total, _count, _sum, _bucket; by the name here too
//     where this Prometheus has no omen_model_ready of the input; an input
//     label kind is exported_kind on it, exported_kind
//     exported_exported_kind, and so on; the current one, else the latest
//     in 10 minutes, so a failed scrape of omen or its restart changes
//     nothing, and a series retyped is read as it is now) is scored as a
//     per-second rate
//     between consecutive samples, and its band is one, so
//     irate (the same rate, of the last two samples) is what is compared
//     with it: not the running total, and not a rate over 5m, which lags a
//     step by minutes. The name alone misread a gauge named _count
//     (pg_stat_activity_count: "0/s, below [15, 25]") and a counter
//     without _total (its running total "above the band").
//
// $o is the name a label of the alert has on omen's outputs other than the
// forecasts (anomaly_score, omen_model_ready), from which $in and $ready
// start: the same for the anomaly alerts, which read the incident gauges.
var preludeSeries = `{{- $sel := "" -}}{{- $ready := "" -}}{{- $in := printf "__name__=%q," $labels.for -}}
` + selLabels + outputLabel + `
{{- if match "^(exported_)*kind$" $o -}}{{- $ready = printf "%sexported_%s=%q," $ready $o $v -}}{{- else -}}{{- $ready = printf "%s%s=%q," $ready $o $v -}}{{- end -}}
{{- if ne $k "for" -}}{{- $in = printf "%s%s=%q," $in (reReplaceAll "^exported_((exported_)*for)$" "$1" $o) $v -}}{{- end -}}
{{- end -}}{{- end -}}
{{- $q := printf "{%s}" $in -}}{{- $per := "" -}}
{{- $counter := match "_(total|count|sum|bucket)$" $labels.for -}}
{{- with query (printf "omen_model_ready{%s} or ignoring(kind) topk(1, last_over_time(timestamp(omen_model_ready{%s})[10m:15s]))" $ready $ready) -}}{{- with first . -}}{{- $counter = eq .Labels.kind "counter" -}}{{- end -}}{{- end -}}
{{- if $counter -}}{{- $q = printf "irate({%s}[5m])" $in -}}{{- $per = "/s" -}}{{- end -}}
`

// selLabels opens the loop of preludeSeries and preludeSel over the
// alert's labels and adds each to $sel; the caller ends the loop with
// {{- end -}}{{- end -}}.
var selLabels = `{{- range $k, $v := $labels -}}{{- if and (ne $k "__name__") (ne $k "` + LabelOmenInstance + `")` + notExported() + ` -}}
` + seriesLabel() + `
{{- $sel = printf "%s%s=%q," $sel $n $v -}}
`

// preludeSel defines $sel only, as preludeSeries does: for an annotation
// that reads one more series of the alert's input and not the input
// itself, without preludeSeries's query of omen_model_ready.
var preludeSel = `{{- $sel := "" -}}
` + selLabels + `{{- end -}}{{- end -}}
`

// seriesLabel defines $n in preludeSeries, the name a label of the alert
// has on the series it fired on: an input's own exported_<rule label>,
// which exportRuleLabels moved to exported_exported_<rule label>, is
// looked up under its own name.
func seriesLabel() string {
	return fmt.Sprintf(`{{- $n := reReplaceAll "^exported_((exported_)+(%s))$" "$1" $k -}}`, strings.Join(ruleLabels, "|"))
}

// notExported returns the template conditions that leave out the
// exported_ copies exportRuleLabels adds, one per rule label.
func notExported() string {
	var b strings.Builder
	for _, l := range ruleLabels {
		fmt.Fprintf(&b, " (ne $k %q)", "exported_"+l)
	}
	return b.String()
}

// inputValue prints the current value of the input, or n/a when this
// Prometheus does not hold it (a derived input lives in omen only).
const inputValue = `{{ with query $q }}{{ . | first | value | humanize }}{{ $per }}{{ else }}n/a{{ end }}`

// expectedBand prints yhat and its band, in the unit of the value omen
// scored ($per: a counter's "20/s in [18/s, 22/s]", beside its value
// "40/s", not a bare "20" that reads as its running total).
const expectedBand = `{{- with query (printf "yhat{%s}" $sel) -}}{{- . | first | value | humanize -}}{{- $per -}}{{- else -}}n/a{{- end -}}
{{- " in [" -}}
{{- with query (printf "yhat_lower{%s}" $sel) -}}{{- . | first | value | humanize -}}{{- $per -}}{{- else -}}n/a{{- end -}}
{{- ", " -}}
{{- with query (printf "yhat_upper{%s}" $sel) -}}{{- . | first | value | humanize -}}{{- $per -}}{{- else -}}n/a{{- end -}}
{{- "]" -}}`

// explanation says in words where the value stands against the band. It
// is an annotation of the alert on an incident's peak score ($value), which
// fires while the latest score is long back below 1: inside the band, the
// wording says which of the two drove it.
const explanation = `{{- $v := 0.0 -}}{{- $hasV := false -}}
{{- with query $q -}}{{- $v = . | first | value -}}{{- $hasV = true -}}{{- end -}}
{{- $lo := 0.0 -}}{{- $hi := 0.0 -}}{{- $hasB := false -}}
{{- with query (printf "yhat_lower{%s}" $sel) -}}{{- $lo = . | first | value -}}
{{- with query (printf "yhat_upper{%s}" $sel) -}}{{- $hi = . | first | value -}}{{- $hasB = true -}}{{- end -}}
{{- end -}}
{{- if not $hasB -}}omen exposes no expected band for this series.
{{- else if not $hasV -}}The input is not stored in this Prometheus (a derived input?); its expected band is [{{ $lo | humanize }}{{ $per }}, {{ $hi | humanize }}{{ $per }}].
{{- else if gt $v $hi -}}The value {{ $v | humanize }}{{ $per }} is above the expected band [{{ $lo | humanize }}{{ $per }}, {{ $hi | humanize }}{{ $per }}].
{{- else if lt $v $lo -}}The value {{ $v | humanize }}{{ $per }} is below the expected band [{{ $lo | humanize }}{{ $per }}, {{ $hi | humanize }}{{ $per }}].
{{- else -}}{{- $s := -1.0 -}}{{- with query (printf "anomaly_score{%s}" $sel) -}}{{- $s = . | first | value -}}{{- end -}}
{{- if gt $s 1.0 -}}The value {{ $v | humanize }}{{ $per }} is inside the expected band [{{ $lo | humanize }}{{ $per }}, {{ $hi | humanize }}{{ $per }}]: the score {{ $s | printf "%.2f" }} comes from the recent pattern (a shift in level, spread or seasonality), not from this sample alone.
{{- else -}}The value {{ $v | humanize }}{{ $per }} is inside the expected band [{{ $lo | humanize }}{{ $per }}, {{ $hi | humanize }}{{ $per }}] now{{ if ge $s 0.0 }} and scores {{ $s | printf "%.2f" }}{{ end }}: the alert is on the incident's peak score {{ $value | printf "%.2f" }}, scored before the detector damps an event's follow-ups, and holds while the incident goes on. A band widened by an earlier anomaly can take in a later shift; compare yhat_lower and yhat_upper with the input over the incident.
{{- end -}}
{{- end -}}`

// outputLabel defines $o in preludeSeries for an alert on one of omen's
// outputs other than the forecasts: its labels are named as there.
const outputLabel = `{{- $o := $n -}}`

// forecastLabel defines $o for an alert on a forecast family: an input's own
// horizon label is exported_horizon on the forecasts only (exported_horizon
// exported_exported_horizon, and so on), and horizon on anomaly_score and
// omen_model_ready, as on the input. Without it a capacity alert on an
// input with a horizon label looked for the input, and its model's kind,
// under exported_horizon, and showed its value as n/a.
const forecastLabel = `{{- $o := reReplaceAll "^exported_((exported_)*horizon)$" "$1" $n -}}`

// seriesTmpl prefixes body with the single-series prelude.
func seriesTmpl(body string) string { return preludeSeries + body }

// forecastTmpl prefixes body with the single-series prelude for an alert on
// a forecast family.
func forecastTmpl(body string) string {
	return strings.Replace(preludeSeries, outputLabel, forecastLabel, 1) + body
}

// groupTmpl prefixes body with a prelude defining $sel, the matchers of the
// group an aggregate alert is about. Every group_by label is matched, absent
// ones as "", so the group without a namespace does not count the series of
// every namespace.
func groupTmpl(groupBy []string, body string) string {
	var format, args strings.Builder
	for _, l := range groupBy {
		format.WriteString(l + "=%q,")
		args.WriteString(" $labels." + l)
	}
	return "{{- $sel := printf \"" + format.String() + "\"" + args.String() + " -}}\n" + body
}

// groupName renders the group labels of an aggregate alert for a summary,
// for example "namespace={{ $labels.namespace }}, job={{ $labels.job }}".
func groupName(groupBy []string) string {
	parts := make([]string, len(groupBy))
	for i, l := range groupBy {
		parts[i] = l + "={{ $labels." + l + " }}"
	}
	return strings.Join(parts, ", ")
}
