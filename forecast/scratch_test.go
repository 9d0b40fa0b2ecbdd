package forecast

import (
	"math"
	"slices"
	"testing"

	"github.com/omen-sidecar/omen/detect"
	"github.com/stretchr/testify/require"
)

// TestFitScratchNotRetained: a fitted ensemble keeps nothing from the
// refit's scratch. The same fit with a scratch that is then overwritten
// with NaN, and with no scratch at all, must forecast the same, bit for
// bit, before and after further updates. It fails if any component or the
// ensemble keeps a slice carved from the scratch.
func TestFitScratchNotRetained(t *testing.T) {
	for _, tc := range []struct {
		name    string
		y       []float64
		seasons []int
		log     bool
	}{
		{"positive, log scale", planted(400, 40, 50, 0.01, 10, 0.3), []int{24}, true},
		{"two seasons", planted(600, 40, 50, 0, 10, 0.3), []int{24, 168}, true},
		{"value scale", planted(400, 40, 0, 0.01, 10, 0.3), []int{24}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(tc.y) - 40
			y := tc.y[:n]
			if tc.log {
				y = make([]float64, n)
				for i, v := range tc.y[:n] {
					y[i] = math.Log(v)
				}
			}
			ref, _ := fitEnsemble(y, tc.seasons, tc.log, 48, 0.95, defaultCombiner, nil, nil, nil)
			sc := &fitScratch{buf: make([]float64, 1<<20)} // one array: none is dropped
			got, _ := fitEnsemble(y, tc.seasons, tc.log, 48, 0.95, defaultCombiner, nil, nil, sc)
			require.NotNil(t, ref)
			require.NotZero(t, sc.off, "the fit used the scratch")
			for i := range sc.buf {
				sc.buf[i] = math.NaN()
			}
			want, have := make([]float64, 48), make([]float64, 48)
			for step := range 3 {
				ref.forecast(want, nil)
				got.forecast(have, nil)
				require.Equal(t, want, have, "after %d updates", step)
				require.Equal(t, ref.lo(), got.lo())
				require.Equal(t, ref.hi(), got.hi())
				ref.update(y[n-1])
				got.update(y[n-1])
			}
		})
	}
}

// TestRefitReusesEnsemble: a fit into a previous ensemble's arrays (of a
// longer horizon, with more components, or of a shorter one) gives what a
// fresh fit gives, and does reuse them. It fails if reuse leaves a stale
// weight, band or component behind.
func TestRefitReusesEnsemble(t *testing.T) {
	y := planted(600, 40, 50, 0.01, 10, 0.3)
	for _, tc := range []struct {
		name    string
		oldH    int
		seasons []int
	}{
		{"from a longer horizon and two seasons", 80, []int{24, 168}},
		{"from a shorter horizon", 12, []int{24}},
		{"from no season", 48, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, _ := fitEnsemble(y[:500], tc.seasons, false, tc.oldH, 0.9, defaultCombiner, nil, nil, nil)
			require.NotNil(t, old)
			oldLo := old.lo()
			want, _ := fitEnsemble(y[:550], []int{24}, false, 48, 0.95, defaultCombiner, nil, nil, nil)
			got, _ := fitEnsemble(y[:550], []int{24}, false, 48, 0.95, defaultCombiner, nil, old, nil)
			require.Same(t, old, got)
			if cap(oldLo) >= 48 {
				require.Same(t, &oldLo[:1][0], &got.lo()[:1][0], "the band's array is reused")
			}
			require.Equal(t, want.H, got.H)
			require.Equal(t, want.weights, got.weights)
			require.Equal(t, want.lo(), got.lo())
			require.Equal(t, want.hi(), got.hi())
			require.Len(t, got.comps, len(want.comps))
			wf, gf := make([]float64, 48), make([]float64, 48)
			want.forecast(wf, nil)
			got.forecast(gf, nil)
			require.Equal(t, wf, gf)
		})
	}
}

// TestSeasonalityPoolSameResults: a pooled season detector built for the
// longest input of an FFT size finds what a detector built for the input's
// own length finds, for every length of that size.
func TestSeasonalityPoolSameResults(t *testing.T) {
	y := planted(512, 0, 50, 0.02, 10, 2)
	for _, n := range []int{257, 300, 383, 511, 512, 129, 200, 16, 5} {
		s, pool := seasonality(n)
		require.Equal(t, detect.NewSeasonality(n).Find(nil, y[:n], 2, n/2, 4), s.Find(nil, y[:n], 2, n/2, 4), "n=%d", n)
		pool.Put(s)
	}
}

// TestRefitScratchHoldsNoComponent: after a refit the pooled scratch
// refers to none of its candidates (they are the model's, or garbage),
// and the season detection takes from it all but the seasons it returns.
func TestRefitScratchHoldsNoComponent(t *testing.T) {
	y := planted(600, 0, 50, 0.01, 10, 0.3)
	sc := getFitScratch()
	defer putFitScratch(sc)
	e, _ := fitEnsemble(y, []int{24, 168}, false, 48, 0.95, defaultCombiner, nil, nil, sc)
	require.NotNil(t, e)
	require.NotZero(t, cap(sc.comps), "the candidates were built in the scratch")
	for _, c := range sc.comps[:cap(sc.comps)] {
		require.Nil(t, c)
	}
	for _, r := range sc.rows[:cap(sc.rows)] {
		require.Nil(t, r)
	}
	sc.reset()
	require.Equal(t, detectSeasons(y, 300, nil), detectSeasons(y, 300, sc))
	if raceEnabled {
		return // the pools drop items at random: detectors are rebuilt
	}
	allocs := testing.AllocsPerRun(10, func() {
		detectSeasons(y, 300, sc)
		sc.reset()
	})
	require.LessOrEqual(t, allocs, 2.0, "the seasons slice and its append")
}

