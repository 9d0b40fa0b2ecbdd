package pipeline

// Run: go test -run '^$' -bench Shapes -benchtime 1x ./pipeline
// (one shape: -bench 'Shapes/shape=sparse_errors_total')

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

const shapeDay = 24 * 60 * 4 // samples a day at 15 s

// sreShape is a series of a kind a Prometheus fleet is full of, fed to the
// pipeline one sample every 15 s (jitter ms off, if set) for shapeDays.
// gen returns the value at sample i (ok false: no sample, a target down);
// it is called once per i, in order. The alarm rate and incidents are
// counted over the normal span [from, to) (in days), the response to the
// change at day ev (0: none) over the hour after it, and, for a step, how
// soon yhat follows it.
type sreShape struct {
	name     string
	typ      model.MetricType
	gen      func() func(i int) (v float64, ok bool)
	jitter   func(i int) int64
	ev       int  // day of the change, 0 for none
	from, to int  // the normal span, in days
	step     bool // the change is a lasting step: report how soon yhat follows
}

// shapeDays is how long each shape runs: the default normal span is the
// days after the first (warm-up and first calibration) until the change
// on the last day.
const shapeDays = 8

// sreShapes are the shapes of BenchmarkShapes. Values that do not say
// otherwise come from seeded generators, so runs repeat.
func sreShapes() []sreShape {
	const ev = shapeDays - 1
	rng := func(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }
	at := func(day int) int { return day * shapeDay }
	step := func(before, after float64) func() func(int) (float64, bool) {
		return func() func(int) (float64, bool) {
			return func(i int) (float64, bool) {
				if i >= at(ev) {
					return after, true
				}
				return before, true
			}
		}
	}
	noisy := func(seed uint64, f func(r *rand.Rand, i int) float64) func() func(int) (float64, bool) {
		return func() func(int) (float64, bool) {
			r := rng(seed)
			return func(i int) (float64, bool) { return f(r, i), true }
		}
	}
	counter := func(seed uint64, rise func(r *rand.Rand, i int) float64) func() func(int) (float64, bool) {
		return func() func(int) (float64, bool) {
			r, c := rng(seed), 0.0
			return func(i int) (float64, bool) { c += rise(r, i); return c, true }
		}
	}
	jitter := func(ms int) func(int) int64 {
		return func(i int) int64 { return int64(rand.New(rand.NewPCG(uint64(i), 9)).IntN(2*ms+1) - ms) }
	}
	// sparse: a counter at 0 for two days, then errors at random, one
	// in every samples on average: the normal span starts a day after.
	sparse := func(every int) sreShape {
		return sreShape{typ: model.MetricTypeCounter, ev: 2, from: 3, to: shapeDays, gen: counter(16, func(r *rand.Rand, i int) float64 {
			if i >= at(2) && r.IntN(every) == 0 {
				return 1
			}
			return 0
		})}
	}
	shapes := []sreShape{
		// An error counter at 0 that counts 1, then 3 at once 6 hours later.
		{name: "zero_counter_total", typ: model.MetricTypeCounter, ev: ev, gen: step(0, 1)},
		{name: "zero_counter_burst_total", typ: model.MetricTypeCounter, ev: ev, gen: step(0, 3)},
		// Constant gauges that move by an ulp or by 1e-9 and stay.
		{name: "const_ulp", typ: model.MetricTypeGauge, ev: ev, step: true, gen: step(42, math.Nextafter(42, 43))},
		{name: "const_1e-9", typ: model.MetricTypeGauge, ev: ev, step: true, gen: step(42, 42+1e-9)},
		{name: "zero_to_1e-9", typ: model.MetricTypeGauge, ev: ev, step: true, gen: step(0, 1e-9)},
		// A replica count that steps and stays.
		{name: "replicas_3_to_4", typ: model.MetricTypeGauge, ev: ev, step: true, gen: step(3, 4)},
		// Counters incremented 0-3 times per scrape (Poisson λ 0.5).
		{name: "poisson_0.5_total", typ: model.MetricTypeCounter, gen: counter(1, func(r *rand.Rand, _ int) float64 { return float64(poisson(r, 0.5)) })},
		// Errors that start after two quiet days and go on at random,
		// one every 40 / 160 / 480 samples (10 minutes to 2 hours).
		func() sreShape { s := sparse(40); s.name = "sparse_errors_1in40_total"; return s }(),
		func() sreShape { s := sparse(160); s.name = "sparse_errors_1in160_total"; return s }(),
		func() sreShape { s := sparse(480); s.name = "sparse_errors_1in480_total"; return s }(),
		// Quantised gauges: memory in KiB pages, a reading in steps of 0.1.
		{name: "quantised_1024", typ: model.MetricTypeGauge, gen: noisy(2, func(r *rand.Rand, _ int) float64 { return 1024 * math.Round(100000+0.7*r.NormFloat64()) })},
		{name: "quantised_0.1", typ: model.MetricTypeGauge, gen: noisy(3, func(r *rand.Rand, _ int) float64 { return math.Round(10*(5+0.03*r.NormFloat64())) / 10 })},
		// up, 0 for one scrape every 6 hours.
		{name: "up_flips", typ: model.MetricTypeGauge, gen: noisy(0, func(_ *rand.Rand, i int) float64 {
			if i%(shapeDay/4) == shapeDay/8 {
				return 0
			}
			return 1
		})},
		// A deployment: latency 100 ms ± 3% to 130 ms, and stays.
		{name: "latency_100_to_130ms", typ: model.MetricTypeGauge, ev: ev, step: true, gen: noisy(4, func(r *rand.Rand, i int) float64 {
			l := 0.1
			if i >= at(ev) {
				l = 0.13
			}
			return l * math.Exp(0.03*r.NormFloat64())
		})},
		// Disk used growing 1 MB a scrape; a GC heap's sawtooth (8
		// scrapes) and a log file rotated every hour.
		{name: "disk_linear", typ: model.MetricTypeGauge, gen: noisy(5, func(r *rand.Rand, i int) float64 { return 1e11 + 1e6*float64(i) + 2e5*r.NormFloat64() })},
		{name: "gc_heap_sawtooth", typ: model.MetricTypeGauge, gen: noisy(6, func(r *rand.Rand, i int) float64 { return 1e8 * (1 + float64(i%8)/8) * (1 + 0.01*r.NormFloat64()) })},
		{name: "log_rotated_hourly", typ: model.MetricTypeGauge, gen: noisy(7, func(r *rand.Rand, i int) float64 { return 1e6*float64(i%240) + 1e4*math.Abs(r.NormFloat64()) })},
		// A target down for an hour, back at its old level.
		{name: "gauge_gap_1h", typ: model.MetricTypeGauge, ev: ev, gen: func() func(int) (float64, bool) {
			r := rng(8)
			return func(i int) (float64, bool) { return 100 + r.NormFloat64(), i < at(ev) || i >= at(ev)+240 }
		}},
		{name: "counter_gap_1h_total", typ: model.MetricTypeCounter, ev: ev, gen: func() func(int) (float64, bool) {
			r, c := rng(14), 0.0
			return func(i int) (float64, bool) { c += float64(poisson(r, 150)); return c, i < at(ev) || i >= at(ev)+240 }
		}},
		// A counter of 10/s reset by a restart.
		{name: "counter_reset_total", typ: model.MetricTypeCounter, ev: ev, gen: func() func(int) (float64, bool) {
			r, c := rng(9), 0.0
			return func(i int) (float64, bool) {
				if i == at(ev) {
					c = 0
				}
				c += float64(poisson(r, 150))
				return c, true
			}
		}},
		// Large magnitudes with small relative noise.
		{name: "bytes_1e15", typ: model.MetricTypeGauge, gen: noisy(10, func(r *rand.Rand, _ int) float64 { return 1e15 * (1 + 1e-6*r.NormFloat64()) })},
		{name: "bytes_from_1e15_total", typ: model.MetricTypeCounter, gen: func() func(int) (float64, bool) {
			r, c := rng(12), 1e15
			return func(int) (float64, bool) { c += 1.5e10 * (1 + 0.01*r.NormFloat64()); return c, true }
		}},
		// Negative values: a daily temperature cycle below 0, and one at 5 that
		// cools through 0 on the last day.
		{name: "temperature_negative", typ: model.MetricTypeGauge, gen: noisy(11, func(r *rand.Rand, i int) float64 {
			return -20 + 3*math.Sin(2*math.Pi*float64(i)/shapeDay) + 0.2*r.NormFloat64()
		})},
		{name: "temperature_through_0", typ: model.MetricTypeGauge, ev: ev, gen: noisy(13, func(r *rand.Rand, i int) float64 {
			return 5 - 10*float64(max(i-at(ev), 0))/shapeDay + 0.2*r.NormFloat64()
		})},
		// Scrape timestamps off by up to 20 / 200 ms.
		{name: "scrapes_total_jitter", typ: model.MetricTypeCounter, jitter: jitter(20), gen: counter(0, func(*rand.Rand, int) float64 { return 1 })},
		{name: "bytes_total_jitter", typ: model.MetricTypeCounter, jitter: jitter(200), gen: counter(15, func(r *rand.Rand, _ int) float64 { return 1.5e6 * (1 + 0.02*r.NormFloat64()) })},
	}
	for i := range shapes {
		if shapes[i].to == 0 {
			shapes[i].from, shapes[i].to = 1, ev
		}
	}
	return shapes
}

