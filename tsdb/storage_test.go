package tsdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/compression"
	"github.com/stretchr/testify/require"
)

// TestStorageFailureIsRetriableAndRecovers injects the errors a full or
// read-only file system gives, at the storage layer's two seams (the commit
// and the health probe), and checks the property end to end through the
// write handler: writes answer 503 with Retry-After, Ready is false, what
// was stored before is intact, and once the fault is gone omen takes writes
// again by itself; after a reopen every acknowledged sample is there.
// e2e/durability_disk_test.go checks the same against a real full tmpfs.
func TestStorageFailureIsRetriableAndRecovers(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"disk full", syscall.ENOSPC},
		{"read-only", syscall.EROFS},
		{"I/O error", syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg := prometheus.NewRegistry()
			s := NewStorage(nil, reg, Options{Path: dir, ProbeInterval: 5 * time.Millisecond})
			require.NoError(t, s.Open())
			defer func() { require.NoError(t, s.Close()) }()
			require.True(t, s.Ready())
			h := NewWriteHandler(nil, nil, s, DefaultWriteOptions())

			// A WAL write that fails partway leaves half a record at the
			// WAL's end, which the next replay cuts the WAL at, dropping
			// all after it. The fault is injected above the file system, so
			// each failed commit writes that half record by hand, where the
			// real failure would: before the storage hears of it. The probe
			// sees the fault only once a commit has, so that the first write
			// after it fails in Commit rather than being refused up front
			// (which would leave no torn record, nothing to repair).
			var broken, committed atomic.Bool
			fault := func(op string) error {
				switch {
				case !broken.Load():
					return nil
				case op == "commit":
					tornWALRecord(t, dir)
					committed.Store(true)
					return tc.err
				case committed.Load():
					return tc.err
				}
				return nil
			}
			s.fault.Store(&fault)

			now := time.Now().UnixMilli()
			write := func(i int) *http.Response {
				body := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(now+int64(i), float64(i), "__name__", "m")}})
				return post(t, h, body, nil).Result()
			}
			acked := map[int64]float64{}
			for i := 0; i < 10; i++ {
				require.Equal(t, http.StatusNoContent, write(i).StatusCode)
				acked[now+int64(i)] = float64(i)
			}

			broken.Store(true)
			// The first write after the fault fails in Commit; the ones
			// after it are refused up front. Both are retriable.
			for i := 10; i < 13; i++ {
				resp := write(i)
				require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
				require.NotEmpty(t, resp.Header.Get("Retry-After"))
				require.False(t, s.Ready(), "ready while the storage fails")
			}
			require.Contains(t, s.Failing(), tc.err.Error())
			require.Equal(t, 0.0, testutil.ToFloat64(s.healthM))
			// The probe keeps seeing the fault: still not ready.
			time.Sleep(30 * time.Millisecond)
			require.False(t, s.Ready())
			require.Equal(t, acked, samples(t, s, "m"), "what was stored before the fault is intact")

			broken.Store(false)
			require.Eventually(t, s.Ready, 5*time.Second, 5*time.Millisecond, "recovers once the fault is gone")
			require.Equal(t, 1.0, testutil.ToFloat64(s.healthM))
			require.Equal(t, 1.0, testutil.ToFloat64(s.reopens), "the WAL repaired before writes are taken")
			for i := 13; i < 16; i++ {
				require.Equal(t, http.StatusNoContent, write(i).StatusCode)
				acked[now+int64(i)] = float64(i)
			}
			got := samples(t, s, "m")
			for ts, v := range acked {
				require.Equal(t, v, got[ts])
			}

			// And after a restart on the same path.
			require.NoError(t, s.Close())
			s = NewStorage(nil, nil, Options{Path: dir})
			require.NoError(t, s.Open())
			got = samples(t, s, "m")
			for ts, v := range acked {
				require.Equal(t, v, got[ts], "acknowledged sample at %d after reopen", ts)
			}
		})
	}
}

