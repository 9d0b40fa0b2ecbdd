package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
)

// samplesAt returns the timestamps (ms) of the samples of the one series
// selected by ms.
func samplesAt(t *testing.T, q storage.Queryable, ms ...*labels.Matcher) []int64 {
	t.Helper()
	qr, err := q.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer qr.Close()
	var ts []int64
	ss := qr.Select(context.Background(), true, nil, ms...)
	n := 0
	for ss.Next() {
		n++
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			tm, _ := it.At()
			ts = append(ts, tm)
		}
	}
	require.NoError(t, ss.Err())
	require.LessOrEqual(t, n, 1, "one series")
	return ts
}

// TestOutputCadence: with the default --output.tsdb-interval (1m) and 15 s
// samples, a quiet series' results are stored once a minute, while every
// result above 1 and the one after it are stored, so alerts on
// anomaly_score > 1 fire and resolve on time; /metrics has every sample's.
func TestOutputCadence(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) {
		o.OutputInterval = time.Minute
		o.ForecastMaxSeries = 0
	})
	ls := labels.FromStrings("__name__", "load", "job", "a")
	vs := seasonal(400, 5)
	const spikeAt = 380
	vs[spikeAt] += 200
	e.feed(ls, model.MetricTypeGauge, vs)

	score := samplesAt(t, e.db, eq("__name__", FamilyScore), eq("for", "load"))
	yhat := samplesAt(t, e.db, eq("__name__", FamilyYhat), eq("for", "load"))
	require.Less(t, len(score), 400/4+20, "about one stored result a minute, not one a sample")
	require.Greater(t, len(score), 400/4-5)
	tsOf := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	require.Equal(t, tsOf(0), score[0], "the first result is stored")
	require.Contains(t, score, tsOf(spikeAt), "the anomalous sample's result")
	require.Contains(t, score, tsOf(spikeAt+1), "and the one after, so the alert resolves")
	for i := 1; i < len(score); i++ {
		require.LessOrEqual(t, score[i]-score[i-1], time.Minute.Milliseconds(), "never more than the interval apart")
	}
	// The band goes with the score once the detector is ready.
	require.Subset(t, score, yhat)
	require.Contains(t, yhat, tsOf(spikeAt))

	// /metrics shows the latest sample's results, stored or not.
	got := e.p.Anomalies(nil)
	require.Len(t, got, 1)
	require.Equal(t, time.UnixMilli(tsOf(399)).UTC(), got[0].Timestamp)
	require.Zero(t, testutil.ToFloat64(e.p.m.outputErrors))
}

// TestOutputCadenceZeroStoresAll: --output.tsdb-interval=0 stores every
// sample's results.
func TestOutputCadenceZeroStoresAll(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.OutputInterval = 0 })
	e.feed(labels.FromStrings("__name__", "load"), model.MetricTypeGauge, seasonal(50, 6))
	require.Len(t, samplesAt(t, e.db, eq("__name__", FamilyScore), eq("for", "load")), 50)
}

