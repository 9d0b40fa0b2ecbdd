package pipeline

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/durabletest"
)

// TestSaveExtSetsDurable: ExtSetsFile is written as a crash leaves it
// whole (see durabletest), its temporary fsynced before its rename and the
// directory after: it was renamed unsynced, and after a power cut could
// read empty (ext4 and XFS commit a rename before the data), when the
// sets were lost and a new series could take a sibling's history for its
// own until they were learnt again.
func TestSaveExtSetsDurable(t *testing.T) {
	if out := os.Getenv(durabletest.Env); out != "" {
		bf, err := newBackfill("http://upstream/api/v1/read", 10)
		require.NoError(t, err)
		bf.ext = map[string]extSet{"cluster": {first: "a", known: true, seen: t0.Unix()}}
		require.NoError(t, bf.saveExtSets(out))
		return
	}
	out := filepath.Join(t.TempDir(), ExtSetsFile)
	durabletest.Check(t, out, out+".tmp")
}

// TestWriteSnapshotDurable: the model snapshot is written as a crash
// leaves it whole (see durabletest), as ExtSetsFile now is: through the
// same atomicfile.Write.
func TestWriteSnapshotDurable(t *testing.T) {
	if out := os.Getenv(durabletest.Env); out != "" {
		e := newEnv(t, "", nil, nil)
		e.feed(labels.FromStrings("__name__", "load"), model.MetricTypeGauge, seasonal(100, 8))
		e.sync()
		_, err := e.p.writeSnapshot(t.Context(), out)
		require.NoError(t, err)
		return
	}
	out := filepath.Join(t.TempDir(), SnapshotFile)
	durabletest.Check(t, out, out+".tmp")
}

// TestSnapshotFilesUmask: the model snapshot and ExtSetsFile have the mode
// os.Create gives, 0644 less the umask, as at 59b1f96 and as the TSDB's
// files beside them: atomicfile.Write's Chmod to 0644 made them readable
// by every user under a umask of 077.
func TestSnapshotFilesUmask(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	e.feed(labels.FromStrings("__name__", "load"), model.MetricTypeGauge, seasonal(100, 8))
	e.sync()
	bf, err := newBackfill("http://upstream/api/v1/read", 10)
	require.NoError(t, err)
	bf.ext = map[string]extSet{"cluster": {first: "a", known: true, seen: t0.Unix()}}
	dir := t.TempDir()
	snap, ext := filepath.Join(dir, SnapshotFile), filepath.Join(dir, ExtSetsFile)

	old := syscall.Umask(0o077)
	_, err = e.p.writeSnapshot(t.Context(), snap)
	extErr := bf.saveExtSets(ext)
	syscall.Umask(old)
	require.NoError(t, err)
	require.NoError(t, extErr)
	for _, path := range []string{snap, ext} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), path)
	}
}