// shapeSample is what the pipeline published after one sample.
type shapeSample struct {
	i                          int
	score, value, yhat, lo, hi float64
	ready                      bool
	since                      int64 // the incident's start (0: none)
}

// runShape feeds s to a pipeline with the default configuration, waiting
// for each sample's score (no lookahead: the models see each sample once,
// in order), and returns what was published after each.
func runShape(b *testing.B, s sreShape) []shapeSample {
	e := newEnv(b, "", nil, nil)
	ls := labels.FromStrings("__name__", s.name, "job", "j", "instance", "i")
	gen := s.gen()
	var out []shapeSample
	for i := range shapeDays * shapeDay {
		v, ok := gen(i)
		if !ok {
			continue
		}
		ts := t0.UnixMilli() + int64(i)*stepMs
		if s.jitter != nil {
			ts += s.jitter(i)
		}
		e.push(ts, s.typ, []labels.Labels{ls}, []float64{v})
		e.sync()
		if se := e.onlySeries(); se != nil && se.pub.hasResult {
			p := se.pub
			out = append(out, shapeSample{i, p.score, p.value, p.yhat, p.lower, p.upper, p.ready, p.since})
		}
	}
	e.stop()
	return out
}

// BenchmarkShapes measures, on the shapes of sreShapes, how often omen
// alarms on normal data and how it answers a real change: over the
// normal span, the share of samples with anomaly_score above 1 (the
// default false-alarm budget, --detect.false-alarm-rate, is 0.15%) and
// the incidents opened a day; at the change, the peak score in the hour
// after it, the incidents opened then, how long the first lasted, and
// how long yhat took to get nearer the new mean than the old one (for
// steps), and the share of samples above 1 from an hour after it to the
// end (an alarm that never ends); and any NaN, infinite or negative score.
func BenchmarkShapes(b *testing.B) {
	for _, s := range sreShapes() {
		b.Run("shape="+s.name, func(b *testing.B) {
			for range b.N {
				reportShape(b, s, runShape(b, s))
			}
		})
	}
}