// TestHistoryOutputsSkipped: history remote-written in the past goes into
// the head in one request, but the head appends outputs only within half a
// block of its newest sample. Results older than that are counted, not
// appended: no output errors. Prometheus's default block range here.
func TestHistoryOutputsSkipped(t *testing.T) {
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	e := newEnv(t, "", nil, func(o *Options) { o.OutputInterval = 0 })
	// Swap the env's DB for the default-options one before any sample.
	e.stop()
	p, err := New(nil, nil, db, nil, nil, e.p.opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	const n = 3 * 240 // three hours at 15 s
	ls := labels.FromStrings("__name__", "load")
	vs := seasonal(n, 7)
	a := p.Tap(db).AppenderV2(context.Background())
	for i, v := range vs {
		_, err := a.Append(0, ls, 0, t0.UnixMilli()+int64(i)*stepMs, v, nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, a.Commit())
	for _, w := range p.workers {
		w.sync()
	}

	score := samplesAt(t, db, eq("__name__", FamilyScore))
	newest := t0.UnixMilli() + (n-1)*stepMs
	require.NotEmpty(t, score)
	require.GreaterOrEqual(t, score[0], newest-time.Hour.Milliseconds(), "nothing older than the head appends")
	require.Equal(t, newest, score[len(score)-1])
	skipped := testutil.ToFloat64(p.m.historySkipped)
	require.Equal(t, float64(n), skipped+float64(len(score)), "every sample scored: stored or counted as history")
	require.Greater(t, skipped, float64(n)/2)
	require.Zero(t, testutil.ToFloat64(p.m.outputErrors), "no rejected appends")
	// The history trained the model all the same.
	got := p.Anomalies(nil)
	require.Len(t, got, 1)
	require.True(t, got[0].Ready)
}

// TestScoringOff: --detect.max-series=0 scores nothing and queues nothing,
// while ingest goes on and is counted.
func TestScoringOff(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.MaxSeries = 0 })
	e.feed(labels.FromStrings("__name__", "load"), model.MetricTypeGauge, seasonal(20, 8))
	require.Len(t, query(t, e.db, eq("__name__", "load")), 1, "stored")
	require.Empty(t, query(t, e.db, eq("__name__", FamilyScore)))
	require.Empty(t, e.p.Anomalies(nil))
	require.Zero(t, e.p.scored.Load())
	require.Zero(t, testutil.ToFloat64(e.p.m.overBudget), "not even looked at")
	require.Equal(t, uint64(20), e.p.tapped.Load())
}

// TestIncidentStaysListed: a sustained level shift scores above 1 at its
// start and then, damped, mostly below; /api/v1/anomalies keeps it active
// and first, with since at the shift's start, for the hold time after its
// last score above 1.
func TestIncidentStaysListed(t *testing.T) {
	const hold = 5 * time.Minute
	e := newEnv(t, "", nil, func(o *Options) { o.IncidentHold = hold })
	shifted := labels.FromStrings("__name__", "load", "job", "shifted")
	quiet := labels.FromStrings("__name__", "load", "job", "quiet")
	a, b := seasonal(600, 11), seasonal(600, 12)
	const shiftAt = 500
	for i := shiftAt; i < len(a); i++ {
		a[i] += 80
	}
	tsOf := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	holdSamples := int(hold.Milliseconds() / stepMs)
	var list []Anomaly
	damped := 0
	for i := range a {
		e.push(tsOf(i), model.MetricTypeGauge, []labels.Labels{shifted, quiet}, []float64{a[i], b[i]})
		if i < shiftAt {
			continue
		}
		e.sync()
		list = e.p.Anomalies(nil)
		require.Len(t, list, 2)
		s := list[0]
		if i == shiftAt {
			require.Greater(t, s.Score, 1.0, "the shift scores above 1 at its start")
		}
		if i > shiftAt+holdSamples {
			continue
		}
		require.Equal(t, "shifted", s.Labels["job"], "the incident is listed first at sample %d", i)
		require.True(t, s.Active, "sample %d", i)
		require.Equal(t, time.UnixMilli(tsOf(shiftAt)).UTC(), *s.Since, "since is the shift's start")
		require.GreaterOrEqual(t, s.PeakScore, list[0].Score)
		require.Greater(t, s.PeakScore, 1.0)
		if s.Score <= 1 {
			damped++
		}
	}
	require.Positive(t, damped, "the detector damps the follow-ups: what the incident is for")
	// At the end: active exactly while within the hold of the last score
	// above 1; the others carry no incident fields.
	for _, x := range list {
		if x.Active {
			require.LessOrEqual(t, tsOf(599)-x.LastAnomalous.UnixMilli(), hold.Milliseconds())
			continue
		}
		require.Nil(t, x.Since)
		require.Nil(t, x.LastAnomalous)
		require.Zero(t, x.PeakScore)
	}
}

