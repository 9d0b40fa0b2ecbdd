package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// TestNaNInputEndsIncident: an input that turns NaN after an anomaly (a
// recording rule's ratio with no traffic, 0/0) kept its last score and its
// incident on /metrics and in the API for as long as it stayed NaN, an
// alert firing with no data behind it: its samples were skipped before
// scoring, yet counted as seen. A NaN sample now scores 0 with no band,
// and the incident ends after the hold, ingested or derived alike.
func TestNaNInputEndsIncident(t *testing.T) {
	for _, derived := range []bool{false, true} {
		t.Run(map[bool]string{false: "ingested", true: "derived"}[derived], func(t *testing.T) {
			var (
				e   *env
				sel []*labels.Matcher
			)
			ls := []labels.Labels{labels.FromStrings("__name__", "errors", "svc", "a"), labels.FromStrings("__name__", "requests", "svc", "a")}
			eval := func(int64) {}
			if derived {
				var cfg *config.Config
				e, cfg = derivedEnv(t, "derived:\n  - {name: ratio, expr: errors / requests, interval: 15s}\n")
				sel = []*labels.Matcher{eq("__name__", "ratio")}
				eval = func(ts int64) { e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts)) }
			} else {
				e = newEnv(t, "", nil, nil)
				ls = ls[:1]
				sel = []*labels.Matcher{eq("__name__", "errors")}
			}
			vs := seasonal(401, 5)
			vs[400] += 1000
			for i := range 401 + 40 {
				ts := t0.UnixMilli() + int64(i)*stepMs
				e.clock.set(time.UnixMilli(ts))
				v := []float64{vs[min(i, 400)], 100}
				if i > 400 {
					v = []float64{math.NaN(), 0} // 0/0 for a derived ratio
					if derived {
						v[0] = 0
					}
				}
				e.push(ts, model.MetricTypeGauge, ls, v[:len(ls)])
				eval(ts)
				if i == 400 {
					e.sync()
					got := e.p.Anomalies([][]*labels.Matcher{sel})
					require.Len(t, got, 1)
					require.Greater(t, got[0].Score, 1.0, "the anomaly")
				}
			}
			e.sync()
			got := e.p.Anomalies([][]*labels.Matcher{sel})
			require.Len(t, got, 1)
			require.False(t, got[0].Active, "ten minutes of NaN after the anomaly: no incident")
			require.Zero(t, got[0].Score)
			var b bytes.Buffer
			require.NoError(t, e.p.WriteOutputs(&b))
			// The input's incident; in the derived case the errors that
			// feed it sit at exactly 0 for the ten minutes, a series
			// that stopped moving, whose incident goes on (the flat
			// member, detect/flat.go).
			require.NotContains(t, b.String(), `omen_incident_peak_score{svc="a",for="`+sel[0].Value+`"`)
			require.NotContains(t, b.String(), `yhat_upper{svc="a",for="`+sel[0].Value+`"`, "no band for a NaN")
			require.NotContains(t, b.String(), `forecast{svc="a",for="`+sel[0].Value+`"`, "no forecast made before ten minutes of NaN")
		})
	}
}

// TestFailingDerivedLeavesMetrics: a derived input whose evaluations fail
// (a second metric joins its result with the same labels) kept its last
// outputs, an anomalous score with them, on /metrics until the sweep an
// hour later: derived inputs were exempt from the lookback that takes a
// silent ingested input's off. They leave after the lookback plus one
// interval now; one evaluated hourly keeps its outputs between
// evaluations.
func TestFailingDerivedLeavesMetrics(t *testing.T) {
	e, cfg := derivedEnv(t, "derived:\n  - {name: d, expr: '{__name__=~\"m|n\"}', interval: 15s}\n  - {name: hourly, expr: 'm * 2', interval: 1h}\n")
	m := labels.FromStrings("__name__", "m", "pod", "a")
	n := labels.FromStrings("__name__", "n", "pod", "a")
	vs := seasonal(401, 5)
	vs[400] += 1000
	at := func(i int) time.Time { return time.UnixMilli(t0.UnixMilli() + int64(i)*stepMs) }
	for i := range 401 {
		e.clock.set(at(i))
		e.push(at(i).UnixMilli(), model.MetricTypeGauge, []labels.Labels{m}, []float64{vs[i]})
		e.p.evalDerived(context.Background(), &cfg.Derived[0], at(i))
		if i%240 == 0 || i == 400 {
			e.p.evalDerived(context.Background(), &cfg.Derived[1], at(i))
		}
	}
	e.sync()
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d")}})
	require.Len(t, got, 1)
	require.Greater(t, got[0].Score, 1.0)
	// 30 minutes of failing evaluations.
	for i := 401; i < 401+120; i++ {
		e.push(at(i).UnixMilli(), model.MetricTypeGauge, []labels.Labels{m, n}, []float64{vs[i%400], 1})
		e.clock.set(at(i))
		e.p.evalDerived(context.Background(), &cfg.Derived[0], at(i))
	}
	e.sync()
	require.Positive(t, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("d")))
	var b bytes.Buffer
	require.NoError(t, e.p.WriteOutputs(&b))
	require.NotContains(t, b.String(), `for="d"`, "30 minutes without a value, the last outputs stay")
	require.Contains(t, b.String(), `anomaly_score{pod="a",for="hourly",job="",instance=""}`, "evaluated 30 minutes ago, due in 30")
	require.NotContains(t, b.String(), "omen_incident_peak_score")
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, "hourly") {
			lines = append(lines, l)
		}
	}
	require.NotEmpty(t, lines)
}

