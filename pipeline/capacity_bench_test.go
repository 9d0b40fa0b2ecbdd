package pipeline

// Run: go test -run '^$' -bench Capacity -benchtime 1x ./pipeline
// (make bench-capacity)

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"

	"github.com/omen-sidecar/omen/detect"
)

// capShapes are the SRE-shaped series BenchmarkCapacity compares omen's
// forecasts on with PromQL's predict_linear, one sample a minute:
//
//   - disk: a filesystem's used bytes (limit 100) growing 2.5 an hour,
//     with a cleanup every 8 hours that removes what grew since the one
//     before (a sawtooth about 60-80, creeping up 0.1 an hour), until the
//     cleanups stop on day 4 and the disk fills (about 8 hours later);
//   - memleak: a process's memory leaking 20 MB an hour from 200 MB, each
//     run ended by a restart after 6-14 hours;
//   - requests: a request rate with a daily cycle (±60% about 100/s), a
//     trend of 5% a day, Poisson noise and a slow wander;
//   - rate: a counter's rate(…[5m]) at about 50/s with a slow wander;
//   - flat: a gauge at 50 with Gaussian noise of 2;
//   - ramp: a pure linear trend, 1 an hour from 10, with Gaussian noise
//     of 0.3 (predict_linear's own model).
var capShapes = []string{"disk", "memleak", "requests", "rate", "flat", "ramp"}

// Settings of BenchmarkCapacity: the horizons users set for capacity
// alerts and autoscaling, the predict_linear windows in common use, the
// sample interval, the length of a run, and where its scoring starts
// (after both methods have warmed up: omen forecasts after 192 steps of
// 4 minutes, 12.8 hours).
var (
	capHorizons = []time.Duration{5 * time.Minute, 30 * time.Minute, 4 * time.Hour}
	capWindows  = []time.Duration{15 * time.Minute, time.Hour, 6 * time.Hour}
)

const (
	capInterval = time.Minute
	capDays     = 4
	capFrom     = 24 * time.Hour
	capLimit    = 100.0 // the disk's size
	capSeeds    = 5
)

// capSeries is one synthetic run: its samples (a minute apart from t0)
// and, for the disk, the time it fills (the first sample at or above
// capLimit; the run ends there).
type capSeries struct {
	t0   int64
	v    []float64
	full int64 // 0: never
}

func capGenerate(shape string, seed uint64) capSeries {
	r := rand.New(rand.NewPCG(seed, 11))
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
	n := int(capDays * 24 * time.Hour / capInterval)
	s := capSeries{t0: t0, v: make([]float64, 0, n+600)}
	ivH := capInterval.Hours()
	switch shape {
	case "disk":
		const grow, period, creep = 2.5, 8.0, 0.1 // per hour, hours, per hour
		phase := r.Float64() * period
		stop := 72 + r.Float64()*12 // hours: the cleanups stop on day 4
		level := 60.0
		for i := 0; ; i++ {
			h := float64(i) * ivH
			level += (grow + creep) * ivH
			// Small writes and deletions: a random walk about the trend.
			level += 0.02 * r.NormFloat64()
			if h < stop && math.Mod(h+phase, period) < ivH {
				level -= grow * period
			}
			s.v = append(s.v, level)
			if level >= capLimit {
				s.full = t0 + int64(i)*capInterval.Milliseconds()
				return s
			}
		}
	case "memleak":
		const base, leak = 200.0, 20.0
		next, since := 6+8*r.Float64(), 0.0
		for i := range n {
			h := float64(i) * ivH
			if h-since >= next {
				since, next = h, 6+8*r.Float64()
			}
			s.v = append(s.v, base+leak*(h-since)+2*r.NormFloat64())
		}
	case "requests", "rate":
		a := math.Exp(-ivH / 0.5) // the wander's correlation: half an hour
		wander := 0.0
		for i := range n {
			h := float64(i) * ivH
			lambda := 50.0
			if shape == "requests" {
				lambda = 100 * (1 + 0.6*math.Sin(2*math.Pi*(h-9)/24)) * (1 + 0.05*h/24)
			}
			wander = a*wander + math.Sqrt(1-a*a)*0.03*r.NormFloat64()
			lambda *= 1 + wander
			// The rate over 5 minutes of Poisson counts (normal at
			// these counts).
			c := lambda * 300
			s.v = append(s.v, max(0, c+math.Sqrt(c)*r.NormFloat64())/300)
		}
	case "ramp":
		for i := range n {
			s.v = append(s.v, 10+float64(i)*ivH+0.3*r.NormFloat64())
		}
	case "flat":
		for range n {
			s.v = append(s.v, 50+2*r.NormFloat64())
		}
	}
	return s
}