// TestStorageFreeSpaceReserve: below the free-space reserve the storage
// refuses writes with ErrStorageFailing before the file system is full.
func TestStorageFreeSpaceReserve(t *testing.T) {
	s := NewStorage(nil, nil, Options{Path: t.TempDir(), MinFreeBytes: 1 << 62})
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	require.False(t, s.Ready())
	require.Contains(t, s.Failing(), "below the reserve")
	_, err := s.AppenderV2(t.Context()).Append(0, labels.FromStrings("__name__", "m"), 0, 1, 1, nil, nil, storage.AppendV2Options{})
	require.True(t, errors.Is(err, ErrStorageFailing), "%v", err)

	// A reserve near the space really free, not only an impossible one, is
	// compared with it: half as much again fails, half of it does not
	// (margins wide enough for other writers on the file system).
	dir := t.TempDir()
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	free := int64(st.Bavail) * int64(st.Bsize)
	for _, tc := range []struct {
		reserve int64
		ready   bool
	}{{free / 2 * 3, false}, {free / 2, true}} {
		s := NewStorage(nil, nil, Options{Path: t.TempDir(), MinFreeBytes: tc.reserve})
		require.NoError(t, s.Open())
		require.Equal(t, tc.ready, s.Ready(), "reserve %d with %d bytes free: %s", tc.reserve, free, s.Failing())
		require.NoError(t, s.Close())
	}

	require.Equal(t, uint64(64<<20), (&Storage{}).reserve(100<<30), "large disks keep 64 MiB")
	require.Equal(t, uint64(5<<20), (&Storage{}).reserve(100<<20), "small ones 5%")
	require.Zero(t, (&Storage{opts: Options{MinFreeBytes: -1}}).reserve(100<<20), "negative: no check")
}

// TestStorageRetention: the time retention in force, as Prometheus sets
// it: --storage.tsdb.retention.time=0 with a size is no time limit (it kept
// 15 days, while runtimeinfo showed the size alone), and with neither, 15
// days; runtimeinfo shows what is in force.
func TestStorageRetention(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name    string
		time    time.Duration
		size    int64
		limit   float64 // prometheus_tsdb_retention_limit_seconds
		runtime string  // runtimeinfo's storageRetention
	}{
		{"default", 15 * day, 0, (15 * day).Seconds(), "15d"},
		{"time", 2 * day, 0, (2 * day).Seconds(), "2d"},
		{"time and size", 2 * day, 1 << 30, (2 * day).Seconds(), "2d or 1GiB"},
		{"size alone", 0, 1 << 30, 0, "1GiB"},
		{"neither", 0, 0, (15 * day).Seconds(), "15d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			s := NewStorage(nil, reg, Options{Path: t.TempDir(), MinFreeBytes: -1, RetentionTime: tc.time, RetentionSize: tc.size})
			require.NoError(t, s.Open())
			defer func() { require.NoError(t, s.Close()) }()
			mfs, err := reg.Gather()
			require.NoError(t, err)
			limit := -1.0
			for _, mf := range mfs {
				if mf.GetName() == "prometheus_tsdb_retention_limit_seconds" {
					limit = mf.GetMetric()[0].GetGauge().GetValue()
				}
			}
			require.Equal(t, tc.limit, limit)
			require.Equal(t, tc.runtime, retention(retentionTime(tc.time, tc.size), tc.size))
		})
	}
}

// TestStorageIsolation: isolation is off unless asked for. The head's
// append IDs (its high watermark) only advance with isolation on.
func TestStorageIsolation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		isolation bool
	}{{"default off", false}, {"on", true}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			s := NewStorage(nil, reg, Options{Path: t.TempDir(), MinFreeBytes: -1, Isolation: tc.isolation})
			require.NoError(t, s.Open())
			defer func() { require.NoError(t, s.Close()) }()
			for i := range 3 {
				app := s.AppenderV2(t.Context())
				_, err := app.Append(0, labels.FromStrings("__name__", "m"), 0, int64(i+1), 1, nil, nil, storage.AppendV2Options{})
				require.NoError(t, err)
				require.NoError(t, app.Commit())
			}
			mfs, err := reg.Gather()
			require.NoError(t, err)
			var high float64 = -1
			for _, mf := range mfs {
				if mf.GetName() == "prometheus_tsdb_isolation_high_watermark" {
					high = mf.GetMetric()[0].GetGauge().GetValue()
				}
			}
			if tc.isolation {
				require.Equal(t, 3.0, high)
			} else {
				require.Zero(t, high)
			}
		})
	}
}

