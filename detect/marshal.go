package detect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// snapshotMagic and snapshotVersion head every snapshot. The version changes
// whenever the layout or meaning of a field already there changes; a
// snapshot of a version not read is rejected rather than misread, and the
// series warms up again. A field added keeps the version: it goes at the
// end, after the extra state and any field added before it, ahead of the
// checksum (which covers it too), whichever part of the state it belongs
// to in memory. The release before reads the fields it knows and skips
// the rest, so a rollback by one release keeps every series' state; a
// release reads a shorter state of the release before with the added
// field's starting value.
const (
	snapshotMagic   = "omdt"
	snapshotVersion = 13
	// int16Version is the last version whose rings held int16 steps and
	// whose state began with a count of the samples offered, which nothing
	// read (see stateV12); it is read still, and so are versions 9 to 11,
	// rewritten to it first.
	int16Version = 12
	// secondsVersion is the last version whose season kept the sampling
	// intervals it chooses the bucket width from in whole seconds; it is
	// read still (see decode).
	secondsVersion = 9
	// runVersion is the last version whose season ended in N uint32,
	// LastTs int64, DtMs int64, with no run of another interval (see
	// season.track); versions 9 and 10 are read still (see fromRunVersion).
	runVersion = 10
	// repeatVersion is the last version without the flat member's state:
	// its state's Away was a uint32, followed by Novel (see
	// fromRepeatVersion).
	repeatVersion = 11
	// repeatGrowth is what the flat member added to the state's encoding:
	// Away shrank from 4 bytes to 2, Repeats, RunMax and RepeatP came (2
	// each).
	repeatGrowth = -2 + 3*2
)

// readsVersion reports whether decode reads a Detector's state of version v.
func readsVersion(v uint16) bool {
	switch v {
	case snapshotVersion, secondsVersion, runVersion, repeatVersion, int16Version:
		return true
	}
	return false
}

// Readable returns why Restore cannot read data, a Detector's or a Group's
// saved state, as its head alone tells (another magic, a version of an
// earlier or later release), or nil: Restore checks the rest (size,
// checksum, options). A snapshot of many series' states is checked once at
// load, so that an upgrade or a rollback whose states all warm again from
// history says so there, not series by series or not at all.
func Readable(data []byte) error {
	hdr := len(snapshotMagic) + 2
	if len(data) < hdr {
		return errors.New("not a detector state")
	}
	v := binary.LittleEndian.Uint16(data[len(snapshotMagic):])
	switch string(data[:len(snapshotMagic)]) {
	case snapshotMagic:
		if !readsVersion(v) {
			return fmt.Errorf("detector state version %d, this release reads %d to %d", v, secondsVersion, snapshotVersion)
		}
	case groupMagic:
		if v != groupVersion {
			return fmt.Errorf("group state version %d, this release reads %d", v, groupVersion)
		}
	default:
		return errors.New("not a detector state")
	}
	return nil
}

// fromRunVersion rewrites a snapshot of version 9 or 10 in the current
// layout, checksum and all: only its season's last fields differ (see
// runVersion), and no run of another interval had begun. The learnt state
// is kept rather than warmed again from history, which is as long as the
// TSDB's retention at best. data's checksum is verified first.
func fromRunVersion(data []byte) ([]byte, error) {
	const oldTail, newTail = 4 + 8 + 8, 2 + 2 + 4 + 8 + 4 + 4
	hdr, body, err := oldBody(data, -repeatGrowth-newTail+oldTail)
	if err != nil {
		return nil, err
	}
	// state begins N, Seen, Level, SeasStat, Fast, Prev, Season.
	at := hdr + 8 + 8 + 2*binary.Size(Robust{}) + 8 + 8 + binary.Size(&seasonV12{}) - newTail
	n := binary.LittleEndian.Uint32(body[at:])
	lastTs := binary.LittleEndian.Uint64(body[at+4:])
	dt := int64(binary.LittleEndian.Uint64(body[at+12:]))
	if dt < 0 || dt > math.MaxInt32 {
		return nil, errors.New("decode detector: corrupt state")
	}
	out := make([]byte, 0, len(data)+newTail-oldTail)
	out = append(out, body[:at]...)
	out = binary.LittleEndian.AppendUint16(out, uint16(min(n, math.MaxUint16)))
	out = binary.LittleEndian.AppendUint16(out, 0) // Run
	out = binary.LittleEndian.AppendUint32(out, uint32(dt))
	out = binary.LittleEndian.AppendUint64(out, lastTs)
	out = binary.LittleEndian.AppendUint64(out, 0) // RunIv, RunLag
	out = append(out, body[at+oldTail:]...)
	binary.LittleEndian.PutUint16(out[len(snapshotMagic):], repeatVersion)
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out)), nil
}

