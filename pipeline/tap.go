package pipeline

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/config"
)

// sample is one committed float sample on its way to a worker.
type sample struct {
	ref     storage.SeriesRef
	ls      labels.Labels // retained: Prometheus's appenders keep ls too (the head stores it)
	st, t   int64         // st: the remote-write 2.0 start timestamp, 0 if none
	v       float64
	counter bool
	typed   bool // counter comes from metadata, not from the name alone
	// handedOver, on a staleness marker of a derived input's series: its
	// outputs are now an ingested series' (see evalDerived), so it stops
	// being scored without marking them stale.
	handedOver bool
	// removed, on a staleness marker of a derived input's series: a
	// reload removed its input, so its models go with the marker rather
	// than count as scored, and in the budget, until the sweep.
	removed bool
	derived *derivedSample // non-nil for derived inputs
}

// derivedSample is what a derived input's sample carries beyond a sample:
// behind a pointer, so that ingested samples, all but a few, stay 64 bytes.
type derivedSample struct {
	d *config.Derived
	// vals are a group's member values, in d.Members' order; nil for a
	// derived input of one expression, whose value is the sample's.
	vals []float64
}

// batch is the samples of one shard from one Commit. Batches are pooled:
// a batch belongs to the tap until enqueued, then to the worker, which
// returns it to the pool after scoring.
type batch struct {
	s         []sample
	committed time.Time
	barrier   chan struct{} // closed by the worker when it reaches this batch (tests, shutdown)
	// reset has the worker forget every series when it reaches the
	// barrier (see Pipeline.StorageReopened).
	reset bool
	// gen is the TSDB's numbering of series the samples' references are
	// of (see Pipeline.storeGen); on a reset barrier, the numbering the
	// worker takes from then on. 32 bits beside reset keep a batch in
	// 64 bytes.
	gen uint32
}

var batchPool = sync.Pool{New: func() any { return &batch{s: make([]sample, 0, 64)} }}

func getBatch() *batch { return batchPool.Get().(*batch) }

// getBatchFor returns a batch with room for n samples. A batch the pool
// makes (it is empty while the queues hold most batches, behind a backlog,
// and after each collection) was grown by append from 64 samples to a
// shard's share of a request in five copies: 5% of omen's CPU while 100 000
// new series were being scored, on the write path, beside the scorers.
func getBatchFor(n int) *batch {
	b := getBatch()
	if cap(b.s) < n {
		b.s = make([]sample, 0, n)
	}
	return b
}

func putBatch(b *batch) {
	clear(b.s) // drop label references
	b.s, b.barrier, b.reset, b.gen = b.s[:0], nil, false, 0
	batchPool.Put(b)
}

// Tap returns an AppendableV2 that appends to next and, when a transaction
// commits, hands its float samples to the scorer. Append does nothing heavy
// (a name check and a slice append); Commit enqueues without blocking: a
// full queue drops the batch and counts it in omen_scoring_dropped_total.
func (p *Pipeline) Tap(next storage.AppendableV2) storage.AppendableV2 {
	return tap{p: p, next: next}
}

type tap struct {
	p    *Pipeline
	next storage.AppendableV2
}

func (t tap) AppenderV2(ctx context.Context) storage.AppenderV2 {
	a := appenderPool.Get().(*tapAppender)
	// The numbering before the TSDB's appender is opened: the references
	// it gives are of this one or a later one, never an earlier.
	a.p, a.gen = t.p, t.p.storeGen.Load()
	a.next = t.next.AppenderV2(ctx)
	return a
}

// appenderPool recycles tapAppenders and their sample buffers: an appender
// is back in the pool after Commit or Rollback, which the AppenderV2
// contract says end its use.
var appenderPool = sync.Pool{New: func() any { return &tapAppender{samples: make([]sample, 0, 64)} }}

func (a *tapAppender) release() {
	clear(a.samples)
	a.samples, a.p, a.next, a.off, a.hist, a.gen = a.samples[:0], nil, nil, 0, 0, 0
	appenderPool.Put(a)
}

