package pipeline

// Run: go test -run '^$' -bench Calendar -benchtime 1x ./pipeline

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/detect"
)

// calendarCase is a calendar event of human-driven traffic, which follows
// local time: day is the local date the event is on (a daylight-saving
// change, a holiday, a month end), and the case's series are measured per
// day around it against an anchor, the same series without the event.
type calendarCase struct {
	name string
	zone string
	day  time.Time // local midnight of the event's day (a date in zone)
	// holiday: day behaves like a Sunday; monthEnd: its business hours
	// carry 1.5 times the load (billing, reports).
	holiday, monthEnd bool
	// fail: a fault from this local time on for two hours, in which the
	// series keeps only failKeep of its business-hours load above its
	// night level (0: a job that stopped, 0.5: one failing on half its
	// workers); zero: none.
	fail     time.Time
	failKeep float64
}

// failLen is how long calendarCase.fail's fault lasts.
const failLen = 2 * time.Hour

// calendarCases: the daylight-saving changes of 2026 in Europe (last
// Sundays of March and October) and the United States (second Sunday of
// March, first of November), measured against the same series in the
// zone's offset before the change held all along; Labour Day 2026 (a
// Friday) as a holiday and 30 April 2026 (a Thursday) as a month end, in
// Berlin, against the series without them.
func calendarCases() []calendarCase {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		panic(err)
	}
	return []calendarCase{
		{name: "berlin-spring", zone: "Europe/Berlin", day: time.Date(2026, 3, 29, 0, 0, 0, 0, berlin)},
		{name: "berlin-autumn", zone: "Europe/Berlin", day: time.Date(2026, 10, 25, 0, 0, 0, 0, berlin)},
		{name: "newyork-spring", zone: "America/New_York", day: time.Date(2026, 3, 8, 0, 0, 0, 0, ny)},
		{name: "newyork-autumn", zone: "America/New_York", day: time.Date(2026, 11, 1, 0, 0, 0, 0, ny)},
		{name: "berlin-holiday", zone: "Europe/Berlin", day: time.Date(2026, 5, 1, 0, 0, 0, 0, berlin), holiday: true},
		{name: "berlin-monthend", zone: "Europe/Berlin", day: time.Date(2026, 4, 30, 0, 0, 0, 0, berlin), monthEnd: true},
	}
}

