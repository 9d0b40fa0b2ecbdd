package pipeline

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// outputs appends a series' results to the TSDB through the untapped
// appendable, so they are never scored themselves.
type outputs struct {
	app storage.AppenderV2
	fwd storage.AppenderV2 // nil unless forwarding
	p   *Pipeline
	// minT is the oldest sample time the head appends in order (see
	// appendableMinTime); results of older samples are not stored.
	minT    int64
	everyMs int64 // Options.OutputInterval
}

var baseFamilies = [4]string{FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper}
var fcFamilies = [3]string{FamilyForecast, FamilyForecastLower, FamilyForecastUpper}

// write appends the results of the sample at pub.t, if they are due (see
// series.storeDue), and the new forecast if one was made.
//
// Results of samples older than the head's appendable window (history
// remote-written in the past: it trains the models like any sample) are
// counted in omen_output_history_skipped_total and not appended: the head
// would reject them as out of bounds, one error per family.
func (o *outputs) write(s *series, pub *published) {
	if pub.t < o.minT {
		o.p.m.historySkipped.Inc()
		return
	}
	if s.storeDue(pub.t, pub.score, o.everyMs) {
		s.stored, s.storedHot = pub.t, pub.score > 1
		vals := [4]float64{pub.score, pub.yhat, pub.lower, pub.upper}
		for i, v := range vals {
			if i > 0 && !pub.banded() {
				break // no band before the warm-up ends, nor for a group
			}
			// The score's precision is its own; the band's is its width.
			width := math.Inf(1)
			if i > 0 {
				width = pub.upper - pub.lower
			}
			o.one(s, &s.outRef[i], baseFamilies[i], "", pub.t, v, width)
		}
	}
	f := s.fc // read without the lock: only this worker writes it
	if f == nil || !f.isNew {
		return
	}
	for h := range f.horizons {
		if !f.ok[h] {
			continue
		}
		pt := f.pts[h]
		for j, v := range [3]float64{pt.Yhat, pt.Lower, pt.Upper} {
			o.one(s, &f.outRef[3*h+j], fcFamilies[j], f.hname[h], pub.t, v, pt.Upper-pt.Lower)
		}
	}
}

// one appends one value of a band width wide, rounded as storedPrecision
// does; NaN and ±Inf are not stored.
func (o *outputs) one(s *series, ref *storage.SeriesRef, family, horizon string, t int64, v, width float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	o.append(s, ref, family, horizon, t, storedPrecision(v, width), true)
}

// append appends v to an output series of s, if its family is stored. The
// output's series ref is cached on the series, so in the steady state no
// labels are built: the head resolves the ref. A ref the head no longer
// knows (its series was garbage-collected) fails with an empty label set,
// and the append is retried with the labels if create is set.
func (o *outputs) append(s *series, ref *storage.SeriesRef, family, horizon string, t int64, v float64, create bool) {
	if !o.p.store[family] {
		return
	}
	var ls labels.Labels
	if *ref == 0 || o.fwd != nil {
		ls = s.outLabels(family, horizon)
	}
	r, err := o.app.Append(*ref, ls, 0, t, v, nil, nil, storage.AOptions{})
	if err != nil && create && *ref != 0 && ls.IsEmpty() {
		ls = s.outLabels(family, horizon)
		r, err = o.app.Append(0, ls, 0, t, v, nil, nil, storage.AOptions{})
	}
	if err != nil {
		o.p.outputRefused(s.in, family, t, err)
		*ref = 0
		return
	}
	*ref = r
	// Forwarded only once stored: a receiver never gets a result the
	// TSDB refused. The forwarding log holds its own series, so it is
	// given the labels, not the TSDB's reference. Its refusals (an output
	// older than the last forwarded, after a reload shortened the output
	// interval) are counted by its own metrics.
	if o.fwd != nil {
		_, _ = o.fwd.Append(0, ls, 0, t, v, nil, nil, storage.AOptions{})
	}
}

// stale marks the output series of s stored so far stale at t (and
// forwards the markers), as Prometheus marks a recording rule's series
// stale when its input goes: PromQL, and alerts on anomaly_score > 1, stop
// seeing them at once instead of after the lookback delta. A ref the head
// no longer knows has nothing left to mark.
func (o *outputs) stale(s *series, t int64) {
	o.staleBase(s, 0, t)
	o.staleForecasts(s, nil, t)
}