// tapAppender implements storage.ExemplarAppenderV2 so that the write
// handler's exemplar path keeps working through it.
type tapAppender struct {
	p       *Pipeline
	next    storage.AppenderV2
	samples []sample
	off     int    // samples appended while scoring is off (MaxSeries 0)
	hist    int    // native histogram samples appended: stored, not scored
	gen     uint32 // the TSDB's numbering of series when it was opened
}

func (a *tapAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	ref, err := a.next.Append(ref, ls, st, t, v, h, fh, opts)
	if err != nil || ref == 0 {
		return ref, err
	}
	if h != nil || fh != nil {
		// Stored and queryable; a derived input scores them
		// (histogram_quantile over their rate, say).
		a.hist++
		return ref, err
	}
	if a.p.opts.MaxSeries == 0 {
		a.off++ // nothing is scored: only the ingest rate is kept
		return ref, err
	}
	name := ls.Get(model.MetricNameLabel)
	if !Scorable(name) || (strings.HasSuffix(name, "_created") && a.p.creationTimestamp(name, opts.Metadata.Type)) {
		return ref, err
	}
	typ := opts.Metadata.Type
	if typ == "" || typ == model.MetricTypeUnknown {
		typ = a.p.declaredType(name)
	}
	if typ == model.MetricTypeInfo {
		return ref, err // a constant 1 carrying labels, as target_info below
	}
	typed := typ != "" && typ != model.MetricTypeUnknown
	a.samples = append(a.samples, sample{ref: ref, ls: ls, st: st, t: t, v: v, counter: isCounter(name, typ), typed: typed})
	return ref, err
}

// AppendExemplars forwards to next if it supports exemplars.
func (a *tapAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, ex []exemplar.Exemplar) (storage.SeriesRef, error) {
	if ea, ok := a.next.(storage.ExemplarAppenderV2); ok {
		return ea.AppendExemplars(ref, ls, ex)
	}
	return ref, nil
}

// GetRef forwards to next (storage.GetRef): the write handler asks the
// head whether it holds a series before it may create one under
// --write.max-head-series, and without it through the tap it bounded
// nothing.
func (a *tapAppender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	if g, ok := a.next.(storage.GetRef); ok {
		return g.GetRef(ls, hash)
	}
	return 0, labels.EmptyLabels()
}

// errScoringStopped refuses a commit of samples to score once the scorers
// have stopped for good (see tapAppender.Commit); the write handler answers
// it with a 503, which the sender retries.
var errScoringStopped = errors.New("shutting down: scoring has stopped, send again after the restart")

func (a *tapAppender) Commit() error {
	defer a.release()
	if len(a.samples) > 0 {
		// A request outliving the HTTP server's shutdown grace: once the
		// scorers have stopped for the final snapshot, marked current (its
		// states skip the restart's catch-up), a sample stored now would
		// never be learnt. Refused, the sender sends it again after the
		// restart (503); one under way is counted, and keeps the mark away.
		p := a.p
		p.committing.Add(1)
		defer p.committing.Add(-1)
		if p.final.Load() {
			_ = a.next.Rollback()
			return errScoringStopped
		}
	}
	// Samples of series scored (or that would be, scoring on), before
	// the TSDB stores them: the snapshot's current mark goes.
	if len(a.samples) > 0 || a.off > 0 {
		if err := a.p.tookSamples(); err != nil {
			_ = a.next.Rollback()
			return err
		}
	}
	if err := a.next.Commit(); err != nil {
		return err
	}
	if len(a.samples) > 0 {
		a.p.enqueue(a.samples, a.gen)
	}
	a.p.tapped.Add(uint64(a.off))
	if a.hist > 0 {
		a.p.m.histogramsNotScored.Add(float64(a.hist))
	}
	return nil
}

func (a *tapAppender) Rollback() error {
	defer a.release()
	return a.next.Rollback()
}

