// Package livefc is the live forecaster's rules that `omen serve` (the
// pipeline) and `omen forecast` share, so that a CSV file is forecast as
// its series would be live: the forecaster's options and steps for its
// horizons, the Resampler that averages faster inputs into those steps,
// the value it learns from a sample, and how a horizon's forecast is read
// and widened. It imports nothing of omen's but forecast and detect.
package livefc

import (
	"time"

	"github.com/omen-sidecar/omen/forecast"
)

// Options are the forecaster settings of the live pipeline: shorter
// history and rarer refits than forecast's defaults bound memory (~9 KiB
// a series with its fcState: BenchmarkStatePerSeries) and refit CPU per
// series. The forecaster sees resampled steps (see HorizonSteps), so the
// longest horizon is at most 64 of them; MaxHorizon
// leaves room for a step estimate below the resampling step (gaps).
func Options() forecast.Options {
	return forecast.Options{MaxHorizon: 80, History: 512, RefitEvery: 64, MinSamples: 2*80 + 32, Coverage: 0.95}
}

// DailyHistory is the longest history a forecaster holds to see two days
// (see OptionsFor).
const DailyHistory = 768

// DailyRoom is, in percent of the history, the longest season a
// forecaster finds: its season search (detect's periodogram, up to
// forecast.Options.MaxPeriod, half the history) found a daily sine of 365
// steps in 768, not one of 370 or 384.
const DailyRoom = 47

// OptionsFor is Options for a forecaster whose steps are
// at least minStepMs long: where a day of them is too long for History to
// find (see DailyRoom) and not for DailyHistory, it holds DailyHistory.
// A 4h horizon (steps of at least 4 minutes, see DailyStepMs) has a day of
// 360 steps: 512 steps never held a daily cycle, and a request rate with a
// daily swing of ±60% (make bench-capacity, shape requests) was forecast 4h
// ahead with no season, its MAE 1.15 times predict_linear's best and its
// 95% band covering 68%; with two days, 0.55 times and 89%. Two days cost
// a forecaster 1 KiB of history (256 values of 4 bytes), and one that
// finds the daily season holds it in its seasonal models, once (the
// forecast package's seasonalNaive): 9.6 KB held against 4.3-5.1 KB
// without a season, 18.8 KB when each of the four held a copy (a Model of
// a daily sine at 360 steps, forecast's TestModelHeldBytesSeasonal). A
// refit took 1.7-3.6 times the CPU (BenchmarkRefit's shapes at History
// 768: walk 2.6 → 4.4 ms, rate 0.49 → 1.76, hourly 2.3 → 4.8), once every
// 64 steps of at least 4 minutes (4.3 hours), where the default horizons'
// 28 s steps refit every 30 minutes. Series whose longest horizon is from
// 1h to 6h23m hold 768 (see MinStep); those shorter (the default
// horizons), whose day is thousands of steps, and those longer, whose day
// 512 finds, keep 512.
//
// Its MaxHorizon is the steps of the longest horizon, longest, plus
// HorizonRoom, at most Options' 80 (which the default horizons,
// 64 steps, keep), and MinSamples follows it as forecast's default does
// (2·MaxHorizon+32, at least 64): the validation's first part, which
// Theta and Holt-Winters are fitted on, holds at least half the history,
// MaxHorizon+16 steps. With 80 for every forecaster a 1h horizon, 15
// steps of 4 minutes, waited 192 steps (12.8 hours) for its first
// forecast; with 31, 94 steps (6.3 hours; 2h 8.3, 3h 10.3, 4h 12.3). On
// TestCapacityHorizonsSeeDailyCycle's series over days 3 to 6 (8 seeds
// at 60 s and 3 at 15 s, each at three refit phases), the MAE over
// BASE's was 0.99, 1.08, 1.09 and 0.95 times at 1h to 4h (60 s; 15 s:
// 1.03, 1.05, 1.19, 0.98), every one within twice its standard error of
// 1, where the refit phase alone moved it 0.75 to 1.66 times a run; the
// bands covered 0.4 to 1.2 points less, 96.6-98.8% of a nominal 95%. At
// make bench-capacity's 4h horizon (76, not 80) sMAPE was 0.1% worse to
// 6% better, coverage 0.6 points lower to 3.9 higher.
func OptionsFor(minStepMs int64, longest time.Duration) forecast.Options {
	o := Options()
	if minStepMs <= 0 {
		return o
	}
	day := (24*time.Hour.Milliseconds() + minStepMs - 1) / minStepMs
	if 100*day > DailyRoom*int64(o.History) && 100*day <= DailyRoom*DailyHistory {
		o.History = DailyHistory
	}
	if steps := (longest.Milliseconds() + minStepMs - 1) / minStepMs; steps > 0 && int(steps)+HorizonRoom < o.MaxHorizon {
		o.MaxHorizon = int(steps) + HorizonRoom
		o.MinSamples = max(64, 2*o.MaxHorizon+32)
	}
	return o
}

