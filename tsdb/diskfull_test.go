package tsdb

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/syncbuf"
)

// compactPass has compactLoop run a pass and returns once that pass has
// ended: compactc holds one request, and the loop takes the next only
// after its pass, so the third of three requests goes in only once the
// loop has taken the second, after the first's pass.
func compactPass(t *testing.T, s *Storage) {
	t.Helper()
	for range 3 {
		select {
		case s.compactc <- struct{}{}:
		case <-time.After(30 * time.Second):
			t.Fatal("compactLoop took no compaction request within 30s")
		}
	}
}

// blockHeadChunks makes the next head chunk file's creation fail, as a
// full or read-only file system does: a file stands where the chunk disk
// mapper lists its directory for the next file's number. The TSDB panics
// on that error (handleChunkWriteError). The returned func puts the
// directory back.
func blockHeadChunks(t *testing.T, dir string) (unblock func()) {
	t.Helper()
	p := filepath.Join(dir, "chunks_head")
	require.NoError(t, os.Rename(p, p+".away"))
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	return func() {
		require.NoError(t, os.Remove(p))
		require.NoError(t, os.Rename(p+".away", p))
	}
}

// failWithoutHeadChunkRoom makes s fail as on a full disk: its probe
// finds no space, and no head chunk file can be made (blockHeadChunks).
// The returned func puts the chunk directory back; the fault stays.
func failWithoutHeadChunkRoom(t *testing.T, s *Storage) (unblock func()) {
	t.Helper()
	unblock = blockHeadChunks(t, s.opts.Path)
	full := func(op string) error {
		if op == "probe" {
			return fmt.Errorf("test: %w", syscall.ENOSPC)
		}
		return nil
	}
	s.fault.Store(&full)
	require.Eventually(t, func() bool { return s.Failing() != "" }, 30*time.Second, 5*time.Millisecond)
	return unblock
}

// appendTwoChunks commits 200 samples to each of 10 series: two head
// chunks each (120 samples a chunk), the first one to m-map; 100 minutes,
// not a range to compact. It returns the samples by series name.
func appendTwoChunks(t *testing.T, s *Storage) map[string]int {
	t.Helper()
	t0 := time.Now().Add(-2 * time.Hour).UnixMilli()
	want := map[string]int{}
	app := s.AppenderV2(t.Context())
	for i := range 200 {
		for j := range 10 {
			name := fmt.Sprint("m", j)
			_, err := app.Append(0, labels.FromStrings("__name__", name), 0, t0+int64(i)*30000, float64(i), nil, nil, storage.AppendV2Options{})
			require.NoError(t, err)
			want[name]++
		}
	}
	require.NoError(t, app.Commit())
	return want
}

// TestFailingPathNoHeadChunkWrites: while the storage path is failing,
// compactLoop does not m-map the head's full chunks, whose write error the
// TSDB answers with a panic. omen on a real tmpfs filled to 0 bytes
// panicked at the loop's next tick ("preallocate: no space left on
// device", from DB.ForceHeadMMap in compactLoop) within a minute of the
// disk filling, although it refused writes and was meant to wait for room.
// Here the write error is a file where the chunk files' directory was; the
// old loop crashed the test binary with that panic. Once the path is
// healthy again the chunks are m-mapped at the next pass.
func TestFailingPathNoHeadChunkWrites(t *testing.T) {
	dir := t.TempDir()
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1, ProbeInterval: 10 * time.Millisecond})
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	appendTwoChunks(t, s)

	unblock := failWithoutHeadChunkRoom(t, s)
	compactPass(t, s) // old: panic: next sequence file: ... not a directory

	// Room again: the chunks are m-mapped.
	unblock()
	s.fault.Store(nil)
	require.Eventually(t, s.Ready, 30*time.Second, 5*time.Millisecond)
	compactPass(t, s)
	// The TSDB's chunk write queue writes the m-mapped chunks behind the
	// pass (a worker of its own): on a loaded machine the file came after
	// the pass returned, so it is awaited, not stat'ed once.
	require.Eventually(t, func() bool {
		fi, err := os.Stat(filepath.Join(dir, "chunks_head", "000001"))
		return err == nil && fi.Mode().IsRegular() && fi.Size() > 8 // more than the chunk file's header
	}, 30*time.Second, 10*time.Millisecond, "head chunks m-mapped once the path is healthy")
}