// reportShape reports BenchmarkShapes' figures for s from what the
// pipeline published.
func reportShape(b *testing.B, s sreShape, got []shapeSample) {
	from, to, ev := s.from*shapeDay, s.to*shapeDay, s.ev*shapeDay
	var normal, hot, incidents, evIncidents, bad, later, laterHot int
	var evPeak float64
	evEnd, follow := -1, -1
	var before, after, nb, na float64
	for _, g := range got {
		switch {
		case s.ev > 0 && g.i >= ev-shapeDay && g.i < ev:
			before, nb = before+g.value, nb+1
		case s.ev > 0 && g.i >= ev:
			after, na = after+g.value, na+1
		}
	}
	before, after = before/max(nb, 1), after/max(na, 1)
	var since int64
	for _, g := range got {
		if math.IsNaN(g.score) || math.IsInf(g.score, 0) || g.score < 0 {
			bad++
		}
		opened := g.since != 0 && g.since != since
		since = g.since
		if !g.ready {
			continue
		}
		if g.i >= from && g.i < to {
			normal++
			if g.score > 1 {
				hot++
			}
			if opened {
				incidents++
			}
		}
		if s.ev > 0 && g.i >= ev && follow < 0 && math.Abs(g.yhat-after) < math.Abs(g.yhat-before) {
			follow = g.i
		}
		if s.ev > 0 && g.i >= ev+240 {
			later++
			if g.score > 1 {
				laterHot++
			}
		}
		if s.ev == 0 || g.i < ev || g.i >= ev+240 {
			continue
		}
		evPeak = max(evPeak, g.score)
		if opened {
			evIncidents++
		}
		if g.since != 0 && evIncidents == 1 {
			evEnd = g.i
		}
	}
	days := float64(normal) / shapeDay
	b.ReportMetric(100*float64(hot)/float64(max(normal, 1)), "alarm-%")
	b.ReportMetric(float64(incidents)/max(days, 1e-9), "incidents/day")
	b.ReportMetric(float64(bad), "bad-scores")
	if s.ev == 0 {
		return
	}
	b.ReportMetric(evPeak, "change-peak")
	b.ReportMetric(100*float64(laterHot)/float64(max(later, 1)), "after-change-alarm-%")
	b.ReportMetric(float64(evIncidents), "change-incidents")
	if evEnd >= 0 {
		b.ReportMetric(float64(evEnd-ev+1)/4, "change-incident-min")
	}
	if s.step && follow >= 0 {
		b.ReportMetric(float64(follow-ev)/4, "yhat-follows-min")
	}
}
