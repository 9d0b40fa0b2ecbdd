package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// clockStepEnv feeds live and dead, 40 samples each at stepMs with omen's
// clock at each sample's time, and returns the series scored by name and
// the time of the last sample.
func clockStepEnv(t *testing.T) (e *env, live, dead labels.Labels, before map[string]*series, lastMs int64) {
	e = newEnv(t, "", nil, nil)
	live, dead = labels.FromStrings("__name__", "live"), labels.FromStrings("__name__", "dead")
	for k := range 40 {
		lastMs = t0.UnixMilli() + int64(k)*stepMs
		e.clock.set(time.UnixMilli(lastMs))
		e.push(lastMs, model.MetricTypeGauge, []labels.Labels{live, dead}, []float64{float64(k % 7), float64(k % 5)})
	}
	e.sync()
	return e, live, dead, scoredByName(e), lastMs
}

// scoredByName returns the series the workers hold, by input name; call it
// after sync, while the workers are idle.
func scoredByName(e *env) map[string]*series {
	m := map[string]*series{}
	for _, w := range e.p.workers {
		w.view(func(s *series) { m[s.name] = s })
	}
	return m
}

func sweepAll(e *env) {
	for range 2 { // the first worker's sweep may run before the other's drops
		for _, w := range e.p.workers {
			w.sweep()
		}
	}
}

// stepSweeps are the cases of a forward step of omen's clock: with a
// sweep between the step and the series' next samples, and without.
var stepSweeps = []struct {
	name        string
	sweepBefore bool
}{
	{"sweep before the next samples", true},
	{"sweep after them", false},
}

// TestOmenClockStepsForward: omen's clock stepping forward by more than
// --detect.stale-after (NTP correcting a clock that was behind, a VM or
// a frozen pod resumed while its senders queued what it missed) is not
// the series' silence. Their samples come on in sample time, a minute
// after the last; a sweep on omen's clock alone dropped every model, and
// each series warmed again from the TSDB (its open incident restarted,
// omen_models_warming up, its forecasts gone for hours). As Prometheus's
// head, which drops a series once the samples appended since (its
// senders', in sample time) have left it an hour behind, a series
// expires once both omen's clock and the other series' samples have
// passed it by --detect.stale-after: one that stopped goes all the same.
func TestOmenClockStepsForward(t *testing.T) {
	for _, tc := range stepSweeps {
		t.Run(tc.name, func(t *testing.T) {
			e, live, _, before, lastMs := clockStepEnv(t)
			require.Len(t, before, 2)
			stepped := time.UnixMilli(lastMs).Add(2 * time.Hour)
			e.clock.set(stepped)
			if tc.sweepBefore {
				sweepAll(e)
			}
			// live sends on, a minute later in sample time; dead does not.
			ts := lastMs + time.Minute.Milliseconds()
			e.push(ts, model.MetricTypeGauge, []labels.Labels{live}, []float64{3})
			e.sync()
			sweepAll(e)
			after := scoredByName(e)
			require.True(t, before["live"] == after["live"], "live keeps its models")
			require.True(t, before["dead"] == after["dead"], "dead has not been silent for an hour of its senders' time")

			// An hour and more of live's samples later, on omen's clock
			// and in sample time, dead goes; live stays.
			for ts <= lastMs+(time.Hour+2*time.Minute).Milliseconds() {
				ts += stepMs
				e.clock.set(stepped.Add(time.Duration(ts-lastMs) * time.Millisecond))
				e.push(ts, model.MetricTypeGauge, []labels.Labels{live}, []float64{float64(ts / stepMs % 7)})
			}
			e.sync()
			sweepAll(e)
			after = scoredByName(e)
			require.True(t, before["live"] == after["live"])
			require.NotContains(t, after, "dead")
		})
	}
}

// TestOmenClockStepsBack: omen's clock stepping back (within the 10
// minutes a sender may be ahead, beyond which its samples are refused)
// reports no sample received after now, and keeps a series that stopped
// no longer than --detect.stale-after after the step: the sweep takes
// readings ahead of omen's clock back to it.
func TestOmenClockStepsBack(t *testing.T) {
	e, live, _, before, lastMs := clockStepEnv(t)
	stepped := time.UnixMilli(lastMs).Add(-5 * time.Minute)
	e.clock.set(stepped)
	for _, a := range e.p.Anomalies(nil) {
		require.False(t, a.Received.After(stepped), "%s received %s, after omen's now %s", a.Labels, a.Received, stepped)
	}
	sweepAll(e)
	ts := lastMs
	for ts <= lastMs+(time.Hour+2*time.Minute).Milliseconds() {
		ts += stepMs
		e.clock.set(stepped.Add(time.Duration(ts-lastMs) * time.Millisecond))
		e.push(ts, model.MetricTypeGauge, []labels.Labels{live}, []float64{1})
		if (ts-lastMs)%(7*time.Minute.Milliseconds()) == 0 {
			e.sync()
			sweepAll(e) // every StaleAfter/8, as Run's
		}
	}
	e.sync()
	sweepAll(e)
	after := scoredByName(e)
	require.True(t, before["live"] == after["live"])
	require.NotContains(t, after, "dead", "an hour on omen's clock since the step, and of live's samples")
}

// TestOmenClockStepsForwardRefused: the series kept out by
// --detect.max-series are forgotten by the rule the models are (see
// TestOmenClockStepsForward), once silent on omen's clock and in sample
// time. Cut on omen's clock alone, the list emptied at a forward step:
// omen_series_over_budget fell to 0 until their next samples (a scrape
// then reset OmenSeriesOverBudget's 15 minutes), and each was counted in
// omen_series_over_budget_total again, as a new series, when it was
// refused once more.
func TestOmenClockStepsForwardRefused(t *testing.T) {
	for _, tc := range stepSweeps {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) { o.Workers, o.MaxSeries = 1, 1 })
			live := labels.FromStrings("__name__", "live")
			refused := labels.FromStrings("__name__", "refused")
			gone := labels.FromStrings("__name__", "gone")
			var lastMs int64
			for k := range 40 {
				lastMs = t0.UnixMilli() + int64(k)*stepMs
				e.clock.set(time.UnixMilli(lastMs))
				e.push(lastMs, model.MetricTypeGauge, []labels.Labels{live, refused, gone}, []float64{float64(k % 7), 1, 2})
			}
			e.sync()
			require.Contains(t, scoredByName(e), "live")
			require.Equal(t, 2.0, testutil.ToFloat64(e.p.m.overBudget))
			require.Equal(t, int64(2), e.p.overBudgetNow.Load())

			stepped := time.UnixMilli(lastMs).Add(2 * time.Hour)
			e.clock.set(stepped)
			if tc.sweepBefore {
				sweepAll(e)
				require.Equal(t, int64(2), e.p.overBudgetNow.Load(), "omen_series_over_budget after the step")
			}
			// live and refused send on, a minute later in sample time;
			// gone does not.
			ts := lastMs + time.Minute.Milliseconds()
			e.push(ts, model.MetricTypeGauge, []labels.Labels{live, refused}, []float64{3, 1})
			e.sync()
			sweepAll(e)
			require.Equal(t, 2.0, testutil.ToFloat64(e.p.m.overBudget), "no series refused anew")
			require.Equal(t, int64(2), e.p.overBudgetNow.Load(), "gone has not been silent for an hour of its senders' time")

			// An hour and more of samples later, on omen's clock and in
			// sample time, gone is forgotten; refused is still refused.
			for ts <= lastMs+(time.Hour+2*time.Minute).Milliseconds() {
				ts += stepMs
				e.clock.set(stepped.Add(time.Duration(ts-lastMs) * time.Millisecond))
				e.push(ts, model.MetricTypeGauge, []labels.Labels{live, refused}, []float64{float64(ts / stepMs % 7), 1})
			}
			e.sync()
			sweepAll(e)
			require.Equal(t, int64(1), e.p.overBudgetNow.Load(), "gone forgotten, refused still over the budget")
			require.Equal(t, 2.0, testutil.ToFloat64(e.p.m.overBudget))
		})
	}
}