// oldBody checks a snapshot of an older layout, whose length differs from
// version 12's (int16Version) for its members by growth bytes, and its
// checksum; it
// returns the length of its header (magic, version, options) and the
// snapshot without its checksum.
func oldBody(data []byte, growth int) (hdr int, body []byte, err error) {
	var w wireOptions
	hdr = len(snapshotMagic) + 2 + binary.Size(w)
	if len(data) < hdr+4 {
		return 0, nil, fmt.Errorf("decode detector: %d bytes, too short", len(data))
	}
	if _, err := binary.Decode(data[len(snapshotMagic)+2:], binary.LittleEndian, &w); err != nil {
		return 0, nil, fmt.Errorf("decode detector options: %w", err)
	}
	if want := snapshotSize(int(w.Members)) - stateGrowthV12 + growth; len(data) != want {
		return 0, nil, fmt.Errorf("decode detector: %d bytes, want %d", len(data), want)
	}
	body = data[:len(data)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(data[len(data)-4:]) {
		return 0, nil, errors.New("decode detector: checksum mismatch")
	}
	return hdr, body, nil
}

// fromRepeatVersion rewrites a snapshot of version 11 in the current
// layout: its state's Away (a uint32, at most reanchorLen) becomes a
// uint16, followed by the flat member's Repeats, RunMax and RepeatP.
// RepeatP starts at 1, repeats being the rule: the flat member scores
// nothing until it has seen the series move at most samples (about
// 0.7·levelSpan samples for one that always does) and has meanwhile learnt
// the longest runs it makes, rather than scoring its next ordinary run
// against a record of none. data's checksum is verified first.
func fromRepeatVersion(data []byte) ([]byte, error) {
	hdr, body, err := oldBody(data, -repeatGrowth)
	if err != nil {
		return nil, err
	}
	// state ends Away, Novel.
	at := hdr + binary.Size(&stateV12{}) - repeatGrowth - binary.Size(&noveltyV12{}) - 4
	away := binary.LittleEndian.Uint32(body[at:])
	out := make([]byte, 0, len(data)+repeatGrowth)
	out = append(out, body[:at]...)
	out = binary.LittleEndian.AppendUint16(out, uint16(min(away, reanchorLen)))
	out = binary.LittleEndian.AppendUint16(out, 0) // Repeats
	out = binary.LittleEndian.AppendUint16(out, 0) // RunMax
	out = binary.LittleEndian.AppendUint16(out, flatPUnit)
	out = append(out, body[at+4:]...)
	binary.LittleEndian.PutUint16(out[len(snapshotMagic):], int16Version)
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out)), nil
}

// stateV12 is state as versions 9 to 12 kept it (9 to 11 rewritten to it:
// see fromRunVersion, fromRepeatVersion): N, a count of every sample
// offered, first, and rings of int16 steps.
type stateV12 struct {
	N                              uint64
	Seen                           uint64
	Level                          Robust
	SeasStat                       Robust
	Fast                           float64
	Prev                           float64
	Season                         seasonV12
	Tails                          [nCore]Tail
	RefLeft                        uint32
	RefPeak                        float32
	Lo, Hi                         float64
	Long                           longSeasonV12
	LongStat                       Robust
	LongFast                       float64
	Slow                           float64
	Away, Repeats, RunMax, RepeatP uint16
	Novel                          noveltyV12
}

