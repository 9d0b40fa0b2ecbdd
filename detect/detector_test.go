package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// series generates n samples, 5 minutes apart, of a daily cycle with noise
// and planted anomalies at the given indexes.
func series(seed uint64, n int, noise float64, spikes ...int) ([]int64, []float64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	ts := make([]int64, n)
	v := make([]float64, n)
	for i := range n {
		ts[i] = 1_600_000_000_000 + int64(i)*300_000
		v[i] = 100 + 20*math.Sin(2*math.Pi*float64(i)/288) + noise*rng.NormFloat64()
	}
	for _, s := range spikes {
		v[s] += 50 * noise
	}
	return ts, v
}

func mustNew(t testing.TB, o Options) *Detector {
	d, err := New(o)
	require.NoError(t, err)
	return d
}

func TestDetectorFindsPlantedSpike(t *testing.T) {
	ts, v := series(1, 3000, 2, 2500)
	d := mustNew(t, DefaultOptions())
	var at2500 Result
	maxElsewhere := 0.0
	for i := range ts {
		r := d.Update(ts[i], v[i])
		require.GreaterOrEqual(t, r.Score, 0.0)
		if i == 2500 {
			at2500 = r
		} else if i > 1000 {
			maxElsewhere = max(maxElsewhere, r.Score)
		}
	}
	require.Greater(t, at2500.Score, 1.0)
	require.Greater(t, at2500.Score, maxElsewhere)
	require.NotEmpty(t, at2500.Member)
	require.Less(t, at2500.YhatLower, at2500.Yhat)
	require.Greater(t, at2500.YhatUpper, at2500.Yhat)
	require.Greater(t, v[2500], at2500.YhatUpper)
}

func TestDetectorWarmup(t *testing.T) {
	o := DefaultOptions()
	o.WarmupSamples = 100
	d := mustNew(t, o)
	ts, v := series(2, 200, 1)
	for i := range ts {
		r := d.Update(ts[i], v[i])
		if i < 100 {
			require.Zero(t, r.Score, "sample %d", i)
			require.False(t, r.Ready)
		} else {
			require.True(t, r.Ready)
		}
	}
}

func TestDetectorOptions(t *testing.T) {
	tests := []struct {
		name  string
		opts  func(*Options)
		value float64 // appended after a quiet series
		check func(t *testing.T, r Result)
	}{
		{name: "both/up", opts: func(*Options) {}, value: 1000, check: func(t *testing.T, r Result) { require.Greater(t, r.Score, 1.0) }},
		{name: "up ignores drop", opts: func(o *Options) { o.Direction = Up }, value: -1000, check: func(t *testing.T, r Result) { require.Zero(t, r.Score) }},
		{name: "down ignores rise", opts: func(o *Options) { o.Direction = Down }, value: 1000, check: func(t *testing.T, r Result) { require.Zero(t, r.Score) }},
		// The other side is still scored: a direction that silenced both
		// passed the two cases above.
		{name: "up scores rise", opts: func(o *Options) { o.Direction = Up }, value: 1000, check: func(t *testing.T, r Result) { require.Greater(t, r.Score, 1.0) }},
		{name: "down scores drop", opts: func(o *Options) { o.Direction = Down }, value: -1000, check: func(t *testing.T, r Result) { require.Greater(t, r.Score, 1.0) }},
		{name: "min deviation caps", opts: func(o *Options) { o.MinDeviationAbs = 1e6 }, value: 1000, check: func(t *testing.T, r Result) { require.LessOrEqual(t, r.Score, ScoreCapBelowMinDeviation) }},
		// The series sits near 100 and the sample is 900 above it: a
		// relative minimum of 10 (1000) caps it, and minimums below 900,
		// absolute or relative, leave it scored.
		{name: "relative min deviation caps", opts: func(o *Options) { o.MinDeviationRel = 10 }, value: 1000, check: func(t *testing.T, r Result) { require.LessOrEqual(t, r.Score, ScoreCapBelowMinDeviation) }},
		{name: "past the min deviation", opts: func(o *Options) { o.MinDeviationAbs = 500 }, value: 1000, check: func(t *testing.T, r Result) { require.Greater(t, r.Score, 1.0) }},
		{name: "past the relative min deviation", opts: func(o *Options) { o.MinDeviationRel = 5 }, value: 1000, check: func(t *testing.T, r Result) { require.Greater(t, r.Score, 1.0) }},
		{name: "out of range", opts: func(o *Options) { o.ValidMax = 500 }, value: 1000, check: func(t *testing.T, r Result) {
			require.Equal(t, OutOfRangeScore, r.Score)
			require.Equal(t, "range", r.Member)
			// One name for one thing: the feature an incident is listed
			// with (FeatureOf of its peak member) is the sample's.
			require.Equal(t, FeatureOf("range"), r.Feature)
		}},
		{name: "infinite", opts: func(*Options) {}, value: math.Inf(1), check: func(t *testing.T, r Result) {
			require.Equal(t, OutOfRangeScore, r.Score)
			require.Equal(t, "range", r.Member)
			require.Equal(t, FeatureOf("range"), r.Feature)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.opts(&o)
			d := mustNew(t, o)
			ts, v := series(3, 1500, 1)
			for i := range ts {
				d.Update(ts[i], v[i])
			}
			tt.check(t, d.Update(ts[len(ts)-1]+300_000, tt.value))
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Options)
		ok   bool
	}{
		{name: "default", mod: func(*Options) {}, ok: true},
		{name: "bad direction", mod: func(o *Options) { o.Direction = 7 }},
		{name: "negative deviation", mod: func(o *Options) { o.MinDeviationAbs = -1 }},
		{name: "empty range", mod: func(o *Options) { o.ValidMin, o.ValidMax = 1, 1 }},
		{name: "budget zero", mod: func(o *Options) { o.FalseAlarmRate = 0 }},
		{name: "budget too large", mod: func(o *Options) { o.FalseAlarmRate = 0.7 }},
		{name: "budget below the floor", mod: func(o *Options) { o.FalseAlarmRate = 1e-20 }},
		{name: "budget at the floor", mod: func(o *Options) { o.FalseAlarmRate = MinFalseAlarmRate }, ok: true},
		{name: "negative warm-up", mod: func(o *Options) { o.WarmupSamples = -1 }},
		{name: "unknown member", mod: func(o *Options) { o.Members = 1 << 20 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.mod(&o)
			err := o.Validate()
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				_, err = New(o)
				require.Error(t, err)
			}
		})
	}
}

func TestDetectorSkipsNaN(t *testing.T) {
	d := mustNew(t, DefaultOptions())
	ts, v := series(4, 500, 1)
	for i := range ts {
		d.Update(ts[i], v[i])
	}
	before, err := d.MarshalBinary()
	require.NoError(t, err)
	r := d.Update(ts[len(ts)-1]+1, math.NaN())
	require.Zero(t, r.Score)
	r = d.Update(ts[len(ts)-1]+2, math.Inf(1))
	require.Equal(t, OutOfRangeScore, r.Score, "an infinite value is out of range")
	after, err := d.MarshalBinary()
	require.NoError(t, err)
	// Only the sample counter moved.
	require.Equal(t, len(before), len(after))
}

// TestNoLookahead checks that scoring never looks ahead: the results for a
// prefix are the same whether or not more samples follow, and a detector
// restored from a snapshot continues exactly as the original.
func TestNoLookahead(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			ts, v := series(seed, 2500, 1+float64(seed), 1800, 2100)
			full := mustNew(t, DefaultOptions())
			all := make([]Result, len(ts))
			for i := range ts {
				all[i] = full.Update(ts[i], v[i])
			}
			cut := 1000 + int(seed)*250
			prefix := mustNew(t, DefaultOptions())
			for i := range cut {
				sameResult(t, all[i], prefix.Update(ts[i], v[i]), i)
			}
			snap, err := prefix.MarshalBinary()
			require.NoError(t, err)
			var restored Detector
			require.NoError(t, restored.UnmarshalBinary(snap))
			for i := cut; i < len(ts); i++ {
				sameResult(t, all[i], restored.Update(ts[i], v[i]), i)
			}
		})
	}
}

