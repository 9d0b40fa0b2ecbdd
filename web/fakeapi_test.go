package web

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// fakeAPI implements the part of omen's HTTP API the page reads, exactly as
// the server's contract states it, over series generated from closed-form
// functions of time. It lets the page be tested in a browser without the
// storage and scoring stack; selectors are parsed by the real PromQL parser so
// the page cannot send one Prometheus would refuse.
//
// Every input series is an hourly sine with a little deterministic noise; the
// model's expectation is the sine and its band ±band; the score is the
// residual over the band's half width, so it is above 1 exactly where a spike
// leaves the band. A planted input carries a spike from spikeFrom on.
type fakeAPI struct {
	t      testing.TB
	now    func() time.Time
	inputs []fakeInput
	parser parser.Parser

	mu         sync.Mutex
	unexpected []string // requests outside the contract
}

type fakeInput struct {
	name      string
	labels    map[string]string // without __name__
	base, amp float64
	spike     float64
	spikeFrom time.Time // zero: no spike
	// member and feature explain the score, named as detect names them;
	// empty: the seasonal member.
	member, feature string
	// group: a multivariate group, which has only its anomaly_score (no
	// input series, band or forecasts) and explains its score by the
	// member that moved most, feature "joint".
	group bool
	// derived: a derived input's series, whose values are evaluated, not
	// stored: its outputs alone are series.
	derived bool
	// silentFor: the input's latest sample came this long ago (its target
	// went away without a staleness marker); past Prometheus's lookback
	// (5 m) the anomalies API leaves it out, as omen's does.
	silentFor time.Duration
	// behind: the sender's clock is this far behind omen's (NTP trouble,
	// a remote-write queue lagging), so its latest sample, received
	// silentFor ago on omen's clock, is stamped this much earlier.
	behind time.Duration
	// counter: the input is scored as a per-second rate, as the API says
	// of a counter (its values here are the rate's).
	counter bool
}

const (
	fakePeriod  = 3600.0 // seconds
	fakeHistory = 24 * time.Hour
	// fakeScrape and fakeForecastEvery are the sample times, in seconds,
	// of the stored series' raw samples: inputs and the model's outputs
	// every fakeScrape, forecasts every fakeForecastEvery
	// (--forecast.interval), multiples of it in unix time. A forecast
	// stored at t for horizon h is for t+h.
	fakeScrape        = 15.0
	fakeForecastEvery = 60.0
)

// fakeHorizons has a fourth, non-default horizon to show the page reads
// horizons from the label rather than assuming omen's defaults.
var fakeHorizons = map[string]float64{"5m": 300, "15m": 900, "30m": 1800, "1h30m": 5400}

func (in fakeInput) band() float64 { return 0.2 * in.amp }

func (in fakeInput) expected(t float64) float64 {
	return in.base + in.amp*math.Sin(2*math.Pi*t/fakePeriod)
}

func (in fakeInput) value(t float64) float64 {
	v := in.expected(t) + 0.04*in.amp*math.Sin(t*0.7+in.base) + 0.03*in.amp*math.Sin(t*1.9+1)
	if !in.spikeFrom.IsZero() && t >= float64(in.spikeFrom.Unix()) {
		v += in.spike
	}
	return v
}

func (in fakeInput) score(t float64) float64 {
	return math.Abs(in.value(t)-in.expected(t)) / in.band()
}

// since is the start of the current run of scores above 1 before t.
func (in fakeInput) since(t float64) float64 {
	if in.spikeFrom.IsZero() || t < float64(in.spikeFrom.Unix()) {
		return t
	}
	return float64(in.spikeFrom.Unix())
}

// fakeSeries is one stored series: its full label set and its value at t.
type fakeSeries struct {
	labels map[string]string
	at     func(t float64) float64
}

func newFakeAPI(t testing.TB, now func() time.Time, inputs []fakeInput) *fakeAPI {
	return &fakeAPI{t: t, now: now, inputs: inputs, parser: parser.NewParser(parser.Options{})}
}

// series lists the inputs and every output series the contract names.
func (f *fakeAPI) series() []fakeSeries {
	var out []fakeSeries
	for _, in := range f.inputs {
		out = append(out, in.series()...)
	}
	return out
}

