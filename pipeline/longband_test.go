package pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forecast"
	"github.com/omen-sidecar/omen/internal/livefc"
)

// liveBands feeds v (one sample a minute) through a series' scoring and
// forecasting as the pipeline runs them, with the horizons hs, and returns
// per horizon the share of the forecasts made from skip samples on whose
// band held the actual at their target, and the series.
func liveBands(t *testing.T, v []float64, hs []time.Duration, skip int) ([]float64, *series) {
	t.Helper()
	acc, se := liveAccuracy(t, v, time.Minute, hs, skip)
	cov := make([]float64, len(hs))
	for h, a := range acc {
		cov[h] = a.coverage
	}
	return cov, se
}

// liveAcc is how a horizon's forecasts fared against the actuals at their
// targets: the share held by the band, the mean absolute error of the
// point forecast, and that of the last value carried forward (persistence,
// what a forecast that learnt nothing of the series' course does).
type liveAcc struct{ coverage, mae, persistence float64 }

// liveAccuracy is liveBands with each horizon's errors (see liveAcc), for
// samples iv apart.
func liveAccuracy(t *testing.T, v []float64, iv time.Duration, hs []time.Duration, skip int) ([]liveAcc, *series) {
	t.Helper()
	se, so := newLiveSeries(t, hs)
	buf := newFcBuf()
	acc, n := make([]liveAcc, len(hs)), make([]float64, len(hs))
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i, x := range v {
		se.step(t0+int64(i)*iv.Milliseconds(), x, nil, &buf, so)
		if i < skip || !se.fc.isNew {
			continue
		}
		for h, hd := range hs {
			j := i + int(hd/iv)
			if !se.fc.ok[h] || j >= len(v) {
				continue
			}
			n[h]++
			pt := se.fc.pts[h]
			if pt.Lower <= v[j] && v[j] <= pt.Upper {
				acc[h].coverage++
			}
			acc[h].mae += math.Abs(pt.Yhat - v[j])
			acc[h].persistence += math.Abs(x - v[j])
		}
	}
	for h := range hs {
		acc[h].coverage /= n[h]
		acc[h].mae /= n[h]
		acc[h].persistence /= n[h]
	}
	return acc, se
}

// dailyRate is a request rate with a daily cycle of ±60% about 100/s and
// Poisson noise, one sample a minute for days days (make bench-capacity's
// requests without its trend and wander).
func dailyRate(seed uint64, days int) []float64 { return dailyRateAt(seed, days, time.Minute) }

// dailyRateAt is dailyRate with samples iv apart.
func dailyRateAt(seed uint64, days int, iv time.Duration) []float64 {
	r := rand.New(rand.NewPCG(seed, 3))
	v := make([]float64, days*int(24*time.Hour/iv))
	for i := range v {
		c := 300 * 100 * (1 + 0.6*math.Sin(2*math.Pi*(time.Duration(i)*iv).Hours()/24))
		v[i] = max(0, c+math.Sqrt(c)*r.NormFloat64()) / 300
	}
	return v
}

// TestLongHorizonSeesDailyCycle: a forecaster whose longest horizon is 4h
// steps 4 minutes at 1-minute samples, a day 360 steps. With 512 steps of
// history it searched seasons up to 256 and found none; holding two days
// (see forecastOptionsFor) it finds the day, and its 4h band covers the
// cycle's turns (73% before on the first seed, over days 3 and 4).
func TestLongHorizonSeesDailyCycle(t *testing.T) {
	for seed := range uint64(3) {
		v := dailyRate(seed, 4)
		cov, se := liveBands(t, v, []time.Duration{5 * time.Minute, 4 * time.Hour}, 2*24*60)
		t.Logf("seed %d: seasons %v, coverage 5m %.3f 4h %.3f", seed, se.fc.m.Seasons(), cov[0], cov[1])
		s := se.fc.m.Seasons()
		require.NotEmpty(t, s, "seed %d", seed)
		require.InDelta(t, 360, s[0], 360*0.03, "seed %d", seed)
		require.Greater(t, cov[1], 0.85, "seed %d", seed)
	}
}