// TestOnSeriesDeleted: the references of series the head garbage-collects
// after a compaction reach the OnSeriesDeleted hook, so what is keyed by
// them (the scorers' models) can go too.
func TestOnSeriesDeleted(t *testing.T) {
	s := openTestStorage(t)
	var mu sync.Mutex
	var got []storage.SeriesRef
	s.OnSeriesDeleted(func(refs []storage.SeriesRef) {
		mu.Lock()
		got = append(got, refs...)
		mu.Unlock()
	})
	const step = int64(15_000)
	t0 := time.Now().Add(-5 * time.Hour).UnixMilli()
	app := s.AppenderV2(context.Background())
	gone, err := app.Append(0, labels.FromStrings("__name__", "gone"), 0, t0, 1, nil, nil, storage.AOptions{})
	require.NoError(t, err)
	for i := range int64(4 * 240) { // four hours of another series: the head compacts its first two
		_, err = app.Append(0, labels.FromStrings("__name__", "stays"), 0, t0+i*step, 1, nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	require.NoError(t, s.DB().Compact(context.Background()))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []storage.SeriesRef{gone}, got)
}

// tornWALRecord appends to the newest WAL segment the start of a record
// whose body never came, as a write cut short by a full disk leaves it.
func tornWALRecord(t *testing.T, dir string) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "wal", "0*"))
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	// Type "full", length 64, a checksum, then 9 bytes of the 64.
	_, err = f.Write([]byte{1, 0, 64, 0xde, 0xad, 0xbe, 0xef, 2, 0, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// TestReopenKeepsTSDBMetrics: the TSDB's own metrics are on the registry,
// and once after a reopen (which registers them anew) rather than twice or
// refused.
func TestReopenKeepsTSDBMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := NewStorage(nil, reg, Options{Path: t.TempDir()})
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	count := func() int {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		n := 0
		for _, mf := range mfs {
			if mf.GetName() == "prometheus_tsdb_head_series" {
				n += len(mf.GetMetric())
			}
		}
		return n
	}
	require.Equal(t, 1, count())
	require.NoError(t, s.reopen())
	require.Equal(t, 1, count())
	require.True(t, s.Opened())
}

func TestRoom(t *testing.T) {
	s := NewStorage(nil, nil, Options{Path: t.TempDir()})
	require.NoError(t, s.Room(1<<10))
	require.ErrorIs(t, s.Room(1<<62), syscall.ENOSPC)
	s = NewStorage(nil, nil, Options{Path: t.TempDir(), MinFreeBytes: 1 << 62})
	require.ErrorIs(t, s.Room(0), syscall.ENOSPC, "the reserve counts")
}

// TestStorageWritableThroughReplay: omen_storage_writable reads 1 while the
// TSDB opens and replays its WAL on a healthy path, as it did before the
// restart: it read 0 until the replay ended (a restart measured with
// Prometheus 2.42 scraping omen showed omen_storage_writable 0, and
// OmenStorageFailing pending, during it). The fault hook runs at each probe
// and sees the gauge as the replay left it at the last.
func TestStorageWritableThroughReplay(t *testing.T) {
	dir := t.TempDir()
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, ProbeInterval: time.Hour})
	var seen []float64
	fault := func(string) error {
		seen = append(seen, testutil.ToFloat64(s.healthM))
		return nil
	}
	s.fault.Store(&fault)
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	require.NotEmpty(t, seen)
	require.Equal(t, 1.0, seen[len(seen)-1], "the gauge while the TSDB opened (at each probe: %v)", seen)
	require.Equal(t, 1.0, testutil.ToFloat64(s.healthM))
}

