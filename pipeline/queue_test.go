package pipeline

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
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
			db := openDB(t, t.TempDir())
			t.Cleanup(func() { _ = db.Close() })
			o := DefaultOptions()
			// One worker: a request is one batch (dispatch's shards
			// would split it unevenly). Not run: nothing leaves the queue.
			o.Workers, o.QueueSize = 1, 8
			p, err := New(nil, prometheus.NewRegistry(), db, nil, nil, o)
			require.NoError(t, err)
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