// Scorable reports whether series of this metric name are scored: never the
// outputs themselves nor omen's own metrics, which would feed back; nor
// Prometheus's ALERTS or the recording rules made from the outputs (`omen
// rules generate`: omen:..., level:anomaly_score:..., level:omen_...), which
// a remote_write without the shipped drop rules sends back: omen scored its
// own alerts. Nor target_info, the OpenTelemetry resource's attributes
// that the Collector's prometheusremotewrite exporter (and Prometheus's
// own OTLP receiver) write as a series of constant value 1 per resource
// (<namespace>_target_info with the exporter's namespace): stored for
// joins (PromQL's info()), but scored it only took a --detect.max-series
// and a --forecast.max-series place per service instance, and listed every
// instance in /api/v1/anomalies with a score that is always 0. Series of
// an info family by their metadata are not scored either, for the same
// reason (tapAppender.Append).
func Scorable(name string) bool {
	if name == "" || isOutputName(name) || strings.HasPrefix(name, "omen_") || name == "ALERTS" || name == "ALERTS_FOR_STATE" ||
		name == "target_info" || strings.HasSuffix(name, "_target_info") {
		return false
	}
	if strings.IndexByte(name, ':') < 0 {
		return true // not a recording rule's
	}
	return !strings.HasPrefix(name, "omen:") && !strings.Contains(name, ":anomaly_score:") && !strings.Contains(name, ":omen_")
}

// isCounter reports whether a series is a counter: by its metadata
// (remote-write 2.0's with the series, or 1.0's declared for its family,
// see NoteTypes) if the sender gave one, else by the naming conventions.
func isCounter(name string, typ model.MetricType) bool {
	switch typ {
	case model.MetricTypeCounter:
		return true
	case model.MetricTypeGauge, model.MetricTypeGaugeHistogram, model.MetricTypeStateset, model.MetricTypeInfo:
		return false
	case model.MetricTypeHistogram, model.MetricTypeSummary:
		// Their _sum, _count and _bucket series are cumulative; a summary's
		// quantiles are not.
		return strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_bucket")
	}
	return strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_count") ||
		strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_bucket")
}

// enqueue counts ingested samples, of the TSDB's numbering gen, and
// dispatches them.
func (p *Pipeline) enqueue(samples []sample, gen uint32) {
	p.tapped.Add(uint64(len(samples)))
	p.dispatchGen(samples, gen)
}

// dispatch splits samples of the TSDB's current numbering (or of derived
// inputs, whose references are their labels') by shard and queues them
// without blocking.
func (p *Pipeline) dispatch(samples []sample) { p.dispatchGen(samples, p.storeGen.Load()) }

// dispatchGen is dispatch for samples of the TSDB's numbering gen.
func (p *Pipeline) dispatchGen(samples []sample, gen uint32) {
	now := p.opts.Now()
	n := len(p.workers)
	if n == 1 {
		b := getBatchFor(len(samples))
		b.s = append(b.s, samples...)
		b.committed, b.gen = now, gen
		p.workers[0].offer(b)
		return
	}
	var bs [16]*batch // the common case without a heap allocation
	var cs [16]int
	var shards []*batch
	var counts []int
	if n <= len(bs) {
		shards, counts = bs[:n], cs[:n]
	} else {
		shards, counts = make([]*batch, n), make([]int, n)
	}
	for i := range samples {
		counts[shardOf(samples[i].ref, n)]++
	}
	for _, s := range samples {
		i := shardOf(s.ref, n)
		if shards[i] == nil {
			shards[i] = getBatchFor(counts[i])
			shards[i].committed, shards[i].gen = now, gen
		}
		shards[i].s = append(shards[i].s, s)
	}
	for i, b := range shards {
		if b != nil {
			p.workers[i].offer(b)
		}
	}
}

func shardOf(ref storage.SeriesRef, n int) int {
	// Fibonacci hashing spreads sequential head refs over the shards.
	return int((uint64(ref) * 0x9E3779B97F4A7C15 >> 32) % uint64(n))
}

// maxDeclared bounds the families NoteTypes keeps.
const maxDeclared = 1 << 14

