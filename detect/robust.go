package detect

import "math"

// huberK is where Robust clips a residual, in units of its mean absolute
// deviation S (about 3.2 standard deviations for normal data): far enough
// out that normal data is barely touched, close enough that one spike moves
// neither the location nor the scale much.
const huberK = 4

// Robust tracks an exponentially weighted, outlier-resistant location M and
// scale S of a stream:
//
//	r   = clamp(x - M, -k·S, k·S)
//	M  += a·r
//	S  += a·(|r| - S)
//
// with a = max(Alpha, 1/n), so the first samples are a plain running mean,
// and k = 4. S estimates the mean absolute deviation; Sigma converts it to a
// standard deviation (×√(π/2), exact for normal data).
type Robust struct {
	M, S  float64
	N     uint32
	Alpha float32
}

// Update adds x.
func (e *Robust) Update(x float64) {
	e.N++
	if e.N == 1 {
		e.M, e.S = x, 0
		return
	}
	a := max(float64(e.Alpha), 1/float64(e.N))
	r := x - e.M
	if e.S > 0 && e.N > 8 {
		c := huberK * e.S
		r = max(-c, min(r, c))
	}
	e.M += a * r
	e.S += a * (math.Abs(r) - e.S)
}

// UpdateCollapsed adds x, as Update does, to a stream whose scale may have
// collapsed: fallen below floor, its floor where it is used (see Z), on a
// history without spread (a counter at 0, a replica count), or decayed far
// below the residuals it had, over days of a flat value (collapsed, as the
// caller judges it from the residuals of its record window). The clip at
// k·S would let the first residuals that leave the flat value raise S by
// 3·Alpha·S a sample, thousands of samples to learn the spread again, with
// every residual meanwhile thousands of scales away. So the first residual
// beyond one scale (or the floor) raises S to the clip it sits on,
// |x - M|/k.
func (e *Robust) UpdateCollapsed(x, floor float64, collapsed bool) {
	if d := math.Abs(x - e.M); collapsed && e.N > 8 && d > max(e.Sigma(), floor) {
		e.S = max(e.S, d/huberK)
	}
	e.Update(x)
}

// Floored reports whether the scale is below floor: z-scores against it
// (see Z) measure a residual in units of the floor, not of any spread seen.
func (e *Robust) Floored(floor float64) bool { return e.Sigma() < floor }

// Sigma returns the scale as a standard deviation.
func (e *Robust) Sigma() float64 { return math.Sqrt(math.Pi/2) * e.S }

// Z returns the standardised distance of x from M, with the scale floored at
// floor so a flat stream does not divide by zero.
func (e *Robust) Z(x, floor float64) float64 {
	return (x - e.M) / max(e.Sigma(), floor)
}

// valid reports whether e could have been learnt: its level and spread
// finite, its rate not NaN or infinite. A NaN rate (foreign data
// under a right checksum) made every level NaN (max(NaN, 1/n) is NaN), and
// a signalling NaN did not even survive a decode and encode unchanged
// (encoding/binary reads a float32 through a float64, which quiets it).
func (e *Robust) valid() bool {
	return finite(e.M, e.S, float64(e.Alpha))
}
