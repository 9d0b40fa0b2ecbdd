package detect

import "math"

const (
	// nvLen samples make a context, each binned into one of 8 levels of
	// nvBinW level standard deviations around the level (4 below, 4 above).
	nvLen  = 5
	nvBinW = 1.0
	// nvBits is log2 of each generation's size in bits, nvWords its 64-bit
	// words. Contexts are marked in the current generation; every
	// nvGeneration samples it becomes the previous one and a new one
	// starts, so a context is remembered for 768 to 1536 samples (several
	// days of 5-minute samples, which is why the member is off once a long
	// season is known).
	nvBits       = 9
	nvWords      = 1 << nvBits / 64
	nvGeneration = 768
	// nvAlpha is the weight of the EWMA of "this context is new".
	nvAlpha = 0.1
)

// novelty is a contextual-novelty member in the spirit of ARTime's and
// HTM's: the last nvLen samples, each binned by its distance from the
// level, form a context; a context not seen in the last 768-1536 samples
// is new. The statistic is an EWMA of "new", so a run of new contexts (a
// series wandering into a shape it has not taken for a while: a slow ramp,
// a change of rhythm) stands out where one odd sample does not; it is
// calibrated against its own record like every member.
//
// The contexts seen are hashed into two generations of 512 bits (128
// bytes). The sample's bin is taken against the level after it learnt the
// sample, which the features compute on a copy of the level. Generations
// of 1024 bits (snapshot versions up to 12; see noveltyV12) held fewer
// collisions of two contexts on one bit, but gave NAB no more: with the
// rings' int8 steps, 75.20 / 68.87 / 79.15 (standard / low FP / low FN),
// 135 false-positive rows, against 75.18 / 68.77 / 79.14, 137 rows, at 512
// bits, which keep a scored series in Go's 2304-byte size class.
//
// The set used to be one 2048-bit set with one 64-bit word cleared every 64
// samples: a context seen a moment before its word was cleared counted as
// new at its next sample, so a constant series (one context) scored above 1
// every 2048 samples, every flat series in step, and a square wave or a
// sawtooth every ~2000 (TestFlatAndRegularSeriesStayQuiet). With two
// generations a context seen in the last nvGeneration samples is never
// forgotten. NAB at a generation of 512 / 640 / 700 / 768 / 832 / 896 /
// 1024 samples (1024 bits each; standard, windows, false-positive rows):
// 74.57 100 134 / 75.47 101 133 / 75.35 101 134 / 75.20 101 137 / 75.43 101
// 134 / 74.90 101 137 / 74.32 100 139; 768 is the middle of the plateau
// that finds machine_temperature's ramp. Two generations of 2048 bits
// (512 bytes) did no better (74.38 at 1024, 74.36 at 2048).
//
// On NAB (standard / low FP / low FN; without: 74.59 / 68.40 / 78.46, 100
// windows, 132 false-positive rows) it gives 75.20 / 68.78 / 79.16, 101
// windows, 137 rows (75.37 / 69.05 / 79.27, 135 rows, with the old set). The gain is mostly one window: machine_temperature's
// slow ramp before the failure (the fourth window), which the member finds
// at 1.058 where no other member reaches 0.83. With the old set, in a 3×3×2
// grid around the constants (EWMA 0.07 / 0.1 / 0.15 × a word cleared every 48 / 64 / 96
// samples × bins of 1 / 1.25 σ) 15 of 18 settings find it (standard 75.16
// – 75.37, low FP 68.71 – 69.06), 3 do not (74.40 – 74.62, 67.82 –
// 68.38). Contexts of 4 / 6 samples gave 74.95 / 74.54, a set of 1024
// bits cleared every 64 samples 74.66, binning against the level before it
// learnt the sample 74.47; counted in the window's √n (see Reset) 73.22.
// Left on where a long season is known it scores the same on NAB (75.38)
// but scores 1.13 on TestLongSeasonFindsWeek's regular week.
type novelty struct {
	Cur, Prev [nvWords]uint64 // the contexts of this generation and of the last
	Ctx       uint16          // the last nvLen bins, 3 bits each
	F         float32         // EWMA of "the context was new"
}

// next returns the context after v, binned against lv updated with v.
func (n *novelty) next(v float64, lv Robust, floor float64) uint16 {
	lv.Update(v)
	b := int(math.Floor(lv.Z(v, floor)/nvBinW)) + 4
	b = max(0, min(b, 7))
	return uint16(((uint32(n.Ctx) << 3) | uint32(b)) & (1<<(3*nvLen) - 1))
}

// nvHash maps a context to a bit of the set (Fibonacci hashing).
func nvHash(ctx uint16) uint32 { return uint32((uint64(ctx) * 0x9E3779B97F4A7C15) >> (64 - nvBits)) }

// isNew reports whether the context has not been seen in either
// generation.
func (n *novelty) isNew(h uint32) bool { return (n.Cur[h>>6]|n.Prev[h>>6])&(1<<(h&63)) == 0 }

// score returns the statistic for v from the state before v, and v's
// context (next), which learn takes.
func (n *novelty) score(v float64, level *Robust, floor float64) (float64, uint16) {
	ctx := n.next(v, *level, floor)
	nw := 0.0
	if n.isNew(nvHash(ctx)) {
		nw = 1
	}
	return float64(n.F) + nvAlpha*(nw-float64(n.F)), ctx
}

// learn adds v's context ctx (next, from the same state as score's);
// seen is the number of samples learnt before v.
func (n *novelty) learn(ctx uint16, seen uint64) {
	h := nvHash(ctx)
	nw := float32(0)
	if n.isNew(h) {
		nw = 1
	}
	n.Cur[h>>6] |= 1 << (h & 63)
	n.Ctx = ctx
	n.F += float32(nvAlpha) * (nw - n.F)
	if seen%nvGeneration == 0 {
		n.Prev, n.Cur = n.Cur, [nvWords]uint64{}
	}
}