// TestIncident: the incident bookkeeping of series.step on given results,
// one sample every 15 s, hold 5 minutes (20 samples).
func TestIncident(t *testing.T) {
	const holdMs = 5 * 60_000
	tests := []struct {
		name        string
		scores      map[int]float64 // sample index → score (others 0.2)
		ongoing     [2]int          // samples [from, to) the detector calls the event ongoing
		n           int
		wantActive  bool
		wantSince   int
		wantPeak    float64
		wantLastHot int
		wantEvent   int // the current event's first sample
	}{
		{"quiet", nil, [2]int{}, 30, false, 0, 0, 0, 0},
		{"one spike, within hold", map[int]float64{10: 3}, [2]int{}, 31, true, 10, 3, 10, 10},
		{"one spike, hold passed", map[int]float64{10: 3}, [2]int{}, 40, false, 0, 0, 0, 0},
		// Listed as one incident, but two events: the duration the
		// alerts read is the second's (0), not 15 samples.
		{"two spikes within hold: one incident, two events", map[int]float64{10: 3, 25: 5}, [2]int{}, 30, true, 10, 5, 25, 25},
		{"two spikes within the event gap: one event", map[int]float64{10: 3, 18: 5}, [2]int{}, 30, true, 10, 5, 18, 10},
		{"two spikes apart: a new incident", map[int]float64{10: 3, 50: 2}, [2]int{}, 55, true, 50, 2, 50, 50},
		{"score of exactly 1 is not anomalous", map[int]float64{10: 1}, [2]int{}, 12, false, 0, 0, 0, 0},
		{"an ongoing event extends the incident", map[int]float64{10: 3}, [2]int{11, 40}, 45, true, 10, 3, 39, 10},
		{"the incident ends a hold after the event", map[int]float64{10: 3}, [2]int{11, 40}, 61, false, 0, 0, 0, 0},
		{"an ongoing event opens no incident", nil, [2]int{5, 40}, 45, false, 0, 0, 0, 0},
		{"an ongoing sample long after the event is no part of it", map[int]float64{10: 3}, [2]int{25, 26}, 27, true, 10, 3, 10, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p published
			for i := range tc.n {
				sc, ok := tc.scores[i]
				if !ok {
					sc = 0.2
				}
				p.t = int64(i) * 15_000
				incident(&p, p.t, detect.Result{Score: sc, Ongoing: sc > 1 || (i >= tc.ongoing[0] && i < tc.ongoing[1])}, holdMs, 0)
			}
			require.Equal(t, tc.wantActive, p.active(holdMs))
			if tc.wantActive {
				require.Equal(t, int64(tc.wantSince)*15_000, p.since)
				require.Equal(t, int64(tc.wantLastHot)*15_000, p.lastHot)
				require.Equal(t, tc.wantPeak, p.peak)
				require.Equal(t, time.Duration(tc.wantLastHot-tc.wantEvent)*15*time.Second, p.duration())
			}
		})
	}
}

func TestStoredPrecision(t *testing.T) {
	for _, v := range []float64{0, 1, -1, 0.1234567891234, 123456.789012345, 1e-30, -7.5e12, 1e300, -1e300, math.SmallestNonzeroFloat64} {
		got := storedPrecision(v, math.Inf(1))
		if math.Abs(v) > math.MaxFloat32 {
			require.Equal(t, v, got)
			continue
		}
		require.InDelta(t, v, got, math.Abs(v)*1e-7+1e-44, "%g", v)
		require.Zero(t, math.Float64bits(got)&(1<<29-1), "%g: the low mantissa bits are zero", v)
	}
	// Within its band's precision: a timestamp's band of 0.11 s at 1.8e9
	// (float32 steps of 128 s there) and a constant value keep theirs; a
	// band as wide as the rounding is rounded.
	for _, tc := range []struct {
		v, width float64
		exact    bool
	}{
		{1796333899.263, 0.114, true},
		{1796333899.263, 1e6, false},
		{123456.789012345, 0, true},
		{123456.789012345, 10, false},
		{0.5, 0, false}, // exact in float32 anyway
	} {
		want := float64(float32(tc.v))
		if tc.exact {
			want = tc.v
		}
		require.Equal(t, want, storedPrecision(tc.v, tc.width), "%g in a band of %g", tc.v, tc.width)
	}
}

