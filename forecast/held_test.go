package forecast

import (
	"cmp"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// heldPerModel returns the heap bytes each of k fitted Models holds once
// it has forecast: the pipeline's options (History 512, MaxHorizon 80,
// refit every 64) on the same planted hourly series, so every Model keeps
// the same ensemble.
func heldPerModel(t testing.TB, k int) int64 {
	held, _ := heldBy(t, liveOptions, planted(600, 0, 100, 0.01, 10, 1), k)
	return held
}

// TestModelHeldBytes bounds what a fitted Model holds: its history (576
// values, 2 304 B as float32s and 80 B of their kinds; 4 864 B as
// float64s), the ensemble's weights and interval offsets and its
// components. Each of the pipeline's 10 000 forecast series
// holds one for its life, so a buffer needed only while Forecast runs is
// held 10 000 times in the steady state: Model and ensemble kept one
// MaxHorizon long each (80 values at the pipeline's options), 18 824 B a
// Model here, until Forecast's scratch came from the refits' pool: 17 500
// B; the weights, dense (80 horizons times 8 components, mostly zeros),
// made 15 799 B once sparse; the history at 4 bytes a value instead of 8
// (see history), 13 256 B; the weights as 16-bit shares and the interval
// offsets as float32s, 10 285 B; theta's seasonal indices as float32s,
// 9 516 B; Holt-Winters' fitting fields behind a pointer compact drops,
// 9 096 B; the structs packed into smaller size classes (int32 counts
// and indices, the flags in one word, the band in one array, the warm
// starts' keys in one word each), 8 776 B; Holt-Winters' seasons as
// float32s once fitted, 7 688 B; the sparse weights' components as bits,
// 7 403 B. The bound sits between the last two.
func TestModelHeldBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("fits 200 models")
	}
	got := heldPerModel(t, 200)
	t.Logf("%d B held per fitted Model", got)
	require.Less(t, got, int64(7550))
}

// BenchmarkModelHeld reports heldPerModel as B/model.
//
//	go test -run '^$' -bench ModelHeld -benchtime 1x ./forecast
func BenchmarkModelHeld(b *testing.B) {
	for range b.N {
		b.ReportMetric(float64(heldPerModel(b, 200)), "B/model")
	}
}

// TestForecastWithAllocatesNothing: a forecast between refits through a
// kept Scratch allocates nothing, even with garbage collections between
// the calls, which empty the pool Forecast takes its scratch from (a new
// array of 4 096 values each time: 1 B per forecast amortised in
// BenchmarkForecast).
func TestForecastWithAllocatesNothing(t *testing.T) {
	m, err := New(Options{MaxHorizon: 80, History: 512, RefitEvery: 1 << 20, MinSamples: 2*80 + 32})
	require.NoError(t, err)
	feed(m, planted(600, 0, 100, 0.01, 10, 1), 0)
	var sc Scratch
	dst := m.ForecastWith(nil, 64, &sc) // the refit, and the scratch's array
	want := append([]Point(nil), dst...)
	allocs := testing.AllocsPerRun(20, func() {
		runtime.GC()
		runtime.GC()
		dst = m.ForecastWith(dst, 64, &sc)
	})
	require.Zero(t, allocs)
	require.Equal(t, want, dst)
	require.Equal(t, want, m.Forecast(nil, 64), "Forecast and ForecastWith agree")
}

// TestWarmStartsExact: the warm starts a fit keeps for the next (and the
// previous fit's, kept beside them) are as long as the Holt-Winters
// candidates, without an append's spare room: 6 candidates on this series,
// whose slice grew to 8 (448 B against 352, twice per Model).
func TestWarmStartsExact(t *testing.T) {
	m, err := New(Options{MaxHorizon: 80, History: 512, RefitEvery: 64, MinSamples: 2*80 + 32, Coverage: 0.95})
	require.NoError(t, err)
	feed(m, planted(600, 0, 100, 0.01, 10, 1), 0)
	m.Forecast(nil, 64)
	require.NotEmpty(t, m.warm)
	require.Equal(t, len(m.warm), cap(m.warm))
}

// TestWeightsSumToUnit: every horizon's weights, held as whole numbers of
// 1/weightUnit, sum to exactly weightUnit, so forecast's combination is
// affine (a constant added to every component moves it by exactly that)
// after a power-of-two scaling, with no division.
func TestWeightsSumToUnit(t *testing.T) {
	cases := []struct {
		name string
		y    []float64
	}{
		{"seasonal", planted(600, 0, 100, 0.01, 10, 1)},
		{"hourly", hourly(700)},
		{"trend", planted(600, 0, 50, 0.2, 0, 0.5)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(Options{MaxHorizon: 80, History: 512, RefitEvery: 64, MinSamples: 2*80 + 32})
			require.NoError(t, err)
			feed(m, tc.y, 0)
			require.NotEmpty(t, m.Forecast(nil, 64))
			require.NotNil(t, m.ens)
			for h := range m.ens.H {
				sum := 0
				for _, q := range m.ens.weights[h*m.ens.width : (h+1)*m.ens.width] {
					sum += int(q)
				}
				require.Equal(t, weightUnit, sum, "horizon %d", h+1)
			}
		})
	}
}

