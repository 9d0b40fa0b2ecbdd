package pipeline

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/config"
)

// derivedRefBit marks the pseudo series refs of derived inputs, which have
// no TSDB series: the head's refs count up from 1 and never reach it.
const derivedRefBit storage.SeriesRef = 1 << 63

// runDerived evaluates the configured derived inputs, each every its
// interval, and scores each series of the result like an ingested one.
// Inputs are evaluated side by side, up to GOMAXPROCS at once, so a slow
// expression (up to its interval) delays no other; an input still being
// evaluated when it is due again misses that evaluation, as a Prometheus
// rule group misses an iteration.
func (p *Pipeline) runDerived(ctx context.Context) {
	if p.engine == nil {
		return
	}
	next := map[string]slot{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		running = map[string]bool{}
		sem     = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	)
	defer wg.Wait()
	eval := func(d *config.Derived, now time.Time) {
		mu.Lock()
		busy := running[d.Name]
		running[d.Name] = true
		mu.Unlock()
		if busy {
			p.countDerived(d, p.m.derivedMissed, 1)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			p.evalDerived(ctx, d, now)
			<-sem
			mu.Lock()
			delete(running, d.Name)
			mu.Unlock()
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := p.opts.Now()
		cfg := p.cfg.Load()
		seen := make(map[string]bool, len(cfg.Derived))
		for i := range cfg.Derived {
			d := &cfg.Derived[i]
			seen[d.Name] = true
			due, at, missed := isDue(next, d, now)
			if missed > 0 {
				p.countDerived(d, p.m.derivedMissed, float64(missed))
			}
			if due {
				eval(d, at)
			}
		}
		for name := range next {
			if !seen[name] {
				delete(next, name)
			}
		}
		p.derivedRemoved(seen, now)
		p.hist.expire(now)
	}
}

// slot is a derived input's schedule: its next evaluation, and the
// interval that was set with.
type slot struct {
	at    time.Time
	every time.Duration
}

// isDue reports whether d is due at now, and moves its slot in next on if
// so; it is evaluated at at, its latest slot (up to the loop's tick before
// now), as Prometheus evaluates a rule group at its slot's time: the
// results' timestamps are the same on every replica. Each input is evaluated on a grid of its own, its
// interval apart at an offset hashed from its name (see slotAfter), as
// Prometheus spreads its rule groups: inputs loaded together are spread
// across the interval, not evaluated all at once (they competed for the
// few evaluation slots, each interval), and a restart or a second replica evaluates at the same times. A new
// input is first evaluated at its first slot after now. A reload that
// changes an input's interval reschedules it at most one new interval
// away: it kept the rest of the old one (an hour, say, before a new 10s
// took effect). missed counts the input's slots passed since the one due
// (see nextDue).
func isDue(next map[string]slot, d *config.Derived, now time.Time) (due bool, at time.Time, missed int) {
	every := time.Duration(d.Interval)
	off := slotOffset(d.Name, every)
	s, ok := next[d.Name]
	switch {
	case !ok:
		next[d.Name] = slot{at: slotAfter(now, every, off), every: every}
		return false, time.Time{}, 0
	case s.every != every:
		if soon := slotAfter(now, every, off); soon.Before(s.at) {
			s.at = soon
		}
		s.every = every
		next[d.Name] = s
	}
	if now.Before(s.at) {
		return false, time.Time{}, 0
	}
	then, missed := nextDue(s.at, now, every, off)
	next[d.Name] = slot{at: then, every: every}
	return true, s.at.Add(time.Duration(missed) * every), missed
}

// nextDue is when an input due at due and evaluated at now is due again:
// its next slot, not interval after now, from which each run slipped by up
// to the loop's tick (an interval of 1s was evaluated every 1-2 s). The
// slots passed while it fell behind by an interval or more are missed, as
// a Prometheus rule group that fell behind counts them in
// prometheus_rule_group_iterations_missed_total: the loop stalled (the
// process starved of CPU, the machine suspended) and they were skipped
// without a count.
func nextDue(due, now time.Time, every, off time.Duration) (time.Time, int) {
	return slotAfter(now, every, off), int(now.Sub(due) / every)
}

// slotAfter is the first time after now on the grid of slots every apart,
// each off past a multiple of every in Unix time.
func slotAfter(now time.Time, every, off time.Duration) time.Time {
	n, e := now.UnixNano(), int64(every)
	r := ((n-int64(off))%e + e) % e
	return now.Add(time.Duration(e - r))
}

// slotOffset is where in its interval an input's slots fall: a hash of its
// name, so the same input falls at the same point after every restart and
// on every replica, and inputs of one interval spread across it.
func slotOffset(name string, every time.Duration) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return time.Duration(h.Sum64() % uint64(every))
}

