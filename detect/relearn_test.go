package detect

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// inRunLayout re-encodes a snapshot b of this version in the layout of
// versions 9 and 10 (see runVersion), as version v: the inverse of
// fromRunVersion, for a run not begun.
func inRunLayout(t *testing.T, b []byte, v uint16) []byte {
	t.Helper()
	b = inRepeatLayout(t, b)
	const newTail = 24
	var w wireOptions
	at := len(snapshotMagic) + 2 + binary.Size(w) + 8 + 8 + 2*binary.Size(Robust{}) + 8 + 8 + binary.Size(&season{}) - newTail
	n := binary.LittleEndian.Uint16(b[at:])
	dt := int32(binary.LittleEndian.Uint32(b[at+4:]))
	lastTs := binary.LittleEndian.Uint64(b[at+8:])
	out := append([]byte(nil), b[:at]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(n))
	out = binary.LittleEndian.AppendUint64(out, lastTs)
	out = binary.LittleEndian.AppendUint64(out, uint64(int64(dt)))
	out = append(out, b[at+newTail:len(b)-4]...)
	binary.LittleEndian.PutUint16(out[len(snapshotMagic):], v)
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out))
}

// inRepeatLayout re-encodes a snapshot b of this version in the layout of
// version 11 (see repeatVersion): the inverse of fromRepeatVersion, which
// drops what the flat member learnt.
func inRepeatLayout(t *testing.T, b []byte) []byte {
	t.Helper()
	at := len(snapshotMagic) + 2 + binary.Size(wireOptions{}) + binary.Size(&state{}) - binary.Size(&novelty{}) - 8
	away := binary.LittleEndian.Uint16(b[at:])
	out := append([]byte(nil), b[:at]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(away))
	out = append(out, b[at+8:len(b)-4]...)
	binary.LittleEndian.PutUint16(out[len(snapshotMagic):], repeatVersion)
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out))
}

// TestRestoreVersion10: a snapshot written by the detector of version 10
// (testdata/detector-v10.bin: four days of a daily sine at 15 s, written
// by the code of commit c5a6e87 with its next 200 samples and results in
// detector-v10.next) is restored, and scores those samples as that code did.
func TestRestoreVersion10(t *testing.T) {
	testRestoreVersion(t, "testdata/detector-v10", runVersion)
}

// TestRestoreVersion11: a snapshot written before the flat member
// (testdata/detector-v11.bin: four days at 15 s of a request rate, counts
// over the interval on a daily cycle, which repeat; written by the code of
// commit 5888271 with its next 200 samples and results in
// detector-v11.next) is restored into today's default members, scores
// those samples as that code did (the flat member scores nothing until it
// has learnt the series' repeats; see fromRepeatVersion), and carries on
// with the flat member's state learning.
func TestRestoreVersion11(t *testing.T) {
	d := testRestoreVersion(t, "testdata/detector-v11", repeatVersion)
	require.LessOrEqual(t, d.st.Away, uint16(reanchorLen))
	require.Less(t, d.st.RepeatP, uint16(flatPUnit), "RepeatP learns from its start at 1")
	require.Zero(t, d.Options().Members&MemberFlat, "the flat member is opt-in")
}

// testRestoreVersion restores name.bin, of version v, into a Detector of
// the default options, checks that it scores name.next's samples as the
// code that wrote it did, and that a damaged copy is refused.
func testRestoreVersion(t *testing.T, name string, v uint16) *Detector {
	t.Helper()
	b, err := os.ReadFile(name + ".bin")
	require.NoError(t, err)
	require.Equal(t, v, binary.LittleEndian.Uint16(b[len(snapshotMagic):]))
	d := mustNew(t, DefaultOptions())
	require.NoError(t, d.Restore(b))
	require.Equal(t, int32(15_000), d.st.Season.DtMs)
	f, err := os.Open(name + ".next")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var x [4]float64
		for i, s := range strings.Fields(sc.Text()) {
			x[i], err = strconv.ParseFloat(s, 64)
			require.NoError(t, err)
		}
		r := d.Update(int64(x[0]), x[1])
		require.InDelta(t, x[2], r.Yhat, 1e-9, "yhat at %d", int64(x[0]))
		require.InDelta(t, x[3], r.Score, 1e-9, "score at %d", int64(x[0]))
		n++
	}
	require.NoError(t, sc.Err())
	require.Equal(t, 200, n)
	// Damaged, it is refused, not misread.
	b[len(b)/2] ^= 1
	require.ErrorContains(t, mustNew(t, DefaultOptions()).Restore(b), "checksum")
	return d
}
