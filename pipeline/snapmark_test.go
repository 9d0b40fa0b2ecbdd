package pipeline

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/config"
	omentsdb "github.com/omen-sidecar/omen/tsdb"
	"github.com/stretchr/testify/require"
)

// TestTheMarkStaysUntilTheFirstCommit: the snapshot's current mark stays
// on disk until the first commit of samples to score, which removes it
// before the TSDB stores them: a process stopped or killed before (a
// SIGKILL during the TSDB's WAL replay) took no sample, and the next start
// resumes the snapshot's series without their catch-up read. New removed
// it, and a SIGKILL during the replay left it removed. Samples of series
// not scored (omen's own) leave it. A mark that cannot be removed refuses
// the commit: left, it would vouch for the snapshot after a crash.
func TestTheMarkStaysUntilTheFirstCommit(t *testing.T) {
	mark := []byte("0123456789abcdefghij")
	for _, tc := range []struct {
		name string
		mark []byte // nil: none
		dir  bool   // a directory in the mark's place: it cannot be removed
	}{
		{"marked", mark, false},
		{"not marked", nil, false},
		{"mark not removable", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, SnapshotFile)
			require.NoError(t, os.WriteFile(path, []byte("snapshot"), 0o644))
			switch {
			case tc.mark != nil:
				require.NoError(t, os.WriteFile(path+markSuffix, tc.mark, 0o644))
			case tc.dir:
				require.NoError(t, os.MkdirAll(filepath.Join(path+markSuffix, "x"), 0o755))
			}
			e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
			e.ready(t) // New, the TSDB open and the restore behind
			st := &markSeer{AppendableV2: e.db, mark: path + markSuffix}
			if tc.mark != nil {
				b, err := os.ReadFile(path + markSuffix)
				require.NoError(t, err, "no sample taken yet: the mark stays")
				require.Equal(t, tc.mark, b)
				require.NoError(t, commitOne(e.p, st, "omen_own", t0.UnixMilli()))
				require.FileExists(t, path+markSuffix, "omen's own series are not scored")
				st.sawMark = false
			}
			err := commitOne(e.p, st, "load", t0.UnixMilli())
			if tc.dir {
				require.ErrorContains(t, err, "remove the model snapshot's current mark")
				require.DirExists(t, path+markSuffix)
				require.Empty(t, samplesAt(t, e.db, eq("__name__", "load")), "the sample refused is not stored")
				return
			}
			require.NoError(t, err)
			require.False(t, st.sawMark, "the mark removed before the TSDB stores the sample")
			require.NoFileExists(t, path+markSuffix)
		})
	}
}

// commitOne commits one sample of a series named name through p's tap
// onto st.
func commitOne(p *Pipeline, st storage.AppendableV2, name string, ts int64) error {
	a := p.Tap(st).AppenderV2(context.Background())
	if _, err := a.Append(0, labels.FromStrings("__name__", name), 0, ts, 1, nil, nil, storage.AOptions{}); err != nil {
		_ = a.Rollback()
		return err
	}
	return a.Commit()
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
				require.NoError(t, commitOne(p, st, "load", ts))
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

// TestUnremovableMarkRefusesUntilRemovable: a current mark the first
// commit cannot remove has every remote write answered 503, saying why,
// and the sample not stored; each later request tries the removal again,
// so once it can be removed (the operator fixed the directory) writes are
// taken without a restart. Two ways the removal fails: a non-empty
// directory in the mark's place (ENOTEMPTY, for any user), and the
// snapshot's directory made immutable (chattr +i: EPERM even for root,
// which file modes would not stop; skipped where chattr cannot set it).
func TestUnremovableMarkRefusesUntilRemovable(t *testing.T) {
	for _, tc := range []struct {
		name string
		// breakIt makes the mark at mark unremovable and returns what
		// makes it removable again, or skips.
		breakIt func(t *testing.T, mark string) (fix func() error)
	}{
		{"a directory in its place", func(t *testing.T, mark string) func() error {
			x := filepath.Join(mark, "x")
			require.NoError(t, os.MkdirAll(x, 0o755))
			return func() error { return os.Remove(x) }
		}},
		{"an immutable directory", func(t *testing.T, mark string) func() error {
			require.NoError(t, os.WriteFile(mark, []byte("0123456789abcdefghij"), 0o644))
			dir := filepath.Dir(mark)
			if b, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
				t.Skipf("chattr +i: %v: %s", err, b)
			}
			fix := func() error { return exec.Command("chattr", "-i", dir).Run() }
			t.Cleanup(func() { _ = fix() }) // else TempDir's removal fails
			return fix
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, SnapshotFile)
			require.NoError(t, os.WriteFile(path, []byte("snapshot"), 0o644))
			fix := tc.breakIt(t, path+markSuffix)
			e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
			e.ready(t)
			h := omentsdb.NewWriteHandler(nil, nil, e.app, omentsdb.DefaultWriteOptions())
			write := func(ts int64) *httptest.ResponseRecorder {
				req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
					Labels:  []prompb.Label{{Name: "__name__", Value: "load"}},
					Samples: []prompb.Sample{{Timestamp: ts, Value: 1}},
				}}}
				raw, err := req.Marshal()
				require.NoError(t, err)
				r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
				r.Header.Set("Content-Encoding", "snappy")
				r.Header.Set("Content-Type", "application/x-protobuf")
				r.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				return rec
			}
			for i := range 2 { // refused again, not once
				rec := write(t0.UnixMilli() + int64(i)*stepMs)
				require.Equal(t, http.StatusServiceUnavailable, rec.Code, "%s", rec.Body)
				require.Contains(t, rec.Body.String(), "remove the model snapshot's current mark")
			}
			require.Empty(t, samplesAt(t, e.db, eq("__name__", "load")), "the samples refused are not stored")
			require.NoError(t, fix())
			rec := write(t0.UnixMilli() + 2*stepMs)
			require.Equal(t, http.StatusNoContent, rec.Code, "%s", rec.Body)
			require.NoFileExists(t, path+markSuffix)
			require.NoDirExists(t, path+markSuffix)
			require.Equal(t, []int64{t0.UnixMilli() + 2*stepMs}, samplesAt(t, e.db, eq("__name__", "load")))
		})
	}
}