// capResult is what one run measured: per horizon, the sums of the
// forecasts' symmetric absolute percentage errors (omen's, and
// predict_linear's per window) and absolute errors, omen's band hits, the
// count of checks; for the disk, the "full within 4h" alerts' lead times
// (0: missed) and false alarms, omen's then predict_linear's per window.
type capResult struct {
	smape, mae [][]float64 // [method][horizon]: 0 omen, 1+w predict_linear over capWindows[w]
	inside, n  []float64
	lead       []time.Duration
	falseAl    []float64
}

func smape(a, f float64) float64 {
	if a == 0 && f == 0 {
		return 0
	}
	return 200 * math.Abs(a-f) / (math.Abs(a) + math.Abs(f))
}

// capRun feeds s through a series' scoring and forecasting as the
// pipeline runs them (series.step with the default configuration but the
// horizons capHorizons), and through PromQL's predict_linear over each of
// capWindows, evaluated by promql.Engine on a storage holding s, and
// scores both against s itself. Forecasts are compared where omen made
// one (each forecaster step, 4 minutes), from capFrom on.
func capRun(tb testing.TB, s capSeries) capResult {
	ivMs := capInterval.Milliseconds()
	nm := 1 + len(capWindows)
	res := capResult{
		smape: make([][]float64, nm), mae: make([][]float64, nm),
		inside: make([]float64, len(capHorizons)), n: make([]float64, len(capHorizons)),
		lead: make([]time.Duration, nm), falseAl: make([]float64, nm),
	}
	for m := range nm {
		res.smape[m] = make([]float64, len(capHorizons))
		res.mae[m] = make([]float64, len(capHorizons))
	}
	pl := capPredictLinear(tb, s)
	se, so := newLiveSeries(tb, capHorizons)
	hs := se.fc.horizons
	buf := newFcBuf()
	// The alerts: omen's as `omen rules generate` writes a capacity alert
	// (max over the horizons up to 4h of forecast_upper at or above the limit),
	// predict_linear's as `predict_linear(x[w], 4*3600) > limit`, both
	// with the warning tier's for: 5m, evaluated every minute.
	const alertFor = 5 * time.Minute
	active := make([]int64, nm) // since when the condition holds, 0: not
	fired := make([]int64, nm)  // the current firing's start, 0: none
	from := s.t0 + capFrom.Milliseconds()
	within := func(start int64) bool { return s.full != 0 && s.full-start <= (4*time.Hour).Milliseconds() }
	alert := func(m int, t int64, cond bool) {
		if !cond {
			// A firing that resolves without the disk filling within 4
			// hours of its start was a false alarm.
			if fired[m] >= from && !within(fired[m]) {
				res.falseAl[m]++
			}
			active[m], fired[m] = 0, 0
			return
		}
		if active[m] == 0 {
			active[m] = t
		}
		if fired[m] == 0 && t-active[m] >= alertFor.Milliseconds() {
			fired[m] = t
			if t >= from && within(t) && res.lead[m] == 0 {
				res.lead[m] = time.Duration(s.full-t) * time.Millisecond
			}
		}
	}
	for i, v := range s.v {
		t := s.t0 + int64(i)*ivMs
		se.step(t, v, nil, &buf, so)
		if s.full != 0 {
			up := math.Inf(-1)
			for h := range hs {
				if se.fc.ok[h] {
					up = max(up, se.fc.pts[h].Upper)
				}
			}
			alert(0, t, up >= capLimit)
			for w := range capWindows {
				p, ok := pl[w][capHorizonIdx(4*time.Hour)][t]
				alert(1+w, t, ok && p > capLimit)
			}
		}
		if t < from || !se.fc.isNew {
			continue
		}
		for h, hd := range hs {
			j := i + int(hd/capInterval)
			if !se.fc.ok[h] || j >= len(s.v) {
				continue
			}
			a, pt := s.v[j], se.fc.pts[h]
			res.n[h]++
			res.smape[0][h] += smape(a, pt.Yhat)
			res.mae[0][h] += math.Abs(a - pt.Yhat)
			if pt.Lower <= a && a <= pt.Upper {
				res.inside[h]++
			}
			for w := range capWindows {
				p, ok := pl[w][h][t]
				if !ok {
					tb.Fatalf("no predict_linear at %d", t)
				}
				res.smape[1+w][h] += smape(a, p)
				res.mae[1+w][h] += math.Abs(a - p)
			}
		}
	}
	// A firing that lasted until the disk filled found it, however early
	// it started.
	for m := range nm {
		if s.full != 0 && fired[m] >= from && res.lead[m] == 0 {
			res.lead[m] = time.Duration(s.full-fired[m]) * time.Millisecond
		}
	}
	for m := range nm {
		for h := range hs {
			res.smape[m][h] /= res.n[h]
			res.mae[m][h] /= res.n[h]
		}
	}
	for h := range hs {
		res.inside[h] /= res.n[h]
	}
	return res
}