// logistic is a smooth step from 0 to 1 about x = 0.
func logistic(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// calendarLoad is the load of a human-driven series at the local time lt
// (an hour of the day and a weekday), in [0, 1]-ish units times its peak:
// "requests" ramps up from 07:00-09:00 to a business-hours plateau with a
// lunch dip and down in the evening, low at night, at a third on weekends;
// "batch" is a business-hours job, a sharp step from 20% to 70% at 09:00
// and back at 17:00 on weekdays (a CPU or a queue's depth), the worst case
// for a shifted day.
func calendarLoad(shape string, lt time.Time, c calendarCase) float64 {
	h := float64(lt.Hour()) + float64(lt.Minute())/60 + float64(lt.Second())/3600
	wd := lt.Weekday()
	y, m, d := lt.Date()
	cy, cm, cd := c.day.Date()
	today := y == cy && m == cm && d == cd
	weekend := wd == time.Saturday || wd == time.Sunday || c.holiday && today
	boost := 1.0
	if c.monthEnd && today {
		boost = 1.5
	}
	if !c.fail.IsZero() && !lt.Before(c.fail) && lt.Before(c.fail.Add(failLen)) {
		boost = c.failKeep
	}
	switch shape {
	case "batch":
		if weekend {
			return 20
		}
		if h >= 9 && h < 17 {
			return 20 + 50*boost
		}
		return 20
	default: // requests
		day := logistic((h-8)/0.6) * logistic((19-h)/1.2)
		day *= 1 - 0.15*math.Exp(-(h-12.5)*(h-12.5)/0.5) // lunch
		if weekend {
			return 15 + 30*day
		}
		return 15 + 85*day*boost
	}
}

// calendarDay is what one series did on one day.
type calendarDay struct {
	warnings, pages, hot float64 // incidents that fired the warning, the critical tier; samples scored above 1
	err                  [3]float64
	inside, n            [3]float64         // forecasts checked per horizon, and inside their band
	by                   map[string]float64 // warnings by the member that drove their peak
	// By the local hour: warnings and pages (booked at their opening),
	// samples above 1.
	warnH, pageH, hotH [24]float64
	// The fault's (calendarCase.fail) first warning and page, after it
	// began; -1: none on its day.
	warnAfter, pageAfter time.Duration
}

// calendarRun feeds a series of shape with the calendar c (or, if anchor,
// without its event: the zone's offset before day held all along, no
// holiday, no month end) at interval iv through a series' scoring and
// forecasting as the pipeline runs them (series.step with the default
// options), and returns what it did per day, from day first on relative
// to c.day; it starts warmDays before day.
func calendarRun(tb testing.TB, shape string, c calendarCase, anchor bool, iv time.Duration, seed uint64, first, days, warmDays int) []calendarDay {
	sc := config0().Defaults
	det, err := detect.New(detectOptions(sc))
	if err != nil {
		tb.Fatal(err)
	}
	hs, names := horizonsOf(sc)
	s := &series{det: *det, fc: newFcState(hs, names), name: "x"}
	buf := newFcBuf()
	so := stepOpts{forecastEveryMs: time.Minute.Milliseconds(), holdMs: (5 * time.Minute).Milliseconds()}
	loc := c.day.Location()
	if anchor {
		_, off := c.day.Zone()
		loc = time.FixedZone("anchor", off)
		c.holiday, c.monthEnd = false, false
	}
	day0 := c.day.UnixMilli()
	start := c.day.AddDate(0, 0, -warmDays).UnixMilli()
	end := c.day.AddDate(0, 0, first+days).UnixMilli()
	out := make([]calendarDay, days)
	for i := range out {
		out[i].warnAfter, out[i].pageAfter = -1, -1
	}
	dayOf := func(t int64) int {
		d := int(math.Floor(float64(t-day0) / 86_400_000)) // days of 24 h from the event's local midnight
		if d < first || d >= first+days {
			return -1
		}
		return d - first
	}
	r := rand.New(rand.NewPCG(seed, 7))
	ivs := iv.Seconds()
	// A slow multiplicative wander (3%, correlated over ~30 minutes) and
	// a level per day (±3%) beside the counts' Poisson noise: traffic
	// is not the same every day.
	a := math.Exp(-ivs / 1800)
	wander, dayLevel, lastDay := 0.0, 1.0, -1<<31
	type pend struct {
		t               int64
		yhat, low, high float64
	}
	pending := make([][]pend, len(hs))
	var p published
	var longest time.Duration
	for t := start; t < end; t += iv.Milliseconds() {
		lt := time.UnixMilli(t).In(loc)
		if yd := lt.YearDay(); yd != lastDay {
			lastDay, dayLevel = yd, 1+0.03*r.NormFloat64()
		}
		wander = a*wander + math.Sqrt(1-a*a)*0.03*r.NormFloat64()
		lambda := calendarLoad(shape, lt, c) * dayLevel * (1 + wander)
		var v float64
		if shape == "batch" {
			v = lambda + 0.02*lambda*r.NormFloat64() // a gauge
		} else {
			// A rate of Poisson counts over the interval (normal above
			// ~1 000 events, as here).
			v = max(0, lambda*ivs+math.Sqrt(lambda*ivs)*r.NormFloat64()) / ivs
		}
		prev := s.pub
		s.step(t, v, nil, &buf, so)
		d := dayOf(t)
		// The forecasts whose target is now.
		for i := range pending {
			for len(pending[i]) > 0 && pending[i][0].t <= t {
				pd := pending[i][0]
				pending[i] = pending[i][1:]
				if pd.t != t || d < 0 {
					continue
				}
				out[d].err[i] += math.Abs(v - pd.yhat)
				out[d].n[i]++
				if pd.low <= v && v <= pd.high {
					out[d].inside[i]++
				}
			}
		}
		if s.fc.isNew {
			for i := range hs {
				if s.fc.ok[i] {
					pt := s.fc.pts[i]
					pending[i] = append(pending[i], pend{pt.TsMillis, pt.Yhat, pt.Lower, pt.Upper})
				}
			}
		}
		// The incidents, as incidentRun counts them: each booked on the
		// day it opened.
		p = s.pub
		if prev.since != 0 && p.since != prev.since {
			if od := dayOf(prev.since); od >= 0 {
				w := float64(countAtLeast([]inc{{longest, prev.peak}}, 5*time.Minute, 1))
				out[od].warnings += w
				if w > 0 {
					if out[od].by == nil {
						out[od].by = map[string]float64{}
					}
					out[od].by[prev.peakMember]++
				}
				pg := float64(countAtLeast([]inc{{longest, prev.peak}}, 5*time.Minute, 2))
				out[od].pages += pg
				oh := time.UnixMilli(prev.since).In(loc).Hour()
				out[od].warnH[oh] += w
				out[od].pageH[oh] += pg
			}
			longest = 0
		}
		if p.since != 0 {
			longest = max(longest, p.duration())
		}
		if d >= 0 && p.score > 1 {
			out[d].hot++
			out[d].hotH[lt.Hour()]++
		}
		// The fault's detection: the first sample at which an incident
		// opened while it lasted has lasted 5 minutes at a peak above 1
		// (a warning) or 2 (a page), as the alert rules' for: 5m fires.
		// One that opened after the fault had ended (the step back to
		// the day's load, the daily step at 17:00) did not find it: with
		// the level and shift members' seen cap off, which warns at
		// such steps, BenchmarkWeekday's batch job counted every stop
		// and halving of the first week as found (30 and 30 of 30 at
		// 15 s, the cap's 12 and 0), 18 and 30 of them 2 or 7 hours on.
		if fd := dayOf(c.fail.UnixMilli()); fd >= 0 && !c.fail.IsZero() && p.since >= c.fail.UnixMilli() && p.since < c.fail.Add(failLen).UnixMilli() && p.duration() >= 5*time.Minute {
			after := time.Duration(t-c.fail.UnixMilli()) * time.Millisecond
			if o := &out[fd]; p.peak > 1 && o.warnAfter < 0 {
				o.warnAfter = after
			}
			if o := &out[fd]; p.peak > 2 && o.pageAfter < 0 {
				o.pageAfter = after
			}
		}
	}
	return out
}

// BenchmarkCalendar measures what daylight-saving changes, a holiday and a
// month end do to the scores and forecasts of human-driven traffic, whose
// daily cycle follows local time while omen learns its seasons in UTC. Per
// day from 3 days before the event to 13 after it, it prints the warnings
// (incidents whose event lasted 5 minutes with a peak above 1) and pages
// (peak above 2) per series, the samples scored above 1, and the
// forecasts' mean absolute error and 95% band coverage at the default
// horizons (5m, 15m, 30m), for the series with the event and for the
// anchor without it (see calendarRun), over 6 series each of "requests" (a
// smooth business-hours rate) and "batch" (a business-hours step), at 15 s
// and 60 s, after 28 days of learning. "back from day" is the first day
// from which the event's warnings and pages stay within 0.05 a series a
// day of the anchor's and its samples above 1 within 20% (and 10) of them;
// the forecasts are summed over days 0-6 (their per-day figures move by
// ±20% with where a step falls between refits, in the anchor too).
//
// New York's changes give the same figures as Berlin's: the detector and
// the forecaster see only how the local days fall on UTC's.
func BenchmarkCalendar(b *testing.B) {
	const seeds, first, days, warm = 6, -3, 17, 28
	for _, iv := range []time.Duration{15 * time.Second, time.Minute} {
		for _, c := range calendarCases() {
			for _, shape := range []string{"requests", "batch"} {
				b.Run(fmt.Sprintf("interval=%s/%s/%s", iv, c.name, shape), func(b *testing.B) {
					for range b.N {
						var e, a []calendarDay // the event's and the anchor's, over the seeds
						sum := func(dst *[]calendarDay, src []calendarDay) {
							if *dst == nil {
								*dst = make([]calendarDay, len(src))
							}
							for i, d := range src {
								o := &(*dst)[i]
								o.warnings += d.warnings / seeds
								o.pages += d.pages / seeds
								o.hot += d.hot / seeds
								for m, w := range d.by {
									if o.by == nil {
										o.by = map[string]float64{}
									}
									o.by[m] += w / seeds
								}
								for h := range d.err {
									o.err[h] += d.err[h]
									o.inside[h] += d.inside[h]
									o.n[h] += d.n[h]
								}
							}
						}
						var mu sync.Mutex
						var wg sync.WaitGroup
						for seed := range uint64(seeds) {
							for _, anchor := range []bool{false, true} {
								wg.Go(func() {
									got := calendarRun(b, shape, c, anchor, iv, seed, first, days, warm)
									mu.Lock()
									defer mu.Unlock()
									if anchor {
										sum(&a, got)
									} else {
										sum(&e, got)
									}
								})
							}
						}
						wg.Wait()
						var sb strings.Builder
						fmt.Fprintf(&sb, "%s %s %s (event | anchor), per series and day\n", iv, c.name, shape)
						fmt.Fprintf(&sb, "%4s %11s %11s %13s | %21s %21s %21s\n", "day", "warnings", "pages", "score>1", "MAE 5m", "MAE 15m", "MAE 30m")
						back := [2]int{first, first}                   // incidents, hot
						var wErr, wErrA, wIn, wInA, wN, wNA [3]float64 // days 0 to 6: the week after
						for i := range e {
							d := first + i
							fmt.Fprintf(&sb, "%+4d %5.2f %5.2f %5.2f %5.2f %6.0f %6.0f |", d, e[i].warnings, a[i].warnings, e[i].pages, a[i].pages, e[i].hot, a[i].hot)
							for h := range 3 {
								me, ma := e[i].err[h]/e[i].n[h], a[i].err[h]/a[i].n[h]
								ce, ca := 100*e[i].inside[h]/e[i].n[h], 100*a[i].inside[h]/a[i].n[h]
								fmt.Fprintf(&sb, " %4.1f %4.1f %3.0f%% %3.0f%%", me, ma, ce, ca)
								if d >= 0 && d < 7 {
									wErr[h] += e[i].err[h]
									wErrA[h] += a[i].err[h]
									wIn[h] += e[i].inside[h]
									wInA[h] += a[i].inside[h]
									wN[h] += e[i].n[h]
									wNA[h] += a[i].n[h]
								}
							}
							if e[i].warnings > a[i].warnings {
								fmt.Fprintf(&sb, "  warnings by member: %v | %v", fmtBy(e[i].by), fmtBy(a[i].by))
							}
							sb.WriteString("\n")
							if e[i].warnings > a[i].warnings+0.05 || e[i].pages > a[i].pages+0.05 {
								back[0] = d + 1
							}
							if e[i].hot > max(1.2*a[i].hot, a[i].hot+10) {
								back[1] = d + 1
							}
						}
						fmt.Fprintf(&sb, "back from day: incidents %+d, score>1 %+d; days 0-6, forecasts (5m, 15m, 30m): error ×", back[0], back[1])
						for h := range 3 {
							fmt.Fprintf(&sb, " %.3f", (wErr[h]/wN[h])/(wErrA[h]/wNA[h]))
						}
						sb.WriteString(", coverage")
						for h := range 3 {
							fmt.Fprintf(&sb, " %.1f%% (anchor %.1f%%)", 100*wIn[h]/wN[h], 100*wInA[h]/wNA[h])
						}
						sb.WriteString("\n")
						fmt.Print(sb.String()) // b.Log cuts a benchmark's log at 10 lines
						var extraW, extraP, extraHot float64
						for i := range e {
							if first+i >= 0 {
								extraW += e[i].warnings - a[i].warnings
								extraP += e[i].pages - a[i].pages
								extraHot += e[i].hot - a[i].hot
							}
						}
						b.ReportMetric(extraW, "extra-warnings")
						b.ReportMetric(extraP, "extra-pages")
						b.ReportMetric(extraHot, "extra-score>1")
						b.ReportMetric(float64(back[0]), "incidents-back-day")
						b.ReportMetric((wErr[2]/wN[2])/(wErrA[2]/wNA[2]), "30m-error-ratio-week")
					}
				})
			}
		}
	}
}

// fmtBy formats warnings by member, in the members' order.
func fmtBy(by map[string]float64) string {
	var sb strings.Builder
	for _, m := range slices.Sorted(maps.Keys(by)) {
		fmt.Fprintf(&sb, " %s %.2f", m, by[m])
	}
	return strings.TrimSpace(sb.String())
}