// TestStorageWALCompression: the WAL is written compressed as configured
// (fewer bytes than plain for the same samples), and a WAL written under one
// setting is replayed whole under another: an upgrade that turns the
// compression on, or a rollback that turns it off, loses nothing.
func TestStorageWALCompression(t *testing.T) {
	const nSeries, nSamples = 200, 60
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	write := func(t *testing.T, dir string, c compression.Type) int64 {
		s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1, WALCompression: c})
		require.NoError(t, s.Open())
		for i := range nSamples {
			app := s.AppenderV2(t.Context())
			for j := range nSeries {
				lset := labels.FromStrings("__name__", "m", "instance", fmt.Sprintf("host-%03d:9100", j), "job", "node")
				_, err := app.Append(0, lset, 0, t0+int64(i)*15000, float64(i*j%7), nil, nil, storage.AppendV2Options{})
				require.NoError(t, err)
			}
			require.NoError(t, app.Commit())
		}
		require.NoError(t, s.Close())
		var size int64
		require.NoError(t, filepath.WalkDir(filepath.Join(dir, "wal"), func(_ string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			size += fi.Size()
			return err
		}))
		return size
	}
	countSamples := func(t *testing.T, dir string, c compression.Type) int {
		s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: dir, MinFreeBytes: -1, WALCompression: c})
		require.NoError(t, s.Open())
		defer func() { require.NoError(t, s.Close()) }()
		q, err := s.Querier(math.MinInt64, math.MaxInt64)
		require.NoError(t, err)
		defer q.Close()
		n := 0
		ss := q.Select(t.Context(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
		for ss.Next() {
			it := ss.At().Iterator(nil)
			for it.Next() != chunkenc.ValNone {
				n++
			}
		}
		require.NoError(t, ss.Err())
		return n
	}
	plainDir := t.TempDir()
	plain := write(t, plainDir, compression.None)
	for _, tc := range []struct {
		write, read compression.Type
	}{
		{compression.Snappy, compression.None},
		{compression.Zstd, compression.Snappy},
		{compression.None, compression.Snappy},
	} {
		t.Run(tc.write+" then "+tc.read, func(t *testing.T) {
			dir := t.TempDir()
			size := write(t, dir, tc.write)
			t.Logf("WAL written %s: %d bytes, plain %d", tc.write, size, plain)
			if tc.write == compression.None {
				require.Equal(t, plain, size)
			} else {
				require.Less(t, float64(size), 0.8*float64(plain), "a compressed WAL is smaller than a plain one")
			}
			require.Equal(t, nSeries*nSamples, countSamples(t, dir, tc.read))
		})
	}
}

// TestProbeKeepsFailureSeenDuringItsCheck: a commit that fails while a
// probe checks the path is neither cleared nor repaired by that probe,
// which found the path writable before the failure: the next probe
// decides. (A probe that cleared it took writes again at once, on a path
// nobody had checked since; one that repaired it reopened the TSDB there,
// a WAL replay on a path that may be full, and queries failed meanwhile
// while the fault lasted: both races made
// TestStorageFailureIsRetriableAndRecovers flaky.)
func TestProbeKeepsFailureSeenDuringItsCheck(t *testing.T) {
	s := NewStorage(nil, nil, Options{Path: t.TempDir(), ProbeInterval: time.Hour})
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	require.True(t, s.Ready())

	var once atomic.Bool
	fault := func(op string) error {
		if op == "probe" && once.CompareAndSwap(false, true) {
			s.commitFailed(s.db.Load(), syscall.EIO)
		}
		return nil
	}
	s.fault.Store(&fault)
	s.probe()
	require.False(t, s.Ready(), "cleared by the probe it failed during")
	require.Equal(t, 0.0, testutil.ToFloat64(s.reopens), "repaired by the probe it failed during")
	s.probe()
	require.True(t, s.Ready(), "cleared by the next probe")
	require.Equal(t, 1.0, testutil.ToFloat64(s.reopens), "repaired by the next probe")
}

// TestCommitOnClosedDBIsNoStorageFailure: an appender opened before a
// repair reopened the TSDB (a scorer's outputs, a request, in flight when
// the commit that asked for the repair failed) commits onto the closed DB,
// which fails ("file already closed"): its samples are not acknowledged,
// and nothing says the storage fails. It made the reopened storage refuse
// writes until the probe after, counted a commit failure, and, when it came
// during the reopen's WAL replay, asked for a second repair: the next probe
// replayed the WAL once more, writes refused throughout, and the scorers
// started every series again once more.
func TestCommitOnClosedDBIsNoStorageFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		during bool // the straggler commits during the reopen's replay, else after it
	}{
		{"during the reopen", true},
		{"after the reopen", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: t.TempDir(), ProbeInterval: time.Hour})
			require.NoError(t, s.Open())
			defer func() { require.NoError(t, s.Close()) }()
			ctx := context.Background()
			ls := labels.FromStrings("__name__", "x")
			straggler := s.AppenderV2(ctx)
			_, err := straggler.Append(0, ls, 0, 1000, 1, nil, nil, storage.AOptions{})
			require.NoError(t, err)

			var once atomic.Bool
			fault := func(op string) error {
				if op == "commit" && once.CompareAndSwap(false, true) {
					return syscall.EIO
				}
				return nil
			}
			s.fault.Store(&fault)
			a := s.AppenderV2(ctx)
			_, err = a.Append(0, ls, 0, 2000, 2, nil, nil, storage.AOptions{})
			require.NoError(t, err)
			require.Error(t, a.Commit())
			require.False(t, s.Ready(), "the failed commit asks for a repair")

			var stragglerErr error
			commit := func() { s.openHook, stragglerErr = nil, straggler.Commit() }
			if tc.during {
				s.openHook = commit
			}
			s.probe() // repairs
			if !tc.during {
				commit()
			}
			require.Error(t, stragglerErr, "committed onto the closed DB: not acknowledged")
			require.True(t, s.Ready(), "the reopened storage takes writes")
			require.Equal(t, 1.0, testutil.ToFloat64(s.failM.WithLabelValues("commit")), "the failed commit alone")
			s.probe()
			require.Equal(t, 1.0, testutil.ToFloat64(s.reopens), "one repair")
		})
	}
}

