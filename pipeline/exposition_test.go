package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/stretchr/testify/require"
)

// flatten turns metric families into sorted `name{labels} value` lines,
// labels sorted, so two expositions compare regardless of order.
func flatten(mfs map[string]*dto.MetricFamily) []string {
	var out []string
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(ls)
			v := m.GetGauge().GetValue()
			out = append(out, fmt.Sprintf("%s{%s} %v %s", name, strings.Join(ls, ","), v, mf.GetHelp()))
		}
	}
	sort.Strings(out)
	return out
}

// TestWriteOutputsMatchesCollector: the streamed exposition has exactly the
// series, values and help of the registry path, for every family filter
// and score floor, with label values that need escaping.
func TestWriteOutputsMatchesCollector(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	e.feed(labels.FromStrings("__name__", "temperature", "room", `a "quoted"\ value`+"\nnext"), model.MetricTypeGauge, spiked(seasonal(800, 3)))
	e.feed(labels.FromStrings("__name__", "load", "host", "b"), model.MetricTypeGauge, seasonal(300, 5))
	e.feed(labels.FromStrings("__name__", "fresh"), model.MetricTypeGauge, []float64{1, 2})

	for _, tc := range []struct {
		name     string
		families []string
		floor    float64
	}{
		{"all", AllFamilies, 0},
		{"score only", []string{FamilyScore}, 0},
		{"forecasts only", []string{FamilyForecastUpper, FamilyForecast}, 0},
		{"floor", AllFamilies, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.p.family = map[string]bool{}
			for _, f := range tc.families {
				e.p.family[f] = true
			}
			e.p.opts.ScoreFloor = tc.floor

			reg := prometheus.NewRegistry()
			require.NoError(t, reg.Register(e.p.Collector()))
			mfs, err := reg.Gather()
			require.NoError(t, err)
			want := map[string]*dto.MetricFamily{}
			for _, mf := range mfs {
				if !strings.HasPrefix(mf.GetName(), "omen_forecast_") { // accuracy: AccuracyCollector's
					want[mf.GetName()] = mf
				}
			}

			var buf bytes.Buffer
			require.NoError(t, e.p.WriteOutputs(&buf))
			parser := expfmt.NewTextParser(model.UTF8Validation)
			got, err := parser.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
			require.NoError(t, err, buf.String())
			require.NotEmpty(t, want)
			// The incident families go out whatever the filters say.
			require.Contains(t, want, familyIncidentPeak)
			require.Contains(t, want, familyIncidentDuration)
			require.Equal(t, flatten(want), flatten(got))
		})
	}
}

func TestWriteOutputsPassesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("OMEN_E2E") == "1" {
			t.Fatal("promtool not found on PATH; make deps-e2e installs it")
		}
		t.Skip("promtool not found on PATH (set OMEN_E2E=1 to make this a failure)")
	}
	e := newEnv(t, "", nil, nil)
	e.feed(labels.FromStrings("__name__", "temperature", "room", `x"\`), model.MetricTypeGauge, spiked(seasonal(800, 3)))
	// Remote write accepts UTF-8 label names; the text format 0.0.4 has
	// none, so they are escaped as client_golang escapes (underscores).
	e.feed(labels.FromStrings("__name__", "load", "service.name", "api"), model.MetricTypeGauge, seasonal(300, 5))
	// Escaped, service.name would clash with service_name: value-encoded.
	e.feed(labels.FromStrings("__name__", "dup", "service.name", "a", "service_name", "b"), model.MetricTypeGauge, seasonal(300, 6))
	var buf bytes.Buffer
	require.NoError(t, e.p.WriteOutputs(&buf))
	require.Contains(t, buf.String(), `anomaly_score{service_name="api",for="load",job="",instance=""}`)
	require.Contains(t, buf.String(), `anomaly_score{U__service_2e_name="a",service_name="b",for="dup",job="",instance=""}`)
	require.Contains(t, buf.String(), `omen_incident_peak_score{room="x\"\\",for="temperature",job="",instance=""}`)
	// No label twice: Prometheus's parser refuses a sample with one, and
	// with it the whole scrape.
	tp := expfmt.NewTextParser(model.LegacyValidation)
	_, err = tp.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	// Prometheus's own scrape parser takes every line.
	parser := textparse.NewPromParser(buf.Bytes(), labels.NewSymbolTable(), false)
	for {
		_, err := parser.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Empty(t, string(out))
}

// spiked returns vs with a spike of 1000 in its last sample: the series
// ends in an incident.
func spiked(vs []float64) []float64 {
	vs[len(vs)-1] += 1000
	return vs
}

func TestAppendSampleSpecialValues(t *testing.T) {
	ls := &outLabelSet{names: []string{"for"}, vals: []string{"x"}}
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{math.NaN(), `a{for="x"} NaN` + "\n"},
		{math.Inf(1), `a{for="x"} +Inf` + "\n"},
		{math.Inf(-1), `a{for="x"} -Inf` + "\n"},
		{1.5e-7, `a{for="x"} 1.5e-07` + "\n"},
		{42, `a{for="x"} 42` + "\n"},
	} {
		require.Equal(t, tc.want, string(appendSample(nil, "a", ls, tc.v)))
	}
}

// TestFloorKeepsIncidents: --output.score-floor hides a series whose score
// is below it, but not while it is in an incident: the detector damps the
// follow-ups of an event far below the floor, and the alert's annotations
// read the band. Once the incident is over the floor applies again.
func TestFloorKeepsIncidents(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.ScoreFloor = 1 })
	ls := labels.FromStrings("__name__", "temperature")
	vs := seasonal(800, 3)
	vs[700] += 1000
	exposed := func() bool {
		var buf bytes.Buffer
		require.NoError(t, e.p.WriteOutputs(&buf))
		return strings.Contains(buf.String(), `yhat_upper{for="temperature",job="",instance=""}`)
	}
	e.feed(ls, model.MetricTypeGauge, vs[:703])
	require.Less(t, e.onlySeries().pub.score, 1.0, "damped")
	require.True(t, exposed(), "in an incident")
	for i := 703; i < len(vs); i++ {
		e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
	}
	e.sync()
	require.False(t, e.onlySeries().pub.active(e.p.opts.IncidentHold.Milliseconds()))
	require.False(t, exposed(), "the incident is over")
}

// TestFloorKeepsForecasts: --output.score-floor hides the anomaly outputs
// of a series scoring below it, not its forecasts: their readers (the
// generated capacity alerts, a KEDA trigger, prometheus-adapter's external
// metric) read them from the Prometheus that scrapes /metrics whatever the
// series scores, and a series that behaves scores below any floor. Hidden,
// the capacity alert never fired and KEDA's max(forecast or current rate)
// went on the current rate alone, with nothing to say so.
func TestFloorKeepsForecasts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		families []string
		want     []string // families exposed for the input
	}{
		{"every family", AllFamilies, []string{FamilyForecast, FamilyForecastLower, FamilyForecastUpper}},
		{"forecast_upper only", []string{FamilyForecastUpper}, []string{FamilyForecastUpper}},
		{"anomaly_score only", []string{FamilyScore}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) { o.ScoreFloor = 1 })
			e.p.family = map[string]bool{}
			for _, f := range tc.families {
				e.p.family[f] = true
			}
			e.feed(labels.FromStrings("__name__", "web_requests_per_second", "job", "web"), model.MetricTypeGauge, seasonal(800, 3))
			s := e.onlySeries()
			require.Less(t, s.pub.score, 1.0, "the input behaves")
			require.NotNil(t, s.fc, "and is forecast")

			for _, collect := range []struct {
				name string
				fn   func() string
			}{
				{"WriteOutputs", func() string {
					var buf bytes.Buffer
					require.NoError(t, e.p.WriteOutputs(&buf))
					return buf.String()
				}},
				{"Collector", func() string {
					reg := prometheus.NewRegistry()
					require.NoError(t, reg.Register(e.p.Collector()))
					mfs, err := reg.Gather()
					require.NoError(t, err)
					var buf bytes.Buffer
					for _, mf := range mfs {
						_, err := expfmt.MetricFamilyToText(&buf, mf)
						require.NoError(t, err)
					}
					return buf.String()
				}},
			} {
				out := collect.fn()
				parser := expfmt.NewTextParser(model.UTF8Validation)
				mfs, err := parser.TextToMetricFamilies(strings.NewReader(out))
				require.NoError(t, err, out)
				got := flatten(mfs)
				for _, f := range []string{FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper} {
					require.NotContains(t, mfs, f, "%s: %s is below the floor", collect.name, f)
				}
				for _, f := range []string{FamilyForecast, FamilyForecastLower, FamilyForecastUpper} {
					if !slices.Contains(tc.want, f) {
						require.NotContains(t, mfs, f, "%s: %s is not among the families", collect.name, f)
						continue
					}
					prefix := f + `{for="web_requests_per_second",horizon="15m",instance="",job="web"} `
					require.True(t, slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, prefix) }),
						"%s: %s whatever the score:\n%s", collect.name, f, out)
				}
			}
		})
	}
}

// TestIncidentEndsWhenSamplesStop: an incident is measured in sample time,
// so one whose series stops sending without a staleness marker is no
// longer exposed or listed once no sample has arrived for the hold or
// Prometheus's lookback (5m), whichever is longer; the series' other
// outputs leave /metrics then too (they held their last values for the
// hour until the sweep), the API still lists it with its last result's
// time, and a sample brings it all back, the incident while it is still
// within its hold.
func TestIncidentEndsWhenSamplesStop(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.IncidentHold = 2 * time.Minute })
	ls := labels.FromStrings("__name__", "temperature")
	vs := seasonal(703, 3)
	vs[700] += 1000
	e.feed(ls, model.MetricTypeGauge, vs[:702])
	scrape := func() string {
		var buf bytes.Buffer
		require.NoError(t, e.p.WriteOutputs(&buf))
		return buf.String()
	}
	listed := func() bool {
		list := e.p.Anomalies(nil)
		return len(list) == 1 && list[0].Active
	}
	require.Contains(t, scrape(), `omen_incident_peak_score{for="temperature",job="",instance=""}`)
	require.True(t, listed())

	for _, tc := range []struct {
		after time.Duration
		want  bool
	}{
		{4 * time.Minute, true}, // past the hold, within the lookback
		{5 * time.Minute, true},
		{5*time.Minute + time.Millisecond, false},
	} {
		e.clock.set(t0.Add(tc.after))
		out := scrape()
		require.Equal(t, tc.want, strings.Contains(out, "omen_incident_peak_score"), "%s without samples", tc.after)
		require.Equal(t, tc.want, strings.Contains(out, "omen_incident_duration_seconds"), "%s without samples", tc.after)
		require.Equal(t, tc.want, listed(), "%s without samples", tc.after)
		for _, f := range []string{`anomaly_score{for="temperature",job="",instance=""}`, `yhat_lower{for="temperature",job="",instance=""}`, `omen_model_ready{for="temperature",job="",instance="",kind="gauge"}`} {
			require.Equal(t, tc.want, strings.Contains(out, f), "%s: %s without samples", f, tc.after)
		}
		// Off the API with its outputs (it was listed, out of its
		// incident, until the sweep).
		require.Equal(t, tc.want, len(e.p.Anomalies(nil)) == 1, "%s without samples", tc.after)
	}
	e.push(t0.UnixMilli()+702*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[702:703])
	e.sync()
	out := scrape()
	require.Contains(t, out, "omen_incident_peak_score", "a sample within the incident's hold brings it back")
	require.Contains(t, out, `anomaly_score{for="temperature",job="",instance=""}`)
	require.True(t, listed())
}

// TestModelReadyKind: omen_model_ready says how the input is scored, by
// its metadata before its name; an input label named kind is kept as
// exported_kind.
func TestModelReadyKind(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	e.feed(labels.FromStrings("__name__", "pg_stat_activity_count", "kind", "db"), model.MetricTypeGauge, seasonal(10, 1))
	e.feed(labels.FromStrings("__name__", "nginx_connections_accepted"), model.MetricTypeCounter, seasonal(10, 2))
	var buf bytes.Buffer
	require.NoError(t, e.p.WriteOutputs(&buf))
	require.Contains(t, buf.String(), `omen_model_ready{exported_kind="db",for="pg_stat_activity_count",kind="gauge",job="",instance=""} 0`)
	require.Contains(t, buf.String(), `omen_model_ready{for="nginx_connections_accepted",job="",instance="",kind="counter"} 0`)
}

// TestExportedLabelsStayApart: an input label the outputs set themselves
// (for, a forecast's horizon, omen_model_ready's kind) is kept as
// exported_<name>; x{for="a"} and x{exported_for="a"} then gave one output
// series, on /metrics twice and in the TSDB interleaved, and so did kind
// and horizon.
func TestExportedLabelsStayApart(t *testing.T) {
	for _, name := range []string{"for", "kind", "horizon"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) { o.ForecastMaxSeries = 10 })
			for i, n := range []string{name, "exported_" + name, "exported_exported_" + name} {
				e.feed(labels.FromStrings("__name__", "x", n, "a"), model.MetricTypeGauge, seasonal(600, uint64(9+i)))
			}
			reg := prometheus.NewRegistry()
			require.NoError(t, reg.Register(e.p.Collector()))
			mfs, err := reg.Gather()
			require.NoError(t, err, "three inputs, three series of each family")
			for _, mf := range mfs {
				if mf.GetName() == "anomaly_score" || mf.GetName() == "omen_model_ready" {
					require.Len(t, mf.GetMetric(), 3, mf.GetName())
				}
			}
			require.Len(t, query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "x")), 3)
			var buf bytes.Buffer
			require.NoError(t, e.p.WriteOutputs(&buf))
			require.Contains(t, buf.String(), "\nforecast{", "forecasts made, their horizon label set")
			lines := strings.Split(buf.String(), "\n")
			for _, l := range lines {
				if strings.HasPrefix(l, "#") || l == "" {
					continue
				}
				series, _, _ := strings.Cut(l, "} ")
				require.Equal(t, 1, strings.Count(buf.String(), series+"} "), "once: %s", series)
			}
		})
	}
}

// TestWalkCopyBytes bounds the bytes a scrape's copy of the published
// results takes per series: walkOutputs copies the workers' series under
// their locks into a walkBuf, which the pool keeps between scrapes (or each
// scrape grows again once a collection emptied the pool). The whole
// published state was copied, 176 B a series, though a scrape reads 72 B
// of it, and the series' labels, read from the series once per family. The
// copy was as large as the largest worker's share of the series while the
// walk copied once per family; it is of all the series since it copies
// once per scrape, with what the labels are made of: 104 B a series (the
// logged figure), 32 of them the labels, which the walk of each family
// read from the series, a cache miss each (a third of the scrape's CPU at
// 10k series, BenchmarkCollect/streamed).
func TestWalkCopyBytes(t *testing.T) {
	const n = 2000
	e := warmEnv(t, n)
	var buf walkBuf
	count := 0
	e.p.walkOutputs([]string{FamilyScore}, &buf, func(string, *outLabelSet, float64) { count++ })
	require.Equal(t, n, count, "every series scored and exposed")
	perSeries := float64(cap(buf.list)) * float64(unsafe.Sizeof(buf.list[:1][0])) / n
	t.Logf("%.0f B a series held by the scrape's copy (%d workers, cap %d)", perSeries, len(e.p.workers), cap(buf.list))
	require.LessOrEqual(t, unsafe.Sizeof(buf.list[:1][0]), uintptr(104))
	// Sized once, to the series: grown by appending, the copy of an empty
	// buffer (a first scrape, or the pool emptied by two collections)
	// allocated 3.9 times the bytes it kept.
	require.Equal(t, n, cap(buf.list), "sized to the series")
	require.Empty(t, buf.list)
	require.Equal(t, make([]collected, n), buf.list[:n], "no series kept alive by the pooled copy")
}

// TestAppendEscaped: the text format's escapes, in label values (with the
// double quote) and in help (without), wherever they fall in the string.
func TestAppendEscaped(t *testing.T) {
	for _, tc := range []struct {
		in, value, help string
	}{
		{"", "", ""},
		{"plain", "plain", "plain"},
		{`\`, `\\`, `\\`},
		{"a\nb", `a\nb`, `a\nb`},
		{`"q"`, `\"q\"`, `"q"`},
		{"ünï \\\"\n\n€", `ünï \\\"\n\n€`, `ünï \\"\n\n€`},
		{"end\\", `end\\`, `end\\`},
	} {
		require.Equal(t, tc.value, string(appendEscaped([]byte("x"), tc.in, true))[1:], "%q", tc.in)
		require.Equal(t, tc.help, string(appendEscaped(nil, tc.in, false)), "%q", tc.in)
	}
}
