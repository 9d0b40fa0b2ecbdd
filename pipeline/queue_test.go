package pipeline

import (
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/syncbuf"
)

// TestQueueBoundInSamples: the scorers' queues hold at most QueueSize
// requests of queueRequestSamples samples in all, whatever the sender's
// request size. Bounded in batches alone, a sender of 10 000-sample
// requests (vmagent's default block) filled them with 5 times the samples
// Prometheus's 2 000 do: 5 times the memory held during a backlog (128 MB
// of queued batches measured at 100k series with 2 000) and the lag.
func TestQueueBoundInSamples(t *testing.T) {
	tests := []struct {
		name        string
		requestSize int // samples per Commit
		requests    int
		wantQueued  int // samples queued in all once they are offered
	}{
		{name: "Prometheus's 2 000: as many requests as QueueSize", requestSize: 2000, requests: 10, wantQueued: 8 * 2000},
		{name: "10 000: no more samples, fewer requests", requestSize: 10000, requests: 4, wantQueued: 10000},
		{name: "small requests: QueueSize batches", requestSize: 10, requests: 20, wantQueued: 8 * 10},
		{name: "one request above the bound is taken by an empty queue", requestSize: 40000, requests: 2, wantQueued: 40000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := idlePipeline(t, nil, 8)
			ls := labels.FromStrings("__name__", "x")
			s := make([]sample, tc.requestSize)
			for i := range s {
				s[i] = sample{ref: storage.SeriesRef(i + 1), ls: ls, t: 1, v: 1}
			}
			for range tc.requests {
				p.dispatch(s)
			}
			queued := 0
			for _, w := range p.workers {
				for len(w.queue) > 0 {
					queued += len((<-w.queue).s)
				}
			}
			require.Equal(t, tc.wantQueued, queued)
			require.Equal(t, float64(tc.requestSize*tc.requests-tc.wantQueued), testutil.ToFloat64(p.m.dropped))
		})
	}
}

// TestDroppedStalenessMarkersApplied: a staleness marker in a batch that a
// full queue drops still takes its series' results off /metrics and marks
// them stale, once the worker catches up. Dropped with the batch, the last
// score stayed on /metrics (and an alert on anomaly_score > 1 firing) until
// the sweep, --detect.stale-after later (an hour by default): the marker
// comes once, from the sender, or from a derived input's evaluation that
// found its series gone.
func TestDroppedStalenessMarkersApplied(t *testing.T) {
	tests := []struct {
		name    string
		derived bool // dispatched alone, as derivedGone sends a derived input's
	}{
		{name: "ingested"},
		{name: "dispatched", derived: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) { o.Workers, o.QueueSize = 1, 1 })
			e.ready(t)
			ls := labels.FromStrings("__name__", "x", "pod", "a")
			ref := storage.SeriesRef(0)
			for i := range 8 {
				e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{float64(i % 3)})
				e.sync() // a queue of one batch
			}
			exposed := func() bool {
				var b strings.Builder
				require.NoError(t, e.p.WriteOutputs(&b))
				return strings.Contains(b.String(), `anomaly_score{__name__="x"`) || strings.Contains(b.String(), `anomaly_score{pod="a"`)
			}
			w := e.p.workers[0]
			w.view(func(s *series) { ref = s.ref })
			require.True(t, exposed(), "scored before the marker")

			// The worker blocks on its lock at the next sample; the queue
			// fills behind it and the marker's batch is dropped. The
			// sample queued before it is scored after the worker is
			// unblocked, and must not bring the results back.
			w.mu.Lock()
			locked := true
			defer func() {
				if locked {
					w.mu.Unlock()
				}
			}()
			ts := t0.UnixMilli() + 8*stepMs
			require.Zero(t, testutil.ToFloat64(e.p.m.dropped))
			for testutil.ToFloat64(e.p.m.dropped) == 0 {
				e.push(ts, model.MetricTypeGauge, []labels.Labels{ls}, []float64{1})
				ts += stepMs
			}
			require.Len(t, w.queue, cap(w.queue), "the marker's batch finds the queue full")
			stale := math.Float64frombits(value.StaleNaN)
			if tc.derived {
				e.p.dispatch([]sample{{ref: ref, ls: ls, t: ts, v: stale}})
			} else {
				e.push(ts, model.MetricTypeGauge, []labels.Labels{ls}, []float64{stale})
			}
			require.Equal(t, float64(1), testutil.ToFloat64(e.p.m.dropped), "a marker kept is not counted unscored")
			w.mu.Unlock()
			locked = false
			e.sync()
			require.Eventually(t, func() bool { return !exposed() }, 10*time.Second, time.Millisecond,
				"the dropped marker took the series' results off /metrics")
		})
	}
}