// sameResult compares results bit for bit, NaN equal to NaN (yhat is NaN
// before the first sample).
func sameResult(t *testing.T, want, got Result, i int) {
	t.Helper()
	for _, p := range [][2]float64{{want.Score, got.Score}, {want.Yhat, got.Yhat}, {want.YhatLower, got.YhatLower}, {want.YhatUpper, got.YhatUpper}} {
		require.Equal(t, math.Float64bits(p[0]), math.Float64bits(p[1]), "sample %d: %+v vs %+v", i, want, got)
	}
	require.Equal(t, want.Ready, got.Ready, "sample %d", i)
	require.Equal(t, want.Member, got.Member, "sample %d", i)
	require.Equal(t, want.Ongoing, got.Ongoing, "sample %d", i)
}

func TestUnmarshalRejects(t *testing.T) {
	d := mustNew(t, DefaultOptions())
	ts, v := series(5, 300, 1)
	for i := range ts {
		d.Update(ts[i], v[i])
	}
	good, err := d.MarshalBinary()
	require.NoError(t, err)
	tests := []struct {
		name string
		mod  func([]byte) []byte
	}{
		{name: "empty", mod: func([]byte) []byte { return nil }},
		{name: "magic", mod: func(b []byte) []byte { b[0] = 'x'; return b }},
		{name: "version", mod: func(b []byte) []byte { b[4] = 99; return b }},
		{name: "truncated", mod: func(b []byte) []byte { return b[:len(b)-10] }},
		{name: "flipped bit", mod: func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var x Detector
			require.Error(t, x.UnmarshalBinary(tt.mod(append([]byte(nil), good...))))
		})
	}
	// Foreign state under a valid checksum: out-of-range indices made the
	// next Update panic, non-finite statistics poisoned every score.
	for _, tc := range []struct {
		name string
		mod  func(*state)
	}{
		{"season head", func(st *state) { st.Season.Ring.Head = seasonLen + 44 }},
		{"season period", func(st *state) { st.Season.Period = 1000 }},
		{"long count", func(st *state) { st.Long.Ring.Count = longLen + 1 }},
		{"tail block", func(st *state) { st.Tails[0].Block = tailBlocks + 1 }},
		{"NaN scale", func(st *state) { st.Level.S = math.NaN() }},
		{"infinite level", func(st *state) { st.Level.M = math.Inf(1) }},
		{"infinite tail quantile", func(st *state) { st.Tails[1].Zq = float32(math.Inf(1)) }},
		{"infinite season offset", func(st *state) { st.Season.Ring.Offset = math.Inf(1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := *d
			tc.mod(&f.st)
			b, err := f.MarshalBinary()
			require.NoError(t, err)
			var x Detector
			require.ErrorContains(t, x.UnmarshalBinary(b), "corrupt state")
		})
	}
	// The isolation forest's split feature indexes a 5-feature vector.
	o := DefaultOptions()
	o.Members = MemberAll
	all := mustNew(t, o)
	for i := range 3000 {
		all.Update(int64(i)*15_000, 10+math.Sin(float64(i)))
	}
	all.ex.Forest.Trees[0].Feat[0] = ifDims + 16
	b, err := all.MarshalBinary()
	require.NoError(t, err)
	var x Detector
	require.ErrorContains(t, x.UnmarshalBinary(b), "corrupt state")
}

// TestCalibration checks that on normal data (no anomalies) the fraction of
// scores above 1 is close to the false-alarm budget, on a quiet and on a
// noisy, skewed series alike, with the default members and with every
// member on. The expected count is budget × samples; the tolerance is a
// factor of 2.5 either way, wide enough for the Poisson spread of a few
// dozen events (and for the floor of ln(M/z_q), tailMinLog, which makes
// light tails a little conservative), narrow enough to catch a calibration
// off by an order of magnitude.
func TestCalibration(t *testing.T) {
	const n = 60000
	tests := []struct {
		name string
		gen  func(rng *rand.Rand, i int) float64
	}{
		{name: "quiet gaussian", gen: func(rng *rand.Rand, _ int) float64 { return 10 + 0.01*rng.NormFloat64() }},
		{name: "noisy lognormal", gen: func(rng *rand.Rand, _ int) float64 { return 1000 * math.Exp(rng.NormFloat64()) }},
		{name: "seasonal", gen: func(rng *rand.Rand, i int) float64 {
			return 50 + 10*math.Sin(2*math.Pi*float64(i)/288) + rng.NormFloat64()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rate := func(members int) float64 {
				o := DefaultOptions()
				o.FalseAlarmRate = 2e-3
				o.RefractorySamples = 0
				o.Members = members
				d := mustNew(t, o)
				rng := rand.New(rand.NewPCG(11, 12))
				above, scored := 0, 0
				for i := range n {
					r := d.Update(int64(i)*300_000, tt.gen(rng, i))
					if i >= 20000 { // past the first window
						scored++
						if r.Score > 1 {
							above++
						}
					}
				}
				return float64(above) / float64(scored)
			}
			const budget = 2e-3
			all, def := rate(MemberAll), rate(MemberDefault)
			t.Logf("rate: all members %.2e, default members %.2e, budget %.2e", all, def, budget)
			require.InDelta(t, math.Log(budget), math.Log(max(all, 1e-9)), math.Log(2.5))
			require.InDelta(t, math.Log(budget), math.Log(max(def, 1e-9)), math.Log(2.5))
		})
	}
}

func TestDetectorAllocs(t *testing.T) {
	d := mustNew(t, DefaultOptions())
	ts, v := series(6, 5000, 1)
	for i := range 2000 {
		d.Update(ts[i], v[i])
	}
	i := 2000
	allocs := testing.AllocsPerRun(2000, func() {
		d.Update(ts[i], v[i])
		i++
	})
	require.Zero(t, allocs)
}

func TestStateSize(t *testing.T) {
	for _, members := range []int{0, MemberDefault, MemberAll, MemberLevel | MemberForest} {
		require.Positive(t, StateSize(members))
		require.LessOrEqual(t, StateSize(members), 4096, "members %d", members)
	}
	// The opt-in members' state is allocated only when one is on.
	require.Less(t, StateSize(MemberDefault), StateSize(MemberAll)*2/3)
	require.Nil(t, mustNew(t, DefaultOptions()).ex)
}

// TestSnapshotRoundTrip checks that a restored Detector carries on exactly
// as the original, with and without the opt-in members' state, and so does
// one restored from the state as the next release writes it, a field added
// at the end (asNextRelease): a rollback by one release keeps it warm.
func TestSnapshotRoundTrip(t *testing.T) {
	for _, members := range []int{MemberDefault, MemberAll, MemberLevel | MemberSpectral} {
		t.Run(fmt.Sprint(members), func(t *testing.T) {
			o := DefaultOptions()
			o.Members = members
			d := mustNew(t, o)
			ts, v := series(7, 5000, 2)
			for i := range 3000 {
				d.Update(ts[i], v[i])
			}
			b, err := d.MarshalBinary()
			require.NoError(t, err)
			require.Len(t, b, snapshotSize(members))
			next := asNextRelease(b)
			require.NoError(t, Readable(next))
			var r, rn Detector
			require.NoError(t, r.UnmarshalBinary(b))
			require.NoError(t, rn.UnmarshalBinary(next))
			restored := mustNew(t, o)
			require.NoError(t, restored.Restore(next))
			for _, r := range []*Detector{&r, &rn, restored} {
				again, err := r.AppendBinary([]byte("prefix"))
				require.NoError(t, err)
				require.Equal(t, b, again[len("prefix"):])
			}
			for i := 3000; i < len(ts); i++ {
				want := d.Update(ts[i], v[i])
				for _, r := range []*Detector{&r, &rn, restored} {
					require.Equal(t, want, r.Update(ts[i], v[i]), "sample %d", i)
				}
			}
		})
	}
}

func TestRollingMatchesTwoPass(t *testing.T) {
	for _, w := range []int{2, 5, 16} {
		t.Run(fmt.Sprintf("window=%d", w), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var r Rolling
			var xs []float32
			for i := range 1000 {
				x := float32(1e4 + 100*rng.NormFloat64())
				var out float64
				evict := len(xs) >= w
				if evict {
					out = float64(xs[len(xs)-w])
				}
				r.Update(float64(x), out, evict)
				xs = append(xs, x)
				if i%97 == 0 {
					r.Rebase(xs[max(0, len(xs)-w):])
				}
				win := xs[max(0, len(xs)-w):]
				var mean float64
				for _, v := range win {
					mean += float64(v)
				}
				mean /= float64(len(win))
				var ss float64
				for _, v := range win {
					ss += (float64(v) - mean) * (float64(v) - mean)
				}
				require.InDelta(t, mean, r.Mean(), 1e-9*1e4)
				if len(win) > 1 {
					// Running sums of values near 1e4 lose about 1e8·ε ≈ 1e-8
					// of the sum of squares per update.
					require.InDelta(t, ss/float64(len(win)-1), r.Var(), 1e-4)
				}
			}
		})
	}
}

