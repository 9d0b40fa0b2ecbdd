package pipeline

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/detect"
)

// Anomaly is one entry of /api/v1/anomalies.
//
// Score is the latest sample's, as anomaly_score on /metrics. A series is
// Active while it is in an incident: a score above 1, or a sample the
// detector counts as its event going on (detect.Result.Ongoing), came
// within the incident hold time (--detect.incident-hold, sample time) of
// its latest sample. The detector damps the follow-ups of an event, so a
// sustained shift scores above 1 at its start and then mostly below; the
// incident keeps it listed, with Since its first score above 1,
// LastAnomalous its latest sample in the event and PeakScore its highest
// score. Since and the others are absent when the series is not active.
// Member and Feature name what drove the score: the incident's peak while
// the series is active, else the latest sample's. The peak's member is in
// the snapshot since its version 4 (TestSnapshotKeepsIncidentEvents); an
// incident restored from an older one is explained by its latest sample
// until a new peak.
type Anomaly struct {
	Labels        map[string]string `json:"labels"`
	Score         jsonFloat         `json:"score"` // finite from the detectors; null rather than a 500 if ever not
	Active        bool              `json:"active"`
	PeakScore     jsonFloat         `json:"peak_score,omitempty"`
	Since         *time.Time        `json:"since,omitempty"`
	LastAnomalous *time.Time        `json:"last_anomalous,omitempty"`
	Value         jsonFloat         `json:"value"` // ±Inf samples are stored and scored; null here
	// Counter says the input is scored as a per-second rate (by its
	// remote-write 2.0 metadata or its name), as yhat and the band are.
	Counter bool `json:"counter"`
	// Derived says the input is a derived input's (or group's) series:
	// its values are evaluated, not stored, so only its outputs have a
	// history to chart.
	Derived   bool      `json:"derived"`
	Yhat      jsonFloat `json:"yhat"`
	YhatLower jsonFloat `json:"yhat_lower"`
	YhatUpper jsonFloat `json:"yhat_upper"`
	Member    string    `json:"member"`
	Feature   string    `json:"feature"`
	Ready     bool      `json:"ready"`
	Timestamp time.Time `json:"timestamp"`
	// Received is when omen received the series' latest sample, on
	// omen's clock; Timestamp is that sample's time, on its sender's,
	// which may be minutes off (NTP trouble) or behind a remote-write
	// backlog. How long a series has been silent is read from Received
	// (the web UI compared Timestamp with the browser's clock).
	Received time.Time `json:"received"`

	// in and name make Labels when the handler encodes the entry
	// (writeAnomalies): a map per series, built whole, was most of a
	// limit=0 answer's heap. A series' in and name never change.
	in   labels.Labels
	name string
}

// jsonFloat encodes NaN and ±Inf (a band during warm-up) as null, which
// encoding/json would refuse.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

const defaultAnomalyLimit = 100

// maxAnomalyMatchers bounds the match[] selectors of one anomalies request.
// Each is matched against every scored series under the scorers' read
// locks: 1000 regexes held a core 1.7 s at 50 000 series, and only Go's
// 10 000 query parameters bounded them. The web UI sends one; a dashboard
// a few.
const maxAnomalyMatchers = 100

// statusClientClosedRequest is what Prometheus's API answers (errorType
// "canceled") when the client went away: nobody reads it, but the access
// log and omen_http_requests_total tell it from our failure.
const statusClientClosedRequest = 499

// QueryGate admits the work of a request: Insert blocks until a slot is
// free or ctx is done (then it returns ctx's error); each admitted Insert
// is followed by one Delete of its index. NewGate makes one; so is
// *promql.ActiveQueryTracker, but the anomalies API is not to wait behind
// PromQL queries (see AnomalyConcurrency). Safe for concurrent use.
type QueryGate interface {
	Insert(ctx context.Context, query string) (int, error)
	Delete(insertIndex int)
}

