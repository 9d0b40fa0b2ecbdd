package forecast

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// planted returns n+h values of level + slope·t + a daily (24) season of
// amplitude amp plus Gaussian noise of sd noise, from a fixed seed.
func planted(n, h int, level, slope, amp, noise float64) []float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	y := make([]float64, n+h)
	for t := range y {
		y[t] = level + slope*float64(t) + amp*math.Sin(2*math.Pi*float64(t)/24) + 0.5*amp*math.Cos(4*math.Pi*float64(t)/24) + noise*rng.NormFloat64()
	}
	return y
}

// TestComponentsRecoverPlanted fits each model on a planted series and
// checks its 48-step forecast against the noise-free continuation. The
// tolerance is a fraction of the seasonal amplitude (10): the noise sd is
// 0.2, and the estimated season and trend carry errors of about that size.
func TestComponentsRecoverPlanted(t *testing.T) {
	const n, H = 720, 48
	cases := []struct {
		name  string
		slope float64
		comp  func() component
		tol   float64
	}{
		{"snaive/level+season", 0, func() component { return newSeasonalNaive(24) }, 1.2},
		{"hw-add/level+season", 0, func() component { return newHoltWinters(false, []int{24}, H) }, 0.5},
		{"hw-add/trend+season", 0.05, func() component { return newHoltWinters(false, []int{24}, H) }, 1.0},
		{"hw-mul/trend+season", 0.05, func() component { return newHoltWinters(true, []int{24}, H) }, 1.0},
		{"hw-add-2/trend+season", 0.05, func() component { return newHoltWinters(false, []int{24, 168}, H) }, 1.0},
		{"theta/level+season", 0, func() component { return newTheta(24, H) }, 0.5},
		{"fourier/level+season", 0, func() component { return newFourierReg([]int{24}, H) }, 0.5},
		{"fourier-2/level+season", 0, func() component { return newFourierReg([]int{24, 168}, H) }, 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := planted(n, H, 100, tc.slope, 10, 0.2)
			truth := planted(n, H, 100, tc.slope, 10, 0)[n:]
			c := tc.comp()
			require.True(t, c.fit(y[:n], nil))
			fc := make([]float64, H)
			c.forecast(fc)
			for h := range fc {
				require.InDelta(t, truth[h], fc[h], tc.tol, "h=%d", h+1)
			}
		})
	}
}

// TestThetaHalfTrend checks Theta's defining property: it extrapolates half
// the least-squares slope of the seasonally adjusted series (θ = 2 line
// averaged with the θ = 0 line), on top of the recovered season.
func TestThetaHalfTrend(t *testing.T) {
	const n, H = 720, 48
	y := planted(n, H, 100, 0.05, 10, 0)
	th := newTheta(24, H)
	require.True(t, th.fit(y[:n], nil))
	require.InDelta(t, 0.025, th.drift, 1e-3)
	fc := make([]float64, H)
	th.forecast(fc)
	// One full season apart the seasonal terms cancel: the forecast rises by
	// 24 half-slopes.
	require.InDelta(t, 24*0.025, fc[30]-fc[6], 1e-6)
	// The level is the last value's adjusted level: the first step is on the line.
	require.InDelta(t, y[n], fc[0], 0.2)
}

// TestComponentsUpdateMatchesRefit checks that advancing a fitted model by
// update gives forecasts consistent with the data: after feeding the next
// 24 values of a noise-free planted series the forecasts stay on it.
func TestComponentsUpdateMatchesRefit(t *testing.T) {
	const n, H = 720, 48
	y := planted(n, H+24, 50, 0, 5, 0)
	for _, c := range []component{newSeasonalNaive(24), newSeasonalDiff(24), newHoltWinters(false, []int{24}, H), newTheta(24, H), newFourierReg([]int{24}, H)} {
		t.Run(c.name(), func(t *testing.T) {
			require.True(t, c.fit(y[:n], nil))
			for _, v := range y[n : n+24] {
				c.update(v)
			}
			fc := make([]float64, H)
			c.forecast(fc)
			for h := range fc {
				require.InDelta(t, y[n+24+h], fc[h], 0.05, "h=%d", h+1)
			}
		})
	}
}

