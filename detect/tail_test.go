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

// TestThreshold1MatchesThreshold checks that the table expect reads for a
// tail at its floor gives Threshold(1) to the last bit, for every floor a
// Tail can hold, and that a tail above its floor is computed as before.
func TestThreshold1MatchesThreshold(t *testing.T) {
	sc := NewScratch()
	for _, tc := range []struct {
		name     string
		zq       float32
		logRange func(floor float32) float32 // LogRange given the floor
	}{
		{"floored zq 1", 1, func(f float32) float32 { return f }},
		{"floored zq 2.33", 2.33, func(f float32) float32 { return f }},
		{"floored zq floor", tailZFloor, func(f float32) float32 { return f }},
		{"above floor", 2.33, func(f float32) float32 { return f + 0.37 }},
		{"just above floor", 0.8, func(f float32) float32 { return math.Nextafter32(f, 10) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k := range 256 {
				tl := newTail(1000, float64(k)/100)
				require.Equal(t, uint8(k), tl.MinLog100)
				tl.Zq, tl.LogRange = tc.zq, tc.logRange(tl.minLog())
				want := tl.Threshold(1)
				require.Equal(t, math.Float64bits(want), math.Float64bits(sc.threshold1(&tl)), "MinLog100 %d", k)
			}
		})
	}
}

// BenchmarkThreshold1 compares expect's read of a floored tail's band with
// Threshold(1)'s exponential.
//
//	go test -run '^$' -bench Threshold1 -count=6 ./detect/
func BenchmarkThreshold1(b *testing.B) {
	sc := NewScratch()
	tl := newTail(1000, tailMinLog)
	tl.Zq = 2.33
	var s float64
	b.Run("impl=table", func(b *testing.B) {
		for b.Loop() {
			s += sc.threshold1(&tl)
		}
	})
	b.Run("impl=exp", func(b *testing.B) {
		for b.Loop() {
			s += tl.Threshold(1)
		}
	})
	fsink = s
}

var fsink float64
