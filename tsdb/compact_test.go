package tsdb

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
)

// TestHeadCompactionWaitsForOpenAppenders: an appender opened before the
// head became compactable (a worker's outputs, appended through a whole
// batch while remote write moves the head on) commits a sample inside the
// range the compaction writes to a block. The compaction must wait for it:
// with isolation off the TSDB's own loop did not, the sample landed in the
// head below the block's end, and the next compaction wrote an overlapping
// block (or the truncation dropped the acknowledged sample).
func TestHeadCompactionWaitsForOpenAppenders(t *testing.T) {
	for _, tc := range []struct {
		name      string
		isolation bool
	}{{"isolation off (default)", false}, {"isolation on", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: t.TempDir(), MinFreeBytes: -1, Isolation: tc.isolation})
			require.NoError(t, s.Open())
			defer func() { require.NoError(t, s.Close()) }()
			const block = tsdb.DefaultBlockDuration
			t0 := (time.Now().Add(-12*time.Hour).UnixMilli() / block) * block
			appendOne := func(app storage.AppenderV2, name string, ts int64) {
				t.Helper()
				_, err := app.Append(0, labels.FromStrings("__name__", name), 0, ts, 1, nil, nil, storage.AOptions{})
				require.NoError(t, err)
			}
			app := s.AppenderV2(t.Context())
			appendOne(app, "fast", t0)
			require.NoError(t, app.Commit())

			late := s.AppenderV2(t.Context()) // may append from t0-1h on

			app = s.AppenderV2(t.Context())
			for ts := t0 + 15_000; ts <= t0+4*3_600_000; ts += 15_000 {
				appendOne(app, "fast", ts)
			}
			require.NoError(t, app.Commit()) // the head holds 4 h: [t0, t0+2h) is due
			db := s.DB()
			require.Eventually(t, func() bool {
				return len(db.Blocks()) > 0 || s.gate.waiting.Load() > 0
			}, 10*time.Second, time.Millisecond, "the commit asks for a compaction")

			lateT := t0 + 3_600_000
			appendOne(late, "late", lateT)
			require.NoError(t, late.Commit())

			require.Eventually(t, func() bool { return len(db.Blocks()) > 0 && s.gate.waiting.Load() == 0 },
				10*time.Second, time.Millisecond, "the compaction runs once the late appender ended")
			var blocksMax int64 = math.MinInt64
			for _, b := range db.Blocks() {
				blocksMax = max(blocksMax, b.Meta().MaxTime)
			}
			require.Equal(t, t0+block, blocksMax)
			require.GreaterOrEqual(t, db.Head().MinTime(), blocksMax, "the head holds nothing the block covers")

			q, err := s.Querier(t0, t0+block)
			require.NoError(t, err)
			defer q.Close()
			ss := q.Select(t.Context(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "late"))
			require.True(t, ss.Next(), "the late appender's acknowledged sample is stored")
			it := ss.At().Iterator(nil)
			require.NotEqual(t, 0, int(it.Next()))
			ts, _ := it.At()
			require.Equal(t, lateT, ts)
		})
	}
}

// TestHeadCompactionOutlivesLeakedAppender: an appender that never ends (a
// panic between a request's append and its commit, recovered by net/http)
// must delay the head's compaction, not stop it for good: the head would
// grow without bound.
func TestHeadCompactionOutlivesLeakedAppender(t *testing.T) {
	s := NewStorage(nil, prometheus.NewRegistry(), Options{Path: t.TempDir(), MinFreeBytes: -1})
	s.gate.limit = 100 * time.Millisecond
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	const block = tsdb.DefaultBlockDuration
	t0 := (time.Now().Add(-12*time.Hour).UnixMilli() / block) * block

	leaked := s.AppenderV2(t.Context()) // never committed nor rolled back
	_, err := leaked.Append(0, labels.FromStrings("__name__", "leaked"), 0, t0, 1, nil, nil, storage.AOptions{})
	require.NoError(t, err)

	app := s.AppenderV2(t.Context())
	for ts := t0; ts <= t0+4*3_600_000; ts += 15_000 {
		_, err := app.Append(0, labels.FromStrings("__name__", "fast"), 0, ts, 1, nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit()) // the head holds 4 h: [t0, t0+2h) is due
	require.Eventually(t, func() bool { return len(s.DB().Blocks()) > 0 }, 10*time.Second, 10*time.Millisecond,
		"the head is compacted once the wait for the leaked appender has run out")
}