// TestCapacityHorizonsSeeDailyCycle: a series forecast at most 1h to 6h
// ahead (a capacity alert's horizon beside the defaults) steps at least 4
// minutes and holds 768 steps, so it finds the daily cycle at 1-minute and
// at 15 s samples (see minStepFor, forecastOptionsFor). Stepping at a 64th
// of the horizon (56-169 s, one to three minutes at 1-minute samples), the
// 1h to 3h horizons' 512 steps held 8.5 to 25.6 hours: no season, bands
// covering 92%, 84% and 80% over days 3 and 4 (first seed), the 1h
// forecast further off than the last value carried forward (MAE 10.3
// against 9.9). At 15 s samples a 4h horizon stepped 225 s, a day of 384
// steps, and a 6h horizon 345 s in 512 steps, a day of 250: both over the
// 47% of the history that the season search finds (see livefc.DailyRoom), no
// season, MAE 31.6 against persistence's 36.5 and 50.7 against 50.9 (now
// 1.7 and 7.9).
func TestCapacityHorizonsSeeDailyCycle(t *testing.T) {
	for _, tc := range []struct {
		h, iv time.Duration
		seeds uint64
	}{
		{time.Hour, time.Minute, 2},
		{2 * time.Hour, time.Minute, 2},
		{3 * time.Hour, time.Minute, 2},
		{4 * time.Hour, time.Minute, 2},
		{time.Hour, 15 * time.Second, 1},
		{4 * time.Hour, 15 * time.Second, 1},
		{6 * time.Hour, 15 * time.Second, 1},
	} {
		t.Run(fmt.Sprintf("horizon=%v/interval=%v", tc.h, tc.iv), func(t *testing.T) {
			for seed := range tc.seeds {
				v := dailyRateAt(seed, 4, tc.iv)
				acc, se := liveAccuracy(t, v, tc.iv, []time.Duration{5 * time.Minute, 30 * time.Minute, tc.h}, int(48*time.Hour/tc.iv))
				a := acc[2]
				day := float64(24*time.Hour.Milliseconds()) / float64(se.fc.rs.Step())
				t.Logf("seed %d: step %d ms, seasons %v (a day %.0f steps), coverage %.3f, MAE %.3f, persistence's %.3f; 5m MAE %.3f, 30m %.3f",
					seed, se.fc.rs.Step(), se.fc.m.Seasons(), day, a.coverage, a.mae, a.persistence, acc[0].mae, acc[1].mae)
				s := se.fc.m.Seasons()
				require.NotEmpty(t, s, "seed %d", seed)
				require.InDelta(t, day, s[0], day*0.03, "seed %d", seed)
				require.Greater(t, a.coverage, 0.85, "seed %d", seed)
				require.Less(t, a.mae, a.persistence/2, "seed %d", seed)
			}
		})
	}
}

// TestMinStepFor: the default horizons step at a 64th of the longest, 1h
// to 4h at least livefc.DailyStepMs (expected values: the horizon over 64,
// rounded up, or 4 minutes).
func TestMinStepFor(t *testing.T) {
	for _, tc := range []struct {
		longest time.Duration
		stepMs  int64
	}{
		{5 * time.Minute, 4_688},
		{30 * time.Minute, 28_125},
		{59 * time.Minute, 55_313},
		{time.Hour, 240_000},
		{3 * time.Hour, 240_000},
		{4 * time.Hour, 240_000},
		{4*time.Hour + 16*time.Minute, 240_000},
		{4*time.Hour + 17*time.Minute, 240_938},
		{6 * time.Hour, 337_500},
	} {
		t.Run(tc.longest.String(), func(t *testing.T) {
			require.Equal(t, tc.stepMs, livefc.MinStep(tc.longest))
		})
	}
}

