package pipeline

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/omen-sidecar/omen/config"
	"github.com/stretchr/testify/require"
)

// TestKeepMarkPutsBackTheMarkNewTook: New takes the snapshot's current
// mark (removes it), and a process stopped before its storage opened
// (a SIGTERM during the TSDB's WAL replay), which took no sample, puts it
// back as it was with KeepMark: it was lost, and the next start caught
// every restored series up from the TSDB (e2e
// TestDurabilitySIGTERMDuringWALReplayKeepsSnapshotCurrent). Without a
// mark, KeepMark writes none.
func TestKeepMarkPutsBackTheMarkNewTook(t *testing.T) {
	for _, tc := range []struct {
		name string
		mark []byte
	}{
		{"marked", []byte("0123456789abcdefghij")},
		{"not marked", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, SnapshotFile)
			require.NoError(t, os.WriteFile(path, []byte("snapshot"), 0o644))
			if tc.mark != nil {
				require.NoError(t, os.WriteFile(path+markSuffix, tc.mark, 0o644))
			}
			db := openDB(t, t.TempDir())
			t.Cleanup(func() { _ = db.Close() })
			o := DefaultOptions()
			o.SnapshotPath = path
			p, err := New(nil, nil, db, nil, config.Default(), o)
			require.NoError(t, err)
			require.NoFileExists(t, path+markSuffix, "New takes the mark")

			p.KeepMark()
			if tc.mark == nil {
				require.NoFileExists(t, path+markSuffix)
				return
			}
			b, err := os.ReadFile(path + markSuffix)
			require.NoError(t, err)
			require.Equal(t, tc.mark, b)
		})
	}
}