// seasonV12 and longSeasonV12 are season and longSeason with the rings of
// versions up to 12.
type seasonV12 struct {
	Ring                 qRing16
	Head, Count, D, AccN uint16
	Acc                  float64
	Period, SinceEst     uint16
	Strength             float32
	N                    uint16
	Run                  int16
	DtMs                 int32
	LastTs               int64
	RunIv, RunLag        int32
}

type longSeasonV12 struct {
	Ring          qRing16
	Head, Count   uint16
	D, AccN       uint32
	Acc           float64
	Period, Since uint16
}

// current returns o in the current layout: its rings requantised (see
// qRing16.current; a season still choosing its interval keeps the
// intervals it has noted), the season's strength, which nothing read,
// dropped, and the novelty sets folded to half their bits (see
// noveltyV12.current).
func (o *stateV12) current() state {
	s, l := &o.Season, &o.Long
	st := state{
		Seen: o.Seen, Level: o.Level, SeasStat: o.SeasStat, Fast: o.Fast, Prev: o.Prev,
		Season: season{
			D: s.D, AccN: s.AccN, Acc: s.Acc, Period: s.Period, SinceEst: s.SinceEst,
			N: s.N, Run: s.Run, DtMs: s.DtMs, LastTs: s.LastTs, RunIv: s.RunIv, RunLag: s.RunLag,
		},
		Tails: o.Tails, RefLeft: o.RefLeft, RefPeak: o.RefPeak, Lo: o.Lo, Hi: o.Hi,
		Long:     longSeason{Ring: l.Ring.current(), D: l.D, AccN: l.AccN, Acc: l.Acc, Period: l.Period, Since: l.Since},
		LongStat: o.LongStat, LongFast: o.LongFast, Slow: o.Slow,
		Away: o.Away, Repeats: o.Repeats, RunMax: o.RunMax, RepeatP: o.RepeatP, Novel: o.Novel.current(),
	}
	if s.D == 0 {
		// The slots hold the intervals seen so far, two int16s each.
		for i := range seasonDecideN - 1 {
			st.Season.setDt(i, int32(uint32(uint16(s.Ring.Q[2*i]))|uint32(uint16(s.Ring.Q[2*i+1]))<<16))
		}
	} else {
		st.Season.Ring = s.Ring.current()
	}
	st.Season.Ring.Head, st.Season.Ring.Count = s.Head, s.Count
	st.Long.Ring.Head, st.Long.Ring.Count = l.Head, l.Count
	return st
}

// noveltyV12 is novelty as versions up to 12 kept it: generations of 1024
// bits.
type noveltyV12 struct {
	Cur, Prev [1 << 10 / 64]uint64
	Ctx       uint16
	F         float32
}

// current returns o with generations of 2^nvBits bits: a context's bit is
// the top nvBits bits of its hash (see nvHash), so bit j of the smaller
// set is set where bit 2j or 2j+1 of o's was, and every context o had
// seen is seen still.
func (o *noveltyV12) current() novelty {
	fold := func(old *[len(o.Cur)]uint64) (out [nvWords]uint64) {
		const ratio = len(o.Cur) / nvWords
		for i := range 1 << 10 {
			if old[i>>6]&(1<<(i&63)) != 0 {
				j := i / ratio
				out[j>>6] |= 1 << (j & 63)
			}
		}
		return out
	}
	return novelty{Cur: fold(&o.Cur), Prev: fold(&o.Prev), Ctx: o.Ctx, F: o.F}
}

// stateGrowthV12 is how many bytes state's encoding grew since stateV12's.
var stateGrowthV12 = binary.Size(&state{}) - binary.Size(&stateV12{})

// wireOptions is Options with fixed-size fields, for the snapshot.
type wireOptions struct {
	Direction                        int8
	MinDeviationAbs, MinDeviationRel float64
	ValidMin, ValidMax               float64
	WarmupSamples                    int64
	FalseAlarmRate                   float64
	RefractorySamples                int64
	Members                          int64
	Seed                             uint64
}

