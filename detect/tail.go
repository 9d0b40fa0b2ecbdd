package detect

import "math"

const (
	tailBins    = 28   // histogram bins over log2 z
	tailLogMin  = -6.0 // log2 z of the lower edge of bin 1; bin 0 holds everything below
	tailBinW    = 0.5  // bin width in log2 units
	tailQ       = 0.98 // quantile that anchors the score's log scale
	tailMinN    = 48   // samples before the calibration is trusted
	tailRefresh = 16   // samples between quantile recomputations
	tailZFloor  = 1.0 / 256
	tailBlocks  = 8   // blocks of the sliding-window maximum
	tailMinLog  = 0.5 // smallest ln(max/z_q) used, so a flat history does not make every wiggle a record
)

// Tail turns a non-negative statistic z into a calibrated score online.
//
// The score compares z with the largest z of roughly the last N samples
// (the Detector uses N = √n/budget for n members), on a log scale anchored
// at the q-quantile z_q (q = 0.98):
//
//	s = ½ · z/z_q                              for z ≤ z_q
//	s = ½ + ½ · ln(z/z_q) / ln(M_N/z_q)        for z > z_q
//
// where M_N is the sliding-window maximum, and ln(M_N/z_q) is floored at
// tailMinLog. So s > 1 when z beats every value of the window (and z_q by
// at least e^0.5), which for a stationary stream happens with probability
// at most 1/(N+1) per sample, whatever the distribution of z: the rate of
// scores above 1 follows the window length on quiet and noisy series alike,
// without assuming a tail shape. The floor keeps discrete or flat histories,
// where the maximum equals the quantile, from turning every uptick into a
// record; on light tails it makes the rate lower than 1/N. How far above 1
// a score goes says by how much, in log terms relative to the normal
// spread, the record is broken.
//
// M_N is kept as the maxima of tailBlocks blocks of N/tailBlocks samples
// (the window is N to N(1+1/tailBlocks) samples long), z_q is read every
// tailRefresh samples from an exponentially forgetting histogram of log2 z.
// All state is in fixed-size fields, so a Tail encodes with encoding/binary;
// what every Tail shares (the forgetting factor λ) is a constant, and the
// floor of ln(M_N/z_q) is kept in hundredths in a byte: ten Tails per series,
// so each byte here is ten per series.
type Tail struct {
	Hist      [tailBins]float32 // forgetting counts; a sample adds W
	W         float32           // weight of the next sample; grows by 1/(1-λ) per sample
	Total     float32           // sum of Hist
	N         uint32            // samples seen
	Since     uint8             // samples since Zq was recomputed, < tailRefresh
	Zq        float32           // the tailQ quantile of z
	Blocks    [tailBlocks]float32
	BlockLen  uint32  // samples per block
	InBlock   uint32  // samples in the current block
	Block     uint8   // index of the current block
	MinLog100 uint8   // floor of ln(M_N/z_q), in hundredths
	LogRange  float32 // ln(M_N/z_q) floored at the MinLog, kept up to date by Update
}

// tailForget is λ, the histogram's forgetting factor per sample: time
// constant tailSpan samples.
var tailForget = 1 / float32(tailSpan)

// newTail returns a Tail whose window is n samples and whose ln(M_N/z_q) is
// floored at minLog (in [0, 2.55], rounded to hundredths); its histogram
// forgets with time constant tailSpan samples.
func newTail(n int, minLog float64) Tail {
	t := Tail{BlockLen: uint32(max(1, (n+tailBlocks-1)/tailBlocks)), MinLog100: uint8(max(0, min(math.Round(minLog*100), 255)))}
	t.Restart()
	return t
}

// Restart forgets the calibration, keeping the window and the floor.
func (t *Tail) Restart() {
	*t = Tail{W: 1, Zq: 1, BlockLen: t.BlockLen, MinLog100: t.MinLog100}
	t.LogRange = t.minLog()
}

// minLog returns the floor of ln(M_N/z_q). float32(k)/100 is the float32
// nearest k/100, the same as float32 of the decimal constant.
func (t *Tail) minLog() float32 { return float32(t.MinLog100) / 100 }

// Ready reports whether enough samples were seen to calibrate.
func (t *Tail) Ready() bool { return t.N >= tailMinN }

// Filled reports whether the record window has filled once since the
// calibration became ready.
func (t *Tail) Filled() bool { return t.N >= tailMinN+t.BlockLen*tailBlocks }

// windowMax returns M_N.
func (t *Tail) windowMax() float64 {
	m := t.Blocks[0]
	for _, b := range t.Blocks[1:] {
		m = max(m, b)
	}
	return float64(m)
}

// windowBelow reports whether every statistic of the window was below x,
// M_N < x, stopping at the first block that was not.
func (t *Tail) windowBelow(x float32) bool {
	for _, b := range t.Blocks {
		if b >= x {
			return false
		}
	}
	return true
}

// logRange returns ln(M_N/z_q), floored at MinLog.
func (t *Tail) logRange() float64 { return float64(t.LogRange) }

// refreshRange recomputes LogRange after the maximum or z_q changed.
//
// A ratio M_N/z_q below 1 + m + m²/2, which is below e^m by at least m³/6,
// has a logarithm below the floor m by far more than math.Log's rounding,
// so LogRange is the floor without the logarithm. The floor is where most
// tails sit (on Gaussian noise the window's record is rarely e^0.5 times
// the 98th percentile), and a tail refreshes at least every tailRefresh
// samples.
func (t *Tail) refreshRange() {
	x, m := t.windowMax()/float64(t.Zq), float64(t.minLog())
	if x < 1+m+m*m/2 {
		t.LogRange = t.minLog()
		return
	}
	t.LogRange = float32(max(math.Log(x), m))
}

