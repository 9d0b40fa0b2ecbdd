package detect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// MaxGroupMembers bounds the members of a Group: a pod's cpu, memory,
// errors and latency are four; the covariance is k² and its solve k³.
const MaxGroupMembers = 8

const (
	// groupLevelSpan is the time constant, in samples, of each member's
	// level and scale. Shorter than a Detector's (levelSpan): a member's
	// deviation is measured from its level alone, with no seasonal
	// baseline, so the level follows a daily cycle's slow part.
	groupLevelSpan = 256
	// groupCovSpan is the time constant of the deviations' covariance:
	// long, so one incident does not teach the group that its members
	// move apart.
	groupCovSpan = 1024
	// groupRidge is added to the covariance's diagonal: members that
	// always moved together would otherwise make it singular, and a
	// deviation across their line infinitely unlikely.
	groupRidge = 0.01
	// groupSettle is how many samples the levels and scales learn before
	// the covariance does: deviations from a level of a few samples, or
	// against a scale of none (clipped at 8), would be a large share of
	// its first hundreds of samples.
	groupSettle = 16
	groupPairs  = MaxGroupMembers * (MaxGroupMembers + 1) / 2
	// groupZMax bounds a scored deviation, in scales.
	groupZMax = 1e6
)

// Group scores vectors of related values jointly: the cpu, memory, errors
// and latency of one pod, say. Each member is standardised against its
// own robust level and scale, and the vector of deviations is scored by
// its Mahalanobis distance under their learnt covariance: members that
// usually move together (cpu and latency with traffic) may do so without
// an alarm, while one moving without the others, or all of them further
// than seen, is anomalous. The distance is calibrated like a Detector's
// members (a Tail over a window of 1/FalseAlarmRate samples), so the score
// has the same meaning: above 1 anomalous, on normal data at most about the
// options' false-alarm rate (TestGroupFalseAlarms).
//
// A Group has a fixed size whatever its members: no allocation after New.
type Group struct {
	opts Options
	st   groupState
	ms   memberStats
	// Scratch for the solve, not saved.
	chol [MaxGroupMembers * MaxGroupMembers]float64
	sol  [MaxGroupMembers]float64
}

// groupState is what a Group has learnt: fixed-size, so it encodes with
// encoding/binary.
type groupState struct {
	K      uint8
	Key    uint64 // what the members are, set by the caller
	Seen   uint64
	LastTs int64
	Level  [MaxGroupMembers]Robust
	Cov    [groupPairs]float64 // lower triangle, row by row, of E[z zᵀ]
	Tail   Tail
	// Refractory period, as a Detector's: samples left and the score
	// that opened it.
	RefLeft uint32
	RefPeak float32
}

// memberStats is what a Group learns of each member besides its level and
// scale (groupState's; encoded after it, since version 2).
//
// A mostly-0 member (a pod's errors) breaks the Mahalanobis distance's
// assumption of members spread about their level: its robust scale
// collapses toward 0 (the clip at huberK scales keeps the rare non-zero
// values from raising it), so each non-zero value was 10⁶ scales out
// (groupZMax), an error and a burst of ten alike, and scored so against a
// calibration that learns deviations clipped at groupPeakZ (so that one
// incident is no record that mutes every member for a window): the group
// alarmed at every error, on 1-8.3% of its evaluations for errors in 1 to
// 10% of them, 1.3% for one every 6 hours, against 0.1-0.4% for the member's
// own Detector (TestGroupSparseMember). Two things mend it:
//   - Spread, the mean absolute deviation, unclipped while the scale is
//     collapsed (clipped at groupSpreadClip scales otherwise), floors the
//     scale (see scale): the errors' share of the values, where a member
//     with a spread of its own has it near its scale, so the floor at
//     half of it does not bind;
//   - each member's recurring peaks (see compression): an error like the
//     last ones is ordinary for its member, one far larger is not.
type memberStats struct {
	Spread [MaxGroupMembers]float64
	// Peak is each member's largest |deviation| (in the direction
	// scored) in each block of the calibration's window (tailBlocks
	// blocks of its BlockLen samples, as the Tail keeps its record),
	// Typical the largest that two blocks apart in time reach, the
	// current block left out (see recurring), recomputed as a block
	// opens: what the member reaches again and again, not once.
	Peak    [MaxGroupMembers][tailBlocks]float32
	Typical [MaxGroupMembers]float32
	InBlock uint32
	Block   uint8
}