// series lists the input and its outputs.
func (in fakeInput) series() []fakeSeries {
	var out []fakeSeries
	with := func(in fakeInput, name string, extra ...string) map[string]string {
		m := map[string]string{"__name__": name}
		for k, v := range in.labels {
			m[k] = v
		}
		if name != in.name {
			m["for"] = in.name
		}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	{
		if in.group {
			return append(out, fakeSeries{with(in, "anomaly_score"), in.score})
		}
		if !in.derived {
			out = append(out, fakeSeries{with(in, in.name), in.value})
		}
		out = append(out,
			fakeSeries{with(in, "yhat"), in.expected},
			fakeSeries{with(in, "yhat_lower"), func(t float64) float64 { return in.expected(t) - in.band() }},
			fakeSeries{with(in, "yhat_upper"), func(t float64) float64 { return in.expected(t) + in.band() }},
			fakeSeries{with(in, "anomaly_score"), in.score},
		)
		for h, d := range fakeHorizons {
			width := in.band() * (1 + d/1800)
			out = append(out,
				fakeSeries{with(in, "forecast", "horizon", h), func(t float64) float64 { return in.expected(t + d) }},
				fakeSeries{with(in, "forecast_lower", "horizon", h), func(t float64) float64 { return in.expected(t+d) - width }},
				fakeSeries{with(in, "forecast_upper", "horizon", h), func(t float64) float64 { return in.expected(t+d) + width }},
			)
		}
	}
	return out
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		f.fail(w, http.StatusBadRequest, err)
		return
	}
	switch r.URL.Path {
	case "/api/v1/anomalies":
		f.anomalies(w, r)
	case "/api/v1/query":
		f.query(w, r)
	case "/api/v1/query_range":
		f.queryRange(w, r)
	case "/api/v1/status/omen":
		f.status(w)
	case "/api/v1/labels":
		f.labelNames(w, r)
	default:
		f.mu.Lock()
		f.unexpected = append(f.unexpected, r.Method+" "+r.URL.String())
		f.mu.Unlock()
		f.fail(w, http.StatusNotFound, fmt.Errorf("no such endpoint %s", r.URL.Path))
	}
}

func (f *fakeAPI) unexpectedRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.unexpected...)
}

func (f *fakeAPI) fail(w http.ResponseWriter, code int, err error) {
	f.t.Logf("fake API: %d: %v", code, err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": "bad_data", "error": err.Error()})
}

func (f *fakeAPI) ok(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json")
	// Its clock, as omen's server stamps its answers with its own.
	w.Header().Set("Date", f.now().UTC().Format(http.TimeFormat))
	if err := json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data}); err != nil {
		f.t.Logf("fake API: encode: %v", err)
	}
}

func matchAll(ms []*labels.Matcher, ls map[string]string) bool {
	for _, m := range ms {
		if !m.Matches(ls[m.Name]) {
			return false
		}
	}
	return true
}

// matchSets are the selectors of a request's match[] parameters.
type matchSets [][]*labels.Matcher

// match says whether any selector selects ls, true if there is none.
func (sets matchSets) match(ls map[string]string) bool {
	for _, ms := range sets {
		if matchAll(ms, ls) {
			return true
		}
	}
	return len(sets) == 0
}

func (f *fakeAPI) matchSets(r *http.Request) (matchSets, error) {
	var sets matchSets
	for _, q := range r.Form["match[]"] {
		ms, err := f.selector(q)
		if err != nil {
			return nil, err
		}
		sets = append(sets, ms)
	}
	return sets, nil
}

func (f *fakeAPI) selector(q string) ([]*labels.Matcher, error) {
	ms, err := f.parser.ParseMetricSelector(q)
	if err != nil {
		return nil, fmt.Errorf("parse selector %q: %w", q, err)
	}
	return ms, nil
}

func parseTime(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("parse time %q: %w", s, err)
	}
	return v, nil
}

func parseStep(s string) (float64, error) {
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return v, nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("parse step %q: %w", s, err)
	}
	return time.Duration(d).Seconds(), nil
}

func fmtValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// inRange says whether a sample at t exists: generated data covers the last
// fakeHistory up to now, or up to the latest sample of an input whose
// sender is ahead (as the TSDB's head holds it), never later.
func (f *fakeAPI) inRange(t float64) bool {
	now := f.now()
	return t <= float64(f.newest().UnixMilli())/1000 && t >= float64(now.Add(-fakeHistory).Unix())
}

// newest is the time of the latest sample stored: now, or an input's
// stamped ahead of it.
func (f *fakeAPI) newest() time.Time {
	now := f.now()
	newest := now
	for _, in := range f.inputs {
		if t := now.Add(-in.silentFor - in.behind); t.After(newest) {
			newest = t
		}
	}
	return newest
}

