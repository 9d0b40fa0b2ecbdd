package pipeline

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"

	"github.com/omen-sidecar/omen/detect"
)

// savedState is a restored series' models as the snapshot holds them:
// the detector's, the forecaster's (see fcState.appendState) and, in ext,
// the record's fields of a later release after those this one reads
// (written back as read while its series has not claimed the state, see
// encodeRestored, so that an upgrade again finds them).
type savedState struct {
	det, fc, ext []byte
}

// A savedSeries holds its savedState packed (see stateCodec.pack) until
// its series claims it: held as read, the states of 100 000 series took
// ~216 MB from the restore until each series' first sample (~2.2 KB a
// series; the file ~61 MB), on top of the models being built from them,
// and the restart's RSS peaked above the steady state.
//
// Packed, a state is a tag, then with tagRaw
//
//	len uint32 | det | len uint32 | fc | ext
//
// and with tagS2 the same as one S2 block, with the snapshot's first
// state of models as its dictionary: the states of one configuration share
// their layout, options and most of their floats' high bytes. On a real
// snapshot of 100 000 series (607 bytes a series, 2156 read): 759 bytes a
// series for 0.33 CPU-s; zstd's fastest level, 711 bytes for 2.4 CPU-s
// (it rebuilt its tables from the dictionary for every state), 852 for
// 1.7 without one; S2 without one, 872.
const (
	tagRaw = 0
	tagS2  = 1
)

// stateCodec packs the states read from one snapshot and unpacks them as
// their series claim them. pack is for the reading goroutine alone;
// unpack is safe for concurrent use (s2.Dict.Decode only reads the
// dictionary), and the codec lives as long as a state it packed.
type stateCodec struct {
	dict *s2.Dict // nil until a state of models is packed
	// buf and out are the uncompressed and compressed forms, reused for
	// every state packed until done.
	buf, out []byte
	// unreadable counts the states of models this release does not read,
	// why says why for the first.
	unreadable int
	why        error
	// refuse, if not nil, says why the forecaster that the configuration
	// gives s now refuses s's forecaster state fc, or nil (see
	// fcRefusal); refused counts the states it refuses, refusedWhy says
	// why for the first.
	refuse     func(s *savedSeries, fc []byte) error
	refused    int
	refusedWhy error
	// sum and size are the snapshot's checksum and size (size 0 before
	// version 6), which its current mark names (see writeMark).
	sum  uint32
	size int64
}

// pack returns st packed, in memory of its own. The first state with a
// detector's models becomes the dictionary of those after it; those before
// it (saved without models) are kept as they are, a few bytes each.
func (c *stateCodec) pack(st savedState) []byte {
	c.buf = appendBytes(appendBytes(c.buf[:0], st.det), st.fc)
	c.buf = append(c.buf, st.ext...)
	if c.dict == nil && len(st.det) > 0 {
		// Copied: buf is overwritten by the next state. nil if too
		// short to be one (s2.MinDictSize), and the next is tried.
		c.dict = s2.MakeDict(append([]byte(nil), c.buf...), nil)
	}
	if c.dict == nil {
		return append([]byte{tagRaw}, c.buf...)
	}
	c.out = c.dict.Encode(c.out[:cap(c.out)], c.buf)
	return append([]byte{tagS2}, c.out...)
}

// done drops the buffers of pack, once the snapshot is read.
func (c *stateCodec) done() { c.buf, c.out = nil, nil }

// unpack returns the state that pack packed into b, in memory of its own.
func (c *stateCodec) unpack(b []byte) (savedState, error) {
	if len(b) == 0 {
		return savedState{}, errors.New("empty restored state")
	}
	raw := b[1:]
	switch b[0] {
	case tagRaw:
	case tagS2:
		if c.dict == nil {
			return savedState{}, errors.New("compressed restored state without its dictionary")
		}
		var err error
		if raw, err = c.dict.Decode(nil, raw); err != nil {
			return savedState{}, fmt.Errorf("unpack restored state: %w", err)
		}
	default:
		return savedState{}, fmt.Errorf("restored state of tag %d", b[0])
	}
	r := fields{b: raw}
	st := savedState{det: r.bytes(), fc: r.bytes(), ext: r.b}
	if len(st.ext) == 0 {
		st.ext = nil
	}
	return st, r.err
}

// add checks the state st read for s (whether this release reads its
// models, counted in unreadable with the first reason in why, and whether
// its forecaster of now takes its forecaster's, counted in refused) and
// packs it into s.
func (c *stateCodec) add(s *savedSeries, st savedState) {
	if len(st.det) > 0 { // else saved without models, to warm again (see snapCursor.series)
		if err := cmp.Or(detect.Readable(st.det), fcReadable(st.fc)); err != nil {
			c.unreadable++
			c.why = cmp.Or(c.why, err)
		} else if len(st.fc) > 0 && c.refuse != nil {
			if err := c.refuse(s, st.fc); err != nil {
				c.refused++
				c.refusedWhy = cmp.Or(c.refusedWhy, err)
			}
		}
	}
	if len(st.fc) > 0 {
		// Versions before flagForecaster had the state alone to tell;
		// the flag tells without unpacking it.
		s.flags |= flagForecaster
	}
	s.state, s.codec = c.pack(st), c
}