const (
	// groupPeakZ is the deviation, in scales, at which the calibration
	// and the covariance clip each member's, and to which a member's
	// recurring peaks are compressed (see compression). A member with
	// light tails reaches it in no two blocks of a window (Gaussian
	// blocks of 84 samples peak near 2.7 scales).
	groupPeakZ = 8
	// groupSpreadFloor is the scale's floor, as a share of the spread's
	// standard deviation (see memberStats).
	groupSpreadFloor = 0.5
	// groupSpreadClip is where a member whose scale has not collapsed
	// clips the residual its spread learns, in its scales. Unclipped,
	// one value far out (a member's `or` default of 0 for one
	// evaluation, 10⁴ of its scales below its level) raised the spread
	// by that/groupLevelSpan, and the floor with it: after 10⁶ scales a
	// 12σ deviation of the member scored 0.08-0.31 for 1000 evaluations,
	// against 1.17-1.95 (TestGroupSpreadOneValue). Clipped here,
	// one value adds at most a quarter of a scale, and the floor
	// (groupSpreadFloor of it) stays below the scale; a collapsed
	// member, the one the floor is for, learns its values whole
	// (TestGroupSparseMember's figures are unchanged).
	groupSpreadClip = 64
)

// scale returns the floor of member i's scale: its Robust's own (see
// scaleFloor), raised to groupSpreadFloor of its spread.
func (g *Group) scale(i int) float64 {
	return max(scaleFloor(g.st.Level[i].M), groupSpreadFloor*math.Sqrt(math.Pi/2)*g.ms.Spread[i])
}

// compression returns the factor member i's deviations are scored at: 1,
// unless its peaks recur beyond groupPeakZ (in two blocks of the window
// apart in time), when its typical peak is scaled to groupPeakZ. One
// incident, peaking in one block or two consecutive ones (across their
// edge), compresses nothing.
func (g *Group) compression(i int) float64 {
	if t := float64(g.ms.Typical[i]); t > groupPeakZ {
		return groupPeakZ / t
	}
	return 1
}

// recurring returns the largest peak that two blocks apart in time reach
// (the smaller of their two peaks): the ring's neighbours are
// consecutive blocks, except around the current one, which is 0 as a
// block opens. One incident across two blocks' edge peaks in both, and
// the second largest of all blocks made its member's compression last the
// rest of the window: after 10 samples at 20σ so placed, a 12σ deviation
// of the member 300 samples later scored 0.72-0.74 against 1.07-1.13
// within a block (TestGroupIncidentAcrossBlocks).
func recurring(peak *[tailBlocks]float32) float32 {
	var t float32
	for a := range tailBlocks {
		for b := a + 2; b < tailBlocks; b++ {
			if a == 0 && b == tailBlocks-1 {
				continue // neighbours across the ring's end
			}
			t = max(t, min(peak[a], peak[b]))
		}
	}
	return t
}

// learnPeaks adds the members' |deviations| z, in the direction scored
// (0 against it), to their blocks' peaks.
func (g *Group) learnPeaks(z *[MaxGroupMembers]float64) {
	m, k := &g.ms, int(g.st.K)
	if m.InBlock >= g.st.Tail.BlockLen {
		m.Block = (m.Block + 1) % tailBlocks
		m.InBlock = 0
		for i := range k {
			m.Peak[i][m.Block] = 0
			m.Typical[i] = recurring(&m.Peak[i])
		}
	}
	for i := range k {
		m.Peak[i][m.Block] = max(m.Peak[i][m.Block], float32(math.Abs(z[i])))
	}
	m.InBlock++
}

// GroupResult is the outcome of one vector.
type GroupResult struct {
	// Score, Undamped, Ready and Ongoing mean what they do in Result.
	Score, Undamped float64
	Ready, Ongoing  bool
	// Member is the index of the member that contributed most to the
	// distance, -1 if none (not scored).
	Member int
}