// TestScrapeDuringIngest: /metrics read each series' last arrival while
// the worker wrote it (go test -race).
func TestScrapeDuringIngest(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := []labels.Labels{labels.FromStrings("__name__", "m")}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, ls, []float64{float64(i % 7)})
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		var b bytes.Buffer
		require.NoError(t, e.p.WriteOutputs(&b))
		time.Sleep(100 * time.Microsecond)
	}
}

// TestNaNKeepsOneEvent: a blip, six NaN samples, another blip. The NaNs
// were counted twice toward the gap between events (as quiet samples, and
// again in the next number's Missed): twelve, so two events and a duration
// of 0, where six samples without a number keep one event of 105 s.
func TestNaNKeepsOneEvent(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := []labels.Labels{labels.FromStrings("__name__", "ratio")}
	vs := seasonal(400, 5)
	for i := range 408 {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.clock.set(time.UnixMilli(ts))
		v := math.NaN()
		switch {
		case i < 400:
			v = vs[i]
		case i == 400 || i == 407:
			v = vs[399] + 1000
		}
		e.push(ts, model.MetricTypeGauge, ls, []float64{v})
	}
	e.sync()
	var b bytes.Buffer
	require.NoError(t, e.p.WriteOutputs(&b))
	require.Contains(t, b.String(), `omen_incident_duration_seconds{for="ratio",job="",instance=""} 105`)
}

// TestGroupMemberSentinel: a group member's sentinel beyond float32's
// range is as missing, as its NaN is: the group stays ready (it read as
// warming again, scored 0, and moved omen_models_warming down twice).
func TestGroupMemberSentinel(t *testing.T) {
	for _, bad := range []float64{math.NaN(), math.MaxFloat64, math.Inf(1)} {
		t.Run(fmt.Sprint(bad), func(t *testing.T) {
			e, cfg := derivedEnv(t, "derived:\n  - {name: g, interval: 1h, by: [pod], members: [{name: a, expr: a}, {name: b, expr: b}]}\n")
			ls := []labels.Labels{labels.FromStrings("__name__", "a", "pod", "p"), labels.FromStrings("__name__", "b", "pod", "p")}
			rng := rand.New(rand.NewPCG(1, 2))
			eval := func(i int, vs []float64) {
				ts := t0.UnixMilli() + int64(i)*stepMs
				e.push(ts, model.MetricTypeGauge, ls, vs)
				e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
				e.sync()
			}
			for i := range 400 {
				eval(i, []float64{10 + rng.NormFloat64(), 5 + rng.NormFloat64()})
			}
			w0 := testutil.ToFloat64(e.p.m.warming)
			eval(400, []float64{10, bad})
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "g")}})
			require.Len(t, got, 1)
			require.True(t, got[0].Ready)
			eval(401, []float64{10, 5})
			require.Equal(t, w0, testutil.ToFloat64(e.p.m.warming), "omen_models_warming")
		})
	}
}

// TestCounterSentinel: a counter's sentinel (or ±Inf) was taken as its
// running total, so the next number read as a reset from it: a rate of
// the whole total over one interval, scored 10.7.
func TestCounterSentinel(t *testing.T) {
	for _, bad := range []float64{math.NaN(), math.MaxFloat64, math.Inf(1)} {
		t.Run(fmt.Sprint(bad), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var vs []float64
			c := 1e6
			for i := range 800 {
				c += 150 + 10*rng.NormFloat64()
				vs = append(vs, c)
				if i == 700 {
					vs[i] = bad
				}
			}
			e := newEnv(t, "", nil, nil)
			e.feed(labels.FromStrings("__name__", "reqs_total", "job", "x"), model.MetricTypeCounter, vs)
			got := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "reqs_total"))
			require.Len(t, got, 1)
			for _, s := range got {
				for i, v := range s[len(s)-99:] { // after the bad sample
					require.Less(t, v, 1.0, "sample %d after", i)
				}
			}
		})
	}
}