func (f *fakeAPI) queryRange(w http.ResponseWriter, r *http.Request) {
	// The page charts a counter as irate(<selector>[5m]): the fake's
	// values are the rate already, and the result, as Prometheus's, has
	// no __name__.
	// The band's sample times as timestamp(<selector>): the fake's
	// samples are at the step's times.
	q, isRate, isTime := r.Form.Get("query"), false, false
	if in, ok := strings.CutPrefix(q, "irate("); ok {
		if sel, ok := strings.CutSuffix(in, "[5m])"); ok {
			q, isRate = sel, true
		}
	}
	if in, ok := strings.CutPrefix(q, "timestamp("); ok {
		if sel, ok := strings.CutSuffix(in, ")"); ok {
			q, isTime = sel, true
		}
	}
	ms, err := f.selector(q)
	if err != nil {
		f.fail(w, http.StatusBadRequest, err)
		return
	}
	start, err1 := parseTime(r.Form.Get("start"))
	end, err2 := parseTime(r.Form.Get("end"))
	step, err3 := parseStep(r.Form.Get("step"))
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			f.fail(w, http.StatusBadRequest, err)
			return
		}
	}
	if step <= 0 || end < start || (end-start)/step > 11000 {
		f.fail(w, http.StatusBadRequest, fmt.Errorf("bad range start=%v end=%v step=%v", start, end, step))
		return
	}
	type row struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	result := []row{}
	for _, s := range f.series() {
		if !matchAll(ms, s.labels) {
			continue
		}
		rw := row{Metric: s.labels}
		if isRate || isTime {
			rw.Metric = maps.Clone(s.labels)
			delete(rw.Metric, model.MetricNameLabel)
		}
		for t := start; t <= end; t += step {
			switch {
			case !f.inRange(t):
			case isTime:
				rw.Values = append(rw.Values, [2]any{t, fmtValue(t)})
			default:
				rw.Values = append(rw.Values, [2]any{t, fmtValue(s.at(t))})
			}
		}
		if len(rw.Values) > 0 {
			result = append(result, rw)
		}
	}
	f.ok(w, map[string]any{"resultType": "matrix", "result": result})
}

// query answers an instant query of a selector (the latest raw sample of
// each series within the 5m lookback, stamped with the evaluation time)
// or of a range selector (each series' raw samples in the range), as
// Prometheus does, over the raw samples of rawTimes; and time(), the
// evaluation time (omen's now unless the query gives one).
func (f *fakeAPI) query(w http.ResponseWriter, r *http.Request) {
	expr, err := f.parser.ParseExpr(r.Form.Get("query"))
	if err != nil {
		f.fail(w, http.StatusBadRequest, fmt.Errorf("parse query %q: %w", r.Form.Get("query"), err))
		return
	}
	at := float64(f.now().UnixMilli()) / 1000
	if s := r.Form.Get("time"); s != "" {
		if at, err = parseTime(s); err != nil {
			f.fail(w, http.StatusBadRequest, err)
			return
		}
	}
	var vs *parser.VectorSelector
	window := 0.0 // 0: an instant vector
	switch e := expr.(type) {
	case *parser.Call:
		// time(), the page's reading of omen's clock.
		if e.Func.Name != "time" {
			f.fail(w, http.StatusBadRequest, fmt.Errorf("query %q: the fake answers time() of the functions", r.Form.Get("query")))
			return
		}
		f.ok(w, map[string]any{"resultType": "scalar", "result": [2]any{at, fmtValue(at)}})
		return
	case *parser.VectorSelector:
		vs = e
	case *parser.MatrixSelector:
		vs, window = e.VectorSelector.(*parser.VectorSelector), e.Range.Seconds()
	default:
		f.fail(w, http.StatusBadRequest, fmt.Errorf("query %q: the fake answers selectors and range selectors only", r.Form.Get("query")))
		return
	}
	type row struct {
		Metric map[string]string `json:"metric"`
		Value  *[2]any           `json:"value,omitempty"`
		Values [][2]any          `json:"values,omitempty"`
	}
	result := []row{}
	for _, in := range f.inputs {
		for _, s := range in.series() {
			if !matchAll(vs.LabelMatchers, s.labels) {
				continue
			}
			if window == 0 {
				ts := f.rawTimes(in, s, at-300, at)
				if len(ts) > 0 {
					result = append(result, row{Metric: s.labels, Value: &[2]any{at, fmtValue(s.at(ts[len(ts)-1]))}})
				}
				continue
			}
			rw := row{Metric: s.labels}
			for _, t := range f.rawTimes(in, s, at-window, at) {
				rw.Values = append(rw.Values, [2]any{t, fmtValue(s.at(t))})
			}
			if len(rw.Values) > 0 {
				result = append(result, rw)
			}
		}
	}
	typ := "vector"
	if window > 0 {
		typ = "matrix"
	}
	f.ok(w, map[string]any{"resultType": typ, "result": result})
}