// TestAwaitRoom: before Open, omen waits while the path's file system is
// below the reserve (a WAL replay there panics in the TSDB's head-chunk
// writer: omen killed on a full disk panicked at every start), reporting
// the path failing meanwhile; it returns once there is room, at once for
// any other fault (Open's to report), and with ctx's error at shutdown.
func TestAwaitRoom(t *testing.T) {
	full := fmt.Errorf("test: %w", syscall.ENOSPC)
	for _, tc := range []struct {
		name    string
		minFree int64
		faults  []error // the probes' faults in turn, nil after
		cancel  bool
		probes  int // probes that found no room
		err     error
	}{
		{name: "room", minFree: -1},
		{name: "full until space is freed", minFree: -1, faults: []error{full, full, full}, probes: 3},
		{name: "below the reserve until shutdown", minFree: 1 << 62, cancel: true, probes: 2, err: context.Canceled},
		{name: "another fault is Open's", minFree: -1, faults: []error{errors.New("test: read-only")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: t.TempDir(), MinFreeBytes: tc.minFree, ProbeInterval: time.Millisecond})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			n := 0
			fault := func(string) error {
				n++
				if tc.cancel && n == tc.probes { // the probe goes on to find no room
					cancel()
				}
				if n <= len(tc.faults) {
					return tc.faults[n-1]
				}
				return nil
			}
			s.fault.Store(&fault)
			err := s.AwaitRoom(ctx)
			require.ErrorIs(t, err, tc.err)
			require.Equal(t, float64(tc.probes), testutil.ToFloat64(s.failM.WithLabelValues("probe")))
			if tc.probes > 0 {
				require.Contains(t, s.Failing(), "no space left on device", "the wait is reported as a failing path")
				require.Equal(t, 0.0, testutil.ToFloat64(s.healthM))
			}
			if tc.err != nil {
				return
			}
			require.NoError(t, s.Open())
			defer func() { require.NoError(t, s.Close()) }()
			if tc.name != "another fault is Open's" {
				require.True(t, s.Ready(), "ready once there is room: %s", s.Failing())
			}
		})
	}
}

// TestOpenLogsNoDisabledCompactions: a start logs the TSDB's own lines
// (the WAL replay) and omen's "TSDB ready", but not the library's
// "Compactions disabled", which openDB's DisableCompactions call logged at
// every start and an operator read as a TSDB that never compacts: omen
// compacts on its own loop (compactLoop). A reopen after a failed write
// goes through openDB too.
func TestOpenLogsNoDisabledCompactions(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := NewStorage(logger, nil, Options{Path: t.TempDir()})
	require.NoError(t, s.Open())
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.NoError(t, s.reopen())
	for _, tc := range []struct {
		line string
		want int
	}{
		{"Compactions disabled", 0},
		{"WAL replay completed", 2},
		{"TSDB ready", 1},
	} {
		t.Run(tc.line, func(t *testing.T) {
			require.Equal(t, tc.want, strings.Count(buf.String(), tc.line), buf.String())
		})
	}
}

// TestStorageFailuresCountedFromZero: omen_storage_failures_total is on
// /metrics at 0 for every op from the start, as a Prometheus counter of
// known labels is, so that increase() and rate() see a first failure: on
// abf5690 a series appeared only with its op's first failure, at 1, which
// increase() over it reads as 0.
func TestStorageFailuresCountedFromZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := NewStorage(nil, reg, Options{Path: t.TempDir()})
	require.NotNil(t, s)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP omen_storage_failures_total Storage failures that made omen refuse writes, by where they were seen (commit, probe, reopen).
# TYPE omen_storage_failures_total counter
omen_storage_failures_total{op="commit"} 0
omen_storage_failures_total{op="probe"} 0
omen_storage_failures_total{op="reopen"} 0
`), "omen_storage_failures_total"))
}
