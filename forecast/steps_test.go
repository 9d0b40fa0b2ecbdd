package forecast

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// stepShapes returns the series of TestForecastGolden and random ones of
// short seasons (a season shorter than the horizon takes the raw seasonal
// naive's further seasons, the places its exponentials are shared at),
// positive (the log scale) or not, from seed.
func stepShapes(seed uint64) map[string][]float64 {
	rng := rand.New(rand.NewPCG(seed, 9))
	shapes := liveShapes(1200)
	for _, p := range []int{5, 7, 24} {
		pos, neg, saw := make([]float64, 900), make([]float64, 900), make([]float64, 900)
		level, amp := 1+rng.Float64()*1e4, rng.Float64()
		for i := range pos {
			s := math.Sin(2 * math.Pi * float64(i) / float64(p))
			pos[i] = level * (1 + 0.3*amp*s + 0.02*rng.NormFloat64())
			neg[i] = -20 + 0.05*float64(i) + 10*amp*s + rng.NormFloat64()
			saw[i] = 100 + 2*float64(i%(3*p)) + rng.NormFloat64()
		}
		shapes[fmt.Sprint("positive/p=", p)] = pos
		shapes[fmt.Sprint("trend-through-zero/p=", p)] = neg
		shapes[fmt.Sprint("sawtooth/p=", 3*p)] = saw
	}
	constant := make([]float64, 400)
	for i := range constant {
		constant[i] = 7
	}
	shapes["constant"] = constant
	return shapes
}

// randomSteps returns up to 8 steps below h, ascending without repeats,
// about as the live forecasters read them (two around each horizon), or
// every step now and then.
func randomSteps(rng *rand.Rand, h int) []int {
	if rng.IntN(8) == 0 {
		all := make([]int, h)
		for i := range all {
			all[i] = i
		}
		return all
	}
	var steps []int
	for range 1 + rng.IntN(4) {
		j := rng.IntN(h)
		steps = append(steps, j)
		if j+1 < h && rng.IntN(2) == 0 {
			steps = append(steps, j+1)
		}
	}
	slices.Sort(steps)
	return slices.Compact(steps)
}

// TestForecastStepsBitIdentical: ForecastSteps' forecasts at the steps
// asked for are ForecastWith's, bit for bit (== on the bits, no
// tolerance), on every kind of series TestForecastGolden pins and on
// random ones of short seasons, several seeds, at forecasts between refits
// and at refits (either call first), the others' times as ForecastWith's.
func TestForecastStepsBitIdentical(t *testing.T) {
	short := Options{MaxHorizon: 80, History: 256, MinSamples: 100, RefitEvery: 16}
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 17))
		shapes := stepShapes(seed)
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range shapes {
				if !yield(k) {
					return
				}
			}
		})
		for _, name := range names {
			for _, opts := range []Options{liveOptions, short} {
				t.Run(fmt.Sprintf("seed=%d/%s/history=%d", seed, name, opts.History), func(t *testing.T) {
					m, err := New(opts)
					require.NoError(t, err)
					var sc Scratch
					var full, got []Point
					checked := 0
					for i, v := range shapes[name] {
						m.Update(int64(i)*hourMs, v)
						if (i+1)%23 != 0 || !m.Ready() {
							continue
						}
						h := 1 + rng.IntN(opts.MaxHorizon)
						steps := randomSteps(rng, h)
						if rng.IntN(2) == 0 {
							full = m.ForecastWith(full, h, &sc)
							got = m.ForecastSteps(got, h, steps, &sc)
						} else {
							got = m.ForecastSteps(got, h, steps, &sc)
							full = m.ForecastWith(full, h, &sc)
						}
						require.Len(t, got, len(full))
						for k := range got {
							require.Equal(t, full[k].TsMillis, got[k].TsMillis)
						}
						for _, k := range steps {
							w, g := full[k], got[k]
							for j, pair := range [][2]float64{{w.Yhat, g.Yhat}, {w.Lower, g.Lower}, {w.Upper, g.Upper}} {
								require.Equal(t, math.Float64bits(pair[0]), math.Float64bits(pair[1]),
									"sample %d, step %d of %d, value %d: %v against %v", i+1, k, h, j, pair[0], pair[1])
							}
						}
						checked++
					}
					require.NotZero(t, checked)
				})
			}
		}
	}
}

// TestForecastStepsArguments: steps at or beyond h (or MaxHorizon) are
// left out, and steps not ascending are every step.
func TestForecastStepsArguments(t *testing.T) {
	m, err := New(liveOptions)
	require.NoError(t, err)
	feed(m, liveShapes(600)["walk"], 0)
	var sc Scratch
	full := m.ForecastWith(nil, 80, &sc)
	got := m.ForecastSteps(nil, 100, []int{3, 79, 80, 120}, &sc)
	require.Len(t, got, 80)
	require.Equal(t, full[3], got[3])
	require.Equal(t, full[79], got[79])
	require.True(t, math.IsNaN(got[4].Yhat), "a step not asked for")
	for _, steps := range [][]int{{5, 5}, {7, 2}, {-1, 4}} {
		require.Equal(t, full[:10], m.ForecastSteps(nil, 10, steps, &sc), "steps %v: every step", steps)
	}
}

// TestForecastStepsAllocatesNothing is TestForecastWithAllocatesNothing
// for ForecastSteps.
func TestForecastStepsAllocatesNothing(t *testing.T) {
	m, err := New(Options{MaxHorizon: 80, History: 512, RefitEvery: 1 << 20, MinSamples: 2*80 + 32})
	require.NoError(t, err)
	feed(m, planted(600, 0, 100, 0.01, 10, 1), 0)
	var sc Scratch
	steps := []int{9, 10, 29, 30, 59, 60}
	dst := m.ForecastSteps(nil, 64, steps, &sc) // the refit, and the scratch's array
	want := append([]Point(nil), dst...)
	allocs := testing.AllocsPerRun(20, func() {
		runtime.GC()
		runtime.GC()
		dst = m.ForecastSteps(dst, 64, steps, &sc)
	})
	require.Zero(t, allocs)
	for _, k := range steps {
		require.Equal(t, want[k], dst[k])
	}
}
