package forecast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// marshalVersion is the version of MarshalBinary's format. Version 1 had no
// warm starts; it is still read (the last fit is then rebuilt from a cold
// start: forecasts close to, not exactly, the ones before the restart).
// Versions 1 and 2 held the history as float64s; they are stored into the
// float32 history as new samples would be (see history), so the rebuilt
// fit is on values within a float32 rounding of their changes of the ones
// before the restart: forecasts as close as that, not exactly the same.
// Version 3 holds the history as the Model does: its base value and each
// slot's float32 and kind. Version 4 adds, after the history, the seasons
// of the last fit and their age (see seasonRedetect); a model restored
// from an older version detects its seasons at its next fit, as before.
//
// The version changes only when the layout or meaning of a field already
// there changes. A release that adds a field puts it at the end and keeps
// the version: the release before reads the fields it knows and skips the
// rest (UnmarshalBinary), so a rollback by one release keeps the model; a
// release reads a shorter encoding of the release before with the added
// field's starting value. The encoding carries no checksum or length of
// its own: the pipeline's snapshot, which frames it, has both.
const marshalVersion = 4

var marshalMagic = [3]byte{'O', 'M', 'F'}

// MarshalBinary encodes the model: its options, its kept history and its
// counters. The fitted parameters are not stored: every fit is a
// deterministic function of the history window it was made on and of the
// Holt-Winters starting points it was given (stored, a few dozen bytes),
// and the history kept (History+RefitEvery values) always contains that
// window, so UnmarshalBinary refits on it and replays the samples that came
// after, which restores the same forecasts in a fraction of the bytes.
func (m *Model) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 112+5*m.hist.count)
	b = append(b, marshalMagic[:]...)
	b = append(b, marshalVersion)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(m.opts.Coverage))
	for _, v := range []int{m.opts.MaxHorizon, m.opts.History, m.opts.MinSamples, m.opts.RefitEvery, m.opts.MaxPeriod} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	b = binary.LittleEndian.AppendUint64(b, m.n)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.lastTs))
	b = append(b, byte(m.steps.n), byte(m.steps.next))
	for _, d := range m.steps.diffs {
		b = binary.LittleEndian.AppendUint64(b, uint64(d))
	}
	b = append(b, boolByte(m.fitted))
	// Past RefitEvery the count only says "refit due", which the cap keeps;
	// uncapped it outgrew count (which stops at the ring's length) after
	// a long run without a Forecast, and the snapshot did not decode.
	b = binary.LittleEndian.AppendUint32(b, uint32(min(m.sinceFit, m.opts.RefitEvery, m.hist.count)))
	b = binary.LittleEndian.AppendUint32(b, uint32(m.hist.count))
	// UnmarshalBinary repeats the last fit if the next Forecast would not
	// refit anyway: then it needs that fit's starting points, else the next
	// fit's.
	warm := m.warm
	if m.fitted && m.sinceFit < m.opts.RefitEvery {
		warm = m.warmIn
	}
	b = append(b, byte(len(warm)))
	for _, w := range warm {
		b = append(b, boolByte(w.key.raw()))
		b = binary.LittleEndian.AppendUint32(b, w.key.m1())
		b = binary.LittleEndian.AppendUint32(b, w.key.m2())
		b = append(b, byte(w.key.n()))
		for _, p := range w.p[:w.key.n()] {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(p))
		}
	}
	b = m.hist.appendTo(b)
	b = append(b, byte(m.seasonAge), byte(len(m.seasons)))
	for _, p := range m.seasons {
		b = binary.LittleEndian.AppendUint32(b, uint32(p))
	}
	return b, nil
}

// appendTo appends the history, oldest first: the base value (float64),
// each slot's float32, then a bit per slot (1: a value of its own, 0: a
// difference), eight to a byte.
func (h *history) appendTo(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(h.base))
	start := h.head - h.count
	if start < 0 {
		start += len(h.d)
	}
	for j := range h.count {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(h.d[(start+j)%len(h.d)]))
	}
	var bits byte
	for j := range h.count {
		i := (start + j) % len(h.d)
		if h.abs[i/64]&(1<<(i%64)) != 0 {
			bits |= 1 << (j % 8)
		}
		if j%8 == 7 || j == h.count-1 {
			b = append(b, bits)
			bits = 0
		}
	}
	return b
}

// readFrom sets h, empty, to the count values of appendTo's encoding in r.
func (h *history) readFrom(r *reader, count int) error {
	base := math.Float64frombits(r.u64())
	for i := range count {
		h.d[i] = math.Float32frombits(r.u32())
	}
	for i := 0; i < count; i += 8 {
		bits := r.u8()
		for j := i; j < min(i+8, count); j++ {
			if bits&(1<<(j-i)) != 0 {
				h.abs[j/64] |= 1 << (j % 64)
			}
		}
	}
	if r.err != nil {
		return r.err
	}
	h.base, h.count, h.head = base, count, count%len(h.d)
	// Every value decodes finite, as push stores them.
	x := base
	for i := range count {
		if i > 0 {
			x = h.decode(i, x)
		}
		if f := float64(h.d[i]); math.IsNaN(x) || math.IsInf(x, 0) || math.IsNaN(f) || math.IsInf(f, 0) {
			return errors.New("a stored value is not finite")
		}
	}
	h.last = x
	if count == 0 {
		h.last = 0
	}
	return nil
}