// NewGroup returns a Group of k members, 2 to MaxGroupMembers. key names
// what the members are (a hash of their definitions): Restore refuses a
// state learnt under another, so members reordered or replaced do not
// inherit what others learnt. Of the options, Direction (applied to each
// member's deviation), WarmupSamples, FalseAlarmRate and
// RefractorySamples are used.
func NewGroup(k int, key uint64, opts Options) (*Group, error) {
	if k < 2 || k > MaxGroupMembers {
		return nil, fmt.Errorf("group of %d members: want 2 to %d", k, MaxGroupMembers)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	g := &Group{opts: opts}
	g.st.K, g.st.Key = uint8(k), key
	for i := range g.st.Level {
		g.st.Level[i].Alpha = 1.0 / groupLevelSpan
	}
	g.st.Tail = newTail(int(math.Ceil(1/opts.FalseAlarmRate)), tailMinLog)
	return g, nil
}

// SetOptions changes the options to o, which must have the false-alarm
// rate the Group learnt with: its calibration window depends on it.
func (g *Group) SetOptions(o Options) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("group options: %w", err)
	}
	if o.FalseAlarmRate != g.opts.FalseAlarmRate {
		return fmt.Errorf("group learnt with false-alarm rate %g, want %g", g.opts.FalseAlarmRate, o.FalseAlarmRate)
	}
	g.opts = o
	return nil
}

// LastTimestamp returns the time of the latest vector learnt (Unix ms), 0
// if none.
func (g *Group) LastTimestamp() int64 { return g.st.LastTs }

// Len returns the number of members.
func (g *Group) Len() int { return int(g.st.K) }

// Ready reports whether the warm-up is over.
func (g *Group) Ready() bool {
	return g.st.Seen > uint64(g.opts.WarmupSamples) && g.st.Tail.Ready()
}

// Update scores the vector x (one value per member, in a fixed order) at
// tsMillis against what was seen before it, then learns from it. A vector
// of the wrong length, with a NaN, ±Inf or a value beyond float32's range
// (see NoValue), or not after the previous one is skipped (score 0, state
// untouched). O(k³) for k members; no allocation.
func (g *Group) Update(tsMillis int64, x []float64) GroupResult {
	// A skipped vector leaves the group as ready as it was: a group that
	// read as warming again at a member's sentinel moved
	// omen_models_warming by one each way, down both times.
	res := GroupResult{Member: -1, Ready: g.Ready()}
	st := &g.st
	k := int(st.K)
	if len(x) != k || (st.Seen > 0 && tsMillis <= st.LastTs) {
		return res
	}
	for _, v := range x {
		if !Measured(v) {
			return res // a sentinel beyond float32's range made a flat member's level 7e305
		}
	}
	// Each member's deviation from its level, in its scales (raw, in the
	// direction scored, as its peaks learn it; then compressed, see
	// compression): zs as scored, in the direction scored (with "up", a
	// member below its level counts as at it) and not clipped, so that
	// one member far out scores however many members the group has
	// (clipped at 8, one member alone could not reach a score of 1 in a
	// group of 8); the
	// same clipped at groupPeakZ (zsc) as the calibration learns it, and
	// zc, both directions, as the covariance learns it: one incident
	// swamps neither.
	var raw, zs, zsc, zc, floor [MaxGroupMembers]float64
	clipped := false
	for i := range k {
		var z float64
		if st.Level[i].N > 0 {
			// Bounded so that the distance stays finite against a
			// scale at its floor.
			floor[i] = g.scale(i)
			z = max(-groupZMax, min(st.Level[i].Z(x[i], floor[i]), groupZMax))
		}
		unscored := g.opts.Direction == Up && z < 0 || g.opts.Direction == Down && z > 0
		if !unscored {
			// The peaks are learnt in the direction scored: with
			// "up", a member's recurring drops (memory at each
			// restart) compressed its rises: a 12σ rise scored
			// 0.67 beside drops of 60σ every 200 evaluations, 0.36
			// beside drops of 100σ (1.96 uncompressed;
			// TestGroupPeaksDirected).
			raw[i] = z
		}
		z *= g.compression(i)
		zc[i] = clip8(z)
		if unscored {
			z = 0
		}
		zs[i], zsc[i] = z, clip8(z)
		clipped = clipped || zsc[i] != z
	}
	dist, driver := g.distance(&zs)
	ready := g.Ready()
	var score float64
	if ready {
		score = st.Tail.Score(dist)
	}
	// Learn, the sample included, after scoring it. The calibration
	// starts after the warm-up: the distances before it are against a
	// covariance of a few samples, and one of them as the window's record
	// would hold every score down until it left the window. It learns the
	// directed distance, as scored: with "up", members that move in
	// opposite ways (free and used memory) make distances that the
	// undirected ones never show (5 times the false-alarm rate).
	if st.Seen >= uint64(g.opts.WarmupSamples) {
		cal := dist
		if clipped {
			cal, _ = g.distance(&zsc)
		}
		st.Tail.Update(cal)
		g.learnPeaks(&raw)
	}
	if st.Seen >= groupSettle {
		a := max(1.0/groupCovSpan, 1/float64(st.Seen-groupSettle+1))
		p := 0
		for i := range k {
			for j := 0; j <= i; j++ {
				st.Cov[p] += a * (zc[i]*zc[j] - st.Cov[p])
				p++
			}
		}
	}
	for i := range k {
		lv := &st.Level[i]
		if lv.N > 0 {
			a := max(1.0/groupLevelSpan, 1/float64(lv.N))
			r := math.Abs(x[i] - lv.M)
			if s := lv.Sigma(); s > floor[i] {
				// A member with a spread of its own learns its
				// spread's residual clipped (see
				// groupSpreadClip): only one whose scale
				// collapsed needs its rare values learnt whole.
				r = min(r, groupSpreadClip*s)
			}
			g.ms.Spread[i] += a * (r - g.ms.Spread[i])
		}
		lv.Update(x[i])
	}
	st.Seen++
	st.LastTs = tsMillis
	if !ready {
		return res
	}
	res.Ready, res.Undamped, res.Member = true, score, driver
	// Refractory period, as in Detector.update: one event, one alert.
	res.Score, res.Ongoing = refract(&st.RefLeft, &st.RefPeak, score, score, driver >= 0, g.opts.RefractorySamples)
	return res
}

// distance returns √(zᵀ(C+rI)⁻¹z), C the learnt covariance, and the member
// with the largest share z_i·((C+rI)⁻¹z)_i of it (shares sum to the
// squared distance). Cholesky factorisation in place, k ≤ 8.
func (g *Group) distance(z *[MaxGroupMembers]float64) (float64, int) {
	k := int(g.st.K)
	L := &g.chol
	p := 0
	for i := range k {
		for j := 0; j <= i; j++ {
			c := g.st.Cov[p]
			if i == j {
				// Until the covariance learns (see groupSettle), the
				// identity stands in.
				c = max(c, 0) + groupRidge
				if g.st.Seen <= groupSettle {
					c = 1 + groupRidge
				}
			}
			L[i*MaxGroupMembers+j] = c
			p++
		}
	}
	for j := range k {
		s := L[j*MaxGroupMembers+j]
		for m := range j {
			s -= L[j*MaxGroupMembers+m] * L[j*MaxGroupMembers+m]
		}
		// The ridge keeps the matrix positive definite; rounding on a
		// near-singular one could still reach 0.
		s = math.Sqrt(max(s, groupRidge*1e-3))
		L[j*MaxGroupMembers+j] = s
		for i := j + 1; i < k; i++ {
			v := L[i*MaxGroupMembers+j]
			for m := range j {
				v -= L[i*MaxGroupMembers+m] * L[j*MaxGroupMembers+m]
			}
			L[i*MaxGroupMembers+j] = v / s
		}
	}
	// Solve L y = z (y's squared norm is the squared distance), then
	// Lᵀ w = y for the shares.
	y := &g.sol
	d2 := 0.0
	for i := range k {
		v := z[i]
		for m := range i {
			v -= L[i*MaxGroupMembers+m] * y[m]
		}
		y[i] = v / L[i*MaxGroupMembers+i]
		d2 += y[i] * y[i]
	}
	for i := k - 1; i >= 0; i-- {
		v := y[i]
		for m := i + 1; m < k; m++ {
			v -= L[m*MaxGroupMembers+i] * y[m]
		}
		y[i] = v / L[i*MaxGroupMembers+i]
	}
	driver, best := -1, 0.0
	for i := range k {
		if c := z[i] * y[i]; c > best {
			driver, best = i, c
		}
	}
	return math.Sqrt(d2), driver
}

const groupMagic = "omgr"

// groupVersion is the version of the Group encoding: 2 added the member
// stats. A version 1 state is refused, and its group warms from the TSDB's
// history (the pipeline's path for a state it cannot take): taken without
// peaks, a group with a mostly-0 member alarmed at every error again until
// its peaks recurred in blocks apart (live, 391 of 9 559 scores above 1 in
// the first 8 minutes after an upgrade, 4.1%, against 17 of 9 657 for a
// group warmed from history; 2-3 blocks, up to two hours at a 30 s interval).
const groupVersion = 2