// TestOmenClockStepsBackRefused: a refused series that stopped is
// forgotten no later after a backward step of omen's clock than a scored
// one (TestOmenClockStepsBack): its reading ahead of the clock is taken
// back to it at the sweep.
func TestOmenClockStepsBackRefused(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.Workers, o.MaxSeries = 1, 1 })
	live, gone := labels.FromStrings("__name__", "live"), labels.FromStrings("__name__", "gone")
	lastMs := t0.UnixMilli()
	e.clock.set(time.UnixMilli(lastMs))
	e.push(lastMs, model.MetricTypeGauge, []labels.Labels{live, gone}, []float64{1, 1})
	e.sync()
	require.Equal(t, int64(1), e.p.overBudgetNow.Load())
	stepped := time.UnixMilli(lastMs).Add(-5 * time.Minute)
	e.clock.set(stepped)
	sweepAll(e)
	for ts := lastMs + stepMs; ts <= lastMs+(time.Hour+2*time.Minute).Milliseconds(); ts += stepMs {
		e.clock.set(stepped.Add(time.Duration(ts-lastMs) * time.Millisecond))
		e.push(ts, model.MetricTypeGauge, []labels.Labels{live}, []float64{1})
	}
	e.sync()
	sweepAll(e)
	require.Zero(t, e.p.overBudgetNow.Load(), "gone forgotten an hour on omen's clock after the step")
}

// TestRefusedDerivedLongInterval: a derived input kept out by
// --detect.max-series whose interval is longer than --detect.stale-after
// stays refused between its evaluations, as a scored one keeps its models
// (--detect.stale-after past its interval, see worker.sweep). Forgotten
// at --detect.stale-after alone, omen_series_over_budget lost it an hour
// into each of its 3-hour intervals, and each evaluation counted it in
// omen_series_over_budget_total again, as a new series.
func TestRefusedDerivedLongInterval(t *testing.T) {
	cfg, err := config.Load([]byte("derived:\n  - {name: often, expr: level, interval: 1h}\n  - {name: slow, expr: level * 2, interval: 3h}\n"))
	require.NoError(t, err)
	// level, ingested, takes the budget's one series; the derived inputs
	// are refused.
	e := newEnvEngine(t, "", cfg, testEngine(), func(o *Options) { o.Workers, o.MaxSeries = 1, 1 })
	level := []labels.Labels{labels.FromStrings("__name__", "level")}
	often, slow := &cfg.Derived[0], &cfg.Derived[1]
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	step := func(i int, ds ...*config.Derived) {
		e.clock.set(at(i))
		e.push(at(i).UnixMilli(), model.MetricTypeGauge, level, []float64{float64(i % 7)})
		e.sync()
		for _, d := range ds {
			e.p.evalDerived(context.Background(), d, at(i))
		}
		e.sync()
	}
	step(0, often, slow)
	require.Equal(t, int64(2), e.p.overBudgetNow.Load())
	require.Equal(t, 2.0, testutil.ToFloat64(e.p.m.overBudget))

	// often is evaluated every minute here (its samples advance the
	// derived inputs' sample time), slow not until 3 hours on.
	for i := 1; i <= 179; i++ {
		step(i, often)
		if i%30 == 0 {
			sweepAll(e)
			require.Equal(t, int64(2), e.p.overBudgetNow.Load(), "slow still refused %d minutes after its evaluation", i)
		}
	}
	step(180, often, slow)
	sweepAll(e)
	require.Equal(t, int64(2), e.p.overBudgetNow.Load())
	require.Equal(t, 2.0, testutil.ToFloat64(e.p.m.overBudget), "slow not refused anew at its next evaluation")

	// Silent for more than --detect.stale-after past its interval, on
	// omen's clock and in sample time, slow is forgotten.
	for i := 181; i <= 180+4*60+2; i++ {
		step(i, often)
	}
	sweepAll(e)
	require.Equal(t, int64(1), e.p.overBudgetNow.Load(), "slow forgotten, often still refused")
}