func TestComponentsRejectShortHistory(t *testing.T) {
	y := planted(30, 0, 10, 0, 1, 0)
	for _, c := range []component{newSeasonalNaive(48), newSeasonalDiff(48), newHoltWinters(false, []int{24}, 48), newTheta(24, 48), newFourierReg([]int{24}, 48)} {
		require.False(t, c.fit(y, nil), c.name())
	}
	require.False(t, newHoltWinters(true, []int{4}, 4).fit(append([]float64{-1}, planted(100, 0, 10, 0, 1, 0)...), nil), "multiplicative needs positive data")
}

func TestDetectSeasons(t *testing.T) {
	// Hourly-like: a daily cycle whose height changes on the weekend.
	y := make([]float64, 1000)
	for i := range y {
		day := (i / 24) % 7
		week := 1.0
		if day >= 5 {
			week = 0.5
		}
		y[i] = 10 + week*5*math.Sin(2*math.Pi*float64(i)/24)
	}
	require.Equal(t, []int{24, 168}, detectSeasons(y, 500, nil))
	flat := make([]float64, 500)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range flat {
		flat[i] = rng.NormFloat64()
	}
	require.Empty(t, detectSeasons(flat, 250, nil))
}

func TestConformalWidensWithHorizon(t *testing.T) {
	// Errors of a random walk: spread grows like sqrt(h).
	const origins, H = 40, 24
	rng := rand.New(rand.NewPCG(5, 6))
	err := make([]float64, origins*H)
	for o := range origins {
		var s float64
		for h := range H {
			s += rng.NormFloat64()
			err[o*H+h] = s
		}
	}
	lo, hi := conformal(err, origins, 1, H, 0.9, nil)
	for h := 1; h < H; h++ {
		require.LessOrEqual(t, lo[h], lo[h-1])
		require.GreaterOrEqual(t, hi[h], hi[h-1])
	}
	require.Greater(t, hi[H-1]-lo[H-1], 2*(hi[0]-lo[0]))
}

// TestConformalEndsMatchPools: the conformal offsets taken from each
// horizon's few smallest and largest errors (errorEnds) are, bit for bit,
// those taken from each pool of five horizons' errors (the zero
// errorEnds), at the coverages and origin counts where the quantiles are
// near the pools' ends and where they are selected, on errors with ties
// (of ±0 too, which compare equal but differ in their bits), NaNs and
// infinities, and persistent errors (fewErrors' pool). A NaN matches any
// NaN: which operand's payload an addition of two NaNs keeps on amd64
// follows the registers the compiler chose, which inlining moves (NaN·1 +
// (−Inf)·0 came out 0x7ff8000000000001 in quantile, 0xfff8000000000000 in
// errorEnds.quantiles).
func TestConformalEndsMatchPools(t *testing.T) {
	cases := []struct {
		name     string
		origins  int
		H        int
		coverage float64
		values   string
	}{
		{"pipeline", 25, 80, 0.95, "normal"},
		{"pipeline/ties", 25, 80, 0.95, "ties"},
		{"pipeline/zeros", 25, 80, 0.95, "zeros"},
		{"pipeline/special", 25, 80, 0.95, "special"},
		{"pipeline/walk", 25, 80, 0.95, "walk"},
		{"few origins", 8, 80, 0.95, "ties"},
		{"one origin", 1, 10, 0.95, "normal"},
		{"short horizon", 17, 3, 0.95, "zeros"},
		{"one horizon", 12, 1, 0.9, "ties"},
		{"80% selects", 25, 48, 0.8, "ties"},
		{"50% selects", 25, 48, 0.5, "zeros"},
		{"99%", 40, 60, 0.99, "special"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 8))
			err := make([]float64, tc.origins*tc.H)
			for o := range tc.origins {
				var walk float64
				for h := range tc.H {
					v := rng.NormFloat64()
					switch tc.values {
					case "ties":
						v = float64(rng.IntN(5) - 2)
					case "zeros": // mostly: the quantiles fall on them
						v = []float64{0, math.Copysign(0, -1), 0, math.Copysign(0, -1), 0, math.Copysign(0, -1), 1, -1}[rng.IntN(8)] * float64(rng.IntN(2))
					case "special":
						if rng.IntN(20) == 0 {
							v = []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[rng.IntN(3)]
						}
					case "walk":
						walk += v
						v = walk
					}
					err[o*tc.H+h] = v
				}
			}
			// The order statistics themselves, before conformal's
			// min(·, 0) and its running minimum hide a −0 kept for a +0.
			ends := newErrorEnds(err, tc.origins, tc.H, tc.coverage, nil)
			for h := range tc.H {
				a, b := max(0, h-2), min(tc.H-1, h+2)
				pool := appendPool(nil, err, tc.origins, tc.H, a, b)
				n := len(pool)
				for i := range n {
					small, large := nearEndCount(n, i)
					if min(small, tc.origins) > ends.ns || min(large, tc.origins) > ends.nl {
						continue // more than this coverage's quantiles ask for
					}
					want0, want1 := orderStats(slices.Clone(pool), i)
					got0, got1, ok := ends.orderStats(a, b, n, i)
					require.Equal(t, small > 0 || large > 0, ok, "h=%d i=%d", h+1, i)
					if ok {
						require.Equal(t, [2]uint64{math.Float64bits(want0), math.Float64bits(want1)}, [2]uint64{math.Float64bits(got0), math.Float64bits(got1)}, "h=%d i=%d", h+1, i)
					}
				}
			}
			for _, stride := range []int{1, 11} {
				want0, want1 := conformalFrom(slices.Clone(err), tc.origins, stride, tc.H, tc.coverage, errorEnds{}, nil)
				got0, got1 := conformal(slices.Clone(err), tc.origins, stride, tc.H, tc.coverage, nil)
				for h := range tc.H {
					for _, p := range [][2]float64{{want0[h], got0[h]}, {want1[h], got1[h]}} {
						if math.IsNaN(p[0]) && math.IsNaN(p[1]) {
							continue
						}
						require.Equal(t, math.Float64bits(p[0]), math.Float64bits(p[1]), "stride %d h=%d", stride, h+1)
					}
				}
			}
		})
	}
}