// newLiveSeries returns a series scored and forecast with the default
// configuration but the horizons hs, and the step options of a pipeline
// that forecasts every minute.
func newLiveSeries(tb testing.TB, hs []time.Duration) (*series, stepOpts) {
	sc := config0().Defaults
	det, err := detect.New(detectOptions(sc))
	if err != nil {
		tb.Fatal(err)
	}
	sc.ForecastHorizons = make([]model.Duration, len(hs))
	for i, h := range hs {
		sc.ForecastHorizons[i] = model.Duration(h)
	}
	d, names := horizonsOf(sc)
	se := &series{det: *det, fc: newFcState(d, names), name: "x"}
	return se, stepOpts{forecastEveryMs: time.Minute.Milliseconds(), holdMs: (5 * time.Minute).Milliseconds()}
}

func capHorizonIdx(h time.Duration) int { return slices.Index(capHorizons, h) }

// capPredictLinear returns predict_linear(x[w], h) for each window and
// horizon at each sample time of s, evaluated as a range query by
// PromQL's engine over a storage holding s: [window][horizon][ms].
func capPredictLinear(tb testing.TB, s capSeries) [][]map[int64]float64 {
	st := storeSeries(tb, s.t0, capInterval, s.v)
	defer st.Close()
	start, end := time.UnixMilli(s.t0), time.UnixMilli(s.t0+int64(len(s.v)-1)*capInterval.Milliseconds())
	out := make([][]map[int64]float64, len(capWindows))
	for w, wd := range capWindows {
		out[w] = make([]map[int64]float64, len(capHorizons))
		for h, hd := range capHorizons {
			qs := fmt.Sprintf("predict_linear(x[%s], %d)", model.Duration(wd), int(hd.Seconds()))
			out[w][h] = rangeFloats(tb, st, qs, start, end, capInterval)
		}
	}
	return out
}

// storeSeries returns a test storage holding v as the series x, its
// samples iv apart from t0 (a NaN: no sample). The caller closes it.
func storeSeries(tb testing.TB, t0 int64, iv time.Duration, v []float64) *teststorage.TestStorage {
	st := teststorage.New(tb)
	app := st.Appender(context.Background())
	lset := labels.FromStrings(model.MetricNameLabel, "x")
	for i, x := range v {
		if math.IsNaN(x) {
			continue
		}
		if _, err := app.Append(0, lset, t0+int64(i)*iv.Milliseconds(), x); err != nil {
			tb.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		tb.Fatal(err)
	}
	return st
}

// rangeFloats evaluates qs as a range query from start to end every step
// by PromQL's engine over st: its float samples by time (ms).
func rangeFloats(tb testing.TB, st storage.Queryable, qs string, start, end time.Time, step time.Duration) map[int64]float64 {
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Hour, LookbackDelta: 5 * time.Minute})
	q, err := eng.NewRangeQuery(context.Background(), st, nil, qs, start, end, step)
	if err != nil {
		tb.Fatal(err)
	}
	defer q.Close()
	r := q.Exec(context.Background())
	if r.Err != nil {
		tb.Fatal(r.Err)
	}
	mat, err := r.Matrix()
	if err != nil {
		tb.Fatal(err)
	}
	m := map[int64]float64{}
	for _, sr := range mat {
		for _, p := range sr.Floats {
			m[p.T] = p.F
		}
	}
	return m
}