func TestRobustMatchesDirect(t *testing.T) {
	// On a linear ramp of slope 1 every residual is far inside the clipping
	// band after the start, so the location follows the plain recursion
	// M += a(x-M), a = max(α, 1/n); compare with a direct computation.
	e := Robust{Alpha: 0.1}
	var m, s float64
	for i := 1; i <= 200; i++ {
		x := float64(i % 7) // bounded, so |x-M| stays within 4·S
		e.Update(x)
		a := max(float64(float32(0.1)), 1/float64(i))
		if i == 1 {
			m, s = x, 0
		} else {
			r := x - m
			if i > 8 {
				r = max(-huberK*s, min(r, huberK*s))
			}
			m += a * r
			s += a * (math.Abs(r) - s)
		}
		require.InDelta(t, m, e.M, 1e-12)
		require.InDelta(t, s, e.S, 1e-12)
	}
	// One huge outlier moves the location by at most α·k·S.
	before, scale := e.M, e.S
	e.Update(1e9)
	require.LessOrEqual(t, math.Abs(e.M-before), float64(e.Alpha)*huberK*scale+1e-9)
}

func TestTailScoresRecords(t *testing.T) {
	tl := newTail(100, tailMinLog)
	rng := rand.New(rand.NewPCG(1, 1))
	for range 500 {
		tl.Update(math.Abs(rng.NormFloat64()))
	}
	// A record beats both the window maximum and the floor e^MinLog·z_q.
	m := max(tl.windowMax(), float64(tl.Zq)*math.Exp(float64(tl.minLog())))
	require.Less(t, tl.Score(m*0.99), 1.0)
	require.Greater(t, tl.Score(m*1.01), 1.0)
	require.InDelta(t, 1.0, tl.Score(tl.Threshold(1)), 1e-9)
	require.InDelta(t, 0.3, tl.Score(tl.Threshold(0.3)), 1e-9)
}

// TestTailCalibratedWhenReady: a Tail scores against its quantile from
// the first sample Ready allows, not the placeholder 1 until the next.
func TestTailCalibratedWhenReady(t *testing.T) {
	tl := newTail(100, tailMinLog)
	for range tailMinN {
		tl.Update(3)
	}
	require.True(t, tl.Ready())
	// 3 sits in the histogram's bin [2√2, 4): its quantile, read within
	// the bin, is there too.
	require.InDelta(t, 3.4, float64(tl.Zq), 0.6)
	require.Less(t, tl.Score(3), 1.0, "the usual statistic")

	// A state saved there by a version that read the quantile only at
	// the next statistic has the placeholder: it is read then.
	old := newTail(100, tailMinLog)
	for range tailMinN {
		old.Update(3)
	}
	old.Zq = 1
	old.refreshRange()
	old.Update(3)
	require.Equal(t, tl.Zq, old.Zq)
}

func TestForestIsolatesOutlier(t *testing.T) {
	var f Forest
	f.RNG = 1
	rng := rand.New(rand.NewPCG(2, 2))
	var v [ifDims]float64
	for range 1000 {
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		f.Update(&v)
	}
	for i := range v {
		v[i] = 0
	}
	normal := f.Score(&v)
	v[0], v[1] = 7, -7
	outlier := f.Score(&v)
	// Depth-limited trees over a 32-vector subsample: the outlier's mean
	// path is shorter by about a quarter.
	require.Greater(t, outlier, normal*1.2)
}

func ExampleDetector() {
	d, err := New(DefaultOptions())
	if err != nil {
		panic(err)
	}
	t0 := int64(1_700_000_000_000)
	var r Result
	for i := range 2000 {
		v := 10 + math.Sin(float64(i)/5) // a steady cycle
		if i == 1999 {
			v = 30 // then a spike
		}
		r = d.Update(t0+int64(i)*60_000, v)
	}
	fmt.Printf("anomalous=%v yhat≈%.0f\n", r.Score > 1, r.Yhat)
	// Output: anomalous=true yhat≈10
}

// TestGapKeepsSeasonPhase drops a third of a day from a strongly daily
// series: the samples after the gap must still be expected at their phase
// (yhat near the true curve) and raise no alarm.
func TestGapKeepsSeasonPhase(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	d := mustNew(t, DefaultOptions())
	truth := func(i int) float64 { return 100 + 30*math.Sin(2*math.Pi*float64(i)/288) }
	const gapFrom, gapLen = 4000, 96
	for i := range 5200 {
		if i >= gapFrom && i < gapFrom+gapLen {
			continue
		}
		r := d.Update(int64(i)*300_000, truth(i)+0.5*rng.NormFloat64())
		if i >= gapFrom+gapLen && i < gapFrom+gapLen+600 {
			require.Less(t, r.Score, 1.0, "sample %d (member %s)", i, r.Member)
			require.InDelta(t, truth(i), r.Yhat, 6, "sample %d", i)
		}
	}
}

// TestRefractoryEscape: inside the refractory period an echo of the event
// that opened it is damped, but a much stronger event still alerts.
func TestRefractoryEscape(t *testing.T) {
	run := func(refractory int) [3000]Result {
		ts, v := series(1, 3000, 2)
		v[2500] += 30 // about 15σ: opens the period
		v[2520] += 45 // a follow-up that alerts on its own (below)
		v[2540] += 30000
		o := DefaultOptions()
		o.RefractorySamples = refractory
		d := mustNew(t, o)
		var r [3000]Result
		for i := range ts {
			r[i] = d.Update(ts[i], v[i])
		}
		return r
	}
	r, free := run(DefaultOptions().RefractorySamples), run(0)
	t.Logf("scores %.3f %.3f %.3f; without the period %.3f", r[2500].Score, r[2520].Score, r[2540].Score, free[2520].Score)
	require.Greater(t, r[2500].Score, 1.0)
	// The follow-up would alert without the period; inside it, it is damped
	// by exactly refractDamp and does not.
	require.Greater(t, free[2520].Score, 1.0)
	require.Less(t, r[2520].Score, 1.0)
	require.InEpsilon(t, refractDamp*free[2520].Score, r[2520].Score, 1e-6)
	require.Greater(t, r[2540].Score, refractEscape*r[2500].Score)
	require.NotEmpty(t, r[2540].Member)
}

// TestOngoing: a lasting change scores above 1 once, and Ongoing then
// tells that its event goes on while the detector takes it in (the
// pipeline's incidents, and the alerts on their duration, rest on this);
// a glitch's event and the detector's false alarms on noise are over
// within a few samples. Spans are measured as the pipeline's incident
// does at 15 s samples: an event goes on while its Ongoing samples come
// at most hold (20) samples apart.
func TestOngoing(t *testing.T) {
	const at, hold = 3000, 20
	flat := func(n int) ([]int64, []float64) {
		rng := rand.New(rand.NewPCG(3, 42))
		ts, v := make([]int64, n), make([]float64, n)
		for i := range n {
			ts[i], v[i] = int64(i)*15_000, 100+2*rng.NormFloat64()
		}
		return ts, v
	}
	shift := func(by float64) func([]float64) {
		return func(v []float64) {
			for i := at; i < len(v); i++ {
				v[i] += by
			}
		}
	}
	for _, tc := range []struct {
		name             string
		gen              func(n int) ([]int64, []float64)
		n                int
		change           func(v []float64)
		minSpan, maxSpan int // the longest event's span, from at on
	}{
		{"lasting step of 5σ", flat, at + 400, shift(10), 20, 400},
		{"lasting step of 20σ", flat, at + 400, shift(40), 20, 400},
		{"lasting step of 20σ on a daily cycle", func(n int) ([]int64, []float64) { return series(3, n, 2) }, at + 400, shift(40), 20, 400},
		{"glitch of 500σ", flat, at + 400, func(v []float64) { v[at] += 1000 }, 0, 10},
		{"noise", flat, 50_000, func([]float64) {}, 0, 19},
		{"noise on a daily cycle", func(n int) ([]int64, []float64) { return series(3, n, 2) }, 50_000, func([]float64) {}, 0, 19},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, v := tc.gen(tc.n)
			tc.change(v)
			d := mustNew(t, DefaultOptions())
			longest, first, last := 0, -1, -1
			for i := range ts {
				r := d.Update(ts[i], v[i])
				if r.Score > 1 {
					require.True(t, r.Ongoing, "sample %d scored %.2f", i, r.Score)
				}
				if i < at || !r.Ongoing {
					continue
				}
				if first < 0 || i-last > hold {
					first = i
				}
				last = i
				longest = max(longest, last-first)
			}
			t.Logf("longest event: %d samples", longest)
			require.GreaterOrEqual(t, longest, tc.minSpan)
			require.LessOrEqual(t, longest, tc.maxSpan)
		})
	}
}