func toWire(o Options) wireOptions {
	return wireOptions{
		Direction: int8(o.Direction), MinDeviationAbs: o.MinDeviationAbs, MinDeviationRel: o.MinDeviationRel,
		ValidMin: o.ValidMin, ValidMax: o.ValidMax, WarmupSamples: int64(o.WarmupSamples),
		FalseAlarmRate: o.FalseAlarmRate, RefractorySamples: int64(o.RefractorySamples),
		Members: int64(o.Members), Seed: o.Seed,
	}
}

func fromWire(w wireOptions) Options {
	return Options{
		Direction: Direction(w.Direction), MinDeviationAbs: w.MinDeviationAbs, MinDeviationRel: w.MinDeviationRel,
		ValidMin: w.ValidMin, ValidMax: w.ValidMax, WarmupSamples: int(w.WarmupSamples),
		FalseAlarmRate: w.FalseAlarmRate, RefractorySamples: int(w.RefractorySamples),
		Members: int(w.Members), Seed: w.Seed,
	}
}

// MarshalBinary encodes the options and everything learnt:
//
//	"omdt" | version uint16 | options | state | [extra state] | [later fields] | CRC-32 (IEEE) of all before it
//
// little-endian throughout; the extra state is there only when the options
// turn an opt-in member on; the later fields are a later release's, which
// this one skips and does not write (see snapshotVersion).
func (d *Detector) MarshalBinary() ([]byte, error) {
	return d.AppendBinary(make([]byte, 0, snapshotSize(d.b.opts.Members)))
}

// AppendBinary appends MarshalBinary's encoding to b, so that a caller
// snapshotting many Detectors can reuse one buffer.
func (d *Detector) AppendBinary(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, snapshotMagic...)
	b = binary.LittleEndian.AppendUint16(b, snapshotVersion)
	w := toWire(d.b.opts)
	parts := []any{&w, &d.st}
	if d.ex != nil {
		parts = append(parts, d.ex)
	}
	for _, v := range parts {
		var err error
		if b, err = binary.Append(b, binary.LittleEndian, v); err != nil {
			return nil, fmt.Errorf("encode detector: %w", err)
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:])), nil
}

// snapshotSize is the length of MarshalBinary's output for a Detector
// with the given members.
func snapshotSize(members int) int {
	return len(snapshotMagic) + 2 + binary.Size(wireOptions{}) + StateSize(members) + 4
}

// UnmarshalBinary restores a Detector from MarshalBinary's output. It
// rejects another version, a wrong length (short, or long for an older
// version), a bad checksum or invalid
// options with an error and leaves d unchanged.
func (d *Detector) UnmarshalBinary(data []byte) error {
	o, st, ex, err := decode(data)
	if err != nil {
		return err
	}
	var sc *Scratch
	if d.b != nil {
		sc = d.b.sc
	} else {
		sc = NewScratch()
	}
	d.b, d.st, d.ex = sc.bind(o), st, ex
	return nil
}

// Restore is UnmarshalBinary for a Detector made with the options it should
// have now (by New or Init): it takes what was learnt from data and keeps
// d's options, so that a changed direction, minimum deviation, valid range,
// warm-up or refractory period applies to a restored series at once. The
// false-alarm rate, the members and the seed shape what is learnt (the
// calibration's windows, the state's layout): a snapshot learnt under other
// ones is refused with an error, d unchanged, and the series learns anew.
func (d *Detector) Restore(data []byte) error {
	o, st, ex, err := decode(data)
	if err != nil {
		return err
	}
	if err := sameLearning(o, d.b.opts); err != nil {
		return fmt.Errorf("decode detector: %w", err)
	}
	if st.Season.oldLayout() {
		// Learnt again rather than kept blind to the daily season for good
		// (the pipeline warms such a series from its TSDB history).
		return errors.New("decode detector: seasonal ring of an older layout (at most 16 samples a bucket)")
	}
	d.st, d.ex = st, ex
	return nil
}

// SetOptions changes the options of a Detector that has learnt: those that
// only say how its statistics are read (direction, minimum deviations,
// valid range, warm-up, refractory period) apply from the next sample.
// Another false-alarm rate, member set or seed would need what was learnt
// learnt again: SetOptions refuses them with an error, d unchanged.
func (d *Detector) SetOptions(o Options) error {
	if o.Members == 0 {
		o.Members = MemberDefault
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("detector options: %w", err)
	}
	if err := sameLearning(d.b.opts, o); err != nil {
		return err
	}
	d.b = d.b.sc.bind(o)
	return nil
}