// TestStoredBandOfLargeValues: the band stored for a series of large
// values with little spread (a timestamp) holds the series, as the one on
// /metrics does; rounded to float32 it collapsed onto one value 52 s away.
func TestStoredBandOfLargeValues(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "process_start_time_seconds")
	vs := make([]float64, 200)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range vs {
		vs[i] = 1796333899.32 + 0.01*r.NormFloat64()
	}
	e.feed(ls, model.MetricTypeGauge, vs)
	band := map[string]float64{}
	for _, fam := range []string{FamilyYhatLower, FamilyYhatUpper} {
		for _, got := range query(t, e.db, eq("__name__", fam)) {
			band[fam] = got[len(got)-1]
		}
	}
	require.Less(t, band[FamilyYhatLower], band[FamilyYhatUpper])
	require.LessOrEqual(t, band[FamilyYhatLower], 1796333899.32)
	require.GreaterOrEqual(t, band[FamilyYhatUpper], 1796333899.32)
	require.Less(t, band[FamilyYhatUpper]-band[FamilyYhatLower], 1.0)
}

// TestStoreDueStaggered: series sampled at the same instants (one target's,
// or many created at once) store their quiet results in different parts of
// the interval, not all in the same second, and each still once per
// interval.
func TestStoreDueStaggered(t *testing.T) {
	const (
		n       = 1000
		everyMs = int64(60_000)
		step    = int64(15_000)
		start   = int64(1_700_000_000_000)
	)
	perSlot := map[int64]int{} // stores by sample time within the minute
	for ref := 1; ref <= n; ref++ {
		s := &series{ref: storage.SeriesRef(ref)}
		stores := 0
		for k := range int64(40) {
			ts := start + k*step
			if !s.storeDue(ts, 0.5, everyMs) {
				continue
			}
			// The first result is stored at once, the next at the
			// series' first period boundary, then one per period.
			if stores >= 2 {
				require.Equal(t, everyMs, ts-s.stored, "series %d: once per interval", ref)
			}
			if stores >= 1 {
				perSlot[(ts-start)%everyMs]++
			}
			s.stored = ts
			stores++
		}
	}
	require.Len(t, perSlot, int(everyMs/step), "every sample time within the minute is used")
	for slot, c := range perSlot {
		// 9 or 10 stores per series after the first, spread over 4 slots.
		require.InDelta(t, n*39/4/4, c, float64(n*39/4/4)/4, "slot %d ms", slot)
	}
	s := &series{ref: 7, stored: start}
	require.True(t, s.storeDue(start+step, 1.5, everyMs), "a score above 1 is always stored")
	require.True(t, s.storeDue(start+step, 0.5, 0), "interval 0 stores every result")
}

// lastSample returns the time and raw value of the newest sample of each
// series selected by ms.
func lastSample(t *testing.T, q storage.Queryable, ms ...*labels.Matcher) map[string]struct {
	t int64
	v float64
} {
	t.Helper()
	qr, err := q.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer qr.Close()
	out := map[string]struct {
		t int64
		v float64
	}{}
	ss := qr.Select(context.Background(), true, nil, ms...)
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			tm, v := it.At()
			out[ss.At().Labels().String()] = struct {
				t int64
				v float64
			}{tm, v}
		}
	}
	require.NoError(t, ss.Err())
	return out
}