// evalDerived evaluates d at now. d is from the configuration the caller
// loaded: a reload during the query (which may run for d's interval) must
// not change which input is evaluated, nor index past a shorter list.
func (p *Pipeline) evalDerived(ctx context.Context, d *config.Derived, now time.Time) {
	// At 0 from the first evaluation, so rate() and increase() see the
	// first failure. An evaluation that waited for its turn past a reload
	// that removed d does not run.
	if !p.countDerived(d, p.m.derivedErrs, 0) || !p.countDerived(d, p.m.derivedMissed, 0) {
		return
	}
	defer p.derivedEvaluated(d, now, time.Now())
	if d.IsGroup() {
		p.evalGroup(ctx, d, now)
		return
	}
	qctx, cancel := context.WithTimeout(ctx, time.Duration(d.Interval))
	defer cancel()
	vec, err := p.instant(qctx, d.Expr, now)
	if err != nil {
		p.derivedFailed(ctx, d, "Derived input: evaluation failed", "err", err)
		return
	}
	sh := p.shadowsOf(qctx, d, now)
	var coll collisions
	samples := make([]sample, 0, len(vec))
	cur := make(map[storage.SeriesRef]labels.Labels, len(vec))
	var hs histograms
	for _, s := range vec {
		if s.H != nil {
			hs.add("", s.Metric)
			continue
		}
		b := labels.NewBuilder(s.Metric)
		b.Set(model.MetricNameLabel, d.Name)
		ls := b.Labels()
		ref := derivedRef(ls)
		if sh.shadowed(ref, ls) {
			continue
		}
		if prev, dup := cur[ref]; dup {
			if labels.Equal(prev, ls) {
				// Series that differ only in their name, made one by it: as
				// a recording rule's evaluation, this one fails whole.
				p.derivedFault(d, "Derived input: the result has series that differ only in their metric name, which the input's name replaces; not scored. Aggregate or relabel them apart.",
					"series", ls.String())
				return
			}
			coll.add(prev, ls)
			continue
		}
		cur[ref] = ls
		samples = append(samples, sample{ref: ref, ls: ls, t: now.UnixMilli(), v: s.F, derived: &derivedSample{d: d}})
	}
	hs.report(p, d)
	sh.report()
	coll.report(p, d)
	p.firstHistory(ctx, d, now, cur)
	p.derivedDone(d, samples, cur, sh.handedOver, now)
}

// derivedRef is the pseudo series reference of a derived input's series
// ls (or group): its labels' hash. That hash is xxhash64 with a known
// seed, whose collisions anyone can compute (TestDerivedHashCollision
// makes one from a label value, as an upstream request path could carry),
// so every map keyed by it compares the labels too, and a series whose
// reference another one holds is refused, named (see collisions and
// worker.derivedCollision): it was scored in the other's models, under
// its labels.
func derivedRef(ls labels.Labels) storage.SeriesRef {
	return derivedRefBit | storage.SeriesRef(ls.Hash()>>1)
}

// collisions are the series of an evaluation not scored because their
// reference (derivedRef) is another series' of the result.
type collisions struct {
	n           int
	kept, first string // of the first one
}

func (c *collisions) add(kept, refused labels.Labels) {
	if c.n == 0 {
		c.kept, c.first = kept.String(), refused.String()
	}
	c.n++
}

// report counts and logs the evaluation's collisions, if any, as a
// failure of d: its other series are scored.
func (c *collisions) report(p *Pipeline, d *config.Derived) {
	if c.n == 0 {
		return
	}
	p.derivedFault(d, "Derived input: series of its result whose labels hash as another's (omen's pseudo series reference); not scored. Relabel them apart.",
		"count", c.n, "first", c.first, "collides_with", c.kept)
}

// histograms counts the native histogram series of an evaluation's result,
// which are not scored: a model takes one number per time. Skipped without
// a word, `rate(http_request_duration_seconds[5m])` over native histograms
// (the way to score them, the README says) scored nothing, counted no
// failure and logged nothing.
type histograms struct {
	n             int
	member, first string // of the first one
}

