package pipeline

// Run: go test -run '^$' -bench Weekday -benchtime 1x ./pipeline

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkWeekday measures how the weekdays after a weekend score
// business-hours traffic (calendarLoad's series, in UTC, no calendar
// event): per weekday over 5 weeks after 28 days of learning, the
// warnings and pages per series and week, and the samples above 1, for 6
// seeds of each shape at 15 s and 60 s; and how fast a fault at 10:00 on
// each weekday of the first week (two hours with half the business-hours
// load above the night's, "half", or none of it, "stop": see
// calendarCase.fail) warns and pages, the median over the seeds in
// minutes, a fault missed counted as slowest ("-" where fewer than half
// were found).
//
// The fine ring spans three days and its period is searched every day and
// a half: from Monday to Thursday it has no period (the weekend in it, or
// in it at the last search), and on Friday the daily one. Measured at
// a9a40b6 (2026-12-06, review helper-154): Monday is the noisiest day
// (15 s requests 0.43 warnings a series and week, Tuesday 0.20, Wednesday
// and Thursday 0.03, Friday 0.10; 60 s 0.20, 0.03, 0.03, 0, 0; batch 0.07
// and 0.03 on Monday, 0 to 0.03 on the rest), and no weekday paged; the
// 15 s requests' warnings on Monday and Tuesday were the long member's
// (11) and the range member's (8), not a daily seasonal one's. The
// requests' halved load warns after 5.5 to 6 minutes at 15 s, 6 to 8 at
// 60 s, on Tuesday as on Thursday, and never pages; the batch job's
// halved load is never found, on any weekday, and its stop (back to the
// night's 20) at 15 s warned on 4 of 6 Mondays (median 8.5 minutes), 3
// of 6 Tuesdays, 1 to 2 of 6 Wednesdays to Fridays, and never paged.
//
// Not the level and shift members' cap (seenAtPhase), which helper-154
// suspected: before it, their best scores in the fault's two hours were
// 0.95 to 1.00 for the stop and 0.77 to 0.88 for the halving (Monday to
// Wednesday, 6 seeds each, 15 s), since a stop at 10:00 is the same step
// as every weekday's at 09:00 and 17:00, which their record windows hold;
// with the cap off (seenMembers 0) the same 12 of 30 stops warned within
// 36 minutes as with it, the other 18 and every halving only at the step
// back at 12:00 or at 17:00's (review helper-157). The seasonal member
// has no daily period from Monday to Thursday. What is left is the long
// member, at 0.91 to 1.01 for the stop and 0.48 to 0.63 for the halving:
// its baseline interpolates between the two-hour buckets' centres, so each
// weekday's two steps are ramps that leave residuals of up to half the
// step for an hour either side (its 98th percentile 15 deviations, a
// record of 18 to 19 every morning), and the stop's, 40 to 50, is only
// twice that. Measuring its residual from the band between the two bucket
// means instead found the stop on 6 of 6 every weekday (after 6 to 7
// minutes, Monday's after 69) and the halving on 5 or 6 of 6 from Tuesday
// (after 71), never paging, but the weekdays warned more (Monday 0.07 ->
// 0.23 a series and week, Tuesday 0 -> 0.27, Thursday 0 -> 0.23; pages
// 0 -> 0.07, 0.10, 0.03, at 09:00 on the long, level and range members:
// the long residual's scale, the level and range members' tolerance for
// a value seen at this phase, fell from 4.1 to 1.1), NAB fell (75.18 / 68.77 / 79.14, 137 false-positive rows ->
// 74.78 / 67.94 / 78.88, 146: nyc_taxi's holidays found 30 minutes later)
// and TestMondayAfterDaylightSavingStaysQuiet and TestLongSeasonFindsWeek
// failed: where a step lies inside a two-hour bucket is what the ring
// cannot tell.
//
// Why 60 s found the stop and 15 s did not (review helper-158): the long
// member's calibration forgot in samples, 34 hours at 15 s against 5.7
// days at 60 s, so at 15 s each weekday's morning step was 6% of it by
// 10:00 and its 98th percentile rose to that step's residual (Monday
// 10.4 to 17.3 from 07:00 to 10:00, at 60 s 13.2 to 14.0). With a long
// period's memory (longSeason.tailForget) the stop at 15 s warned on 6
// of 6 every weekday (median 7.8, 8.5, 8.8, 11.2 and 18.2 minutes), never
// paging, at 60 s as before (10 to 18 minutes); the weekdays' warnings,
// over the four rows, 36 -> 32 per 30 series-weeks (15 s requests 0.43,
// 0.20, 0.03, 0.03, 0.10 -> 0.23, 0.13, 0.17, 0.03, 0.17; 15 s batch 0.07
// -> 0 on Monday), no page; the halving still never. Reading a bucket
// level with one neighbour and a step from the other as flat instead of
// a ramp (the residual's scale still learnt from the ramp) found the
// stop at 15 s after 7.8 to 9.2 minutes, but with a plateau test of a
// quarter of the step the request rate's 08:00 warned (15 s 0.53, 0.33,
// 0.30, 0.47, 0.40; 60 s Monday 0.50), and with a tenth the calendar's
// batch series did (Berlin spring at 60 s 2.67 extra warnings a series,
// the holiday at 15 s 0.83): not kept.
func BenchmarkWeekday(b *testing.B) {
	const seeds, warm, weeks = 6, 28, 5
	monday := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // after 28 days from 2 February, a Monday
	for _, iv := range []time.Duration{15 * time.Second, time.Minute} {
		for _, shape := range []string{"requests", "batch"} {
			b.Run(fmt.Sprintf("interval=%s/%s", iv, shape), func(b *testing.B) {
				for range b.N {
					var mu sync.Mutex
					var wg sync.WaitGroup
					var noise [7]calendarDay                       // per weekday, summed over the seeds and weeks
					var warnAfter, pageAfter [2][7][]time.Duration // the fault on each weekday, per share kept and seed
					for seed := range uint64(seeds) {
						wg.Go(func() {
							c := calendarCase{name: "weekday", zone: "UTC", day: monday}
							got := calendarRun(b, shape, c, false, iv, seed, 0, 7*weeks, warm)
							mu.Lock()
							defer mu.Unlock()
							for i, d := range got {
								o := &noise[(i+1)%7] // day 0 is a Monday
								o.warnings += d.warnings
								o.pages += d.pages
								o.hot += d.hot
								for m, w := range d.by {
									if o.by == nil {
										o.by = map[string]float64{}
									}
									o.by[m] += w
								}
								for h := range 24 {
									o.warnH[h] += d.warnH[h]
									o.pageH[h] += d.pageH[h]
									o.hotH[h] += d.hotH[h]
								}
							}
						})
						for j, keep := range []float64{0.5, 0} {
							for k := range 5 { // Monday to Friday of the first week
								wg.Go(func() {
									c := calendarCase{name: "weekday", zone: "UTC", day: monday, fail: monday.AddDate(0, 0, k).Add(10 * time.Hour), failKeep: keep}
									got := calendarRun(b, shape, c, false, iv, seed+100, k, 1, warm)
									mu.Lock()
									defer mu.Unlock()
									warnAfter[j][k+1] = append(warnAfter[j][k+1], got[0].warnAfter)
									pageAfter[j][k+1] = append(pageAfter[j][k+1], got[0].pageAfter)
								})
							}
						}
					}
					wg.Wait()
					var sb strings.Builder
					n := float64(seeds * weeks)
					fmt.Fprintf(&sb, "%s %s, per series and weekday (%d seeds x %d weeks)\n%-4s %8s %8s %8s %12s %12s %12s %12s  warnings by hour\n", iv, shape, seeds, weeks, "day", "warnings", "pages", "score>1", "half: warns", "pages", "stop: warns", "pages")
					for _, wd := range []time.Weekday{1, 2, 3, 4, 5, 6, 0} {
						d := noise[wd]
						fmt.Fprintf(&sb, "%-4s %8.2f %8.2f %8.1f %12s %12s %12s %12s ", wd.String()[:3], d.warnings/n, d.pages/n, d.hot/n, medianMinutes(warnAfter[0][wd]), medianMinutes(pageAfter[0][wd]), medianMinutes(warnAfter[1][wd]), medianMinutes(pageAfter[1][wd]))
						for h := range 24 {
							if d.warnH[h] > 0 {
								fmt.Fprintf(&sb, " %02d:%.2f/%.2f", h, d.warnH[h]/n, d.pageH[h]/n)
							}
						}
						if len(d.by) > 0 {
							fmt.Fprintf(&sb, "  by member (summed over %d series-weeks): %s", seeds*weeks, fmtBy(d.by))
						}
						sb.WriteString("\n")
						if wd >= 1 && wd <= 5 {
							b.ReportMetric(d.warnings/n, wd.String()[:3]+"-warnings")
							b.ReportMetric(d.pages/n, wd.String()[:3]+"-pages")
						}
					}
					fmt.Print(sb.String())
				}
			})
		}
	}
}

// medianMinutes formats the median of ds in minutes, or "-" if fewer
// than half are found (>= 0); the count found follows.
func medianMinutes(ds []time.Duration) string {
	var found []time.Duration
	for _, d := range ds {
		if d >= 0 {
			found = append(found, d)
		}
	}
	if len(ds) == 0 || 2*len(found) < len(ds) {
		return fmt.Sprintf("- (%d/%d)", len(found), len(ds))
	}
	// Missed faults count as slower than every found one.
	all := make([]time.Duration, len(ds))
	copy(all, found)
	for i := len(found); i < len(ds); i++ {
		all[i] = 1 << 62
	}
	slices.Sort(all)
	return fmt.Sprintf("%.1f (%d/%d)", all[(len(all)-1)/2].Minutes(), len(found), len(ds))
}