// TestRestoreKeepsOptions: Restore takes what was learnt and keeps the
// options the Detector was made with, where they do not shape what is
// learnt; a snapshot learnt under another false-alarm rate, member set or
// seed is refused and the Detector left as it was.
func TestRestoreKeepsOptions(t *testing.T) {
	src := mustNew(t, DefaultOptions())
	ts, v := series(7, 3000, 2)
	for i := range ts {
		src.Update(ts[i], v[i])
	}
	b, err := src.MarshalBinary()
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		mod  func(*Options)
		ok   bool
	}{
		{"same options", func(*Options) {}, true},
		{"direction and minimum deviation", func(o *Options) { o.Direction, o.MinDeviationAbs = Up, 5 }, true},
		{"refractory period and warm-up", func(o *Options) { o.RefractorySamples, o.WarmupSamples = 3, 10 }, true},
		{"false-alarm rate", func(o *Options) { o.FalseAlarmRate *= 2 }, false},
		{"members", func(o *Options) { o.Members = MemberAll }, false},
		{"seed", func(o *Options) { o.Seed++ }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.mod(&o)
			d := mustNew(t, o)
			fresh := d.st
			err := d.Restore(b)
			require.Equal(t, o, d.Options(), "the options stay the Detector's")
			if !tc.ok {
				require.Error(t, err)
				require.Equal(t, fresh, d.st, "unchanged")
				return
			}
			require.NoError(t, err)
			require.Equal(t, src.st, d.st)
			require.True(t, d.Ready())
		})
	}
}

// TestFlatAndRegularSeriesStayQuiet: series that never change, or repeat a
// few shapes, must not alarm on their own. The novelty member's memory
// used to clear one word of its seen-set every 64 samples, so the single
// context of a constant series was "new" again every 2048 samples: a score
// of 2.2-2.4 every 8.5 hours at a 15 s scrape for every flat series.
func TestFlatAndRegularSeriesStayQuiet(t *testing.T) {
	const n = 50_000
	for _, tc := range []struct {
		name string
		v    func(i int) float64
	}{
		{"zero", func(int) float64 { return 0 }},
		{"constant", func(int) float64 { return 42 }},
		{"square wave", func(i int) float64 { return float64(i / 5 % 2) }},
		{"sawtooth", func(i int) float64 { return float64(i % 7) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, DefaultOptions())
			var alarms []int
			for i := range n {
				if r := d.Update(int64(i)*15_000, tc.v(i)); r.Score > 1 && i > 2000 {
					alarms = append(alarms, i)
				}
			}
			require.Empty(t, alarms)
		})
	}
}

// TestDailySeasonAtScrapeIntervals: at Prometheus's usual scrape intervals
// the fine ring spans three days, so a daily season is found (a bound on
// the bucket width made it span 17 h at 15 s, and the season was never
// found below ~64 s: bands ±57 around a ±20 sine with noise 1, and a 10σ
// dip scored 0.2). After four days the period is a day, the band is
// narrow, and a 10σ dip scores above 1.
func TestDailySeasonAtScrapeIntervals(t *testing.T) {
	const day = 86_400_000
	// Prometheus stamps a scrape with its start, a few milliseconds either
	// side of the schedule: intervals of 1 999 and 2 001 ms at 2 s.
	for _, c := range []struct{ dtMs, jitterMs int64 }{
		{1_000, 5}, {2_000, 5}, {15_000, 0}, {15_000, 5}, {30_000, 0}, {60_000, 0}, {300_000, 0},
	} {
		t.Run(fmt.Sprintf("%ds±%dms", c.dtMs/1000, c.jitterMs), func(t *testing.T) {
			d, err := New(DefaultOptions())
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(5, 5))
			n := int(4 * day / c.dtMs)
			var r Result
			var missed int64
			for i := range n {
				ts := 1_700_006_400_000 + int64(i)*c.dtMs
				if c.jitterMs > 0 {
					ts += rng.Int64N(2*c.jitterMs+1) - c.jitterMs
				}
				v := 100 + 20*math.Sin(2*math.Pi*float64(ts%day)/day) + rng.NormFloat64()
				if i == n-1 {
					v -= 10
				}
				r = d.Update(ts, v)
				missed += r.Missed
			}
			s := d.st.Season
			require.InDelta(t, c.dtMs, s.DtMs, float64(c.jitterMs), "the series' interval")
			require.Zero(t, missed, "samples reported missed from a series that missed none")
			require.InDelta(t, day, float64(int64(s.Period)*int64(s.D)*c.dtMs), float64(2*int64(s.D)*c.dtMs), "period %d buckets of %d samples", s.Period, s.D)
			require.Less(t, r.YhatUpper-r.YhatLower, 20.0, "band [%g, %g]", r.YhatLower, r.YhatUpper)
			require.Greater(t, r.Score, 1.0)
		})
	}
}

// TestIntervalToTheMillisecond: a series' interval is its median to the
// millisecond. Taken in whole seconds, a 2 s scrape whose first intervals
// were 1 999 ms more often than 2 001 was a 1 s series that missed every
// other sample (its short-term memory restarted at each), and a 1 s one got
// no interval at all (no gap found, a ring spanning 17 minutes).
func TestIntervalToTheMillisecond(t *testing.T) {
	for _, dtMs := range []int64{1_000, 2_000, 15_000} {
		for seed := range uint64(8) {
			d := mustNew(t, DefaultOptions())
			rng := rand.New(rand.NewPCG(seed, 9))
			const gapAt, gapLen = 1000, 10
			for i := range 1200 {
				if i >= gapAt && i < gapAt+gapLen {
					continue
				}
				ts := 1_700_006_400_000 + int64(i)*dtMs + rng.Int64N(11) - 5
				r := d.Update(ts, 10+rng.NormFloat64())
				want := int64(0)
				if i == gapAt+gapLen {
					want = gapLen
				}
				require.Equal(t, want, r.Missed, "%d ms, seed %d, sample %d", dtMs, seed, i)
			}
			require.InDelta(t, dtMs, d.st.Season.DtMs, 5, "%d ms, seed %d", dtMs, seed)
			require.InDelta(t, bucketWidth(dtMs), d.st.Season.D, 2, "%d ms, seed %d", dtMs, seed)
		}
	}
}

// TestRestoreVersion9: a snapshot of version 9, whose season kept its
// intervals in whole seconds, is restored when its interval is 2 s or more
// (a second off stays within the gap's tolerance), and refused when the
// interval is still being decided (the slots hold seconds) or was decided
// at 0 or 1 s (perhaps a 1 s or 2 s scrape read wrong): the pipeline then
// warms the series from its history.
func TestRestoreVersion9(t *testing.T) {
	asV9 := func(b []byte) []byte { return inRunLayout(t, b, secondsVersion) }
	for _, c := range []struct {
		name    string
		dtMs    int64
		samples int
		dtSaved int64 // the interval as a version 9 detector decided it; 0 keeps the one decided
		ok      bool
	}{
		{name: "15 s", dtMs: 15_000, samples: 200, ok: true},
		{name: "2 s", dtMs: 2_000, samples: 200, ok: true},
		{name: "2 s read as 1 s", dtMs: 2_000, samples: 200, dtSaved: 1_000},
		{name: "1 s read as 0", dtMs: 1_000, samples: 200, dtSaved: -1},
		{name: "interval undecided", dtMs: 15_000, samples: 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := mustNew(t, DefaultOptions())
			for i := range c.samples {
				d.Update(int64(i)*c.dtMs, 10+math.Sin(float64(i)))
			}
			switch {
			case c.dtSaved > 0:
				d.st.Season.DtMs, d.st.Season.D = int32(c.dtSaved), bucketWidth(c.dtSaved)
			case c.dtSaved < 0:
				d.st.Season.DtMs, d.st.Season.D = 0, 4
			}
			b, err := d.MarshalBinary()
			require.NoError(t, err)
			require.NoError(t, mustNew(t, DefaultOptions()).Restore(b), "version %d", snapshotVersion)
			r := mustNew(t, DefaultOptions())
			err = r.Restore(asV9(b))
			if !c.ok {
				require.ErrorContains(t, err, "whole seconds")
				return
			}
			require.NoError(t, err)
			next := int64(c.samples) * c.dtMs
			require.Equal(t, d.Update(next, 10), r.Update(next, 10))
		})
	}
}