// AnomalyConcurrency is how many /api/v1/anomalies requests `omen serve`
// serves at once (NewGate's slots), apart from --query.max-concurrency's:
// sharing those, the API an on-call engineer opens waited behind slow
// PromQL queries (dashboards refreshing) until --query.timeout, then
// answered 503, though it reads the scorers' state and not the TSDB.
// Bounded still: each request holds the scorers' read locks while it
// matches (~280 ms for every series of 100 000), so more at once would
// delay the scoring.
const AnomalyConcurrency = 4

// NewGate returns a QueryGate of n slots of its own.
func NewGate(n int) QueryGate { return make(gate, n) }

// gate's capacity is its slots; a value sent holds one.
type gate chan struct{}

func (g gate) Insert(ctx context.Context, _ string) (int, error) {
	select {
	case g <- struct{}{}:
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (g gate) Delete(int) { <-g }

// AnomaliesHandler serves the top series by current score:
// ?limit=N (default 100) and up to maxAnomalyMatchers match[]=<selector>
// on the input series (its __name__ is the input name), as Prometheus's
// series API. The work waits for a slot of Options.QueryGate and is
// bounded by Options.QueryTimeout, as a PromQL query's is.
func (p *Pipeline) AnomaliesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			apiError(w, http.StatusBadRequest, fmt.Errorf("parse form: %w", err))
			return
		}
		if n := len(r.Form["match[]"]); n > maxAnomalyMatchers {
			apiError(w, http.StatusBadRequest, fmt.Errorf("match[]: %d selectors, at most %d", n, maxAnomalyMatchers))
			return
		}
		limit := defaultAnomalyLimit
		if s := r.Form.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				apiError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a positive integer, or 0 for no limit", s))
				return
			}
			limit = n // as Prometheus's series API: 0 disables the limit
		}
		var sets [][]*labels.Matcher
		for _, q := range r.Form["match[]"] {
			ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(q)
			if err != nil {
				apiError(w, http.StatusBadRequest, fmt.Errorf("match[] %q: %w", q, err))
				return
			}
			// As Prometheus's series API: {} or {a=""} is no selection.
			if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return !m.Matches("") }) {
				apiError(w, http.StatusBadRequest, fmt.Errorf("match[] %q: must contain at least one non-empty matcher", q))
				return
			}
			sets = append(sets, ms)
		}
		list, err := p.gatedTopAnomalies(r, sets, limit)
		if err != nil {
			queryAborted(w, r, err)
			return
		}
		writeAnomalies(w, list)
	})
}

// gatedTopAnomalies is topAnomalies in a slot of Options.QueryGate, within
// Options.QueryTimeout of r's context. The slot is freed before the answer
// is written, as the engine frees a query's: with no write timeout, clients
// that read slowly or not at all held its slots as long as they liked.
func (p *Pipeline) gatedTopAnomalies(r *http.Request, sets [][]*labels.Matcher, limit int) ([]Anomaly, error) {
	ctx := r.Context()
	if p.opts.QueryTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.QueryTimeout)
		defer cancel()
	}
	if g := p.opts.QueryGate; g != nil {
		i, err := g.Insert(ctx, "omen /api/v1/anomalies?"+r.Form.Encode())
		if err != nil {
			return nil, fmt.Errorf("wait for a slot of the anomalies API (busy) within --query.timeout: %w", err)
		}
		defer g.Delete(i)
	}
	list, err := p.topAnomalies(ctx, sets, limit)
	if err != nil {
		return nil, fmt.Errorf("match the scored series within --query.timeout: %w", err)
	}
	return list, nil
}

// anomaliesFlushBytes is how much of an anomalies answer is encoded before
// any is written: the web UI's 100 rows (~46 KB) fit, so its answers are
// whole or a 500 as apiOK's; a limit=0 answer (23 MB at 50 000 series)
// streams in chunks of about this size.
const anomaliesFlushBytes = 64 << 10