// Readable returns why UnmarshalBinary cannot read data, as its head alone
// tells (not a model, or a version of a later release), or nil: the pipeline
// checks a snapshot's forecasters at load, to say once how many warm again.
func Readable(data []byte) error {
	if len(data) < len(marshalMagic)+1 || [3]byte(data) != marshalMagic {
		return errors.New("not a forecast model")
	}
	if v := data[len(marshalMagic)]; v < 1 || v > marshalVersion {
		return fmt.Errorf("forecast model version %d, this release reads 1 to %d", v, marshalVersion)
	}
	return nil
}

// OptionsOf returns the options of the model MarshalBinary encoded in
// data, which UnmarshalBinary would give it, from the head alone: a
// caller that refuses a model of other options learns it without the
// refit UnmarshalBinary makes.
func OptionsOf(data []byte) (Options, error) {
	_, o, err := readHead(&reader{b: data})
	return o, err
}

// readHead reads the version and the options that begin MarshalBinary's
// encoding.
func readHead(r *reader) (uint8, Options, error) {
	var magic [3]byte
	copy(magic[:], r.next(3))
	if r.err != nil || magic != marshalMagic {
		return 0, Options{}, errors.New("decode forecast model: not a forecast model")
	}
	version := r.u8()
	if version < 1 || version > marshalVersion {
		return 0, Options{}, fmt.Errorf("decode forecast model: version %d, want %d", version, marshalVersion)
	}
	var o Options
	o.Coverage = math.Float64frombits(r.u64())
	o.MaxHorizon, o.History, o.MinSamples, o.RefitEvery, o.MaxPeriod = int(r.u32()), int(r.u32()), int(r.u32()), int(r.u32()), int(r.u32())
	if r.err != nil {
		return 0, Options{}, fmt.Errorf("decode forecast model: %w", r.err)
	}
	if err := o.fill(); err != nil {
		return 0, Options{}, fmt.Errorf("decode forecast model: %w", err)
	}
	return version, o, nil
}

// UnmarshalBinary restores a model encoded by MarshalBinary, replacing m's
// state and options. Bytes after the fields of this version are a later
// release's, skipped (see marshalVersion).
func (m *Model) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	version, o, err := readHead(&r)
	if err != nil {
		return err
	}
	nm, _ := New(o)
	nm.n = r.u64()
	nm.lastTs = int64(r.u64())
	nm.steps.n, nm.steps.next = int32(r.u8()), int32(r.u8())
	for i := range nm.steps.diffs {
		nm.steps.diffs[i] = int64(r.u64())
	}
	fitted := r.u8() == 1
	since := int(r.u32())
	count := int(r.u32())
	if version > 1 {
		nw := int(r.u8())
		for range nw {
			k, ok := newWarmKey(r.u8() == 1, r.u32(), r.u32(), int(r.u8()))
			if !ok && r.err == nil {
				return errors.New("decode forecast model: inconsistent warm start")
			}
			w := warmStart{key: k}
			for i := range k.n() {
				w.p[i] = math.Float64frombits(r.u64())
			}
			nm.warm = append(nm.warm, w)
		}
	}
	if r.err != nil {
		return fmt.Errorf("decode forecast model: %w", r.err)
	}
	if count > len(nm.hist.d) || nm.steps.n > stepWindow || nm.steps.next >= stepWindow || since > count || uint64(count) > nm.n {
		return errors.New("decode forecast model: inconsistent counters")
	}
	if version >= 3 {
		if err := nm.hist.readFrom(&r, count); err != nil {
			return fmt.Errorf("decode forecast model: %w", err)
		}
	} else {
		for range count {
			v := math.Float64frombits(r.u64())
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return errors.New("decode forecast model: a stored value is not finite") // Update never stores one
			}
			nm.hist.push(v)
		}
	}
	if version >= 4 {
		nm.seasonAge = int(r.u8())
		ns := int(r.u8())
		if ns > 1+maxLongSeasons || nm.seasonAge > seasonRedetect {
			return errors.New("decode forecast model: inconsistent seasons")
		}
		for range ns {
			p := r.u32()
			if p < 2 || p > uint32(o.History) {
				return errors.New("decode forecast model: inconsistent seasons")
			}
			nm.seasons = append(nm.seasons, int(p))
		}
	}
	if r.err != nil {
		return fmt.Errorf("decode forecast model: %w", r.err)
	}
	if len(r.b) != 0 && version < marshalVersion {
		// Only this version's encoding grows, by a later release's fields
		// (see marshalVersion), which are skipped.
		return fmt.Errorf("decode forecast model: %d trailing bytes", len(r.b))
	}
	if fitted && since < o.RefitEvery {
		// Rebuild the last fit from its window, then replay what followed:
		// with the seasons it detected, or kept from the fit before (one
		// age younger, fitAt takes them again).
		nm.seasonAge = max(nm.seasonAge-1, 0)
		nm.fitAt(min(count-since, o.History), since)
	}
	nm.phase = m.phase // the caller's stagger, not part of the state
	*m = *nm
	return nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// reader decodes little-endian fields, remembering the first short read.
type reader struct {
	b   []byte
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errors.New("truncated")
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8   { return r.next(1)[0] }
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }
