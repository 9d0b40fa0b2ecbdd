package pipeline

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forecast"
)

// accuracy keeps rolling forecast accuracy per input name and horizon h:
//
//	MASE     = Σ wᵢ |yᵢ − ŷᵢ| / sᵢ / Σ wᵢ,  s = EWMA of |y_t − y_{t−1}| of the series
//	coverage = Σ wᵢ 1{lowerᵢ ≤ yᵢ ≤ upperᵢ} / Σ wᵢ
//
// over the checks i of every series of that name, each weighed
// wᵢ = exp(−(t − tᵢ)/τ) by its sample time tᵢ against the latest t, with
// τ = accuracyChecks × max(h, the forecast interval): about the last
// hundred checks of each series, and each series alike. (A weight of 1/100
// a check, whatever the family's size, made the figure that of the last
// hundred checks: the series of a target are checked together, in the
// order they are sent, so of 300 the last 100 sent.) Cardinality is that of
// input names × horizons; entries not updated for StaleAfter past when
// their next check was due are dropped (see expire).
type accuracy struct {
	mu sync.Mutex
	m  map[accKey]*accVal
}

// accuracyChecks is the span of the accuracy's average in checks of one
// series (see accuracy).
const accuracyChecks = 100

type accKey struct{ name, horizon string }

type accVal struct {
	n             int     // checks
	sumErr, sumIn float64 // Σ wᵢ errᵢ and Σ wᵢ 1{inᵢ}, weights at lastT
	weight        float64 // Σ wᵢ
	lastT         int64   // sample time of the latest check
	mase, covered float64 // the ratios, as of the latest check
	lastSeen      int64
	// dueMs is how long after a check the series' next is due: a
	// horizon's checks take its first pending forecast only (see
	// livefc.Check), armed again at the forecast after its check, so
	// they come a horizon and a forecast interval apart (see expire).
	dueMs int64
}

func (p *Pipeline) acc() *accuracy {
	p.accOnce.Do(func() { p.accuracy = &accuracy{m: map[accKey]*accVal{}} })
	return p.accuracy
}

// observe books a check at sample time t of a forecast of horizon hMs
// (forecasts made every everyMs) for an input of name: its error scaled by
// the series' MASE scale and whether its interval covered the actual.
// nowMs is when the series' latest sample arrived (wall clock), 0 if
// unknown.
func (a *accuracy) observe(name, horizon string, hMs, everyMs, t int64, scaledErr float64, covered bool, nowMs int64) {
	if !isFinite(scaledErr) {
		return // one would make the family's average NaN, or +Inf, for good
	}
	if nowMs > 0 {
		// A sample stamped ahead of the clock ages the others' checks no
		// further than now; else they all weighed nothing after it.
		t = min(t, nowMs)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	k := accKey{name, horizon}
	v := a.m[k]
	if v == nil {
		v = &accVal{lastT: t}
		a.m[k] = v
	}
	v.n++
	if t > v.lastT {
		// The weights age with sample time only: the series of a family
		// are checked at about the same times, and one behind (a
		// sender's backlog) ages nothing.
		d := math.Exp(-float64(t-v.lastT) / float64(accuracyChecks*max(hMs, everyMs, 1)))
		v.sumErr, v.sumIn, v.weight, v.lastT = d*v.sumErr, d*v.sumIn, d*v.weight, t
	}
	c := 0.0
	if covered {
		c = 1
	}
	v.sumErr += scaledErr
	v.sumIn += c
	v.weight++
	v.mase, v.covered = v.sumErr/v.weight, v.sumIn/v.weight
	v.lastSeen = nowMs
	v.dueMs = hMs + max(hMs, everyMs)
}

// expire drops the entries not updated for staleMs past when their next
// check was due (dueMs after the latest), on omen's clock at nowMs and in
// sample time, where arrivedMs is the latest sample's: omen's clock alone
// (stepped forward, or resumed after a pause) is not the series' absence
// (see worker.sweep). A reading after nowMs (omen's clock stepped back) is
// taken back to it. Kept for staleMs after the check alone, a horizon
// checked less often (2h under the default 1h) left /metrics between two
// checks, and came back with the average of one
// (TestAccuracyKeptBetweenChecks).
func (a *accuracy) expire(nowMs, staleMs, arrivedMs int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.m {
		v.lastSeen = min(v.lastSeen, nowMs)
		if keep := staleMs + v.dueMs; v.lastSeen < nowMs-keep && arrivedMs-v.lastT > keep {
			delete(a.m, k)
		}
	}
}

// keepHorizons forgets the entries of horizons not in keep: after a
// reload that removed a horizon, its figures would otherwise stay on
// /metrics, frozen, until they expire (StaleAfter).
func (a *accuracy) keepHorizons(keep map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.m {
		if !keep[k.horizon] {
			delete(a.m, k)
		}
	}
}

// configuredHorizons returns the names of the horizons some selection of
// cfg forecasts.
func configuredHorizons(cfg *config.Config) map[string]bool {
	keep := map[string]bool{}
	add := func(sc config.Scoring) {
		_, names := horizonsOf(sc)
		for _, n := range names {
			keep[n] = true
		}
	}
	add(cfg.Defaults)
	for _, o := range cfg.Overrides {
		add(o.Scoring)
	}
	for _, d := range cfg.Derived {
		add(d.Scoring)
	}
	return keep
}

var (
	descMASE = prometheus.NewDesc("omen_forecast_mase",
		"Rolling mean absolute scaled error of the forecasts, by input and horizon (scale: mean absolute change between samples).",
		[]string{"for", "horizon"}, nil)
	descCoverage = prometheus.NewDesc("omen_forecast_interval_coverage_ratio",
		"Rolling share of actuals inside the forecast interval, by input and horizon.",
		[]string{"for", "horizon"}, nil)
)

// collector emits the output families and the per-series self metrics
// from the workers' published state. Each worker's state is copied under
// its read lock and emitted after: the registry takes the metrics from the
// channel as fast as it encodes them, and a scrape of 100k series' outputs
// takes seconds, during which the worker would otherwise wait to score.
type collector struct {
	p        *Pipeline
	descs    *descCache
	selfOnly bool // only the forecast accuracy; WriteOutputs streams the rest
}

// Collector returns the collector of the output families (anomaly_score,
// yhat, ..., forecast_upper, limited by Options.Families, and the score
// and band by ScoreFloor),
// omen_model_ready per series and the forecast accuracy. It is unchecked:
// its series set changes as series come and go.
func (p *Pipeline) Collector() prometheus.Collector {
	return collector{p: p, descs: &descCache{m: map[string]*prometheus.Desc{}}}
}

// AccuracyCollector returns the collector of the forecast accuracy only,
// for a /metrics that streams the per-series families with WriteOutputs.
func (p *Pipeline) AccuracyCollector() prometheus.Collector {
	return collector{p: p, selfOnly: true}
}

func (collector) Describe(chan<- *prometheus.Desc) {}

// walkBuf is walkOutputs' copy of the workers' published results, made
// once per scrape and walked once per family.
type walkBuf struct {
	list []collected
	pts  []forecast.Point
	oks  []bool
}

// walkBufs keeps walkBufs between scrapes: at 100k series one holds ~10 MB,
// which every scrape would otherwise allocate again (twice that as the
// slices grow), a sixth of what the process allocated at steady state.
var walkBufs = sync.Pool{New: func() any { return new(walkBuf) }}

// collected is what a scrape reads of one series' state, copied under
// its worker's lock, with what its labels are made of (outID). Only what
// walkOutputs exposes is copied, not the whole published state (176 B a
// series against 104: TestWalkCopyBytes).
type collected struct {
	outID
	f                         *fcState // s.fc when copied: the worker may replace s.fc (warmForecaster)
	score, yhat, lower, upper float64
	peak                      float64       // of the incident
	duration                  time.Duration // of the incident, see incidentState.duration
	fc                        int32         // index of its first forecast in the scrape's pts, -1: none
	ready, hasResult, banded  bool
	incident                  bool // see series.inIncident
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	if !c.selfOnly {
		buf := walkBufs.Get().(*walkBuf)
		c.p.walkOutputs(exposedFamilies[:], buf, func(name string, ls *outLabelSet, v float64) { c.emit(ch, name, outputHelp[name], ls, v) })
		walkBufs.Put(buf)
	}
	a := c.p.acc()
	live := c.p.liveNames(a.names())
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.m {
		if !live[k.name] {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descMASE, prometheus.GaugeValue, v.mase, k.name, k.horizon)
		ch <- prometheus.MustNewConstMetric(descCoverage, prometheus.GaugeValue, v.covered, k.name, k.horizon)
	}
}

// names returns the input names a holds figures of.
func (a *accuracy) names() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]bool, len(a.m))
	for k := range a.m {
		out[k.name] = false
	}
	return out
}