func (h *histograms) add(member string, ls labels.Labels) {
	if h.n == 0 {
		h.member, h.first = member, ls.String()
	}
	h.n++
}

// report counts and logs the evaluation's histograms, if any, as a failure
// of d: its float series, if any, are scored.
func (h *histograms) report(p *Pipeline, d *config.Derived) {
	if h.n == 0 {
		return
	}
	args := []any{"count", h.n, "first", h.first}
	if h.member != "" {
		args = append(args, "member", h.member)
	}
	p.derivedFault(d, "Derived input: its result has native histograms, which are not scored. Take a number of them: histogram_quantile(0.99, ...), histogram_avg(...), histogram_count(...).", args...)
}

// shadows finds the series of a derived input's result that have the name
// and labels of a scored ingested series. Their outputs would be the
// ingested series' own (for is the name, the other labels the same): two
// inputs writing one anomaly_score. The ingested series keeps them, and a
// staleness marker from the derived one, scored until now, would end them
// for a moment (and a pending alert on them): it is handed over.
type shadows struct {
	p          *Pipeline
	d          *config.Derived
	cfg        *config.Config
	ingested   map[uint64][]labels.Labels
	handedOver map[storage.SeriesRef]bool
	first      string
}

func (p *Pipeline) shadowsOf(ctx context.Context, d *config.Derived, now time.Time) *shadows {
	return &shadows{p: p, d: d, cfg: p.cfg.Load(), ingested: p.ingestedNamed(ctx, d.Name, now)}
}

// shadowed reports whether the derived series ref, ls, is shadowed, and
// notes it if so.
func (s *shadows) shadowed(ref storage.SeriesRef, ls labels.Labels) bool {
	if !slices.ContainsFunc(s.ingested[ls.Hash()], func(in labels.Labels) bool { return labels.Equal(in, ls) }) || !s.cfg.Selected(ls) {
		return false
	}
	if s.handedOver == nil {
		s.handedOver, s.first = map[storage.SeriesRef]bool{}, ls.String()
	}
	s.handedOver[ref] = true
	return true
}

// report counts and logs the evaluation's shadowed series, if any.
func (s *shadows) report() {
	if len(s.handedOver) == 0 {
		return
	}
	s.p.derivedFault(s.d, "Derived input: series of its result have the name and labels of ingested series, whose outputs they would overwrite; not scored. Rename the derived input or relabel its result.",
		"count", len(s.handedOver), "first", s.first)
}

// derivedFailed counts and logs a failed query of d, unless ctx, the
// loop's, is done: a shutdown cancels the queries it finds running, which
// is no failure of theirs.
func (p *Pipeline) derivedFailed(ctx context.Context, d *config.Derived, msg string, args ...any) {
	if ctx.Err() != nil {
		return
	}
	p.derivedFault(d, msg, args...)
}

// countDerived adds n to d's counter in c (n 0 creates it, so that rate()
// sees the first increase) and reports true, unless a reload removed d:
// derivedRemoved deletes a removed input's counters, and an evaluation
// still running then, which failed after, made them again, to stay on
// /metrics for good.
func (p *Pipeline) countDerived(d *config.Derived, c *prometheus.CounterVec, n float64) bool {
	p.derivedMu.Lock()
	defer p.derivedMu.Unlock()
	return p.countDerivedLocked(d, c, n)
}

func (p *Pipeline) countDerivedLocked(d *config.Derived, c *prometheus.CounterVec, n float64) bool {
	if p.cfg.Load().DerivedNamed(d.Name) == nil {
		return false
	}
	p.derivedCounted[d.Name] = true
	c.WithLabelValues(d.Name).Add(n)
	return true
}

// derivedEvaluated records d's evaluation at now, begun at start (the
// wall clock's, now is the schedule's), unless a reload removed d (see
// countDerived): without them a slow expression showed only once it took
// its whole interval, as failures and missed evaluations.
func (p *Pipeline) derivedEvaluated(d *config.Derived, now, start time.Time) {
	took := time.Since(start).Seconds()
	p.derivedMu.Lock()
	defer p.derivedMu.Unlock()
	if p.cfg.Load().DerivedNamed(d.Name) == nil {
		return
	}
	p.derivedCounted[d.Name] = true
	p.m.derivedLastEval.WithLabelValues(d.Name).Set(float64(now.UnixMilli()) / 1000)
	p.m.derivedLastTook.WithLabelValues(d.Name).Set(took)
}