// TestOutward: the interval offsets held as float32s are rounded away from
// the forecast (lo down, hi up) to the nearest float32 on that side (one
// ulp further would be beyond it), are exact where float32 holds them,
// and stay finite beyond its range. float32(0.7) is below 0.7 and
// float32(0.1) above 0.1, so each side is rounded both ways.
func TestOutward(t *testing.T) {
	cases := []struct {
		name string
		x    []float64
		side float64
		want []float32
	}{
		{"exact", []float64{0, -0.5, -3, -1e30}, -1, []float32{0, -0.5, -3, -1e30}},
		{"lower down", []float64{-0.1, -0.7}, -1, []float32{-0.1, math.Nextafter32(-0.7, -1)}},
		{"upper up", []float64{0.1, 0.7}, 1, []float32{0.1, math.Nextafter32(0.7, 1)}},
		{"beyond float32", []float64{-1e39, -math.MaxFloat64}, -1, []float32{-math.MaxFloat32, -math.MaxFloat32}},
		{"beyond float32 up", []float64{1e39}, 1, []float32{math.MaxFloat32}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := outward(nil, tc.x, tc.side)
			require.Equal(t, tc.want, got)
			for i, v := range tc.x {
				if math.Abs(v) <= math.MaxFloat32 {
					require.GreaterOrEqual(t, (float64(got[i])-v)*tc.side, 0.0, "%g", v)
					require.Less(t, (float64(math.Nextafter32(got[i], float32(-tc.side)))-v)*tc.side, 0.0, "%g", v)
				}
			}
		})
	}
}

func TestNelderMeadQuadratic(t *testing.T) {
	// Minimum of (x-1)² + 10(y+2)² is at (1, -2).
	x := nelderMead(func(p []float64) float64 { return (p[0]-1)*(p[0]-1) + 10*(p[1]+2)*(p[1]+2) }, []float64{0, 0}, 1, 400, nil)
	require.InDelta(t, 1, x[0], 1e-3)
	require.InDelta(t, -2, x[1], 1e-3)
}

