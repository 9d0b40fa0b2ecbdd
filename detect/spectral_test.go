package detect

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSpectralResidualPeaksAtSpike(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		spike int
	}{
		{name: "middle", n: 64, spike: 30},
		{name: "early", n: 64, spike: 10},
		{name: "newest", n: 32, spike: 31},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 7))
			x := make([]float64, tt.n)
			for i := range x {
				x[i] = 10 + math.Sin(2*math.Pi*float64(i)/16) + 0.1*rng.NormFloat64()
			}
			x[tt.spike] += 6
			sr := NewSpectralResidual(tt.n)
			sal := sr.Saliency(nil, x)
			best := 0
			for i, v := range sal {
				if v > sal[best] {
					best = i
				}
			}
			require.Equal(t, tt.spike, best)
		})
	}
}

func TestSpectralResidualLast(t *testing.T) {
	x := make([]float64, 32)
	for i := range x {
		x[i] = 5 + 0.5*math.Sin(float64(i))
	}
	sr := NewSpectralResidual(32)
	quiet := sr.Last(x)
	x[31] += 5
	loud := sr.Last(x)
	require.Greater(t, loud, 1.0)
	require.Greater(t, loud, 3*quiet)
	for i := range x {
		x[i] = 2
	}
	require.Zero(t, testing.AllocsPerRun(10, func() { sr.Last(x) }))
}