// writeAnomalies writes list as apiOK would, the envelope's keys in the
// same order, encoding an entry at a time with its labels in one reused map
// (list's Labels are nil, made from in and name). An entry JSON cannot hold
// (a timestamp past the year 9999) is a 500 before anything is written;
// after, the connection is aborted, as Prometheus's streamed remote read
// does, so the client sees a cut answer fail rather than a 200 it trusts.
func writeAnomalies(w http.ResponseWriter, list []Anomaly) {
	var buf bytes.Buffer
	buf.Grow(min(anomaliesFlushBytes+4096, 512+len(list)*512))
	buf.WriteString(`{"data":{"anomalies":[`)
	enc := json.NewEncoder(&buf) // escapes HTML as json.Marshal does
	m := map[string]string{}
	started := false
	for i := range list {
		a := &list[i]
		clear(m)
		eachOutLabel(a.in, a.name, "", "", func(name, value string) { m[name] = value })
		a.Labels = m
		if i > 0 {
			buf.WriteByte(',')
		}
		err := enc.Encode(a)
		a.Labels = nil // not the next entry's
		if err != nil {
			if !started {
				apiError(w, http.StatusInternalServerError, fmt.Errorf("encode response: %w", err))
				return
			}
			panic(http.ErrAbortHandler)
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
		if buf.Len() < anomaliesFlushBytes {
			continue
		}
		if !started {
			w.Header().Set("Content-Type", "application/json")
			started = true
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return // the client went away
		}
		buf.Reset()
	}
	buf.WriteString(`]},"status":"success"}` + "\n")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
}

// queryAborted answers a request whose context ended: a 503 with
// Retry-After when its time ran out (a busy omen: try again, as Prometheus
// answers a query timed out in its queue), else the client's 499.
func queryAborted(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		apiErrorType(w, statusClientClosedRequest, "canceled", err)
		return
	}
	w.Header().Set("Retry-After", "1")
	apiErrorType(w, http.StatusServiceUnavailable, "timeout", err)
}

// Anomalies returns every scored series matching any of sets (all if none):
// active incidents first, by their peak score, then the others by score.
func (p *Pipeline) Anomalies(sets [][]*labels.Matcher) []Anomaly {
	return p.TopAnomalies(sets, math.MaxInt)
}

// TopAnomalies returns the first limit of Anomalies(sets) (all for a limit
// of 0, as the API's). Only
// series that make the first limit so far are made entries: the page asks
// for 25 of 100000 series every 15 s, and an entry for each, its labels'
// map included, then a sort of them all, took 280 ms and 110 MB an answer
// (BenchmarkAnomalies).
func (p *Pipeline) TopAnomalies(sets [][]*labels.Matcher, limit int) []Anomaly {
	list, _ := p.topAnomalies(context.Background(), sets, limit) // never cancelled
	for i := range list {
		list[i].Labels = outputLabelMap(list[i].in, list[i].name)
	}
	return list
}

// cancelCheckEvery is how many series the walk of topAnomalies matches
// between looks at its context: a few hundred microseconds of regexes.
const cancelCheckEvery = 1024