// TestHoltWintersRunMatchesStep guards run, which writes step and forecast
// out over local variables for speed: for every season layout and both
// error forms, its objective and the state it leaves must equal, bit for
// bit, those of replaying the history through step and forecast.
func TestHoltWintersRunMatchesStep(t *testing.T) {
	y := hourly(600)
	r := rand.New(rand.NewPCG(1, 2))
	ref := func(h *holtWinters) float64 {
		h.l, h.b, h.i1, h.i2 = h.l0, h.b0, 0, 0
		copy(h.s1, h.s10)
		copy(h.s2, h.s20)
		buf := make([]float64, h.horizon)
		warm := int(max(h.m1, h.m2, 1))
		var sae float64
		var cnt int
		for t, v := range y {
			if t >= warm && (t-warm)%fitStride == 0 && t+h.horizon <= len(y) {
				h.forecast(buf)
				for k, f := range buf {
					sae += math.Abs(y[t+k] - f)
				}
				cnt += h.horizon
			}
			h.step(v)
		}
		return sae / float64(cnt)
	}
	state := func(h *holtWinters) []float64 {
		return append(append([]float64{h.l, h.b, float64(h.i1), float64(h.i2)}, h.s1...), h.s2...)
	}
	for _, seasons := range [][]int{nil, {24}, {24, 168}} {
		for _, mult := range []bool{false, true} {
			h := newHoltWinters(mult, seasons, 48)
			require.True(t, h.fit(y, nil), "%v mult=%v", seasons, mult)
			for range 20 {
				p := make([]float64, 3+len(seasons))
				for i := range p {
					p[i] = r.NormFloat64()
				}
				h.setParams(p)
				got := h.run(y)
				gotState := state(h)
				want := ref(h)
				require.Equal(t, want, got, "%v mult=%v params %v", seasons, mult, p)
				require.Equal(t, state(h), gotState, "%v mult=%v params %v", seasons, mult, p)
			}
		}
	}
}

// TestQuantileMatchesSorted: the selecting quantile gives, bit for bit, what
// interpolating in the sorted slice gives (up to the sign of a zero, which
// sorting leaves open too), for the levels and pool sizes conformal uses:
// near the ends (orderStats' scan) and in the middle (selection), NaN and
// ±Inf among the values in some trials.
func TestQuantileMatchesSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 9))
	sortedQuantile := func(x []float64, q float64) float64 {
		p := q * float64(len(x)-1)
		i := int(p)
		if i >= len(x)-1 {
			return x[len(x)-1]
		}
		f := p - float64(i)
		return x[i]*(1-f) + x[i+1]*f
	}
	for trial := range 300 {
		n := 1 + r.IntN(130)
		x := make([]float64, n)
		for i := range x {
			switch {
			case r.IntN(8) == 0:
				x[i] = float64(r.IntN(3)) // ties
			case trial%4 == 3 && r.IntN(30) == 0:
				// Values no error should be, ordered as slices.Sort does.
				x[i] = []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[r.IntN(3)]
			default:
				x[i] = r.NormFloat64() * 10
			}
		}
		sorted := slices.Clone(x)
		slices.Sort(sorted)
		for _, q := range []float64{0, 0.025, 0.5, 0.975, (1 + 0.95) / 2 * float64(n+1) / float64(n), 1} {
			q = min(q, 1)
			want, got := sortedQuantile(sorted, q), quantile(slices.Clone(x), q)
			if want == 0 && got == 0 || math.IsNaN(want) && math.IsNaN(got) {
				continue
			}
			require.Equal(t, math.Float64bits(want), math.Float64bits(got), "trial %d, n %d, q %v", trial, n, q)
		}
	}
}

// TestSeasonalDiff: the seasonal random walk of the differences continues
// a line plus a season exactly, a season ahead and beyond (the season's
// change once more per season), from the latest value.
func TestSeasonalDiff(t *testing.T) {
	const n, H = 100, 60 // 60 steps: two and a half seasons of 24
	for _, tc := range []struct {
		name  string
		slope float64
	}{
		{"level+season", 0},
		{"trend+season", 0.05},
		{"falling+season", -0.3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := planted(n, H, 100, tc.slope, 10, 0)
			c := newSeasonalDiff(24)
			require.True(t, c.fit(y[:n-5], nil))
			for _, v := range y[n-5 : n] {
				c.update(v) // the ring turned: pos is not 0
			}
			fc := make([]float64, H)
			c.forecast(fc)
			for h := range fc {
				require.InDelta(t, y[n+h], fc[h], 1e-9, "h=%d", h+1)
			}
		})
	}
}
