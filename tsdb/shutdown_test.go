package tsdb

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
)

// compactableSeries is how many series appendCompactable writes.
const compactableSeries = 3

// appendCompactable commits four hours of samples of compactableSeries
// series in one commit, which leaves the head compactable (and asks for a
// compaction); it returns the samples committed per series.
func appendCompactable(t *testing.T, s *Storage) map[string]int {
	t.Helper()
	const block = tsdb.DefaultBlockDuration
	t0 := (time.Now().Add(-12*time.Hour).UnixMilli() / block) * block
	want := map[string]int{}
	app := s.AppenderV2(t.Context())
	for ts := t0; ts <= t0+4*3_600_000; ts += 15_000 {
		for i := range compactableSeries {
			name := "s" + string(rune('a'+i))
			_, err := app.Append(0, labels.FromStrings("__name__", name), 0, ts, float64(ts), nil, nil, storage.AOptions{})
			require.NoError(t, err)
			want[name]++
		}
	}
	require.NoError(t, app.Commit())
	return want
}

// storedSamples opens the TSDB at dir and counts each series' samples.
func storedSamples(t *testing.T, dir string) map[string]int {
	t.Helper()
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1})
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	q, err := s.Querier(0, time.Now().UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	got := map[string]int{}
	ss := q.Select(t.Context(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			got[ss.At().Labels().Get("__name__")]++
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return got
}

// closed waits for close's result; a close that hangs fails the test (a
// watchdog, not a measure of speed: the cases here end at once or never).
func closed(t *testing.T, close func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the TSDB's close hangs")
		return nil
	}
}

// TestCloseCancelsCompaction: a shutdown that comes while the compactor
// writes a block (minutes for a large head) waited for the block to be
// written: Close waited for the compaction loop first, and only the TSDB's
// own Close cancels its compactor. The compaction is cancelled now (the
// block is written again after the restart), and the close loses no
// committed sample.
func TestCloseCancelsCompaction(t *testing.T) {
	dir := t.TempDir()
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1})
	entered := make(chan struct{})
	s.compactHook = func(ctx context.Context) error {
		close(entered)
		<-ctx.Done() // a compaction that runs until it is cancelled
		return nil
	}
	require.NoError(t, s.Open())
	want := appendCompactable(t, s)
	<-entered
	require.NoError(t, closed(t, s.Close))
	require.Empty(t, blockDirs(t, dir), "no block was written")
	require.Equal(t, want, storedSamples(t, dir))
}

// TestShutdownBounded: a close that does not end (a compaction, a WAL
// checkpoint or an fsync on a disk that has stalled) held the shutdown
// until the pod's SIGKILL. Shutdown returns once its context is done, with
// the close left to the process's exit, which loses no committed sample:
// each commit's WAL records were written before it returned. The files as
// they are at that moment, opened as a new start opens them, hold them all.
func TestShutdownBounded(t *testing.T) {
	dir := t.TempDir()
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1})
	entered, release := make(chan struct{}), make(chan struct{})
	s.compactHook = func(context.Context) error {
		close(entered)
		<-release // a compaction that heeds no cancellation
		return nil
	}
	require.NoError(t, s.Open())
	defer func() { close(release); require.NoError(t, closed(t, s.Close)) }()
	want := appendCompactable(t, s)
	<-entered
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the shutdown's deadline has passed
	err := closed(t, func() error { return s.Shutdown(ctx) })
	require.ErrorIs(t, err, context.Canceled)

	// What a restart after the exit finds.
	after := filepath.Join(t.TempDir(), "after")
	require.NoError(t, os.CopyFS(after, os.DirFS(dir)))
	require.Equal(t, want, storedSamples(t, after))
}

// blockDirs lists the TSDB's persisted blocks in dir.
func blockDirs(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "meta.json")); e.IsDir() && err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestOpenContextStopsDuringReplay: a shutdown during the WAL replay does
// not wait for its end (the TSDB's open heeds no cancellation, and omen
// waited for a replay of minutes before it could exit): OpenContext returns
// with ctx's error while the open still runs (held by openHook, standing in
// for a long replay), leaves the storage unopened and Shutdown returns at
// once; the open, once it ends, closes the DB it opened (its directory lock
// is released: another storage opens the path). A ctx done before the open
// opens nothing.
func TestOpenContextStopsDuringReplay(t *testing.T) {
	dir := t.TempDir()
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir})
	replaying, release := make(chan struct{}), make(chan struct{})
	s.openHook = func() { close(replaying); <-release }
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.OpenContext(ctx) }()
	<-replaying
	cancel()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(time.Minute):
		close(release)
		t.Fatal("OpenContext waited for the replay after its context was cancelled")
	}
	require.False(t, s.Opened())
	require.NoError(t, s.Shutdown(t.Context()))

	// The abandoned open, once it ends, closes its DB (the directory's
	// lock). Waited for: an open of the path meanwhile raced it (it could
	// take the lock first, the abandoned open then failing on it), and
	// so did the removal of the test's directory ("remove .../lock: no
	// such file or directory", 3 runs in 600 with four copies at once).
	close(release)
	s.abandoned.Wait()
	again := NewStorage(nil, nil, Options{Path: dir})
	require.NoError(t, again.Open(), "the abandoned open closed its DB (the directory's lock)")
	require.NoError(t, again.Close())

	done, cancelDone := context.WithCancel(t.Context())
	cancelDone()
	late := NewStorage(nil, nil, Options{Path: dir})
	late.openHook = func() { t.Error("opened after its context was done") }
	require.ErrorIs(t, late.OpenContext(done), context.Canceled)
	require.NoError(t, late.Close())
}
