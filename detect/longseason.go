package detect

import "math"

const (
	longLen      = 256            // coarse buckets kept
	longBucketMs = 2 * 3600 * 1e3 // time a coarse bucket should span: two hours
	longReEst    = 32             // coarse buckets between period searches
	longMinCount = 2 * 7 * 12     // buckets before the first search: two weeks of two-hour buckets
	longMinStr   = 0.7            // weakest autocorrelation used as a long season
	longMargin   = 0.02           // autocorrelation a long period must add over the best short lag
)

// longSeason is a coarse, long-horizon history that finds seasons too long
// for season's fine ring, above all the weekly one.
//
// season's 256 buckets span about three days, which holds a daily cycle
// three times but never a week: on a weekday-weekend pattern (taxi rides,
// office traffic) the daily baseline is wrong on every weekend and every
// holiday looks normal. longSeason averages samples into buckets of about
// two hours (D samples each, fixed once season has measured the sampling
// interval) and keeps the last longLen of them: 21 days, three weeks.
// Every longReEst buckets it runs the same FFT period search over the ring
// and keeps the longest strong period that season cannot represent (longer
// than a third of season's span); short periods are season's business.
//
// The baseline for the next sample is the median of the same phase one, two
// and three long periods back, each interpolated linearly between bucket
// centres, so a two-hour bucket still gives a smooth expectation inside the
// bucket.
//
// The ring holds int16 steps (qRing), so the three weeks cost 0.5 KiB.
type longSeason struct {
	Ring   qRing  // longLen buckets
	D      uint32 // samples per bucket; 0 until chosen
	AccN   uint32 // samples in the open bucket
	Acc    float64
	Period uint16 // in buckets; 0 = none
	Since  uint16 // buckets since the last period search
}

// setD fixes the bucket width from the median sampling interval in ms.
func (l *longSeason) setD(dtMs int64) {
	if dtMs <= 0 {
		l.D = 0
		return
	}
	l.D = uint32(max(1, min(math.Round(longBucketMs/float64(dtMs)), 1<<20)))
}

// at returns the bucket k places before the newest complete one (k = 0 is
// the newest).
func (l *longSeason) at(k int) float64 {
	return l.Ring.Get((int(l.Ring.Head) - 1 - k + 2*longLen) % longLen)
}

// push adds one sample; shortSpan is the longest period, in samples, that
// season can use, so that only longer ones are taken here.
func (l *longSeason) push(x float64, shortSpan int, estimate bool) {
	if l.D == 0 {
		return
	}
	l.Acc += x
	l.AccN++
	if l.AccN < l.D {
		return
	}
	l.Ring.Set(int(l.Ring.Head), l.Acc/float64(l.AccN))
	l.Ring.Head = (l.Ring.Head + 1) % longLen
	l.Ring.Count = min(l.Ring.Count+1, longLen)
	l.Acc, l.AccN = 0, 0
	l.Since++
	if l.Ring.Count >= longMinCount && l.Since >= longReEst && estimate {
		l.Since = 0
		l.estimate(shortSpan)
	}
}

// fill stands in for missed samples after a gap: the long baseline if a
// long period is known (so the ring keeps its phase), else nothing. The
// fill is bounded by the ring's span.
func (l *longSeason) fill(missed int64, shortSpan int) {
	if l.Period == 0 || l.D == 0 {
		return
	}
	for range min(missed, int64(longLen)*int64(l.D)) {
		b, _ := l.baseline()
		l.push(b, shortSpan, false)
	}
}

// estimate searches the ring for a long period: the lag, among those
// season cannot hold, with the highest autocorrelation, if that is a local
// maximum of at least longMinStr. The autocorrelation is computed directly:
// O(longLen²/2) once every longReEst buckets, a few hundred operations per
// bucket. The periodogram season uses is unreliable here: a weekly cycle in
// three weeks of data sits in the lowest few bins, where the trend's leakage
// and the daily cycle's harmonics crowd it.
func (l *longSeason) estimate(shortSpan int) {
	n := int(l.Ring.Count)
	var e [longLen]float64
	// Detrend with a least-squares line.
	l.Ring.Fit(func(k int) int { return (int(l.Ring.Head) - 1 - k + 2*longLen) % longLen }, n)
	var xm float64
	for i := range n {
		e[i] = l.at(n - 1 - i)
		xm += e[i]
	}
	xm /= float64(n)
	tm := float64(n-1) / 2
	var sxy, sxx float64
	for i := range n {
		d := float64(i) - tm
		sxy += d * (e[i] - xm)
		sxx += d * d
	}
	slope := sxy / sxx
	var ss float64
	for i := range n {
		e[i] -= xm + slope*(float64(i)-tm)
		ss += e[i] * e[i]
	}
	l.Period = 0
	if !(ss > 0) {
		return
	}
	minP := max(seasonMinP, shortSpan/int(l.D)+1)
	maxP := n / 2
	acf := func(lag int) float64 {
		var s float64
		for i := lag; i < n; i++ {
			s += e[i] * e[i-lag]
		}
		return s / ss * float64(n) / float64(n-lag)
	}
	best, bestR := 0, longMinStr
	prev, cur := acf(minP-1), acf(minP)
	for lag := minP; lag <= maxP; lag++ {
		next := acf(lag + 1)
		if cur >= prev && cur >= next && cur > bestR {
			best, bestR = lag, cur
		}
		prev, cur = cur, next
	}
	// A long period must explain clearly more than the short ones: on a
	// purely daily series every multiple of a day correlates as well as
	// the day itself, and the fine ring already serves the day.
	short := -1.0
	for lag := seasonMinP; lag < minP; lag++ {
		short = max(short, acf(lag))
	}
	if best > 0 && bestR < short+longMargin {
		best = 0
	}
	l.Period = uint16(best)
}