// derivedFault counts a failed evaluation of d and logs msg about it (see
// derivedWarn), unless a reload removed d (see countDerived).
func (p *Pipeline) derivedFault(d *config.Derived, msg string, args ...any) {
	p.derivedMu.Lock()
	counted := p.countDerivedLocked(d, p.m.derivedErrs, 1)
	var n int
	var due bool
	if counted {
		n, due = p.warnDue(d.Name)
	}
	p.derivedMu.Unlock()
	if counted {
		p.derivedWarn(d.Name, n, due, msg, args...)
	}
}

// derivedWarnEvery spaces the warnings about one derived input: an
// expression that fails, fails at every evaluation, and each was a warning
// (one a second at interval: 1s, each naming the series at fault);
// omen_derived_evaluation_failures_total counts every one.
const derivedWarnEvery = time.Minute

type warnState struct {
	last  time.Time // of the last warning
	since int       // failures since, logged at debug
}

// warnDue notes a failure of the derived input name and reports whether
// it is to be a warning, at most one per derivedWarnEvery, with the count
// n of failures since the last one. The caller holds derivedMu.
func (p *Pipeline) warnDue(name string) (n int, due bool) {
	now := p.opts.Now()
	w := p.derivedWarned[name]
	if w == nil {
		w = &warnState{}
		p.derivedWarned[name] = w
	}
	w.since++
	n, due = w.since, w.last.IsZero() || now.Sub(w.last) >= derivedWarnEvery
	if due {
		w.last, w.since = now, 0
	}
	return n, due
}

// derivedWarn logs msg about the derived input name, as a warning with n
// the failures since the last one if due (see warnDue), else at debug.
func (p *Pipeline) derivedWarn(name string, n int, due bool, msg string, args ...any) {
	args = append([]any{"name", name}, args...)
	if !due {
		p.logger.Debug(msg, args...)
		return
	}
	p.logger.Warn(msg, append(args, "failures_since_last_warning", n, "next_warning_in", derivedWarnEvery)...)
}

// aggregatedAway returns a member of the group d whose series all lack a
// label of d.By that some other member's series carry, and that label;
// carries and got are per member, as evalGroup gathers them.
func aggregatedAway(d *config.Derived, carries []uint64, got []bool) (member, label string, ok bool) {
	var union uint64
	for _, c := range carries {
		union |= c
	}
	for i, c := range carries {
		if !got[i] || c == union {
			continue
		}
		for j, l := range d.By[:min(len(d.By), 64)] {
			if union&^c&(1<<j) != 0 {
				return d.Members[i].Name, l, true
			}
		}
	}
	return "", "", false
}

// instant evaluates expr at now, a scalar as a vector of one series with
// no labels.
func (p *Pipeline) instant(ctx context.Context, expr string, now time.Time) (promql.Vector, error) {
	q, err := p.engine.NewInstantQuery(ctx, p.st, nil, expr, now)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	vec, err := res.Vector()
	if err != nil {
		sc, serr := res.Scalar()
		if serr != nil {
			return nil, fmt.Errorf("want an instant vector or scalar: %w", err)
		}
		vec = promql.Vector{{T: sc.T, F: sc.V}}
	}
	return vec, nil
}

