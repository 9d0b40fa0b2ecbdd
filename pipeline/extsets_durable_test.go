package pipeline

import (
	"os"
	"path/filepath"
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
