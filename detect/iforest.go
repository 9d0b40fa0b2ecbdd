package detect

import "math"

const (
	ifDims      = 5   // features per vector
	ifReservoir = 40  // vectors kept
	ifTrees     = 3   // trees in the forest
	ifDepth     = 5   // maximum depth, log2 of the subsample as in the paper
	ifSample    = 32  // vectors each tree is grown from
	ifRefit     = 256 // samples between refits
	ifQuant     = 16  // quantisation steps per feature unit
	ifInner     = 1<<ifDepth - 1
	ifNodes     = 1<<(ifDepth+1) - 1
)

// ifTree is one isolation tree in heap layout: node i has children 2i+1 and
// 2i+2. Inner nodes split on Feat (−1: this node is a leaf) at Split; Size
// holds how many training vectors reached each leaf.
type ifTree struct {
	Feat  [ifInner]int8
	Split [ifInner]int8
	Size  [ifNodes]uint8
}

// Forest is an Isolation Forest (Liu, Ting and Zhou, ICDM 2008) over
// quantised feature vectors, refit every ifRefit samples on a bounded,
// recency-biased reservoir. Features are clipped to ±8 and stored as int8
// in steps of 1/16, so the whole model fits in about 0.6 KiB (three trees
// and a 40-vector reservoir: sized so the per-series state stays within 4
// KiB beside the long seasonal ring and the novelty member's seen-set; it
// was five trees before the novelty member, six over 64 vectors before the
// long ring). The statistic is
//
//	z = c(ψ) / E[h(x)]
//
// where h is the path length (depth plus c(leaf size)), ψ = 32 the
// subsample size and c(n) = 2H(n-1) - 2(n-1)/n the mean path length of an
// unsuccessful search in a binary search tree: about 1 for ordinary
// vectors, larger for vectors that isolate early.
type Forest struct {
	Res    [ifReservoir][ifDims]int8
	NRes   uint16
	Since  uint16
	Fitted bool
	Trees  [ifTrees]ifTree
	RNG    uint64
}

func quantise(f float64) int8 {
	q := math.Round(f * ifQuant)
	return int8(max(-127, min(q, 127)))
}

// next returns a pseudo-random uint64 (xorshift64*).
func (f *Forest) next() uint64 {
	x := f.RNG
	if x == 0 {
		x = 0x9E3779B97F4A7C15
	}
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	f.RNG = x
	return x * 0x2545F4914F6CDD1D
}

// Score returns z for the feature vector v, or 0 before the first fit.
func (f *Forest) Score(v *[ifDims]float64) float64 {
	if !f.Fitted {
		return 0
	}
	var q [ifDims]int8
	for i, x := range v {
		q[i] = quantise(x)
	}
	var sum float64
	for t := range f.Trees {
		tr := &f.Trees[t]
		i, d := 0, 0
		for i < ifInner && tr.Feat[i] >= 0 {
			if q[tr.Feat[i]] < tr.Split[i] {
				i = 2*i + 1
			} else {
				i = 2*i + 2
			}
			d++
		}
		sum += float64(d) + avgPath(int(tr.Size[i]))
	}
	return avgPath(ifSample) / (sum / ifTrees)
}

// Update adds v to the reservoir and refits when due.
func (f *Forest) Update(v *[ifDims]float64) {
	var slot int
	switch {
	case f.NRes < ifReservoir:
		slot = int(f.NRes)
		f.NRes++
	case f.next()%4 == 0:
		// Replace a random vector with probability 1/4: the reservoir then
		// reflects roughly the last 4·40 samples, with an exponential tail.
		slot = int(f.next() % ifReservoir)
	default:
		slot = -1
	}
	if slot >= 0 {
		for i, x := range v {
			f.Res[slot][i] = quantise(x)
		}
	}
	f.Since++
	if (f.Since >= ifRefit || !f.Fitted) && f.NRes >= ifSample {
		f.fit()
		f.Since = 0
	}
}

// fit grows every tree on a fresh subsample of the reservoir.
func (f *Forest) fit() {
	var idx [ifReservoir]uint8
	var sub [ifSample]uint8
	for i := range idx {
		idx[i] = uint8(i)
	}
	n := int(f.NRes)
	for t := range f.Trees {
		// Partial Fisher–Yates shuffle: the first ifSample entries are
		// a uniform subsample.
		for i := range ifSample {
			j := i + int(f.next()%uint64(n-i))
			idx[i], idx[j] = idx[j], idx[i]
		}
		copy(sub[:], idx[:ifSample])
		tr := &f.Trees[t]
		*tr = ifTree{}
		f.grow(tr, 0, 0, sub[:])
	}
	f.Fitted = true
}

func (f *Forest) grow(tr *ifTree, node, depth int, pts []uint8) {
	if node < ifInner {
		tr.Feat[node] = -1
	}
	if depth == ifDepth || len(pts) <= 1 {
		tr.Size[node] = uint8(len(pts))
		return
	}
	feat := int(f.next() % ifDims)
	lo, hi := int8(127), int8(-128)
	for _, p := range pts {
		v := f.Res[p][feat]
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo == hi {
		tr.Size[node] = uint8(len(pts))
		return
	}
	// Split uniformly in (lo, hi]: x < split goes left.
	split := int8(int(lo) + 1 + int(f.next()%uint64(int(hi)-int(lo))))
	tr.Feat[node] = int8(feat)
	tr.Split[node] = split
	l := 0
	for i, p := range pts {
		if f.Res[p][feat] < split {
			pts[l], pts[i] = pts[i], pts[l]
			l++
		}
	}
	f.grow(tr, 2*node+1, depth+1, pts[:l])
	f.grow(tr, 2*node+2, depth+1, pts[l:])
}

// avgPath is c(n), the mean path length of an unsuccessful binary search
// tree search among n points.
func avgPath(n int) float64 {
	if n <= 1 {
		return 0
	}
	if n == 2 {
		return 1
	}
	h := math.Log(float64(n-1)) + 0.5772156649
	return 2*h - 2*float64(n-1)/float64(n)
}
