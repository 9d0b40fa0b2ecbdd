package pipeline

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
)

// A derived input has no stored history of its own, but the TSDB holds
// that of its expression's inputs: at its first evaluation (after a start,
// or once added by a reload) the expression is evaluated over the past too,
// a range query at the input's interval, and each new series of its result
// warms from it as an ingested series does from its stored samples; a
// series restored from the snapshot catches up on what it missed while
// omen was down.

// derivedHistoryBudget bounds the values one input's history holds (8 bytes
// each, and a timestamp per point): a group of 1000 pods of 4 members at
// 2048 points would otherwise hold 64 MiB between the query and the warm
// starts. Over it, each series gets fewer, the latest, points.
const derivedHistoryBudget = 1 << 21

// history is the past of one derived series: k values per time, k being 1,
// or a group's members in order, at steps of stepMs (the input's interval;
// a step missing is an evaluation that found nothing).
type history struct {
	t      []int64
	v      []float64
	stepMs int64
}

// derivedHistories holds the histories of each input's first evaluation
// until its series take them, or until they are no longer wanted.
type derivedHistories struct {
	mu     sync.Mutex
	inputs map[string]*inputHistory
}

type inputHistory struct {
	series map[storage.SeriesRef]history
	until  time.Time // dropped after: series not created by then never will be from it
}

func (h *derivedHistories) set(name string, series map[storage.SeriesRef]history, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inputs == nil {
		h.inputs = map[string]*inputHistory{}
	}
	h.inputs[name] = &inputHistory{series: series, until: until}
}

// has reports whether the history of the series ref of input name is held.
func (h *derivedHistories) has(name string, ref storage.SeriesRef) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.inputs[name]
	if in == nil {
		return false
	}
	_, ok := in.series[ref]
	return ok
}

// take returns and forgets the history of the series ref of input name.
func (h *derivedHistories) take(name string, ref storage.SeriesRef) (history, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.inputs[name]
	if in == nil {
		return history{}, false
	}
	s, ok := in.series[ref]
	delete(in.series, ref)
	if len(in.series) == 0 {
		delete(h.inputs, name)
	}
	return s, ok
}

// expire forgets the histories no series took by now.
func (h *derivedHistories) expire(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, in := range h.inputs {
		if now.After(in.until) {
			delete(h.inputs, name)
		}
	}
}

// historySteps returns the times of d's history before now: at most
// BackfillMaxPoints steps of d's interval within BackfillMaxAge, fewer if
// series·steps·k would exceed the budget. ok is false if there are none.
func (p *Pipeline) historySteps(d *config.Derived, now time.Time, series, k int) (start, end time.Time, ok bool) {
	step := time.Duration(d.Interval)
	n := min(p.opts.BackfillMaxPoints, int(p.opts.BackfillMaxAge/step), derivedHistoryBudget/max(1, series*k))
	if n <= 0 || p.opts.BackfillMaxPoints <= 0 {
		return time.Time{}, time.Time{}, false
	}
	end = now.Add(-step)
	return end.Add(-time.Duration(n-1) * step), end, true
}

// rangeQuery evaluates expr at every step from start to end, over the
// TSDB and the backfill upstream (historyQueryable), and calls f with each
// float series of the result, before the query's memory is released.
func (p *Pipeline) rangeQuery(ctx context.Context, expr string, start, end time.Time, step time.Duration, f func(ls labels.Labels, pts []promql.FPoint)) error {
	qa := p.historyQueryable()
	q, err := p.engine.NewRangeQuery(ctx, qa, nil, expr, start, end, step)
	if err != nil {
		return err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return res.Err
	}
	if m, ok := qa.(*mergedQueryable); ok && m.err() != nil {
		p.logger.Warn("Derived input: the upstream's history failed; its warm start has the TSDB's alone", "expr", expr, "err", redact(m.err(), p.bf.up().url))
	}
	m, err := res.Matrix()
	if err != nil {
		return err
	}
	for _, s := range m {
		if len(s.Floats) > 0 {
			f(s.Metric, s.Floats)
		}
	}
	return nil
}