// evalGroup evaluates the members of the group d at now and scores each
// group, the series of the members that have the same values of d.By, as
// one input: its labels are d.By's and its name d's. A group some member
// has no series for, or a NaN or infinite value, is not scored at this
// evaluation (a pod with no errors yet: give that member's expression an
// `or` default), and its outputs stay for Prometheus's lookback (5m) after
// its last score: a staleness marker would reset a pending alert on it at
// every idle moment (a latency quantile is NaN without traffic), while
// outputs kept longer would show a score no data stands behind. Then, or
// when none of its members has a series, it goes stale. A member with two series for one group fails the
// evaluation, as two series of one name do a recording rule's: its
// expression is to aggregate by d.By.
func (p *Pipeline) evalGroup(ctx context.Context, d *config.Derived, now time.Time) {
	qctx, cancel := context.WithTimeout(ctx, time.Duration(d.Interval))
	defer cancel()
	type group struct {
		ls   labels.Labels
		vals []float64
		have uint16 // a bit per member
	}
	var (
		groups = map[uint64]*group{}
		order  []uint64
		b      = labels.NewBuilder(labels.EmptyLabels())
		// carries has a bit for each of d.By's labels that some series
		// of the member has, and got whether it has any series.
		carries = make([]uint64, len(d.Members))
		got     = make([]bool, len(d.Members))
	)
	var (
		hs   histograms
		coll collisions
	)
	for i, m := range d.Members {
		vec, err := p.instant(qctx, m.Expr, now)
		if err != nil {
			p.derivedFailed(ctx, d, "Derived group: a member's expression failed", "member", m.Name, "err", err)
			return
		}
		for _, s := range vec {
			if s.H != nil {
				hs.add(m.Name, s.Metric)
				continue
			}
			got[i] = true
			for j, l := range d.By[:min(len(d.By), 64)] {
				if s.Metric.Get(l) != "" {
					carries[i] |= 1 << j
				}
			}
			ls := groupLabels(b, d, s.Metric)
			h := ls.Hash()
			g := groups[h]
			if g == nil {
				g = &group{ls: ls, vals: make([]float64, len(d.Members))}
				groups[h] = g
				order = append(order, h)
			} else if !labels.Equal(g.ls, ls) {
				coll.add(g.ls, ls) // see derivedRef
				continue
			}
			if g.have&(1<<i) != 0 {
				p.derivedFault(d, "Derived group: a member has several series for one group; not scored. Aggregate the member's expression by the group's labels.",
					"member", m.Name, "group", g.ls.String(), "by", d.By)
				return
			}
			g.have |= 1 << i
			g.vals[i] = s.F
		}
	}
	all := uint16(1)<<len(d.Members) - 1
	complete := false
	for _, g := range groups {
		complete = complete || g.have == all
	}
	if m, l, ok := aggregatedAway(d, carries, got); ok && !complete {
		// Its series lack a label the others' have, and no group is
		// complete: they never share a group with theirs (a `sum by`
		// that left the label out). Counted, so an alert on the
		// failures says so, where a debug log would not.
		p.derivedFault(d, "Derived group: a member's series lack a label of the group's `by` that the other members' have, and no group is complete. Aggregate the member's expression by all the group's labels.",
			"member", m, "label", l, "by", d.By)
	}
	sh := p.shadowsOf(qctx, d, now)
	samples := make([]sample, 0, len(groups))
	cur := make(map[storage.SeriesRef]labels.Labels, len(groups))
	incomplete, nowMs := 0, now.UnixMilli()
	p.derivedMu.Lock()
	for _, h := range order {
		g := groups[h]
		ref := derivedRef(g.ls)
		if sh.shadowed(ref, g.ls) {
			continue
		}
		if g.have != all || hasUnmeasured(g.vals) {
			// A member's 0/0 (no requests, no errors), ±Inf or a
			// sentinel beyond float32's range is as missing.
			// Its outputs stay within Prometheus's lookback of its
			// last score, as a scrape's would.
			if last, ok := p.groupScored[ref]; ok && nowMs-last <= lookbackMs {
				cur[ref] = g.ls
			}
			incomplete++
			continue
		}
		cur[ref] = g.ls
		p.groupScored[ref] = nowMs
		samples = append(samples, sample{ref: ref, ls: g.ls, t: nowMs, derived: &derivedSample{d: d, vals: g.vals}})
	}
	p.derivedMu.Unlock()
	if incomplete > 0 {
		p.logger.Debug("Derived group: groups some member has no series or a NaN for, not scored", "name", d.Name, "count", incomplete)
	}
	hs.report(p, d)
	sh.report()
	coll.report(p, d)
	p.firstHistory(ctx, d, now, cur)
	p.derivedDone(d, samples, cur, sh.handedOver, now)
}

