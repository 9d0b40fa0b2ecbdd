package detect

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fuzz targets below feed arbitrary bytes to the decoders of saved
// state, which the pipeline reads from the model snapshot on disk. A
// random input almost never passes the checksum, so each input is tried
// twice: as it is, and with its last 4 bytes replaced by the checksum of
// the rest (withSum), which lets the fuzzer reach the state's checks.
// `make test` runs them for a few seconds (scripts/fuzz.sh), `go test`
// their seeds.

// withSum returns b with its last 4 bytes the CRC-32 of the bytes before.
func withSum(b []byte) []byte {
	if len(b) < 4 {
		return b
	}
	out := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(out[len(out)-4:], crc32.ChecksumIEEE(out[:len(out)-4]))
	return out
}

// damaged returns good, its truncations and bit flips, as seeds.
func damaged(good []byte) [][]byte {
	out := [][]byte{good, good[:len(good)/2], good[:len(good)-1], asNextRelease(good)}
	for _, at := range []int{4, 6, 6 + 8*5, len(good) / 3, len(good) - 5} {
		b := append([]byte(nil), good...)
		b[at] ^= 0x80
		out = append(out, withSum(b))
	}
	return out
}

// FuzzDetectorUnmarshal: whatever the bytes, UnmarshalBinary and Restore
// err or give a Detector that scores without panicking, with finite
// non-negative scores; a state that decodes encodes again to bytes that
// decode to the same state (the round trip), at this release's version.
func FuzzDetectorUnmarshal(f *testing.F) {
	for _, o := range []Options{DefaultOptions(), func() Options { o := DefaultOptions(); o.Members = MemberAll; return o }()} {
		d, err := New(o)
		require.NoError(f, err)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range 400 {
			d.Update(int64(i)*15_000, 10+math.Sin(float64(i)/20)+0.1*rng.NormFloat64())
		}
		good, err := d.MarshalBinary()
		require.NoError(f, err)
		for _, b := range damaged(good) {
			f.Add(b)
		}
	}
	for _, name := range []string{"testdata/detector-v10.bin", "testdata/detector-v11.bin", "testdata/detector-v12.bin"} {
		old, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(old)
		f.Add(old[:len(old)-7])
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, b := range [][]byte{raw, withSum(raw)} {
			var d Detector
			if d.UnmarshalBinary(b) != nil {
				continue
			}
			enc, err := d.MarshalBinary()
			require.NoError(t, err)
			var e Detector
			require.NoError(t, e.UnmarshalBinary(enc), "re-encoded state does not decode")
			again, err := e.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, enc, again, "round trip changed the state")

			r, err := New(d.Options())
			require.NoError(t, err)
			if d.st.Season.oldLayout() {
				// Restore refuses it by design (the pipeline warms such
				// a series from history); UnmarshalBinary keeps it.
				require.ErrorContains(t, r.Restore(b), "older layout")
				r = &e
			} else {
				require.NoError(t, r.Restore(b), "UnmarshalBinary took it, Restore with its options refuses")
			}

			ts := d.LastTimestamp()
			for i := range int64(8) {
				at := ts + (i+1)*15_000
				if at < ts {
					at = ts // overflowed: out of order, ignored
				}
				for _, x := range []*Detector{&d, r} {
					res := x.Update(at, float64(i%3)*1e3)
					if !(res.Score >= 0) || math.IsInf(res.Score, 0) {
						t.Fatalf("score %v from a restored state", res.Score)
					}
				}
			}
		}
	})
}

// FuzzGroupRestore: whatever the bytes, Group.Restore errs and leaves the
// group as it was, or gives a group that scores without panicking; a
// state it takes encodes again to the same bytes up to a later release's
// fields.
func FuzzGroupRestore(f *testing.F) {
	g, rng := podGroup(f)
	x := make([]float64, 3)
	for i := 500; i < 520; i++ {
		podVector(rng, i, x)
		g.Update(groupT0+int64(i)*30_000, x)
	}
	good, err := g.AppendBinary(nil)
	require.NoError(f, err)
	for _, b := range damaged(good) {
		f.Add(b)
	}
	hdr := len(groupMagic) + 2
	optsSize := binary.Size(wireOptions{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, b := range [][]byte{raw, withSum(raw)} {
			// The group the state claims to be of (its members, their key,
			// the false-alarm rate), so that the fuzzer gets past those
			// checks.
			if len(b) < hdr+optsSize+9 {
				_ = mustGroup(t, 2).Restore(b)
				continue
			}
			var w wireOptions
			_, err := binary.Decode(b[hdr:], binary.LittleEndian, &w)
			require.NoError(t, err)
			k := int(b[hdr+optsSize])
			key := binary.LittleEndian.Uint64(b[hdr+optsSize+1:])
			o := DefaultOptions()
			o.FalseAlarmRate = fromWire(w).FalseAlarmRate
			h, err := NewGroup(k, key, o)
			if err != nil {
				continue
			}
			before, err := h.AppendBinary(nil)
			require.NoError(t, err)
			if h.Restore(b) != nil {
				after, err := h.AppendBinary(nil)
				require.NoError(t, err)
				require.Equal(t, before, after, "a refused state changed the group")
				continue
			}
			enc, err := h.AppendBinary(nil)
			require.NoError(t, err)
			c, err := NewGroup(k, key, o)
			require.NoError(t, err)
			require.NoError(t, c.Restore(enc), "re-encoded state does not restore")
			again, err := c.AppendBinary(nil)
			require.NoError(t, err)
			require.Equal(t, enc, again, "round trip changed the state")
			// The options are the group's own; the learnt state, b's.
			require.Equal(t, b[hdr+optsSize:len(enc)-4], enc[hdr+optsSize:len(enc)-4], "a state taken is not the state given")

			v := make([]float64, k)
			ts := h.st.LastTs
			for i := range int64(8) {
				for j := range v {
					v[j] = float64((int64(j)+i)%3) * 10
				}
				at := ts + (i+1)*30_000
				if at < ts {
					at = ts
				}
				res := h.Update(at, v)
				if !(res.Score >= 0) || math.IsInf(res.Score, 0) || res.Member >= k {
					t.Fatalf("result %+v from a restored state", res)
				}
			}
		}
	})
}