// HorizonRoom is how many steps a forecaster's MaxHorizon leaves beyond
// its longest horizon's: the forecasts are read from the model's latest
// point, a step and a half before the sample at most (see the pipeline's fcState.step),
// and the model's step estimate may fall below the resampling step (a
// gap). Options' 80 is the default horizons' 64 steps and these.
const HorizonRoom = 16

// DailyStepMs is the shortest step of a forecaster whose longest horizon
// is DailyHorizon or more: 4 minutes, a day of 360 steps, which
// DailyHistory finds (see DailyRoom), at every scrape interval from 1 s
// to 4 minutes that divides it (15 s, 30 s, 60 s: 16, 8 and 4 samples a
// step). The 225 s whose two days filled DailyHistory exactly made a day
// 384 steps at 15 s samples (375 at 10 s): a 4h horizon found no season
// there, its forecasts 0.87 times persistence's error (the last value
// carried forward) where at 60 s, in steps of 240 s, they were 0.06
// times (TestCapacityHorizonsSeeDailyCycle, first seed).
const DailyStepMs = 240_000

// DailyHorizon is the longest horizon from which a forecaster steps at
// least DailyStepMs (see MinStep).
const DailyHorizon = time.Hour

// MinStep is the shortest step of a forecaster whose longest horizon is
// longest: a HorizonSteps-th of it, and at least DailyStepMs (4 minutes)
// from DailyHorizon (1h) on. A capacity alert's horizon of 1h to 3.75h
// (docs/reference.md, "Capacity alerts"), stepping at a 64th of it (56-169
// s; one to three minutes at 1-minute samples), held 8.5 to 25.6 hours in
// 512 steps and never a daily cycle: on a series with a daily swing of
// ±60%, a 10% daily trend and 5% noise (days 3 to 6, three seeds) it found
// no season, its forecasts 16.2, 35.7 and 41.2 off at 1h, 2h and 3h where
// the 4h horizon's, which held two days, were 8.6, and its bands covered
// 94%, 89% and 85% (4h: 98%). Stepping as the 4h horizon does, it holds two
// days in 768 steps and finds the day: 7.2, 7.7 and 8.2 off, 97-98%
// covered, and its 5m, 15m and 30m forecasts were no worse for the coarser
// steps (6.0, 6.6 and 6.8 off against 6.2-6.6, 7.2-8.2 and 9.6-12.3; on a
// random walk and a linear trend within 3% or better). A forecaster of such
// a series holds what a 4h horizon's does: 15.1-15.3 KB a series against
// 10.7-10.9 KB without the day (14.2 against 12.5-13.1 KB on a random
// walk), and refits every 64 steps of 4 minutes rather than of 56-169 s. Two
// days at the 64th of the horizon instead (a history of 960-3 072 steps)
// held 17.8-34.8 KB a series, and forecast worse: 10.2, 8.8 and 8.7 off.
func MinStep(longest time.Duration) int64 {
	step := max(1, (longest.Milliseconds()+HorizonSteps-1)/HorizonSteps)
	if longest >= DailyHorizon {
		step = max(step, DailyStepMs)
	}
	return step
}

// HorizonSteps is how many forecaster steps the longest horizon spans: the
// forecaster is fed one value per step of at least longest/HorizonSteps, so
// every configured horizon fits its MaxHorizon (80) with room to spare,
// whatever the scrape interval (1 s scrapes and a 30m horizon would
// otherwise need 1800 steps).
const HorizonSteps = 64