// TestRefitSparesSameFit: candidates built in the spares of earlier
// refits (other seasons, scales and horizons, fitted or not, kept or not,
// and the components of the ensemble refitted) fit as new ones do, bit for bit: the weights, the band, the kept
// components' names and the forecasts after further updates. It fails if
// an init leaves a field of the component's earlier life (a warm start, a
// ring of another series, the raw or diff flag, a season array's values).
// The refits also allocate less with spares than without.
func TestRefitSparesSameFit(t *testing.T) {
	type fitCase struct {
		y       []float64
		seasons []int
		log     bool
		H       int
	}
	logOf := func(y []float64) []float64 {
		l := make([]float64, len(y))
		for i, v := range y {
			l[i] = math.Log(v)
		}
		return l
	}
	cases := []fitCase{
		{logOf(planted(600, 40, 50, 0.01, 10, 0.3)), []int{24, 168}, true, 48},
		{planted(500, 40, 50, 0, 10, 0.3), []int{24}, false, 48},
		{logOf(planted(400, 40, 50, 0.01, 10, 0.3)), []int{24}, true, 80},
		{planted(300, 40, 50, 0.02, 10, 0.5), nil, false, 24},
		{logOf(planted(500, 40, 50, 0.01, 10, 0.3)), []int{12}, true, 48},
		{logOf(planted(300, 40, 50, 0.02, 10, 0.5)), nil, true, 24},
	}
	sc := getFitScratch()
	defer putFitScratch(sc)
	var prev *ensemble // the last fit's: its components are recycled too
	check := func(t *testing.T, tc fitCase) {
		want, _ := fitEnsemble(tc.y, tc.seasons, tc.log, tc.H, 0.95, defaultCombiner, nil, nil, nil)
		got, _ := fitEnsemble(tc.y, tc.seasons, tc.log, tc.H, 0.95, defaultCombiner, nil, prev, sc)
		sc.reset()
		prev = got
		require.NotNil(t, want)
		// slices.Equal: a reused ensemble's empty arrays are not nil.
		require.True(t, slices.Equal(want.weights, got.weights), "weights")
		require.True(t, slices.Equal(want.of, got.of), "of")
		require.Equal(t, want.width, got.width)
		require.Equal(t, want.lo(), got.lo())
		require.Equal(t, want.hi(), got.hi())
		names := func(e *ensemble) (s []string) {
			for _, c := range e.comps {
				s = append(s, c.name())
			}
			return s
		}
		require.Equal(t, names(want), names(got))
		wf, gf := make([]float64, tc.H), make([]float64, tc.H)
		for step := range 3 {
			want.forecast(wf, nil)
			got.forecast(gf, nil)
			require.Equal(t, wf, gf, "after %d updates", step)
			v := tc.y[len(tc.y)-1-step]
			want.update(v)
			got.update(v)
		}
	}
	// Twice round, in both orders: each case's candidates are built in
	// spares of the others.
	for round := range 2 {
		for i := range cases {
			k := i
			if round == 1 {
				k = len(cases) - 1 - i
			}
			check(t, cases[k])
		}
	}
	sp := sc.spares
	require.NotZero(t, len(sp.hw)+len(sp.th)+len(sp.sn)+len(sp.fr)+len(sp.rs), "refits left spares")

	if raceEnabled {
		return // the pools drop items at random
	}
	tc := cases[0]
	fresh := testing.AllocsPerRun(5, func() {
		fitEnsemble(tc.y, tc.seasons, tc.log, tc.H, 0.95, defaultCombiner, nil, nil, &fitScratch{})
	})
	spared := testing.AllocsPerRun(5, func() {
		prev, _ = fitEnsemble(tc.y, tc.seasons, tc.log, tc.H, 0.95, defaultCombiner, nil, prev, sc)
		sc.reset()
	})
	t.Logf("allocations of a refit: %.0f new, %.0f with spares", fresh, spared)
	require.Less(t, spared, fresh)
}

// TestComponentInitIsNew: a component fitted once, then init'ed (as a
// refit does with a spare), is what its constructor returns, field for
// field, whether its arrays are of the new size (reused) or not (new).
// The seasonal naive's ring is the exception: it stays for fit to
// overwrite, and is left out. It fails if an init keeps any field of the
// component's earlier life.
func TestComponentInitIsNew(t *testing.T) {
	y := planted(600, 0, 50, 0.01, 10, 0.3)
	for _, old := range []struct {
		seasons []int
		H       int
	}{{[]int{24}, 48}, {[]int{24, 168}, 80}, {[]int{12}, 24}} {
		for _, m := range [][]int{{24}, {24, 168}} {
			th := newDrift(old.seasons[0], old.H)
			require.True(t, th.fit(y, nil))
			require.Equal(t, newTheta(m[0], 48), th.init(m[0], 48))
			require.True(t, th.fit(y, nil))
			require.Equal(t, newDrift(m[0], 48), th.initDrift(m[0], 48))

			hw := newHoltWinters(false, old.seasons, old.H)
			require.True(t, hw.fit(y, nil))
			require.Equal(t, newHoltWinters(false, m, 48), hw.init(false, m, 48))

			f := newFourierReg(old.seasons, old.H)
			require.True(t, f.fit(y, nil))
			require.Equal(t, newFourierReg(m, 48), f.init(m, 48))

			for _, diff := range []bool{false, true} {
				s := newSeasonalDiff(old.seasons[0])
				s.raw = true
				require.True(t, s.fit(y, nil))
				s.init(m[0], diff)
				require.NotNil(t, s.r, "the ring stays")
				s.r, s.own = nil, false
				require.Equal(t, new(seasonalNaive).init(m[0], diff), s)
			}
		}
	}
}
