package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// TestDerivedInputs evaluates a configured PromQL expression over the TSDB
// and scores each series of its result under the derived input's name.
func TestDerivedInputs(t *testing.T) {
	// The loop evaluates on the wall clock; the test calls evalDerived at
	// the samples' times instead, hence an interval longer than the test.
	e, cfg := derivedEnv(t, `
derived:
  - name: error_ratio
    expr: sum by (service) (errors) / sum by (service) (requests)
    interval: 1h
`)

	// Gauges (no counter suffix), so the ratio is of the raw values.
	for i := range 10 {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, []labels.Labels{
			labels.FromStrings("__name__", "errors", "service", "api"),
			labels.FromStrings("__name__", "requests", "service", "api"),
		}, []float64{float64(i), 10})
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	}
	e.sync()
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "error_ratio")}})
	require.Len(t, got, 1)
	require.Equal(t, map[string]string{"for": "error_ratio", "service": "api"}, got[0].Labels)
	require.InDelta(t, 0.9, float64(got[0].Value), 1e-12)
	require.True(t, got[0].Derived, "its values are not stored: the UI says so")
	ingested := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "errors")}})
	require.Len(t, ingested, 1)
	require.False(t, ingested[0].Derived)
	out := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "error_ratio"))
	require.Len(t, out[labels.FromStrings("__name__", "anomaly_score", "for", "error_ratio", "service", "api").String()], 10)
	// Not written back as an input.
	require.Empty(t, query(t, e.db, eq("__name__", "error_ratio")))
}

// derivedEnv is a pipeline with a PromQL engine over its TSDB and the
// configuration yml.
func derivedEnv(t *testing.T, yml string) (*env, *config.Config) {
	t.Helper()
	cfg, err := config.Load([]byte(yml))
	require.NoError(t, err)
	return newEnvEngine(t, "", cfg, testEngine(), nil), cfg
}

// TestDerivedRestored: a derived input's models are saved with the others
// and restored after a restart: it has no stored history to warm from.
func TestDerivedRestored(t *testing.T) {
	const yml = "derived:\n  - {name: twice, expr: level * 2, interval: 1h}\n"
	path := filepath.Join(t.TempDir(), "models.snap")
	cfg, err := config.Load([]byte(yml))
	require.NoError(t, err)
	snap := func(o *Options) { o.SnapshotPath = path }
	vs := seasonal(301, 3)
	ls := labels.FromStrings("__name__", "level")
	eval := func(e *env, i int) []Anomaly {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
		e.sync()
		return e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "twice")}})
	}
	e := newEnvEngine(t, "", cfg, testEngine(), snap)
	for i := range 300 {
		eval(e, i)
	}
	e.stop()

	e2 := newEnvEngine(t, "", cfg, testEngine(), snap)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	got := eval(e2, 300)
	require.Len(t, got, 1)
	require.True(t, got[0].Ready, "restored, not warming")
}

// recordingEngine records the expressions it is asked to evaluate and
// holds the first query until released, as a slow query would.
type recordingEngine struct {
	promql.QueryEngine
	first   atomic.Bool
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	exprs   []string
}

func (r *recordingEngine) NewInstantQuery(_ context.Context, _ storage.Queryable, _ promql.QueryOpts, qs string, _ time.Time) (promql.Query, error) {
	// Not a sync.Once: its other callers would wait for the first.
	if r.first.CompareAndSwap(false, true) {
		close(r.entered)
		<-r.release
	}
	r.mu.Lock()
	r.exprs = append(r.exprs, qs)
	r.mu.Unlock()
	return nil, errors.New("not evaluated in this test")
}

func (r *recordingEngine) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.exprs)
}

// TestDerivedReloadDuringEvaluation: a reload that removes a derived input
// while its query runs must neither crash the loop (it used to index the
// new, shorter list with the old position) nor evaluate one input's
// expression under another's name; and the other input is evaluated
// meanwhile (they were evaluated one after another, so a slow expression
// delayed every other).
func TestDerivedReloadDuringEvaluation(t *testing.T) {
	two, err := config.Load([]byte("derived:\n  - {name: d0, expr: vector(1), interval: 1s}\n  - {name: d1, expr: vector(2), interval: 1s}\n"))
	require.NoError(t, err)
	one, err := config.Load([]byte("derived:\n  - {name: d1, expr: vector(2), interval: 1s}\n"))
	require.NoError(t, err)
	eng := &recordingEngine{entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnvEngine(t, "", two, eng, nil)
	released := false
	t.Cleanup(func() { // before the pipeline stops, which waits for the held query
		if !released {
			close(eng.release)
		}
	})
	// The loop's first tick, a second after Run starts the loop (later on
	// a busy machine), schedules both at their first slots after the
	// clock's time; the clock moves past them, and again after more than
	// a tick while no query has begun, since a first tick later than the
	// move schedules them after it. (A fixed 1.5 s wait before one move
	// left the loop waiting for good when the first tick came later.)
	began := false
	for i := 1; i <= 20 && !began; i++ {
		e.clock.set(t0.Add(time.Duration(i) * 10 * time.Second))
		select {
		case <-eng.entered: // the first query is running, d0's or d1's
			began = true
		case <-time.After(3 * time.Second):
		}
	}
	require.True(t, began, "no derived input was evaluated")
	require.Eventually(t, func() bool { return len(eng.seen()) >= 1 }, 5*time.Second, 10*time.Millisecond, "the other input is evaluated meanwhile")
	require.NoError(t, e.p.ApplyConfig(one))
	close(eng.release)
	released = true
	require.Eventually(t, func() bool { return len(eng.seen()) >= 2 }, 5*time.Second, 10*time.Millisecond)
	require.ElementsMatch(t, []string{"vector(1)", "vector(2)"}, eng.seen()[:2])
	// d0's counters go with it at the loop's next tick, its failure
	// counted or, ended after the reload, not (TestDerivedCountersLifecycle).
	require.Eventually(t, func() bool { return testutil.CollectAndCount(e.p.m.derivedErrs) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("d1")) == 1 }, 5*time.Second, 10*time.Millisecond)
}

// TestDerivedInputGoesStale: a series that leaves a derived input's result,
// and each series of a derived input removed from the configuration, goes
// stale as an ingested input does when its target goes away
// (TestStaleInputStalesOutputs), as Prometheus's recording rules do.
func TestDerivedInputGoesStale(t *testing.T) {
	e, cfg := derivedEnv(t, "derived:\n  - {name: busy, expr: load > 0.5, interval: 1h}\n")
	pods := []labels.Labels{labels.FromStrings("__name__", "load", "pod", "a"), labels.FromStrings("__name__", "load", "pod", "b")}
	ts := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	busy := [][]*labels.Matcher{{eq("__name__", "busy")}}
	for i := range 10 {
		e.push(ts(i), model.MetricTypeGauge, pods, []float64{0.9, 0.9})
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts(i)))
	}
	e.sync()
	require.Len(t, e.p.Anomalies(busy), 2)

	// Pod b is no longer busy: it leaves the result.
	e.push(ts(10), model.MetricTypeGauge, pods, []float64{0.9, 0.1})
	e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts(10)))
	e.sync()
	got := e.p.Anomalies(busy)
	require.Len(t, got, 1)
	require.Equal(t, "a", got[0].Labels["pod"])
	last := lastSample(t, e.db, eq("__name__", FamilyScore), eq("for", "busy"), eq("pod", "b"))
	require.Len(t, last, 1)
	for _, s := range last {
		require.Equal(t, ts(10), s.t)
		require.True(t, value.IsStaleNaN(s.v))
	}

	// The input removed from the configuration: pod a's goes stale too, at
	// the derived loop's next tick (every second).
	e.clock.set(time.UnixMilli(ts(11)))
	require.NoError(t, e.p.ApplyConfig(config.Default()))
	require.Eventually(t, func() bool { e.sync(); return len(e.p.Anomalies(busy)) == 0 }, 10*time.Second, 50*time.Millisecond)
	for _, s := range lastSample(t, e.db, eq("__name__", FamilyScore), eq("for", "busy")) {
		require.True(t, value.IsStaleNaN(s.v))
	}
}

