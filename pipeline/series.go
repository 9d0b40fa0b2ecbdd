package pipeline

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecast"
	"github.com/omen-sidecar/omen/internal/livefc"
)

// published is what the collector and the API read of a series, under its
// worker's lock.
type published struct {
	t                         int64 // input sample timestamp, ms; the staleness marker's while stale
	value                     float64
	score, yhat, lower, upper float64
	member, feature           string
	ready                     bool
	hasResult                 bool
	// stale: the input's latest sample is a staleness marker (its target
	// or the series left Prometheus's scrape). Its results are no longer
	// exposed, and the stored ones were marked stale too, until the next
	// sample. The models keep their state: a target that comes back
	// scores on at once.
	stale bool
	// live: a sample of the series scored as it arrived was current (see
	// arrived), or its snapshot said so (flagLive). New, or fed history
	// only (written in one go over remote write, or replayed at a warm
	// start), it is not, and its incidents hold in sample time only.
	live bool
	// hotAt is omen's clock (Unix seconds) when the latest sample of the
	// incident's event was scored, if the series was live and the sample
	// older than the clock (0 otherwise): such an incident is exposed and
	// listed for the hold on omen's clock too (heldOn). A sender's
	// backlog (Prometheus resending what it queued while omen was down or
	// hung) is scored in seconds, and held in sample time only, an
	// incident that ended more than the hold before the backlog's end
	// opened and closed between two scrapes: no alert fired on an anomaly
	// omen had scored and stored (e2e/TestBacklogAfterOutage). Scored as
	// it arrives, a sample adds its delivery delay to the hold. History
	// written in one go to a series not live, like a day of it before a
	// series goes live, is no backlog: its old incidents are not news,
	// and holding them on the clock fired alerts on them
	// (TestHistoryIsNoBacklog; e2e/TestScoringEndToEnd's control). In the
	// padding after the flags, with live: a series stays in its size
	// class (TestStateSizeClasses). Seconds in a uint32 (to 2106).
	hotAt uint32
	incidentState
}

// currentMs is the least of currentWithin's bound.
const currentMs = 2 * 60_000

// currentWithin is how far behind omen's clock a sample scored as it
// arrives may be and be current: 2 minutes, or 4 of the series' intervals
// if longer (a scrape of minutes, its remote write batched). Prometheus's
// remote write delivers in seconds when its receiver keeps up.
func currentWithin(intervalMs int64) int64 { return max(currentMs, 4*intervalMs) }

// arrived notes a sample at t scored as it arrived at nowMs on omen's
// clock (0: replayed from history, which changes nothing), its series
// sampled every intervalMs (0: unknown): p is live once one is current.
func (p *published) arrived(t, nowMs, intervalMs int64) {
	if nowMs != 0 && nowMs-t <= currentWithin(intervalMs) {
		p.live = true
	}
}

// incidentState is a series' current incident, saved with its models.
type incidentState struct {
	// The current incident: since is the sample time of its first score
	// above 1 (before the detector's damping; 0: none), lastHot that of
	// the latest sample of its event (a score above 1, or a sample the
	// detector counts as the event going on, see detect.Result.Ongoing, at
	// most eventGap samples after the event's previous one; quiet counts
	// the samples since), peak its highest score before the damping. The
	// detector damps the follow-ups of an event, so a sustained shift
	// scores above 1 once or a few times, not throughout. The incident
	// stays active (exposed, listed) for the hold time after its event's
	// latest sample: a scrape never misses one, and an event that pauses
	// briefly stays one incident. event is the sample time of the current
	// event's first score above 1: a score above 1 more than eventGap
	// samples after the event's latest (missing samples counted, or after
	// a staleness marker) starts another event in the same incident.
	// longest is the length of the incident's longest event before the
	// current one (ms, in what was padding after quiet). The duration on
	// /metrics, which the generated alerts read as "has gone on for", is
	// the longest event so far: two unrelated blips within the hold are one
	// incident, listed once, but not one event of minutes (on a quiet
	// machine, blips up to five minutes apart chained into "5 minutes
	// anomalous" and paged), and a later blip does not resolve an alert
	// that fired on an event of minutes, to fire it again.
	since, lastHot int64
	peak           float64
	quiet          uint32
	longest        uint32
	event          int64
	// peakMember is the detector member (a group's member) that drove
	// the peak, which explains the incident in the anomalies API rather
	// than its latest sample's.
	peakMember string
}

// duration is how long the incident's longest event so far has gone on
// (the current one, or an earlier), in sample time.
func (p *incidentState) duration() time.Duration {
	return time.Duration(max(int64(p.longest), p.current())) * time.Millisecond
}