// liveNames marks true the names of want that have a series whose outputs
// /metrics shows (see walkOutputs): not marked stale, not silent. An
// input name's forecast accuracy is exposed only while it has one, as its
// outputs are: its figures, kept for StaleAfter (see accuracy.expire),
// stayed on /metrics through a total silence of the senders (with nothing
// arriving nothing expires), and an alert on them
// (OmenForecastIntervalsMiscalibrated) fired on, on a figure nothing
// updated; OmenNoSamplesIngested is the alert for the silence. The
// figures are kept, and shown again as they were with the name's next
// sample. Called without the accuracy's lock: a worker takes it under its
// own (series.step).
//
// Each worker tells it by the arrivals it indexes per name (see
// worker.markLive), not by walking its series: on every scrape, that walk
// took 0.5 ms at 100k series while every name was live, and 26 ms while a
// name kept figures with no live series, all the series walked
// (BenchmarkAccuracyCollect).
func (p *Pipeline) liveNames(want map[string]bool) map[string]bool {
	if len(want) == 0 {
		return want
	}
	holdMs, nowMs := p.opts.IncidentHold.Milliseconds(), p.opts.Now().UnixMilli()
	ivs := p.intervals()
	for _, w := range p.workers {
		w.markLive(want, ivs, holdMs, nowMs)
	}
	return want
}

// The per-series self metrics walked with the outputs, exposed whatever
// Options.Families and ScoreFloor say: the generated alerting rules read
// the incident families, and they exist only while a series is in an
// incident, so they cost a scrape nothing otherwise.
const (
	familyModelReady       = "omen_model_ready"
	familyIncidentPeak     = "omen_incident_peak_score"
	familyIncidentDuration = "omen_incident_duration_seconds"
)

// isSelfFamily reports whether name is one of the per-series self metrics.
func isSelfFamily(name string) bool {
	return name == familyModelReady || name == familyIncidentPeak || name == familyIncidentDuration
}

// walkOutputs calls fn for every per-series metric the scrape exposes of
// families, family after family in that order: omen_model_ready, the
// incident families and the output families (limited by
// Options.Families, and the score and band by ScoreFloor: see
// aboveFloor). Every worker's state is copied under its lock first and
// walked after, so a slow reader of fn never holds up scoring; the copy is
// made once for all the families. ls is reused between calls.
//
// The text format wants each family's lines together, so a scrape walks
// the series once per family. It walked the workers' series once per
// family too, copying them each time: ten passes over 100k series
// scattered in memory, most of the cost of the scrape's walk. The copy of
// all the series, not one worker's at a time, is what that costs: 104 B a
// series while the scrape runs (TestWalkCopyBytes).
func (p *Pipeline) walkOutputs(families []string, buf *walkBuf, fn func(name string, ls *outLabelSet, v float64)) {
	list, pts, oks := buf.list, buf.pts, buf.oks
	used := 0 // the entries of list the copy took
	defer func() {
		// The copies point at series; a kept buffer must not keep a
		// removed series alive until the next scrape. Past used, it
		// holds none (cleared by the walk before, or never written).
		clear(list[:min(used, cap(list))])
		buf.list, buf.pts, buf.oks = list[:0], pts[:0], oks[:0]
	}()
	wantForecasts := false
	for _, f := range families {
		wantForecasts = wantForecasts || (p.family[f] && slices.Contains(fcFamilies[:], f))
	}
	holdMs, nowMs := p.opts.IncidentHold.Milliseconds(), p.opts.Now().UnixMilli()
	ivs := p.intervals()
	// Sized up front to all the series: the pool is empty at a first
	// scrape and once two garbage collections have run since the last,
	// and grown by appending, the copy allocated 3.9 times what it kept
	// (1.40 MB against 0.36 MB a walk of 10k series, BenchmarkWalkOutputs).
	// A series added meanwhile is appended.
	total := 0
	for _, w := range p.workers {
		w.mu.RLock()
		total += len(w.series)
		w.mu.RUnlock()
	}
	if cap(list) < total {
		list = make([]collected, 0, total)
	}
	list, pts, oks = list[:0], pts[:0], oks[:0]
	for _, w := range p.workers {
		w.view(func(s *series) {
			everyMs := ivs.everyMs(s)
			if s.pub.stale || s.silent(holdMs, everyMs, nowMs) {
				// Its input went away, or has sent nothing for the
				// lookback (a derived input's: nothing evaluated for
				// the lookback past its interval): so do its metrics.
				return
			}
			pub := &s.pub
			cs := collected{
				outID: outID{in: s.in, name: s.name, labelBits: s.labelBits, utf8Names: s.utf8Names, counter: s.counter},
				score: pub.score, yhat: pub.yhat, lower: pub.lower, upper: pub.upper,
				peak: pub.peak, duration: pub.duration(), fc: -1,
				ready: pub.ready, hasResult: pub.hasResult, banded: pub.banded(),
				incident: s.inIncident(holdMs, everyMs, nowMs),
			}
			if f := s.fc; wantForecasts && f != nil && s.pub.hasResult {
				cs.fc, cs.f = int32(len(pts)), f
				pts, oks = append(pts, f.pts...), append(oks, f.ok...)
			}
			list = append(list, cs)
		})
		used = len(list)
	}
	var ls outLabelSet
	for _, family := range families {
		for i := range list {
			p.walkOne(family, &list[i], pts, oks, &ls, fn)
		}
	}
}

