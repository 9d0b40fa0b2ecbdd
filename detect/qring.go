package detect

import "math"

const (
	qringLen   = 256                 // values held
	qringLimit = math.MaxInt16 - 255 // |step count| above which the ring is requantised
	qringRoom  = 4                   // headroom factor left by a requantisation
)

// qRing is a ring of qringLen values stored as int16 steps of Scale around
// Offset: half the bytes of float32. A seasonal baseline needs a precision
// of a small fraction of the series' spread, not float32's 1e-7 of its
// magnitude; the step here is about 1e-4 of the range of the values held.
//
// A value that does not fit requantises the whole ring (O(qringLen)) to a
// step that leaves qringRoom times the current half-range of room, so
// requantisations are rare (each needs the range to grow by that factor);
// Fit, which the owner calls when it scans the ring anyway, shrinks the step
// again once an extreme has left the ring. Slots never set read as Offset.
type qRing struct {
	Q      [qringLen]int16
	Offset float64
	Scale  float32 // value per step; 0 until the first Set
}

// Get returns the value at slot i.
func (r *qRing) Get(i int) float64 { return r.Offset + float64(r.Q[i])*float64(r.Scale) }

// Set stores x at slot i.
func (r *qRing) Set(i int, x float64) {
	if r.Scale == 0 {
		r.Offset, r.Scale = x, float32(1e-9*math.Abs(x)+1e-30)
	}
	q := (x - r.Offset) / float64(r.Scale)
	if !(math.Abs(q) <= qringLimit) {
		r.requantise(x)
		q = (x - r.Offset) / float64(r.Scale)
	}
	r.Q[i] = int16(max(-qringLimit, min(math.Round(q), qringLimit)))
}

// Fit requantises the first n slots of the ring (in the caller's order,
// given by idx) to the range they hold now.
func (r *qRing) Fit(idx func(k int) int, n int) {
	if r.Scale == 0 || n == 0 {
		return
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for k := range n {
		v := r.Get(idx(k))
		lo, hi = min(lo, v), max(hi, v)
	}
	r.rescale(lo, hi)
}

// requantise makes room for x, considering all slots (the unset ones read
// as Offset, which is within the range anyway).
func (r *qRing) requantise(x float64) {
	lo, hi := x, x
	for i := range r.Q {
		v := r.Get(i)
		lo, hi = min(lo, v), max(hi, v)
	}
	r.rescale(lo, hi)
}

// rescale re-encodes every slot around the middle of [lo, hi] with a step
// that leaves qringRoom times the half-range of room.
func (r *qRing) rescale(lo, hi float64) {
	mid, half := (lo+hi)/2, (hi-lo)/2
	scale := float32(max(qringRoom*half/qringLimit, 1e-9*math.Abs(mid)+1e-30))
	off := mid
	for i := range r.Q {
		v := r.Get(i)
		r.Q[i] = int16(max(-qringLimit, min(math.Round((v-off)/float64(scale)), qringLimit)))
	}
	r.Offset, r.Scale = off, scale
}