// topAnomalies is TopAnomalies, without the entries' Labels (see
// Anomaly.in), that stops with ctx's error once ctx is done: it looks at ctx between scorers and every cancelCheckEvery series
// under a scorer's lock, which it then releases at once.
func (p *Pipeline) topAnomalies(ctx context.Context, sets [][]*labels.Matcher, limit int) ([]Anomaly, error) {
	if limit <= 0 {
		limit = math.MaxInt
	}
	top := anomalyHeap{limit: limit}
	if len(sets) == 0 {
		// Every series may be listed: the list's growth by appends
		// allocated twice what it kept (~500 B a series for limit=0).
		n := 0
		for _, w := range p.workers {
			w.mu.RLock()
			n += len(w.series)
			w.mu.RUnlock()
		}
		top.list = make([]Anomaly, 0, min(limit, n))
	}
	holdMs, nowMs := p.opts.IncidentHold.Milliseconds(), p.opts.Now().UnixMilli()
	ivs := p.intervals()
	add := func(s *series) {
		// As on /metrics: a series whose input went away, or has sent
		// nothing for the lookback, is not a current anomaly.
		if !s.pub.hasResult || s.pub.stale || s.silent(holdMs, ivs.everyMs(s), nowMs) {
			return
		}
		active := s.inIncident(holdMs, ivs.everyMs(s), nowMs)
		r := float64(jsonFloat(s.pub.score))
		if active {
			r = max(r, s.pub.peak)
		}
		if !top.wants(active, r) {
			return
		}
		a := Anomaly{
			in: s.in, name: s.name, Score: jsonFloat(s.pub.score), Value: jsonFloat(s.pub.value), Counter: s.counter, Derived: isDerived(s),
			Yhat: jsonFloat(s.pub.yhat), YhatLower: jsonFloat(s.pub.lower), YhatUpper: jsonFloat(s.pub.upper),
			Member: s.pub.member, Feature: s.pub.feature, Ready: s.pub.ready,
			Timestamp: time.UnixMilli(s.pub.t).UTC(), Received: time.UnixMilli(min(s.lastSeen, nowMs)).UTC(), // never after now (omen's clock stepped back)
		}
		if !s.pub.ready {
			// As on /metrics: no band before the warm-up ends. The
			// detector's early one rests on a few samples (a band of
			// [0, 3e-12] around a series' first values).
			a.Yhat, a.YhatLower, a.YhatUpper = jsonFloat(math.NaN()), jsonFloat(math.NaN()), jsonFloat(math.NaN())
		}
		if active {
			since, last := time.UnixMilli(s.pub.since).UTC(), time.UnixMilli(s.pub.lastHot).UTC()
			a.Active, a.PeakScore, a.Since, a.LastAnomalous = true, jsonFloat(s.pub.peak), &since, &last
			if m := s.pub.peakMember; m != "" {
				// What drove the incident's peak, which orders the
				// list, not the latest sample (a shift's peak was
				// listed as the novelty member of a value in its band).
				a.Member, a.Feature = m, detect.FeatureOf(m)
				if s.grp != nil {
					a.Feature = "joint"
				}
			}
		}
		top.add(a)
	}
	key := matchKey(sets) // "": every series, nothing to remember
	for i, w := range p.workers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w.mu.RLock()
		if refs, ok := p.matches.get(key, i, w.gen); ok {
			for _, ref := range refs {
				add(w.series[ref])
			}
		} else {
			var refs []storage.SeriesRef
			n := 0
			for ref, s := range w.series {
				if n++; n%cancelCheckEvery == 0 && ctx.Err() != nil {
					// Nothing cached: the match is partial.
					w.mu.RUnlock()
					return nil, ctx.Err()
				}
				if matchesAny(sets, s.in) {
					if key != "" {
						refs = append(refs, ref)
					}
					add(s)
				}
			}
			if key != "" {
				p.matches.put(key, i, len(p.workers), w.gen, refs)
			}
		}
		w.mu.RUnlock()
	}
	list := top.list
	if list == nil {
		// [] on the API, as Prometheus's empty lists, not null.
		list = []Anomaly{}
	}
	sort.SliceStable(list, func(i, j int) bool { return before(list[i].Active, rank(&list[i]), list[j].Active, rank(&list[j])) })
	return list, nil
}

func rank(a *Anomaly) float64 { return float64(max(a.Score, a.PeakScore)) }

// before orders the anomalies list: active incidents first, then by rank.
func before(activeA bool, rankA float64, activeB bool, rankB float64) bool {
	if activeA != activeB {
		return activeA
	}
	return rankA > rankB
}

// anomalyHeap keeps the first limit entries of the anomalies list seen so
// far: while it holds fewer it takes every entry, then list is a heap with
// the last of them on top, which an entry must come before to replace.
type anomalyHeap struct {
	limit int
	list  []Anomaly
}

func (h *anomalyHeap) full() bool { return len(h.list) >= h.limit }

