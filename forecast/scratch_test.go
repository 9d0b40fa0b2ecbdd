package forecast

import (
	"math"
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
