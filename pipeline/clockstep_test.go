package pipeline

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
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
	for _, tc := range []struct {
		name        string
		sweepBefore bool // a sweep between the step and the next samples
	}{
		{"sweep before the next samples", true},
		{"sweep after them", false},
	} {
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
