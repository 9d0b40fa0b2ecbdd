package detect

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/require"
)

// asNextRelease returns b, a snapshot of this release, as the next release
// would write it with a field added (see snapshotVersion): its 8 bytes at
// the end, before the checksum, the version unchanged, the checksum over
// them too.
func asNextRelease(b []byte) []byte {
	out := append([]byte(nil), b[:len(b)-4]...)
	out = binary.LittleEndian.AppendUint64(out, 0x0123456789abcdef)
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out))
}

// TestGroupRestoreNextRelease: a group's state written by the next release,
// a field added at the end, is restored by this one, which scores on as the
// group that wrote it.
func TestGroupRestoreNextRelease(t *testing.T) {
	g, rng := podGroup(t)
	b, err := g.AppendBinary(nil)
	require.NoError(t, err)
	h := mustGroup(t, 3)
	require.NoError(t, h.Restore(asNextRelease(b)))
	again, err := h.AppendBinary(nil)
	require.NoError(t, err)
	require.Equal(t, b, again)
	x := make([]float64, 3)
	for i := 500; i < 700; i++ {
		podVector(rng, i, x)
		require.Equal(t, g.Update(groupT0+int64(i)*30_000, x), h.Update(groupT0+int64(i)*30_000, x))
	}
}

// TestRestoreNextReleaseChecked: skipping a later release's fields keeps
// the checks: a byte changed in them fails the checksum, a state shorter
// than this release's is refused, and so is an older version's (read
// exactly, never skipped into) with bytes after it.
func TestRestoreNextReleaseChecked(t *testing.T) {
	d := mustNew(t, DefaultOptions())
	ts, v := series(7, 1000, 2)
	for i := range ts {
		d.Update(ts[i], v[i])
	}
	b, err := d.MarshalBinary()
	require.NoError(t, err)
	g, _ := podGroup(t)
	gb, err := g.AppendBinary(nil)
	require.NoError(t, err)
	flip := func(b []byte, at int) []byte {
		out := append([]byte(nil), b...)
		out[at] ^= 1
		return out
	}
	resum := func(b []byte) []byte {
		out := append([]byte(nil), b[:len(b)-4]...)
		return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out))
	}
	next, gnext := asNextRelease(b), asNextRelease(gb)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"later field changed", flip(next, len(next)-5), "checksum mismatch"},
		{"short", resum(b[:len(b)-1]), "bytes, want"},
		{"version 12 with more", asNextRelease(inInt16Layout(t, b)), "bytes, want"},
		{"group: later field changed", flip(gnext, len(gnext)-5), "checksum"},
		{"group: short", resum(gb[:len(gb)-1]), "bytes, want"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if isGroup(c.data) {
				require.ErrorContains(t, mustGroup(t, 3).Restore(c.data), c.want)
				return
			}
			require.ErrorContains(t, mustNew(t, DefaultOptions()).Restore(c.data), c.want)
		})
	}
}
