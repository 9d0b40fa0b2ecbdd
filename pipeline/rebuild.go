package pipeline

import (
	"context"
	"time"
)

// A reload that gives series options their models cannot take (another
// false-alarm rate, other forecast horizons: see worker.reconfigure)
// rebuilds them from their history in the TSDB, up to BackfillMaxPoints
// samples replayed into new models each. At 10 000 forecasting series with
// 1 000 samples each that is a minute of a worker's time: done at each
// series' next sample, all in the first batch after the reload, it held
// scoring for 61 s (no scores, the queues full, remote write refused). So
// a worker rebuilds within a batch only until the batch has spent
// rebuildBatchBudget on it; the series left keep scoring with the models
// they have (their forecasts' checks not counted in the accuracy, which
// the new horizons own) and are rebuilt while the worker has no batch
// queued (rebuildIdle), or at a later sample within a later batch's
// budget, whichever comes first.
//
// The replay's cost is not linear in the history: a forecaster fits its
// models only from forecast.Options.MinSamples steps on (192 of the
// default horizons' 28 s steps, 360 samples of 15 s) and refits every 64
// steps, each fit 0.3-0.6 ms (BenchmarkReplay: 300 samples 0.13 ms a
// series, 600 0.97 ms, 1 000 3.85 ms; a forecaster of 1h, in 4-minute
// steps, fits none in 1 000 samples, 0.34 ms).

// rebuildBatchBudget is the time a worker spends within one batch on
// rebuilds; the one that crosses it is finished.
const rebuildBatchBudget = 5 * time.Millisecond

// rebuildIdleSlice bounds one turn of rebuildIdle, so that the worker's
// other tasks (a snapshot's slice, a reload, the sweep) wait no longer.
const rebuildIdleSlice = 50 * time.Millisecond

// rebuildIdle rebuilds the series waiting for it (w.rebuilds, the latest
// marked first) while no batch is queued, for at most rebuildIdleSlice.
// Each is rebuilt as at a sample just after its latest one: its history up
// to that replayed into new models, its incident and the outputs it no
// longer has handed over (carryOver); its next sample is scored with the
// new models.
func (w *worker) rebuildIdle(ctx context.Context) {
	start := time.Now()
	out := w.p.newOutputs(ctx)
	for len(w.rebuilds) > 0 && len(w.queue) == 0 && ctx.Err() == nil && time.Since(start) < rebuildIdleSlice {
		n := len(w.rebuilds) - 1
		old := w.rebuilds[n]
		w.rebuilds[n] = nil
		w.rebuilds = w.rebuilds[:n]
		if w.series[old.ref] == old && !old.rebuild && old.fc != nil && old.fc.floorsDue != 0 && !old.fc.warmDue && !old.catchUpDue {
			// Restored with horizons the snapshot had no floor of.
			w.calibrateFloors(ctx, old, old.learntUpTo()+1)
			continue
		}
		if w.series[old.ref] != old || !old.rebuild || !old.pub.hasResult || old.pub.stale || old.catchUpDue {
			// Rebuilt at a sample already, dropped, or with no sample
			// to start after: its next sample rebuilds it.
			continue
		}
		t := max(old.learntUpTo(), old.pub.t) + 1
		smp := sample{ref: old.ref, ls: old.in, t: t, counter: old.counter}
		// Listed (the API, /metrics) until its successor replaces it.
		kept := w.releaseKeeping(old)
		if f := w.p.opts.rebuildSwap; f != nil {
			f()
		}
		s := w.create(ctx, &smp, w.p.opts.Now().UnixMilli(), kept)
		w.mu.Lock()
		if s == nil {
			delete(w.series, old.ref)
			w.liveDrop(old)
			w.gen++
		} else {
			s.lastSeen = old.lastSeen // seen when old was: not at the sample
			w.liveReplaced(s)
		}
		w.mu.Unlock()
		w.carryOver(old, s, t, &out)
	}
	if err := out.commit(); err != nil {
		w.p.logger.Debug("Appending scores", "err", err)
		w.p.m.outputErrors.Inc()
	}
	w.flushBackfill()
}

// closedChan returns a closed channel: a receive from it never waits.
func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