// TestDerivedRemovedWhileEvaluating: an evaluation that was running when a
// reload removed its input, or redefined it, hands over nothing: its
// samples would follow the staleness markers the removal wrote and bring
// the outputs back until the next tick (or rebuild the new definition's
// models from the old one's results).
func TestDerivedRemovedWhileEvaluating(t *testing.T) {
	for _, tc := range []struct{ name, after string }{
		{"removed", ""},
		{"redefined", "derived:\n  - {name: busy, expr: load > 0.25, interval: 1h}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, cfg := derivedEnv(t, "derived:\n  - {name: busy, expr: load > 0.5, interval: 1h}\n")
			pods := []labels.Labels{labels.FromStrings("__name__", "load", "pod", "a")}
			ts := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
			busy := [][]*labels.Matcher{{eq("__name__", "busy")}}
			for i := range 10 {
				e.push(ts(i), model.MetricTypeGauge, pods, []float64{0.9})
				e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts(i)))
			}
			e.sync()
			require.Len(t, e.p.Anomalies(busy), 1)

			after, err := config.Load([]byte(tc.after))
			require.NoError(t, err)
			require.NoError(t, e.p.ApplyConfig(after))
			e.push(ts(10), model.MetricTypeGauge, pods, []float64{0.9})
			if tc.after == "" {
				e.p.derivedRemoved(map[string]bool{}, time.UnixMilli(ts(10)))
			}
			// The old definition's evaluation, started before the reload,
			// ends now.
			e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts(11)))
			e.sync()
			last := lastSample(t, e.db, eq("__name__", FamilyScore), eq("for", "busy"))
			require.Len(t, last, 1)
			for _, s := range last {
				if tc.after == "" {
					require.Equal(t, ts(10), s.t, "nothing after the staleness marker")
					require.True(t, value.IsStaleNaN(s.v))
					require.Empty(t, e.p.Anomalies(busy))
				} else {
					require.Equal(t, ts(9), s.t, "the old definition's result is not scored")
				}
			}
			e.p.derivedMu.Lock()
			defer e.p.derivedMu.Unlock()
			if tc.after == "" {
				require.NotContains(t, e.p.derivedLast, "busy")
			}
		})
	}
}

// TestDerivedCollidesWithIngested: a derived input named like an ingested
// metric, whose result keeps that metric's labels, would write the
// ingested series' own anomaly_score (for is the name either way). The
// colliding series is refused and counted; the others are scored.
func TestDerivedCollidesWithIngested(t *testing.T) {
	const yml = "derived: [{name: queue_depth, expr: queue_depth * 2, interval: 1h}]\n"
	e, cfg := derivedEnv(t, yml)
	for i := range 10 {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, []labels.Labels{
			labels.FromStrings("__name__", "queue_depth", "queue", "a"),
		}, []float64{float64(10 + i%3)})
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	}
	e.sync()
	// One model, the ingested series', fed its own values only.
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "queue_depth")}})
	require.Len(t, got, 1)
	require.InDelta(t, 10+9%3, float64(got[0].Value), 1e-12)
	out := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "queue_depth"))
	require.Len(t, out, 1)
	require.Len(t, out[labels.FromStrings("__name__", "anomaly_score", "for", "queue_depth", "queue", "a").String()], 10)
	require.Equal(t, 10.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("queue_depth")))

	// An ingested series that is not scored writes no outputs to collide
	// with: the derived one is scored.
	excl, err := config.Load([]byte("exclude: ['{__name__=\"queue_depth\", queue=\"a\"}']\n" + yml))
	require.NoError(t, err)
	require.NoError(t, e.p.ApplyConfig(excl))
	ts := t0.UnixMilli() + 10*stepMs
	e.push(ts, model.MetricTypeGauge, []labels.Labels{labels.FromStrings("__name__", "queue_depth", "queue", "a")}, []float64{10})
	e.p.evalDerived(context.Background(), &excl.Derived[0], time.UnixMilli(ts))
	e.sync()
	got = e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "queue_depth")}})
	require.Len(t, got, 1)
	require.Equal(t, 20.0, float64(got[0].Value), "the derived input's value")
	require.Equal(t, 10.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("queue_depth")))

	// Scored again, the ingested series takes the outputs back, and the
	// derived one stops without a staleness marker on them: one ended
	// them, and a pending alert on them, until the ingested series' next
	// result. (Evaluated between the ingested samples, as a schedule
	// apart from the scrapes has it: at one's time the marker was refused
	// as another value at that time.)
	markers := func() (n int) {
		for _, vs := range query(t, e.db, eq("for", "queue_depth")) {
			for _, v := range vs {
				if value.IsStaleNaN(v) {
					n++
				}
			}
		}
		return n
	}
	before := markers() // the excluded series' outputs, when it was excluded
	incl, err := config.Load([]byte(yml))
	require.NoError(t, err)
	require.NoError(t, e.p.ApplyConfig(incl))
	for i := 11; i < 13; i++ {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, []labels.Labels{labels.FromStrings("__name__", "queue_depth", "queue", "a")}, []float64{float64(i)})
		e.p.evalDerived(context.Background(), &incl.Derived[0], time.UnixMilli(ts+stepMs/2))
		e.sync()
	}
	got = e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "queue_depth")}})
	require.Len(t, got, 1)
	require.Equal(t, 12.0, float64(got[0].Value), "the ingested series' value")
	require.Equal(t, before, markers(), "staleness markers on the outputs the ingested series writes")
}

// TestDerivedSameLabelset: a result whose series differ only in their
// name (which the input's name replaces) fails the evaluation, as a
// recording rule's does, instead of scoring one of them and dropping the
// others unseen.
func TestDerivedSameLabelset(t *testing.T) {
	e, cfg := derivedEnv(t, "derived:\n  - {name: both, expr: '{__name__=~\"a|b\"}', interval: 1h}\n")
	ts := t0.UnixMilli()
	e.push(ts, model.MetricTypeGauge, []labels.Labels{
		labels.FromStrings("__name__", "a", "svc", "x"),
		labels.FromStrings("__name__", "b", "svc", "x"),
	}, []float64{1, 2})
	e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	e.sync()
	require.Empty(t, e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "both")}}))
	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("both")))
}

// TestDerivedReload: a reload gives a derived input's series their new
// options as it does an ingested series': a new direction in place, a new
// false-alarm rate with new models.
func TestDerivedReload(t *testing.T) {
	const yml = "derived:\n  - {name: twice, expr: level * 2, interval: 1h, direction: %s, false_alarm_rate: %s}\n"
	e, _ := derivedEnv(t, fmt.Sprintf(yml, "up", "0.0015"))
	vs := seasonal(301, 3)
	vs[300] -= 1000 // a drop: not anomalous to `direction: up`
	ls := labels.FromStrings("__name__", "level")
	eval := func(i int) {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
		e.p.evalDerived(context.Background(), &e.p.cfg.Load().Derived[0], time.UnixMilli(ts))
		e.sync()
	}
	for i := range 300 {
		eval(i)
	}
	twice := func() (s *series) {
		for _, w := range e.p.workers {
			w.view(func(x *series) {
				if isDerived(x) {
					s = x
				}
			})
		}
		return s
	}
	require.True(t, twice().pub.ready)

	down := loadf(t, yml, "down", "0.0015")
	require.NoError(t, e.p.ApplyConfig(down))
	e.sync()
	require.False(t, twice().rebuild, "a direction is taken in place")
	eval(300)
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "twice")}})
	require.Len(t, got, 1)
	require.Greater(t, got[0].Score, 1.0, "the drop, scored with the new direction")

	rate := loadf(t, yml, "down", "0.01")
	require.NoError(t, e.p.ApplyConfig(rate))
	e.sync()
	require.True(t, twice().rebuild, "a false-alarm rate needs new models")
	// The evaluation that brings the next sample was started before the
	// reload: the new models still get the options now in force, at the
	// evaluation after, which reads the history they warm from
	// (TestDerivedOptionsReloadWarms).
	for i := int64(301); i < 303; i++ {
		e.push(t0.UnixMilli()+i*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[300:301])
		e.p.evalDerived(context.Background(), &down.Derived[0], time.UnixMilli(t0.UnixMilli()+i*stepMs))
		e.sync()
	}
	require.False(t, twice().rebuild)
	require.Equal(t, 0.01, twice().det.Options().FalseAlarmRate)
}

