package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/stretchr/testify/require"
)

// deletions forwards the head's series deletions to a Pipeline, as
// omen's tsdb.Storage does with OnSeriesDeleted.
type deletions struct{ p *Pipeline }

func (deletions) PreCreation(labels.Labels) error { return nil }
func (deletions) PostCreation(labels.Labels)      {}
func (d *deletions) PostDeletion(m map[chunks.HeadSeriesRef]labels.Labels) {
	if d.p == nil {
		return // the head collects before the pipeline exists, at open
	}
	var refs []storage.SeriesRef
	for r := range m {
		refs = append(refs, storage.SeriesRef(r))
	}
	d.p.SeriesDeleted(refs)
}

// headGCEnv runs a pipeline of the given workers over a TSDB of 2h blocks
// (a compaction after 3h of samples) whose head deletions reach it, as
// omen's tsdb.Storage passes them on. The TSDB compacts only when a test
// says: one of its own, while the scorers lagged (the race detector's
// slowness), deleted series before their models were made.
func headGCEnv(t *testing.T, workers int) (*Pipeline, *tsdb.DB, storage.AppendableV2) {
	t.Helper()
	hook := &deletions{}
	o := tsdb.DefaultOptions()
	o.SeriesLifecycleCallback = hook
	db, err := tsdb.Open(t.TempDir(), nil, nil, o, nil)
	require.NoError(t, err)
	db.DisableCompactions()
	po := DefaultOptions()
	po.Workers, po.OutputInterval, po.StaleAfter = workers, 0, 6*time.Hour
	c := &clock{now: t0}
	po.Now = c.Now
	p, err := New(nil, nil, db, nil, nil, po)
	require.NoError(t, err)
	hook.p = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; _ = db.Close() })
	return p, db, p.Tap(db)
}

// TestHeadDeletionDropsModels: an input silent long enough for the head to
// drop it comes back with a new reference. Its models, keyed by the old
// one, go when the head drops it; they used to stay until the stale sweep,
// and the series was listed and exposed twice meanwhile.
func TestHeadDeletionDropsModels(t *testing.T) {
	p, db, tap := headGCEnv(t, 2)
	a := labels.FromStrings("__name__", "load", "job", "a")
	b := labels.FromStrings("__name__", "load", "job", "b")
	push := func(ls labels.Labels, from, to int) {
		for i := from; i < to; i++ {
			app := tap.AppenderV2(context.Background())
			_, err := app.Append(0, ls, 0, t0.UnixMilli()+int64(i)*stepMs, 100+float64(i%5), nil, nil, storage.AOptions{})
			require.NoError(t, err)
			require.NoError(t, app.Commit())
		}
		for _, w := range p.workers {
			w.sync()
		}
	}
	push(a, 0, 120)   // 30 minutes of a
	push(b, 0, 4*240) // 4 hours of b
	require.NoError(t, db.Compact(context.Background()))
	require.Eventually(t, func() bool { return p.scored.Load() == 1 }, timeout, tick, "a's models dropped with its head series")
	push(a, 4*240, 4*240+10) // a comes back
	var out bytes.Buffer
	require.NoError(t, p.WriteOutputs(&out))
	require.Equal(t, 1, strings.Count(out.String(), `anomaly_score{job="a"`), out.String())
	require.Equal(t, int64(2), p.scored.Load())
}

// TestHeadDeletionDropsManyModels: the head calls PostDeletion once per
// stripe, so a GC of n series is ~n calls of one ref each; every one of
// their models must go, not only as many as the workers' gone queues hold.
func TestHeadDeletionDropsManyModels(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		gone    int
	}{
		{"few", 2, 20},
		{"more than the queues hold", 2, 400},
		{"thousands", 2, 3000},
		{"thousands, one worker", 1, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, db, tap := headGCEnv(t, tc.workers)
			b := labels.FromStrings("__name__", "load", "job", "b")
			for i := 0; i < 4*240; i++ {
				app := tap.AppenderV2(context.Background())
				ts := t0.UnixMilli() + int64(i)*stepMs
				if i < 120 { // 30 minutes of the departed
					for j := 0; j < tc.gone; j++ {
						_, err := app.Append(0, labels.FromStrings("__name__", "load", "job", fmt.Sprintf("a%d", j)), 0, ts, 100+float64(i%5), nil, nil, storage.AOptions{})
						require.NoError(t, err)
					}
				}
				_, err := app.Append(0, b, 0, ts, 100+float64(i%5), nil, nil, storage.AOptions{})
				require.NoError(t, err)
				require.NoError(t, app.Commit())
			}
			for _, w := range p.workers {
				w.sync()
			}
			require.Equal(t, int64(tc.gone+1), p.scored.Load())
			require.NoError(t, db.Compact(context.Background()))
			require.Eventually(t, func() bool { return p.scored.Load() == 1 }, 5*time.Second, 10*time.Millisecond,
				"models of head-deleted series left: %d", p.scored.Load()-1)
		})
	}
}
