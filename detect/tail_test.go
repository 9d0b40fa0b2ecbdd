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

// TestRefreshRangeFloor checks LogRange against its definition,
// float32(max(ln(M_N/z_q), floor)), for every floor a Tail can hold, with
// ratios on both sides of the shortcut's bound 1 + m + m²/2 and of e^m, where
// the floor stops holding.
func TestRefreshRangeFloor(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for k := range 256 {
		tl := newTail(64, float64(k)/100)
		m := float64(tl.minLog())
		bound, em := 1+m+m*m/2, math.Exp(m)
		for _, tc := range []struct {
			name string
			x    float64 // M_N/z_q wanted
		}{
			{"zero", 0},
			{"half", 0.5},
			{"one", 1},
			{"below bound", math.Nextafter(bound, 0)},
			{"at bound", bound},
			{"below e^m", em * (1 - 1e-12)},
			{"at e^m", em},
			{"above e^m", em * (1 + 1e-12)},
			{"1% above e^m", em * 1.01},
			{"far above", em * 40},
			{"random", rng.Float64() * 3 * em},
		} {
			tl.Zq = float32(0.25 + rng.Float64()*4)
			for i := range tl.Blocks {
				tl.Blocks[i] = 0
			}
			tl.Blocks[rng.IntN(tailBlocks)] = float32(tc.x * float64(tl.Zq))
			tl.refreshRange()
			want := float32(max(math.Log(tl.windowMax()/float64(tl.Zq)), m))
			require.Equal(t, math.Float32bits(want), math.Float32bits(tl.LogRange), "MinLog100 %d, %s", k, tc.name)
		}
	}
}

// BenchmarkRefreshRange compares refreshRange with the logarithm it used to
// take every time, on a tail whose record is 1.3 times z_q (at the floor
// 0.5, as most tails are).
//
//	go test -run '^$' -bench RefreshRange -count=6 ./detect/
func BenchmarkRefreshRange(b *testing.B) {
	tl := newTail(1000, tailMinLog)
	tl.Zq, tl.Blocks[3] = 2, 2.6
	b.Run("impl=shortcut", func(b *testing.B) {
		for b.Loop() {
			tl.refreshRange()
		}
	})
	b.Run("impl=log", func(b *testing.B) {
		for b.Loop() {
			tl.LogRange = float32(max(math.Log(tl.windowMax()/float64(tl.Zq)), float64(tl.minLog())))
		}
	})
}