// current is how long the current event has gone on, in ms.
func (p *incidentState) current() int64 { return p.lastHot - max(p.event, p.since) }

// endEvent marks the current event over (a staleness marker: its target
// went away): the next score above 1 starts another, though it comes
// within eventGap samples (a process that crashed and came back).
func (p *incidentState) endEvent() { p.quiet = max(p.quiet, eventGap) }

// eventGap bounds, in samples, how far apart the samples of one event may
// be, as the detector's own refractHoldLen does. A time would be many
// samples at 1 s scrapes (the hold, 5 minutes, is 300) and chain the
// detector's stray ongoing samples after a false alarm into long events:
// at 1 s, with the hold as the gap, 12–40 events of 20 samples or more a
// day per series of noise, 5.6–28 with this gap; lasting shifts
// make them as before (BenchmarkIncidents, docs/benchmarks.md).
const eventGap = 10

// incident updates the incident of p with the result of its latest
// sample, at t (p.t already set), scored at nowMs on omen's clock (0 for
// a sample replayed from history; p.live already updated, see hotAt). A
// score above 1 before the detector's damping opens an incident or
// extends it, so a change that comes within the damping period of an
// earlier glitch or false alarm is not missed (anomaly_score keeps the
// damping: one event, one score above 1); an ongoing event extends it.
// An undamped score above 1 that the detector does not count as an event
// going on (detect.Result.Ongoing) is the memory of the samples before,
// not this one: after a glitch on a flat series the novelty member's,
// above 1 for five samples, made a 5-minute event of one off-level sample
// at 60 s scrapes, which paged.
func incident(p *published, t int64, r detect.Result, holdMs, nowMs int64) {
	// Samples that did not come count as quiet ones: a blip before a gap
	// in the samples (scrapes failing, remote-write cut off, no staleness
	// marker) and one after it are two events, not one of minutes.
	p.quiet = uint32(min(int64(p.quiet)+max(r.Missed, 0), math.MaxUint32))
	switch {
	case r.Score > 1 || r.Undamped > 1 && r.Ongoing:
		switch {
		case !p.active(holdMs):
			// A new incident: nothing of the last one (its longest
			// event made a blip's duration minutes, and paged).
			p.incidentState = incidentState{since: t, event: t}
		case p.quiet >= eventGap:
			// Another event in the incident.
			p.longest = uint32(min(max(int64(p.longest), p.current()), math.MaxUint32))
			p.event = t
		}
		if sc := max(r.Score, r.Undamped); sc > p.peak {
			p.peak, p.peakMember = sc, r.Member
		}
		p.lastHot, p.quiet = t, 0
		p.hot(t, nowMs)
		return
	case r.Ongoing && p.active(holdMs) && p.quiet < eventGap:
		p.lastHot, p.quiet = t, 0
		p.hot(t, nowMs)
		return
	case p.since != 0 && !p.active(holdMs) && !p.heldOn(holdMs, nowMs):
		p.incidentState = incidentState{}
	}
	p.quiet++
}

// hot notes that the incident's latest event sample, at t, was scored at
// nowMs: held on omen's clock too if the series is live and the clock is
// past t (else the hold in sample time outlasts the clock's).
func (p *published) hot(t, nowMs int64) {
	p.hotAt = 0
	if p.live && nowMs > t {
		p.hotAt = uint32(min(nowMs/1000, math.MaxUint32))
	}
}

// heldOn reports whether p's incident, over in sample time or not, is
// within the hold on omen's clock at nowMs (Unix ms) since its latest
// event sample was scored (to the second; see hotAt): exposed and listed
// as an active one is. A clock stepped back before hotAt holds nothing.
func (p *published) heldOn(holdMs, nowMs int64) bool {
	at := int64(p.hotAt) * 1000
	return p.since != 0 && at != 0 && nowMs >= at && nowMs-at <= holdMs
}

// active reports whether the series is in an incident at its latest sample:
// one whose latest event sample is at most holdMs before it. Not after it:
// live, lastHot is a sample's time, at or before the latest, and a restored
// incident's may be later than the latest sample its restored models
// learnt (±Inf samples, which a detector scores out of range without
// learning them) but a lastHot later than the next sample is damage under
// the snapshot's checksum, which held the incident active until sample time
// passed it (a day of an alert firing for one a day ahead). A restored
// series without a result yet (its first sample out of order for its
// models) is in its restored incident.
func (p *published) active(holdMs int64) bool {
	return p.since != 0 && (p.lastHot <= p.t || !p.hasResult) && p.t-p.lastHot <= holdMs
}