// sameLearning reports, as an error, how learnt under a and b differ. The
// flat member is left out: the state it reads is learnt whether it is on
// or not, and it does not count in the record windows (see
// Detector.window), so a snapshot of the default members from before it
// came (version 11) is restored into today's default set.
func sameLearning(a, b Options) error {
	if a.FalseAlarmRate != b.FalseAlarmRate || a.Members&^MemberFlat != b.Members&^MemberFlat || a.Seed != b.Seed {
		return fmt.Errorf("learnt with false-alarm rate %g, members %#x, seed %d; want %g, %#x, %d",
			a.FalseAlarmRate, a.Members, a.Seed, b.FalseAlarmRate, b.Members, b.Seed)
	}
	return nil
}

func decode(data []byte) (Options, state, *extraState, error) {
	var st state
	hdr := len(snapshotMagic) + 2
	if len(data) < hdr+4 || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return Options{}, st, nil, errors.New("decode detector: not a detector snapshot")
	}
	v := binary.LittleEndian.Uint16(data[len(snapshotMagic):])
	growth := 0 // of state's encoding since the snapshot's version
	switch {
	case v == snapshotVersion:
	case readsVersion(v):
		var err error
		if v < repeatVersion {
			if data, err = fromRunVersion(data); err != nil {
				return Options{}, st, nil, fmt.Errorf("version %d: %w", v, err)
			}
		}
		if v <= repeatVersion {
			if data, err = fromRepeatVersion(data); err != nil {
				return Options{}, st, nil, fmt.Errorf("version %d: %w", v, err)
			}
		}
		growth = stateGrowthV12
	default:
		return Options{}, st, nil, fmt.Errorf("decode detector: snapshot version %d, want %d", v, snapshotVersion)
	}
	var w wireOptions
	if len(data) < hdr+binary.Size(w) {
		return Options{}, st, nil, fmt.Errorf("decode detector: %d bytes, too short", len(data))
	}
	if _, err := binary.Decode(data[hdr:], binary.LittleEndian, &w); err != nil {
		return Options{}, st, nil, fmt.Errorf("decode detector options: %w", err)
	}
	// A later release's fields, after this one's, are skipped (see
	// snapshotVersion); the older layouts are read exactly.
	if want := snapshotSize(int(w.Members)) - growth; len(data) < want || (growth != 0 && len(data) != want) {
		return Options{}, st, nil, fmt.Errorf("decode detector: %d bytes, want %d", len(data), want)
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return Options{}, st, nil, errors.New("decode detector: checksum mismatch")
	}
	// Decoded from the bytes in place: binary.Read copied the state into a
	// buffer of its own first, 2 KiB of garbage per series at a restart
	// (164 MB at 100 000 series, while the start's heap peaks).
	rest := body[hdr+binary.Size(w):]
	var (
		n   int
		err error
	)
	if growth != 0 {
		var old stateV12
		if n, err = binary.Decode(rest, binary.LittleEndian, &old); err == nil && !old.valid() {
			return Options{}, st, nil, errors.New("decode detector: corrupt state")
		}
		st = old.current()
	} else {
		n, err = binary.Decode(rest, binary.LittleEndian, &st)
	}
	if err != nil {
		return Options{}, st, nil, fmt.Errorf("decode detector state: %w", err)
	}
	var ex *extraState
	if w.Members&extraFlags != 0 {
		ex = &extraState{}
		if _, err := binary.Decode(rest[n:], binary.LittleEndian, ex); err != nil {
			return Options{}, st, nil, fmt.Errorf("decode detector state: %w", err)
		}
	}
	o := fromWire(w)
	if o.Members == 0 {
		// The default set, as for New and StateSize, whose layout the
		// state was read with: kept as 0, the Detector UnmarshalBinary
		// made had no member, and Restore refused it for another set.
		o.Members = MemberDefault
	}
	if err := o.Validate(); err != nil {
		return Options{}, st, nil, fmt.Errorf("decode detector: %w", err)
	}
	if !st.valid() || (ex != nil && !ex.valid()) {
		return Options{}, st, nil, errors.New("decode detector: corrupt state")
	}
	if v == secondsVersion {
		if err := st.Season.fromSeconds(); err != nil {
			return Options{}, st, nil, fmt.Errorf("decode detector: version %d: %w", v, err)
		}
	}
	return o, st, ex, nil
}

