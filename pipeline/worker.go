package pipeline

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
)

// inferenceSampling: one scored sample in this many is timed for
// omen_inference_duration_seconds.
const inferenceSampling = 8

// worker owns the series of one shard. Its goroutine is the only writer of
// their state; mu guards the map and the published results against the
// collector and the API, which only read.
type worker struct {
	p     *Pipeline
	id    int
	queue chan *batch
	// queued counts the samples in queue, at most maxQueued (see offer).
	queued    atomic.Int64
	maxQueued int64
	snap      chan snapReq
	wake      chan struct{} // a new configuration (capacity 1)
	hz        horizonCache  // the horizons its new forecasters share
	// gone wakes the worker (capacity 1) to forget the series the head
	// deleted, goneRefs, which the head's garbage collection adds to
	// under goneMu without waiting for the worker.
	gone     chan struct{}
	goneMu   sync.Mutex
	goneRefs []storage.SeriesRef
	// lost wakes the worker (capacity 1) to apply lostMarks, the
	// staleness markers of the batches offer dropped (see keepMarkers),
	// lostN of them. sent counts the batches put in queue, taken (the
	// worker's alone) those it took out.
	lost      chan struct{}
	lostMu    sync.Mutex
	lostMarks []lostMarker
	lostN     atomic.Int64
	sent      atomic.Uint64
	taken     uint64
	// backfilled brings the histories remote-read for new series (see
	// rewarm).
	backfilled chan []bfResult
	bfOut      []bfReq // the current batch's requests (see flushBackfill)
	quit       chan struct{}
	done       chan struct{}
	// drainBy fires when the worker is to stop scoring what is queued
	// after quit; set before quit is closed. left counts the samples of
	// the batches it then left, read after done.
	drainBy <-chan struct{}
	left    int
	// scoring is the commit time (Unix ns) of the batch the worker is
	// scoring, 0 between batches; busy the time the worker started a task
	// other than a batch (a snapshot, a reload, a sweep), 0 when none:
	// omen_scoring_lag_seconds reads them at scrape time (see
	// Pipeline.scoringLag).
	scoring, busy atomic.Int64
	// newest is the latest timestamp (Unix ms) of an input sample the
	// worker scored, 0 before the first (see Pipeline.newestScored).
	newest atomic.Int64
	// arrived is the latest timestamp (Unix ms) of a sample the worker took
	// (scored or not, a staleness marker too), by kind: [0] an ingested
	// input's, in its sender's time, [1] a derived input's, at omen's
	// time when evaluated. The sweep measures a series' absence in them
	// as well as on omen's clock (see worker.sweep).
	arrived [2]atomic.Int64

	mu      sync.RWMutex
	series  map[storage.SeriesRef]*series
	gen     uint64                              // bumped under mu whenever series gains or loses one
	ignored map[storage.SeriesRef]ignoredSeries // not selected, over budget or failed
	// live bounds, per input name, when a sample of its series last
	// arrived, by kind as arrived (see nameLive): what the forecast
	// accuracy's gauges are shown by (see Pipeline.liveNames). Written
	// under mu by the worker, and the bounds by a scrape holding mu's
	// read lock and liveMu (see markLive).
	live   [2]map[string]*nameLive
	liveMu sync.Mutex

	cfgGen uint64
	// storeGen is the TSDB's numbering of series the worker's references
	// are of (see Pipeline.storeGen), the worker's alone.
	storeGen uint32
	timed    uint64 // samples scored, for sampling the inference timing
	scratch  *detect.Scratch
	fcBuf    fcBuf
	acc      *accuracy
	// warmT and warmV are the warm start's buffers, grown to at most
	// BackfillMaxPoints and reused.
	warmT []int64
	warmV []float64
	// chks is the scratch of the freshness probe (see freshness).
	chks []chunks.Meta
	// rebuilds are the series a reload marked to rebuild (see
	// rebuild.go), rebuiltIn the time spent rebuilding within the batch
	// being scored, and always a closed channel: ready while rebuilds
	// wait, in run's select.
	rebuilds  []*series
	rebuiltIn time.Duration
	always    chan struct{}
}

// queueRequestSamples is the request size --detect.queue-size counts in:
// the queues hold at most QueueSize requests of it in all, split over the
// workers. Prometheus's max_samples_per_send default, so a Prometheus
// sender's queues are as before; a sender of larger requests (vmagent's
// blocks of 10 000) gets fewer of them queued, not more memory: full
// queues at 100k series held 128 MB of batches with 2 000-sample requests
// (heap profile in a history backlog), which the collector's GOGC headroom
// then nearly doubles in the RSS.
const queueRequestSamples = 2000

// snapReq asks the worker for one slice of a snapshot (see
// worker.encodeSlice); the error, nil or not, is sent on done.
type snapReq struct {
	cur  *snapCursor
	done chan error
}

func newWorker(p *Pipeline, id int) *worker {
	return &worker{
		p: p, id: id,
		queue:      make(chan *batch, p.opts.QueueSize),
		maxQueued:  int64(max(p.opts.QueueSize*queueRequestSamples/p.opts.Workers, 1)),
		snap:       make(chan snapReq),
		wake:       make(chan struct{}, 1),
		gone:       make(chan struct{}, 1),
		lost:       make(chan struct{}, 1),
		backfilled: make(chan []bfResult, backfillReaders),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		always:     closedChan(),
		series:     map[storage.SeriesRef]*series{},
		ignored:    map[storage.SeriesRef]ignoredSeries{},
		live:       [2]map[string]*nameLive{{}, {}},
		scratch:    detect.NewScratch(),
		fcBuf:      newFcBuf(),
		acc:        p.acc(),
	}
}

// offer queues b without blocking; a full queue drops it. Full in
// samples too (maxQueued): bounded in batches alone, the queue's memory and
// lag grew with the sender's request size (see queueRequestSamples). A
// batch larger than the bound is taken by an empty queue, or never.
func (w *worker) offer(b *batch) {
	n := int64(len(b.s))
	if q := w.queued.Add(n); q <= w.maxQueued || q == n {
		// Counted before it is queued: a marker kept meanwhile (see
		// keepMarkers) waits for it, not one batch fewer.
		w.sent.Add(1)
		select {
		case w.queue <- b:
			return
		default:
			w.sent.Add(^uint64(0))
		}
	}
	w.queued.Add(-n)
	w.p.noteDropped(b)
	w.p.m.dropped.Add(float64(n - w.keepMarkers(b)))
	putBatch(b)
	if k, warn := w.p.droppedLog.Note(droppedLogEvery); warn {
		// Counted in omen_scoring_dropped_total, alerted on by
		// OmenScoringDropping; said in the log too, with what to do.
		w.p.logger.Warn("Scoring queue full: write batches dropped unscored (stored all the same; their series score again at their next sample). In bursts raise --detect.queue-size; at a steady rate the scorers lack CPU: give omen more, store fewer --output.tsdb-families, or shard",
			"batches_since_last_warning", k, "queue_size", w.p.opts.QueueSize, "workers", len(w.p.workers))
	}
}

