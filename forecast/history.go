package forecast

import "math"

// history is a Model's ring of its latest values at 4 bytes a value, not
// 8: a Model lives as long as its series, and its History+RefitEvery
// float64s were 4 864 B of the ~15.7 KB each of the pipeline's 10 000
// forecast series held (TestModelHeldBytes).
//
// Each slot holds a float32: either the value itself (its bit in abs set)
// or its difference from the value stored before it, whichever is nearer
// the value. The value stored is the one decoded, x_i = float32 slot or
// x_{i−1} + float32 slot, and everything the Model fits and updates on is
// that decoded value, so a model restored from a snapshot sees exactly
// what the original saw. A difference is encoded against the stored value
// before it, not the true one (a closed loop), so the rounding errors do
// not add up: every stored value is within half a float32 ulp of its
// difference (or of itself) of the true one. Differences keep the
// precision of the changes where a value alone would not: a timestamp
// gauge at 1.7e9 rising 15 a step is stored exactly as differences, and
// float32 values alone would have made it a staircase of 128. Integers
// below 2^24 (most counts, replica numbers, M4's values) are stored as
// themselves, exactly, and the first value pushed is held exactly (in
// base) until it leaves the ring.
//
// A stored value keeps the sign of the true one, and is 0 only where the
// true one is (or is below float32's least positive value, 1.4e-45): the
// Model keeps non-negative forecasts for series with no negative value,
// and works on the log scale of positive ones. A difference beyond
// float32's range (3.4e38) is stored as its largest value, and the next
// samples' differences close the gap.
type history struct {
	d     []float32
	abs   []uint64 // bit i: d[i] is the value itself, not a difference
	base  float64  // the oldest value held, as stored
	last  float64  // the newest value held, as stored
	head  int      // index of the next write
	count int      // values held
}

func newHistory(n int) history {
	return history{d: make([]float32, n), abs: make([]uint64, (n+63)/64)}
}

// push stores v (finite), dropping the oldest value if the ring is full,
// and returns the value as stored.
func (h *history) push(v float64) float64 {
	x, d, isAbs := absolute(v)
	if h.count == 0 {
		// The first value is the base, which holds it exactly: a constant
		// series stays one.
		x = v
	} else if x != v {
		dd := float32(clampFloat32(v - h.last))
		if xd := h.last + float64(dd); math.Abs(xd-v) < math.Abs(x-v) && signOf(xd) == signOf(v) {
			x, d, isAbs = xd, dd, false
		}
	}
	n := len(h.d)
	if h.count == n {
		// The oldest goes: the next one becomes the base.
		next := h.head + 1
		if next == n {
			next = 0
		}
		h.base = h.decode(next, h.base)
	}
	h.d[h.head] = d
	if isAbs {
		h.abs[h.head/64] |= 1 << (h.head % 64)
	} else {
		h.abs[h.head/64] &^= 1 << (h.head % 64)
	}
	if h.count == 0 {
		h.base = x
	}
	h.last = x
	if h.head++; h.head == n {
		h.head = 0
	}
	h.count = min(h.count+1, n)
	return x
}

// absolute returns v as a float32 of its own, clamped to float32's range.
func absolute(v float64) (x float64, d float32, isAbs bool) {
	d = float32(clampFloat32(v))
	return float64(d), d, true
}

// decode returns the value of slot i given the value stored before it.
func (h *history) decode(i int, prev float64) float64 {
	if h.abs[i/64]&(1<<(i%64)) != 0 {
		return float64(h.d[i])
	}
	return prev + float64(h.d[i])
}

// window copies the last k values held, oldest first, into dst[:0].
func (h *history) window(dst []float64, k int) []float64 {
	dst = dst[:0]
	n := len(h.d)
	i := h.head - h.count
	if i < 0 {
		i += n
	}
	x := h.base
	for j := range h.count {
		if j > 0 {
			x = h.decode(i, x)
		}
		if j >= h.count-k {
			dst = append(dst, x)
		}
		if i++; i == n {
			i = 0
		}
	}
	return dst
}

func clampFloat32(v float64) float64 {
	return min(max(v, -math.MaxFloat32), math.MaxFloat32)
}

// signOf is −1, 0 or 1 as v is negative, zero or positive.
func signOf(v float64) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