// TestRestoreRefusesOldSeasonLayout: a state saved while the fine ring's
// buckets were bounded at 16 samples (a 17-hour span at 15 s, blind to the
// daily season for good) is refused by Restore, so the pipeline warms the
// series again from its history; one of the current layout is restored.
func TestRestoreRefusesOldSeasonLayout(t *testing.T) {
	for _, dtMs := range []int64{15_000, 120_000} {
		d := mustNew(t, DefaultOptions())
		for i := range 200 {
			d.Update(int64(i)*dtMs, 10+math.Sin(float64(i)))
		}
		good, err := d.MarshalBinary()
		require.NoError(t, err)
		require.NoError(t, mustNew(t, DefaultOptions()).Restore(good), "dt %d", dtMs)
		old := *d
		old.st.Season.D = min(old.st.Season.D, 16)
		b, err := old.MarshalBinary()
		require.NoError(t, err)
		err = mustNew(t, DefaultOptions()).Restore(b)
		if dtMs == 15_000 {
			require.ErrorContains(t, err, "older layout")
		} else {
			require.NoError(t, err, "at 2 min the bound never applied: D = %d", d.st.Season.D)
		}
	}
}

// TestBandNotBelowZero: the band of a series not seen below 0 (a latency
// near 0 with a long tail) reached below 0, where none of its values could
// be; it is now cut at 0, and the score is unchanged. A series that goes
// below 0 keeps its band.
func TestBandNotBelowZero(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset float64
		cut    bool
	}{
		{"never negative", 0, true},
		{"negative values", -0.5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, DefaultOptions())
			rng := rand.New(rand.NewPCG(9, 9))
			lowest := math.Inf(1)
			for i := range 2000 {
				v := 0.05*rng.ExpFloat64() + tc.offset
				r := d.Update(int64(i)*15_000, v)
				if r.Ready {
					lowest = min(lowest, r.YhatLower)
					require.LessOrEqual(t, r.YhatLower, r.Yhat)
					require.LessOrEqual(t, r.Yhat, r.YhatUpper)
				}
			}
			require.Equal(t, tc.cut, lowest == 0, "lowest end of the band %g", lowest)
		})
	}
}

// TestBandAfterFlatWeek: a series that varied, then stayed flat for a week,
// has its scale decayed to 1/1700 of its spread without reaching the floor.
// Its first value off the flat line scores, and the band must come back to
// the spread it had, not to that record times the spread (it grew to 30×
// the old band over the next two days, and the members were blind behind
// the record meanwhile).
func TestBandAfterFlatWeek(t *testing.T) {
	const day = 5760 // samples at 15 s
	flatFrom, flatTo, end := 2*day, 9*day, 11*day
	d := mustNew(t, DefaultOptions())
	rng := rand.New(rand.NewPCG(1, 2))
	var before float64
	for i := range end {
		v := 100.0
		if i < flatFrom || i >= flatTo {
			v += rng.NormFloat64()
		}
		r := d.Update(int64(i)*15_000, v)
		band := r.YhatUpper - r.YhatLower
		switch {
		case i == flatFrom-1:
			before = band
		case i == flatTo:
			require.Greater(t, r.Score, 1.0, "the flat series varies again")
		case i > flatTo+100:
			require.Less(t, band, 2*before, "sample %d: band [%g, %g], %g before the flat week", i, r.YhatLower, r.YhatUpper, before)
		}
	}
	require.InDelta(t, 10, before, 2, "a band of about ±5σ on unit noise")
}

// TestBandAfterFlatStart: a series flat when it starts (a counter at 0, a
// replica count) measured the first residual that left the flat value
// against the scale's floor: 10¹¹ "standard deviations", the level
// member's record for a day's samples, and its band 10¹¹ times the spread
// learnt after it (±3e9 on a 0/0.1 series; a reviewer found 70 of 530
// series of a Prometheus so). The change still scores above 1, the band is
// of the series' spread again within a few hundred samples, the noise
// after the change raises no alarm, and a later spike scores above 1.
func TestBandAfterFlatStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v       func(i int, rng *rand.Rand) float64
		maxBand float64 // widest band from sample 500 on
	}{
		{"noise after 200 zeros", func(i int, rng *rand.Rand) float64 {
			if i < 200 || rng.Float64() < 0.5 {
				return 0
			}
			return 0.1
		}, 1},
		{"replica count steps 3 to 4", func(i int, _ *rand.Rand) float64 {
			if i < 200 {
				return 3
			}
			return 4
		}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, DefaultOptions())
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 3000 {
				v := tc.v(i, rng)
				if i == 2500 {
					v += 1
				}
				r := d.Update(int64(i)*15_000, v)
				switch {
				case i == 200:
					require.Greater(t, r.Score, 1.0, "the flat series changes")
				case i == 2500:
					require.Greater(t, r.Score, 1.0, "the spike")
				case i >= 500 && i < 2500:
					require.Less(t, r.YhatUpper-r.YhatLower, tc.maxBand, "sample %d: band [%g, %g]", i, r.YhatLower, r.YhatUpper)
				}
				if i > 210 && i < 2500 {
					// The members calibrate again and score below 1
					// until their windows have filled.
					require.LessOrEqual(t, r.Score, 1.0, "sample %d", i)
				}
			}
		})
	}
}

// TestHugeFiniteValues: a finite sample near math.MaxFloat64 (Java's
// Double.MAX_VALUE, a JMX exporter's "no value" sentinel) scored +Inf,
// which the anomalies API could not encode and the TSDB outputs skipped,
// and a sample beyond float32's range poisoned the float32 window of
// recent samples for good. Such a sample is no value, as a NaN: it scores
// 0 with no band. ±Inf is out of range: it scores as one. Either way the
// detector goes on as if it had not come.
func TestHugeFiniteValues(t *testing.T) {
	for _, tc := range []struct {
		v     float64
		score float64
	}{
		{math.MaxFloat64, 0}, {-math.MaxFloat64, 0}, {1e300, 0}, {1e39, 0},
		{math.Inf(1), OutOfRangeScore}, {math.Inf(-1), OutOfRangeScore},
	} {
		t.Run(fmt.Sprint(tc.v), func(t *testing.T) {
			ts, v := series(1, 3000, 2, 2500)
			ref := mustNew(t, DefaultOptions())
			d := mustNew(t, DefaultOptions())
			for i := range ts {
				want := ref.Update(ts[i], v[i])
				if i >= 2000 && i < 2005 {
					// Between the regular samples, 1 ms after each.
					r := d.Update(ts[i]+1, tc.v)
					require.Equal(t, tc.score, r.Score)
					for _, f := range []float64{r.Score, r.Yhat, r.YhatLower, r.YhatUpper} {
						require.False(t, math.IsInf(f, 0), "%+v", r)
					}
					require.Equal(t, tc.score == 0, math.IsNaN(r.YhatUpper), "a band for an infinite value, none for no value")
				}
				got := d.Update(ts[i], v[i])
				require.Equal(t, fmt.Sprintf("%+v", want), fmt.Sprintf("%+v", got), "sample %d", i) // NaN bands while warming
			}
		})
	}
}