// BenchmarkCapacity compares omen's forecasts with the obvious
// alternative, PromQL's predict_linear, on the SRE-shaped series of
// capShapes, capSeeds seeds each, at the horizons 5m, 30m and 4h. It
// prints, per shape and horizon, the median over the seeds of the
// forecasts' sMAPE (%) for omen and for predict_linear over 15m, 1h and
// 6h windows, omen's MAE against the best window's, and the coverage of
// omen's 95% band; for the disk, the lead time of a "full within 4h"
// alert written both ways (from the start of the first firing that the
// fill came within 4 hours of, or that lasted until it; median and least
// over the seeds, 0: missed) and its false alarms (firings that resolved
// without the disk filling within 4 hours of their start, mean per run).
// Its custom metrics are the medians too.
func BenchmarkCapacity(b *testing.B) {
	for _, shape := range capShapes {
		b.Run("shape="+shape, func(b *testing.B) {
			for range b.N {
				// One seed after the other: capRun fails the benchmark
				// with Fatal, which only its own goroutine may call.
				rs := make([]capResult, capSeeds)
				for seed := range capSeeds {
					rs[seed] = capRun(b, capGenerate(shape, uint64(seed)))
				}
				capReport(b, shape, rs)
			}
		})
	}
}

func capMedian(x []float64) float64 {
	x = slices.Clone(x)
	slices.Sort(x)
	n := len(x)
	if n%2 == 1 {
		return x[n/2]
	}
	return (x[n/2-1] + x[n/2]) / 2
}

func capReport(b *testing.B, shape string, rs []capResult) {
	over := func(f func(capResult) float64) float64 {
		x := make([]float64, len(rs))
		for i, r := range rs {
			x[i] = f(r)
		}
		return capMedian(x)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: sMAPE %% (median of %d seeds)\n", shape, len(rs))
	fmt.Fprintf(&sb, "%-8s %8s", "horizon", "omen")
	for _, w := range capWindows {
		fmt.Fprintf(&sb, " %8s", "pl["+model.Duration(w).String()+"]")
	}
	fmt.Fprintf(&sb, " %10s %9s\n", "MAE/best", "coverage")
	for h, hd := range capHorizons {
		hn := model.Duration(hd).String()
		om := over(func(r capResult) float64 { return r.smape[0][h] })
		fmt.Fprintf(&sb, "%-8s %8.3f", hn, om)
		for w := range capWindows {
			fmt.Fprintf(&sb, " %8.3f", over(func(r capResult) float64 { return r.smape[1+w][h] }))
		}
		// omen's MAE over the best window's, per seed, then the median.
		ratio := over(func(r capResult) float64 {
			best := math.Inf(1)
			for w := range capWindows {
				best = min(best, r.mae[1+w][h])
			}
			return r.mae[0][h] / best
		})
		cov := over(func(r capResult) float64 { return r.inside[h] })
		fmt.Fprintf(&sb, " %10.3f %8.1f%%\n", ratio, 100*cov)
		b.ReportMetric(om, "sMAPE-"+hn+"-omen")
		b.ReportMetric(ratio, "MAE/best-pl-"+hn)
		b.ReportMetric(100*cov, "coverage%-"+hn)
	}
	if shape == "disk" {
		fmt.Fprintf(&sb, "full within 4h alert: lead (median, least), false alarms (mean a run), missed\n")
		for m := range rs[0].lead {
			name := "omen"
			if m > 0 {
				name = "pl[" + model.Duration(capWindows[m-1]).String() + "]"
			}
			lead := over(func(r capResult) float64 { return r.lead[m].Minutes() })
			least := math.Inf(1)
			for _, r := range rs {
				least = min(least, r.lead[m].Minutes())
			}
			var fa, missed float64
			for _, r := range rs {
				fa += r.falseAl[m] / float64(len(rs))
				if r.lead[m] == 0 {
					missed++
				}
			}
			fmt.Fprintf(&sb, "  %-8s lead %5.0fm (least %3.0fm)  false %.1f  missed %.0f/%d\n", name, lead, least, fa, missed, len(rs))
			if m == 0 {
				b.ReportMetric(lead, "lead-min-omen")
				b.ReportMetric(fa, "false-alarms-omen")
			}
		}
	}
	// Printed, not logged: a benchmark's log is cut at 10 lines.
	fmt.Print(sb.String())
}