// lookbackMs is Prometheus's default lookback delta: its queries forget a
// series that has had no sample for this long.
const lookbackMs = 5 * 60_000

// inIncident reports whether s's incident is exposed and listed at nowMs
// (wall clock, unix ms): active at its latest sample, or held on omen's
// clock (see published.hotAt), and that sample arrived within the hold or
// Prometheus's lookback, whichever is longer.
// An incident is measured in sample time, so a series whose samples stop
// without a staleness marker (Prometheus stopped, its remote-write cut
// off) would otherwise stay in one, and its alert firing, until the sweep
// forgets the series (--detect.stale-after, 1h): omen cannot tell that an
// event goes on without samples. The caller holds the worker's lock.
func (s *series) inIncident(holdMs, everyMs, nowMs int64) bool {
	return (s.pub.active(holdMs) || s.pub.heldOn(holdMs, nowMs)) && !s.silent(holdMs, everyMs, nowMs)
}

// silent reports whether no sample of s has arrived for the incident hold
// or Prometheus's lookback, whichever is longer (wall clock). An ingested
// series silent so leaves /metrics (see walkOutputs) until its next
// sample, as its input has left Prometheus's queries: its outputs there,
// which carry no timestamps, would otherwise hold their last values for
// the hour until the sweep, hiding that its Prometheus stopped or its
// remote-write was cut off (a flat line in Grafana where the input shows
// a gap). A derived input's series, evaluated by omen every everyMs (0 for
// an ingested one), has that much longer: its expression may be evaluated
// less often than the lookback, and an evaluation that fails (a duplicate
// series in its result) leaves no staleness marker.
func (s *series) silent(holdMs, everyMs, nowMs int64) bool {
	return nowMs-s.lastSeen > max(holdMs, lookbackMs)+everyMs
}

// fcState is the forecasting part of a series, allocated only for series
// within the forecast budget, so the others carry none of it.
type fcState struct {
	m *forecast.Model
	// The horizons, shared by the forecasters a worker makes for a
	// selection (see horizonCache): a pointer, not the two slices, takes
	// fcState from Go's 288-byte size class to the 256.
	*horizonSet
	// The last forecast per horizon: written under the worker's lock,
	// read by the collector under its read lock.
	pts  []forecast.Point
	ok   []bool
	made int64 // sample time the forecast was made at, 0 if none yet
	// Output series refs: 3 per horizon (forecast, lower, upper).
	outRef []storage.SeriesRef
	// Forecast accuracy: one pending forecast per horizon, checked when the
	// target time arrives (O(1) memory, a sampled but unbiased check), in
	// pend[:len(horizons)]; after them, a horizon longer than livefc.CalEvery's
	// further pending forecasts, checked for the band's calibration alone
	// (see livefc.CalSlots).
	pend []livefc.Pending
	rs   livefc.Resampler
	// within is an EWMA of the input's mean squared deviation about its
	// step's mean: the forecaster forecasts step means, and the bands it
	// gives are widened by this spread so that they are for the raw
	// samples users compare them with (0 while each step is one sample).
	within float64
	// prevT and prevV are the latest finite sample before this one (0: none
	// since the start): a forecast's actual at its target, between two
	// samples, is read on the line between them.
	prevT int64
	prevV float64
	// warmDue: the sweep gave this forecaster to a series scored without
	// one; it learns the series' history in the TSDB at its next sample
	// (worker.warmForecaster).
	warmDue bool
	// isNew: the forecast was made at the latest sample, to be appended.
	// Beside warmDue, so the two bools share one word: fcState stays in
	// Go's 288-byte size class.
	isNew bool
	// floorsDue has bit i set for horizon i when a restored state had no
	// band floor of it (a horizon added while omen was down): its floor
	// is calibrated on the series' history in the TSDB at its next sample
	// (worker.calibrateFloors), as a reload's rebuild calibrates it. In
	// the word of the bools (at most config.MaxForecastHorizons bits).
	floorsDue uint8
	// stepDif is an EWMA of |Δ| between the forecaster's consecutive
	// steps, the unit of the bands' calibrated floors (see bandRef). In
	// the word of the two bools above, it costs no bytes.
	stepDif float32
}

// fcBuf is a worker's buffers for its forecasters' steps: the forecast
// points and the forecaster's scratch, lent to one step at a time.
type fcBuf struct {
	pts []forecast.Point
	sc  forecast.Scratch
}

func newFcBuf() fcBuf {
	return fcBuf{pts: make([]forecast.Point, 0, livefc.Options().MaxHorizon)}
}