// TestStaleInputStalesOutputs: when Prometheus marks an input stale (its
// target went away), its results leave /metrics and the anomalies API at
// once, and each of its stored output series gets a staleness marker at
// the marker's time, as a recording rule's series do: otherwise a target
// that died anomalous kept anomaly_score > 1 on /metrics for the hour until
// the sweep, and an alert on it firing. The models are kept, and the next
// sample brings the results back, stored at once. Other series are
// untouched.
func TestStaleInputStalesOutputs(t *testing.T) {
	// Results stored once an hour, so that one stored at once on the
	// input's return is not the interval's doing.
	e := newEnv(t, "", nil, func(o *Options) { o.OutputInterval = time.Hour })
	gone := labels.FromStrings("__name__", "temperature", "pod", "a")
	kept := labels.FromStrings("__name__", "temperature", "pod", "b")
	const n = 800 // the forecasters are ready from the 384th sample
	va, vb := seasonal(n, 21), seasonal(n, 22)
	va[n-1] += 200 // it dies anomalous
	ts := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	for i := range n {
		e.push(ts(i), model.MetricTypeGauge, []labels.Labels{gone, kept}, []float64{va[i], vb[i]})
	}
	e.sync()
	exposed := func() string {
		var b strings.Builder
		require.NoError(t, e.p.WriteOutputs(&b))
		return b.String()
	}
	podA := [][]*labels.Matcher{{eq("pod", "a")}}
	require.Contains(t, exposed(), `pod="a"`)
	require.Greater(t, e.p.Anomalies(podA)[0].Score, 1.0)

	stale := math.Float64frombits(value.StaleNaN)
	e.push(ts(n), model.MetricTypeGauge, []labels.Labels{gone, kept}, []float64{stale, vb[n-1]})
	e.sync()
	out := exposed()
	require.NotContains(t, out, `pod="a"`, "no output or omen_model_ready for the gone input")
	require.Contains(t, out, `anomaly_score{pod="b",for="temperature",job="",instance=""}`)
	require.Empty(t, e.p.Anomalies(podA))
	require.Len(t, e.p.Anomalies(nil), 1)

	last := lastSample(t, e.db, eq("for", "temperature"), eq("pod", "a"))
	require.Len(t, last, 4+3*3, "score, band and three horizons of forecasts")
	for name, s := range last {
		require.Equal(t, ts(n), s.t, name)
		require.True(t, value.IsStaleNaN(s.v), name)
	}
	for name, s := range lastSample(t, e.db, eq("for", "temperature"), eq("pod", "b")) {
		require.False(t, math.IsNaN(s.v), name)
	}
	// A second marker, or one out of order, appends nothing more.
	e.push(ts(n)+1, model.MetricTypeGauge, []labels.Labels{gone}, []float64{stale})
	e.sync()
	require.Equal(t, ts(n), lastSample(t, e.db, eq("__name__", FamilyScore), eq("pod", "a"))[labels.FromStrings("__name__", FamilyScore, "for", "temperature", "pod", "a").String()].t)

	// Back: exposed and stored at once, by the same models (ready, no
	// warm-up). Twice: the first return follows a score above 1, which
	// is stored anyway; the second a quiet one.
	for _, back := range []int{n + 1, n + 5} {
		for i := back; i < back+3; i++ {
			e.push(ts(i), model.MetricTypeGauge, []labels.Labels{gone}, []float64{va[i-400]})
		}
		e.sync()
		require.Contains(t, exposed(), `anomaly_score{pod="a",for="temperature",job="",instance=""}`)
		a := e.p.Anomalies(podA)
		require.Len(t, a, 1)
		require.True(t, a[0].Ready)
		require.Less(t, a[0].Score, 1.0)
		for _, fam := range []string{FamilyScore, FamilyYhat} {
			s := samplesAt(t, e.db, eq("__name__", fam), eq("pod", "a"))
			require.Contains(t, s, ts(back), "%s at the return at %d", fam, back)
		}
		e.push(ts(back+3), model.MetricTypeGauge, []labels.Labels{gone}, []float64{stale})
		e.sync()
		require.NotContains(t, exposed(), `pod="a"`)
	}
	require.Zero(t, testutil.ToFloat64(e.p.m.outputErrors))
}

// TestOutputFamiliesInConfig: the names config refuses for derived inputs
// are the output families.
func TestOutputFamiliesInConfig(t *testing.T) {
	require.ElementsMatch(t, append(baseFamilies[:], fcFamilies[:]...), config.OutputFamilies[:])
}

