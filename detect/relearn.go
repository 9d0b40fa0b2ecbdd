package detect

import "math"

const (
	// relearnRun is how many samples in a row must come at another
	// interval than the learnt one (all slower or all faster) before that
	// interval is learnt instead: as many as the first choice takes
	// (seasonDecideN). Jitter of ±30% around the learnt interval puts 16
	// in a row on one side with a chance of about 3e-9 each.
	relearnRun = seasonDecideN
	// relearnTol is the share of the learnt interval by which a sample's
	// interval must differ from it to count towards a run: jitter of
	// scrape timestamps is milliseconds, and a series raised from 10 s to
	// 12 s already has its ring 17% slow.
	relearnTol = 8 // 1/8
)

// track notes the interval from the previous sample to one at ts and
// returns the series' new sampling interval once relearnRun samples in a
// row have come at another one (0 otherwise).
//
// The rings count samples as time, each one learnt interval (see due and
// gap): a series whose interval is changed for good by less than the
// factors that due and gap see (1.75 slower, 0.75 faster) had every sample
// counted at the old interval. Changed from 10 s to 15 s, 15 s to 25 s,
// 60 s to 90 s, 50 s or 45 s, a daily ±20 sine with noise 1 had yhat off by
// 12-14 on average two days on (0.3-1.0 for a series at the new interval
// from the start), and a shift of 6 noise deviations was found in 14, 1, 0,
// 4 and 0 of 16 runs. Raised to 20 minutes, every sample was a long gap,
// filled with the ring's own past: yhat off by 9.5, no shift found.
//
// A run's interval is the shortest of a slower run's intervals (a missed
// scrape only lengthens one) and the longest of a faster run's (a resend
// or a burst only shortens one).
func (s *season) track(ts int64) int32 {
	if s.D == 0 || s.DtMs <= 0 {
		return 0
	}
	gap := int32(max(0, min(ts-s.LastTs, math.MaxInt32)))
	tol := max(1, s.DtMs/relearnTol)
	switch {
	case gap > s.DtMs+tol:
		if s.Run <= 0 {
			s.Run, s.RunIv, s.RunLag = 0, gap, 0
		}
		s.Run++
		s.RunIv = min(s.RunIv, gap)
	case gap < s.DtMs-tol && gap > 0:
		if s.Run >= 0 {
			s.Run, s.RunIv, s.RunLag = 0, gap, 0
		}
		s.Run--
		s.RunIv = max(s.RunIv, gap)
	default:
		s.Run, s.RunIv, s.RunLag = 0, 0, 0
		return 0
	}
	if s.Run < relearnRun && s.Run > -relearnRun {
		s.RunLag = int32(max(math.MinInt32, min(int64(s.RunLag)+s.lag(ts), math.MaxInt32)))
		return 0
	}
	iv := s.RunIv
	s.Run, s.RunIv = 0, 0
	return iv
}

// lag is how much more time (ms) passed before a sample at ts than the
// rings will count for it and the samples it finds missed: a sample that
// comes early takes a place only at its slot's time (see due) and one
// after a short gap has the gap filled (see Detector.update), both in
// time; one after a long gap with no season to fill it with, or off the
// interval by less than due and gap see, counts as one interval.
func (s *season) lag(ts int64) int64 {
	dt, gap := int64(s.DtMs), ts-s.LastTs
	if !FullInterval(gap, dt) {
		return 0
	}
	counted := int64(1)
	if missed := MissedBetween(s.LastTs, ts, dt); missed*dt < shortGapMs || s.Period > 0 {
		counted += min(missed, int64(seasonLen)*int64(s.D))
	}
	return gap - counted*dt
}

