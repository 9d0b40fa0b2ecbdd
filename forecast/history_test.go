package forecast

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHistoryStores checks what the float32 history keeps of a series:
// the values as stored stay within the stated tolerance of the true ones
// (relative to the change from the value before, where differences are
// kept), keep their sign and their zeros, and decode from the ring, after
// it has wrapped, to exactly what push returned.
func TestHistoryStores(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name string
		f    func(i int) float64
		// tol bounds |stored − true| given the true change from the
		// sample before; 0: stored exactly.
		tol func(v, dv float64) float64
	}{
		// A timestamp gauge: float32 values alone are 128 apart there.
		{"timestamp gauge", func(i int) float64 { return 1.7e9 + 15*float64(i) }, nil},
		{"integers", func(i int) float64 { return float64(rng.IntN(1 << 24)) }, nil},
		{"constant decimal", func(int) float64 { return 123.456 }, nil},
		{"running total", func(i int) float64 { return 8.5e12 + 1.25*float64(i*i) }, nil},
		{"noisy decimals", func(i int) float64 { return 600 + 10*math.Sin(float64(i)/4) + rng.NormFloat64() },
			func(v, dv float64) float64 { return 0x1p-24 * math.Abs(dv) }},
		{"zeros between", func(i int) float64 { return float64(i%3) * 0.1 },
			func(v, dv float64) float64 { return 0x1p-24 * math.Abs(dv) }},
		{"sign changes", func(i int) float64 { return math.Sin(float64(i)) * 1e-3 },
			func(v, dv float64) float64 { return 0x1p-24 * math.Abs(dv) }},
		{"huge jumps", func(i int) float64 { return float64(i%2)*1e30 + float64(i) },
			func(v, dv float64) float64 { return 0x1p-24 * math.Abs(dv) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory(100)
			var stored []float64
			prev := 0.0
			for i := range 250 {
				v := tc.f(i)
				x := h.push(v)
				stored = append(stored, x)
				switch {
				case tc.tol == nil:
					require.Equal(t, v, x, "sample %d", i)
				case i > 0:
					require.InDelta(t, v, x, tc.tol(v, v-prev), "sample %d", i)
				}
				require.Equal(t, signOf(v), signOf(x), "sample %d: %g stored as %g", i, v, x)
				prev = v
				if i >= 1 {
					k := min(i+1, 100)
					require.Equal(t, stored[i+1-k:], h.window(nil, k), "sample %d", i)
				}
			}
		})
	}
}