// StateSize returns the bytes of learnt state a Detector with the given
// members keeps per series (0 means the default set), excluding the
// Scratch it may share with other Detectors.
func StateSize(members int) int {
	if members == 0 {
		members = MemberDefault
	}
	n := binary.Size(&state{})
	if members&extraFlags != 0 {
		n += binary.Size(&extraState{})
	}
	return n
}

// valid reports whether st could have been learnt: the indices Update uses
// are in range and the statistics finite. A snapshot passes its checksum
// unless damaged, so this guards against foreign data (another layout
// under the same version), which must not make Update panic.
func (st *state) valid() bool {
	ok := st.Season.Ring.Head < seasonLen && st.Season.Ring.Count <= seasonLen && int(st.Season.Period) <= seasonLen &&
		st.Long.Ring.Head < longLen && st.Long.Ring.Count <= longLen && int(st.Long.Period) <= longLen &&
		finite(st.Level.M, st.Level.S, st.SeasStat.M, st.SeasStat.S, st.LongStat.M, st.LongStat.S,
			st.Season.Ring.Offset, float64(st.Season.Ring.Scale), st.Long.Ring.Offset, float64(st.Long.Ring.Scale))
	// RefPeak as a Group's (see Group.Restore): never NaN or below 0.
	return ok && tailsValid(st.Tails[:]) && st.RefPeak >= 0 &&
		st.Level.valid() && st.SeasStat.valid() && st.LongStat.valid()
}

// valid reports what state.valid does of the old rings, which
// stateV12.current reads whole: their values finite.
func (o *stateV12) valid() bool {
	return finite(o.Season.Ring.Offset, float64(o.Season.Ring.Scale), o.Long.Ring.Offset, float64(o.Long.Ring.Scale))
}

// tailsValid: a quantile of +Inf (foreign data) made every score +Inf;
// so did one below the floor Update keeps it at (1e-43, a damaged state
// whose checksum was made right), dividing the next statistic, and a range
// below the tail's floor (or a floor of 0), by which Score divides the
// logarithm of a statistic above the quantile. A window's maximum of NaN
// made the range, and every score after, NaN; the histogram's counts
// and the weight are never negative, and W at least 1.
func tailsValid(ts []Tail) bool {
	for i := range ts {
		t := &ts[i]
		if t.Block >= tailBlocks || !finite(float64(t.Zq)) || !(t.Zq >= tailZFloor) ||
			t.MinLog100 == 0 || !(t.LogRange >= t.minLog()) ||
			!(t.W >= 1) || !counts(t.W, t.Total) || !counts(t.Hist[:]...) {
			return false
		}
		for _, b := range t.Blocks {
			if !(b >= 0) { // +Inf is a statistic beyond float32's range
				return false
			}
		}
	}
	return true
}

// counts reports whether every v is finite and not negative.
func counts(vs ...float32) bool {
	for _, v := range vs {
		if !(v >= 0) || math.IsInf(float64(v), 1) {
			return false
		}
	}
	return true
}

func (ex *extraState) valid() bool {
	ok := ex.RecentPos < recentLen && ex.RecentN <= recentLen && ex.Forest.NRes <= ifReservoir &&
		finite(ex.LagStat.M, ex.LagStat.S, ex.VarStat.M, ex.VarStat.S, ex.SRStat.M, ex.SRStat.S)
	// A tree's split feature indexes the feature vector.
	for t := range ex.Forest.Trees {
		for _, f := range ex.Forest.Trees[t].Feat {
			ok = ok && f < ifDims
		}
	}
	return ok && tailsValid(ex.Tails[:])
}

func finite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
