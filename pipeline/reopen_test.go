package pipeline

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// renumbering is a storage that numbers its series as told, as a TSDB
// reopened to repair its WAL numbers them anew (tsdb.Storage.OnReopen),
// and whose next commit, once held, commits and then waits: the goroutine
// of a commit descheduled after its TSDB commit, before the tap queues its
// samples.
type renumbering struct {
	next storage.AppendableV2
	mu   sync.Mutex
	refs map[string]storage.SeriesRef // by labels
	hold chan struct{}                // non-nil: the next commit waits for it to close
	held chan struct{}                // closed once that commit has committed
}

func (r *renumbering) number(refs map[string]storage.SeriesRef) {
	r.mu.Lock()
	r.refs = refs
	r.mu.Unlock()
}

// holdNext has the next commit wait, once committed (held is closed
// then), until hold is closed.
func (r *renumbering) holdNext() (hold, held chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hold, r.held = make(chan struct{}), make(chan struct{})
	return r.hold, r.held
}

func (r *renumbering) ref(ls labels.Labels) storage.SeriesRef {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refs[ls.String()]
}

func (r *renumbering) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &renumberingAppender{r: r, next: r.next.AppenderV2(ctx)}
}

type renumberingAppender struct {
	r    *renumbering
	next storage.AppenderV2
}

func (a *renumberingAppender) Append(_ storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if _, err := a.next.Append(0, ls, st, t, v, h, fh, opts); err != nil {
		return 0, err
	}
	return a.r.ref(ls), nil
}

func (a *renumberingAppender) AppendExemplars(ref storage.SeriesRef, _ labels.Labels, _ []exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, nil
}

func (a *renumberingAppender) Commit() error {
	err := a.next.Commit()
	a.r.mu.Lock()
	hold, held := a.r.hold, a.r.held
	a.r.hold = nil
	a.r.mu.Unlock()
	if hold != nil {
		close(held)
		<-hold
	}
	return err
}

func (a *renumberingAppender) Rollback() error { return a.next.Rollback() }

// pusher returns a push of one sample of ls at step through tap, one
// commit each.
func pusher(tap storage.AppendableV2) func(ls labels.Labels, step int64, v float64) error {
	return func(ls labels.Labels, step int64, v float64) error {
		a := tap.AppenderV2(context.Background())
		if _, err := a.Append(0, ls, 0, t0.UnixMilli()+step*stepMs, v, nil, nil, storage.AOptions{}); err != nil {
			return err
		}
		return a.Commit()
	}
}

// TestCommitAcrossReopen: a tap commit whose samples were numbered by the
// TSDB before a reopen (WAL repair and replay), and queued for scoring
// after it, is not scored under the new numbering, in which its series'
// reference may be another series': its sample made a series of its
// labels keyed by that reference, which then scored the other series'
// samples and stored their outputs under its labels; its staleness marker
// ended the results of the series given the reference. Its samples are in
// the TSDB, and their series catch up from there at their next sample.
func TestCommitAcrossReopen(t *testing.T) {
	stale := math.Float64frombits(value.StaleNaN)
	x := labels.FromStrings("__name__", "x", "job", "a")
	y := labels.FromStrings("__name__", "y", "job", "a")
	tests := []struct {
		name            string
		held            float64 // the value of x's held sample at step 10
		yBefore, yAfter int     // samples of y before and after the held commit is queued
		// xStale: x's stored outputs end with a staleness marker (the
		// held marker applied by labels).
		xStale bool
		// dropped: x's sample is noted dropped unscored, which a
		// final snapshot's mark of its state as current heeds.
		dropped bool
	}{
		{"a sample", 1, 0, 3, false, true},
		{"a staleness marker", stale, 3, 0, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) { o.Workers = 1 })
			e.ready(t)
			r := &renumbering{next: e.db}
			r.number(map[string]storage.SeriesRef{x.String(): 7})
			push := pusher(e.p.Tap(r))
			for i := range int64(3) {
				require.NoError(t, push(x, i, 1))
			}
			e.sync()

			hold, held := r.holdNext()
			committed := make(chan error, 1)
			go func() { committed <- push(x, 10, tc.held) }()
			<-held
			// The reopened TSDB gives x's reference to y.
			r.number(map[string]storage.SeriesRef{y.String(): 7, x.String(): 8})
			e.p.StorageReopened()
			step := int64(3)
			for range tc.yBefore {
				require.NoError(t, push(y, step, 5))
				step++
			}
			e.sync()
			close(hold)
			require.NoError(t, <-committed)
			for range tc.yAfter {
				require.NoError(t, push(y, step, 5))
				step++
			}
			e.sync()

			var ys *series
			for _, w := range e.p.workers {
				w.view(func(s *series) {
					require.Equal(t, r.ref(s.in), s.ref, "%s scored under the reference it has now", s.in)
					if labels.Equal(s.in, y) {
						ys = s
					}
				})
			}
			require.NotNil(t, ys, "y is scored")
			w := e.p.workers[0]
			w.mu.RLock()
			yStale := ys.pub.stale
			w.mu.RUnlock()
			require.False(t, yStale, "y's results stand")
			wantT := int64(math.MinInt64)
			if tc.dropped {
				wantT = t0.UnixMilli() + 10*stepMs
			}
			require.Equal(t, wantT, e.p.droppedMaxT.Load())
			require.Equal(t, float64(btoi(tc.dropped)), testutil.ToFloat64(e.p.m.reopenDropped),
				"x's sample counted dropped unscored (omen_scoring_reopen_dropped_total)")
			xs := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "x"))
			require.Len(t, xs, 1)
			for _, vs := range xs {
				require.Len(t, vs, 3+btoi(tc.xStale), "x's 3 scores stored")
				require.Equal(t, tc.xStale, value.IsStaleNaN(vs[len(vs)-1]))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestKeptMarkerAcrossReopen: a staleness marker of the TSDB's numbering
// before a reopen, queued after it and dropped there by a full queue, is
// not kept to be applied to the series its reference names now (it ended
// that series' results). Here the reopen comes before the scorers run (a
// WAL repair during the start), whose workers take the numbering then.
func TestKeptMarkerAcrossReopen(t *testing.T) {
	x := labels.FromStrings("__name__", "x", "job", "a")
	y := labels.FromStrings("__name__", "y", "job", "a")
	p := idlePipeline(t, nil, 1)
	db := p.st.(storage.AppendableV2)
	r := &renumbering{next: db, refs: map[string]storage.SeriesRef{x.String(): 7}}
	push := pusher(p.Tap(r))
	hold, held := r.holdNext()
	committed := make(chan error, 1)
	go func() { committed <- push(x, 10, math.Float64frombits(value.StaleNaN)) }()
	<-held
	r.number(map[string]storage.SeriesRef{y.String(): 7, x.String(): 8})
	p.StorageReopened()
	require.NoError(t, push(y, 1, 5)) // fills the queue
	close(hold)
	require.NoError(t, <-committed)
	w := p.workers[0]
	require.Len(t, w.lostMarks, 1, "x's marker, dropped")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	w.sync()
	var ys *series
	w.view(func(s *series) { ys = s })
	require.NotNil(t, ys)
	w.mu.RLock()
	defer w.mu.RUnlock()
	require.Equal(t, y, ys.in)
	require.False(t, ys.pub.stale, "y's results stand")
	require.Equal(t, 0.0, testutil.ToFloat64(p.m.dropped), "x's marker kept, not dropped by the full queue")
	require.Equal(t, 1.0, testutil.ToFloat64(p.m.reopenDropped), "x's marker, of the old numbering, not applied")
}