// walkOne calls fn for the metrics of family that the series copied in
// cs exposes; pts and oks hold the forecasts copied with it.
func (p *Pipeline) walkOne(family string, cs *collected, pts []forecast.Point, oks []bool, ls *outLabelSet, fn func(name string, ls *outLabelSet, v float64)) {
	s := &cs.outID
	switch family {
	case familyModelReady:
		ready := 0.0
		if cs.ready {
			ready = 1
		}
		if s.labelBits&hasKind == 0 {
			ls.set(s, "", "")
			ls.add("kind", s.kind())
		} else {
			// Its own kind label goes as exported_kind.
			ls.set(s, "kind", s.kind())
		}
		fn(familyModelReady, ls, ready)
	case familyIncidentPeak, familyIncidentDuration:
		if !cs.incident {
			return
		}
		ls.set(s, "", "")
		if family == familyIncidentPeak {
			fn(familyIncidentPeak, ls, cs.peak)
		} else {
			fn(familyIncidentDuration, ls, cs.duration.Seconds())
		}
	case FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper:
		if !p.family[family] || !cs.hasResult || !p.aboveFloor(cs.score, cs.incident) {
			return
		}
		i := slices.Index(baseFamilies[:], family)
		if i > 0 && !cs.banded {
			return
		}
		ls.set(s, "", "")
		fn(family, ls, [4]float64{cs.score, cs.yhat, cs.lower, cs.upper}[i])
	case FamilyForecast, FamilyForecastLower, FamilyForecastUpper:
		if !p.family[family] || cs.fc < 0 {
			return
		}
		j := slices.Index(fcFamilies[:], family)
		f := cs.f // horizons and hname never change
		for h := range f.horizons {
			if !oks[int(cs.fc)+h] {
				continue
			}
			pt := pts[int(cs.fc)+h]
			ls.set(s, "horizon", f.hname[h])
			fn(family, ls, [3]float64{pt.Yhat, pt.Lower, pt.Upper}[j])
		}
	}
}

// aboveFloor reports whether a series' anomaly outputs (score and band)
// are exposed under --output.score-floor: its score reaches the floor, or
// it is in an incident, whose alert's annotations read its band while the
// detector damps the follow-up scores far below the floor. Its forecasts
// go out whatever it scores: the capacity alerts, a KEDA trigger and
// prometheus-adapter read them from the scraping Prometheus, for inputs
// that behave (and score below any floor) as much as for others; their
// number is bounded by --forecast.max-series and the configured horizons.
func (p *Pipeline) aboveFloor(score float64, incident bool) bool {
	return score >= p.opts.ScoreFloor || incident
}

var outputHelp = map[string]string{
	familyModelReady:       "Whether the series' detector has finished warming up (1) or not (0); kind says whether the input is scored as a per-second rate (counter) or as it is (gauge).",
	familyIncidentPeak:     "Highest score of the input's current incident, before the damping of an event's follow-ups that anomaly_score shows; present only while the input is in one (from a score above 1 until --detect.incident-hold after the detector's event ends).",
	familyIncidentDuration: "How long the event of the input's current incident has gone on, in sample time, from its first score above 1 to its latest sample in the event; present only while the input is in an incident.",
	FamilyScore:            "Anomaly score of the input named by `for`: >= 0, above 1 is anomalous.",
	FamilyYhat:             "Expected value of the input.",
	FamilyYhatLower:        "Lower end of the expected band of the input.",
	FamilyYhatUpper:        "Upper end of the expected band of the input.",
	FamilyForecast:         "Forecast of the input made now for now + horizon.",
	FamilyForecastLower:    "Lower end of the forecast's prediction interval.",
	FamilyForecastUpper:    "Upper end of the forecast's prediction interval.",
}

