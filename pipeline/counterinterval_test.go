package pipeline

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestCounterScrapeIntervalChange: a counter's rate is its rise over a
// span divided by the span, and the rise of a counter of events (requests,
// errors: Poisson counts) has a variance of λ·Δt, so the rate's deviation,
// √(λ/Δt), grows as the span shrinks: √3 from 15 s to 5 s. Rated between
// consecutive samples, a counter whose scrape interval an SRE lowered from
// 15 s to 5 s had a rate noisier than the detector learnt, and paged
// (helper-226's TestOperationalEvents against the real Prometheus: 1.34,
// whose exporter's count noise tripled the rate's). The rate is taken over
// a span of at least the interval the detector learnt; a real change of
// the rate after the same change of interval still pages.
func TestCounterScrapeIntervalChange(t *testing.T) {
	const (
		warm   = 1500 // about 6 hours at 15 s
		lambda = 50.0 // events a second
		after  = 60 * 60_000
	)
	for _, tc := range []struct {
		name    string
		everyMs int64
		// shiftAt: the rate is multiplied by shift from this long (ms)
		// after the interval changed (0: never).
		shiftAt int64
		shift   float64
		paged   bool
		// restartAt: omen is stopped (a snapshot) and started again from
		// the snapshot this long after the interval changed (0: never).
		restartAt int64
	}{
		{name: "15s to 5s", everyMs: 5000},
		{name: "15s to 5s, restarted", everyMs: 5000, restartAt: 10*60_000 + 5000},
		{name: "15s to 30s", everyMs: 30_000},
		{name: "15s to 5s then rate x3", everyMs: 5000, shiftAt: 20 * 60_000, shift: 3, paged: true},
		{name: "15s to 30s then rate x3", everyMs: 30_000, shiftAt: 20 * 60_000, shift: 3, paged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
			opts := func(o *Options) { o.SnapshotPath = path }
			e := newEnv(t, db, nil, opts)
			ls := labels.FromStrings("__name__", "requests_total", "pod", "a")
			rng := rand.New(rand.NewPCG(3, 4))
			// rise is a Poisson count of events at rate l over dtMs, by
			// its normal approximation (λΔt is 250 or more here, where
			// the two differ by less than a count in the tails scored).
			rise := func(l float64, dtMs int64) float64 {
				m := l * float64(dtMs) / 1000
				return max(0, math.Round(m+math.Sqrt(m)*rng.NormFloat64()))
			}
			push := func(ts int64, v float64) {
				a := e.app.AppenderV2(context.Background())
				_, err := a.Append(0, ls, 0, ts, v, nil, nil, storage.AOptions{Metadata: metadata.Metadata{}})
				require.NoError(t, err)
				require.NoError(t, a.Commit())
			}
			var v float64
			ts := t0.UnixMilli()
			for i := range warm {
				v += rise(lambda, stepMs)
				push(ts, v)
				if i%256 == 255 {
					e.sync()
				}
				ts += stepMs
			}
			e.sync()
			got := e.p.Anomalies(nil)
			require.Len(t, got, 1)
			require.True(t, got[0].Ready)

			change := ts - stepMs // the latest sample at 15 s
			mx, mxAt := 0.0, int64(0)
			for ts = change + tc.everyMs; ts <= change+after; ts += tc.everyMs {
				l := lambda
				if tc.shiftAt > 0 && ts-change >= tc.shiftAt {
					l *= tc.shift
				}
				v += rise(l, tc.everyMs)
				if tc.restartAt > 0 && ts-change == tc.restartAt {
					e.stop()
					require.NoError(t, e.db.Close())
					e = newEnv(t, db, nil, opts)
					require.Eventually(t, e.p.Ready, timeout, tick)
				}
				push(ts, v)
				e.sync()
				got = e.p.Anomalies(nil)
				if tc.restartAt > 0 && ts-change >= tc.restartAt && ts-change < tc.restartAt+stepMs && len(got) == 0 {
					continue // restored, no result until its first rate
				}
				require.Len(t, got, 1)
				if sc := max(float64(got[0].Score), float64(got[0].PeakScore)); sc > mx {
					mx, mxAt = sc, ts-change
				}
			}
			t.Logf("max score %.2f at %d s after the change", mx, mxAt/1000)
			if tc.restartAt > 0 {
				require.Zero(t, testutil.ToFloat64(e.p.m.warmed), "restored from the snapshot, not warmed from the history")
			}
			if tc.paged {
				require.Greater(t, mx, 1.0, "a tripled rate went unseen")
				require.GreaterOrEqual(t, mxAt, tc.shiftAt, "paged before the rate changed")
				return
			}
			require.Less(t, mx, 1.0, "the scrape interval's change paged")
		})
	}
}

// TestRateSpansLearntInterval: with a learnt interval of 15 s, samples
// 5 s apart are rated over 15 s (their rise accumulated from the span's
// base), a reset within a span is the next base, a stale marker leaves the
// span as it is, and a sample early by jitter (three quarters of the
// interval or more) is rated over its own span.
func TestRateSpansLearntInterval(t *testing.T) {
	const learnt = 15_000
	type smp struct {
		t      int64
		v      float64
		ok     bool
		rate   float64
		reason string
	}
	for _, tc := range []struct {
		name string
		smps []smp
	}{
		{"5 s samples rated over 15 s", []smp{
			{0, 1000, false, 0, "the first sample is the base"},
			{5000, 1250, false, 0, "5 s is short of the span"},
			{10_000, 1500, false, 0, "10 s too"},
			{15_000, 1750, true, 50, "750 over 15 s"},
			{20_000, 2000, false, 0, "the next span starts at the rated sample"},
			{30_000, 2500, true, 50, "750 over 15 s"},
		}},
		{"reset within a span", []smp{
			{0, 1000, false, 0, "the base"},
			{5000, 1250, false, 0, "short"},
			{10_000, 100, false, 0, "a reset is the next base"},
			{15_000, 350, false, 0, "5 s after the reset"},
			{25_000, 850, true, 50, "750 over 15 s from the reset"},
		}},
		{"stale marker within a span", []smp{
			{0, 1000, false, 0, "the base"},
			{5000, math.Float64frombits(value.StaleNaN), false, 0, "a stale marker"},
			{15_000, 1750, true, 50, "750 over 15 s"},
		}},
		{"jitter", []smp{
			{0, 1000, false, 0, "the base"},
			{11_250, 1562.5, true, 50, "three quarters of the interval is a span"},
			{22_499, 2125, false, 0, "just short of three quarters"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs rateState
			for _, s := range tc.smps {
				r, ok := rs.rate(0, s.t, s.v, learnt)
				require.Equal(t, s.ok, ok, "at %d ms: %s", s.t, s.reason)
				if ok {
					require.InDelta(t, s.rate, r, 1e-9, "at %d ms: %s", s.t, s.reason)
				}
			}
		})
	}
}