// TestForecastOptionsFor: livefc.DailyHistory where a day of steps is too long
// for forecastOptions' 512 to find it and not for livefc.DailyHistory, else 512
// (expected values: a day is 86 400 s over the step, rounded up; found up
// to 47% of the history, 240 steps of 512 and 360 of 768).
//
// MaxHorizon is the longest horizon's steps (rounded up) plus livefc.HorizonRoom
// (16), at most 80, and MinSamples 2·MaxHorizon+32: a 1h horizon is 15
// steps of 4 minutes, so 31 and 94; the default horizons' 64 steps keep 80
// and 192.
func TestForecastOptionsFor(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		stepMs                 int64
		longest                time.Duration
		history                int
		maxHorizon, minSamples int
	}{
		{"default 30m horizon, 28 s steps", 28_125, 30 * time.Minute, 512, 80, 192},
		{"default 5m horizon alone, 4.7 s steps", 4_688, 5 * time.Minute, 512, 80, 192},
		{"169 s steps, a day of 512", 168_750, 0, 512, 80, 192},
		{"225 s steps, a day of 384", 225_000, 0, 512, 80, 192},
		{"4-minute steps, a day of 360", 240_000, 0, 768, 80, 192},
		{"1h horizon, 15 steps of 4 minutes", 240_000, time.Hour, 768, 31, 94},
		{"2h horizon, 30 steps", 240_000, 2 * time.Hour, 768, 46, 124},
		{"3h horizon, 45 steps", 240_000, 3 * time.Hour, 768, 61, 154},
		{"4h horizon, 60 steps", 240_000, 4 * time.Hour, 768, 76, 184},
		{"4h16m horizon, 64 steps", 240_000, 4*time.Hour + 16*time.Minute, 768, 80, 192},
		{"6h horizon, 338 s steps, a day of 256", 337_500, 6 * time.Hour, 768, 80, 192},
		{"359 s steps, a day of 241", 359_000, 0, 768, 80, 192},
		{"6-minute steps, a day of 240", 360_000, 0, 512, 80, 192},
		{"24h horizon, 1350 s steps", 1_350_000, 24 * time.Hour, 512, 80, 192},
		{"unknown step", 0, time.Hour, 512, 80, 192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := livefc.OptionsFor(tc.stepMs, tc.longest)
			require.Equal(t, tc.history, o.History)
			require.Equal(t, tc.maxHorizon, o.MaxHorizon)
			require.Equal(t, tc.minSamples, o.MinSamples)
			require.NoError(t, o.Validate())
		})
	}
}

// TestFirstForecastOfShortCapacityHorizon: a series forecast at most 1h
// to 4h ahead (beside the default 5m and 30m) gives its first forecast of
// the longest horizon once its forecaster holds MinSamples steps of 4
// minutes (see forecastOptionsFor): 94 for 1h, 6.3 hours, where 192
// (12.8 hours) held every forecaster back before. The default horizons
// alone, 192 steps of 28.125 s, wait 1.5 hours as before. Expected
// values: MinSamples times the step, within two steps (the first step
// closes at the second sample).
func TestFirstForecastOfShortCapacityHorizon(t *testing.T) {
	for _, tc := range []struct {
		h, iv      time.Duration
		minSamples int
		step       time.Duration
	}{
		{time.Hour, time.Minute, 94, 4 * time.Minute},
		{time.Hour, 15 * time.Second, 94, 4 * time.Minute},
		{2 * time.Hour, time.Minute, 124, 4 * time.Minute},
		{4 * time.Hour, time.Minute, 184, 4 * time.Minute},
		{30 * time.Minute, 15 * time.Second, 192, 30 * time.Second},
	} {
		t.Run(fmt.Sprintf("horizon=%v/interval=%v", tc.h, tc.iv), func(t *testing.T) {
			v := dailyRateAt(0, 1, tc.iv)
			se, so := newLiveSeries(t, []time.Duration{5 * time.Minute, 30 * time.Minute, tc.h})
			buf := newFcBuf()
			t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
			first := time.Duration(-1)
			for i, x := range v {
				se.step(t0+int64(i)*tc.iv.Milliseconds(), x, nil, &buf, so)
				if se.fc.ok[2] {
					first = time.Duration(i) * tc.iv
					break
				}
			}
			want := time.Duration(tc.minSamples) * tc.step
			t.Logf("first %v-ahead forecast after %v (MinSamples %d steps: %v)", tc.h, first, tc.minSamples, want)
			require.Positive(t, first, "no forecast in a day")
			require.InDelta(t, want.Hours(), first.Hours(), (2 * tc.step).Hours())
		})
	}
}

// TestLongHorizonBandCalibrated: the 4h band of a random walk (steps of
// 1 a minute, one sample a minute) checked against the actuals over days 2
// to 6, averaged over eight runs. One pending forecast a horizon checked
// it once every 4 hours, too rarely for its floor to rise (see livefc.CalEvery):
// it covered 88.5% (79-94% a run; 84.9% with 512 steps of history);
// checked every 30 minutes, 91.4% (85-95%).
func TestLongHorizonBandCalibrated(t *testing.T) {
	var sum float64
	const runs = 8
	for seed := range uint64(runs) {
		r := rand.New(rand.NewPCG(seed, 5))
		v := make([]float64, 6*24*60)
		x := 1000.0
		for i := range v {
			x += r.NormFloat64()
			v[i] = x
		}
		cov, _ := liveBands(t, v, []time.Duration{5 * time.Minute, 4 * time.Hour}, 2*24*60)
		t.Logf("seed %d: coverage 5m %.3f 4h %.3f", seed, cov[0], cov[1])
		sum += cov[1]
	}
	require.Greater(t, sum/runs, 0.90)
}

