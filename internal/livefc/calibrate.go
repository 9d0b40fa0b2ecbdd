package livefc

import (
	"math"
	"time"

	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecast"
)

// Pending is a forecast pending its check at its target (a horizon's
// first also holds the horizon's band floor).
type Pending struct {
	Target       int64
	Yhat, Lo, Hi float64
	// Floor is the horizon's band floor (see FloorUnits), calibrated on
	// the checks (see Calibrate). It outlives the pending forecast it sits
	// beside, and in the padding after Active it costs no bytes.
	Floor  float32
	Active bool
}

// CalEvery is the longest time between two of a horizon's band checks:
// a horizon longer holds more pending forecasts (see CalSlots), armed
// about h/slots apart, overlapping. With one pending forecast a horizon
// (checked when its target came, the next armed at the forecast after),
// a 4h band was checked once every 4 hours, 18 times over three days of
// make bench-capacity, too few for its floor to rise from FloorMin: the
// disk's and the leak's 4h bands covered 87% and 85%.
const CalEvery = 30 * time.Minute

// maxSlots bounds a horizon's pending forecasts (the longest horizons are
// checked more than CalEvery apart): 40 B each.
const maxSlots = 8

// CalSlots is how many pending forecasts horizon h holds: one a CalEvery
// of it, at least one, at most maxSlots. The default horizons (up to 30m)
// hold one, as before; a 4h horizon 8 (280 B more a series).
func CalSlots(h time.Duration) int {
	return int(min(maxSlots, max(1, (h+CalEvery-1)/CalEvery)))
}

// ExtraSlots is how many pending forecasts the horizons hs hold beyond
// one each.
func ExtraSlots(hs []time.Duration) int {
	n := 0
	for _, h := range hs {
		n += CalSlots(h) - 1
	}
	return n
}

// Slots returns horizon i's pending forecasts (of pend, see ExtraSlots): its first (whose checks the
// accuracy metrics take too, and which holds the floor), then the others,
// numbered from 0.
func Slots(pend []Pending, horizons []time.Duration, i int) func(yield func(int, *Pending) bool) {
	return func(yield func(int, *Pending) bool) {
		if !yield(0, &pend[i]) {
			return
		}
		off := len(horizons)
		for _, h := range horizons[:i] {
			off += CalSlots(h) - 1
		}
		for j := range CalSlots(horizons[i]) - 1 {
			if !yield(j+1, &pend[off+j]) {
				return
			}
		}
	}
}

// Arm makes pt, horizon i's forecast, pending in a free slot of the
// horizon's when the latest armed is at least h/slots older (the first
// slot whenever it is free).
func Arm(pend []Pending, horizons []time.Duration, i int, pt forecast.Point) {
	h := horizons[i]
	gap := (h / time.Duration(CalSlots(h))).Milliseconds()
	var free *Pending
	latest := int64(math.MinInt64)
	for j, pd := range Slots(pend, horizons, i) {
		if pd.Active {
			latest = max(latest, pd.Target)
			continue
		}
		if free == nil || j == 0 {
			free = pd
		}
	}
	if free == nil || (free != &pend[i] && pt.TsMillis-latest < gap) {
		return
	}
	*free = Pending{Target: pt.TsMillis, Yhat: pt.Yhat, Lo: pt.Lower, Hi: pt.Upper, Floor: free.Floor, Active: true}
}

// ActualAt returns the input's value at target, a forecast's time, from
// the sample (t, v) at or after it: on the line from the sample before it
// when the two are at most two input intervals apart, else v itself if it
// came within half an interval of the target. A sample whose time only
// comes after the target (10-minute samples, a 5m horizon) was taken for
// its value at the target, five minutes late; one after a gap, for the
// value hours before. ok is false when neither is close enough.
func ActualAt(iv, prevT int64, prevV float64, target, t int64, v float64) (float64, bool) {
	if prevT != 0 && prevT < target && t-prevT <= 2*iv {
		return prevV + (v-prevV)*float64(target-prevT)/float64(t-prevT), true
	}
	return v, t-target <= iv/2
}