// staleBase marks the stored base outputs of s stale at t from family
// index from on (baseFamilies: 0 all, 1 the band: yhat and its bounds).
func (o *outputs) staleBase(s *series, from int, t int64) {
	if t < o.minT {
		return
	}
	marker := math.Float64frombits(value.StaleNaN)
	for i := from; i < len(s.outRef); i++ {
		if s.outRef[i] != 0 {
			o.append(s, &s.outRef[i], baseFamilies[i], "", t, marker, false)
		}
	}
}

// staleForecasts marks the stored forecast outputs of s stale at t, but
// for the horizons keep (a successor's forecaster, or nil) still has.
func (o *outputs) staleForecasts(s *series, keep *fcState, t int64) {
	f := s.fc
	if f == nil || t < o.minT {
		return
	}
	marker := math.Float64frombits(value.StaleNaN)
	for h := range f.horizons {
		if keep != nil && slices.Contains(keep.hname, f.hname[h]) {
			continue
		}
		for j, fam := range fcFamilies {
			if f.outRef[3*h+j] != 0 {
				o.append(s, &f.outRef[3*h+j], fam, f.hname[h], t, marker, false)
			}
		}
	}
}

// storedOutputs calls f with each output series that q holds for the input
// in scored as forName: its base outputs and each horizon's forecasts,
// whatever families and horizons are configured now. It is for an input
// omen holds no series of (a state waiting in the snapshot, or a series
// being created), whose output refs are not known. Equality matchers also
// select series with more labels (another input's outputs), which are
// passed over.
func storedOutputs(ctx context.Context, q storage.Querier, in labels.Labels, forName string, f func(storage.Series)) error {
	// The labels every output of in has: a forecast's horizon label
	// renames an input label that clashes with it (see eachOutLabel).
	var ms []*labels.Matcher
	eachOutLabel(in, forName, "", "", func(name, value string) {
		if !clashes(name, "horizon") {
			ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, name, value))
		}
	})
	ss := q.Select(ctx, false, nil, ms...)
	for ss.Next() {
		ls := ss.At().Labels()
		family, horizon := ls.Get(model.MetricNameLabel), ""
		if !isOutputName(family) {
			continue
		}
		if slices.Contains(fcFamilies[:], family) {
			horizon = ls.Get("horizon")
		}
		if labels.Equal(ls, outLabelsOf(in, forName, family, horizon)) {
			f(ss.At())
		}
	}
	return ss.Err()
}

// staleStored marks stale at t each output series stored for the input in
// scored as forName (see storedOutputs) whose latest sample in q is not a
// staleness marker already, and forwards the markers. If one has a sample
// at or after t, the markers go just after the latest (a sender's clock
// ahead of omen's), as worker.reconfigure places those of a series a
// reload deselects; or, if exact (t is the input's own staleness marker's,
// out of order for its results), none go.
func (o *outputs) staleStored(ctx context.Context, q storage.Querier, in labels.Labels, forName string, t int64, exact bool) {
	var live []labels.Labels
	latest := int64(math.MinInt64)
	err := storedOutputs(ctx, q, in, forName, func(s storage.Series) {
		lastT, lastV := int64(math.MinInt64), 0.0
		it := s.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			lastT, lastV = it.At()
		}
		if lastT == math.MinInt64 || value.IsStaleNaN(lastV) {
			return
		}
		live = append(live, s.Labels())
		latest = max(latest, lastT)
	})
	if err != nil {
		o.p.logger.Debug("Reading stored outputs", "input", in, "err", err)
	}
	if latest >= t {
		if exact {
			return
		}
		t = latest + 1
	}
	if t < o.minT {
		return
	}
	marker := math.Float64frombits(value.StaleNaN)
	for _, ls := range live {
		if _, err := o.app.Append(0, ls, 0, t, marker, nil, nil, storage.AOptions{}); err != nil {
			o.p.outputRefused(in, ls.Get(model.MetricNameLabel), t, err)
			continue
		}
		if o.fwd != nil {
			_, _ = o.fwd.Append(0, ls, 0, t, marker, nil, nil, storage.AOptions{})
		}
	}
}

// newOutputs returns a batch of outputs to append, and forward if
// configured, in one transaction.
func (p *Pipeline) newOutputs(ctx context.Context) outputs {
	out := outputs{app: p.st.AppenderV2(ctx), p: p, minT: appendableMinTime(p.st), everyMs: p.opts.OutputInterval.Milliseconds()}
	if p.opts.Forward != nil {
		out.fwd = p.opts.Forward.AppenderV2(ctx)
	}
	return out
}