func TestNextDue(t *testing.T) {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	off := 250 * time.Millisecond // t0 is a whole second: slots at .250
	for _, c := range []struct {
		name          string
		due, now, exp int
		missed        int
	}{
		{"on time", 1250, 1250, 2250, 0},
		{"a tick late: the schedule holds", 1250, 2150, 2250, 0},
		{"behind by the interval: its slot missed", 1250, 2250, 3250, 1},
		{"behind by more than the interval: back on its grid", 1250, 2750, 3250, 1},
		{"behind by many intervals: each missed", 1250, 61750, 62250, 60},
	} {
		next, missed := nextDue(at(c.due), at(c.now), time.Second, off)
		require.Equal(t, at(c.exp), next, c.name)
		require.Equal(t, c.missed, missed, c.name)
	}
}

// TestDerivedSchedule: when a derived input is evaluated. A new one waits
// for its first slot, at most an interval; a reload that shortens the
// interval takes effect within the new one, where the old schedule waited
// out the old interval (an hour before a new 10s applied); one that
// lengthens it keeps the slot.
func TestDerivedSchedule(t *testing.T) {
	d := func(every time.Duration) *config.Derived {
		return &config.Derived{Name: "x", Interval: model.Duration(every)}
	}
	next := map[string]slot{}
	now := t0
	var slotAt time.Time // the slot due
	step := func(to time.Time, every time.Duration) bool {
		now = to
		due, at, missed := isDue(next, d(every), now)
		require.Zero(t, missed)
		if due {
			require.Equal(t, slotAt, at, "evaluated at its slot")
		}
		slotAt = next["x"].at
		return due
	}
	require.False(t, step(t0, time.Hour), "new: at its first slot")
	first := next["x"].at
	require.True(t, first.After(t0) && !first.After(t0.Add(time.Hour)), "first slot %s within an interval", first)
	require.False(t, step(first.Add(-time.Second), time.Hour))
	require.True(t, step(first, time.Hour))
	require.Equal(t, first.Add(time.Hour), next["x"].at, "an interval on")
	require.False(t, step(now.Add(time.Second), 10*time.Second), "shortened: rescheduled")
	soon := next["x"].at
	require.True(t, soon.After(now) && !soon.After(now.Add(10*time.Second)), "within the new interval: %s", soon.Sub(now))
	require.False(t, step(soon.Add(-time.Millisecond), 10*time.Second))
	require.True(t, step(soon, 10*time.Second))
	require.True(t, step(soon.Add(10*time.Second), 10*time.Second))
	require.False(t, step(now.Add(5*time.Second), time.Hour), "lengthened: the slot stands")
	require.True(t, step(now.Add(5*time.Second), time.Hour))
	require.False(t, step(now.Add(time.Minute), time.Hour))

	// A loop that stalled: due at s, evaluated at s + 35 s, the slots of
	// s + 10, 20 and 30 s missed, and the next one at s + 40 s, on its grid.
	next = map[string]slot{}
	due, _, missed := isDue(next, d(10*time.Second), t0)
	require.False(t, due)
	require.Zero(t, missed)
	s := next["x"].at
	due, at, missed := isDue(next, d(10*time.Second), s.Add(35*time.Second))
	require.True(t, due)
	require.Equal(t, 3, missed)
	require.Equal(t, s.Add(30*time.Second), at, "evaluated at its latest slot")
	require.Equal(t, s.Add(40*time.Second), next["x"].at)
}

// TestDerivedSlotsSpread: inputs of one interval are evaluated across it,
// each at a point of its own, the same after a restart; they were all due
// at once, an interval after the start or reload that loaded them.
func TestDerivedSlotsSpread(t *testing.T) {
	every := 10 * time.Second
	next := map[string]slot{}
	seen := map[time.Duration]bool{}
	for i := range 100 {
		d := &config.Derived{Name: fmt.Sprintf("ratio_%d", i), Interval: model.Duration(every)}
		due, _, _ := isDue(next, d, t0)
		require.False(t, due)
		at := next[d.Name].at
		require.True(t, at.After(t0) && !at.After(t0.Add(every)))
		seen[at.Sub(t0).Truncate(time.Second)] = true

		again := map[string]slot{} // a restart 3.7 s later: the same point in the interval
		_, _, _ = isDue(again, d, t0.Add(3700*time.Millisecond))
		require.Equal(t, at.Sub(t0)%every, again[d.Name].at.Sub(t0)%every, d.Name)
	}
	require.Len(t, seen, 10, "100 inputs in each second of their 10 s interval")
}

// TestDerivedGroup scores the cpu, memory and latency of each pod together
// (a multivariate group): latency up without cpu, the traffic that drives
// both, is anomalous for that pod's group, and the group's state survives a
// restart.
func TestDerivedGroup(t *testing.T) {
	const yml = `
derived:
  - name: pod_health
    by: [pod]
    interval: 1h
    members:
      - {name: cpu, expr: 'sum by (pod) (cpu)'}
      - {name: memory, expr: 'memory'}
      - {name: latency, expr: 'max by (pod) (latency)'}
`
	cfg, err := config.Load([]byte(yml))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "models.snap")
	newEnv := func() *env {
		return newEnvEngine(t, "", cfg, testEngine(),
			func(o *Options) { o.SnapshotPath = path })
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ls []labels.Labels
	for _, pod := range []string{"a", "b"} {
		ls = append(ls,
			labels.FromStrings("__name__", "cpu", "pod", pod, "container", "app"),
			labels.FromStrings("__name__", "memory", "pod", pod, "node", "n1"),
			labels.FromStrings("__name__", "latency", "pod", pod))
	}
	// Pod c has cpu only: an incomplete group, not scored.
	ls = append(ls, labels.FromStrings("__name__", "cpu", "pod", "c"))
	eval := func(e *env, i int, latencyUp float64) {
		ts := t0.UnixMilli() + int64(i)*stepMs
		var vs []float64
		for range 2 {
			traffic := 100 + 40*math.Sin(2*math.Pi*float64(i)/200) + 5*rng.NormFloat64()
			vs = append(vs, 0.01*traffic+0.02*rng.NormFloat64(), 5e8+5e6*rng.NormFloat64(), 0.002*traffic+0.01*rng.NormFloat64())
		}
		vs[2] += latencyUp // pod a
		vs = append(vs, 1)
		e.push(ts, model.MetricTypeGauge, ls, vs)
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	}
	e := newEnv()
	const n = 400
	for i := range n {
		eval(e, i, 0)
	}
	e.sync()
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "pod_health")}})
	require.Len(t, got, 2, "pods a and b; c lacks members")
	for _, a := range got {
		require.True(t, a.Ready)
		require.Less(t, a.Score, 1.0, "normal traffic: %v", a.Labels)
		require.True(t, math.IsNaN(float64(a.Value)) && math.IsNaN(float64(a.Yhat)), "a group has no single value or band")
	}
	stored := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "pod_health"))
	require.Len(t, stored[labels.FromStrings("__name__", "anomaly_score", "for", "pod_health", "pod", "a").String()], n)
	require.Empty(t, query(t, e.db, eq("__name__", "yhat"), eq("for", "pod_health")), "no band for a group")
	e.stop()

	e2 := newEnv()
	require.Eventually(t, e2.p.Ready, timeout, tick)
	eval(e2, n, 0.15) // 15 of latency's own noise, 0.4 of its daily range
	e2.sync()
	got = e2.p.Anomalies([][]*labels.Matcher{{eq("__name__", "pod_health")}})
	require.Len(t, got, 2)
	for _, a := range got {
		require.True(t, a.Ready, "restored, not warming: %v", a.Labels)
		t.Logf("pod %s: score %.2f, driven by %q", a.Labels["pod"], a.Score, a.Member)
		if a.Labels["pod"] == "a" {
			require.Greater(t, a.Score, 1.0, "latency up without cpu")
			require.Equal(t, "latency", a.Member)
		} else {
			require.Less(t, a.Score, 1.0)
		}
	}
}

