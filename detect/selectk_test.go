package detect

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSelectKMatchesSort compares order statistics SelectK returns with the
// sorted slice's, bit for bit up to what sorting leaves open (the order of
// values that compare equal: 0 and -0), on inputs with ties, infinities and
// NaNs, and checks the partition around them.
func TestSelectKMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	special := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1)}
	for trial := range 400 {
		n := 1 + r.IntN(300)
		x := make([]float64, n)
		for i := range x {
			switch r.IntN(10) {
			case 0:
				x[i] = special[r.IntN(len(special))]
			case 1, 2:
				x[i] = float64(r.IntN(4)) // ties
			default:
				x[i] = r.NormFloat64()
			}
		}
		sorted := slices.Clone(x)
		slices.Sort(sorted)
		for _, k := range []int{0, n / 2, n - 1, r.IntN(n)} {
			y := slices.Clone(x)
			got := SelectK(y, k)
			require.Equal(t, canon(sorted[k]), canon(got), "trial %d, n %d, k %d", trial, n, k)
			for i := range y {
				if i < k {
					require.False(t, less(got, y[i]), "trial %d: y[%d] after the k-th", trial, i)
				} else if i > k {
					require.False(t, less(y[i], got), "trial %d: y[%d] before the k-th", trial, i)
				}
			}
			// Only the order changed.
			slices.Sort(y)
			require.Equal(t, bits(sorted), bits(y))
		}
	}
}

func less(a, b float64) bool { return slices.Compare([]float64{a}, []float64{b}) < 0 }

func bits(x []float64) []uint64 {
	out := make([]uint64, len(x))
	for i, v := range x {
		out[i] = canon(v)
	}
	return out
}

// canon is v's bits with -0 as 0, which compare equal and so may come in
// either order.
func canon(v float64) uint64 {
	if v == 0 {
		v = 0
	}
	return math.Float64bits(v)
}