// rawTimes are the times of the raw samples of in's series s in (from,
// to], in order: multiples of its interval up to in's latest sample, over
// the history.
func (f *fakeAPI) rawTimes(in fakeInput, s fakeSeries, from, to float64) []float64 {
	every := fakeScrape
	if strings.HasPrefix(s.labels[model.MetricNameLabel], "forecast") {
		every = fakeForecastEvery
	}
	now := f.now()
	latest := float64(now.Add(-in.silentFor-in.behind).UnixMilli()) / 1000
	first := float64(now.Add(-fakeHistory).Unix())
	var ts []float64
	for t := math.Floor(math.Min(to, latest)/every) * every; t > from && t >= first; t -= every {
		ts = append(ts, t)
	}
	slices.Reverse(ts)
	return ts
}

func (f *fakeAPI) anomalies(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if s := r.Form.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			f.fail(w, http.StatusBadRequest, fmt.Errorf("bad limit %q", s))
			return
		}
		limit = n
	}
	sets, err := f.matchSets(r)
	if err != nil {
		f.fail(w, http.StatusBadRequest, err)
		return
	}
	now := f.now()
	type anomaly struct {
		Labels    map[string]string `json:"labels"`
		Score     float64           `json:"score"`
		Since     time.Time         `json:"since"`
		Value     any               `json:"value"`   // null for a group, as the server's NaN
		Counter   bool              `json:"counter"` // the fake's values are what is scored, a counter's rate
		Derived   bool              `json:"derived"`
		Yhat      any               `json:"yhat"`
		YhatLower any               `json:"yhat_lower"`
		YhatUpper any               `json:"yhat_upper"`
		Member    string            `json:"member"`
		Feature   string            `json:"feature"`
		Ready     bool              `json:"ready"`
		Timestamp time.Time         `json:"timestamp"`
		Received  time.Time         `json:"received"`
	}
	list := []anomaly{}
	for _, in := range f.inputs {
		input := map[string]string{"__name__": in.name}
		for k, v := range in.labels {
			input[k] = v
		}
		if !sets.match(input) || in.silentFor > 5*time.Minute {
			continue
		}
		ls := map[string]string{"for": in.name}
		for k, v := range in.labels {
			ls[k] = v
		}
		received := now.Add(-in.silentFor).Truncate(time.Second)
		last := received.Add(-in.behind)
		lt := float64(last.Unix())
		e := in.expected(lt)
		a := anomaly{
			Labels: ls, Score: in.score(lt), Since: time.Unix(int64(in.since(lt)), 0).UTC(),
			Value: in.value(lt), Counter: in.counter, Derived: in.derived || in.group, Yhat: e, YhatLower: e - in.band(), YhatUpper: e + in.band(),
			Member: cmp.Or(in.member, "seasonal"), Feature: cmp.Or(in.feature, "value_season_ago"), Ready: true, Timestamp: last.UTC(),
			Received: received.UTC(),
		}
		if in.group {
			a.Value, a.Yhat, a.YhatLower, a.YhatUpper, a.Feature = nil, nil, nil, nil, "joint"
		}
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Score > list[j].Score })
	if len(list) > limit {
		list = list[:limit]
	}
	f.ok(w, map[string]any{"anomalies": list})
}

// labelNames answers /api/v1/labels as Prometheus does: the sorted label
// names of the series any match[] selects (all series without one). The
// fake's series span its whole history, so start and end select them all.
func (f *fakeAPI) labelNames(w http.ResponseWriter, r *http.Request) {
	sets, err := f.matchSets(r)
	if err != nil {
		f.fail(w, http.StatusBadRequest, err)
		return
	}
	names := map[string]bool{}
	for _, s := range f.series() {
		if sets.match(s.labels) {
			for k := range s.labels {
				names[k] = true
			}
		}
	}
	f.ok(w, slices.Sorted(maps.Keys(names)))
}

func (f *fakeAPI) status(w http.ResponseWriter) {
	// Nothing ingested over the last minute once every input has been
	// silent for longer, as omen's rate.
	ingest := 0.0
	for _, in := range f.inputs {
		if in.silentFor < time.Minute {
			ingest = 1234.5
		}
	}
	if len(f.inputs) == 0 {
		ingest = 1234.5
	}
	f.ok(w, map[string]any{
		"ingest_samples_per_second": ingest,
		"series_stored":             len(f.series()),
		"series_scored":             len(f.inputs),
		"models_warming":            1,
		"rejected":                  map[string]int{"out_of_order": 2, "too_old": 1},
		"config":                    "scoring:\n  threshold: 1\n",
		"build":                     map[string]string{"version": "0.0.0-test", "revision": "0123456789abcdef", "goVersion": "go1.26"},
	})
}