// Band calibration, see Pending.Calibrate: the gain at a 5m horizon, and
// the floor's range in units of BandRef.
const (
	floorGain = 0.3
	floorMax  = 4.0
)

// FloorTop is the highest value of Pending.Floor: floorMax in units of
// FloorMin, on the logarithm.
var FloorTop = math.Log(floorMax / FloorMin)

// missShare is the share of checked forecasts a band may miss.
var missShare = 1 - Options().Coverage

// FloorUnits is the horizon's band floor in units of BandRef:
// FloorMin·e^floor, floor in [0, ln(floorMax/FloorMin)].
func (pd *Pending) FloorUnits() float64 { return FloorMin * math.Exp(float64(pd.Floor)) }

// Calibrate moves the horizon's band floor, held by pd (its first pending
// forecast), by one check of a forecast's band (chk's: pd's or another of
// the horizon's pending forecasts) against its actual, as adaptive
// conformal inference moves a quantile, on the floor's logarithm: up by g·(1−α) on a miss, down by g·α
// on a hit (α = missShare), so the floor settles where a share α of the
// checked forecasts fall outside their band, or at FloorMin (negligible
// in quadrature) where the forecaster's own band covers more. The gain g
// is floorGain at a 5m horizon and grows with the root of the time between
// the horizon's checks, h/CalSlots(h) (at most 1), as a longer horizon is
// checked less often: the default horizons (one pending forecast each) as
// before, a 4h horizon's eight every 30 minutes at 0.73 (1 a check every 4
// hours before). On the logarithm the floor rises from FloorMin to a whole
// unit in about 70 checks of a band that misses a quarter (6 h at 5m, 20 h
// at 30m), and a band that covers white noise does not dither wider.
//
// The forecaster's conformal band comes from the errors of the last few
// hours' validation origins (history 512 steps, under 9 h): it never sees
// a daily cycle, and before a morning ramp or a burst its recent errors
// are those of a quiet night. On a business-hours request rate at 60 s
// (BenchmarkCalendar's) the bands covered 88%, 78% and 72% at 5m, 15m and
// 30m; on the NAB series as forecasting inputs 91%. The floor adds in
// quadrature, so it widens the narrow bands of the quiet stretches the
// misses came after, and the wide ones barely: scaling every band by a
// calibrated factor instead reached the same coverage with interval
// scores (MSIS) 10-25% worse on NAB and bands 2.8 times as wide at 30m,
// where the floor improved the score (TestForecastBandsCalibrated).
func (pd *Pending) Calibrate(chk *Pending, actual float64, h time.Duration) {
	miss := 0.0
	if !(actual >= chk.Lo && actual <= chk.Hi) {
		miss = 1
	}
	g := min(1, floorGain*math.Sqrt(h.Minutes()/5/float64(CalSlots(h))))
	pd.Floor = float32(min(FloorTop, max(0, float64(pd.Floor)+g*(miss-missShare))))
}

// Check checks the pending forecasts pend of horizons whose target has
// come against the sample v at t: each moves its horizon's band floor (see
// Pending.Calibrate) by its actual, read at its target (see ActualAt, iv
// the input's interval, prevT and prevV the latest sample before this
// one), when the band has a unit (see BandRef, with stepDif and stepMs);
// observe, if not nil, is told of a horizon's first pending forecast
// checked (i: the horizon), as the accuracy metrics take it.
func Check(pend []Pending, horizons []time.Duration, iv, prevT int64, prevV float64, stepDif float32, stepMs, t int64, v float64, observe func(i int, pd *Pending, actual float64)) {
	for i, h := range horizons {
		for j, pd := range Slots(pend, horizons, i) {
			if !pd.Active || t < pd.Target || !detect.Measured(v) {
				continue // an infinite value made the family's MASE NaN for good
			}
			pd.Active = false
			actual, ok := ActualAt(iv, prevT, prevV, pd.Target, t, v)
			if ok && BandRef(stepDif, stepMs, h) > 0 {
				pend[i].Calibrate(pd, actual, h)
			}
			if j == 0 && ok && observe != nil {
				observe(i, pd, actual)
			}
		}
	}
}
