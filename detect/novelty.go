package detect

import "math"

const (
	// nvLen samples make a context, each binned into one of 8 levels of
	// nvBinW level standard deviations around the level (4 below, 4 above).
	nvLen  = 5
	nvBinW = 1.0
	// nvBits is log2 of the seen-set's size in bits; nvWords its 64-bit
	// words. One word is cleared every nvClearEvery samples, so a context
	// is remembered for nvWords·nvClearEvery = 2048 samples (a week of
	// 5-minute samples, which is why the member is off once a long season
	// is known).
	nvBits       = 11
	nvWords      = 1 << nvBits / 64
	nvClearEvery = 64
	// nvAlpha is the weight of the EWMA of "this context is new".
	nvAlpha = 0.1
)

// novelty is a contextual-novelty member in the spirit of ARTime's and
// HTM's: the last nvLen samples, each binned by its distance from the
// level, form a context; a context not seen in the last ~2048 samples is
// new. The statistic is an EWMA of "new", so a run of new contexts (a
// series wandering into a shape it has not taken for a while: a slow ramp,
// a change of rhythm) stands out where one odd sample does not; it is
// calibrated against its own record like every member.
//
// The contexts seen are hashed into a 2048-bit set (256 bytes). The
// sample's bin is taken against the level after it learnt the sample,
// which the features compute on a copy of the level.
//
// On NAB (standard / low FP / low FN; without: 74.59 / 68.40 / 78.46, 100
// windows, 132 false-positive rows) it gives 75.37 / 69.05 / 79.27, 101
// windows, 135 rows. The gain is mostly one window: machine_temperature's
// slow ramp before the failure (the fourth window), which the member finds
// at 1.058 where no other member reaches 0.83. In a 3×3×2 grid around the
// constants (EWMA 0.07 / 0.1 / 0.15 × a word cleared every 48 / 64 / 96
// samples × bins of 1 / 1.25 σ) 15 of 18 settings find it (standard 75.16
// – 75.37, low FP 68.71 – 69.06), 3 do not (74.40 – 74.62, 67.82 –
// 68.38). Contexts of 4 / 6 samples gave 74.95 / 74.54, a set of 1024
// bits cleared every 64 samples 74.66, binning against the level before it
// learnt the sample 74.47; counted in the window's √n (see Reset) 73.22.
// Left on where a long season is known it scores the same on NAB (75.38)
// but scores 1.13 on TestLongSeasonFindsWeek's regular week.
type novelty struct {
	Seen [nvWords]uint64
	Ctx  uint16  // the last nvLen bins, 3 bits each
	F    float32 // EWMA of "the context was new"
	Clr  uint8   // the word cleared last
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

// isNew reports whether the context has not been seen.
func (n *novelty) isNew(h uint32) bool { return n.Seen[h>>6]&(1<<(h&63)) == 0 }

// score returns the statistic for v from the state before v.
func (n *novelty) score(v float64, level *Robust, floor float64) float64 {
	nw := 0.0
	if n.isNew(nvHash(n.next(v, *level, floor))) {
		nw = 1
	}
	return float64(n.F) + nvAlpha*(nw-float64(n.F))
}

// learn adds v's context; seen is the number of samples learnt before v.
func (n *novelty) learn(v float64, level *Robust, floor float64, seen uint64) {
	ctx := n.next(v, *level, floor)
	h := nvHash(ctx)
	nw := float32(0)
	if n.isNew(h) {
		nw = 1
	}
	n.Seen[h>>6] |= 1 << (h & 63)
	n.Ctx = ctx
	n.F += float32(nvAlpha) * (nw - n.F)
	if seen%nvClearEvery == 0 {
		n.Clr = (n.Clr + 1) % nvWords
		n.Seen[n.Clr] = 0
	}
}