// commit commits the outputs, then forwards them: what the TSDB refused to
// commit is not forwarded either.
func (o *outputs) commit() error {
	err := o.app.Commit()
	if o.fwd == nil {
		return err
	}
	if err != nil {
		_ = o.fwd.Rollback()
		return err
	}
	if ferr := o.fwd.Commit(); ferr != nil {
		o.p.m.forwardErrors.Inc()
		o.p.logger.Warn("Logging outputs for remote write", "err", ferr)
	}
	return nil
}

// storedPrecision rounds v, a value of a band width wide, to float32's
// precision (24 significant bits, about 7 decimal digits), far finer than
// any score, band or forecast is accurate. The head's XOR chunks then write
// about half the bits for each output sample: less head memory and the
// chunk encoding, the largest part of an output append's cost, halves. A
// value the rounding would move by more than a thousandth of its band
// keeps its precision: a large value with a narrow band (a timestamp, 1.8e9
// s ± 0.05 s, rounds to multiples of 128 s, and its stored band collapsed
// onto one value beside the series), or a constant one (width 0). So do
// values beyond float32's range.
func storedPrecision(v, width float64) float64 {
	if math.Abs(v) > math.MaxFloat32 {
		return v
	}
	r := float64(float32(v))
	if math.Abs(r-v)*1000 > width {
		return v
	}
	return r
}

// appendableMinTime returns the oldest sample time the TSDB head appends
// in order, if the storage is a Prometheus TSDB (directly or as omen's
// tsdb.Storage): the head's maximum time minus half a block, or the end of
// the last block. Outputs older than that would be rejected as out of
// bounds (or, with an out-of-order window, go through the costlier
// out-of-order path); they are history the models learn from, not live
// results worth storing. math.MinInt64 if unknown.
//
// Called right after the output appender is created: the head's bound only
// grows, so every time at or after it is also within the appender's.
func appendableMinTime(st Storage) int64 {
	h := headOf(st)
	if h == nil {
		return math.MinInt64
	}
	if t, ok := h.AppendableMinValidTime(); ok {
		return t
	}
	return math.MinInt64
}

// headOf returns the TSDB head, if the storage is a Prometheus TSDB
// (directly or as omen's tsdb.Storage), else nil.
func headOf(st Storage) *tsdb.Head {
	switch db := st.(type) {
	case interface{ DB() *tsdb.DB }:
		if d := db.DB(); d != nil {
			return d.Head()
		}
	case interface{ Head() *tsdb.Head }:
		return db.Head()
	}
	return nil
}

// markerTime is when the staleness markers omen decides on by itself (a
// reload or a restart no longer selects a series) go: at now, but not
// past the latest sample the head holds (math.MinInt64 if it holds none:
// the callers then put the markers just after a series' latest result).
// Behind a backlog (a Prometheus resending what it queued while omen was
// down, history written at speed) the clock is hours ahead of the
// samples, and a marker at now moved the head's maximum time there: the
// head compacted up to it and refused every later sample of the backlog
// as out of bounds (a 400, which the sender drops).
func markerTime(st Storage, now time.Time) int64 {
	t := now.UnixMilli()
	if h := headOf(st); h != nil {
		t = min(t, h.MaxTime())
	}
	return t
}

// outputRefusedLogEvery spaces the warnings about output samples the TSDB
// refused: one cause (a sender resending history after a restart, say)
// refuses a few for every series at once.
const outputRefusedLogEvery = time.Minute

// outputRefused counts an output sample the TSDB refused, and logs it: as
// a warning at most once per outputRefusedLogEvery, with the count since,
// at debug otherwise (it was counted alone, in
// omen_output_append_failures_total, with nothing to say which series or
// why).
func (p *Pipeline) outputRefused(in labels.Labels, family string, t int64, err error) {
	p.m.outputErrors.Inc()
	n, warn := p.outRefusedLog.Note(outputRefusedLogEvery)
	if !warn {
		if p.logger.Enabled(context.Background(), slog.LevelDebug) { // its arguments would be boxed for nothing
			p.logger.Debug("Output sample refused by the TSDB", "family", family, "input", in, "t", t, "err", err)
		}
		return
	}
	p.logger.Warn("Output sample refused by the TSDB", "family", family, "input", in, "t", t, "err", err,
		"refused_since_last_warning", n, "next_warning_in", outputRefusedLogEvery)
}