// TestRestoreRefusesOtherHorizon: a forecaster's state restores only
// into a forecaster of the MaxHorizon and MinSamples its horizons get now
// (see forecastOptionsFor), as of the history it gets (below). A 1h
// horizon's state saved with 80 and 192, as every forecaster had, is
// refused (restored, it kept them, and the 12.8 hours before a new
// series' first forecast came back with each of its restarts); its own
// restores, and so does the default horizons' state, whose options are
// unchanged.
func TestRestoreRefusesOtherHorizon(t *testing.T) {
	capacity := config.Scoring{ForecastHorizons: []model.Duration{model.Duration(5 * time.Minute), model.Duration(time.Hour)}}
	defaults := config.Scoring{ForecastHorizons: []model.Duration{model.Duration(5 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute)}}
	for _, tc := range []struct {
		name                   string
		sc                     config.Scoring
		maxHorizon, minSamples int
		ok                     bool
	}{
		{"1h, its own", capacity, 31, 94, true},
		{"1h, as saved before", capacity, 80, 192, false},
		{"1h, another readiness", capacity, 31, 192, false},
		{"default horizons", defaults, 80, 192, true},
		{"default horizons, another horizon", defaults, 31, 192, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, names := horizonsOf(tc.sc)
			f, s, b := savedForecaster(t, hs, names, func(o *forecast.Options) {
				o.MaxHorizon, o.MinSamples = tc.maxHorizon, tc.minSamples
			})
			o := f.m.Options()
			g := newFcState(hs, names)
			err := g.restoreState(b)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, o, g.m.Options())
			// The restored model forecasts as the saved one (the bands'
			// calibration is saved apart from the forecaster's state).
			buf := newFcBuf()
			f.step(s, t0.UnixMilli()+300*300_000, 4, 4, nil, &buf, time.Minute.Milliseconds())
			g.step(s, t0.UnixMilli()+300*300_000, 4, 4, nil, &buf, time.Minute.Milliseconds())
			require.Equal(t, f.ok, g.ok)
			for i := range f.pts {
				require.Equal(t, f.pts[i].Yhat, g.pts[i].Yhat, "horizon %v", hs[i])
			}
		})
	}
}

// TestRestoreRefusesOtherHistory: a forecaster's state restores only into
// a forecaster of the history its steps get now (see forecastOptionsFor);
// one of another history is refused, and the series' forecaster learns
// its history from the TSDB again (see series.restore). The forecast
// package's Model takes its options from the state, so a 5h horizon saved
// before its steps got 768 (615, a day of 288-307 steps, over the 47% its
// season search finds at 15 s samples) kept 615 after every restart, as a
// 4h horizon saved before it held two days (512) did.
func TestRestoreRefusesOtherHistory(t *testing.T) {
	hs, names := horizonsOf(config.Scoring{ForecastHorizons: []model.Duration{model.Duration(5 * time.Minute), model.Duration(5 * time.Hour)}})
	for _, tc := range []struct {
		name    string
		history int
		ok      bool
	}{
		{"the history its steps get", livefc.OptionsFor(newFcState(hs, names).rs.MinStepMs, 5*time.Hour).History, true},
		{"two days of steps, as saved before", 615, false},
		{"forecastOptions' 512", 512, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, b := savedForecaster(t, hs, names, func(o *forecast.Options) { o.History, o.MaxPeriod = tc.history, 0 })
			g := newFcState(hs, names)
			err := g.restoreState(b)
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, tc.history, g.m.Options().History)
			} else {
				require.Error(t, err)
			}
		})
	}
}

// savedForecaster returns a forecaster for the horizons hs whose Model's
// options edit changed, fed 300 steps of 5 minutes, its series and its
// saved state.
func savedForecaster(t *testing.T, hs []time.Duration, names []string, edit func(*forecast.Options)) (*fcState, *series, []byte) {
	t.Helper()
	f := newFcState(hs, names)
	o := f.m.Options()
	edit(&o)
	m, err := forecast.New(o)
	require.NoError(t, err)
	f.m = m
	s := &series{fc: f, name: "x"}
	buf := newFcBuf()
	for i := range 300 {
		f.step(s, t0.UnixMilli()+int64(i)*300_000, float64(i%9), float64(i%9), nil, &buf, time.Minute.Milliseconds())
	}
	b, err := f.appendState(nil)
	require.NoError(t, err)
	return f, s, b
}