// horizonSet is the horizons of a selection's forecasts, never written
// once made.
type horizonSet struct {
	horizons []time.Duration
	hname    []string // horizon label values
}

// longest is the longest of the horizons.
func (s *horizonSet) longest() time.Duration {
	var l time.Duration
	for _, h := range s.horizons {
		l = max(l, h)
	}
	return l
}

// newFcStateOf returns a forecaster for the horizons of set, which it
// shares, for the series ref: its refits are staggered by it.
func newFcStateOf(set *horizonSet, ref storage.SeriesRef) *fcState {
	hs := set.horizons
	n := len(hs)
	longest := set.longest()
	minStep := livefc.MinStep(longest)
	m, err := forecast.New(livefc.OptionsFor(minStep, longest))
	if err != nil {
		return nil // forecastOptions are constant and valid; a failure is a bug caught by the tests
	}
	m.StaggerRefits(refitPhase(ref))
	return &fcState{
		m: m, horizonSet: set,
		pts: make([]forecast.Point, n), ok: make([]bool, n),
		outRef: make([]storage.SeriesRef, 3*n), pend: make([]livefc.Pending, n+livefc.ExtraSlots(hs)),
		rs: livefc.Resampler{MinStepMs: minStep},
	}
}

// refitPhase spreads the series' refits over forecastOptions' RefitEvery
// samples (see forecast.Model.StaggerRefits). The head numbers its series
// in the order they come, so a deployment's series, which come together,
// have consecutive refs; Fibonacci hashing maps any run of consecutive
// refs evenly onto the phases, whatever their offset.
func refitPhase(ref storage.SeriesRef) int {
	return int((uint64(ref) * 0x9E3779B97F4A7C15 >> 32) % uint64(livefc.Options().RefitEvery))
}

// series is the state of one scored input. Only its worker writes it.
type series struct {
	ref  storage.SeriesRef
	name string // the `for` label
	// in is the input's labels, __name__ included; it shares its bytes
	// with the head's series (stringlabels), so it costs a header. The
	// outputs' labels (in minus __name__ plus for) are built from it when
	// needed rather than kept: ~100-200 B a series.
	in      labels.Labels
	counter bool
	// utf8Names: some input label name is outside the legacy character
	// set, so the text format's /metrics must escape it.
	utf8Names bool
	// labelBits has a bit per target label the input lacks (lacksJob,
	// lacksInstance), which /metrics exposes empty (see outLabelSet.set),
	// and hasKind if it has a kind label (omen_model_ready's own) or an
	// exported_ one (see eachOutLabel).
	labelBits uint8
	// The flags sit here, in the word labelBits begins, rather than each
	// after its neighbours in meaning: two words of padding fewer, which
	// keeps the series in Go's 2304-byte size class (TestStateSizeClasses).
	//
	// storedHot: the score of the latest results stored (see stored) was
	// above 1.
	storedHot bool
	// rebuild: a reload gave the series options its models cannot take in
	// place; it starts again from its history at its next sample.
	rebuild bool
	// histAsked: a derived input's series to rebuild asked its input's
	// next evaluation for the history its new models warm from (see
	// worker.process).
	histAsked bool
	// bfWait: its older history was asked of the backfill remote-read
	// URL, and its models are remade when that comes (worker.rewarm).
	bfWait bool
	// catchUpDue: restored from the snapshot at a sample out of order for
	// its models, it catches up on what the TSDB took since the snapshot
	// (see catchUp) at its first sample in order instead.
	catchUpDue bool

	// det is embedded, not pointed to: series and detector are one heap
	// object (2 296 B with the default members, with its allocation header
	// the 2 304-byte size class).
	det detect.Detector
	fc  *fcState    // nil: no forecaster
	grp *groupModel // non-nil for a multivariate group, which det does not score
	def string      // a derived input's Signature when the models were made

	rateState // a counter's conversion to a rate

	lastSeen int64 // wall clock, unix ms

	// Output series refs in the TSDB (score, yhat, lower, upper), 0 until
	// known.
	outRef [4]storage.SeriesRef
	// stored is the sample time of the latest results stored in the TSDB
	// (0: none yet).
	stored int64

	absDif float64 // EWMA of |Δy| between samples, the MASE scale
	nDif   int

	pub published
}

// outOfOrder reports whether a sample at t is at or before the latest one
// the models took in: the latest result's, or, with no result yet
// (restored from the snapshot), the latest the restored models learnt.
func (s *series) outOfOrder(t int64) bool {
	if s.pub.hasResult {
		return t <= s.pub.t
	}
	return t <= s.learntUpTo()
}