// droppedLogEvery spaces the warnings about dropped batches: under
// overload every commit is one.
const droppedLogEvery = time.Minute

// maxLostMarkers bounds the staleness markers a worker keeps from dropped
// batches (see keepMarkers): 80 bytes each, 5 MiB a worker. Markers
// come once a series, when its target or a derived input's series goes: a
// whole cluster's pods going at once under overload keeps within it.
const maxLostMarkers = 1 << 16

// lostMarker is a staleness marker of a dropped batch, to be applied once
// the worker has taken after batches from its queue: those queued before
// it was dropped, whose samples of its series are older than it.
type lostMarker struct {
	s     sample
	after uint64
	gen   uint32 // the TSDB's numbering of s.ref
}

// keepMarkers keeps the staleness markers of b, a batch being dropped, for
// the worker to apply after the batches queued before it (see applyLost;
// a batch being queued at once may be counted among them, and only delays
// the markers: its older samples would not be scored after them anyway,
// see markStale),
// and returns how many it kept. A marker comes once (from the sender, or
// from a derived input's evaluation that found its series gone): dropped,
// it left the series' last score on /metrics, and an alert on
// anomaly_score > 1 firing, until the sweep (--detect.stale-after, an hour
// by default). The other samples are stored all the same, and their
// series score on at their next; the scan costs a comparison a sample, on
// the drop path alone.
func (w *worker) keepMarkers(b *batch) int64 {
	kept, locked := int64(0), false
	after := w.sent.Load()
	for i := range b.s {
		if !value.IsStaleNaN(b.s[i].v) {
			continue
		}
		if !locked {
			w.lostMu.Lock()
			locked = true
		}
		if len(w.lostMarks) >= maxLostMarkers {
			break // dropped and counted with the samples
		}
		w.lostMarks = append(w.lostMarks, lostMarker{s: b.s[i], after: after, gen: b.gen})
		kept++
	}
	if !locked {
		return 0
	}
	w.lostN.Store(int64(len(w.lostMarks)))
	w.lostMu.Unlock()
	if kept == 0 {
		return 0
	}
	select {
	case w.lost <- struct{}{}:
	default: // already woken; it takes the whole list
	}
	return kept
}

// applyLost applies, as a batch of their own, the markers keepMarkers kept
// whose batches queued before are scored (all of them with the queue
// empty, or all at once): a sample scored after its series' marker would
// bring its results back. Not for a series that has had a sample since its
// marker (it came back): the marker is moot then, and would end its new
// results (or, for a derived input removed and added again, drop its new
// models).
func (w *worker) applyLost(ctx context.Context, all bool) {
	if w.lostN.Load() == 0 {
		return
	}
	all = all || len(w.queue) == 0
	b := getBatch()
	w.lostMu.Lock()
	n, renumbered := 0, 0
	for _, m := range w.lostMarks {
		if !all && m.after > w.taken {
			break // kept in order of after
		}
		n++
		if m.gen != w.storeGen && m.s.ref&derivedRefBit == 0 {
			renumbered++
			continue // of the numbering before a reopen, as forgetAll's
		}
		if s := w.series[m.s.ref]; s != nil && s.pub.hasResult && m.s.t <= s.pub.t {
			continue
		}
		b.s = append(b.s, m.s)
	}
	clear(w.lostMarks[:n])
	w.lostMarks = append(w.lostMarks[:0], w.lostMarks[n:]...)
	w.lostN.Store(int64(len(w.lostMarks)))
	w.lostMu.Unlock()
	if renumbered > 0 {
		w.p.m.reopenDropped.Add(float64(renumbered))
	}
	if len(b.s) == 0 {
		putBatch(b)
		return
	}
	b.committed, b.gen = w.p.opts.Now(), w.storeGen
	w.queued.Add(int64(len(b.s))) // process takes them off
	w.process(ctx, b)
}

// leave empties the queue at shutdown without scoring it, counting the
// samples left in w.left; a barrier is released (its waiter also watches
// done).
func (w *worker) leave() {
	for {
		select {
		case b := <-w.queue:
			w.queued.Add(-int64(len(b.s)))
			if b.barrier != nil {
				close(b.barrier)
			}
			w.left += len(b.s)
			putBatch(b)
		default:
			return
		}
	}
}

// sync waits until the worker has scored everything queued before it.
func (w *worker) sync() { w.barrier(false, 0) }

// reset waits until the worker has scored everything queued before it,
// then has it forget every series and take the TSDB's numbering gen: the
// batches of an earlier one queued after this are not scored.
func (w *worker) reset(gen uint32) { w.barrier(true, gen) }

// barrier waits until the worker has scored everything queued before it,
// then, if reset, has it forget every series and take numbering gen.
func (w *worker) barrier(reset bool, gen uint32) {
	b := getBatch()
	b.barrier, b.reset, b.gen = make(chan struct{}), reset, gen
	ch := b.barrier
	w.sent.Add(1) // before it is queued, as in offer
	select {
	case w.queue <- b:
		select {
		case <-ch:
		case <-w.done:
		}
	case <-w.done:
		putBatch(b)
	}
}