// TestIncidentDurationKeepsLongestEvent: the duration is the incident's
// longest event so far, so a blip after an event of minutes, within the
// hold, does not resolve the alert that fired on it (to fire it again at
// the next long event: one incident, two notifications and a resolve).
func TestIncidentDurationKeepsLongestEvent(t *testing.T) {
	const holdMs = 5 * 60_000
	var p published
	for i := range 50 {
		r := detect.Result{Score: 0.2}
		switch {
		case i == 10:
			r = detect.Result{Score: 3, Undamped: 3, Ongoing: true}
		case i > 10 && i <= 34: // ongoing for 6 minutes at 15 s
			r = detect.Result{Score: 0.5, Undamped: 0.9, Ongoing: true}
		case i == 46: // a blip 12 samples later: another event
			r = detect.Result{Score: 1.5, Undamped: 1.5, Ongoing: true}
		}
		p.t = int64(i) * 15_000
		incident(&p, p.t, r, holdMs, 0)
	}
	require.True(t, p.active(holdMs))
	require.Equal(t, int64(46*15_000), p.event, "the blip is an event of its own")
	require.Equal(t, 6*time.Minute, p.duration())

	// A blip at the first sample after the hold opens a new incident, of
	// nothing of the last one: it inherited the longest event (6m), and
	// a blip paged at once.
	for i := 47; i < 67; i++ {
		p.t = int64(i) * 15_000
		incident(&p, p.t, detect.Result{Score: 0.2}, holdMs, 0)
	}
	require.True(t, p.active(holdMs), "the hold has not run out for the samples that came")
	p.t = 67 * 15_000
	incident(&p, p.t, detect.Result{Score: 2, Undamped: 2}, holdMs, 0)
	require.Equal(t, p.t, p.since, "a new incident")
	require.Zero(t, p.duration(), "a blip, not an event of minutes")
}

// TestRecurringGlitchesDoNotAddUp pins what README's "Alerts" says of
// anomalies that recur within the hold: one incident, listed once from the
// first, but its duration is its longest event's, so glitches more than
// eventGap samples apart never reach a tier's for however long they keep
// coming (the README said the duration ran from the first to the latest,
// so that they fired; the code had changed, and omen fed 1 s noise kept
// one incident for minutes at a duration of 0).
func TestRecurringGlitchesDoNotAddUp(t *testing.T) {
	const holdMs = 5 * 60_000
	var p published
	for i := range 200 { // 50 minutes at 15 s, a glitch every 3 minutes
		r := detect.Result{Score: 0.2}
		if i%12 == 0 {
			r = detect.Result{Score: 2, Undamped: 2}
		}
		p.t = int64(i+1) * 15_000
		incident(&p, p.t, r, holdMs, 0)
		require.True(t, p.active(holdMs), "sample %d: the glitches are within the hold of each other", i)
	}
	require.Equal(t, int64(15_000), p.since, "one incident, since the first glitch")
	require.Zero(t, p.duration(), "no glitch is an event of any length")
}

// TestIncidentEventEndsWithoutSamples: a staleness marker (the target went
// away: a process that crashed and came back a minute later), or samples
// that did not come (4.5 minutes of failed scrapes, no marker), end the
// current event: a blip before and one after, within eventGap samples
// that came, were one event.
func TestIncidentEventEndsWithoutSamples(t *testing.T) {
	for _, tc := range []struct {
		marker bool
		back   int // the first sample after
	}{{true, 365}, {false, 379}} {
		t.Run(fmt.Sprint("marker=", tc.marker), func(t *testing.T) {
			vs := seasonal(400, 3)
			vs[360] += 1000
			vs[tc.back] += 1000
			vs[tc.back+2] += 1000
			ls := labels.FromStrings("__name__", "temperature")
			e := newEnv(t, "", nil, nil)
			e.feed(ls, model.MetricTypeGauge, vs[:361])
			if tc.marker {
				e.push(t0.UnixMilli()+361*stepMs-1, model.MetricTypeGauge, []labels.Labels{ls}, []float64{math.Float64frombits(value.StaleNaN)})
			}
			for i := tc.back; i < tc.back+4; i++ {
				e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
			}
			e.sync()
			s := e.onlySeries()
			require.True(t, s.pub.active(e.p.opts.IncidentHold.Milliseconds()))
			require.Equal(t, t0.UnixMilli()+int64(tc.back)*stepMs, s.pub.event, "the blip after starts an event")
		})
	}
}