// TestDerivedGroupAmbiguous: a member with two series for one group fails
// the evaluation, named, rather than scoring one of them.
func TestDerivedGroupAmbiguous(t *testing.T) {
	e, cfg := derivedEnv(t, `
derived:
  - name: g
    by: [pod]
    interval: 1h
    members: [{name: cpu, expr: cpu}, {name: mem, expr: mem}]
`)
	ts := t0.UnixMilli()
	e.push(ts, model.MetricTypeGauge, []labels.Labels{
		labels.FromStrings("__name__", "cpu", "pod", "a", "container", "x"),
		labels.FromStrings("__name__", "cpu", "pod", "a", "container", "y"),
		labels.FromStrings("__name__", "mem", "pod", "a"),
	}, []float64{1, 2, 3})
	e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	e.sync()
	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("g")))
	require.Empty(t, e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "g")}}))
}

// TestDerivedGroupReload: a reload that gives a group other members gives
// it new models at its next evaluation (the old ones take vectors of the
// old length, and would skip every new one), warmed from the new members'
// history.
func TestDerivedGroupReload(t *testing.T) {
	const yml = "derived:\n  - {name: g, interval: 15s, members: [%s]}\n"
	two := loadf(t, yml, "{name: a, expr: a}, {name: b, expr: b}")
	three := loadf(t, yml, "{name: a, expr: a}, {name: b, expr: b}, {name: c, expr: a + b}")
	e := newEnvEngine(t, "", two, testEngine(), nil)
	in := []labels.Labels{labels.FromStrings("__name__", "a"), labels.FromStrings("__name__", "b")}
	eval := func(cfg *config.Config, i int) Anomaly {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, in, []float64{float64(i % 7), float64(i % 5)})
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
		e.sync()
		got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "g")}})
		require.Len(t, got, 1)
		require.Equal(t, time.UnixMilli(ts).UTC(), got[0].Timestamp, "scored at this evaluation")
		return got[0]
	}
	for i := range 200 {
		eval(two, i)
	}
	require.True(t, eval(two, 200).Ready)
	require.NoError(t, e.p.ApplyConfig(three))
	before := testutil.ToFloat64(e.p.m.warmed)
	require.True(t, eval(three, 201).Ready, "new models for three members, warmed from their history")
	require.Equal(t, 201.0, testutil.ToFloat64(e.p.m.warmed)-before)
	for i := 202; i < 250; i++ {
		require.True(t, eval(three, i).Ready, "the new models take the new vectors")
	}
}

// TestDerivedExprReload: a reload that changes a derived input's expression
// under the same name gives its series new models, warmed from the new
// expression's history: the old ones learnt another quantity (here a
// hundred times the scale) and would score the change itself as anomalous.
func TestDerivedExprReload(t *testing.T) {
	const yml = "derived:\n  - {name: scaled, expr: '%s', interval: 15s}\n"
	before := loadf(t, yml, "level * 2")
	after := loadf(t, yml, "level * 200")
	e := newEnvEngine(t, "", before, testEngine(), nil)
	vs := seasonal(301, 5)
	eval := func(cfg *config.Config, i int) Anomaly { return evalLevel(t, e, cfg, i, vs) }
	for i := range 300 {
		eval(before, i)
	}
	require.NoError(t, e.p.ApplyConfig(after))
	got := eval(after, 300)
	require.True(t, got.Ready, "warmed from the new expression's history")
	require.Less(t, got.Score, 1.0, "the new scale is not an anomaly")
	require.InDelta(t, 200*vs[300], float64(got.Value), 1e-9)
}

// TestDerivedWarmsFromHistory: at a derived input's first evaluation its
// expression is evaluated over the history the TSDB holds, and its new
// series (one input's, a group's) start ready instead of warming up on
// new evaluations; none of it is scored as new or stored as outputs.
func TestDerivedWarmsFromHistory(t *testing.T) {
	for _, tc := range []struct {
		name, yml string
		n         int // history steps
	}{
		{"expr", "derived:\n  - {name: twice, expr: a * 2, interval: 15s}\n", 100},
		{"group", "derived:\n  - {name: twice, interval: 15s, by: [pod], members: [{name: a, expr: a}, {name: b, expr: b}]}\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, cfg := derivedEnv(t, tc.yml)
			vs := seasonal(tc.n+1, 4)
			in := []labels.Labels{labels.FromStrings("__name__", "a", "pod", "p"), labels.FromStrings("__name__", "b", "pod", "p")}
			for i := range tc.n + 1 {
				e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, in, []float64{vs[i], vs[i] / 2})
			}
			e.sync()
			before := testutil.ToFloat64(e.p.m.warmed)
			now := time.UnixMilli(t0.UnixMilli() + int64(tc.n)*stepMs)
			e.p.evalDerived(context.Background(), &cfg.Derived[0], now)
			e.sync()
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "twice")}})
			require.Len(t, got, 1)
			require.True(t, got[0].Ready, "warmed from the history")
			require.Equal(t, float64(tc.n), testutil.ToFloat64(e.p.m.warmed)-before, "every past step replayed once")
			require.Len(t, query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "twice")), 1)
			for _, pts := range query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "twice")) {
				require.Len(t, pts, 1, "the history is not stored as outputs")
			}
		})
	}
}

// TestDerivedWarmEqualsLive: a derived input warmed from history at its
// first evaluation scores as if it had been evaluated all along: the same
// values, in the same order, for each series (a group's members matched by
// their labels and kept in order).
func TestDerivedWarmEqualsLive(t *testing.T) {
	for _, yml := range []string{
		"derived:\n  - {name: d, expr: 'a - b', interval: 15s}\n",
		"derived:\n  - {name: d, interval: 15s, by: [pod], members: [{name: a, expr: 'sum by (pod) (a)'}, {name: b, expr: b}]}\n",
	} {
		const n = 300
		in := []labels.Labels{
			labels.FromStrings("__name__", "a", "pod", "p"), labels.FromStrings("__name__", "b", "pod", "p"),
			labels.FromStrings("__name__", "a", "pod", "q"), labels.FromStrings("__name__", "b", "pod", "q"),
		}
		cols := [][]float64{seasonal(n+1, 6), seasonal(n+1, 7), seasonal(n+1, 8), seasonal(n+1, 9)}
		for i := range cols[1] {
			cols[1][i] = cols[1][i]/3 + 7 // members of other scales and phases
			cols[3][i] *= 1e3
		}
		cols[2][n] += 30 // an anomaly at the end, in one member of q
		run := func(live bool) []Anomaly {
			e, cfg := derivedEnv(t, yml)
			for i := range n + 1 {
				ts := t0.UnixMilli() + int64(i)*stepMs
				e.push(ts, model.MetricTypeGauge, in, []float64{cols[0][i], cols[1][i], cols[2][i], cols[3][i]})
				if live || i == n {
					e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
				}
			}
			e.sync()
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d")}})
			slices.SortFunc(got, func(a, b Anomaly) int { return strings.Compare(fmt.Sprint(a.Labels), fmt.Sprint(b.Labels)) })
			return got
		}
		live, warm := run(true), run(false)
		require.Len(t, warm, 2)
		for i := range live {
			t.Logf("%v: live %.4f %q, warmed %.4f %q", live[i].Labels, live[i].Score, live[i].Member, warm[i].Score, warm[i].Member)
			require.Equal(t, live[i].Labels, warm[i].Labels)
			require.True(t, warm[i].Ready)
			require.InDelta(t, float64(live[i].Score), float64(warm[i].Score), 1e-9)
			require.Equal(t, live[i].Member, warm[i].Member)
		}
	}
}

