package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
)

// countingDB is a TSDB that counts the queriers opened on it: a warm
// start's reads of a new series' history and stored outputs.
type countingDB struct {
	db       *tsdb.DB
	queriers atomic.Int64
}

func (c *countingDB) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return c.db.AppenderV2(ctx)
}

func (c *countingDB) Querier(mint, maxt int64) (storage.Querier, error) {
	c.queriers.Add(1)
	return c.db.Querier(mint, maxt)
}

// DB is what omen's tsdb.Storage offers the pipeline (see dbOf).
func (c *countingDB) DB() *tsdb.DB { return c.db }

// TestWarmStartSkipsFreshSeries: a burst of series new to the TSDB (omen
// started, or a rollout, at full ingest) has no history to read, and their
// warm starts read none: the two reads each did (stored outputs, then the
// input's history, a Select of a dozen matchers over the whole head) were
// half of a new series' cost, and 100 000 of them at full load overflowed
// the scorers' queues (1.8-2.5% of a run's samples dropped unscored). A
// series with anything to read still reads it: history the head held at
// the start (a run before's, from the WAL), history written since, or a
// block within the warm start's window.
func TestWarmStartSkipsFreshSeries(t *testing.T) {
	const n, hist = 200, 10
	ls := make([]labels.Labels, n)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "burst_gauge", "instance", fmt.Sprint(i), "job", "node")
	}
	other := labels.FromStrings("__name__", "unrelated", "job", "old")
	first := t0.UnixMilli() + hist*stepMs // the pipeline's first sample of each series
	// history appends hist samples of each series before first.
	history := func(t *testing.T, db *tsdb.DB) {
		app := db.AppenderV2(context.Background())
		for k := range hist {
			for i := range ls {
				_, err := app.Append(0, ls[i], 0, t0.UnixMilli()+int64(k)*stepMs, float64(k*10), nil, nil, storage.AOptions{})
				require.NoError(t, err)
			}
		}
		require.NoError(t, app.Commit())
	}
	tests := []struct {
		name string
		// before prepares the TSDB in dir before the pipeline starts;
		// since writes to it once the pipeline runs.
		before func(t *testing.T, dir string)
		since  func(t *testing.T, db *tsdb.DB)
		reads  bool
		warmed float64
	}{
		{name: "new series", reads: false, warmed: 0},
		{name: "history in the WAL of a run before", before: func(t *testing.T, dir string) {
			db := openDB(t, dir)
			history(t, db)
			require.NoError(t, db.Close())
		}, reads: true, warmed: n * hist},
		{name: "history written since the start", since: history, reads: true, warmed: n * hist},
		{name: "a block within the window", before: func(t *testing.T, dir string) {
			db := openDB(t, dir)
			app := db.AppenderV2(context.Background())
			for k := range hist {
				_, err := app.Append(0, other, 0, t0.UnixMilli()-int64(hist-k)*stepMs, 1, nil, nil, storage.AOptions{})
				require.NoError(t, err)
			}
			require.NoError(t, app.Commit())
			require.NoError(t, db.CompactHead(tsdb.NewRangeHead(db.Head(), t0.UnixMilli()-hist*stepMs, t0.UnixMilli()-1)))
			require.NotEmpty(t, db.Blocks())
			require.NoError(t, db.Close())
		}, reads: true, warmed: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.before != nil {
				tc.before(t, dir)
			}
			db := openDB(t, dir)
			st := &countingDB{db: db}
			e := newEnvOn(t, db, st, nil, nil, nil)
			e.ready(t)
			if tc.since != nil {
				tc.since(t, db)
			}
			vs := make([]float64, n)
			for i := range vs {
				vs[i] = 1000
			}
			before := st.queriers.Load()
			e.push(first, "", ls, vs) // the burst: every series' first sample here
			e.sync()
			reads := st.queriers.Load() - before
			if tc.reads {
				require.Equal(t, int64(2*n), reads, "each warm start reads the stored outputs and the history")
			} else {
				require.Zero(t, reads, "fresh series have nothing to read")
			}
			require.Equal(t, tc.warmed, testutil.ToFloat64(e.p.m.warmed))
			require.Equal(t, float64(n), testutil.ToFloat64(e.p.m.scoredSamples))
			require.Equal(t, int64(n), e.p.scored.Load())
			require.Zero(t, testutil.ToFloat64(e.p.m.dropped))
		})
	}
}