// baseline returns the long-season expectation for the next sample, or
// false if no long period is known.
func (l *longSeason) baseline() (float64, bool) {
	p := int(l.Period)
	if p == 0 || l.D == 0 {
		return 0, false
	}
	// Position of the next sample inside the open bucket, relative to the
	// bucket's centre, in buckets: -0.5 .. 0.5.
	pos := (float64(l.AccN)+0.5)/float64(l.D) - 0.5
	var v [seasonMedianOf]float64
	k := 0
	for j := 1; j <= seasonMedianOf; j++ {
		// The open bucket is "bucket -1"; the same phase j periods back is
		// k = j·p - 1 places before the newest complete bucket.
		b := j*p - 1
		if b+1 >= int(l.Ring.Count) {
			break
		}
		c := l.at(b)
		if pos < 0 {
			v[k] = c + (c-l.at(b+1))*pos
		} else {
			v[k] = c + (l.at(b-1)-c)*pos
		}
		k++
	}
	return pastSeasons(&v, k)
}

// seen widens [lo, hi] to hold what the series had in the next sample's
// bucket and the two buckets either side of it in its last seasonMedianOf
// long seasons (see season.seen). Two: a daylight-saving change moves a
// business-hours step by an hour, and the two-hour bucket it then falls in
// held the step averaged with the hour before it, so its value was seen
// whole two buckets on; one bucket either side left the step's edges
// outside the range on most weekdays of the two weeks after the change,
// whenever the fine ring had lost its daily season over the weekend
// (BenchmarkCalendar's batch series at 15 s). The level and shift
// members' cap (Detector.seenAtPhase) reads the same two: with one, the
// step an hour early scored 2.6-2.9 on the level member on the first
// Monday after the change (TestMondayAfterDaylightSavingStaysQuiet).
func (l *longSeason) seen(lo, hi float64) (float64, float64) {
	p := int(l.Period)
	if p == 0 || l.D == 0 {
		return lo, hi
	}
	for j := 1; j <= seasonMedianOf; j++ {
		for off := -2; off <= 2; off++ {
			b := j*p - 1 - off // the open bucket's phase j seasons back, off buckets later
			if b < 0 || b >= int(l.Ring.Count) {
				continue
			}
			x := l.at(b)
			lo, hi = min(lo, x), max(hi, x)
		}
	}
	return lo, hi
}

// statAlpha is the weight of a sample in the scale of the residual against
// the long baseline (Detector's LongStat): 1/levelSpan, as every scale's,
// but never more than one long period's samples. The scale's memory of
// levelSpan samples is 17 hours at 15 s: on a weekly season with quiet
// weekends (office traffic) it held only the weekend by Monday morning,
// which the weekly baseline predicts well, so the scale was a third to a
// quarter of Thursday's (1.4 against 5.3 on a business-hours step) and
// Monday alone scored above 1 before the step: the long member, whose
// baseline ramps up towards the next two-hour bucket from an hour before
// it (TestMondayMorningStaysQuiet); and the level and range members'
// tolerance for values seen at this phase (seenAtPhase, features) is
// this scale, so the first samples of the step paged. A week's memory
// holds every day of the week. At intervals of 2.5 minutes and up a
// week is at most levelSpan samples: unchanged (NAB's are 5 minutes and
// longer).
func (l *longSeason) statAlpha() float32 {
	return float32(1 / float64(max(levelSpan, l.periodSamples())))
}

// tailForget is the forgetting factor of the long member's calibration
// (Tail.UpdateForget): 1/tailSpan, as every member's, but never more than
// one long period's samples, for the reason statAlpha gives. Its memory
// of tailSpan samples is 34 hours at 15 s: on office traffic (a
// business-hours step, 20 to 70 from 09:00 to 17:00 on weekdays) the
// weekend had faded from it by Monday and the morning's step, whose
// residual against the two-hour buckets' ramp is the long statistic's
// largest of the week, was 6% of its weight by 10:00, so the 98th
// percentile rose to that step's own residual (10.4 to 17.3 deviations
// from 07:00 to 10:00, against 13.2 to 14.0 at 60 s, where the same
// memory is six days), and a batch job stopping at 10:00, 1.5 to 2
// times that residual, stayed below the threshold e^0.5 times the quantile; and a
// fault's own first 40 minutes were the top 2% (BenchmarkWeekday: found
// on 4, 3, 1, 2, 2 of 6 Mondays to Fridays at 15 s, 6 of 6 at 60 s; with
// this, 6 of 6 at both, and on the weeks without a fault 32 warnings
// where there were 36, in 30 series-weeks of each of its four rows;
// TestStoppedBatchJobFound). A week's memory holds every day of the week
// at any interval. At intervals of 74 s and up a week is at most
// tailSpan samples: unchanged (NAB's are 5 minutes and longer).
func (l *longSeason) tailForget() float32 {
	return float32(1 / float64(max(tailSpan, l.periodSamples())))
}

// periodSamples returns the long period in samples (0: none).
func (l *longSeason) periodSamples() int64 { return int64(l.Period) * int64(l.D) }