// TestFasterSamplesKeepSeasonPhase: a series whose samples come faster for
// a while (a scrape interval lowered from 5 m to 10 s for two hours, then
// raised again) keeps its season's phase. The ring counted samples, not
// time: the burst's 720 samples moved it on by two and a half days in two
// hours, and the baseline afterwards was half a day out of phase (a 15 s
// scrape at 1 s for 10 minutes, measured with the real omen: yhat off by
// 3-4 times the control's error for 7 hours).
func TestFasterSamplesKeepSeasonPhase(t *testing.T) {
	const day = 86_400_000
	rng := rand.New(rand.NewPCG(8, 9))
	d := mustNew(t, DefaultOptions())
	truth := func(ts int64) float64 { return 100 + 30*math.Sin(2*math.Pi*float64(ts%day)/day) }
	const t0, every = 1_700_006_400_000, 300_000
	ts := int64(t0)
	for ts < t0+14*day {
		d.Update(ts, truth(ts)+0.5*rng.NormFloat64())
		ts += every
	}
	for end := ts + 2*3_600_000; ts < end; ts += 10_000 {
		d.Update(ts, truth(ts)+0.5*rng.NormFloat64())
	}
	for end := ts + 2*day; ts < end; ts += every {
		r := d.Update(ts, truth(ts)+0.5*rng.NormFloat64())
		require.Less(t, r.Score, 1.0, "at %d min (member %s)", (ts-t0)/60_000, r.Member)
		require.InDelta(t, truth(ts), r.Yhat, 6, "at %d min", (ts-t0)/60_000)
	}
}

// TestRaisedIntervalKeepsSeason: a series whose scrape interval is raised
// for good (15 s to 60 s or 120 s) keeps its seasonal baseline in phase and
// sees a level shift as a series sampled so from the start does. Each
// sample came after a short gap, filled with the ring's own past copied a
// whole number of buckets back: two days on, yhat was off by 6.2 (60 s) and
// 13.1 (120 s) on average on a ±20 daily sine with noise 1, and a shift of
// 16 noise deviations scored 0.96 and 1.45 (2.36 at 60 s from the start).
// Changed by less than the factors that season.due and gap see (10 s to 15
// s, 15 s to 25 s, 60 s to 90 s or 50 s), every sample was counted at the
// learnt interval until the new one was learnt (see season.track): yhat was
// off by 12-14 on average; raised to 5 minutes, by 1.03-1.23 (0.55-0.71
// with the new interval learnt). Raised to 20 minutes, every sample was a
// long gap, filled with the ring's own past: a day on, yhat was off by 9.5;
// it is learnt after 16 of them (5 h 20 min), whose time the rings lack, so
// that day is not measured (settle).
func TestRaisedIntervalKeepsSeason(t *testing.T) {
	const day = 86_400_000
	truth := func(ts int64) float64 { return 100 + 20*math.Sin(2*math.Pi*float64(ts%day)/day) }
	for _, c := range []struct{ before, after, settle int64 }{
		{60_000, 60_000, 0}, {15_000, 15_000, 0}, {15_000, 60_000, 0}, {15_000, 120_000, 0}, {60_000, 300_000, 0},
		{10_000, 15_000, 0}, {15_000, 25_000, 0}, {60_000, 90_000, 0}, {60_000, 50_000, 0}, {15_000, 300_000, 0},
		{15_000, 1_200_000, day}, {30_000, 10_000, 0}, {60_000, 15_000, 0},
	} {
		t.Run(fmt.Sprintf("%ds-then-%ds", c.before/1000, c.after/1000), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 3))
			d := mustNew(t, DefaultOptions())
			ts := int64(1_700_006_400_000)
			for end := ts + 3*day; ts < end; ts += c.before {
				d.Update(ts, truth(ts)+rng.NormFloat64())
			}
			for end := ts + c.settle; ts < end; ts += c.after {
				d.Update(ts, truth(ts)+rng.NormFloat64())
			}
			var absErr float64
			n := 0
			for end := ts + 2*day; ts < end; ts += c.after {
				r := d.Update(ts, truth(ts)+rng.NormFloat64())
				absErr += math.Abs(r.Yhat - truth(ts))
				n++
			}
			require.Less(t, absErr/float64(n), 1.0, "yhat's mean absolute error after the change")
			var peak float64
			for end := ts + 2*3_600_000; ts < end; ts += c.after {
				peak = max(peak, d.Update(ts, truth(ts)+rng.NormFloat64()+16).Score)
			}
			require.Greater(t, peak, 1.5, "a shift of 16 noise deviations")
		})
	}
}

// TestSparseCountsKeepLevel: a rate that is 0 at most scrapes, with an
// error now and then (a 5xx counter at 15 s: one error is 1/15 per second
// for one sample), has a level near 0 and a scale collapsed towards it, so
// after each error the short-term mean stays beyond reanchorK of those
// scales for about twenty samples while every sample is 0 again. Errors
// within that echo (a fleet simulation's http_requests_total{code="500"},
// errors 14 samples apart) moved the level onto it: yhat 0.0127 with every
// sample 0, and an event of 11 minutes that paged. A lasting step (the
// reason to re-anchor) must still be followed.
func TestSparseCountsKeepLevel(t *testing.T) {
	// Days at 15 s: the level's scale decays towards the zeros for
	// levelSpan samples at a time, as it does on a live series.
	const n, warm = 40_000, 30_000
	sparse := func(errs ...int) func(*rand.Rand, int) float64 {
		return func(rng *rand.Rand, i int) float64 {
			for _, e := range errs {
				if i == e {
					return 1.0 / 15
				}
			}
			// About one error in three hours besides.
			if rng.Float64() < 1.0/720 {
				return 1.0 / 15
			}
			return 0
		}
	}
	for _, tc := range []struct {
		name    string
		gen     func(*rand.Rand, int) float64
		maxYhat float64 // the most yhat may read after the warm-up
		follow  float64 // a level yhat must have reached by the end
	}{
		// The series' mean is 1e-4; 0.005 is 75 errors a day.
		{"errors 14 samples apart", sparse(35_000, 35_014), 0.005, 0},
		{"errors 5 samples apart", sparse(35_000, 35_005), 0.005, 0},
		{"errors 14 samples apart, three times", sparse(32_000, 32_014, 35_000, 35_014, 38_000, 38_014), 0.005, 0},
		{"lasting step of 20σ", func(rng *rand.Rand, i int) float64 {
			v := 10 + rng.NormFloat64()
			if i >= 35_000 {
				v += 20
			}
			return v
		}, math.Inf(1), 29},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 42))
			d := mustNew(t, DefaultOptions())
			var last Result
			for i := range n {
				last = d.Update(int64(i)*15_000, tc.gen(rng, i))
				if i >= warm {
					require.LessOrEqual(t, last.Yhat, tc.maxYhat, "sample %d", i)
				}
			}
			require.GreaterOrEqual(t, last.Yhat, tc.follow)
		})
	}
}

// TestGlitchOnFlatSeriesEndsAtOnce: one off-level sample on a flat series
// (the first error of a counter at 0 for hours, a gauge that blips) is an
// event of that sample. The members with a memory carry it on after the
// samples are back (the novelty member's contexts hold it for nvLen
// samples, its EWMA and the shift member's decay from a record on a log
// scale): counted as the event going on, they held the novelty member
// above refractHold for 17 samples, an event of 8m30s at 30 s scrapes,
// which paged. A lasting step on the same series still goes on (see
// TestOngoing for noisy ones).
func TestGlitchOnFlatSeriesEndsAtOnce(t *testing.T) {
	const flat, after = 5_000, 200
	for _, tc := range []struct {
		name       string
		base, glit float64
		lasting    bool
		minOngoing int // samples after the change the detector calls ongoing
		maxOngoing int
	}{
		{"one error on a counter at 0", 0, 1, false, 0, 0},
		{"a blip of a gauge at 1", 1, 0, false, 0, 0},
		{"a lasting step of a gauge at 1", 1, 2, true, 20, after},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, DefaultOptions())
			ongoing := 0
			for i := range flat + after {
				v := tc.base
				if i == flat || tc.lasting && i > flat {
					v = tc.glit
				}
				r := d.Update(int64(i)*30_000, v)
				if i == flat {
					require.Greater(t, r.Score, 1.0, "the change itself scores")
				}
				if i > flat && r.Ongoing {
					ongoing++
				}
			}
			require.GreaterOrEqual(t, ongoing, tc.minOngoing)
			require.LessOrEqual(t, ongoing, tc.maxOngoing)
		})
	}
}

