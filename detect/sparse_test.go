package detect

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSparseErrorsAfterFlat: an error counter at 0 for days (its rate
// flat at 0) that starts counting errors at random, one every 40, 160 or
// 480 samples (10 minutes to 2 hours at 15 s), as its rate over one
// scrape (1/15). The first error is a change and scores above 1; once
// errors have come for a day they are the series' normal, and its samples
// score above 1 at most at the false-alarm budget. They scored so on
// 0.72%, 0.37% and 0.17% of samples (every error opening an incident:
// 144, 33 and 16 a day), for the six days measured: the level's scale,
// raised to the first error's clip when it left the flat history, decays
// (the clip at huberK scales keeps errors under one in eight samples
// from holding it up), so each error was a few tenths of a percent more
// scales out than the one before, a record of the level, then of the
// shift member, however alike the errors. A burst of five errors at once
// after them still scores above 1.
func TestSparseErrorsAfterFlat(t *testing.T) {
	const day = 5760
	for _, every := range []int{40, 160, 480} {
		t.Run(fmt.Sprintf("one_in_%d", every), func(t *testing.T) {
			o := DefaultOptions()
			d, err := New(o)
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(uint64(every), 3))
			const start = 3 * day
			var n, hot, opened int
			for i := range start + 7*day {
				v := 0.0
				if i >= start && rng.IntN(every) == 0 {
					v = 1.0 / 15
				}
				r := d.Update(int64(i)*15_000, v)
				if i < start+day {
					continue
				}
				n++
				if r.Score > 1 {
					hot++
				}
				if r.Undamped > 1 {
					opened++
				}
			}
			t.Logf("one in %d: %.3f%% above 1, %.1f opened a day", every, 100*float64(hot)/float64(n), float64(opened)*day/float64(n))
			require.LessOrEqual(t, float64(hot)/float64(n), o.FalseAlarmRate, "share of samples above 1")
			// A burst beyond the errors before (five at once) still scores.
			for i := range 200 {
				d.Update(int64(start+7*day+i)*15_000, 0)
			}
			r := d.Update(int64(start+7*day+200)*15_000, 5.0/15)
			require.Greater(t, r.Score, 1.0, "a burst of five")
		})
	}
}
