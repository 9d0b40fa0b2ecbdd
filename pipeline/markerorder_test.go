package pipeline

import (
	"context"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/stretchr/testify/require"
)

// TestMarkerNotOvertaken: a sample of a series that reaches its worker
// after the series' staleness marker, though older than the marker (it was
// accepted before it, by two senders of the series: a Prometheus HA pair,
// a resend racing the original), is not scored: scored, it took the
// marker's effect back, and the score of a target gone stayed on /metrics
// and in the anomalies API until the sweep (--detect.stale-after, an hour),
// an alert on it firing. Two interleavings bring it there:
//   - a kept marker: the marker's batch is dropped by a full queue just
//     after the sample's batch was put in the queue, before the offer that
//     put it there counted it (worker.sent): the marker is kept to be
//     applied after the batches counted, one fewer than those queued
//     before it (keepMarkers), and so before the sample's;
//   - two commits: the sample's request commits first, the marker's
//     second, and the marker's is queued first (the tap queues after the
//     TSDB's commit, with no lock between the two).
func TestMarkerNotOvertaken(t *testing.T) {
	stale := math.Float64frombits(value.StaleNaN)
	tests := []struct {
		name      string
		queueSize int
		// queue puts the marker's batch and the older sample's batch in
		// w's queue (holding the series' first samples), in the order
		// the interleaving does.
		queue func(p *Pipeline, w *worker, smp, marker sample)
	}{
		{
			name: "a kept marker, dropped after the sample's batch was queued and before it was counted", queueSize: 4,
			queue: func(p *Pipeline, w *worker, smp, marker sample) {
				// offer of the sample's batch, descheduled between its
				// send and its count (worker.offer)
				b := getBatchFor(1)
				b.s = append(b.s, smp)
				b.committed = p.opts.Now()
				w.queued.Add(1)
				w.queue <- b
				require.Len(t, w.queue, cap(w.queue), "full")
				p.dispatch([]sample{marker}) // dropped, kept
				require.Len(t, w.lostMarks, 1)
			},
		},
		{
			name: "two commits, the marker's queued first", queueSize: 5,
			queue: func(p *Pipeline, w *worker, smp, marker sample) {
				p.dispatch([]sample{marker})
				p.dispatch([]sample{smp})
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := idlePipeline(t, nil, tc.queueSize)
			w := p.workers[0]
			ls := labels.FromStrings("__name__", "x")
			const ref, step = 1, int64(15_000)
			at := func(i int64) int64 { return t0.UnixMilli() + i*step }
			for i := range int64(3) {
				p.dispatch([]sample{{ref: ref, ls: ls, t: at(i), v: 1}})
			}
			// The sample at 3 was accepted before the marker at 4.
			tc.queue(p, w, sample{ref: ref, ls: ls, t: at(3), v: 1}, sample{ref: ref, ls: ls, t: at(4), v: stale})

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
			for _, w := range p.workers {
				w.sync()
			}
			var s *series
			w.view(func(x *series) { s = x })
			require.NotNil(t, s)
			w.mu.RLock()
			gone := s.pub.stale
			w.mu.RUnlock()
			require.True(t, gone, "the marker's effect stands")
			require.Empty(t, p.Anomalies(nil), "not listed: its target went away")
			require.Equal(t, 3.0, testutil.ToFloat64(p.m.scoredSamples), "the sample older than the marker is not scored")
		})
	}
}