// ingestedNamed returns the labels of the stored series named name with
// samples in the lookback before now, by their hash: ingested inputs a
// derived input of that name would collide with if they are scored (the
// caller checks the selection and compares the labels). Usually none: one
// postings lookup.
func (p *Pipeline) ingestedNamed(ctx context.Context, name string, now time.Time) map[uint64][]labels.Labels {
	q, err := p.st.Querier(now.UnixMilli()-lookbackMs, now.UnixMilli())
	if err != nil {
		return nil
	}
	defer q.Close()
	set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, name))
	var hashes map[uint64][]labels.Labels
	for set.Next() {
		if hashes == nil {
			hashes = map[uint64][]labels.Labels{}
		}
		ls := set.At().Labels().Copy() // kept past the querier
		hashes[ls.Hash()] = append(hashes[ls.Hash()], ls)
	}
	if err := set.Err(); err != nil {
		p.logger.Debug("Derived input: looking up ingested series of its name", "name", name, "err", err)
	}
	return hashes
}

// derivedRemoved marks the series of derived inputs no longer configured
// stale (see derivedGone), and forgets their counters and warnings, those
// of an input that never had a result too.
func (p *Pipeline) derivedRemoved(configured map[string]bool, now time.Time) {
	p.derivedMu.Lock()
	var removed []string
	for name := range p.derivedLast {
		if !configured[name] {
			removed = append(removed, name)
		}
	}
	for name := range p.derivedCounted {
		if !configured[name] {
			delete(p.derivedCounted, name)
			delete(p.derivedWarned, name)
			p.m.derivedErrs.DeleteLabelValues(name)
			p.m.derivedMissed.DeleteLabelValues(name)
			p.m.derivedLastEval.DeleteLabelValues(name)
			p.m.derivedLastTook.DeleteLabelValues(name)
		}
	}
	p.derivedMu.Unlock()
	for _, name := range removed {
		p.derivedGone(name, nil, nil, now)
	}
}

// derivedGone sends a staleness marker at now for each series the derived
// input name gave at its last evaluation and not in cur (nil: the input
// was removed from the configuration), as Prometheus's rule evaluation
// does for a recording rule's series: their results go stale with them
// (see worker.markStale), except those handedOver to an ingested series,
// whose outputs go on. cur becomes the last evaluation's series.
func (p *Pipeline) derivedGone(name string, cur map[storage.SeriesRef]labels.Labels, handedOver map[storage.SeriesRef]bool, now time.Time) {
	p.derivedMu.Lock()
	defer p.derivedMu.Unlock()
	p.derivedGoneLocked(name, cur, handedOver, now)
}

// derivedDone hands an evaluation of d its results: it dispatches samples
// and retires the series of d's previous evaluation not in cur. Unless a
// reload removed d, or redefined it, while its queries ran: derivedRemoved
// has marked (or will mark) its series stale, and a sample after the marker
// would bring their outputs back until the next tick; a redefined input's
// old results would rebuild models just made for the new definition. Under
// derivedMu, so a removal is either wholly before this (nothing is
// dispatched) or wholly after (the markers follow the samples).
func (p *Pipeline) derivedDone(d *config.Derived, samples []sample, cur map[storage.SeriesRef]labels.Labels, handedOver map[storage.SeriesRef]bool, now time.Time) {
	p.derivedMu.Lock()
	defer p.derivedMu.Unlock()
	if cd := p.cfg.Load().DerivedNamed(d.Name); cd == nil || cd.Signature() != d.Signature() {
		for ref := range cur {
			if _, kept := p.derivedLast[d.Name][ref]; !kept {
				delete(p.groupScored, ref)
			}
		}
		return
	}
	if len(samples) > 0 {
		p.dispatch(samples)
	}
	p.derivedGoneLocked(d.Name, cur, handedOver, now)
}

func (p *Pipeline) derivedGoneLocked(name string, cur map[storage.SeriesRef]labels.Labels, handedOver map[storage.SeriesRef]bool, now time.Time) {
	var gone []sample
	stale := math.Float64frombits(value.StaleNaN)
	for ref, ls := range p.derivedLast[name] {
		// Compared by labels too: another series of the result may have
		// the reference now (see derivedRef), and this one is gone.
		if kept, ok := cur[ref]; !ok || !labels.Equal(kept, ls) {
			if !ok {
				delete(p.groupScored, ref)
			}
			gone = append(gone, sample{ref: ref, ls: ls, t: now.UnixMilli(), v: stale, handedOver: handedOver[ref], removed: cur == nil})
		}
	}
	if cur == nil {
		delete(p.derivedLast, name)
		delete(p.derivedSig, name)
		delete(p.derivedRewarm, name)
	} else {
		p.derivedLast[name] = cur
	}
	if len(gone) > 0 {
		p.dispatch(gone)
	}
}