// learntUpTo is the time of the latest sample the models took in: the
// detector's, or a counter's base for its next rate (a reset's).
func (s *series) learntUpTo() int64 {
	t := s.det.LastTimestamp()
	if s.counter {
		t = max(t, s.prevT)
	}
	return t
}

// rateState is a counter's running total at the base of the span the
// next rate is taken over (the latest sample scored, or a reset; see
// rate), and its latest rise (see scrapeInterval).
type rateState struct {
	prevRaw float64
	prevT   int64
	// prevD is the rise to prevRaw, if hasD. A float32 keeps the series
	// in its size class (TestStateSizeClasses); the rises it is compared
	// for, a count of scrapes', are small whole numbers, exact in it.
	prevD   float32
	hasPrev bool
	hasD    bool
}

// rate turns a counter sample into a per-second rate. A decrease is a
// reset; so is a start timestamp st (remote-write 2.0's, 0 if unknown)
// after the previous sample: the counter restarted since, which its value
// alone does not tell once it has passed the old one. The rise across a
// reset is not known (what the old process counted after its last scrape
// is lost with it): the sample is the next one's base, and has no rate of
// its own. Taken as the value, Prometheus's way, it was a dip by the share
// of the interval the new process had not lived, scored as an anomaly of
// each counter of a redeployed target (a counter of 50 a second restarted
// 11 s before a 15 s scrape: 1.2, TestCounterResetNotAnAnomaly; the real
// Prometheus scraping a restarted exporter: 3.2). ok is false for the
// first sample, a reset and stale markers.
//
// The rate is taken over a span of at least three quarters of minMs (the
// interval the detector learnt, see detect.Detector.Interval; 0: any): a
// sample that comes sooner after the span's base is not scored, and the
// rise goes on accumulating from the base. A count of events over Δt (a
// Poisson count) has a variance of λ·Δt, so a rate's deviation, √(λ/Δt),
// grows as its span shrinks: a counter whose scrape interval was lowered
// from 15 s to 5 s, rated between consecutive samples, was √3 noisier than
// the detector had learnt it, and paged (1.0-1.35 over seeds,
// TestCounterScrapeIntervalChange; 1.34 against the real Prometheus in
// TestOperationalEvents, whose exporter's count noise tripled the rate's).
// Over the learnt span its rate is as noisy as before and scored at the
// learnt pace, as the detector's rings take it (see detect's season.due);
// a raised interval is rated over its own longer span, which the detector
// learns after a run of them. A lowered one keeps the span learnt if it
// divides it and is more than a quarter of it (15 s to 5 s); one that
// does not divide it is rated over the first multiple of it three
// quarters of the learnt one or more, which the detector learns (15 s to
// 10 s: 20 s; 15 s to 12 s: 12 s); and one a quarter of it or less shortens
// the span by steps, each learnt after a run, to three of its intervals
// (5 minutes to 15 s: 225 s, 180 s, ... 45 s after about 4 hours). Only
// the base is kept, not the latest sample (no byte more a
// series): a reset between them is told by the fall below the base, or by
// st after it; one that counted past the base since is not, as one past
// the previous sample was not before.
func (s *rateState) rate(st, t int64, v float64, minMs int64) (r float64, ok bool) {
	if value.IsStaleNaN(v) || math.IsNaN(v) {
		return 0, false
	}
	if !s.hasPrev || t <= s.prevT {
		if !s.hasPrev {
			s.prevRaw, s.prevT, s.hasPrev = v, t, true
		}
		return 0, false
	}
	d := v - s.prevRaw
	if d < 0 || (st > s.prevT && st <= t) {
		s.prevRaw, s.prevT, s.hasD = v, t, false
		return 0, false
	}
	if !detect.FullInterval(t-s.prevT, minMs) {
		return 0, false
	}
	r = d / (float64(scrapeInterval(t-s.prevT, s.hasD && float32(d) == s.prevD)) / 1000)
	s.prevRaw, s.prevT, s.prevD, s.hasD = v, t, float32(d), true
	return r, true
}