// Score returns the calibrated score of z against the samples seen so far
// (not including z).
func (t *Tail) Score(z float64) float64 {
	if !(z > 0) || t.N < tailMinN {
		return 0
	}
	zq := float64(t.Zq)
	if z <= zq {
		return 0.5 * z / zq
	}
	return 0.5 + 0.5*math.Log(z/zq)/t.logRange()
}

// Threshold returns the z at which Score reaches s.
func (t *Tail) Threshold(s float64) float64 {
	zq := float64(t.Zq)
	if s <= 0.5 {
		return 2 * s * zq
	}
	return zq * math.Exp((s-0.5)*2*t.logRange())
}

// Update adds z to the distribution.
func (t *Tail) Update(z float64) { t.UpdateForget(z, tailForget) }

// UpdateForget adds z to the distribution, which forgets by λ = forget
// per sample (in (0, 1); Update's is 1/tailSpan): a statistic whose
// behaviour repeats over a known time longer than tailSpan samples keeps
// that whole time in its quantile (see longSeason.tailForget).
func (t *Tail) UpdateForget(z float64, forget float32) {
	if math.IsNaN(z) || z < 0 {
		return
	}
	b := 0
	if z > 0 {
		b = max(0, min(halfLog2(z)-2*tailLogMin+1, tailBins-1))
	}
	if t.N == tailMinN {
		// Read again from the same histogram (the same z_q): a state
		// saved at this point by a version that read it only here still
		// has the placeholder.
		t.Zq = float32(max(t.quantile(tailQ), tailZFloor))
		t.refreshRange()
	}
	t.Hist[b] += t.W
	t.Total += t.W
	t.W /= 1 - forget
	if t.W > 1e20 {
		// Rescale so the weights stay finite; O(bins) once per ~46/λ samples.
		inv := 1 / t.W
		for i := range t.Hist {
			t.Hist[i] *= inv
		}
		t.Total *= inv
		t.W = 1
	}
	t.N++
	if t.N <= tailMinN {
		if t.N == tailMinN {
			// Calibrated when Ready says so, at its first score: read at
			// the next sample, the quantile was the placeholder 1 then,
			// and a statistic of 1.65 scored above 1. So scored a member
			// that starts late (the seasonal one: 4 false alarms on NAB)
			// and a group, whose calibration starts after its warm-up (a
			// quarter of new two-member groups on Gaussian noise, three
			// fifths of four-member ones, at their first score).
			t.Zq = float32(max(t.quantile(tailQ), tailZFloor))
			t.refreshRange()
		}
		// The first statistics come from scales estimated on a handful of
		// samples; a record among them would mute the series for a whole
		// window.
		return
	}
	changed := false
	if t.InBlock >= t.BlockLen {
		t.Block = (t.Block + 1) % tailBlocks
		changed = t.Blocks[t.Block] > 0
		t.Blocks[t.Block] = 0
		t.InBlock = 0
	}
	if float32(z) > t.Blocks[t.Block] {
		t.Blocks[t.Block] = float32(z)
		changed = true
	}
	t.InBlock++
	t.Since++
	if t.Since >= tailRefresh {
		t.Since = 0
		t.Zq = float32(max(t.quantile(tailQ), tailZFloor))
		changed = true
	}
	if changed {
		t.refreshRange()
	}
}

// halfLog2 returns ⌊2·log2 z⌋ for z > 0 from the float's bits: the
// exponent, plus one if the mantissa is at least √2. It is the histogram's
// bin index (bins are half a power of two wide) without a logarithm.
//
// A normal z is 1.m·2^(e-1023) with e its biased exponent, and 1.m ≥ √2
// exactly when m's bits are at least those of float64(√2): both are read off
// the bits with no call. math.Frexp, which checks for and normalises
// subnormals first (halfLog2 was 18% of Tail.Update's time in
// BenchmarkUpdate's CPU profile with it), serves the rest: subnormals, and
// ±Inf, whose bin stays what Frexp made of it.
func halfLog2(z float64) int {
	b := math.Float64bits(z)
	e := int(b>>52) & 0x7ff
	if e == 0 || e == 0x7ff {
		return halfLog2Frexp(z)
	}
	h := 2 * (e - 1023)
	if b&mantMask >= sqrt2Mant {
		h++
	}
	return h
}

// halfLog2Frexp is halfLog2 for any z > 0, kept apart so that halfLog2's
// common path inlines into Tail.Update.
func halfLog2Frexp(z float64) int {
	frac, exp := math.Frexp(z) // z = frac·2^exp, frac in [0.5, 1)
	h := 2 * (exp - 1)
	if frac >= math.Sqrt2/2 {
		h++
	}
	return h
}

const (
	mantMask = 1<<52 - 1
	// sqrt2Mant is the mantissa of float64(√2): frac ≥ √2/2 in Frexp's
	// terms, the same float halved.
	sqrt2Mant = 0x6a09e667f3bcd
)

// quantile reads the q-quantile of z from the histogram, interpolating
// geometrically within a bin.
func (t *Tail) quantile(q float64) float64 {
	target := float64(t.Total) * q
	var cum float64
	for i, h := range t.Hist {
		next := cum + float64(h)
		if next >= target && h > 0 {
			if i == 0 {
				return math.Exp2(tailLogMin)
			}
			frac := (target - cum) / float64(h)
			return math.Exp2(tailLogMin + (float64(i-1)+frac)*tailBinW)
		}
		cum = next
	}
	return math.Exp2(tailLogMin + float64(tailBins-1)*tailBinW)
}