// historyTimeout bounds the history's queries: at least the input's
// interval, so a short interval does not cut off the range query that
// serves only its first evaluation.
const historyTimeout = 30 * time.Second

// firstHistory loads d's history (see loadHistory) at its first
// evaluation with a result since the start, or since a reload added it or
// changed what it computes (its series then start again: see
// worker.process). Series that join the result later (a new pod) warm up on evaluations: a
// range query over the whole history at every evaluation some series
// joins would cost more than all the instant ones.
func (p *Pipeline) firstHistory(ctx context.Context, d *config.Derived, now time.Time, cur map[storage.SeriesRef]labels.Labels) {
	if len(cur) == 0 {
		return
	}
	p.derivedMu.Lock()
	sig, ok := p.derivedSig[d.Name]
	done := ok && sig == d.Signature() && !p.derivedRewarm[d.Name]
	p.derivedSig[d.Name] = d.Signature()
	delete(p.derivedRewarm, d.Name)
	p.derivedMu.Unlock()
	if !done {
		p.loadHistory(ctx, d, now, cur)
	}
}

// historyWanted has the next evaluation of the derived input name read its
// history (see firstHistory), for series whose new options need new
// models (see worker.process).
func (p *Pipeline) historyWanted(name string) {
	p.derivedMu.Lock()
	p.derivedRewarm[name] = true
	p.derivedMu.Unlock()
}

// loadHistory evaluates d's expression over the past and keeps each series'
// history for its warm start; want are the series of the evaluation at
// now. Failures are logged and counted: the series then warm up on new
// evaluations, as before.
func (p *Pipeline) loadHistory(outer context.Context, d *config.Derived, now time.Time, want map[storage.SeriesRef]labels.Labels) {
	ctx, cancel := context.WithTimeout(outer, max(time.Duration(d.Interval), p.histTimeout))
	defer cancel()
	var got map[storage.SeriesRef]history
	var err error
	if d.IsGroup() {
		got, err = p.groupHistory(ctx, d, now, want)
	} else {
		got, err = p.exprHistory(ctx, d, now, want)
	}
	if err != nil {
		p.derivedFailed(outer, d, "Derived input: evaluating its history for the warm start failed; its series warm up on new evaluations", "err", err)
		return
	}
	if len(got) > 0 {
		p.hist.set(d.Name, got, now.Add(2*time.Duration(d.Interval)+time.Minute))
	}
}

func (p *Pipeline) exprHistory(ctx context.Context, d *config.Derived, now time.Time, want map[storage.SeriesRef]labels.Labels) (map[storage.SeriesRef]history, error) {
	start, end, ok := p.historySteps(d, now, len(want), 1)
	if !ok {
		return nil, nil
	}
	got := map[storage.SeriesRef]history{}
	b := labels.NewBuilder(labels.EmptyLabels())
	err := p.rangeQuery(ctx, d.Expr, start, end, time.Duration(d.Interval), func(ls labels.Labels, pts []promql.FPoint) {
		b.Reset(ls)
		b.Set(model.MetricNameLabel, d.Name)
		ls = b.Labels()
		ref := derivedRef(ls)
		if w, ok := want[ref]; !ok || !labels.Equal(w, ls) { // see derivedRef
			return
		}
		h := history{t: make([]int64, len(pts)), v: make([]float64, len(pts)), stepMs: time.Duration(d.Interval).Milliseconds()}
		for i, pt := range pts {
			h.t[i], h.v[i] = pt.T, pt.F
		}
		got[ref] = h
	})
	return got, err
}