// scrapeInterval returns the interval dt (ms) between two samples as the
// whole number of seconds n it is within 1% of (1 s for 997 or 1010 ms, 15 s
// for 15 040), or within 25% of if the counter rose by the same amount as
// at its sample before (same), else dt itself. Prometheus stamps a scrape
// with its start, which on a loaded server is some milliseconds off its
// interval now and then; a counter that rises by the same amount every
// scrape (requests to /metrics, connections per scrape, a heartbeat) then
// has a rate that varies by that timing alone, and a rate otherwise
// constant was scored on it far above 1 (one timestamp 3 ms late at 1 s
// scrapes: 18, and the band blown wide for a hundred samples; 39 ms late
// at 2 s, 1 scrape in 150 of Debian's Prometheus on a loaded 2-core host:
// 20). Scrape intervals are whole seconds nearly always; a missed scrape is
// a whole number of intervals. A counter that rises with time itself
// (seconds spent) or at a steady high rate has the delay in its rise, as
// Prometheus's rate() has: its rise differs from one scrape to the next,
// so it keeps its own interval beyond 1% (an idle CPU's seconds, 50 ms
// late at 1 s, would read 5% busier than idle).
func scrapeInterval(dt int64, same bool) int64 {
	if dt < 500 {
		return dt
	}
	n := (dt + 500) / 1000 * 1000
	d := dt - n
	if d = max(d, -d); 100*d <= n || same && 4*d <= n {
		return n
	}
	return dt
}

// detectOptions maps a config.Scoring onto detector options.
func detectOptions(sc config.Scoring) detect.Options {
	o := detect.DefaultOptions()
	if d, err := detect.ParseDirection(sc.Direction); err == nil {
		o.Direction = d
	}
	if sc.FalseAlarmRate > 0 && sc.FalseAlarmRate < 0.5 {
		o.FalseAlarmRate = sc.FalseAlarmRate
	}
	o.MinDeviationAbs, o.MinDeviationRel = sc.MinDeviationAbs, sc.MinDeviationRel
	if sc.Flatline {
		o.Members |= detect.MemberFlat
	}
	return o
}

// sameHorizons reports whether s forecasts the horizons want (none: no
// forecaster).
func (s *series) sameHorizons(want []time.Duration) bool {
	if s.fc == nil {
		return len(want) == 0
	}
	return slices.Equal(s.fc.horizons, want)
}

func horizonsOf(sc config.Scoring) ([]time.Duration, []string) {
	// config's validation bounds hs at MaxForecastHorizons.
	hs := sc.ForecastHorizons
	d := make([]time.Duration, len(hs))
	n := make([]string, len(hs))
	for i, h := range hs {
		d[i], n[i] = time.Duration(h), model.Duration(h).String()
	}
	return d, n
}

// horizonCache is horizonsOf for a worker's new forecasters: every series
// of a selection forecasts the same horizons, and a copy of its own (the
// durations, the label values and their bytes) was ~100 B of each
// forecast series, held for its life (BenchmarkStatePerSeries). The
// slices it returns are shared between series and never written. It holds
// the horizons of the last few selections a forecaster was made for, so
// it does not grow with reloads; one a worker, not safe for concurrent use.
type horizonCache struct {
	e    [4]horizonEntry
	next int // the entry replaced next
}

type horizonEntry struct {
	raw []model.Duration
	set *horizonSet
}

func (c *horizonCache) of(sc config.Scoring) *horizonSet {
	for _, e := range c.e {
		if e.set != nil && slices.Equal(e.raw, sc.ForecastHorizons) {
			return e.set
		}
	}
	d, names := horizonsOf(sc)
	set := &horizonSet{horizons: d, hname: names}
	c.e[c.next] = horizonEntry{raw: slices.Clone(sc.ForecastHorizons), set: set}
	c.next = (c.next + 1) % len(c.e)
	return set
}

// outLabels returns the labels of the output family with an optional
// horizon.
func (s *series) outLabels(family, horizon string) labels.Labels {
	return outLabelsOf(s.in, s.name, family, horizon)
}

// outLabelsOf returns the labels of the output family, with an optional
// horizon, of the input in scored as forName.
func outLabelsOf(in labels.Labels, forName, family, horizon string) labels.Labels {
	b := labels.NewScratchBuilder(in.Len() + 2)
	b.Add(model.MetricNameLabel, family)
	extra := ""
	if horizon != "" {
		extra = "horizon"
	}
	eachOutLabel(in, forName, extra, horizon, b.Add)
	b.Sort()
	return b.Labels()
}

// eachOutLabel calls f with the labels of an output of the input in (minus
// __name__, plus for, and the label extra=value if extra is set: a
// forecast's horizon, omen_model_ready's kind). An input label that the
// output sets itself is kept as exported_<name>, as Prometheus's scrape
// does with a target's clashing labels: replacing it would give two inputs
// that differ only in it one output series. So is one already named
// exported_<name> (exported_exported_<name>, and so on): Prometheus's way,
// exported_ added until the name is free in the series, gave x{for="a"}
// and x{exported_for="a"} one output series, their samples interleaved.
func eachOutLabel(in labels.Labels, forName, extra, value string, f func(name, value string)) {
	in.Range(func(l labels.Label) {
		switch {
		case l.Name == model.MetricNameLabel:
			return
		case clashes(l.Name, "for"), extra != "" && clashes(l.Name, extra):
			f("exported_"+l.Name, l.Value)
		default:
			f(l.Name, l.Value)
		}
	})
	f("for", forName)
	if extra != "" {
		f(extra, value)
	}
}