// NoteTypes records the types senders declared for metric families (the
// metadata of remote-write 1.0, sent in requests of their own, about once
// a minute, apart from the samples), in order: families[i] as types[i].
// Only a counter or a gauge whose name says otherwise (a counter without
// _total, a gauge named _count) is kept for the samples: they carry the
// declared type from then on, and a series scored as the other kind starts
// again from its history. Where the name and the type agree, the samples
// are typed by their name, at no cost. A family's series are named as the
// family only for counters and gauges; the other types' series are typed
// well by their names.
//
// A family declared both a counter and a gauge (by two targets: Prometheus
// sends every target's metadata, in one request or in turns) is typed by
// its name from then on, and its series typed otherwise are started again
// as that; whichever declaration came last retyped them back and forth.
// declaredAll remembers every family's latest declaration to see that.
func (p *Pipeline) NoteTypes(families []string, types []model.MetricType) {
	p.declaredMu.Lock()
	defer p.declaredMu.Unlock()
	if p.declaredAll == nil {
		p.declaredAll = map[string]model.MetricType{}
	}
	old := p.declared.Load()
	var m map[string]model.MetricType // the copy, made at the first change
	set := func(family string, typ model.MetricType) {
		if m == nil {
			m = make(map[string]model.MetricType, 1)
			if old != nil {
				m = maps.Clone(*old)
			}
		}
		m[family] = typ
	}
	var created map[string]struct{} // the copy, made at the first new one
	for i, family := range families {
		typ := types[i]
		if hasCreated(typ) {
			// A 2.0 sender types each series, req_total's family
			// is req_total: its creation series is req_created.
			name := strings.TrimSuffix(family, "_total") + "_created"
			c := p.created.Load()
			known := len(created)
			if created == nil && c != nil {
				known = len(*c)
			}
			if (c == nil || !has(*c, name)) && !has(created, name) && known < maxDeclared {
				if created == nil {
					created = map[string]struct{}{}
					if c != nil {
						created = maps.Clone(*c)
					}
				}
				created[name] = struct{}{}
			}
		}
		if typ != model.MetricTypeCounter && typ != model.MetricTypeGauge {
			continue
		}
		prev, known := p.declaredAll[family]
		switch {
		case prev == typ || prev == conflicting:
			continue
		case known:
			p.declaredAll[family] = conflicting
			set(family, conflicting)
			p.logger.Warn("Metric family declared both a counter and a gauge; its series are typed by their name", "family", family)
			continue
		case len(p.declaredAll) >= maxDeclared:
			continue
		}
		p.declaredAll[family] = typ
		if isCounter(family, typ) != isCounter(family, "") {
			set(family, typ)
		}
	}
	if m != nil {
		p.declared.Store(&m)
	}
	if created != nil {
		p.created.Store(&created)
	}
}

// hasCreated reports whether series of a family of type typ may come with
// an OpenMetrics <family>_created series: their creation time.
func hasCreated(typ model.MetricType) bool {
	switch typ {
	case model.MetricTypeCounter, model.MetricTypeHistogram, model.MetricTypeGaugeHistogram, model.MetricTypeSummary:
		return true
	}
	return false
}

func has(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}

// creationTimestamp reports whether the series name (ending in _created)
// is an OpenMetrics creation timestamp, which is not scored: a timestamp
// that steps at every restart of its process, it opened an incident each
// time (peak ~7) in the anomalies list and the anomalous-series rules. By
// its own metadata if that says histogram or summary (remote-write 2.0:
// its family's type), or by its family's declared type; a gauge named
// _created (kube_pod_created) is scored, and so is a counter named so.
func (p *Pipeline) creationTimestamp(name string, typ model.MetricType) bool {
	if hasCreated(typ) && typ != model.MetricTypeCounter {
		return true
	}
	c := p.created.Load()
	return c != nil && has(*c, name)
}

// conflicting marks a family declared both ways: typed by its name.
const conflicting model.MetricType = "conflicting"

// declaredType is the type NoteTypes kept for the family name, "" if none;
// for a family declared both ways, the type its name says (so that its
// series scored as the other kind are started again as that). One atomic
// load per sample while no family needs one.
func (p *Pipeline) declaredType(name string) model.MetricType {
	m := p.declared.Load()
	if m == nil {
		return ""
	}
	t := (*m)[name]
	if t != conflicting {
		return t
	}
	if isCounter(name, "") {
		return model.MetricTypeCounter
	}
	return model.MetricTypeGauge
}