// TestDerivedGroupIdleKeepsOutputs: a group a member has no value for at an
// evaluation (a latency quantile is NaN without traffic) is not scored, and
// its outputs do not go stale, which would reset a pending alert, for
// Prometheus's lookback after its last score; then, or when none of its
// members is left, it goes stale.
func TestDerivedGroupIdleKeepsOutputs(t *testing.T) {
	e, cfg := derivedEnv(t, "derived:\n  - {name: g, interval: 1h, by: [pod], members: [{name: a, expr: a}, {name: b, expr: b}]}\n")
	ls := []labels.Labels{labels.FromStrings("__name__", "a", "pod", "p"), labels.FromStrings("__name__", "b", "pod", "p")}
	eval := func(i int, vs []float64) {
		ts := t0.UnixMilli() + int64(i)*stepMs
		if vs != nil {
			e.push(ts, model.MetricTypeGauge, ls, vs)
		}
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
		e.sync()
	}
	for i := range 5 {
		eval(i, []float64{float64(i), 1})
	}
	eval(5, []float64{5, math.NaN()}) // idle: b is 0/0
	eval(6, []float64{6, 1})
	key := labels.FromStrings("__name__", "anomaly_score", "for", "g", "pod", "p").String()
	out := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "g"))[key]
	require.Len(t, out, 6, "scored at every evaluation but the idle one")
	for _, v := range out {
		require.False(t, value.IsStaleNaN(v), "no staleness marker")
	}
	idle := func(from, to int) []float64 {
		for i := from; i < to; i++ {
			eval(i, []float64{float64(i), math.NaN()})
		}
		return query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "g"))[key]
	}
	out = idle(7, 7+lookbackMs/stepMs)
	require.Len(t, out, 6, "idle for the lookback: kept, no marker")
	out = idle(7+lookbackMs/stepMs, 9+lookbackMs/stepMs)
	require.Len(t, out, 7)
	require.True(t, value.IsStaleNaN(out[6]), "idle beyond the lookback: stale")
	eval(10+lookbackMs/stepMs, []float64{1, 1})
	out = query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "g"))[key]
	require.Len(t, out, 8, "scored again")
	eval(11+2*lookbackMs/stepMs, nil) // both members gone
	out = query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "g"))[key]
	require.True(t, value.IsStaleNaN(out[len(out)-1]), "a group with no member left goes stale")
}

// TestDerivedGroupShadowed: a group named like an ingested series with the
// group's labels would write that series' outputs: it is not scored.
func TestDerivedGroupShadowed(t *testing.T) {
	e, cfg := derivedEnv(t, "derived:\n  - {name: cpu, interval: 1h, by: [pod], members: [{name: a, expr: cpu}, {name: b, expr: mem}]}\n")
	ts := t0.UnixMilli()
	e.push(ts, model.MetricTypeGauge, []labels.Labels{
		labels.FromStrings("__name__", "cpu", "pod", "p"), labels.FromStrings("__name__", "mem", "pod", "p"),
	}, []float64{1, 2})
	e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	e.sync()
	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("cpu")))
	for _, a := range e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "cpu")}}) {
		require.False(t, math.IsNaN(float64(a.Value)), "only the ingested cpu series is scored, not a group")
	}
}

// TestDerivedGroupRestoreOtherMembers: after a restart under a group whose
// members were reordered (or replaced, as many as before), the saved state
// is not restored onto the new members: the group warms from their history
// instead. Under the same members it is restored.
func TestDerivedGroupRestoreOtherMembers(t *testing.T) {
	const yml = "derived:\n  - {name: g, interval: 15s, members: [%s]}\n"
	ab := loadf(t, yml, "{name: a, expr: a}, {name: b, expr: b}")
	ba := loadf(t, yml, "{name: b, expr: b}, {name: a, expr: a}")
	for _, tc := range []struct {
		name     string
		after    *config.Config
		restored bool
	}{{"same members", ab, true}, {"reordered", ba, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
			start := func(cfg *config.Config) *env {
				return newEnvEngine(t, dir, cfg, testEngine(),
					func(o *Options) { o.SnapshotPath = path })
			}
			in := []labels.Labels{labels.FromStrings("__name__", "a"), labels.FromStrings("__name__", "b")}
			va, vb := seasonal(202, 1), seasonal(202, 2)
			eval := func(e *env, cfg *config.Config, i int) {
				ts := t0.UnixMilli() + int64(i)*stepMs
				e.push(ts, model.MetricTypeGauge, in, []float64{va[i], vb[i] * 10})
				e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
				e.sync()
			}
			e := start(ab)
			for i := range 200 {
				eval(e, ab, i)
			}
			e.stop()
			require.NoError(t, e.db.Close()) // the TSDB's history, for the restart
			e2 := start(tc.after)
			require.Eventually(t, e2.p.Ready, timeout, tick)
			before := testutil.ToFloat64(e2.p.m.warmed)
			eval(e2, tc.after, 200)
			replayed := testutil.ToFloat64(e2.p.m.warmed) - before
			if tc.restored {
				require.Zero(t, replayed, "restored, nothing to catch up")
			} else {
				require.Equal(t, 200.0, replayed, "not restored: warmed from the history of the new order")
			}
		})
	}
}

// TestDerivedExprRestart: a derived input whose expression changed while
// omen was down is not restored from the snapshot (its models learnt the old
// quantity, and scored the change 7.8): it warms from the new expression's
// history. Under the same expression it is restored.
func TestDerivedExprRestart(t *testing.T) {
	const yml = "derived:\n  - {name: scaled, expr: '%s', interval: 15s}\n"
	before := loadf(t, yml, "level * 2")
	for _, tc := range []struct {
		name, expr string
		restored   bool
	}{{"same", "level * 2", true}, {"changed", "level * 200", false}} {
		t.Run(tc.name, func(t *testing.T) {
			after := loadf(t, yml, tc.expr)
			dir, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
			start := func(cfg *config.Config) *env {
				return newEnvEngine(t, dir, cfg, testEngine(), func(o *Options) { o.SnapshotPath = path })
			}
			vs := seasonal(301, 5)
			eval := func(e *env, cfg *config.Config, i int) Anomaly { return evalLevel(t, e, cfg, i, vs) }
			e := start(before)
			for i := range 300 {
				eval(e, before, i)
			}
			e.stop()
			require.NoError(t, e.db.Close())
			e2 := start(after)
			require.Eventually(t, e2.p.Ready, timeout, tick)
			w := testutil.ToFloat64(e2.p.m.warmed)
			got := eval(e2, after, 300)
			replayed := testutil.ToFloat64(e2.p.m.warmed) - w
			require.True(t, got.Ready)
			require.Less(t, got.Score, 1.0)
			if tc.restored {
				require.Zero(t, replayed, "restored")
			} else {
				require.Equal(t, 300.0, replayed, "warmed from the new expression's history")
			}
		})
	}
}

func testEngine() promql.QueryEngine {
	return promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
}

// evalLevel pushes step i of vs as the gauge "level", evaluates cfg's
// derived input "scaled" there and returns its one series' result.
func evalLevel(t *testing.T, e *env, cfg *config.Config, i int, vs []float64) Anomaly {
	t.Helper()
	ts := t0.UnixMilli() + int64(i)*stepMs
	e.push(ts, model.MetricTypeGauge, []labels.Labels{labels.FromStrings("__name__", "level")}, vs[i:i+1])
	e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	e.sync()
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "scaled")}})
	require.Len(t, got, 1)
	return got[0]
}

