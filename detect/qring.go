package detect

import "math"

const (
	qringLen   = 256              // values held
	qringLimit = math.MaxInt8 - 1 // |step count| above which the ring is requantised
	// qringRoom is the headroom factor a requantisation leaves: the
	// current half-range fills 1/qringRoom of the steps either side. On
	// NAB (standard / low FP / low FN, false-positive rows) with int8
	// steps, room 4 / 3 / 2 / 1.5 / 1.25 gave 74.50 / 75.20 / 75.20 /
	// 75.05 / 75.03 standard (75.20 / 68.87 / 79.15, 135 rows at 2;
	// int16 steps at room 4: 75.16 / 68.78 / 79.13, 136): more room is
	// coarser steps, less is more requantisations, each rounding every
	// slot again.
	qringRoom = 2
)

// qRing is a ring of qringLen values stored as int8 steps of Scale around
// Offset: a quarter of the bytes of float32, and 256 bytes less per ring
// than the int16 steps of snapshot versions up to 12 (see qRing16), two
// rings a series. A seasonal baseline needs a precision of a small
// fraction of the series' spread, not float32's 1e-7 of its magnitude:
// the step here is 1/126 of the range of the values held after a
// requantisation, so a value is held within 0.4% of that range (1/252), a
// tenth of a noise deviation on a daily season whose swing is 25 of them.
//
// A value that does not fit requantises the whole ring (O(qringLen)) to a
// step that leaves qringRoom times the current half-range of room, so
// requantisations are rare (each needs the range to grow by that factor);
// Fit, which the owner calls when it scans the ring anyway, shrinks the step
// again once an extreme has left the ring. Slots never set read as Offset.
type qRing struct {
	Q      [qringLen]int8
	Offset float64
	Scale  float32 // value per step; 0 until the first Set
	// Head is the owner's next slot written, Count how many it holds:
	// here rather than in the owner, they fill the 4 bytes of padding
	// after Scale.
	Head, Count uint16
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
	r.Q[i] = toStep(q)
}

// toStep rounds q, a value in steps from the offset, to a slot's step.
func toStep(q float64) int8 { return int8(max(-qringLimit, min(math.Round(q), qringLimit))) }

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
	r.rescale(lo, hi, r.Get)
}

// requantise makes room for x, considering all slots (the unset ones read
// as Offset, which is within the range anyway).
func (r *qRing) requantise(x float64) {
	lo, hi := x, x
	for i := range r.Q {
		v := r.Get(i)
		lo, hi = min(lo, v), max(hi, v)
	}
	r.rescale(lo, hi, r.Get)
}

// rescale re-encodes every slot i, whose value is get(i), around the
// middle of [lo, hi] with a step that leaves qringRoom times the
// half-range of room.
func (r *qRing) rescale(lo, hi float64, get func(i int) float64) {
	mid, half := (lo+hi)/2, (hi-lo)/2
	scale := float32(max(qringRoom*half/qringLimit, 1e-9*math.Abs(mid)+1e-30))
	for i := range r.Q {
		r.Q[i] = toStep((get(i) - mid) / float64(scale))
	}
	r.Offset, r.Scale = mid, scale
}

// qRing16 is qRing as snapshot versions up to 12 kept it, with int16
// steps (and room 4 within 32 512 steps).
type qRing16 struct {
	Q      [qringLen]int16
	Offset float64
	Scale  float32
}

// get returns the value at slot i.
func (r *qRing16) get(i int) float64 { return r.Offset + float64(r.Q[i])*float64(r.Scale) }

// current returns the ring requantised to int8 steps over the range of
// all its slots; one never set stays so (Scale 0).
func (r *qRing16) current() qRing {
	if r.Scale == 0 {
		return qRing{Offset: r.Offset}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range r.Q {
		v := r.get(i)
		lo, hi = min(lo, v), max(hi, v)
	}
	var q qRing
	q.rescale(lo, hi, r.get)
	return q
}
