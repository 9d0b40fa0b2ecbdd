package detect

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// weekly is a 5-minute series with a daily cycle whose weekend days run at
// 40% of the weekday level: a period of 2016 samples that the fine ring
// (about three days) cannot hold.
func weekly(i int) float64 {
	day := (i / 288) % 7
	amp := 1.0
	if day >= 5 {
		amp = 0.4
	}
	return 100 + amp*50*math.Sin(2*math.Pi*float64(i)/288)
}

func TestLongSeasonFindsWeek(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	d := mustNew(t, DefaultOptions())
	var maxScore float64
	for i := range 288 * 28 {
		r := d.Update(int64(i)*300_000, weekly(i)+rng.NormFloat64())
		if i > 288*23 {
			maxScore = max(maxScore, r.Score)
		}
	}
	l := &d.st.Long
	require.Equal(t, uint32(24), l.D, "two-hour buckets of 5-minute samples")
	require.Equal(t, uint16(7*12), l.Period, "a week of two-hour buckets")
	base, ok := l.baseline()
	require.True(t, ok)
	// The interpolated baseline is within a few units of the truth (the
	// two-hour average of a sine 50 high is off by at most ~3.5%).
	require.InDelta(t, weekly(288*28), base, 4)
	require.Less(t, maxScore, 1.0, "a regular week raises no alarm")

	// A weekday that looks like a weekend day (a holiday) is flagged by the
	// long member, which the daily season cannot see.
	hit := false
	for i := 288 * 28; i < 288*29; i++ {
		v := 100 + 0.4*50*math.Sin(2*math.Pi*float64(i)/288) + rng.NormFloat64()
		if r := d.Update(int64(i)*300_000, v); r.Score > 1 && r.Member == "long" {
			hit = true
		}
	}
	require.True(t, hit, "holiday detected by the long member")
}

func TestLongSeasonNoneOnNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	d := mustNew(t, DefaultOptions())
	for i := range 288 * 25 {
		d.Update(int64(i)*300_000, 100+rng.NormFloat64())
	}
	require.Zero(t, d.st.Long.Period)
}

// TestQRingPrecision checks the int8 ring against the float64 values it
// stores: within a step, 1/126 of the range held, through a
// requantisation caused by a spike (the value's rounding is half a step;
// the requantisations before, while the range grew, add at most another
// half, their steps at most half as large in turn); once the spike is
// overwritten, Fit restores the fine step for values stored from then on
// (the values rounded while the spike was held keep that coarser error).
func TestQRingPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var r qRing
	var want [qringLen]float64
	check := func(rangeHeld float64) {
		t.Helper()
		for i, w := range want {
			require.InDelta(t, w, r.Get(i), rangeHeld*qringRoom/(2*qringLimit)+1e-9, "slot %d", i)
		}
	}
	for i := range want {
		want[i] = 1e6 + rng.NormFloat64()
		r.Set(i, want[i])
	}
	check(8)
	want[3] = 1e6 + 1000 // a spike: requantises
	r.Set(3, want[3])
	check(2000)
	want[3] = 1e6
	r.Set(3, want[3])
	r.Fit(func(k int) int { return k }, qringLen)
	check(2000)
	for i := range want {
		want[i] = 1e6 + rng.NormFloat64()
		r.Set(i, want[i])
	}
	check(8)
}