// TestDerivedCountersLifecycle: an input's failure and miss counters exist
// at 0 from its first evaluation (so rate() sees the first failure) and go
// with the input, whether it ever had a result or not; an evaluation still
// running when a reload removed the input, which ends after, brings
// neither them nor its warnings' state back. Both stayed on /metrics for
// good: the counters of an input that always failed (derivedRemoved knew
// the inputs with a result only), and those a late failure re-created.
// scoredAndFailing are derived expressions over derivedOfTwo's series: one
// scored, one that fails at every evaluation.
var scoredAndFailing = []struct{ name, expr string }{
	{"scored", "vector(1)"},
	{"always failing", "a + on() a"}, // many-to-many
}

// derivedOfTwo is a pipeline with the derived input d of expr, hourly, and
// two series a at t0.
func derivedOfTwo(t *testing.T, expr string) (*env, *config.Config) {
	t.Helper()
	e, cfg := derivedEnv(t, fmt.Sprintf("derived:\n  - {name: d, expr: '%s', interval: 1h}\n", expr))
	e.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{
		labels.FromStrings("__name__", "a", "x", "1"), labels.FromStrings("__name__", "a", "x", "2"),
	}, []float64{1, 2})
	return e, cfg
}

func TestDerivedCountersLifecycle(t *testing.T) {
	for _, tc := range scoredAndFailing {
		t.Run(tc.name, func(t *testing.T) {
			e, cfg := derivedOfTwo(t, tc.expr)
			e.p.evalDerived(context.Background(), &cfg.Derived[0], t0)
			require.Equal(t, 1, testutil.CollectAndCount(e.p.m.derivedErrs))
			require.Equal(t, 1, testutil.CollectAndCount(e.p.m.derivedMissed))
			require.NoError(t, e.p.ApplyConfig(config.Default()))
			e.p.derivedRemoved(map[string]bool{}, t0.Add(time.Minute))
			gone := func(msg string) {
				t.Helper()
				require.Zero(t, testutil.CollectAndCount(e.p.m.derivedErrs), msg)
				require.Zero(t, testutil.CollectAndCount(e.p.m.derivedMissed), msg)
				e.p.derivedMu.Lock()
				defer e.p.derivedMu.Unlock()
				require.Empty(t, e.p.derivedWarned, msg)
			}
			gone("removed")
			// An evaluation of the old configuration's, started before the
			// reload, ends now.
			e.p.evalDerived(context.Background(), &cfg.Derived[0], t0.Add(2*time.Minute))
			gone("an evaluation that ended after the removal")
		})
	}
}

// TestDerivedEvaluationTimes: each derived input's last evaluation is on
// /metrics, its time and how long it took, failed or not, as Prometheus
// shows a rule group's (prometheus_rule_group_last_evaluation_timestamp_seconds,
// ..._last_duration_seconds): a slow expression shows before it takes its
// whole interval and misses evaluations, and a stuck schedule shows as a
// timestamp that stops. Removed with the input.
func TestDerivedEvaluationTimes(t *testing.T) {
	const (
		last = "omen_derived_evaluation_last_timestamp_seconds"
		took = "omen_derived_evaluation_last_duration_seconds"
	)
	for _, tc := range scoredAndFailing {
		t.Run(tc.name, func(t *testing.T) {
			e, cfg := derivedOfTwo(t, tc.expr)
			values := func() map[string]float64 {
				mfs, err := e.reg.Gather()
				require.NoError(t, err)
				got := map[string]float64{}
				for _, mf := range mfs {
					if n := mf.GetName(); n == last || n == took {
						require.Len(t, mf.GetMetric(), 1, n)
						require.Equal(t, "d", mf.GetMetric()[0].GetLabel()[0].GetValue(), n)
						got[n] = mf.GetMetric()[0].GetGauge().GetValue()
					}
				}
				return got
			}
			for i, at := range []time.Time{t0, t0.Add(time.Hour)} {
				e.p.evalDerived(context.Background(), &cfg.Derived[0], at)
				got := values()
				require.Contains(t, got, last, "evaluation %d", i)
				require.Contains(t, got, took, "evaluation %d", i)
				require.Equal(t, float64(at.UnixMilli())/1000, got[last], "evaluation %d", i)
				require.Positive(t, got[took], "evaluation %d", i)
				require.Less(t, got[took], 60.0, "evaluation %d: seconds", i)
			}
			require.NoError(t, e.p.ApplyConfig(config.Default()))
			e.p.derivedRemoved(map[string]bool{}, t0.Add(2*time.Hour))
			require.Empty(t, values(), "removed")
			// An evaluation of the old configuration's, started before the
			// reload, ends now: it makes them no more.
			e.p.evalDerived(context.Background(), &cfg.Derived[0], t0.Add(2*time.Hour))
			require.Empty(t, values(), "an evaluation that ended after the removal")
		})
	}
}

// loadf loads the configuration format filled with args.
func loadf(t *testing.T, format string, args ...any) *config.Config {
	t.Helper()
	c, err := config.Load(fmt.Appendf(nil, format, args...))
	require.NoError(t, err)
	return c
}

// TestDerivedGroupEventEndsWithoutEvaluations: evaluations of a group that
// did not come (its expressions failing, omen busy) count toward the gap
// between events, as samples that did not come do for an ingested series:
// a blip before 15 missed evaluations and one after were one event of
// four minutes.
func TestDerivedGroupEventEndsWithoutEvaluations(t *testing.T) {
	e, cfg := derivedEnv(t, "derived:\n  - {name: g, interval: 15s, members: [{name: a, expr: a}, {name: b, expr: b}]}\n")
	ls := []labels.Labels{labels.FromStrings("__name__", "a"), labels.FromStrings("__name__", "b")}
	rng := rand.New(rand.NewPCG(3, 4))
	const blip, back = 300, 316
	for i := range back + 1 {
		ts := t0.UnixMilli() + int64(i)*stepMs
		vs := []float64{10 + rng.NormFloat64(), 20 + rng.NormFloat64()}
		if i == blip || i == back {
			vs[0] += 100
		}
		e.push(ts, model.MetricTypeGauge, ls, vs)
		if i > blip && i < back {
			continue // not evaluated
		}
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	}
	e.sync()
	var g *series
	for _, w := range e.p.workers {
		w.view(func(s *series) {
			if s.grp != nil {
				g = s
			}
		})
	}
	require.NotNil(t, g)
	require.True(t, g.pub.active(e.p.opts.IncidentHold.Milliseconds()))
	require.Equal(t, t0.UnixMilli()+back*stepMs, g.pub.event, "the blip after the missed evaluations starts an event")
	require.Zero(t, g.pub.duration())
}

// TestDerivedRemovedLeavesBudget: a reload that removes a derived input
// marks its outputs stale and forgets its series: they counted as scored
// and warming, and in --detect.max-series, until the sweep an hour later,
// where an ingested series a reload excludes leaves at once.
func TestDerivedRemovedLeavesBudget(t *testing.T) {
	e, cfg := derivedEnv(t, "derived:\n  - {name: d, expr: 'm * 2', interval: 1h}\n")
	var ls []labels.Labels
	for _, pod := range []string{"a", "b", "c"} {
		ls = append(ls, labels.FromStrings("__name__", "m", "pod", pod))
	}
	ts := t0.UnixMilli()
	e.push(ts, model.MetricTypeGauge, ls, []float64{1, 2, 3})
	e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	e.sync()
	require.EqualValues(t, 6, e.p.scored.Load(), "3 ingested, 3 derived")
	require.EqualValues(t, 6, testutil.ToFloat64(e.p.m.warming))

	require.NoError(t, e.p.ApplyConfig(loadf(t, "derived: []\n")))
	e.p.derivedRemoved(map[string]bool{}, time.UnixMilli(ts+1000)) // the loop's next tick
	e.sync()
	require.Empty(t, e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d")}}))
	require.EqualValues(t, 3, e.p.scored.Load())
	require.EqualValues(t, 3, testutil.ToFloat64(e.p.m.warming))
	stored := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "d"))
	require.Len(t, stored, 3, "their outputs were stored")
	for ls, vs := range stored {
		require.True(t, value.IsStaleNaN(vs[len(vs)-1]), "%s ends with a staleness marker: %v", ls, vs)
	}
}