// Bits of series.labelBits.
const (
	lacksJob uint8 = 1 << iota
	lacksInstance
	hasKind
)

// labelBitsOf returns series.labelBits for the input labels in.
func labelBitsOf(in labels.Labels) uint8 {
	var b uint8
	if !in.Has(model.JobLabel) {
		b |= lacksJob
	}
	if !in.Has(model.InstanceLabel) {
		b |= lacksInstance
	}
	in.Range(func(l labels.Label) {
		if clashes(l.Name, "kind") {
			b |= hasKind
		}
	})
	return b
}

// clashes reports whether an input label name is the output's own label
// name or that name prefixed with exported_ any number of times (see
// eachOutLabel).
func clashes(name, own string) bool {
	for name != own {
		rest, ok := strings.CutPrefix(name, "exported_")
		if !ok {
			return false
		}
		name = rest
	}
	return true
}

// storeDue reports whether the results of the sample at t are appended to
// the TSDB: the first, every one scoring above 1 and the one after (so an
// alert on anomaly_score > 1 fires and resolves on time), and otherwise the
// first in each everyMs of sample time. Every stored result is one TSDB
// append per family, as costly as the input's own, so this bounds what
// scoring adds to the TSDB; /metrics always has the latest. everyMs 0
// stores every sample's.
//
// The everyMs periods of each series are offset by a hash of its
// reference: series created together (all of a target's, or 100k at once
// after a restart) would otherwise store in the same second of every
// period, a burst of appends that delays the scores queued behind it.
func (s *series) storeDue(t int64, score float64, everyMs int64) bool {
	if s.stored == 0 || score > 1 || s.storedHot || everyMs <= 0 {
		return true
	}
	off := int64((uint64(s.ref) * 0x9E3779B97F4A7C15 >> 32) % uint64(everyMs))
	return (t+off)/everyMs != (s.stored+off)/everyMs
}

// stepOpts are the per-pipeline constants of series.step.
type stepOpts struct {
	forecastEveryMs int64 // sample time between forecasts
	holdMs          int64 // incident hold time, see published
	// nowMs is omen's clock (Unix ms) when a batch scored as it arrived
	// is, 0 for samples replayed from history (see published.live).
	nowMs int64
}

// step scores one (already rate-converted) value and updates the
// forecaster and its accuracy. buf is the worker's forecast scratch.
func (s *series) step(t int64, v float64, acc *accuracy, buf *fcBuf, so stepOpts) {
	r := s.det.Update(t, v)
	p := &s.pub
	// Both measured: one ±Inf would make the scale NaN or infinite for
	// good, a sentinel beyond float32's range 1e303 for months (every
	// later error ~0 in the MASE).
	dif := math.NaN()
	if s.pub.hasResult && detect.Measured(v) && detect.Measured(p.value) {
		dif = math.Abs(v - p.value)
	}
	p.t, p.value, p.hasResult, p.stale = t, v, true, false
	p.score, p.yhat, p.lower, p.upper = r.Score, r.Yhat, r.YhatLower, r.YhatUpper
	p.member, p.feature, p.ready = r.Member, r.Feature, r.Ready
	p.arrived(t, so.nowMs, s.det.Interval())
	if !detect.NoValue(v) {
		incident(p, t, r, so.holdMs, so.nowMs) // ±Inf too: it scores out of range
	} else if p.since != 0 && !p.active(so.holdMs) && !p.heldOn(so.holdMs, so.nowMs) {
		// No value (a ratio's 0/0, a sentinel): the incident ends after the hold,
		// but the sample is not counted quiet here, since the detector
		// counts it in the next number's Missed (counted twice, six
		// NaNs between two blips split one event).
		p.incidentState = incidentState{}
	}
	if s.fc != nil {
		fv := math.NaN() // nothing to learn from ±Inf or no value
		if detect.Measured(v) {
			fv = livefc.Learnable(v, r)
		}
		s.fc.step(s, t, v, fv, acc, buf, so.forecastEveryMs)
	}
	// The change to v joins the MASE scale only once the forecasts for
	// v's time are checked: with it, a spike at a target raised the scale
	// first (by 1/256 of its jump) and cut its own scaled error, the miss
	// the figure is there to show, 120 times on a sine of amplitude 10
	// (TestAccuracyScaleFromBeforeTheActual).
	if !math.IsNaN(dif) {
		s.nDif++
		a := max(1.0/float64(s.nDif), 1.0/256)
		s.absDif += a * (dif - s.absDif)
	}
}