// TestWarmKey: a warm start's packed key gives back what it was built
// from, matches its candidate whatever the parameters' count, and refuses
// a season or count it cannot hold (a corrupt snapshot's).
func TestWarmKey(t *testing.T) {
	cases := []struct {
		name   string
		raw    bool
		m1, m2 uint32
		n      int
		ok     bool
	}{
		{"no season", false, 0, 0, 3, true},
		{"two seasons, raw", true, 24, 168, 5, true},
		{"longest seasons", true, 1<<warmSeasonBits - 1, 1<<warmSeasonBits - 1, 5, true},
		{"season too long", false, 1 << warmSeasonBits, 0, 4, false},
		{"second season too long", false, 24, 1 << 31, 5, false},
		{"too many parameters", false, 24, 0, 6, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, ok := newWarmKey(tc.raw, tc.m1, tc.m2, tc.n)
			require.Equal(t, tc.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tc.raw, k.raw())
			require.Equal(t, tc.m1, k.m1())
			require.Equal(t, tc.m2, k.m2())
			require.Equal(t, tc.n, k.n())
			other, _ := newWarmKey(tc.raw, tc.m1, tc.m2, 0)
			require.True(t, k.sameCandidate(other))
			flipped, _ := newWarmKey(!tc.raw, tc.m1, tc.m2, tc.n)
			require.False(t, k.sameCandidate(flipped))
		})
	}
}

// TestNarrow: the seasons' stores keep a float64 as it is and round to the
// nearest float32, a float32's overflow held at its largest magnitude
// rather than made infinite, which the next update's error would carry
// into the level as NaN.
func TestNarrow(t *testing.T) {
	cases := []struct {
		name string
		x    float64
		want float32
	}{
		{"exact", 0.5, 0.5},
		{"rounded", 0.1, float32(0.1)},
		{"overflow up", 1e39, math.MaxFloat32},
		{"overflow down", -1e39, -math.MaxFloat32},
		{"infinite stays", math.Inf(-1), float32(math.Inf(-1))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, narrow[float32](tc.x))
			require.Equal(t, math.Float64bits(tc.x), math.Float64bits(narrow[float64](tc.x)), "a float64 as it is")
		})
	}
	require.True(t, math.IsNaN(float64(narrow[float32](math.NaN()))))
	require.True(t, math.IsNaN(narrow[float64](math.NaN())))
}

// TestEnsembleSparseRows: a sparse row's weights go to the components its
// bits (at most maskComps components) or its indices (more) name, in
// order: constant components 1, 2, … weighted half and half at the
// components 3 and the last (0-based) forecast their mean.
func TestEnsembleSparseRows(t *testing.T) {
	cases := []struct {
		name  string
		comps int
		of    []uint8
	}{
		{"bits", maskComps, []uint8{1 << 3, 1 << 7, 1 << 3, 1 << 7}},
		{"indices", maskComps + 1, []uint8{3, maskComps, 3, maskComps}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &ensemble{H: 2, width: 2, of: tc.of, weights: []uint16{weightUnit / 2, weightUnit / 2, weightUnit / 2, weightUnit / 2}}
			for i := range tc.comps {
				c := newSeasonalNaive(1)
				require.True(t, c.fit([]float64{float64(i + 1)}, nil))
				e.comps = append(e.comps, c)
			}
			got := make([]float64, 2)
			e.forecast(got, nil)
			want := (4 + float64(tc.comps)) / 2
			require.Equal(t, []float64{want, want}, got)
		})
	}
}

// TestBestKMatchesSort: bestK picks, in order, what sorting the
// candidates by validation error, then index, and taking the first k did
// (combineTop before it), with ties, +Inf (a candidate that could not be
// fitted), k beyond the candidates and beyond bestK's usual room.
func TestBestKMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name   string
		n, k   int
		values func() float64
	}{
		{"distinct", 12, 5, rng.Float64},
		{"ties", 12, 5, func() float64 { return float64(rng.IntN(3)) }},
		{"inf", 16, 5, func() float64 { return []float64{1, 2, math.Inf(1)}[rng.IntN(3)] }},
		{"all inf", 8, 5, func() float64 { return math.Inf(1) }},
		{"k past n", 3, 5, rng.Float64},
		{"k one", 12, 1, func() float64 { return float64(rng.IntN(2)) }},
		{"k zero", 12, 0, rng.Float64},
		{"many", 40, 35, func() float64 { return float64(rng.IntN(6)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 {
				v := make([]float64, tc.n)
				for i := range v {
					v[i] = tc.values()
				}
				want := make([]int, tc.n)
				for i := range want {
					want[i] = i
				}
				slices.SortFunc(want, func(a, b int) int {
					if c := cmp.Compare(v[a], v[b]); c != 0 {
						return c
					}
					return a - b
				})
				want = want[:min(tc.k, tc.n)]
				require.Equal(t, want, append([]int{}, bestK(nil, v, tc.k)...), "%v", v)
			}
		})
	}
}