// TestLostMarkersBounded: the markers kept from dropped batches are bounded
// (maxLostMarkers a worker); those beyond are dropped and counted with the
// samples.
func TestLostMarkersBounded(t *testing.T) {
	p := idlePipeline(t, nil, 1)
	ls := labels.FromStrings("__name__", "x")
	p.dispatch([]sample{{ref: 1, ls: ls, t: 1, v: 1}}) // fills the queue
	stale := math.Float64frombits(value.StaleNaN)
	markers := make([]sample, maxLostMarkers+100)
	for i := range markers {
		markers[i] = sample{ref: storage.SeriesRef(i + 2), ls: ls, t: 2, v: stale}
	}
	p.dispatch(markers)
	require.Len(t, p.workers[0].lostMarks, maxLostMarkers)
	require.Equal(t, 100.0, testutil.ToFloat64(p.m.dropped))
}

// TestDroppedBatchesLogged: batches a full queue drops are logged, a
// warning a minute that says what to do, beside the counter and its alert
// (OmenScoringDropping). The log said nothing of them: an operator who
// reads it before the dashboards saw scores with gaps and no cause.
func TestDroppedBatchesLogged(t *testing.T) {
	var logs syncbuf.Buffer
	p := idlePipeline(t, slog.New(slog.NewTextHandler(&logs, nil)), 1)
	ls := labels.FromStrings("__name__", "x")
	for i := range 5 {
		p.dispatch([]sample{{ref: 1, ls: ls, t: int64(i), v: 1}})
	}
	require.Equal(t, 4.0, testutil.ToFloat64(p.m.dropped))
	require.Equal(t, 1, strings.Count(logs.String(), "Scoring queue full"), "one warning a minute:\n%s", logs.String())
	require.Contains(t, logs.String(), "raise --detect.queue-size")
}

// TestLostMarkersForgottenOnReopen: a TSDB reopened to repair its WAL
// numbers its series anew (Pipeline.StorageReopened), and the markers kept
// from dropped batches under the old references would end the results of
// the series given them now; a derived input's, keyed by its labels, stay.
func TestLostMarkersForgottenOnReopen(t *testing.T) {
	p := idlePipeline(t, nil, 1)
	ls := labels.FromStrings("__name__", "x")
	p.dispatch([]sample{{ref: 1, ls: ls, t: 1, v: 1}}) // fills the queue
	stale := math.Float64frombits(value.StaleNaN)
	p.dispatch([]sample{{ref: 2, ls: ls, t: 2, v: stale}, {ref: derivedRefBit | 3, ls: ls, t: 2, v: stale}})
	w := p.workers[0]
	require.Len(t, w.lostMarks, 2)
	w.forgetAll()
	require.Len(t, w.lostMarks, 1)
	require.Equal(t, derivedRefBit|3, w.lostMarks[0].s.ref)
	require.Equal(t, int64(1), w.lostN.Load())
	require.Equal(t, 1.0, testutil.ToFloat64(p.m.reopenDropped), "x's marker, forgotten unapplied")
}

// idlePipeline returns a pipeline of one worker (a dispatch is one batch:
// its shards would split it unevenly) whose queue holds queueSize batches,
// not run: nothing leaves the queue. A nil logger discards.
func idlePipeline(t *testing.T, logger *slog.Logger, queueSize int) *Pipeline {
	t.Helper()
	db := openDB(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	o := DefaultOptions()
	o.Workers, o.QueueSize = 1, queueSize
	p, err := New(logger, prometheus.NewRegistry(), db, nil, nil, o)
	require.NoError(t, err)
	return p
}
