package detect

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// frexpHalfLog2 is halfLog2 as it was written first, from math.Frexp: the
// reference the bit-reading version must match on every input, since the
// histogram's bins (and so every score) follow from it.
func frexpHalfLog2(z float64) int {
	frac, exp := math.Frexp(z)
	h := 2 * (exp - 1)
	if frac >= math.Sqrt2/2 {
		h++
	}
	return h
}

func TestHalfLog2MatchesFrexp(t *testing.T) {
	const onlyRef = math.MinInt
	sqrt2 := math.Sqrt2
	for _, tc := range []struct {
		name string
		z    float64
		want int // ⌊2·log2 z⌋, from the definition; onlyRef: checked against the reference only
	}{
		{"one", 1, 0},
		{"two", 2, 2},
		{"half", 0.5, -2},
		{"sqrt2", sqrt2, 1},
		{"below sqrt2", math.Nextafter(sqrt2, 0), 0},
		{"above sqrt2", math.Nextafter(sqrt2, 2), 1},
		{"below two", math.Nextafter(2, 0), 1},
		{"sqrt2 times 2^-20", sqrt2 * 0x1p-20, -39},
		{"below sqrt2 times 2^-20", math.Nextafter(sqrt2, 0) * 0x1p-20, -40},
		{"tail floor", tailZFloor, -16},
		{"smallest normal", 0x1p-1022, -2044},
		{"largest subnormal", math.Nextafter(0x1p-1022, 0), onlyRef},
		{"smallest subnormal", math.SmallestNonzeroFloat64, onlyRef},
		{"subnormal above sqrt2", sqrt2 * 0x1p-1040, onlyRef},
		{"largest", math.MaxFloat64, 2047},
		{"+Inf", math.Inf(1), onlyRef},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, frexpHalfLog2(tc.z), halfLog2(tc.z))
			if tc.want != onlyRef {
				require.Equal(t, tc.want, halfLog2(tc.z))
			}
		})
	}
	t.Run("random", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for range 200_000 {
			// Positive floats of every exponent, subnormals included.
			z := math.Float64frombits(rng.Uint64() &^ (1 << 63))
			if math.IsNaN(z) || z == 0 {
				continue
			}
			require.Equal(t, frexpHalfLog2(z), halfLog2(z), "z=%g", z)
		}
	})
}

// BenchmarkHalfLog2 compares the bin index from the bits with the Frexp
// reference, on the statistics' usual range, each called directly as
// Tail.Update calls it.
//
//	go test -run '^$' -bench HalfLog2 -count=6 ./detect/
func BenchmarkHalfLog2(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	zs := make([]float64, 1024)
	for i := range zs {
		zs[i] = math.Abs(rng.NormFloat64()) * 3
	}
	b.Run("impl=bits", func(b *testing.B) {
		s, i := 0, 0
		for b.Loop() {
			s += halfLog2(zs[i&1023])
			i++
		}
		sink = s
	})
	b.Run("impl=frexp", func(b *testing.B) {
		s, i := 0, 0
		for b.Loop() {
			s += frexpHalfLog2(zs[i&1023])
			i++
		}
		sink = s
	})
}

var sink int