// TestCloseOnFailingPath: a close while the path is failing leaves the
// TSDB to the exit rather than closing it, and loses no committed sample.
// The TSDB's close m-maps the head's full chunks and panics on the write
// error: omen sent SIGTERM on a real tmpfs filled to 0 bytes panicked in
// Storage.close ("preallocate: no space left on device", from Head.Close)
// and exited 2. The old close panicked here, the write error a file where
// the chunk files' directory was. The samples are read back from a copy of
// the path, as the next start (another process) reads it.
func TestCloseOnFailingPath(t *testing.T) {
	dir := t.TempDir()
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1, ProbeInterval: 10 * time.Millisecond})
	require.NoError(t, s.Open())
	want := appendTwoChunks(t, s)

	unblock := failWithoutHeadChunkRoom(t, s)
	require.Error(t, s.Close(), "the close says it left the TSDB open") // old: panic
	unblock()

	// The next start: the path as the exit leaves it.
	next := t.TempDir()
	require.NoError(t, os.CopyFS(next, os.DirFS(dir)))
	require.Equal(t, want, storedSamples(t, next), "every committed sample replayed")
}

// TestCompactionFailureBacksOff: a head compaction that fails (its block
// cannot be written: the disk has room above the reserve but not for the
// block) is retried after a backoff, as the TSDB's own loop does (1 s
// doubling to 1 min), not at the next commit. Every commit asks for a
// compaction while the head holds a range to compact, and the old loop
// wrote the block again at each (a 2 h block of a large head: seconds of
// CPU and the disk filled to the reserve each time, a 503 for writes
// meanwhile): here 1 attempt and 1 failure counted over 50 commits,
// where the old loop made one per commit. The retry after the backoff
// writes the block.
func TestCompactionFailureBacksOff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backoff  time.Duration
		failures int32 // the block writes that fail
	}{{"within the backoff", time.Hour, math.MaxInt32}, {"after it", time.Millisecond, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg := prometheus.NewRegistry()
			s := NewStorage(nil, reg, Options{Path: dir, MinFreeBytes: -1})
			s.compactBackoff = tc.backoff
			var attempts atomic.Int32
			s.compactHook = func(context.Context) error {
				if attempts.Add(1) <= tc.failures {
					return fmt.Errorf("write block: %w", syscall.ENOSPC)
				}
				return nil
			}
			require.NoError(t, s.Open())
			defer func() { require.NoError(t, s.Close()) }()
			appendCompactable(t, s)
			require.Eventually(t, func() bool { return attempts.Load() > 0 }, 30*time.Second, 5*time.Millisecond)
			compactPass(t, s) // the failed one ended
			if tc.backoff == time.Millisecond {
				require.Eventually(t, func() bool {
					compactPass(t, s)
					return len(blockDirs(t, dir)) > 0
				}, 30*time.Second, 5*time.Millisecond, "the block written at a retry")
				return
			}
			last := s.DB().Head().MaxTime()
			for i := range 50 {
				app := s.AppenderV2(t.Context())
				_, err := app.Append(0, labels.FromStrings("__name__", "sa"), 0, last+int64(i+1)*15000, 1, nil, nil, storage.AppendV2Options{})
				require.NoError(t, err)
				require.NoError(t, app.Commit())
			}
			compactPass(t, s)
			require.Equal(t, int32(1), attempts.Load(), "compactions attempted")
			require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP prometheus_tsdb_compactions_failed_total Total number of compactions that failed for the partition.
# TYPE prometheus_tsdb_compactions_failed_total counter
prometheus_tsdb_compactions_failed_total 1
`), "prometheus_tsdb_compactions_failed_total"))
			require.Empty(t, blockDirs(t, dir))
		})
	}
}

// TestNoHeadChunkRoomLoggedOnce: head chunks kept in memory for want of
// room are logged when that begins, and when they are written again, as
// the storage's failure and recovery are; not at every pass. The old loop
// warned at each (15 warnings over 15 passes here): once a minute for as
// long as the disk stayed full, a warning the "Storage failing" error had
// already given.
func TestNoHeadChunkRoomLoggedOnce(t *testing.T) {
	var buf syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	dir := t.TempDir()
	s := NewStorage(logger, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1, ProbeInterval: 10 * time.Millisecond})
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	appendTwoChunks(t, s)

	unblock := failWithoutHeadChunkRoom(t, s)
	for range 5 {
		compactPass(t, s)
	}
	unblock()
	s.fault.Store(nil)
	require.Eventually(t, s.Ready, 30*time.Second, 5*time.Millisecond)
	for range 2 {
		compactPass(t, s)
	}
	require.Equal(t, 1, strings.Count(buf.String(), "Head chunks kept in memory"), buf.String())
	require.Equal(t, 1, strings.Count(buf.String(), "Head chunks written again"), buf.String())
}

// TestStrayHeadChunkProbeRemovedAtOpen: a head chunk room probe left in
// chunks_head by a crash between its creation and removal (see
// headChunkRoom) is removed when the storage opens. The TSDB's open
// ignores it (the chunk disk mapper lists only numbered files), but its
// size metric walks the whole directory: the stray's 4 MiB were counted
// in prometheus_tsdb_head_chunks_storage_size_bytes, and held on disk,
// until compactLoop's first pass (a minute after the open). Here the stray
// is put in a TSDB's directory after a clean close; the open before left
// it and took it into the metric.
func TestStrayHeadChunkProbeRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1})
	require.NoError(t, s.Open())
	appendTwoChunks(t, s)
	require.NoError(t, s.Close())

	stray := filepath.Join(dir, "chunks_head", probeFile)
	require.NoError(t, os.WriteFile(stray, make([]byte, headChunkRoomBytes), 0o644))
	reg := prometheus.NewRegistry()
	s = NewStorage(nil, reg, Options{Path: dir, MinFreeBytes: -1})
	require.NoError(t, s.Open(), "the TSDB opens beside a stray probe")
	defer func() { require.NoError(t, s.Close()) }()
	n, err := testutil.GatherAndCount(reg, "prometheus_tsdb_head_chunks_storage_size_bytes")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_tsdb_head_chunks_storage_size_bytes" {
			require.Less(t, mf.GetMetric()[0].GetGauge().GetValue(), float64(headChunkRoomBytes), "the stray is not counted")
		}
	}
	require.NoFileExists(t, stray)
}

// TestSecondOpenLeavesHeadChunkProbe: a second storage opened on a path
// another holds fails on the TSDB's lock without removing the first's head
// chunk room probe, which may be the one the first is allocating (see
// headChunkRoom; its removal then failed, and the first kept its head
// chunks in memory for a pass): the stray's removal waits for the lock.
func TestSecondOpenLeavesHeadChunkProbe(t *testing.T) {
	dir := t.TempDir()
	first := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1})
	require.NoError(t, first.Open())
	defer func() { require.NoError(t, first.Close()) }()

	probe := filepath.Join(dir, "chunks_head", probeFile)
	require.NoError(t, os.WriteFile(probe, []byte("the first's"), 0o644))
	second := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1})
	err := second.Open()
	require.ErrorContains(t, err, "lock")
	require.FileExists(t, probe, "the first's probe left alone")
}