// groupHistory evaluates each member over the past and puts the members'
// values of each group and step together; steps some member lacks are left
// out, as at a live evaluation.
func (p *Pipeline) groupHistory(ctx context.Context, d *config.Derived, now time.Time, want map[storage.SeriesRef]labels.Labels) (map[storage.SeriesRef]history, error) {
	k := len(d.Members)
	start, end, ok := p.historySteps(d, now, len(want), k)
	if !ok {
		return nil, nil
	}
	step := time.Duration(d.Interval)
	n := int(end.Sub(start)/step) + 1
	type acc struct {
		v    []float64
		have []uint16
	}
	groups := map[storage.SeriesRef]*acc{}
	b := labels.NewBuilder(labels.EmptyLabels())
	for i, m := range d.Members {
		err := p.rangeQuery(ctx, m.Expr, start, end, step, func(ls labels.Labels, pts []promql.FPoint) {
			gls := groupLabels(b, d, ls)
			ref := derivedRef(gls)
			if w, ok := want[ref]; !ok || !labels.Equal(w, gls) { // see derivedRef
				return
			}
			g := groups[ref]
			if g == nil {
				g = &acc{v: make([]float64, n*k), have: make([]uint16, n)}
				groups[ref] = g
			}
			for _, pt := range pts {
				j := int((pt.T - start.UnixMilli()) / step.Milliseconds())
				if j < 0 || j >= n {
					continue
				}
				if g.have[j]&(1<<i) != 0 {
					g.have[j] |= 1 << 15 // two series of the member: the step is ambiguous
				}
				g.have[j] |= 1 << i
				g.v[j*k+i] = pt.F
			}
		})
		if err != nil {
			return nil, err
		}
	}
	all := uint16(1)<<k - 1
	got := make(map[storage.SeriesRef]history, len(groups))
	for ref, g := range groups {
		h := history{stepMs: step.Milliseconds()}
		for j := range n {
			if row := g.v[j*k : (j+1)*k]; g.have[j] == all && !hasUnmeasured(row) {
				h.t = append(h.t, start.UnixMilli()+int64(j)*step.Milliseconds())
				h.v = append(h.v, row...)
			}
		}
		if len(h.t) > 0 {
			got[ref] = h
		}
	}
	return got, nil
}

// groupLabels returns the labels of the group of d that the member series
// ls belongs to: d.By's labels of ls, and d's name.
func groupLabels(b *labels.Builder, d *config.Derived, ls labels.Labels) labels.Labels {
	b.Reset(labels.EmptyLabels())
	for _, l := range d.By {
		b.Set(l, ls.Get(l))
	}
	b.Set(model.MetricNameLabel, d.Name)
	return b.Labels()
}

// defHash is a derived input definition's (config.Derived.Signature) hash,
// saved with its series' models.
func defHash(sig string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(sig))
	return h.Sum64()
}

func hasUnmeasured(vs []float64) bool {
	for _, v := range vs {
		if !detect.Measured(v) {
			return true
		}
	}
	return false
}

// warmDerived replays the history of the derived series s, if its input's
// first evaluation left one, up to before beforeMs and after what s's
// models learnt (a series restored from the snapshot catches up).
func (w *worker) warmDerived(s *series, beforeMs int64) {
	h, ok := w.p.hist.take(s.name, s.ref)
	if !ok {
		return
	}
	k, last := 1, s.det.LastTimestamp()
	if s.grp != nil {
		k, last = s.grp.g.Len(), s.grp.g.LastTimestamp()
	}
	if len(h.v) != k*len(h.t) {
		return // evaluated before a reload changed the group's members
	}
	so := w.p.stepOpts()
	replay := w.replayer(s)
	n := 0
	for i, t := range h.t {
		if t <= last || t >= beforeMs {
			continue
		}
		if s.grp != nil {
			s.stepGroup(t, h.v[i*k:(i+1)*k], h.stepMs, so)
		} else {
			replay(t, h.v[i])
		}
		n++
	}
	w.p.m.warmed.Add(float64(n))
}
