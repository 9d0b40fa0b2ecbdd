package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

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

// TestRunStoppedBeforeScoringKeepsTheMark: a SIGTERM landing just as the
// TSDB finished opening has Run return before it takes anything (its
// early exit, see Run), and the snapshot is as current as its mark said,
// unless a sample was committed meanwhile (writes are taken from the
// TSDB's open on, before Run): the mark is put back only if none was.
// Before, the early exit left it removed, and the next start caught every
// restored series up from the TSDB. A commit after the mark was put back
// removes it again before the TSDB stores the sample (seen by a storage
// whose Commit looks for the mark).
func TestRunStoppedBeforeScoringKeepsTheMark(t *testing.T) {
	mark := []byte("0123456789abcdefghij")
	for _, tc := range []struct {
		name string
		// before: samples committed before Run; after: once it returned.
		before, after bool
	}{
		{"nothing committed", false, false},
		{"a sample committed before Run", true, false},
		{"a sample committed after Run", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, SnapshotFile)
			require.NoError(t, os.WriteFile(path, []byte("snapshot"), 0o644))
			require.NoError(t, os.WriteFile(path+markSuffix, mark, 0o644))
			db := openDB(t, t.TempDir())
			t.Cleanup(func() { _ = db.Close() })
			o := DefaultOptions()
			o.SnapshotPath = path
			p, err := New(nil, nil, db, nil, config.Default(), o)
			require.NoError(t, err)
			st := &markSeer{AppendableV2: db, mark: path + markSuffix}
			commit := func(ts int64) {
				a := p.Tap(st).AppenderV2(context.Background())
				_, err := a.Append(0, labels.FromStrings("__name__", "load"), 0, ts, 1, nil, nil, storage.AOptions{})
				require.NoError(t, err)
				require.NoError(t, a.Commit())
				require.False(t, st.sawMark, "the mark removed before the TSDB stores the sample")
			}
			if tc.before {
				commit(t0.UnixMilli())
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			require.NoError(t, p.Run(ctx))
			if tc.before {
				require.NoFileExists(t, path+markSuffix, "a sample was taken: the snapshot is not current")
				return
			}
			b, err := os.ReadFile(path + markSuffix)
			require.NoError(t, err, "nothing taken: the mark is put back")
			require.Equal(t, mark, b)
			if tc.after {
				commit(t0.UnixMilli() + stepMs)
				require.NoFileExists(t, path+markSuffix)
			}
		})
	}
}

// markSeer is a storage whose Commit notes whether the mark is on disk.
type markSeer struct {
	storage.AppendableV2
	mark    string
	sawMark bool
}

func (s *markSeer) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &markSeerApp{AppenderV2: s.AppendableV2.AppenderV2(ctx), s: s}
}

type markSeerApp struct {
	storage.AppenderV2
	s *markSeer
}

func (a *markSeerApp) Commit() error {
	if _, err := os.Stat(a.s.mark); err == nil {
		a.s.sawMark = true
	}
	return a.AppenderV2.Commit()
}