// wants reports whether an entry of that activity and rank would be kept.
func (h *anomalyHeap) wants(active bool, r float64) bool {
	return !h.full() || before(active, r, h.list[0].Active, rank(&h.list[0]))
}

func (h *anomalyHeap) add(a Anomaly) {
	if !h.full() {
		h.list = append(h.list, a)
		if h.full() {
			heap.Init(h)
		}
		return
	}
	h.list[0] = a
	heap.Fix(h, 0)
}

// heap.Interface, with the last entry in the list's order on top.
func (h *anomalyHeap) Len() int { return len(h.list) }
func (h *anomalyHeap) Less(i, j int) bool {
	return before(h.list[j].Active, rank(&h.list[j]), h.list[i].Active, rank(&h.list[i]))
}
func (h *anomalyHeap) Swap(i, j int) { h.list[i], h.list[j] = h.list[j], h.list[i] }
func (h *anomalyHeap) Push(any)      { panic("anomalyHeap: fixed size") }
func (h *anomalyHeap) Pop() any      { panic("anomalyHeap: fixed size") }

// outputLabelMap returns the labels of the outputs of the series with
// input labels in and for label name, without __name__.
func outputLabelMap(in labels.Labels, name string) map[string]string {
	m := make(map[string]string, in.Len())
	eachOutLabel(in, name, "", "", func(name, value string) { m[name] = value })
	return m
}

func matchesAny(sets [][]*labels.Matcher, ls labels.Labels) bool {
	if len(sets) == 0 {
		return true
	}
	for _, ms := range sets {
		ok := true
		for _, m := range ms {
			if !m.Matches(ls.Get(m.Name)) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// Status is the data of /api/v1/status/omen.
type Status struct {
	IngestSamplesPerSecond float64            `json:"ingest_samples_per_second"`
	SeriesStored           int                `json:"series_stored"`
	SeriesScored           int64              `json:"series_scored"`
	ModelsWarming          int64              `json:"models_warming"`
	Rejected               map[string]float64 `json:"rejected"`
	Config                 string             `json:"config"`
	Build                  BuildInfo          `json:"build"`
}

// Status reports the pipeline's state; series_stored and rejected come
// from Options.Stats.
func (p *Pipeline) Status() Status {
	// The counts omen_series_scored and omen_models_warming keep: a walk
	// of the series took each scorer's lock, for 6 ms at 50 000 series,
	// on every answer (the page asks every 15 s in each open tab).
	st := Status{SeriesScored: p.scored.Load(), ModelsWarming: p.warming.Load(), Rejected: map[string]float64{}, Build: p.opts.Build}
	p.rateMu.Lock()
	st.IngestSamplesPerSecond = p.ingestPerSec
	p.rateMu.Unlock()
	if p.opts.Stats != nil {
		n, rej := p.opts.Stats()
		st.SeriesStored = n
		for k, v := range rej {
			st.Rejected[k] = v
		}
	}
	if c := p.cfgYAML.Load(); c != nil {
		st.Config = *c
	}
	return st
}

// StatusHandler serves /api/v1/status/omen.
func (p *Pipeline) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiOK(w, p.Status())
	})
}

// apiOK and apiError write Prometheus's API envelope.
// apiOK encodes before it answers, so that a value JSON cannot hold is a
// 500 that says so, not a 200 with an empty body.
func apiOK(w http.ResponseWriter, data any) {
	b, err := json.Marshal(map[string]any{"status": "success", "data": data})
	if err != nil {
		apiError(w, http.StatusInternalServerError, fmt.Errorf("encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

func apiError(w http.ResponseWriter, code int, err error) {
	typ := "bad_data"
	if code >= 500 {
		typ = "internal"
	}
	apiErrorType(w, code, typ, err)
}

// apiErrorType is apiError with Prometheus's errorType given.
func apiErrorType(w http.ResponseWriter, code int, typ string, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": typ, "error": err.Error()})
}