// groupModel is the model of a multivariate group (config.Derived with
// members) and the names of its members, in the order of its values.
type groupModel struct {
	g       *detect.Group
	members []string
}

// stepGroup scores a group's member values, evaluated every intervalMs. A
// group has a score and no band: its value (NaN) and yhat (NaN) say so to
// the outputs and the API.
func (s *series) stepGroup(t int64, vals []float64, intervalMs int64, so stepOpts) {
	r := s.grp.g.Update(t, vals)
	p := &s.pub
	// Evaluations that did not come count toward the gap between events,
	// as an ingested series' missed samples do (detect.Result.Missed).
	var missed int64
	if p.hasResult {
		missed = detect.MissedBetween(p.t, t, intervalMs)
	}
	p.t, p.value, p.hasResult, p.stale = t, math.NaN(), true, false
	p.score, p.yhat, p.lower, p.upper = r.Score, math.NaN(), math.NaN(), math.NaN()
	p.member, p.feature, p.ready = "", "", r.Ready
	if r.Member >= 0 {
		p.member, p.feature = s.grp.members[r.Member], "joint"
	}
	p.arrived(t, so.nowMs, intervalMs)
	incident(p, t, detect.Result{Score: r.Score, Undamped: r.Undamped, Ongoing: r.Ongoing, Member: p.member, Missed: missed}, so.holdMs, so.nowMs)
}

// banded reports whether p has a band (yhat and its bounds) to show: not
// during the warm-up, and never for a group.
func (p *published) banded() bool { return p.ready && !math.IsNaN(p.yhat) }

// bandRef is the unit of horizon h's band floor (see livefc.BandRef).
func (f *fcState) bandRef(h time.Duration) float64 {
	return livefc.BandRef(f.stepDif, f.rs.Step(), h)
}

// step checks the pending forecasts against the sample v, feeds the
// resampled fv (v, or its clipped value: see livefc.Learnable) to the forecaster
// and makes a new forecast when everyMs of sample time have passed since
// the last: the forecaster's O(h) forecast and its periodic refit are most
// of its cost, and a forecast a minute is what dashboards and capacity
// alerts use.
func (f *fcState) step(s *series, t int64, v, fv float64, acc *accuracy, buf *fcBuf, everyMs int64) {
	// Check pending forecasts whose target has come.
	livefc.Check(f.pend, f.horizons, f.rs.Interval(), f.prevT, f.prevV, f.stepDif, f.rs.Step(), t, v, func(i int, pd *livefc.Pending, actual float64) {
		if acc != nil && s.absDif > 0 {
			acc.observe(s.name, f.hname[i], f.horizons[i].Milliseconds(), everyMs, pd.Target, math.Abs(actual-pd.Yhat)/s.absDif, actual >= pd.Lo && actual <= pd.Hi, s.lastSeen)
		}
	})
	if detect.Measured(v) {
		f.prevT, f.prevV = t, v // the checks above are done with the previous
	}
	f.isNew = false
	if !detect.Measured(fv) {
		// No value to learn (NaN, ±Inf, or beyond what the detector
		// learns from: a sentinel such as Java's Double.MAX_VALUE). The
		// last forecasts stand until the next is due, then go: a ratio
		// NaN for hours kept the forecasts made before on /metrics all
		// along.
		if f.made != 0 && t-f.made >= 2*everyMs {
			clear(f.ok)
		}
		return
	}
	pts, n := f.rs.Add(t, fv)
	for _, pt := range pts[:n] {
		livefc.Feed(f.m, pt, &f.within, &f.stepDif)
	}
	switch livefc.Next(f.m, &f.rs, t, f.made, everyMs, n > 0) {
	case livefc.Keep:
		return
	case livefc.Drop:
		clear(f.ok)
		return
	}
	clear(f.ok)
	mk, ok := livefc.MakeAt(f.m, &f.rs, t, f.horizons, buf.pts, &buf.sc)
	buf.pts = mk.Fc
	if !ok {
		return
	}
	f.made, f.isNew = t, true
	for i, h := range f.horizons {
		pt, ok := mk.Point(t, h, f.pend[i].FloorUnits(), f.within, f.stepDif, f.rs.Step(), f.m.NonNegative())
		if !ok {
			continue
		}
		f.pts[i], f.ok[i] = pt, true
		livefc.Arm(f.pend, f.horizons, i, pt)
	}
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
