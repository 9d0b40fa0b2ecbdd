package forecast

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSparesNotAliasedAcrossModels: Models of different series refitted
// interleaved, on goroutines of their own and through the pooled scratches
// (whose spares are the components earlier refits of any series did not
// keep), forecast bit for bit what the same Models fed one at a time do,
// at every sample. It fails if a component (or a ring or array it points
// to) that a live ensemble holds is handed out as a spare and built over
// by another series' refit.
func TestSparesNotAliasedAcrossModels(t *testing.T) {
	const n = 450
	opts := Options{MaxHorizon: 24, History: 256, RefitEvery: 5}
	shapes := []func(i int, rng *rand.Rand) float64{
		func(i int, rng *rand.Rand) float64 { // daily, positive: the log scale
			return 100 + 20*math.Sin(2*math.Pi*float64(i)/24) + rng.NormFloat64()
		},
		func(i int, rng *rand.Rand) float64 { // two seasons
			return 50 + 10*math.Sin(2*math.Pi*float64(i)/12) + 5*math.Sin(2*math.Pi*float64(i)/60) + rng.NormFloat64()
		},
		func(i int, rng *rand.Rand) float64 { // no season, crosses zero
			return 0.02*float64(i) - 5 + rng.NormFloat64()
		},
		func(i int, rng *rand.Rand) float64 { // season of 7, positive trend
			return 10 + 0.05*float64(i) + 3*math.Sin(2*math.Pi*float64(i)/7) + 0.3*rng.NormFloat64()
		},
	}
	const series = 8
	data := make([][]float64, series)
	for s := range data {
		rng := rand.New(rand.NewPCG(uint64(s), 7))
		data[s] = make([]float64, n)
		for i := range data[s] {
			data[s][i] = float64(s) + shapes[s%len(shapes)](i, rng)
		}
	}
	run := func(m *Model, y []float64, at int) []Point {
		m.Update(int64(at+1)*15_000, y[at])
		return m.Forecast(nil, opts.MaxHorizon)
	}
	// Alone: one series at a time.
	want := make([][][]Point, series)
	for s := range series {
		m, err := New(opts)
		require.NoError(t, err)
		for i := range n {
			want[s] = append(want[s], run(m, data[s], i))
		}
	}
	// Interleaved: every series a sample in turn, on 4 goroutines.
	models := make([]*Model, series)
	for s := range models {
		var err error
		models[s], err = New(opts)
		require.NoError(t, err)
	}
	got := make([][][]Point, series)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				for s := g; s < series; s += 4 {
					got[s] = append(got[s], run(models[s], data[s], i))
				}
			}
		}()
	}
	wg.Wait()
	for s := range series {
		for i := range n {
			require.Equal(t, want[s][i], got[s][i], "series %d at sample %d", s, i)
		}
	}
}