// TestDerivedSharesBudget: a derived input's series take places of
// --detect.max-series as they come, as ingested series do: first come,
// first scored. Ingested series that filled it before the derived input's
// first evaluation (an interval after the start) leave it unscored, counted
// in omen_series_over_budget_total, where the reference said a derived
// input is always scored.
func TestDerivedSharesBudget(t *testing.T) {
	cfg, err := config.Load([]byte("derived:\n  - {name: d, expr: 'sum(m)', interval: 1h}\n"))
	require.NoError(t, err)
	e := newEnvEngine(t, "", cfg, testEngine(), func(o *Options) { o.MaxSeries = 3 })
	var ls []labels.Labels
	for _, pod := range []string{"a", "b", "c"} {
		ls = append(ls, labels.FromStrings("__name__", "m", "pod", pod))
	}
	e.push(t0.UnixMilli(), model.MetricTypeGauge, ls, []float64{1, 2, 3})
	e.sync()
	e.p.evalDerived(context.Background(), &cfg.Derived[0], t0)
	e.sync()
	require.EqualValues(t, 3, e.p.scored.Load())
	require.Empty(t, e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d")}}), "over the budget: not scored")
	require.EqualValues(t, 1, testutil.ToFloat64(e.p.m.overBudget))
}

// TestDerivedGroupMemberAggregatedAway: a member aggregated by fewer labels
// than the group's `by` (a `sum by` that left one out) never shares a
// group with the other members: no group was ever scored, and only a
// debug log said why. Each evaluation now counts as failed, and a warning
// names the member and the label.
func TestDerivedGroupMemberAggregatedAway(t *testing.T) {
	for _, tc := range []struct {
		mem   string
		fails bool
	}{{"sum by (pod) (mem)", true}, {"sum by (namespace, pod) (mem)", false}} {
		t.Run(tc.mem, func(t *testing.T) {
			e, cfg := derivedEnv(t, fmt.Sprintf(`
derived:
  - name: g
    interval: 1h
    by: [namespace, pod]
    members:
      - {name: cpu, expr: 'sum by (namespace, pod) (cpu)'}
      - {name: mem, expr: '%s'}
`, tc.mem))
			ls := []labels.Labels{
				labels.FromStrings("__name__", "cpu", "namespace", "n", "pod", "p"),
				labels.FromStrings("__name__", "mem", "namespace", "n", "pod", "p"),
			}
			for i := range 100 {
				ts := t0.UnixMilli() + int64(i)*stepMs
				e.push(ts, model.MetricTypeGauge, ls, []float64{float64(i % 5), float64(i % 3)})
				e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
			}
			e.sync()
			fails := testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("g"))
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "g")}})
			if tc.fails {
				require.Equal(t, 100.0, fails)
				require.Empty(t, got)
			} else {
				require.Zero(t, fails)
				require.Len(t, got, 1)
			}
		})
	}
}

// TestDerivedGroupPartlyLinedUp: by: [job, pod]; cpu has a series with a
// pod (job a) and one without (job b, not a pod's); mem only job b's. Group
// {job=b} lines up and is scored: no evaluation fails (each was counted as
// failed, "its groups never line up", while one was scored).
func TestDerivedGroupPartlyLinedUp(t *testing.T) {
	e, cfg := derivedEnv(t, `
derived:
  - name: g
    interval: 15s
    by: [job, pod]
    members:
      - {name: cpu, expr: cpu}
      - {name: mem, expr: mem}
`)
	ls := []labels.Labels{
		labels.FromStrings("__name__", "cpu", "job", "a", "pod", "p"),
		labels.FromStrings("__name__", "cpu", "job", "b"),
		labels.FromStrings("__name__", "mem", "job", "b"),
	}
	for i := range 100 {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, ls, []float64{float64(i % 5), float64(i % 7), float64(i % 3)})
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	}
	e.sync()
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "g")}})
	require.Len(t, got, 1, "group {job=b} is scored")
	t.Logf("group scored: %v; omen_derived_evaluation_failures_total{name=g} = %v", got[0].Labels, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("g")))
	require.Zero(t, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("g")), "evaluations that scored the group counted as failures")
}

// TestDerivedWarmsFromUpstream: with --backfill.remote-read-url a derived
// input's history is evaluated over the upstream's older samples too, so a
// new deployment's expression over series the TSDB holds for minutes warms
// as its inputs do (it warmed from the TSDB's minutes alone); the labels
// the upstream adds are taken off, configured or learnt, so its series
// join the TSDB's; an upstream that fails leaves the TSDB's history.
func TestDerivedWarmsFromUpstream(t *testing.T) {
	const n, split = 300, 240
	const yml = "derived:\n  - {name: twice, expr: a * 2, interval: 15s}\n"
	a := labels.FromStrings("__name__", "a", "pod", "p")
	b := labels.FromStrings("__name__", "b", "pod", "p")
	va, vb := seasonal(n+1, 4), seasonal(n+1, 5)
	up := func(ext labels.Labels) string {
		srv := httptest.NewServer(upstreamWith(t, ext, []labels.Labels{a, b}, va[:split], atStep))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	// Once the inputs have warmed, stalls every read (the derived
	// input's) until the client gives up.
	var hits atomic.Int32
	var stall atomic.Bool
	stalled := httptest.NewServer(stalling(t, upstream(t, []labels.Labels{a, b}, va[:split], atStep), &hits, func(string) bool { return stall.Load() }))
	defer stalled.Close()
	eu := labels.FromStrings("cluster", "eu")
	for _, tc := range []struct {
		name   string
		url    string
		ext    []string
		warmed int // of the derived series
	}{
		{"upstream", up(labels.EmptyLabels()), nil, n},
		{"configured external labels", up(eu), []string{"cluster"}, n},
		{"configured with a value", up(eu), []string{"cluster=eu"}, n},
		{"another source's value", up(eu), []string{"cluster=us"}, n - split},
		{"learnt external labels", up(eu), nil, n},
		{"upstream down", down.URL, nil, n - split},
		{"upstream stalls", stalled.URL, nil, n - split},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]byte(yml))
			require.NoError(t, err)
			e := newEnvEngine(t, "", cfg, testEngine(), func(o *Options) {
				o.BackfillRemoteReadURL = tc.url
				o.BackfillExternalLabels = tc.ext
			})
			e.p.histTimeout = 3 * time.Second
			// The TSDB holds the last minutes; the inputs' own warm
			// starts (two names: their extra labels are learnt as
			// external) read the rest.
			for i := split; i <= n; i++ {
				e.push(atStep(i), model.MetricTypeGauge, []labels.Labels{a, b}, []float64{va[i], vb[i]})
			}
			if tc.url == down.URL {
				e.sync() // its reads back off
			} else {
				e.backfilled(t)
			}
			stall.Store(tc.url == stalled.URL)
			before := testutil.ToFloat64(e.p.m.warmed)
			e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(atStep(n)))
			e.sync()
			require.Equal(t, float64(tc.warmed), testutil.ToFloat64(e.p.m.warmed)-before, "past steps replayed")
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "twice")}})
			require.Len(t, got, 1)
			require.Equal(t, map[string]string{"for": "twice", "pod": "p"}, got[0].Labels)
			if tc.warmed == n {
				twice := make([]float64, n+1)
				for i, v := range va {
					twice[i] = 2 * v
				}
				requireFedInOrder(t, e, func(s *series) bool { return s.name == "twice" }, twice, "the upstream's steps, then the TSDB's, then the evaluation")
			}
		})
	}
}