// TestRangeSeesPastSeasons: a business-hours step (20 to 70 from 09:00 to
// 17:00 on weekdays, noise 2%) is what the series had at that phase of its
// past days and weeks, and the range member, which forgets in samples (a
// day and three quarters at 15 s), does not score it as a value never seen:
// it scored 10 of the last week's samples above 1 at 15 s (both steps of
// every weekday) and 3 at 30 s, and paged up to twice a day at 15 s
// (BenchmarkCalendar). Nor after a daylight-saving change moved the steps
// an hour earlier in UTC, from the second weekday after it (the first has
// a weekend before it in the fine ring), above 1.5: with one long bucket
// either side of the phase, both steps of a Thursday scored 3.35 and 2.89
// at 15 s, 2.50 at 30 s (pages), and a noise high at the step, above the
// buckets' averages, may still score just above 1 (1.01 here). A value
// beyond every season still scores.
func TestRangeSeesPastSeasons(t *testing.T) {
	for _, tc := range []struct {
		iv  int64
		dst bool
		// No range score above it in the last week. A sample or two in
		// the step's first minutes can break the range member's record
		// by its noise (up to 1.5 here, 1.9 after the change): the
		// bucket means it reads its past seasons from are below their
		// samples' highs. Those scored no more than 1 until 2026-12-06
		// only because the level member's page at 09:00 had opened the
		// refractory period (see seenCap). Without the past seasons
		// (features' seen), samples score above 2 in every case.
		above float64
	}{{15_000, false, 2}, {30_000, false, 2}, {15_000, true, 2}, {30_000, true, 2}} {
		t.Run(fmt.Sprint(tc.iv/1000, "s/dst=", tc.dst), func(t *testing.T) {
			d, err := New(DefaultOptions())
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(1, 2))
			const day, hour = 86_400_000, 3_600_000
			t0 := int64(1_767_225_600_000) // 2026-01-01 00:00 UTC, a Thursday
			end := t0 + 35*day
			change := end - 7*day - 4*day // a Sunday
			ranged := 0
			for ts := t0; ts < end; ts += tc.iv {
				local := ts
				if tc.dst && ts >= change {
					local += hour // the steps come an hour earlier in UTC
				}
				v := 20.0
				if h, wd := local%day/hour, (local/day+4)%7; wd != 0 && wd != 6 && h >= 9 && h < 17 {
					v = 70
				}
				v += 0.02 * v * rng.NormFloat64()
				r := d.Update(ts, v)
				if ts >= end-7*day && r.Score > tc.above && r.Member == memberNames[mRange] {
					ranged++
				}
			}
			require.Zero(t, ranged, "samples the range member scored above %g in the last week", tc.above)
			r := d.Update(end, 120)
			require.Greater(t, r.Score, 1.0, "beyond every season")
		})
	}
}

// TestBusinessHoursStepStaysQuiet: a business-hours step (20 to 70 from
// 09:00 to 17:00 on weekdays, with a level per day, a slow wander and
// noise, as BenchmarkCalendar's batch series) at 15 s, after three weeks
// of history, no longer scores its edges above 1 on the members that do
// not model the season, nor above 2 on any (see seenCap): until 2026-12-06 the level member's record window
// (17 hours at 15 s) was broken at 09:00 and paged (scores of 2 to 2.9)
// most weekdays, and the daily seasonal member, expecting the weekday's
// step, paged on Saturdays. What the season does not hold still scores:
// the job failing on a Wednesday, and running on a Saturday.
func TestBusinessHoursStepStaysQuiet(t *testing.T) {
	const day, hour, iv = 86_400_000, 3_600_000, 15_000
	t0 := int64(1_767_225_600_000) // 2026-01-01 00:00 UTC, a Thursday
	for _, tc := range []struct {
		name    string
		seed    uint64
		event   func(ts int64, v float64) float64 // in the last week
		wantHot bool                              // the event's samples score above 1
	}{
		{name: "quiet/seed=0", seed: 0},
		{name: "quiet/seed=1", seed: 1},
		{name: "quiet/seed=2", seed: 2},
		{name: "job-fails-wednesday", seed: 0, wantHot: true, event: func(ts int64, v float64) float64 {
			if wd, h := (ts/day+4)%7, ts%day/hour; wd == 3 && h >= 11 && h < 12 {
				return 20
			}
			return v
		}},
		{name: "job-runs-saturday", seed: 0, wantHot: true, event: func(ts int64, v float64) float64 {
			if wd, h := (ts/day+4)%7, ts%day/hour; wd == 6 && h >= 9 && h < 17 {
				return 70
			}
			return v
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, DefaultOptions())
			gen := businessHoursStep(tc.seed, iv)
			end := t0 + 37*day // a Saturday 00:00: the last week runs Saturday to Friday
			last := end - 7*day
			var edges, pages []string // weekday edges above 1 (not by range) in the last two weeks, above 2 in the last week
			var hot, inEvent int
			for ts := t0; ts < end; ts += iv {
				wd, h := (ts/day+4)%7, ts%day/hour
				v := gen(ts)
				ev := v
				if tc.event != nil && ts >= last {
					ev = tc.event(ts, v)
				}
				r := d.Update(ts, ev)
				switch {
				case ev != v:
					inEvent++
					if r.Score > 1 {
						hot++
					}
				case wd != 0 && wd != 6 && (h == 9 || h == 17) && ts%hour < hour/4:
					// The range member is left out of the first check: it
					// scores a value above every one the series had at
					// this phase, as a day at +3% can be for a sample or
					// two (a single sample is no incident), and capping
					// it as the others cost a NAB window (see seenCap).
					e := fmt.Sprintf("%s %s %.2f", time.UnixMilli(ts).UTC().Format("Mon 01-02 15:04:05"), r.Member, r.Score)
					if ts >= end-14*day && r.Score > 1 && r.Member != memberNames[mRange] {
						edges = append(edges, e)
					}
					if ts >= last && r.Score > 2 {
						pages = append(pages, e)
					}
				}
			}
			if tc.wantHot {
				require.Positive(t, inEvent)
				require.Positive(t, hot, "the event's samples scored above 1")
				return
			}
			require.Empty(t, edges, "weekday edges scoring above 1 in the last two weeks, not by the range member")
			require.Empty(t, pages, "weekday edges scoring above 2 in the last week")
		})
	}
}

// businessHoursStep returns TestBusinessHoursStepStaysQuiet's series as a
// generator for samples iv ms apart from a midnight UTC on: 20, and 70
// from 09:00 to 17:00 UTC on weekdays (ts/day+4 is the weekday from
// 1970-01-01, a Thursday), times a level per day (3%), a slow wander (3%,
// correlated over ~30 minutes) and 2% noise.
func businessHoursStep(seed uint64, iv int64) func(ts int64) float64 {
	const day, hour = 86_400_000, 3_600_000
	rng := rand.New(rand.NewPCG(seed, 7))
	a := math.Exp(-float64(iv) / 1800_000.0)
	wander, level := 0.0, 1.0
	return func(ts int64) float64 {
		if ts%day == 0 {
			level = 1 + 0.03*rng.NormFloat64()
		}
		wander = a*wander + math.Sqrt(1-a*a)*0.03*rng.NormFloat64()
		wd, h := (ts/day+4)%7, ts%day/hour
		v := 20.0
		if wd != 0 && wd != 6 && h >= 9 && h < 17 {
			v = 70
		}
		v *= level * (1 + wander)
		return v + 0.02*v*rng.NormFloat64()
	}
}