func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	// A reopen before Run was ready reset nothing: what was queued
	// before it is of the old numbering.
	w.storeGen = w.p.storeGen.Load()
	sweep := time.NewTicker(max(w.p.opts.StaleAfter/8, time.Second))
	defer sweep.Stop()
	for {
		var idle <-chan struct{}
		if len(w.rebuilds) > 0 && !w.p.opts.idleRebuildOff {
			idle = w.always
		}
		select {
		case b := <-w.queue:
			w.process(ctx, b)
			w.taken++
			w.applyLost(ctx, false)
		case <-idle:
			w.task(func() { w.rebuildIdle(ctx) })
		case r := <-w.snap:
			w.task(func() {
				_, err := w.encodeSlice(r.cur)
				r.done <- err
			})
		case <-w.wake:
			if g := w.p.cfgGen.Load(); g != w.cfgGen {
				w.task(func() { w.reconfigure(ctx, g) })
			}
		case <-w.gone:
			w.goneMu.Lock()
			refs := w.goneRefs
			w.goneRefs = nil
			w.goneMu.Unlock()
			w.task(func() { w.forget(refs) })
		case <-w.lost:
			w.applyLost(ctx, false)
		case rs := <-w.backfilled:
			w.task(func() { w.rewarm(ctx, rs) })
		case <-sweep.C:
			w.task(func() {
				if g := w.p.cfgGen.Load(); g != w.cfgGen {
					w.reconfigure(ctx, g)
				}
				w.sweep()
			})
		case <-w.quit:
			// Score what is queued, then stop; or leave it, once
			// drainBy fires, to the restart's catch-up. The markers
			// of dropped batches are applied all the same: they are
			// few, and the restart has no other copy of them.
			for {
				select {
				case <-w.drainBy:
					w.leave()
					w.applyLost(ctx, true)
					return
				default:
				}
				select {
				case b := <-w.queue:
					w.process(ctx, b)
					w.taken++
					w.applyLost(ctx, false)
				default:
					w.applyLost(ctx, true)
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// task runs f, a task other than scoring a batch, with the worker marked
// busy since now: the batches that queue meanwhile wait for it, and
// omen_scoring_lag_seconds says so (see Pipeline.scoringLag).
func (w *worker) task(f func()) {
	w.busy.Store(w.p.opts.Now().UnixNano())
	defer w.busy.Store(0)
	f()
}

// process scores a batch and appends the outputs in one transaction.
func (w *worker) process(ctx context.Context, b *batch) {
	defer putBatch(b)
	w.queued.Add(-int64(len(b.s)))
	p := w.p
	if b.barrier == nil {
		// From the start: a reload below, taken at the batch, delays
		// it as much as its scoring.
		w.scoring.Store(b.committed.UnixNano())
		defer w.scoring.Store(0)
	}
	if g := p.cfgGen.Load(); g != w.cfgGen {
		w.reconfigure(ctx, g)
	}
	if b.barrier != nil {
		if b.reset {
			w.forgetAll()
			w.storeGen = b.gen
		}
		close(b.barrier)
		return
	}
	if b.gen != w.storeGen && !w.renumbered(ctx, b) {
		return
	}
	now := p.opts.Now()
	nowMs := now.UnixMilli()
	so := p.stepOpts()
	so.nowMs = nowMs // scored as they arrive (see published.live)
	out := p.newOutputs(ctx)
	w.rebuiltIn = 0
	scored := 0 // added to the counter once per batch, not per sample
	newest := w.newest.Load()
	arrived := [2]int64{w.arrived[0].Load(), w.arrived[1].Load()}
	defer func() {
		p.m.scoredSamples.Add(float64(scored))
		w.newest.Store(newest) // the worker alone writes them
		w.arrived[0].Store(arrived[0])
		w.arrived[1].Store(arrived[1])
	}()
	for i := range b.s {
		smp := &b.s[i]
		arrived[smp.ref>>63] = max(arrived[smp.ref>>63], smp.t)
		s := w.series[smp.ref]
		if s != nil && smp.ref&derivedRefBit != 0 && !labels.Equal(s.in, smp.ls) {
			if !w.derivedCollision(s, smp) {
				continue
			}
			s = nil
		}
		if value.IsStaleNaN(smp.v) {
			// The input went stale; a marker creates no series.
			ig, ignored := w.ignored[smp.ref]
			switch {
			case s != nil && smp.handedOver:
				w.dropLocking(smp.ref, s)
			case s != nil && smp.removed:
				w.markStale(s, smp.t, &out)
				w.dropLocking(smp.ref, s)
			case s != nil:
				w.markStale(s, smp.t, &out)
			case ig.overBudget:
				// Refused for the budget, and now gone: not "refused
				// now" (omen_series_over_budget), and no claim on the
				// room the sweep gives the refused still sending.
				w.mu.Lock()
				w.unignoreLocked(smp.ref)
				w.mu.Unlock()
			case !ignored && smp.ref&derivedRefBit == 0:
				w.staleNotHeld(ctx, smp, &out)
			}
			continue
		}
		var kept slots // of the series it replaces (see handOver)
		if s != nil && smp.typed && smp.counter != s.counter && !isDerived(s) {
			// Its metadata (come a minute after the first samples, in
			// remote-write 1.0) says it is the other kind: the models
			// learnt a running total as a level, or a level as a
			// running total. It starts again from its history.
			kept = w.handOver(smp.ref, s)
			s = nil
			p.m.retyped.Inc()
			if f := p.opts.rebuildSwap; f != nil {
				f()
			}
		}
		if s != nil && smp.derived != nil && s.def != smp.derived.d.Signature() {
			// A reload changed what its input computes (another
			// expression, a group of other members, a group where
			// there was none): its models learnt another quantity, and
			// start again, from the history the input's next
			// evaluation reads (see firstHistory).
			s.rebuild = true
		}
		wait := false
		if s != nil && s.rebuild && smp.derived != nil && s.def == smp.derived.d.Signature() && !s.histAsked && !p.hist.has(s.name, s.ref) {
			// New options for a derived input's series (another
			// definition's history is read anyway): its new models warm
			// from the expression's history, which the input's next
			// evaluation reads (see firstHistory), and this sample is
			// scored with the models it has. Rebuilt at once, they
			// warmed up on new evaluations: a group scored nothing for
			// 112 of them, an hour at 30s.
			s.histAsked, wait = true, true
			p.historyWanted(s.name)
		}
		var rebuilt *series
		var rebuildStart time.Time
		if s != nil && s.rebuild && !wait && (isDerived(s) || w.rebuiltIn < p.opts.rebuildBudget) {
			// Its new options need new models (see reconfigure): it
			// starts again from its history now, keeping its incident.
			// An ingested input's rebuild waits, scored with the models
			// it has, once the batch has spent its budget on others
			// (see rebuild.go).
			rebuildStart = time.Now()
			kept = w.handOver(smp.ref, s)
			rebuilt, s = s, nil
			if f := p.opts.rebuildSwap; f != nil {
				f()
			}
		}
		if s == nil {
			if ig, skip := w.ignored[smp.ref]; skip {
				ig.seen, ig.t = nowMs, max(ig.t, smp.t)
				w.ignored[smp.ref] = ig
				p.giveBack(kept) // none: a series held is not ignored
				continue
			}
			s = w.create(ctx, smp, nowMs, kept)
			if rebuilt != nil {
				w.carryOver(rebuilt, s, smp.t, &out)
				if !isDerived(rebuilt) {
					w.rebuiltIn += time.Since(rebuildStart)
				}
			}
			if s == nil {
				continue
			}
		}
		if s.outOfOrder(smp.t) {
			// Out of order (the TSDB may accept it within its
			// out-of-order window, and a resent sample as a duplicate),
			// or older than the series' staleness marker (see
			// markStale): the models move forward in time only.
			w.seen(s, nowMs)
			continue
		}
		if s.catchUpDue {
			// Its catch-up waited for this sample (see create), and s is
			// the worker's already: a warm-up that the catch-up ends is
			// counted here (omen_models_warming counted it for good).
			s.catchUpDue = false
			wasReady := s.pub.ready
			w.catchUp(ctx, s, smp.t)
			w.readyChanged(wasReady, s.pub.ready)
		}
		if f := s.fc; f != nil && f.warmDue {
			f.warmDue = false
			w.warmForecaster(ctx, s, smp.t)
		} else if f != nil && f.floorsDue != 0 && w.rebuiltIn < p.opts.rebuildBudget {
			// Within the batch's budget (see rebuild.go); else while
			// idle, or at a later sample.
			start := time.Now()
			w.calibrateFloors(ctx, s, smp.t)
			w.rebuiltIn += time.Since(start)
		}
		v := smp.v
		// A counter's NaN, ±Inf or sentinel is scored as it is (no value,
		// or out of range), not taken as its running total: the next
		// number read as a reset from it, a false spike (score 10.7).
		if s.counter && detect.Measured(v) {
			r, ok := s.rate(smp.st, smp.t, v, s.det.Interval())
			if !ok {
				w.seen(s, nowMs)
				continue
			}
			v = r
		}
		// A NaN (a ratio with no traffic, 0/0), or a sentinel beyond
		// float32's range (detect.NoValue), is no value: score 0 and no
		// band, the models untouched, and an incident that ends after the
		// hold. Skipped, it left the last score and the incident on
		// /metrics while it lasted, the series seen all along. A series
		// with no number yet (a summary's quantile with no observations)
		// has no result until its first. One restored in an incident
		// (its models restored, no result yet) is scored, so that its
		// incident ends after the hold as a live one's does: skipped, it
		// stayed current for as long as the NaNs came.
		if detect.NoValue(v) && !s.pub.hasResult && s.pub.since == 0 {
			w.seen(s, nowMs)
			continue
		}
		// One sample in inferenceSampling is timed: two clock reads and
		// an Observe per sample would be a tenth of the detector's cost.
		w.timed++
		timed := w.timed%inferenceSampling == 0
		scored++
		newest = max(newest, smp.t)
		w.mu.Lock()
		// Timed once the lock is held: a scrape or an anomalies query
		// holds it while it copies the worker's series, and that wait
		// (omen_scoring_lag_seconds shows it) is not the sample's cost.
		var start time.Time
		if timed {
			start = time.Now()
		}
		prevSeen, wasStale := s.lastSeen, s.pub.stale
		s.lastSeen = nowMs
		wasReady := s.pub.ready
		if s.grp != nil {
			s.stepGroup(smp.t, smp.derived.vals, time.Duration(smp.derived.d.Interval).Milliseconds(), so)
		} else {
			acc := w.acc
			if s.rebuild && !isDerived(s) {
				// Its forecasts are of the options before the reload
				// until it is rebuilt: their checks would bring a
				// removed horizon's accuracy back.
				acc = nil
			}
			s.step(smp.t, v, acc, &w.fcBuf, so)
		}
		w.liveSeen(s, prevSeen, wasStale) // after the step, which ends a staleness marker
		pub := s.pub
		w.mu.Unlock()
		if timed {
			p.m.inference.Observe(time.Since(start).Seconds())
		}
		w.readyChanged(wasReady, pub.ready)
		if pub.score > 1 {
			p.m.anomalies.WithLabelValues(s.name).Inc()
		}
		out.write(s, &pub)
	}
	if err := out.commit(); err != nil {
		p.logger.Debug("Appending scores", "err", err)
		p.m.outputErrors.Inc()
	}
	w.flushBackfill()
}

// scoringLag is how far scoring is behind now: the time since the commit
// of the oldest batch a worker is scoring, the largest over the workers,
// and 0 while none scores one. It was the lag of the last batch scored, set
// at its end: once ingestion stopped (a sender gone, a shard's share moved
// away), the gauge kept that value for good, so an OmenScoringLagging that
// fired went on firing on an idle omen; and a worker stuck on one batch
// showed the lag of the batch before. A worker on another task (a
// snapshot, a reload, a sweep, a warm start's replay) with batches queued
// behind it counts from the task's start: those batches wait at least that
// long (counted from their commit only once taken, a worker stuck on a
// long task read 0 however many waited).
func (p *Pipeline) scoringLag() float64 {
	now := p.opts.Now()
	var lag time.Duration
	for _, w := range p.workers {
		if c := w.scoring.Load(); c != 0 {
			lag = max(lag, now.Sub(time.Unix(0, c)))
		} else if b := w.busy.Load(); b != 0 && len(w.queue) > 0 {
			lag = max(lag, now.Sub(time.Unix(0, b)))
		}
	}
	return lag.Seconds()
}

// arrivedMs is the latest timestamp of a sample any worker took, of an
// ingested input ([0]) and of a derived one ([1]) (see worker.arrived).
func (p *Pipeline) arrivedMs() (ms [2]int64) {
	for _, w := range p.workers {
		ms[0], ms[1] = max(ms[0], w.arrived[0].Load()), max(ms[1], w.arrived[1].Load())
	}
	return ms
}

// newestScored is the latest timestamp of an input sample scored, in
// Unix ms, 0 before the first: behind a sender's backlog (Prometheus
// resending what it queued while omen was down) the scores published are
// that old, however fast scoring keeps up (omen_scoring_lag_seconds 0).
func (p *Pipeline) newestScored() int64 {
	var ms int64
	for _, w := range p.workers {
		ms = max(ms, w.newest.Load())
	}
	return ms
}

// readyChanged counts a series' warm-up ending (or starting again) in
// omen_models_warming.
func (w *worker) readyChanged(wasReady, ready bool) {
	switch {
	case ready && !wasReady:
		w.p.warming.Add(-1)
	case !ready && wasReady:
		w.p.warming.Add(1)
	}
}

// markStale takes the results of s off /metrics and the anomalies API and
// marks its stored outputs stale at t, the time of its input's staleness
// marker: a target that went away leaves no score behind to keep an alert
// firing (on /metrics, until the sweep an hour later). A marker older than
// the latest sample (out of order) changes nothing. The next result is
// stored, and a forecast made, whatever the intervals, so the outputs
// resume as soon as the input does.
//
// The marker's time becomes the series' latest (pub.t), so that a sample
// older than the marker is out of order (see process), not scored: it was
// accepted before the marker but reached the worker after it (two senders
// of the series, a Prometheus HA pair or a resend racing the original,
// whose commits queue in another order than they committed in), and
// scored it took the marker back, the score of a target gone exposed and
// listed until the sweep (TestMarkerNotOvertaken).
func (w *worker) markStale(s *series, t int64, out *outputs) {
	if !s.pub.hasResult || s.pub.stale || t <= s.pub.t {
		return
	}
	w.mu.Lock()
	w.liveStale(s)
	s.pub.t, s.pub.stale = t, true
	s.pub.endEvent()
	w.mu.Unlock()
	out.stale(s, t)
	s.stored, s.storedHot = 0, false
	if f := s.fc; f != nil {
		f.made, f.isNew = 0, false
	}
}

// staleNotHeld marks the stored outputs of an input that omen holds no
// series of stale at the time of its staleness marker, as markStale does
// for one it holds: a target that went away while omen was down (Prometheus
// sends the marker once omen is back) left the results the run before
// stored to read as live for PromQL's lookback delta, an alert on
// anomaly_score > 1 with them. The sweep and the expiry of a restored
// state write no markers. Not for an input the configuration does not
// select: its outputs were marked when it was deselected (reconfigure,
// Pipeline.staleDeselected), and a TSDB read for each of its markers would
// be for nothing.
func (w *worker) staleNotHeld(ctx context.Context, smp *sample, out *outputs) {
	name := smp.ls.Get(model.MetricNameLabel)
	if _, ok := scoringOf(w.p.cfg.Load(), smp.ls, name, false); !ok || smp.t < out.minT {
		return
	}
	q, err := w.p.st.Querier(out.minT, math.MaxInt64)
	if err != nil {
		return
	}
	out.staleStored(ctx, q, smp.ls, name, smp.t, true)
	_ = q.Close()
}

// create sets up a series on its first sample: config selection, budget,
// restored state or a warm start from TSDB history. It returns nil if the
// series is not scored. kept is what the series it replaces held of the
// budgets (see handOver): taken, or given back.
func (w *worker) create(ctx context.Context, smp *sample, nowMs int64, kept slots) *series {
	p := w.p
	cfg := p.cfg.Load()
	name := smp.ls.Get(model.MetricNameLabel)
	// Its saved state, if it had one at the snapshot: what is held of the
	// budgets for it is given back once it has taken its own (or not).
	// Not scored, it puts the state back (keepRestored) for when it is.
	saved := p.takeRestored(smp.ls)
	// Room is held for it only if it was held at the restore: not for a
	// state that waited, not claimed, through the run before (it competes
	// for the free room as a newcomer does), nor for one given back.
	held := false
	if saved != nil {
		held = p.isHeld(saved)
		defer p.releaseHeld(saved)
	}
	sc, ok := scoringOf(cfg, smp.ls, name, smp.derived != nil)
	switch {
	case !ok && smp.derived != nil:
		// Removed by a reload during its evaluation: scored once more
		// with the options it was evaluated under.
		sc = smp.derived.d.Scoring
	case !ok:
		p.keepRestored(saved)
		p.giveBack(kept)
		w.ignore(smp, nowMs, false)
		return nil
	}
	if !kept.scored && !reserve(&p.scored, &p.scoredHeld, p.opts.MaxSeries, held) {
		p.keepRestored(saved)
		p.m.overBudget.Inc()
		w.ignore(smp, nowMs, true)
		return nil
	}
	s := &series{ref: smp.ref, name: name, in: smp.ls, counter: smp.counter, utf8Names: hasUTF8Names(smp.ls), labelBits: labelBitsOf(smp.ls)}
	if smp.derived != nil {
		s.def = smp.derived.d.Signature()
	}
	if smp.derived != nil && smp.derived.vals != nil {
		p.giveBack(slots{fc: kept.fc}) // a group has no forecaster
		return w.createGroup(s, smp, sc, nowMs, saved)
	}
	if err := s.det.Init(detectOptions(sc), w.scratch); err != nil {
		p.keepRestored(saved)
		p.giveBack(slots{scored: true, fc: kept.fc})
		p.logger.Warn("Creating detector", "series", smp.ls.String(), "err", err)
		w.ignore(smp, nowMs, false)
		return nil
	}
	if len(sc.ForecastHorizons) > 0 && (kept.fc || reserve(&p.forecasting, &p.fcHeld, p.opts.ForecastMaxSeries, held && saved.forecaster())) {
		s.fc = newFcStateOf(w.hz.of(sc), s.ref)
	} else if kept.fc {
		p.giveBack(slots{fc: true})
	}
	// A saved state of the other kind than the sample's metadata says is
	// not restored: its models learnt the wrong quantity.
	switch {
	case saved == nil || smp.typed && saved.counter() != smp.counter:
		w.warm(ctx, s, smp.t)
	case !s.restore(saved):
		// Models of other options or another version: new ones, from
		// history, and the incident goes on, as after a reload
		// (carryOver), unless the history showed one of its own.
		w.warm(ctx, s, smp.t)
		if s.pub.since == 0 {
			s.pub.incidentState = saved.inc
		}
	case s.outOfOrder(smp.t):
		// Not scored (see process); it catches up at its first sample
		// in order.
		s.catchUpDue = true
	case saved.flags&flagCurrent != 0 && s.learntUpTo() >= p.droppedMaxT.Load():
		// Its models had every sample the TSDB holds of it (a graceful
		// stop's final snapshot), and none dropped here since is later
		// than their last: the catch-up would read nothing.
	default:
		w.catchUp(ctx, s, smp.t)
	}
	if saved != nil {
		s.pub.live = saved.live()
	}
	w.add(s)
	if s.fc != nil && s.fc.floorsDue != 0 {
		// Calibrated at this sample within the batch's budget, else
		// while idle (see rebuild.go).
		w.rebuilds = append(w.rebuilds, s)
	}
	return s
}

// createGroup sets up a multivariate group (see config.Derived) on its
// first evaluation: a restored state, else a new one, warmed from its
// members' history when the input's first evaluation left one. It has no
// forecaster: its members have no single value to forecast.
func (w *worker) createGroup(s *series, smp *sample, sc config.Scoring, nowMs int64, saved *savedSeries) *series {
	p := w.p
	d := smp.derived
	g, err := detect.NewGroup(len(d.vals), defHash(d.d.Signature()), detectOptions(sc))
	if err != nil {
		p.keepRestored(saved)
		p.scored.Add(-1)
		p.logger.Warn("Creating group detector", "series", smp.ls.String(), "err", err)
		w.ignore(smp, nowMs, false)
		return nil
	}
	s.grp = &groupModel{g: g, members: make([]string, len(d.d.Members))}
	for i, m := range d.d.Members {
		s.grp.members[i] = m.Name
	}
	if saved != nil && !s.restore(saved) {
		s.pub.incidentState = saved.inc // new models; the incident goes on
	}
	if saved != nil {
		s.pub.live = saved.live()
	}
	w.warmDerived(s, smp.t)
	w.add(s)
	return s
}

// derivedCollision judges a derived input's sample whose reference is
// held by a series of other labels (see derivedRef), and reports whether
// it goes on to a series of its own. s, whose input went stale (it left
// the result), gives the reference up, its outputs marked stale already;
// a live s keeps it, and the sample is refused, counted as a failure of
// its input (in another input's result than s's, or in turn with it); a
// staleness marker is not s's. Such a sample went into s's models, under
// s's labels.
func (w *worker) derivedCollision(s *series, smp *sample) bool {
	switch {
	case value.IsStaleNaN(smp.v):
		return false
	case s.pub.stale:
		w.dropLocking(smp.ref, s)
		return true
	}
	if smp.derived != nil {
		w.p.derivedFault(smp.derived.d, "Derived input: a series of its result whose labels hash as another's (omen's pseudo series reference), scored already; not scored. Relabel them apart.",
			"series", smp.ls.String(), "collides_with", s.in.String())
	}
	return false
}

// add makes s one of the worker's series.
func (w *worker) add(s *series) {
	w.mu.Lock()
	w.series[s.ref] = s
	w.liveAdd(s)
	w.gen++
	w.mu.Unlock()
	p := w.p
	p.m.names.added(p.m.anomalies, s.name)
	if !s.pub.ready {
		p.warming.Add(1)
	}
}

// ignore has the worker not score the series of smp, seen at nowMs (see
// ignoredSeries).
func (w *worker) ignore(smp *sample, nowMs int64, overBudget bool) {
	ref := smp.ref
	w.mu.Lock()
	w.unignoreLocked(ref)
	ig := ignoredSeries{seen: nowMs, t: smp.t, overBudget: overBudget}
	if smp.derived != nil {
		// A reload empties the list (see reconfigure): the interval
		// stays the one in force.
		ig.everyMs = time.Duration(smp.derived.d.Interval).Milliseconds()
	}
	w.ignored[ref] = ig
	if overBudget {
		w.p.overBudgetNow.Add(1)
	}
	w.mu.Unlock()
}

// unignoreLocked forgets that ref is ignored, keeping the count of series
// ignored for the budget (omen_series_over_budget) with it. The caller
// holds mu.
func (w *worker) unignoreLocked(ref storage.SeriesRef) {
	if ig, ok := w.ignored[ref]; ok {
		if ig.overBudget {
			w.p.overBudgetNow.Add(-1)
		}
		delete(w.ignored, ref)
	}
}

// scoringOf returns the options cfg gives the input with labels ls and
// metric name name, a derived input's by its name; false if cfg does not
// score it (not selected, or no derived input of that name).
func scoringOf(cfg *config.Config, ls labels.Labels, name string, derived bool) (config.Scoring, bool) {
	if derived {
		if d := cfg.DerivedNamed(name); d != nil {
			return d.Scoring, true
		}
		return config.Scoring{}, false
	}
	if !cfg.Selected(ls) {
		return config.Scoring{}, false
	}
	return cfg.ScoringFor(ls), true
}

// ignoredSeries is a series the worker does not score: last seen on
// omen's clock and its latest sample's time (unix ms), by which the sweep
// forgets it as it does a scored series, a derived input's interval (ms, 0
// for an ingested input; see derivedIntervals.everyMs), and whether only
// the budget kept it out.
type ignoredSeries struct {
	seen, t, everyMs int64
	overBudget       bool
}

// reconfigure applies a new configuration: ignored series are looked at
// again; series no longer selected are dropped, their stored outputs marked
// stale, as a recording rule's series are when the rule goes; the others
// take their new options: in place where the detector can (direction,
// minimum deviations), else (another false-alarm rate or forecast
// horizons) they start again from their history at their next sample, as
// after a restart without a snapshot, and until then keep what they
// published (a reload does not blank /metrics or end an incident).
// Derived inputs take theirs alike, their new models warmed from the
// expression's history, which the input's next evaluation reads (see
// process).
func (w *worker) reconfigure(ctx context.Context, gen uint64) {
	w.cfgGen = gen
	cfg := w.p.cfg.Load()
	// Every worker, after its last forecast checked under the old
	// configuration: the last one to get here leaves none of a removed
	// horizon.
	defer w.p.acc().keepHorizons(configuredHorizons(cfg))
	var gone []*series
	clear(w.rebuilds) // marked again below, if still to rebuild
	w.rebuilds = w.rebuilds[:0]
	w.mu.Lock()
	for ref := range w.ignored {
		w.unignoreLocked(ref)
	}
	for ref, s := range w.series {
		sc, ok := scoringOf(cfg, s.in, s.name, isDerived(s))
		switch {
		case !ok && isDerived(s):
			continue // removed: derivedRemoved marks its series stale
		case !ok:
			w.drop(ref, s)
			gone = append(gone, s)
			continue
		}
		want, _ := horizonsOf(sc)
		// Without a forecaster for want of budget, it would get none
		// again: kept rather than started anew for nothing.
		fcRoom := w.p.forecastRoom()
		if s.grp != nil {
			s.rebuild = s.grp.g.SetOptions(detectOptions(sc)) != nil
			continue
		}
		s.rebuild = s.det.SetOptions(detectOptions(sc)) != nil || (!s.sameHorizons(want) && (s.fc != nil || fcRoom))
		if s.rebuild && !isDerived(s) || s.fc != nil && s.fc.floorsDue != 0 {
			w.rebuilds = append(w.rebuilds, s)
		}
	}
	w.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	// The markers go at now (not past the latest sample the head holds:
	// see markerTime), or just after a series' latest result if that is
	// later (a sender's clock ahead of omen's).
	markT := markerTime(w.p.st, w.p.opts.Now())
	out := w.p.newOutputs(ctx)
	for _, s := range gone {
		if s.pub.hasResult && !s.pub.stale {
			out.stale(s, max(markT, s.pub.t+1))
		}
	}
	if err := out.commit(); err != nil {
		w.p.logger.Debug("Marking outputs stale", "err", err)
		w.p.m.outputErrors.Inc()
	}
}

// carryOver hands what old, dropped for new models, had published to its
// successor s (nil: not scored after all) at its first sample, at t: its
// incident goes on, and the outputs s does not have (the forecasts of
// horizons it no longer has; its band while it warms up) are marked stale,
// just after old's latest result if t is not (an out-of-order sample the
// TSDB's window took).
func (w *worker) carryOver(old, s *series, t int64, out *outputs) {
	if !old.pub.hasResult || old.pub.stale {
		return
	}
	t = max(t, old.pub.t+1)
	if s == nil {
		out.stale(old, t)
		return
	}
	w.mu.Lock()
	if old.pub.since != 0 && s.pub.since == 0 {
		s.pub.incidentState, s.pub.hotAt = old.pub.incidentState, old.pub.hotAt
	}
	s.pub.live = old.pub.live
	w.mu.Unlock()
	out.staleForecasts(old, s.fc, t)
	if !s.pub.ready {
		out.staleBase(old, 1, t)
	}
}

func isDerived(s *series) bool { return s.ref&derivedRefBit != 0 }

// dropLocking forgets a series, taking mu (the worker's goroutine, which
// alone writes the map, reads it without).
func (w *worker) dropLocking(ref storage.SeriesRef, s *series) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drop(ref, s)
}

// drop forgets a series; mu must be held.
func (w *worker) drop(ref storage.SeriesRef, s *series) {
	delete(w.series, ref)
	w.liveDrop(s)
	w.gen++
	w.release(s)
}

// release gives back what s holds of the budgets and counts.
func (w *worker) release(s *series) {
	w.p.giveBack(w.releaseKeeping(s))
}

// slots is what a series holds of --detect.max-series (scored) and
// --forecast.max-series (fc).
type slots struct{ scored, fc bool }

// giveBack gives k back to the budgets.
func (p *Pipeline) giveBack(k slots) {
	if k.scored {
		p.scored.Add(-1)
	}
	if k.fc {
		p.forecasting.Add(-1)
	}
}

// releaseKeeping is release, keeping the places s holds in the budgets for
// the series that replaces it (create takes them), leaving s in the series
// map: its successor (see rebuildIdle) replaces it there. Given back in
// between, at a full budget another worker's new series took the place,
// and the series rebuilt after a reload (or retyped) was dropped, its
// outputs gone (TestRebuildKeepsBudgetSlot).
func (w *worker) releaseKeeping(s *series) slots {
	w.p.m.names.dropped(s.name, w.p.opts.Now().UnixMilli())
	if !s.pub.ready {
		w.p.warming.Add(-1)
	}
	return slots{scored: true, fc: s.fc != nil}
}

// handOver forgets s as drop does, keeping its places in the budgets for
// its successor (see releaseKeeping).
func (w *worker) handOver(ref storage.SeriesRef, s *series) slots {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.series, ref)
	w.liveDrop(s)
	w.gen++
	return w.releaseKeeping(s)
}

// forget drops the state of the series the head deleted: one that comes
// back has a new reference and would otherwise be scored twice until the
// sweep.
func (w *worker) forget(refs []storage.SeriesRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ref := range refs {
		if s := w.series[ref]; s != nil {
			w.drop(ref, s)
		}
		w.unignoreLocked(ref)
	}
}

// renumbered takes out of b, a batch of a numbering of the TSDB's series
// before the worker's (a commit onto the TSDB before its reopen, queued by
// its goroutine after the reset: see Pipeline.StorageReopened), its
// ingested samples, and reports whether any is left to score: a derived
// input's, whose references are its labels'. Those of the old references
// name other series now: scored, a sample made a series of its labels
// under the reference, which then scored the other series' samples under
// its labels; a marker ended the results of the series given the
// reference. The samples are in the TSDB, and their series catch up from
// there at their next (see create), as after the drop of a full queue's
// batch; a marker is applied by labels, as one of a series the worker
// holds none of (see staleNotHeld).
func (w *worker) renumbered(ctx context.Context, b *batch) bool {
	p := w.p
	kept := b.s[:0]
	var out *outputs
	dropped, maxT := 0, int64(math.MinInt64)
	for i := range b.s {
		smp := &b.s[i]
		switch {
		case smp.ref&derivedRefBit != 0:
			kept = append(kept, *smp)
		case value.IsStaleNaN(smp.v):
			if out == nil {
				o := p.newOutputs(ctx)
				out = &o
			}
			w.staleNotHeld(ctx, smp, out)
		default:
			dropped, maxT = dropped+1, max(maxT, smp.t)
		}
	}
	if out != nil {
		if err := out.commit(); err != nil {
			p.logger.Debug("Marking outputs stale", "err", err)
			p.m.outputErrors.Inc()
		}
	}
	if dropped > 0 {
		// Rare (a commit descheduled across a whole reopen), and the
		// reopen is logged as a warning already.
		p.noteDroppedAt(maxT)
		p.m.reopenDropped.Add(float64(dropped))
		p.logger.Info("Samples of the TSDB's series references before its reopen, queued after it, not scored; their series catch up from the TSDB at their next sample", "samples", dropped)
	}
	clear(b.s[len(kept):])
	b.s = kept
	return len(kept) > 0
}

// forgetAll drops every series, and forgets the series it does not score:
// the TSDB was reopened, and the references they are keyed by may be other
// series' now (see Pipeline.StorageReopened).
func (w *worker) forgetAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ref, s := range w.series {
		w.drop(ref, s)
	}
	for ref := range w.ignored {
		w.unignoreLocked(ref)
	}
	w.goneMu.Lock()
	w.goneRefs = nil // of the old numbering
	w.goneMu.Unlock()
	// The markers kept from dropped batches, but a derived input's (its
	// refs are its labels' hash): of the old numbering, they would end
	// the results of the series the reopened TSDB gave their refs to.
	w.lostMu.Lock()
	kept := w.lostMarks[:0]
	for _, m := range w.lostMarks {
		if m.s.ref&derivedRefBit != 0 {
			kept = append(kept, m)
		}
	}
	if n := len(w.lostMarks) - len(kept); n > 0 {
		w.p.m.reopenDropped.Add(float64(n))
	}
	clear(w.lostMarks[len(kept):])
	w.lostMarks = kept
	w.lostN.Store(int64(len(kept)))
	w.lostMu.Unlock()
}

// seen records that a sample of s arrived at nowMs (wall clock), which
// /metrics and the anomalies API read under the lock (see series.silent).
func (w *worker) seen(s *series, nowMs int64) {
	w.mu.Lock()
	prev := s.lastSeen
	s.lastSeen = nowMs
	w.liveSeen(s, prev, s.pub.stale)
	w.mu.Unlock()
}

// sweep drops the state of series not seen for StaleAfter (a derived
// input's: StaleAfter past its interval, which may be longer).
func (w *worker) sweep() {
	now := w.p.opts.Now()
	cut := now.Add(-w.p.opts.StaleAfter).UnixMilli()
	// A full budget does not wait StaleAfter for the series that have sent
	// nothing for Prometheus's lookback: those have left every query, and
	// their room goes to the series it refuses. A Recreate rollout's old
	// pods (Prometheus marked every series of their targets stale) left
	// the new pods unscored for StaleAfter, an hour by default; so did a
	// change of the shard count (hashmod), which moves most series to
	// another shard with no staleness marker at the one they left, while
	// that one gains as many from the others: the shard scaled out for
	// want of room refused them. A scrape that failed once marks its
	// series too, and a sender's short outage silences them, but they are
	// back within the lookback; one back later warms from its history, as
	// any series whose models were dropped. Nobody waiting, they keep
	// their models for StaleAfter.
	refused := w.p.overBudgetNow.Load() > 0
	ivs := w.p.intervals()
	nowMs, holdMs := now.UnixMilli(), w.p.opts.IncidentHold.Milliseconds()
	// Absence is measured on omen's clock and in sample time both: a
	// series is passed by d once samples of its kind (its senders', or
	// for a derived input omen's evaluations) have arrived from more than
	// d after its latest. omen's clock alone (Unix ms, no monotonic
	// reading) stepping forward past StaleAfter, an NTP step or a VM or
	// pod resumed while its senders queued, dropped every model before
	// the next samples came; as Prometheus's head, which lets a series go
	// once the samples appended since have left it behind, nothing goes
	// while nothing arrives.
	arrived := w.p.arrivedMs()
	passed := func(s *series, d int64) bool { return arrived[s.ref>>63]-s.pub.t > d }
	// gone reports whether s has left every query: stale with nothing
	// since for the lookback, or silent, which takes it off /metrics too
	// (the incident hold, if longer, included: an incident is not cut
	// short).
	gone := func(s *series) bool {
		if !passed(s, lookbackMs+ivs.everyMs(s)) {
			return false
		}
		if s.pub.stale {
			return s.lastSeen < nowMs-lookbackMs-ivs.everyMs(s)
		}
		return s.silent(holdMs, ivs.everyMs(s), nowMs)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	staleMs := w.p.opts.StaleAfter.Milliseconds()
	// forgotten reports whether a series last seen on omen's clock at seen,
	// its latest sample at t, is silent for StaleAfter past its interval
	// (everyMs, 0 for an ingested input) on both clocks: the rule for
	// scored and ignored series alike.
	forgotten := func(ref storage.SeriesRef, seen, t, everyMs int64) bool {
		return seen < cut-everyMs && arrived[ref>>63]-t > staleMs+everyMs
	}
	for ref, s := range w.series {
		// A reading ahead of omen's clock, which stepped back since, is
		// taken back to it: the series is not kept, nor shown received,
		// that much longer.
		if prev := s.lastSeen; prev > nowMs {
			s.lastSeen = nowMs
			w.liveSeen(s, prev, s.pub.stale)
		}
		if forgotten(ref, s.lastSeen, s.pub.t, ivs.everyMs(s)) || refused && gone(s) {
			w.drop(ref, s)
		}
	}
	// Series kept out by the budget alone get another look at their next
	// sample, as many as there is room for now: a budget freed by churn
	// must not stay unused while they keep sending.
	room := int64(w.p.opts.MaxSeries) - w.p.scored.Load() - w.p.scoredHeld.Load()
	for ref, ig := range w.ignored {
		if ig.seen > nowMs { // omen's clock stepped back: as lastSeen above
			ig.seen = nowMs
			w.ignored[ref] = ig
		}
		switch {
		case forgotten(ref, ig.seen, ig.t, ig.everyMs):
			// Silent on omen's clock and in sample time, as a scored
			// series is forgotten (a derived input StaleAfter past its
			// interval): cut on omen's clock alone, a forward step
			// emptied the list, omen_series_over_budget fell to 0 until
			// the refused series' next samples, and each was refused and
			// counted again as a new series; so did a derived input
			// evaluated less often than StaleAfter, between evaluations.
			w.unignoreLocked(ref)
		case ig.overBudget && room > 0:
			w.unignoreLocked(ref)
			room--
		}
	}
	// Likewise the forecasters: a series that came while
	// --forecast.max-series was full (a deploy's new pods while the old
	// still hold theirs) gets one as room appears, reserved against the
	// other workers' sweeps. Its detector and incident stay as they are;
	// the forecaster learns the series' history at its next sample
	// (warmForecaster), a derived input's from its samples from now on.
	// (Rebuilt from history instead, as a reload does, every worker's
	// sweep rebuilt series for the same room, most of them to no
	// forecaster, and a derived input, which has no history to warm
	// from, went cold.)
	//
	// With no room, the forecasters of series that have sent nothing for
	// the lookback (stale or moved to another shard) go to the series here
	// that want one, as the detectors' room does above: a rollout's new
	// pods forecast nothing for --detect.stale-after while the dead pods'
	// forecasters, which forecast nothing either, held the budget. Their
	// detectors are kept; one back later gets a forecaster again as room
	// appears.
	cfg := w.p.cfg.Load()
	if !w.p.forecastRoom() {
		// The gone series first: usually none, and then no series'
		// selection is matched again.
		var left []*series
		for _, s := range w.series {
			if s.fc != nil && gone(s) {
				left = append(left, s)
			}
		}
		for _, s := range w.series {
			if len(left) == 0 {
				break
			}
			if _, ok := wantsForecaster(cfg, s); ok && !gone(s) {
				left[len(left)-1].fc = nil
				left = left[:len(left)-1]
				w.p.forecasting.Add(-1)
			}
		}
	}
	if !w.p.forecastRoom() {
		return
	}
	for _, s := range w.series {
		sc, ok := wantsForecaster(cfg, s)
		if !ok || gone(s) {
			continue // a gone series would forecast nothing
		}
		if !reserve(&w.p.forecasting, &w.p.fcHeld, w.p.opts.ForecastMaxSeries, false) {
			return
		}
		s.fc = newFcStateOf(w.hz.of(sc), s.ref)
		s.fc.warmDue = !isDerived(s)
	}
}

// wantsForecaster reports whether the sweep is to give s a forecaster when
// there is room, and its options: cfg gives it horizons, it has none, and
// it is live (a stale series' would forecast nothing). Not a group's (it
// has no single value), nor one to be rebuilt (it gets one then).
func wantsForecaster(cfg *config.Config, s *series) (config.Scoring, bool) {
	if s.fc != nil || s.grp != nil || s.rebuild || s.pub.stale {
		return config.Scoring{}, false
	}
	sc, ok := scoringOf(cfg, s.in, s.name, isDerived(s))
	return sc, ok && len(sc.ForecastHorizons) > 0
}

// reserve takes one of budget for a series, counted in n, if one is free.
// The part held for restored series (held) is free only to a series that
// had one when the snapshot was taken (restored): after a restart, the
// series that come back first would otherwise take the budget from the
// ones that had it, whose scores or forecasts (a KEDA trigger's, say)
// stopped for good while others' began, and every restart moved them
// again.
func reserve(n, held *atomic.Int64, budget int, restored bool) bool {
	for {
		c := n.Load()
		limit := int64(budget)
		if !restored {
			limit -= held.Load()
		}
		if c >= limit {
			return false
		}
		if n.CompareAndSwap(c, c+1) {
			return true
		}
	}
}

// forecastRoom reports whether a series that was not restored could get
// a forecaster now.
func (p *Pipeline) forecastRoom() bool {
	return p.forecasting.Load()+p.fcHeld.Load() < int64(p.opts.ForecastMaxSeries)
}

// isHeld reports whether room is held for a restored series' state.
func (p *Pipeline) isHeld(saved *savedSeries) bool {
	p.restoreMu.Lock()
	defer p.restoreMu.Unlock()
	return !saved.unheld
}

// releaseHeld gives back what is held of the budgets for a restored
// series: it came back, or its saved state expired. Once: a state put
// back (keepRestored) is taken again, or expires.
func (p *Pipeline) releaseHeld(saved *savedSeries) {
	p.restoreMu.Lock()
	defer p.restoreMu.Unlock()
	p.releaseHeldLocked(saved)
}

// releaseHeldLocked is releaseHeld with restoreMu held.
func (p *Pipeline) releaseHeldLocked(saved *savedSeries) {
	if saved.unheld {
		return
	}
	saved.unheld = true
	unhold(&p.scoredHeld)
	if saved.forecaster() {
		unhold(&p.fcHeld)
	}
}

// unhold takes one from held, if any is left (restore holds no more than
// the budget).
func unhold(held *atomic.Int64) {
	for {
		h := held.Load()
		if h == 0 || held.CompareAndSwap(h, h-1) {
			return
		}
	}
}

// view calls f with each series under the read lock.
func (w *worker) view(f func(*series)) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, s := range w.series {
		f(s)
	}
}