// relearn makes dtMs the series' sampling interval: the seasonal rings
// take the bucket widths they would have chosen for it, and what they hold
// is re-bucketed to those widths (see rebucket) rather than forgotten, so a
// daily season goes on being used at once instead of after days of
// learning again. O(seasonLen + longLen), once per change; sc.lin is the
// workspace.
func (d *Detector) relearn(dtMs int32, sc *Scratch) {
	s, l := &d.st.Season, &d.st.Long
	oldDt := float64(s.DtMs)
	// The run's samples before this one: how long they took, and how much
	// of that the rings did not count (see lag).
	run := rebucketRun{spanMs: float64(relearnRun-1) * float64(dtMs), lagMs: float64(s.RunLag)}
	s.RunLag = 0
	newD := bucketWidth(int64(dtMs))
	s.Ring.Head, s.Ring.Count, s.Period = rebucket(&s.Ring, s.Ring.Head, s.Ring.Count, s.Period, float64(s.AccN)*oldDt,
		widths{float64(s.D) * oldDt, oldDt}, widths{float64(newD) * float64(dtMs), float64(dtMs)}, run, sc.lin)
	if s.Period < seasonMinP || int(s.Period) > seasonLen/seasonMedianOf {
		s.Period = 0
	}
	s.D, s.DtMs, s.AccN, s.Acc = newD, dtMs, 0, 0
	// The period is searched again at the next closed bucket: the one
	// carried over is rounded to the new width.
	s.SinceEst = seasonReEst
	if l.D == 0 {
		return
	}
	oldW := widths{float64(l.D) * oldDt, oldDt}
	l.setD(int64(dtMs))
	l.Ring.Head, l.Ring.Count, l.Period = rebucket(&l.Ring, l.Ring.Head, l.Ring.Count, l.Period, float64(l.AccN)*oldDt,
		oldW, widths{float64(l.D) * float64(dtMs), float64(dtMs)}, run, sc.lin)
	if int(l.Period) > int(l.Ring.Count)/2 {
		l.Period = 0
	}
	l.AccN, l.Acc = 0, 0
	l.Since = longReEst
}

// rebucketRun is the run of samples that led to a new interval: spanMs
// long, of which the ring did not count lagMs (negative: counted more).
type rebucketRun struct{ spanMs, lagMs float64 }

// widths are a ring's bucket width and sampling interval, in ms: a
// bucket's mean stands for the time of its middle sample, (w-dt)/2 before
// its last (a bucket of one sample, for its time; taken as w/2, a 20-minute
// ring re-bucketed from 17-minute buckets was 10 minutes out of phase with
// the samples after it).
type widths struct{ w, dt float64 }

// centre is how long before a bucket's end its mean stands.
func (b widths) centre() float64 { return (b.w - b.dt) / 2 }

// rebucket rewrites the count newest buckets of r (newest at slot
// head-1, with openMs of samples after them in the open bucket) as closed
// buckets of the new widths that end now, newest last from slot 0, each
// the value at its time interpolated linearly between the old buckets',
// and spanning no further back than they do. The ring's time is stretched
// over the run (compressed if its lag is negative) so that what came
// before it lines up with the time of day it came at. It returns the new
// head, count and period (scaled to the new width). buf holds at least
// len(r.Q) values.
func rebucket(r *qRing, head, count, period uint16, openMs float64, from, to widths, run rebucketRun, buf []float64) (uint16, uint16, uint16) {
	n := len(r.Q)
	if count == 0 {
		return 0, 0, 0
	}
	old := buf[:count]
	for k := range old {
		old[k] = r.Get((int(head) - 1 - k + n) % n) // newest first
	}
	lag := min(run.lagMs, run.spanMs)
	// ringAge maps an age (ms before now) to the old ring's age: within
	// the run its time ran at (span-lag)/span; before it, lag behind.
	ringAge := func(a float64) float64 {
		if a < run.spanMs {
			return a * (run.spanMs - lag) / run.spanMs
		}
		return a - lag
	}
	m := 0
	for ; m < n; m++ {
		if ringAge((float64(m)+1)*to.w)-openMs > float64(count)*from.w {
			break
		}
	}
	for k := range m {
		x := max(0, (ringAge(float64(k)*to.w+to.centre())-openMs-from.centre())/from.w)
		i := min(int(x), int(count)-1)
		v := old[i]
		if i+1 < int(count) {
			v += (x - float64(i)) * (old[i+1] - v)
		}
		r.Set(m-1-k, v)
	}
	return uint16(m % n), uint16(m), uint16(math.Round(float64(period) * from.w / to.w))
}