// AppendBinary appends the Group's encoding to b:
//
//	"omgr" | version uint16 | options | state | member stats | [later fields] | CRC-32 (IEEE) of all before it
//
// A release that adds a field keeps the version and puts the field at the
// end, ahead of the checksum: the release before skips it (see Restore), as
// a Detector's snapshot does (see snapshotVersion).
func (g *Group) AppendBinary(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, groupMagic...)
	b = binary.LittleEndian.AppendUint16(b, groupVersion)
	w := toWire(g.opts)
	var err error
	for _, v := range []any{&w, &g.st, &g.ms} {
		if b, err = binary.Append(b, binary.LittleEndian, v); err != nil {
			return nil, fmt.Errorf("encode group: %w", err)
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:])), nil
}

// isGroup reports whether data is a Group's encoding (of any version), as
// opposed to a Detector's.
func isGroup(data []byte) bool {
	return len(data) >= len(groupMagic) && string(data[:len(groupMagic)]) == groupMagic
}

// Restore replaces the Group's state with data's, which must be of the
// same number of members and learnt with the same false-alarm rate; it
// rejects another version, a short state, a bad checksum or invalid state
// and leaves the Group as it was. Fields of a later release after the
// member stats are skipped.
func (g *Group) Restore(data []byte) error {
	var w wireOptions
	var st groupState
	var ms memberStats
	n := len(groupMagic) + 2 + binary.Size(w) + binary.Size(st) + binary.Size(ms) + 4
	switch {
	case len(data) < len(groupMagic)+2 || !isGroup(data):
		return errors.New("group state: bad magic")
	case binary.LittleEndian.Uint16(data[4:]) != groupVersion:
		return fmt.Errorf("group state: version %d, want %d", binary.LittleEndian.Uint16(data[4:]), groupVersion)
	case len(data) < n: // a later release's fields, past n-4, are skipped
		return fmt.Errorf("group state: %d bytes, want %d", len(data), n)
	case crc32.ChecksumIEEE(data[:len(data)-4]) != binary.LittleEndian.Uint32(data[len(data)-4:]):
		return errors.New("group state: bad checksum")
	}
	off := len(groupMagic) + 2
	for _, v := range []any{&w, &st, &ms} {
		k, err := binary.Decode(data[off:], binary.LittleEndian, v)
		if err != nil {
			return fmt.Errorf("group state: %w", err)
		}
		off += k
	}
	if o := fromWire(w); o.FalseAlarmRate != g.opts.FalseAlarmRate {
		return fmt.Errorf("group state: learnt with false-alarm rate %g, want %g", o.FalseAlarmRate, g.opts.FalseAlarmRate)
	}
	if st.K != g.st.K {
		return fmt.Errorf("group state: %d members, want %d", st.K, g.st.K)
	}
	if st.Key != g.st.Key {
		return errors.New("group state: learnt for other members")
	}
	// RefPeak: a score above 1 refract kept, or 0; a NaN (a float32
	// signalling NaN, quieted by the next encoding) none could be.
	if !finite(st.Cov[:]...) || !st.covValid() || !tailsValid([]Tail{st.Tail}) || !ms.valid() || !(st.RefPeak >= 0) {
		return errors.New("group state: invalid values")
	}
	for _, r := range st.Level {
		if !r.valid() {
			return errors.New("group state: invalid values")
		}
	}
	g.st, g.ms = st, ms
	return nil
}

// covLimit bounds the covariance's entries: averages of products of
// deviations clipped at ±8 (see clip8), with room for rounding.
const covLimit = 64 * (1 + 1e-9)

// covValid reports whether st's covariance is one Update could have
// learnt: its entries within ±covLimit, its diagonal not below 0 by more
// than rounding. A damaged one (-2.7e134 on the diagonal, under a checksum
// made right) overflowed the Cholesky factor, and every distance, and
// score, was NaN.
func (st *groupState) covValid() bool {
	p := 0
	for i := range int(st.K) {
		for j := 0; j <= i; j++ {
			c := st.Cov[p]
			if !(math.Abs(c) <= covLimit) || i == j && c < -1e-9 {
				return false
			}
			p++
		}
	}
	return true
}

// valid reports whether the stats are what Update could have made: finite
// and non-negative, the block in range.
func (m *memberStats) valid() bool {
	if int(m.Block) >= tailBlocks {
		return false
	}
	for i := range m.Spread {
		if !(m.Spread[i] >= 0) || math.IsInf(m.Spread[i], 0) || !(m.Typical[i] >= 0) || math.IsInf(float64(m.Typical[i]), 0) {
			return false
		}
		for _, v := range m.Peak[i] {
			if !(v >= 0) || math.IsInf(float64(v), 0) {
				return false
			}
		}
	}
	return true
}