// StoredFamilies returns the output families omen appends to its TSDB,
// all gauges, with their help, for /api/v1/metadata: Grafana's metrics
// browser and query builder describe omen's own series by it.
func StoredFamilies() map[string]string {
	m := map[string]string{}
	for _, f := range []string{FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper, FamilyForecast, FamilyForecastLower, FamilyForecastUpper} {
		m[f] = outputHelp[f]
	}
	return m
}

// outLabelSet is the label names and values of one series' outputs (its
// input's minus __name__, plus for and horizon if set). Reused from
// series to series.
type outLabelSet struct {
	names, vals []string
	utf8Names   bool // some name may need escaping in the text format
}

func (o *outLabelSet) add(name, value string) {
	o.names, o.vals = append(o.names, name), append(o.vals, value)
}

// outID is what the output labels of a series are made of, copied with
// its published results: the walk of each family reads the copy, in a
// row, rather than the series, each a cache miss away from the last (the
// first read of a series took a third of a scrape's CPU at 10k series).
type outID struct {
	in                 labels.Labels
	name               string
	labelBits          uint8
	utf8Names, counter bool
}

// kind is what omen_model_ready's kind label says of s: "counter" for an
// input scored as a per-second rate (by its metadata, or by its name
// without), "gauge" for one scored as it is. Alerts and dashboards that
// show the input beside its band read it, not the name: a gauge named
// _count is scored raw, a counter without _total as a rate.
func (s *outID) kind() string {
	if s.counter {
		return "counter"
	}
	return "gauge"
}

func (o *outLabelSet) set(s *outID, extra, value string) {
	o.names, o.vals = o.names[:0], o.vals[:0]
	o.utf8Names = s.utf8Names
	eachOutLabel(s.in, s.name, extra, value, o.add)
	// A target label the input lacks is exposed empty: Prometheus's scrape
	// with honor_labels fills every label a series lacks from omen's
	// target, so the outputs of a recording rule's series (no instance) or
	// of a derived input (no job) took omen's, and the alerts' annotations
	// and the dashboards looked for an input that is not there. A label
	// given empty is not filled, and is dropped (Prometheus 2.42, e2e
	// TestOutputsKeepTheirOrigin).
	if s.labelBits&lacksJob != 0 {
		o.add(model.JobLabel, "")
	}
	if s.labelBits&lacksInstance != 0 {
		o.add(model.InstanceLabel, "")
	}
}

// descCache keeps one Desc per family and label name set: building a Desc
// (name checks, hashing) per metric was most of a large scrape's cost.
// Label name sets are those of the input metrics, so they are few; the
// cache is dropped if it ever holds more than maxDescs.
type descCache struct {
	mu  sync.Mutex
	m   map[string]*prometheus.Desc
	buf []byte
}

const maxDescs = 10000

func (d *descCache) get(name, help string, ls *outLabelSet) *prometheus.Desc {
	d.mu.Lock()
	defer d.mu.Unlock()
	// The key: the label names, each ended by 0xff, then the family's
	// (built here, not with every label set: WriteOutputs needs none).
	d.buf = d.buf[:0]
	for _, n := range ls.names {
		d.buf = append(append(d.buf, n...), 0xff)
	}
	d.buf = append(d.buf, name...)
	if desc, ok := d.m[string(d.buf)]; ok {
		return desc
	}
	if len(d.m) >= maxDescs {
		clear(d.m)
	}
	desc := prometheus.NewDesc(name, help, slices.Clone(ls.names), nil)
	d.m[string(d.buf)] = desc
	return desc
}

// emit sends one const gauge of family name with the labels ls. Label
// names vary per series, so the collector is unchecked and Descs come from
// the cache; this is the scrape path, not the ingest path.
func (c collector) emit(ch chan<- prometheus.Metric, name, help string, ls *outLabelSet, v float64) {
	m, err := prometheus.NewConstMetric(c.descs.get(name, help, ls), prometheus.GaugeValue, v, ls.vals...)
	if err != nil {
		// Never an invalid metric: it would fail the whole scrape.
		return
	}
	ch <- m
}