// TestMondayMorningStaysQuiet: a business-hours step after a quiet
// weekend, 6 seeds at 15 s and 60 s, 4 Mondays each after 25 days of
// history. Until 2026-12-06 Monday alone scored above 1 before the step
// (the long member, from about 07:30 at 15 s, 08:50 at 60 s: its
// baseline ramps towards the next two-hour bucket, and its scale had
// only the weekend in it) on every Monday at 15 s, and the first sample
// of the step was a range record on 7 of 48 Mondays (a page on 5), where
// the rest of the week had 1 page in all (see longSeason.statAlpha and
// the range member in features).
func TestMondayMorningStaysQuiet(t *testing.T) {
	const day, hour = 86_400_000, 3_600_000
	t0 := int64(1_767_225_600_000) // 2026-01-01 00:00 UTC, a Thursday
	for _, iv := range []int64{15_000, 60_000} {
		for seed := range uint64(6) {
			t.Run(fmt.Sprintf("interval=%ds/seed=%d", iv/1000, seed), func(t *testing.T) {
				d := mustNew(t, DefaultOptions())
				gen := businessHoursStep(seed, iv)
				var before, step []string
				for ts := t0; ts < t0+53*day; ts += iv {
					r := d.Update(ts, gen(ts))
					if ts < t0+25*day || (ts/day+4)%7 != 1 || r.Score <= 1 {
						continue
					}
					e := fmt.Sprintf("%s %s %.2f", time.UnixMilli(ts).UTC().Format("Mon 01-02 15:04:05"), r.Member, r.Score)
					switch tod := ts % day; {
					case tod >= 6*hour && tod < 9*hour && r.Member != memberNames[mRange]:
						// The range member is left out, as in
						// TestBusinessHoursStepStaysQuiet: a sample of
						// noise beyond every one the series had (a
						// night's low) can be a record on any day.
						before = append(before, e)
					case tod == 9*hour && r.Member == memberNames[mRange]:
						step = append(step, e)
					}
				}
				require.Empty(t, before, "Monday 06:00-09:00, before the step, above 1")
				require.Empty(t, step, "Monday's first sample of the step a range record")
			})
		}
	}
}

// TestMondayAfterDaylightSavingStaysQuiet: TestMondayMorningStaysQuiet's
// business-hours step, 6 seeds at 15 s, whose local clock moves an hour
// on a Sunday (spring: the step an hour earlier in UTC; autumn: later),
// with no event. On the level and shift members, no sample of the first
// Monday after the change scores above 1, none of the second above 2.
// Until 2026-12-06, in spring, the level member scored the step's first
// sample 2.6-2.9 on the first Monday in every seed and on the second in
// two, the shift member the step's end 1.2-1.8 on the first; in autumn the
// level member 2.87 on the second Monday in one seed: the long ring's
// two-hour buckets a bucket either side of the step's new time held 20
// and the step averaged with the hour next to it, so the value was not
// seen at this phase (see longSeason.seen; BenchmarkCalendar's
// berlin-spring batch series: 1.5 warnings and 1 page per series on the
// first Monday). A sample or two of the step's noise above every bucket
// (their means) can still score just above 1 on the second Monday.
func TestMondayAfterDaylightSavingStaysQuiet(t *testing.T) {
	const day, hour, iv = 86_400_000, 3_600_000, 15_000
	t0 := int64(1_767_225_600_000)               // 2026-01-01 00:00 UTC, a Thursday
	change := t0 + 31*day + 2*hour               // Sunday 02-01 02:00 UTC
	for _, ahead := range []int64{hour, -hour} { // spring, autumn
		for seed := range uint64(6) {
			t.Run(fmt.Sprintf("ahead=%dh/seed=%d", ahead/hour, seed), func(t *testing.T) {
				d := mustNew(t, DefaultOptions())
				gen := businessHoursStep(seed, iv)
				var hot []string
				for ts := t0; ts < change+15*day; ts += iv {
					local := ts
					if ts >= change {
						local += ahead
					}
					r := d.Update(ts, gen(local))
					if ts < change || (ts/day+4)%7 != 1 || (r.Member != memberNames[mLevel] && r.Member != memberNames[mShift]) {
						continue
					}
					limit := 2.0 // the second Monday: no page
					if ts < change+7*day {
						limit = 1 // the first: no warning
					}
					if r.Score > limit {
						hot = append(hot, fmt.Sprintf("%s %s %.2f", time.UnixMilli(ts).UTC().Format("Mon 01-02 15:04:05"), r.Member, r.Score))
					}
				}
				require.Empty(t, hot, "Monday samples after the change above 1 (first Monday) or 2 (second) on the level or shift members")
			})
		}
	}
}

// TestStoppedBatchJobFound: TestMondayMorningStaysQuiet's business-hours
// step, 6 seeds at 15 s and 60 s, whose job stops at 10:00 (back to the
// night's 20: every sample's load times 20/70) for two hours on each
// weekday of the week after 28 days of history, each on a copy of the
// detector: an event opens (a score above 1, before the damping of an
// earlier event's refractory period: the morning step's, on some days)
// and lasts 5 minutes (its samples score above 1 or go on with it,
// Result.Ongoing, at most 10 apart, as the pipeline counts one), as an
// alert's for: 5m asks; BenchmarkWeekday's fault in the detector alone.
// Only the long member knows that 70 is this hour's value on a weekday
// (20 was seen two hours before: the level and shift members are capped,
// seenAtPhase). Until 2026-12-06 its calibration forgot in tailSpan
// samples, 34 hours at 15 s, and each weekday's own morning step lifted
// its 98th percentile to that step's residual: at 15 s the stop was found
// on 14 of 30 weekdays, at 60 s on 30 (see longSeason.tailForget). It is
// found by a small margin still: the stop's residual against the
// two-hour buckets' ramp is 1.5 to 2 times the step's own, where a record
// must reach e^0.5 times the 98th percentile; after 32 days from a
// Thursday, 3 of 30 stops at 15 s were missed (the two looked at peaked
// at 0.97 and 0.99), none at 60 s.
func TestStoppedBatchJobFound(t *testing.T) {
	const day, hour, minute = 86_400_000, 3_600_000, 60_000
	t0 := int64(1_767_571_200_000) // 2026-01-05 00:00 UTC, a Monday
	monday := t0 + 28*day          // after 28 days of history
	for _, iv := range []int64{15_000, 60_000} {
		for seed := range uint64(6) {
			t.Run(fmt.Sprintf("interval=%ds/seed=%d", iv/1000, seed), func(t *testing.T) {
				gen := businessHoursStep(seed, iv)
				vals := make([]float64, (monday+5*day-t0)/iv)
				for i := range vals {
					vals[i] = gen(t0 + int64(i)*iv)
				}
				d := mustNew(t, DefaultOptions())
				var missed []string
				for i, v := range vals {
					ts := t0 + int64(i)*iv
					if ts >= monday && ts%day == 10*hour {
						f := *d // the stop on a copy; the series goes on for the next weekday's
						opened, last, quiet, found := int64(-1), int64(0), 0, false
						for j := i; !found && j < i+int(2*hour/iv); j++ {
							ft := t0 + int64(j)*iv
							r := f.Update(ft, vals[j]*20/70)
							hot := r.Score > 1 || r.Undamped > 1 && r.Ongoing
							switch {
							case opened < 0 || quiet >= 10:
								if hot {
									opened, last, quiet = ft, ft, 0
								}
							case hot || r.Ongoing:
								last, quiet = ft, 0
							default:
								quiet++
							}
							found = opened >= 0 && last >= opened+5*minute
						}
						if !found {
							missed = append(missed, time.UnixMilli(ts).UTC().Format("Mon 01-02"))
						}
					}
					d.Update(ts, v)
				}
				require.Empty(t, missed, "weekdays whose stop at 10:00 was not an event of 5 minutes within 30")
			})
		}
	}
}

// TestFalseAlarmRateFloor: at MinFalseAlarmRate every member's record
// window, √n/rate samples times its multiplier, is held whole by its
// tail (eight blocks of a uint32 length) and the window's int. Below
// about 3e-19 the window overflowed int and came out negative, a tail of
// one-sample blocks: `omen backtest --detect.false-alarm-rate=1e-19` on a
// noisy sine with one spike scored 3 samples above 1 (max 5.63) where
// 1e-18 scored the spike alone (2.87), so a smaller rate, a file's
// `false_alarm_rate: 1e-20` asking for fewer false alarms, gave more;
// Validate refuses it now.
func TestFalseAlarmRateFloor(t *testing.T) {
	for _, members := range []int{MemberDefault, MemberAll} {
		o := DefaultOptions()
		o.Members, o.FalseAlarmRate = members, MinFalseAlarmRate
		d, err := New(o)
		require.NoError(t, err)
		w := d.window()
		require.Positive(t, w)
		for m := range nMembers {
			if m == mFlat || o.Members&(1<<m) == 0 {
				continue
			}
			want := int64(float64(w) * winMul[m])
			require.GreaterOrEqual(t, int64(d.tail(m).BlockLen)*tailBlocks, want, "member %d", m)
		}
	}
}
