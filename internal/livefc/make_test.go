package livefc

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/forecast"
)

// TestMakeAtReadsAsEveryStep: MakeAt forecasts only the steps At reads
// (see forecast.Model.ForecastSteps), and At reads from them, bit for bit,
// what it read from every step's forecast (ForecastWith, as MakeAt made
// them before): on series at and faster than the forecaster's steps
// (averaged, so the steps are stamped off their middle), positive (the
// forecaster's log scale) or not, random horizon sets, whole steps among
// them (one step read), several seeds.
func TestMakeAtReadsAsEveryStep(t *testing.T) {
	for seed := range uint64(4) {
		for _, inMs := range []int64{15000, 30000, 37000} {
			for _, positive := range []bool{true, false} {
				t.Run(fmt.Sprintf("seed=%d/input=%dms/positive=%t", seed, inMs, positive), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(seed, uint64(inMs)))
					rs := Resampler{MinStepMs: MinStep(30 * time.Minute)}
					m, err := forecast.New(Options())
					require.NoError(t, err)
					var (
						sc, scFull      forecast.Scratch
						dst             []forecast.Point
						within          float64
						stepDif         float32
						made, compared  int
						level, period   = 1 + 1e3*rng.Float64(), 20 + rng.IntN(200)
						horizons        []time.Duration
						stepsOfHorizons = []time.Duration{30 * time.Second, time.Minute}
					)
					for i := range 1500 {
						ti := int64(i) * inMs
						v := level*(1+0.2*math.Sin(2*math.Pi*float64(i)/float64(period))) + 0.05*level*rng.NormFloat64()
						if !positive {
							v -= level
						}
						pts, n := rs.Add(ti, v)
						for _, pt := range pts[:n] {
							Feed(m, pt, &within, &stepDif)
						}
						if n == 0 || !m.Ready() || i%3 != 0 {
							continue
						}
						horizons = horizons[:0]
						for range 1 + rng.IntN(8) {
							h := time.Duration(1+rng.Int64N(40*60)) * time.Second
							if rng.IntN(3) == 0 {
								h = time.Duration(1+rng.IntN(60)) * stepsOfHorizons[rng.IntN(2)]
							}
							horizons = append(horizons, h)
						}
						// A moment after the sample, as a forecast is made at a
						// later one's time: the lead is not a whole step.
						t0 := ti + rng.Int64N(inMs)
						mk, ok := MakeAt(m, &rs, t0, horizons, dst, &sc)
						dst = mk.Fc
						if !ok {
							continue
						}
						made++
						full := mk
						full.Fc = m.ForecastWith(nil, len(mk.Fc), &scFull)
						require.Len(t, mk.Fc, len(full.Fc))
						for _, h := range horizons {
							want, wok := full.At(h)
							got, gok := mk.At(h)
							require.Equal(t, wok, gok, "horizon %v", h)
							if !wok {
								continue
							}
							compared++
							for j, pair := range [][2]float64{{want.Yhat, got.Yhat}, {want.Lower, got.Lower}, {want.Upper, got.Upper}} {
								require.Equal(t, math.Float64bits(pair[0]), math.Float64bits(pair[1]),
									"sample %d, horizon %v, value %d: %v against %v", i, h, j, pair[0], pair[1])
							}
						}
					}
					require.NotZero(t, made)
					require.NotZero(t, compared)
				})
			}
		}
	}
}

// TestAppendReadSteps: the steps appendReadSteps gathers are those
// Between reads, ascending without repeats.
func TestAppendReadSteps(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		n    int
		want []int
	}{
		{"between the point and the first step", []float64{0.5}, 10, []int{0}},
		{"a whole step: that step only", []float64{3}, 10, []int{2}},
		{"between two steps", []float64{3.25}, 10, []int{2, 3}},
		{"shared and out of order", []float64{7.5, 3.25, 3, 7.75}, 10, []int{2, 3, 6, 7}},
		{"the last step", []float64{10}, 10, []int{9}},
		{"beyond, at or before the point, NaN: none", []float64{10.5, 0, -1, math.NaN()}, 10, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for _, x := range tc.xs {
				got = appendReadSteps(got, x, tc.n)
			}
			require.Equal(t, tc.want, got)
		})
	}
}