// TestOutputRefusedIsLogged: an output sample the TSDB refuses is counted
// and logged, as a warning naming the input, the family and the error, at
// most once per outputRefusedLogEvery (it was counted alone: nothing said
// which series or why).
func TestOutputRefusedIsLogged(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	e.ready(t) // Run logs until then
	var buf bytes.Buffer
	e.p.logger = slog.New(slog.NewTextHandler(&buf, nil))
	ls := labels.FromStrings("__name__", "x", "job", "a")
	e.feed(ls, model.MetricTypeGauge, seasonal(20, 1))
	score := e.onlySeries().outLabels(FamilyScore, "")
	for i := range 2 {
		// Another value already stored where the next score goes: the
		// head refuses the score as a duplicate.
		ts := t0.UnixMilli() + int64(20+i)*stepMs
		a := e.db.Appender(context.Background())
		_, err := a.Append(0, score, ts, 12345)
		require.NoError(t, err)
		require.NoError(t, a.Commit())
		e.push(ts, model.MetricTypeGauge, []labels.Labels{ls}, []float64{1})
		e.sync()
	}
	require.Equal(t, 2.0, testutil.ToFloat64(e.p.m.outputErrors))
	logs := buf.String()
	require.Equal(t, 1, strings.Count(logs, "level=WARN"), logs)
	require.Contains(t, logs, `msg="Output sample refused by the TSDB" family=anomaly_score input="{__name__=\"x\", job=\"a\"}"`)
	require.Contains(t, logs, "duplicate sample for timestamp")
}

// TestIncidentGlitchIsNoEvent: one error on a counter that has been 0 for
// hours opens an incident (it scores ~31) whose event is that sample, at
// any scrape interval. The detector's members with a memory score the
// samples after it above 1 before the damping (the novelty member, for
// the nvLen samples whose contexts hold the error); counted as the event
// going on, they made it 5 samples long, 5 minutes at 60 s scrapes, which
// paged (warning and critical), and with the detector's own ongoing
// samples 17, 8m30s at 30 s.
func TestIncidentGlitchIsNoEvent(t *testing.T) {
	const holdMs = 5 * 60_000
	t.Run("undamped score the detector does not call ongoing", func(t *testing.T) {
		var p published
		for i := range 20 {
			r := detect.Result{Score: 0.2, Undamped: 0.2}
			switch {
			case i == 10:
				r = detect.Result{Score: 31, Undamped: 31, Ongoing: true}
			case i > 10 && i <= 15:
				r.Undamped = 1.1
			}
			p.t = int64(i) * 15_000
			incident(&p, p.t, r, holdMs, 0)
		}
		require.True(t, p.active(holdMs))
		require.Equal(t, int64(10*15_000), p.lastHot)
		require.Zero(t, p.duration())
	})
	for _, iv := range []time.Duration{15 * time.Second, 30 * time.Second, time.Minute} {
		t.Run("one error on a counter at 0, every "+iv.String(), func(t *testing.T) {
			d, err := detect.New(detectOptions(config0().Defaults))
			require.NoError(t, err)
			var rs rateState
			var p published
			total := 0.0
			var longest time.Duration
			const errAt = 2_000
			for i := range errAt + 100 {
				if i == errAt {
					total++
				}
				ts := int64(i) * iv.Milliseconds()
				v, ok := rs.rate(0, ts, total, d.Interval())
				if !ok {
					continue
				}
				r := d.Update(ts, v)
				p.t = ts
				incident(&p, ts, r, holdMs, 0)
				if i == errAt {
					require.Greater(t, p.peak, 2.0, "the error opens an incident")
				}
				longest = max(longest, p.duration())
			}
			require.Zero(t, longest)
		})
	}
}