// TestDerivedWarningsSpaced: a derived input whose expression fails, fails
// at every evaluation; each was a warning (one a second at interval: 1s,
// each listing the series at fault). Now the first is, then one a minute
// with the failures since, and every failure is still counted.
func TestDerivedWarningsSpaced(t *testing.T) {
	e, cfg := derivedEnv(t, "derived:\n  - {name: bad, expr: 'a + on() a', interval: 1h}\n")
	e.ready(t) // Run logs until then
	var buf bytes.Buffer
	e.p.logger = slog.New(slog.NewTextHandler(&buf, nil))
	e.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{
		labels.FromStrings("__name__", "a", "x", "1"),
		labels.FromStrings("__name__", "a", "x", "2"),
	}, []float64{1, 2})
	for i := range 150 {
		now := t0.Add(time.Duration(i) * time.Second)
		e.clock.set(now)
		e.p.evalDerived(context.Background(), &cfg.Derived[0], now)
	}
	require.Equal(t, 150.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("bad")))
	logs := buf.String()
	require.Equal(t, 3, strings.Count(logs, "level=WARN"), logs) // at 0, 60 and 120 s
	require.Contains(t, logs, `msg="Derived input: evaluation failed" name=bad`)
	require.Contains(t, logs, "found duplicate series")
	require.Contains(t, logs, "failures_since_last_warning=60")
}

// TestDerivedHistogramResult: a result of native histograms is not scored
// (a model takes one number per time), and says so: each evaluation counts
// as failed and a warning names the series, where `rate(h[5m])` over a
// native histogram scored nothing, counted nothing and logged nothing. A
// number taken of them is scored.
func TestDerivedHistogramResult(t *testing.T) {
	for _, tc := range []struct {
		name, yml string
		scored    bool
	}{
		{"histograms", "derived:\n  - {name: lat, expr: 'rate(rpc_seconds[5m])', interval: 1h}\n", false},
		{"a number of them", "derived:\n  - {name: lat, expr: 'histogram_count(rate(rpc_seconds[5m]))', interval: 1h}\n", true},
		{"a group's member", "derived:\n  - {name: lat, interval: 1h, by: [job], members: [{name: n, expr: 'histogram_count(rate(rpc_seconds[5m]))'}, {name: h, expr: 'rate(rpc_seconds[5m])'}]}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, cfg := derivedEnv(t, tc.yml)
			e.ready(t) // Run logs until then
			var buf syncbuf.Buffer
			e.p.logger = slog.New(slog.NewTextHandler(&buf, nil))
			ls := labels.FromStrings("__name__", "rpc_seconds", "job", "a")
			const n = 10
			for i := range n {
				a := e.app.AppenderV2(context.Background())
				h := &histogram.Histogram{Count: uint64(10 * i), Sum: float64(i), ZeroThreshold: 1e-128,
					PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{int64(10 * i)}}
				ts := t0.UnixMilli() + int64(i)*stepMs
				_, err := a.Append(0, ls, 0, ts, 0, h, nil, storage.AOptions{})
				require.NoError(t, err)
				require.NoError(t, a.Commit())
				e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
			}
			e.sync()
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "lat")}})
			fails := testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("lat"))
			if tc.scored {
				require.Len(t, got, 1)
				require.Zero(t, fails)
				return
			}
			require.Empty(t, got)
			// The first evaluation's rate has one sample, so no result.
			require.Equal(t, float64(n-1), fails, "every evaluation with histograms counted")
			require.Contains(t, buf.String(), "native histograms, which are not scored")
			require.Contains(t, buf.String(), `first="{job=\"a\"}"`)
		})
	}
}

// TestReadmeErrorRatio: the README's error ratio scores a service's first
// errors. Written as a plain ratio, it had no series while the service had
// no 5xx series (a client library makes a code's series at its first
// request), so the first errors made a new series, warming up from a
// history of nothing but themselves: they scored 0, and the ratio was
// scored only during errors after.
func TestReadmeErrorRatio(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, entry, ok := strings.Cut(string(b), "  - name: api_error_ratio\n")
	require.True(t, ok, "README's configuration example has the error ratio")
	var expr string
	for line := range strings.Lines(entry) {
		if e, ok := strings.CutPrefix(line, "    expr: "); ok {
			expr = e
			break
		}
	}
	require.NotEmpty(t, expr)
	cfg := loadf(t, "derived:\n  - name: api_error_ratio\n    expr: %s", expr)
	d := &cfg.Derived[0]
	e := newEnvEngine(t, "", cfg, testEngine(), nil)
	rng := rand.New(rand.NewPCG(5, 6))
	ok200 := labels.FromStrings("__name__", "http_requests_total", "service", "api", "code", "200")
	err500 := labels.FromStrings("__name__", "http_requests_total", "service", "api", "code", "500")
	const n, burst = 420, 400
	var oks, errs, peak float64
	for i := range n {
		ts := t0.UnixMilli() + int64(i)*stepMs
		oks += 100 + 10*rng.Float64()
		ls, vs := []labels.Labels{ok200}, []float64{oks}
		if i >= burst { // the service's first errors: a third of its requests
			errs += 50
			ls, vs = append(ls, err500), append(vs, errs)
		}
		e.push(ts, model.MetricTypeCounter, ls, vs)
		e.p.evalDerived(context.Background(), d, time.UnixMilli(ts))
		if i >= burst {
			e.sync()
			for _, a := range e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "api_error_ratio")}}) {
				peak = max(peak, float64(a.Score))
			}
		}
	}
	t.Logf("peak score over the first errors: %.2f", peak)
	require.Greater(t, peak, 1.0, "the first errors are anomalous")
}

// TestDerivedOptionsReloadWarms: a reload to options a derived input's
// models cannot take in place (another false-alarm rate) gives its series
// new models warmed from the expression's history, which its next
// evaluation reads, as one that changes the expression does
// (TestDerivedExprReload); the evaluation between is scored with the old
// models. The new models warmed up on new evaluations: not ready, scoring
// 0, for an hour at 30s.
func TestDerivedOptionsReloadWarms(t *testing.T) {
	for _, tc := range []struct{ name, yml string }{
		{"expr", "derived:\n  - {name: d, expr: 'a * 2', interval: 15s, false_alarm_rate: %s}\n"},
		{"group", "derived:\n  - {name: d, interval: 15s, false_alarm_rate: %s, members: [{name: a, expr: a}, {name: b, expr: b}]}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, after := loadf(t, tc.yml, "0.0015"), loadf(t, tc.yml, "0.01")
			e := newEnvEngine(t, "", before, testEngine(), nil)
			va, vb := seasonal(400, 1), seasonal(400, 2)
			in := []labels.Labels{labels.FromStrings("__name__", "a"), labels.FromStrings("__name__", "b")}
			eval := func(cfg *config.Config, i int) Anomaly {
				ts := t0.UnixMilli() + int64(i)*stepMs
				e.push(ts, model.MetricTypeGauge, in, []float64{va[i], vb[i]})
				e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
				e.sync()
				got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d")}})
				require.Len(t, got, 1)
				return got[0]
			}
			for i := range 300 {
				eval(before, i)
			}
			require.True(t, eval(before, 300).Ready)
			require.NoError(t, e.p.ApplyConfig(after))
			require.True(t, eval(after, 301).Ready, "scored with the models it has")
			w := testutil.ToFloat64(e.p.m.warmed)
			require.True(t, eval(after, 302).Ready, "new models, warmed from the history")
			require.Greater(t, testutil.ToFloat64(e.p.m.warmed)-w, 250.0)
			var s *series
			for _, wk := range e.p.workers {
				wk.view(func(x *series) {
					if isDerived(x) {
						s = x
					}
				})
			}
			if s.grp != nil {
				require.NoError(t, s.grp.g.SetOptions(detectOptions(after.Derived[0].Scoring)), "learnt under the new rate")
			} else {
				require.Equal(t, 0.01, s.det.Options().FalseAlarmRate)
			}
		})
	}
}
