package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
)

// t0 is the start of the generated series: a fixed, recent-looking time so
// that the TSDB head accepts every sample.
var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

const stepMs = 15000

// env is a pipeline running over a real TSDB in a temporary directory.
type env struct {
	t      testing.TB
	db     *tsdb.DB
	p      *Pipeline
	reg    *prometheus.Registry
	app    storage.AppendableV2
	cancel context.CancelFunc
	done   chan error
	clock  *clock
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func openDB(t testing.TB, dir string) *tsdb.DB {
	t.Helper()
	// Tests feed hours of sample time faster than the scorers follow; a
	// day-long block keeps the head's appendable window (half a block)
	// wider than that, so no output is skipped as history
	// (TestHistoryOutputsSkipped uses Prometheus's default).
	o := tsdb.DefaultOptions()
	o.MinBlockDuration, o.MaxBlockDuration = 24*time.Hour.Milliseconds(), 24*time.Hour.Milliseconds()
	db, err := tsdb.Open(dir, nil, nil, o, nil)
	require.NoError(t, err)
	return db
}

// newEnv starts a pipeline; mod adjusts its options.
func newEnv(t testing.TB, dbDir string, cfg *config.Config, mod func(*Options)) *env {
	t.Helper()
	return newEnvEngine(t, dbDir, cfg, nil, mod)
}

// newEnvEngine is newEnv with a PromQL engine for derived inputs.
func newEnvEngine(t testing.TB, dbDir string, cfg *config.Config, engine promql.QueryEngine, mod func(*Options)) *env {
	t.Helper()
	if dbDir == "" {
		dbDir = t.TempDir()
	}
	db := openDB(t, dbDir)
	return newEnvOn(t, db, db, cfg, engine, mod)
}

// newEnvLogged is newEnv logging into logger: set before Run starts, not
// after (Run's goroutines read it).
func newEnvLogged(t testing.TB, cfg *config.Config, logger *slog.Logger, mod func(*Options)) *env {
	t.Helper()
	db := openDB(t, t.TempDir())
	return newEnvOnLogged(t, db, db, cfg, nil, logger, mod)
}

// newEnvOn starts a pipeline over st, which stores into db.
func newEnvOn(t testing.TB, db *tsdb.DB, st Storage, cfg *config.Config, engine promql.QueryEngine, mod func(*Options)) *env {
	t.Helper()
	return newEnvOnLogged(t, db, st, cfg, engine, nil, mod)
}

// newEnvOnLogged is newEnvOn logging into logger (nil: nowhere).
func newEnvOnLogged(t testing.TB, db *tsdb.DB, st Storage, cfg *config.Config, engine promql.QueryEngine, logger *slog.Logger, mod func(*Options)) *env {
	t.Helper()
	e := &env{t: t, db: db, reg: prometheus.NewRegistry(), clock: &clock{now: t0}}
	o := DefaultOptions()
	o.Workers = 2
	o.Now = e.clock.Now
	// Store every sample's results, so tests can count them per input;
	// the default cadence has tests of its own (outputs_test.go).
	o.OutputInterval = 0
	if mod != nil {
		mod(&o)
	}
	p, err := New(logger, e.reg, st, engine, cfg, o)
	require.NoError(t, err)
	e.p = p
	e.app = p.Tap(st)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- p.Run(ctx) }()
	t.Cleanup(func() { e.stop(); _ = db.Close() })
	return e
}

// ready waits until Run is ready: what it logs before is logged by then.
func (e *env) ready(t testing.TB) {
	t.Helper()
	require.Eventually(t, e.p.Ready, 10*time.Second, time.Millisecond)
}

// TestRunSaysReady: Run says when it is ready (/-/ready answers 200 from
// then), as Prometheus's "Server is ready to receive web requests." does;
// the restore's last step, and readiness, went unsaid. Options.Ready is
// called then, once (omen lowers GOGC for the burst that follows).
func TestRunSaysReady(t *testing.T) {
	var buf syncbuf.Buffer
	db := openDB(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	o := DefaultOptions()
	o.Workers = 2
	var p *Pipeline
	var calls, readyThen atomic.Int32
	o.Ready = func() {
		calls.Add(1)
		if p.Ready() {
			readyThen.Add(1)
		}
	}
	p, err := New(slog.New(slog.NewTextHandler(&buf, nil)), prometheus.NewRegistry(), db, nil, config.Default(), o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	require.Eventually(t, p.Ready, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Contains(t, buf.String(), `msg="Ready: scoring" workers=2 max_series=100000 forecast_max_series=10000`)
	require.Equal(t, int32(1), calls.Load())
	require.Equal(t, int32(1), readyThen.Load(), "called once ready")
}

// stop ends Run (taking the final snapshot); idempotent.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	require.NoError(e.t, <-e.done)
	e.cancel = nil
}

// sync waits until everything appended so far is scored.
func (e *env) sync() {
	for _, w := range e.p.workers {
		w.sync()
	}
}

// backfilled waits until the workers have scored what is queued and taken
// in every remote-read history asked for.
func (e *env) backfilled(t testing.TB) {
	t.Helper()
	e.sync()
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.backfillPending) == 0 }, 10*time.Second, 5*time.Millisecond)
}

// onlySeries returns the one series the workers score (nil if none); call
// it after sync, while the workers are idle.
func (e *env) onlySeries() *series {
	var s *series
	for _, w := range e.p.workers {
		w.view(func(x *series) { s = x })
	}
	return s
}

// push appends one sample per series in one transaction through the tap.
func (e *env) push(ts int64, typ model.MetricType, ls []labels.Labels, vs []float64) {
	e.t.Helper()
	a := e.app.AppenderV2(context.Background())
	for i := range ls {
		_, err := a.Append(0, ls[i], 0, ts, vs[i], nil, nil, storage.AOptions{Metadata: metadata.Metadata{Type: typ}})
		require.NoError(e.t, err)
	}
	require.NoError(e.t, a.Commit())
}

// feed appends a whole series, sample by sample, one commit each.
func (e *env) feed(ls labels.Labels, typ model.MetricType, vs []float64) {
	e.feedEvery(ls, typ, stepMs, vs)
}

// feedEvery is feed with the samples everyMs apart.
func (e *env) feedEvery(ls labels.Labels, typ model.MetricType, everyMs int64, vs []float64) {
	for i, v := range vs {
		e.push(t0.UnixMilli()+int64(i)*everyMs, typ, []labels.Labels{ls}, []float64{v})
		if i%256 == 255 {
			// Each push is a batch; a worker slowed by a loaded machine
			// would otherwise fall 1024 batches behind and drop samples
			// (by design: ingest never waits), and the test see a
			// forecaster that missed the level shift it asserts on.
			e.sync()
		}
	}
	e.sync()
}

// query returns the float samples of the series selected by ms.
func query(t testing.TB, q storage.Queryable, ms ...*labels.Matcher) map[string][]float64 {
	t.Helper()
	qr, err := q.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer qr.Close()
	out := map[string][]float64{}
	ss := qr.Select(context.Background(), true, nil, ms...)
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			_, v := it.At()
			out[ss.At().Labels().String()] = append(out[ss.At().Labels().String()], v)
		}
	}
	require.NoError(t, ss.Err())
	return out
}

func eq(name, value string) *labels.Matcher {
	return labels.MustNewMatcher(labels.MatchEqual, name, value)
}

// seasonal is a daily-ish pattern (period 96 samples) with Gaussian noise,
// seeded so runs repeat.
func seasonal(n int, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	vs := make([]float64, n)
	for i := range vs {
		vs[i] = 100 + 20*math.Sin(2*math.Pi*float64(i)/96) + r.NormFloat64()
	}
	return vs
}

// TestTapPassesThroughAndScores, with one scorer (a machine with one CPU:
// the dispatch takes another path) and with two.
func TestTapPassesThroughAndScores(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) { o.Workers = workers })
			ls := labels.FromStrings("__name__", "temperature", "job", "a")
			vs := seasonal(200, 1)
			e.feed(ls, model.MetricTypeGauge, vs)

			// The input is stored unchanged.
			in := query(t, e.db, eq("__name__", "temperature"))
			require.Equal(t, vs, in[ls.String()])
			// Every sample was scored: one anomaly_score per input sample, with the
			// input's labels minus __name__ plus for.
			out := query(t, e.db, eq("__name__", "anomaly_score"))
			want := labels.FromStrings("__name__", "anomaly_score", "for", "temperature", "job", "a")
			require.Len(t, out[want.String()], len(vs))
			require.Len(t, query(t, e.db, eq("__name__", "yhat"))[labels.FromStrings("__name__", "yhat", "for", "temperature", "job", "a").String()],
				len(vs)-64, "yhat once the 64-sample warm-up is over")
			require.Equal(t, int64(1), e.p.scored.Load())
			requireBandsOrdered(t, e.db, "yhat_lower", "yhat", "yhat_upper", eq("for", "temperature"))
			// Outputs appended to the TSDB are not tapped, hence not scored.
			require.Empty(t, query(t, e.db, eq("for", "anomaly_score")))
		})
	}
}

func TestNeverScored(t *testing.T) {
	for _, name := range []string{"anomaly_score", "yhat", "forecast_upper", "omen_series_scored", "",
		"ALERTS", "ALERTS_FOR_STATE", "omen:anomalous_series:count", "namespace_job:anomaly_score:max", "namespace:omen_anomalous_series:count",
		"target_info", "otel_target_info"} {
		require.False(t, Scorable(name), name)
	}
	for _, name := range []string{"up", "job:http_requests:rate5m", "node_cpu_seconds_total"} {
		require.True(t, Scorable(name), name)
	}
}

// TestInfoNotScored: target_info, which the OpenTelemetry Collector's
// prometheusremotewrite exporter writes for every resource, and a series
// whose metadata says info are stored but not scored; a gauge beside them
// is.
func TestInfoNotScored(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  model.MetricType
	}{
		{"target_info", model.MetricTypeGauge}, // the exporter's 2.0 metadata for it
		{"target_info", ""},
		{"otel_target_info", ""}, // the exporter's namespace: otel
		{"build_info", model.MetricTypeInfo},
	} {
		t.Run(tc.name+"/"+string(tc.typ), func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			info := labels.FromStrings("__name__", tc.name, "job", "checkout", "instance", "i-1", "host_name", "h1")
			gauge := labels.FromStrings("__name__", "queue_depth", "job", "checkout", "instance", "i-1")
			e.push(t0.UnixMilli(), tc.typ, []labels.Labels{info}, []float64{1})
			e.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{gauge}, []float64{3})
			e.sync()
			require.Len(t, query(t, e.db, labels.MustNewMatcher(labels.MatchEqual, "__name__", tc.name))[info.String()], 1, "stored")
			require.Equal(t, int64(1), e.p.scored.Load(), "series scored: the gauge alone")
			require.Equal(t, "queue_depth", e.onlySeries().in.Get("__name__"))
		})
	}
}

func TestSpikeScoresAboveOne(t *testing.T) {
	const n = 600
	tests := []struct {
		name    string
		spike   float64 // added to the last sample
		atLeast float64
		below   float64
	}{
		{name: "spike", spike: 40, atLeast: 1},
		{name: "control", spike: 0, below: 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			vs := seasonal(n, uint64(10+i))
			vs[n-1] += tc.spike
			ls := labels.FromStrings("__name__", "load_"+tc.name)
			e.feed(ls, model.MetricTypeGauge, vs)
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "load_"+tc.name)}})
			require.Len(t, got, 1)
			a := got[0]
			require.True(t, a.Ready)
			if tc.atLeast > 0 {
				require.Greater(t, a.Score, tc.atLeast)
				require.NotNil(t, a.Since)
				require.Greater(t, testutil.ToFloat64(e.p.m.anomalies.WithLabelValues("load_"+tc.name)), 0.0)
			} else {
				// Exposed at 0 before any anomaly, so rate() and
				// increase() will see the first.
				n, err := testutil.GatherAndCount(e.reg, "omen_anomalies_total")
				require.NoError(t, err)
				require.Equal(t, 1, n)
				require.Less(t, a.Score, tc.below)
				require.LessOrEqual(t, float64(a.YhatLower), a.Value)
				require.GreaterOrEqual(t, float64(a.YhatUpper), a.Value)
			}
		})
	}
}

func TestCountersBecomeRates(t *testing.T) {
	tests := []struct {
		name   string
		metric string
		typ    model.MetricType
		raw    []float64
		want   float64 // value scored for the last sample
	}{
		{"suffix", "requests_total", "", []float64{0, 150, 300}, 10},
		{"metadata", "requests", model.MetricTypeCounter, []float64{0, 150, 300}, 10},
		{"reset", "errors_total", "", []float64{100, 250, 30, 180}, 10}, // the reset itself is not scored (see rate)
		{"gauge by metadata despite suffix", "queue_total", model.MetricTypeGauge, []float64{1, 2, 7}, 7},
		{"gauge", "queue_depth", "", []float64{1, 2, 7}, 7},
		{"histogram bucket", "latency_seconds_bucket", "", []float64{0, 15, 45}, 2},
	}
	e := newEnv(t, "", nil, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.feed(labels.FromStrings("__name__", tc.metric), tc.typ, tc.raw)
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", tc.metric)}})
			require.Len(t, got, 1)
			require.InDelta(t, tc.want, float64(got[0].Value), 1e-12)
		})
	}
}

// TestDeclaredTypesRetype: remote-write 1.0 declares a family's type in
// requests of their own, after the first samples. A counter named without
// _total is scored as a gauge (its running total) until declared, then
// started again from its history as a rate; a gauge named _count likewise
// the other way; samples typed by their name alone (after a restart,
// before the next declaration) change nothing. Families whose name and
// type agree cost the samples nothing.
func TestDeclaredTypesRetype(t *testing.T) {
	tests := []struct {
		name, metric string
		typ          model.MetricType
		raw          func(i int) float64
		before       float64 // value scored for sample 99, typed by the name
		after        float64 // for sample 199, after the declaration
	}{
		{"counter without _total", "bytes_received", model.MetricTypeCounter, func(i int) float64 { return 150 * float64(i) }, 99 * 150, 10},
		{"gauge named _count", "queue_count", model.MetricTypeGauge, func(i int) float64 { return float64(i % 7) }, 0, 199 % 7},
	}
	e := newEnv(t, "", nil, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ls := labels.FromStrings("__name__", tc.metric)
			scored := func() float64 {
				got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", tc.metric)}})
				require.Len(t, got, 1)
				return float64(got[0].Value)
			}
			push := func(from, to int) {
				for i := from; i < to; i++ {
					e.push(t0.UnixMilli()+int64(i)*stepMs, "", []labels.Labels{ls}, []float64{tc.raw(i)})
				}
				e.sync()
			}
			retyped := testutil.ToFloat64(e.p.m.retyped)
			push(0, 100)
			if tc.before != 0 {
				require.InDelta(t, tc.before, scored(), 1e-9)
			}
			e.p.NoteTypes([]string{tc.metric}, []model.MetricType{tc.typ})
			push(100, 200)
			require.InDelta(t, tc.after, scored(), 1e-9)
			require.Equal(t, retyped+1, testutil.ToFloat64(e.p.m.retyped))
			// Warmed again from its 100 stored samples: ready at once.
			require.True(t, e.p.Anomalies([][]*labels.Matcher{{eq("__name__", tc.metric)}})[0].Ready)
		})
	}
	// Typed by its metadata, then by its name alone (a restart: the
	// declarations come again a minute later): kept as it was.
	ls := labels.FromStrings("__name__", "hits")
	retyped := testutil.ToFloat64(e.p.m.retyped)
	for i := range 200 {
		typ := model.MetricTypeCounter
		if i >= 100 {
			typ = ""
		}
		e.push(t0.UnixMilli()+int64(i)*stepMs, typ, []labels.Labels{ls}, []float64{150 * float64(i)})
	}
	e.sync()
	require.InDelta(t, 10, float64(e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "hits")}})[0].Value), 1e-9)
	require.Equal(t, retyped, testutil.ToFloat64(e.p.m.retyped))

	// Declared as its name says: nothing kept, nothing looked up.
	e.p.NoteTypes([]string{"requests_total", "temperature", "latency_seconds"},
		[]model.MetricType{model.MetricTypeCounter, model.MetricTypeGauge, model.MetricTypeHistogram})
	require.Len(t, *e.p.declared.Load(), 2, "only the two families above")
	require.Equal(t, model.MetricType(""), e.p.declaredType("temperature"))

	// Declared both ways (two targets): typed by its name from then on,
	// however the declarations alternate; a series retyped by the first
	// declaration is retyped back once, then no more.
	retyped = testutil.ToFloat64(e.p.m.retyped)
	flip := labels.FromStrings("__name__", "flips")
	for i := range 40 {
		typ := model.MetricTypeCounter
		if i%2 == 1 {
			typ = model.MetricTypeGauge
		}
		e.p.NoteTypes([]string{"flips"}, []model.MetricType{typ})
		e.push(t0.UnixMilli()+int64(i)*stepMs, "", []labels.Labels{flip}, []float64{float64(i)})
	}
	e.sync()
	require.Equal(t, model.MetricTypeGauge, e.p.declaredType("flips"), "by its name")
	require.False(t, e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "flips")}})[0].Counter)
	require.LessOrEqual(t, testutil.ToFloat64(e.p.m.retyped), retyped+1, "retyped once at most")
	// Both ways in one request (Prometheus sends every target's metadata
	// at once), for a family whose name agrees with one of them.
	e.p.NoteTypes([]string{"mixed_total", "mixed_total"}, []model.MetricType{model.MetricTypeCounter, model.MetricTypeGauge})
	require.Equal(t, model.MetricTypeCounter, e.p.declaredType("mixed_total"))
}

// budgetEnv is a pipeline scoring at most 2 series, and 5 series of g.
func budgetEnv(t *testing.T) (e *env, ls []labels.Labels, vs []float64) {
	e = newEnv(t, "", nil, func(o *Options) { o.MaxSeries = 2 })
	for i := range 5 {
		ls = append(ls, labels.FromStrings("__name__", "g", "i", string(rune('a'+i))))
		vs = append(vs, 1)
	}
	return e, ls, vs
}

func TestBudget(t *testing.T) {
	e, ls, vs := budgetEnv(t)
	for k := range 3 {
		e.push(t0.UnixMilli()+int64(k)*stepMs, model.MetricTypeGauge, ls, vs)
	}
	e.sync()
	require.Equal(t, int64(2), e.p.scored.Load())
	require.Equal(t, 3.0, testutil.ToFloat64(e.p.m.overBudget), "each skipped series counted once")
	require.Equal(t, int64(3), e.p.overBudgetNow.Load(), "omen_series_over_budget: refused and still sending")
	require.Equal(t, 6.0, testutil.ToFloat64(e.p.m.scoredSamples), "3 samples of each of the 2 series in budget")
	// Ingest is untouched.
	require.Len(t, query(t, e.db, eq("__name__", "g")), 5)

	// Whichever two were scored stop; the other three keep sending. Once
	// the sweep has dropped the two, the budget's room goes to those
	// that were over it.
	var scored []string
	for _, a := range e.p.Anomalies(nil) {
		scored = append(scored, a.Labels["i"])
	}
	var rest []labels.Labels
	for _, l := range ls {
		if !slices.Contains(scored, l.Get("i")) {
			rest = append(rest, l)
		}
	}
	e.clock.set(t0.Add(2 * time.Hour))
	e.push(t0.Add(2*time.Hour).UnixMilli(), model.MetricTypeGauge, rest, vs[:3])
	e.sync()
	for range 2 { // the first worker's sweep may run before the other's drops
		for _, w := range e.p.workers {
			w.sweep()
		}
	}
	require.Equal(t, int64(0), e.p.scored.Load())
	e.push(t0.Add(2*time.Hour).UnixMilli()+stepMs, model.MetricTypeGauge, rest, vs[:3])
	e.sync()
	require.Equal(t, int64(2), e.p.scored.Load(), "the freed budget is used")
	require.Equal(t, int64(1), e.p.overBudgetNow.Load(), "one still over the budget")
	for _, a := range e.p.Anomalies(nil) {
		require.NotContains(t, scored, a.Labels["i"])
	}
	// A reload looks at every ignored series again.
	require.NoError(t, e.p.ApplyConfig(nil))
	e.push(t0.Add(2*time.Hour).UnixMilli()+2*stepMs, model.MetricTypeGauge, rest, vs[:3])
	e.sync()
	require.Equal(t, int64(1), e.p.overBudgetNow.Load())
}

// TestOverBudgetLeaves: a series refused for the budget that then goes
// stale (its pod left) is no longer "not scored now": it leaves the
// omen_series_over_budget gauge at its marker, and takes none of the room
// the sweep gives to the refused series still sending.
func TestOverBudgetLeaves(t *testing.T) {
	e, ls, vs := budgetEnv(t)
	e.push(t0.UnixMilli(), model.MetricTypeGauge, ls, vs)
	e.sync()
	require.Equal(t, int64(3), e.p.overBudgetNow.Load())
	var refused []labels.Labels
	scored := map[string]bool{}
	for _, a := range e.p.Anomalies(nil) {
		scored[a.Labels["i"]] = true
	}
	for _, l := range ls {
		if !scored[l.Get("i")] {
			refused = append(refused, l)
		}
	}
	stale := math.Float64frombits(value.StaleNaN)
	e.push(t0.UnixMilli()+stepMs, model.MetricTypeGauge, refused, []float64{stale, stale, stale})
	e.sync()
	require.Equal(t, int64(0), e.p.overBudgetNow.Load(), "refused series that left are not over the budget now")
}

// TestStaleSeriesLeaveFullBudgets: a Recreate rollout replaces every pod
// at once; the old pods' series get staleness markers and the new ones
// come while the old still hold --detect.max-series, or
// --forecast.max-series. Once the old have been gone for Prometheus's
// lookback, the sweep gives their room to the new ones still sending (they
// waited --detect.stale-after, an hour by default). Within the lookback (a
// failed scrape's markers, whose series come back at the next one), or
// while no series waits for room, a series that went stale keeps its
// models for --detect.stale-after.
//
// Series that stop with no marker do the same: a change of the shard count
// (hashmod) moves most series to another shard, and Prometheus marks none
// of them stale at the one they left, which then gets as many from the
// other shards. Those held the room for the hour, so the shard that was
// scaled out for want of room refused the series it gained.
func TestStaleSeriesLeaveFullBudgets(t *testing.T) {
	for _, tc := range []struct {
		name      string
		forecasts bool          // the full budget is --forecast.max-series's
		waiting   bool          // new pods want room
		silent    bool          // the old pods' series stop with no staleness marker (moved to another shard)
		after     time.Duration // from the old pods' markers to the sweep
		holders   []string      // the pods whose series hold the budget after the sweep
		hold      time.Duration // --detect.incident-hold, if not the default (5m)
	}{
		{"gone past the lookback, new pods waiting", false, true, false, 6 * time.Minute, []string{"new"}, 0},
		{"gone within the lookback", false, true, false, 4 * time.Minute, []string{"old"}, 0},
		{"nobody waiting", false, false, false, 6 * time.Minute, []string{"old"}, 0},
		{"forecasters: gone past the lookback, new pods waiting", true, true, false, 6 * time.Minute, []string{"new"}, 0},
		{"forecasters: gone within the lookback", true, true, false, 4 * time.Minute, []string{"old"}, 0},
		{"forecasters: nobody waiting", true, false, false, 6 * time.Minute, []string{"old"}, 0},
		{"moved away: silent past the lookback, new series waiting", false, true, true, 6 * time.Minute, []string{"new"}, 0},
		{"moved away: silent within the lookback", false, true, true, 4 * time.Minute, []string{"old"}, 0},
		{"moved away: nobody waiting", false, false, true, 6 * time.Minute, []string{"old"}, 0},
		{"forecasters: moved away, silent past the lookback, new series waiting", true, true, true, 6 * time.Minute, []string{"new"}, 0},
		{"forecasters: moved away, silent within the lookback", true, true, true, 4 * time.Minute, []string{"old"}, 0},
		// Silent series stay on /metrics for a longer incident hold: their
		// room is not taken before it.
		{"moved away: silent past the lookback, within a longer hold", false, true, true, 6 * time.Minute, []string{"old"}, 10 * time.Minute},
		{"moved away: silent past a longer hold", false, true, true, 11 * time.Minute, []string{"new"}, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) {
				o.MaxSeries, o.ForecastMaxSeries = 2, 100
				if tc.forecasts {
					o.MaxSeries, o.ForecastMaxSeries = 100, 2
				}
				if tc.hold > 0 {
					o.IncidentHold = tc.hold
				}
			})
			mk := func(p string, n int) (ls []labels.Labels, vs []float64) {
				for i := range n {
					ls = append(ls, labels.FromStrings("__name__", "g", "pod", p+"-"+string(rune('a'+i))))
					vs = append(vs, 1)
				}
				return ls, vs
			}
			old, ov := mk("old", 2)
			nw, nv := mk("new", 3)
			for k := range 3 {
				e.push(t0.UnixMilli()+int64(k)*stepMs, model.MetricTypeGauge, old, ov)
			}
			e.sync() // the old pods hold the budget before the new come
			if !tc.silent {
				stale := math.Float64frombits(value.StaleNaN)
				e.push(t0.UnixMilli()+3*stepMs, model.MetricTypeGauge, old, []float64{stale, stale})
			}
			if tc.waiting {
				e.push(t0.UnixMilli()+3*stepMs, model.MetricTypeGauge, nw, nv)
			}
			e.sync()
			now := t0.Add(tc.after)
			e.clock.set(now)
			if tc.waiting {
				e.push(now.UnixMilli(), model.MetricTypeGauge, nw, nv) // still sending
				e.sync()
			}
			for range 2 { // the first worker's sweep may run before the other's drops
				for _, w := range e.p.workers {
					w.sweep()
				}
			}
			if tc.waiting {
				e.push(now.UnixMilli()+stepMs, model.MetricTypeGauge, nw, nv)
				e.sync()
			}
			holders := map[string]bool{}
			for _, w := range e.p.workers {
				w.view(func(s *series) {
					if !tc.forecasts || s.fc != nil {
						holders[strings.SplitN(s.in.Get("pod"), "-", 2)[0]] = true
					}
				})
			}
			require.Equal(t, tc.holders, slices.Sorted(maps.Keys(holders)))
			used := e.p.scored.Load()
			if tc.forecasts {
				used = e.p.forecasting.Load()
			}
			require.Equal(t, int64(2), used, "the budget is used whole")
		})
	}
}

// TestForecastBudgetGivenBack: series that came while --forecast.max-series
// was full get a forecaster once series that stopped free it, as
// --detect.max-series's room goes to the series that were over it.
func TestForecastBudgetGivenBack(t *testing.T) {
	for _, tc := range []struct {
		name          string
		old, newcomer int
		budget        int
	}{
		{"one for one", 2, 2, 2},
		{"more newcomers than room", 2, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) { o.MaxSeries, o.ForecastMaxSeries = 100, tc.budget })
			mk := func(p string, n int) (ls []labels.Labels, vs []float64) {
				for i := range n {
					ls = append(ls, labels.FromStrings("__name__", "g", "pod", p+string(rune('a'+i))))
					vs = append(vs, 1)
				}
				return
			}
			old, ov := mk("old-", tc.old)
			nw, nv := mk("new-", tc.newcomer)
			e.push(t0.UnixMilli(), model.MetricTypeGauge, old, ov)
			e.sync()
			require.Equal(t, int64(tc.budget), e.p.forecasting.Load())
			e.push(t0.UnixMilli()+stepMs, model.MetricTypeGauge, nw, nv) // a deploy: new pods while the old still count
			e.sync()
			// The old pods leave; the sweep drops them after StaleAfter.
			later := t0.Add(2 * time.Hour)
			e.clock.set(later)
			e.push(later.UnixMilli(), model.MetricTypeGauge, nw, nv)
			e.sync()
			for range 2 {
				for _, w := range e.p.workers {
					w.sweep()
				}
			}
			e.push(later.UnixMilli()+stepMs, model.MetricTypeGauge, nw, nv)
			e.sync()
			require.Equal(t, int64(tc.newcomer), e.p.scored.Load())
			require.Equal(t, int64(min(tc.budget, tc.newcomer)), e.p.forecasting.Load(), "the freed forecaster budget is used")
		})
	}
}

func TestConfigSelection(t *testing.T) {
	cfg, err := config.Load([]byte("exclude: ['{job=\"noisy\"}']\n"))
	require.NoError(t, err)
	e := newEnv(t, "", cfg, nil)
	e.feed(labels.FromStrings("__name__", "x", "job", "noisy"), "", []float64{1, 2})
	e.feed(labels.FromStrings("__name__", "x", "job", "quiet"), "", []float64{1, 2})
	require.Equal(t, int64(1), e.p.scored.Load())

	// A reload that excludes the other job drops its series, at once, not
	// at the next sample or sweep of its worker.
	cfg2, err := config.Load([]byte("exclude: ['{job=\"quiet\"}']\n"))
	require.NoError(t, err)
	require.NoError(t, e.p.ApplyConfig(cfg2))
	require.Eventually(t, func() bool { return len(e.p.Anomalies(nil)) == 0 }, timeout, tick)
	e.push(t0.UnixMilli()+10*stepMs, "", []labels.Labels{labels.FromStrings("__name__", "x", "job", "noisy")}, []float64{3})
	e.sync()
	got := e.p.Anomalies(nil)
	require.Len(t, got, 1)
	require.Equal(t, "noisy", got[0].Labels["job"])
	// Its stored outputs went stale with it, as a removed recording
	// rule's do: PromQL, remote read and the upstream do not keep its last
	// score for the lookback.
	quiet := query(t, e.db, eq("__name__", FamilyScore), eq("job", "quiet"))
	require.Len(t, quiet, 1)
	for _, vs := range quiet {
		require.Len(t, vs, 3)
		require.True(t, value.IsStaleNaN(vs[2]), "the excluded series' score ends in a staleness marker")
	}
	for _, vs := range query(t, e.db, eq("__name__", FamilyScore), eq("job", "noisy")) {
		require.False(t, value.IsStaleNaN(vs[len(vs)-1]))
	}
}

// TestReloadBehindBacklogMarksAtSamples: a reload that deselects a series
// while omen works through a backlog (a Prometheus resending what it queued
// while omen was down: the clock hours ahead of the samples) marks its
// outputs stale just after its latest result, not at the clock. At the
// clock, the marker moved the head's maximum time there, and every later
// sample of the backlog was refused as out of bounds (a 400 the sender
// drops): measured with history written at 400x, each request after a
// reload lost all its samples.
func TestReloadBehindBacklogMarksAtSamples(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	noisy := labels.FromStrings("__name__", "x", "job", "noisy")
	quiet := labels.FromStrings("__name__", "x", "job", "quiet")
	e.feed(noisy, "", []float64{1, 2})
	e.feed(quiet, "", []float64{1, 2})
	latest := t0.UnixMilli() + stepMs
	e.clock.set(t0.Add(48 * time.Hour))

	cfg, err := config.Load([]byte("exclude: ['{job=\"quiet\"}']\n"))
	require.NoError(t, err)
	require.NoError(t, e.p.ApplyConfig(cfg))
	score := func() (int64, float64) {
		for _, s := range lastSample(t, e.db, eq("__name__", FamilyScore), eq("job", "quiet")) {
			return s.t, s.v
		}
		return 0, 0
	}
	require.Eventually(t, func() bool { _, v := score(); return value.IsStaleNaN(v) }, timeout, tick)
	markT, _ := score()
	require.Equal(t, latest+1, markT, "just after the latest result")
	require.Equal(t, latest+1, e.db.Head().MaxTime(), "the head stays at the backlog's samples")

	// The backlog goes on: its next sample is stored and scored.
	e.push(latest+stepMs, "", []labels.Labels{noisy}, []float64{3})
	e.sync()
	vs := query(t, e.db, eq("__name__", FamilyScore), eq("job", "noisy"))
	require.Len(t, vs, 1)
	for _, v := range vs {
		require.Len(t, v, 3)
	}
}

// TestReloadKeepsPublished: a reload whose options need new models (here
// other forecast horizons) keeps a series' published results and its
// incident until its next sample, instead of blanking /metrics and ending
// the incident's alert; at that sample the series starts again from its
// history, its incident goes on, and the forecasts of the horizon it no
// longer has are marked stale.
func TestReloadKeepsPublished(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "temperature")
	vs := seasonal(801, 3)
	vs[790] += 1000
	e.feed(ls, model.MetricTypeGauge, vs[:800])
	holdMs := e.p.opts.IncidentHold.Milliseconds()
	before := e.onlySeries().pub
	require.True(t, before.active(holdMs), "the spike opened an incident")

	cfg, err := config.Load([]byte("defaults: {forecast_horizons: [5m, 10m]}"))
	require.NoError(t, err)
	require.NoError(t, e.p.ApplyConfig(cfg))
	e.sync() // a worker applies the configuration before its next batch
	list := e.p.Anomalies(nil)
	require.Len(t, list, 1, "still listed after the reload")
	require.True(t, list[0].Active)
	var buf bytes.Buffer
	require.NoError(t, e.p.WriteOutputs(&buf))
	require.Contains(t, buf.String(), `anomaly_score{for="temperature",job="",instance=""}`)
	require.Contains(t, buf.String(), `omen_incident_peak_score{for="temperature",job="",instance=""}`)
	// The accuracy of the horizons no longer configured leaves /metrics.
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(e.p.AccuracyCollector()))
	n, err := testutil.GatherAndCount(reg, "omen_forecast_interval_coverage_ratio")
	require.NoError(t, err)
	require.Equal(t, 1, n, "5m only")
	require.Contains(t, e.p.acc().m, accKey{"temperature", "5m"})

	t800 := t0.UnixMilli() + 800*stepMs
	e.push(t800, model.MetricTypeGauge, []labels.Labels{ls}, vs[800:])
	e.sync()
	s := e.onlySeries()
	require.False(t, s.rebuild)
	require.Equal(t, []string{"5m", "10m"}, s.fc.hname, "new models")
	require.True(t, s.pub.active(holdMs))
	require.Equal(t, before.since, s.pub.since, "the same incident")
	require.Equal(t, before.peak, s.pub.peak)
	for _, h := range []string{"5m", "15m", "30m"} {
		got := query(t, e.db, eq("__name__", "forecast"), eq("horizon", h))
		require.Len(t, got, 1, h)
		for _, vs := range got {
			require.Equal(t, h != "5m", value.IsStaleNaN(vs[len(vs)-1]), "horizon %s", h)
		}
	}

	// The replay of the history above found the spike again. Where it does
	// not (new options that judge the history otherwise), the incident is
	// handed over as it was; one the successor has of its own is kept.
	w := e.p.workers[0]
	old := &series{pub: published{hasResult: true, incidentState: incidentState{since: 5, lastHot: 9, peak: 3}}}
	fresh := &series{}
	out := e.p.newOutputs(context.Background())
	w.carryOver(old, fresh, t800, &out)
	require.Equal(t, old.pub.incidentState, fresh.pub.incidentState)
	own := &series{pub: published{incidentState: incidentState{since: 7, lastHot: 7, peak: 2}}}
	w.carryOver(old, own, t800, &out)
	require.Equal(t, int64(7), own.pub.since)
	require.NoError(t, out.commit())

	// A successor still warming up has no band yet: the old band is marked
	// stale, just after its latest result when the successor's first
	// sample is older (one the TSDB's out-of-order window took).
	out = e.p.newOutputs(context.Background())
	w.carryOver(s, &series{}, s.pub.t-stepMs, &out)
	require.NoError(t, out.commit())
	for _, fam := range []string{FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper} {
		for _, vs := range query(t, e.db, eq("__name__", fam)) {
			require.Equal(t, fam != FamilyScore, value.IsStaleNaN(vs[len(vs)-1]), fam)
		}
	}
}

func TestStaleSeriesDropped(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.StaleAfter = time.Hour })
	e.feed(labels.FromStrings("__name__", "x"), "", []float64{1, 2, 3})
	require.Equal(t, int64(1), e.p.scored.Load())
	e.clock.set(t0.Add(2 * time.Hour))
	// Gone for StaleAfter on omen's clock and in its senders' time: the
	// latter once another series' samples have come 2 hours on (with
	// nothing arriving, nothing goes, see TestOmenClockStepsForward).
	e.push(t0.Add(2*time.Hour).UnixMilli(), model.MetricTypeGauge, []labels.Labels{labels.FromStrings("__name__", "y")}, []float64{1})
	e.sync()
	require.Equal(t, int64(2), e.p.scored.Load())
	for _, w := range e.p.workers {
		w.sweep()
	}
	require.Equal(t, int64(1), e.p.scored.Load())
	require.Len(t, e.p.Anomalies(nil), 1)
	require.Equal(t, "y", e.onlySeries().name)
}

func TestForecastSeries(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "temperature")
	e.feed(ls, model.MetricTypeGauge, seasonal(800, 3))
	for _, h := range []string{"5m", "15m", "30m"} {
		for _, fam := range []string{"forecast", "forecast_lower", "forecast_upper"} {
			got := query(t, e.db, eq("__name__", fam), eq("for", "temperature"), eq("horizon", h))
			require.Len(t, got, 1, "%s horizon %s", fam, h)
			for _, vs := range got {
				// The forecaster takes 30 s means (two 15 s samples: the
				// 30m horizon over 64 steps, rounded up to whole input
				// intervals) and is ready at its 192nd, the 384th sample;
				// from then on one forecast a minute, every 4th sample.
				require.InDelta(t, (800-384)/4, len(vs), 2, "%s horizon %s", fam, h)
				require.InDelta(t, 100, vs[len(vs)-1], 40)
			}
		}
	}
	for _, h := range []string{"5m", "15m", "30m"} {
		requireBandsOrdered(t, e.db, "forecast_lower", "forecast", "forecast_upper", eq("for", "temperature"), eq("horizon", h))
	}
	// Accuracy is measured once a forecast's target time has come (5m = 20
	// samples after it was made).
	fams, err := gather(e)
	require.NoError(t, err)
	require.Contains(t, fams, "omen_forecast_mase")
	require.Contains(t, fams, "omen_forecast_interval_coverage_ratio")
}

// requireBandsOrdered checks the band stored in the TSDB sample for sample
// (the capacity rules read forecast_upper from there): lower <= centre <=
// upper, and not collapsed onto the centre everywhere.
func requireBandsOrdered(t *testing.T, db storage.Queryable, lower, centre, upper string, ms ...*labels.Matcher) {
	t.Helper()
	get := func(name string) []float64 {
		got := query(t, db, append([]*labels.Matcher{eq("__name__", name)}, ms...)...)
		require.Len(t, got, 1, name)
		for _, vs := range got {
			return vs
		}
		return nil
	}
	lo, mid, hi := get(lower), get(centre), get(upper)
	require.Len(t, lo, len(mid))
	require.Len(t, hi, len(mid))
	wide := 0
	for i := range mid {
		require.LessOrEqual(t, lo[i], mid[i], "%s at %d", lower, i)
		require.LessOrEqual(t, mid[i], hi[i], "%s at %d", upper, i)
		if hi[i] > lo[i] {
			wide++
		}
	}
	require.Positive(t, wide)
}

func gather(e *env) (map[string]bool, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(e.p.Collector()); err != nil {
		return nil, err
	}
	mfs, err := reg.Gather()
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	return out, err
}

func TestSnapshotPath(t *testing.T) {
	// The TSDB dir holds the snapshot file next to its own.
	dir := t.TempDir()
	path := filepath.Join(dir, "omen", "models.snap")
	e := newEnv(t, filepath.Join(dir, "tsdb"), nil, func(o *Options) { o.SnapshotPath = path })
	e.feed(labels.FromStrings("__name__", "x"), "", []float64{1, 2, 3})
	e.stop()
	require.FileExists(t, path)
	require.Greater(t, testutil.ToFloat64(e.p.m.snapLast), 0.0)
}

// Waiting on conditions (never on the clock) in the tests.
const (
	timeout = 10 * time.Second
	tick    = 5 * time.Millisecond
)

func config0() *config.Config { return config.Default() }

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		mod     func(*Options)
		wantErr string
		check   func(*testing.T, Options)
	}{
		{"defaults", func(*Options) {}, "", func(t *testing.T, o Options) {
			require.Positive(t, o.Workers)
			require.Equal(t, AllFamilies, o.Families)
		}},
		{"snapshot dir", func(o *Options) { o.SnapshotPath = dir }, "", func(t *testing.T, o Options) {
			require.Equal(t, filepath.Join(dir, SnapshotFile), o.SnapshotPath)
		}},
		{"families from one flag value", func(o *Options) { o.Families = []string{"anomaly_score, yhat"} }, "", func(t *testing.T, o Options) {
			require.Equal(t, []string{"anomaly_score", "yhat"}, o.Families)
		}},
		{"unknown family", func(o *Options) { o.Families = []string{"score"} }, `output family "score"`, nil},
		{"negative budget", func(o *Options) { o.MaxSeries = -1 }, "max series -1", nil},
		{"short stale-after", func(o *Options) { o.StaleAfter = time.Second }, "stale-after 1s", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.mod(&o)
			err := o.validate()
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, o)
		})
	}
}

func TestOutOfOrderNotScored(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "x")
	e.feed(ls, "", []float64{1, 2, 3})
	// Appended to the TSDB directly with an older timestamp (as within an
	// out-of-order window) it would be scored out of time order.
	e.p.enqueue([]sample{{ref: refOf(e, ls), ls: ls, t: t0.UnixMilli(), v: 100}}, e.p.storeGen.Load())
	e.sync()
	got := e.p.Anomalies(nil)
	require.Equal(t, 3.0, float64(got[0].Value))
	require.Equal(t, 3.0, testutil.ToFloat64(e.p.m.scoredSamples), "the late sample is not scored")
	require.Len(t, query(t, e.db, eq("__name__", "anomaly_score"))[labels.FromStrings("__name__", "anomaly_score", "for", "x").String()], 3)
}

// refOf returns the series ref a worker scores ls under.
func refOf(e *env, ls labels.Labels) storage.SeriesRef {
	var ref storage.SeriesRef
	for _, w := range e.p.workers {
		w.view(func(s *series) {
			if labels.Equal(s.in, ls) {
				ref = s.ref
			}
		})
	}
	require.NotZero(e.t, ref)
	return ref
}

func TestStoreFamilies(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.StoreFamilies = []string{FamilyScore} })
	e.feed(labels.FromStrings("__name__", "x"), model.MetricTypeGauge, seasonal(100, 6))
	require.Len(t, query(t, e.db, eq("__name__", "anomaly_score")), 1)
	require.Empty(t, query(t, e.db, eq("__name__", "yhat")), "yhat not stored")
	fams, err := gather(e)
	require.NoError(t, err)
	require.True(t, fams["yhat"], "but still exposed on /metrics")
}

// TestRateStartTimestamp: a remote-write 2.0 start timestamp after the
// previous sample marks a counter reset that the values alone hide (the
// counter restarted and passed its old value between two samples).
func TestRateStartTimestamp(t *testing.T) {
	const step = 15_000 // ms between samples
	tests := []struct {
		name  string
		st    int64 // start timestamp of the third sample
		reset bool  // the third sample has no rate (see rate)
	}{
		{"none", 0, false},
		{"unchanged", 1, false},
		{"at the previous sample", 2 * step, false},
		{"after the previous sample: a reset", 2*step + 1, true},
		{"after the sample itself: ignored", 3*step + 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s series
			_, ok := s.rate(1, step, 100, 0)
			require.False(t, ok, "the first sample has no rate")
			r, ok := s.rate(1, 2*step, 250, 0)
			require.True(t, ok)
			require.InDelta(t, 10, r, 1e-12)
			r, ok = s.rate(tc.st, 3*step, 400, 0)
			require.Equal(t, !tc.reset, ok)
			if ok {
				require.InDelta(t, 10, r, 1e-12)
			}
			// The next sample's rise is from the third's value (its start
			// timestamp the counter's, or the third's).
			r, ok = s.rate(min(tc.st, 3*step), 4*step, 550, 0)
			require.True(t, ok)
			require.InDelta(t, 10, r, 1e-12)
		})
	}
}

// TestTapCarriesStartTimestamp: the start timestamp given to the tap's
// Append reaches the scorer's counter-to-rate conversion.
func TestTapCarriesStartTimestamp(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "restarts_total")
	base := t0.UnixMilli()
	for i, v := range []float64{100, 250, 400} {
		st := base // the counter's start, until it restarts before the last sample
		if i == 2 {
			st = base + stepMs + 1
		}
		a := e.app.AppenderV2(context.Background())
		_, err := a.Append(0, ls, st, base+int64(i)*stepMs, v, nil, nil, storage.AOptions{})
		require.NoError(t, err)
		require.NoError(t, a.Commit())
	}
	e.sync()
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "restarts_total")}})
	require.Len(t, got, 1)
	// A reset (see rate): the last sample has no rate, the latest scored
	// is the one before it.
	require.InDelta(t, 10, float64(got[0].Value), 1e-9)
	require.Equal(t, base+stepMs, got[0].Timestamp.UnixMilli(), "the start timestamp told no reset")
}

// TestReloadAppliesOptions: a reload's new options reach the series already
// scored: in place where the detector can take them, else the series starts
// again from its history in the TSDB at its next sample.
func TestReloadAppliesOptions(t *testing.T) {
	const n = 300
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	vs := seasonal(n+1, 4)
	for _, tc := range []struct {
		name       string
		cfg        string
		direction  detect.Direction
		restarted  bool // dropped and warmed again from history
		forecaster bool
	}{
		{"unchanged", "{}", detect.Both, false, true},
		{"direction", "defaults: {direction: up}", detect.Up, false, true},
		{"override for this series", "overrides: [{match: '{job=\"a\"}', direction: down}]", detect.Down, false, true},
		{"false-alarm rate", "defaults: {false_alarm_rate: 0.01}", detect.Both, true, true},
		{"other horizons", "defaults: {forecast_horizons: [10m]}", detect.Both, true, true},
		// The default horizons written in another order are the same
		// horizons: every forecaster and detector started again.
		{"the same horizons reordered", "defaults: {forecast_horizons: [30m, 5m, 15m]}", detect.Both, false, true},
		{"flatline on", "defaults: {flatline: true}", detect.Both, false, true},
		{"no forecasts", "defaults: {forecast_horizons: []}", detect.Both, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			e.feed(ls, model.MetricTypeGauge, vs[:n])
			require.Equal(t, 0.0, testutil.ToFloat64(e.p.m.warmed))
			cfg, err := config.Load([]byte(tc.cfg))
			require.NoError(t, err)
			require.NoError(t, e.p.ApplyConfig(cfg))
			e.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e.sync()
			s := e.onlySeries()
			require.NotNil(t, s)
			require.Equal(t, tc.direction, s.det.Options().Direction)
			if tc.restarted {
				require.Equal(t, float64(n), testutil.ToFloat64(e.p.m.warmed), "started again from its history")
			} else {
				require.Equal(t, 0.0, testutil.ToFloat64(e.p.m.warmed), "kept what it learnt")
			}
			require.True(t, s.det.Ready())
			require.Equal(t, tc.forecaster, s.fc != nil)
			require.Equal(t, int64(1), e.p.scored.Load())
		})
	}
}

// TestForecastLearnsNoGlitch: a sample the detector scores anomalous is
// learnt by the forecaster as the nearer end of the detector's band, so one
// glitch does not wreck the forecasts (a 1e5 sample on a series near 100
// gave forecasts of 50 000 and intervals of ±5 000 for hours after, and
// capacity alerts fired on them), while a lasting change is still followed.
func TestForecastLearnsNoGlitch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(vs []float64)
		near   float64 // where the last forecasts must be
	}{
		{"glitch", func(vs []float64) { vs[1000] = 1e5 }, 100},
		{"level shift", func(vs []float64) {
			for i := 1000; i < len(vs); i++ {
				vs[i] += 60
			}
		}, 160},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			ls := labels.FromStrings("__name__", "temperature")
			vs := seasonal(1400, 3)
			tc.change(vs)
			e.feed(ls, model.MetricTypeGauge, vs)
			after := t0.UnixMilli() + 1000*stepMs
			last := func(fam string) float64 {
				got := lastSample(t, e.db, eq("__name__", fam), eq("for", "temperature"), eq("horizon", "5m"))
				require.Len(t, got, 1)
				for _, s := range got {
					require.Greater(t, s.t, after)
					return s.v
				}
				return 0
			}
			fc, lo, hi := last("forecast"), last("forecast_lower"), last("forecast_upper")
			require.InDelta(t, tc.near, fc, 30)
			require.LessOrEqual(t, lo, fc)
			require.GreaterOrEqual(t, hi, fc)
			if tc.name == "glitch" {
				// Every forecast after the glitch stays near the series.
				qr, err := e.db.Querier(after, math.MaxInt64)
				require.NoError(t, err)
				defer qr.Close()
				ss := qr.Select(context.Background(), false, nil, eq("__name__", "forecast_upper"), eq("for", "temperature"))
				n := 0
				for ss.Next() {
					it := ss.At().Iterator(nil)
					for it.Next() == chunkenc.ValFloat {
						_, v := it.At()
						require.Less(t, v, 200.0)
						n++
					}
				}
				require.Positive(t, n)
			}
		})
	}
}

// TestCounterTimingJitter: a counter that rises by the same amount every
// scrape has a constant rate but for its timestamps' jitter. A scrape 3 ms
// late at 1 s scrapes (a rate 0.3% low) scored 18 and blew the band from
// ±3e-10 to ±370 for a hundred samples; its rate is taken over the scrape
// interval now. A real change of the rate is still anomalous. A scrape
// 39 ms late at 2 s (Debian's Prometheus 2.42 scraping node_exporter on a
// loaded 2-core host: 1 scrape in 150; up to 236 ms under more load) made
// node_exporter's promhttp_metric_handler_requests_total, +1 a scrape,
// score 20 and open an incident, as did every exporter's count of its own
// scrapes (see TestRateLateScrape for the interval a rate is taken over).
func TestCounterTimingJitter(t *testing.T) {
	const n, jitterAt = 400, 300
	for _, tc := range []struct {
		name        string
		typ         model.MetricType
		every, late int64   // the scrape interval and the late scrape's delay, ms
		step        float64 // the counter's rise from jitterAt+50 on, per scrape
		wantAbove   bool    // some score above 1 after the jitter
	}{
		{"jitter alone", model.MetricTypeCounter, 1000, 3, 10, false},
		{"jitter, then the rate doubles", model.MetricTypeCounter, 1000, 3, 20, true},
		{"39 ms late at 2 s", model.MetricTypeCounter, 2000, 39, 10, false},
		{"39 ms late at 2 s, then the rate doubles", model.MetricTypeCounter, 2000, 39, 20, true},
		{"236 ms late at 2 s", model.MetricTypeCounter, 2000, 236, 10, false},
		{"45 ms early at 1 s", model.MetricTypeCounter, 1000, -45, 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			ls := labels.FromStrings("__name__", "rev_requests_total")
			v := 0.0
			var maxAfter, halfAfter float64
			for i := range n {
				ts := t0.UnixMilli() + int64(i)*tc.every
				if i == jitterAt {
					ts += tc.late
				}
				if i > jitterAt+50 {
					v += tc.step
				} else {
					v += 10
				}
				e.push(ts, tc.typ, []labels.Labels{ls}, []float64{v})
				e.sync()
				if i < jitterAt {
					continue
				}
				pub := e.onlySeries().pub
				maxAfter = max(maxAfter, pub.score)
				if i > jitterAt && i <= jitterAt+50 {
					halfAfter = max(halfAfter, (pub.upper-pub.lower)/2)
				}
			}
			require.Equal(t, tc.wantAbove, maxAfter > 1, "highest score after the jitter: %g", maxAfter)
			require.Less(t, halfAfter, 1.0, "the band stays narrow after the jitter (rate 5 or 10/s)")
		})
	}
}

// TestRateLateScrape: a late scrape's rate is taken over the interval
// when the counter rose as at its sample before (a count of scrapes), and
// over the time that passed when it rose otherwise: an idle CPU's seconds,
// 50 ms late at 1 s, rose by the 1.04 s that passed, and over 1 s would
// read busier than the CPU is.
func TestRateLateScrape(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    []int64 // ms
		v    []float64
		want float64 // the last sample's rate
	}{
		{"+1 a scrape, 39 ms late at 2 s", []int64{0, 2000, 4000, 6039}, []float64{0, 1, 2, 3}, 0.5},
		{"+1 a scrape, 236 ms early at 2 s", []int64{0, 2000, 4000, 5764}, []float64{0, 1, 2, 3}, 0.5},
		{"+1 a scrape, 3 ms late at 1 s", []int64{0, 1000, 2000, 3003}, []float64{0, 1, 2, 3}, 1},
		{"seconds spent, 50 ms late at 1 s", []int64{0, 1000, 2000, 3050}, []float64{0, 0.99, 1.98, 3.02}, 1.04 / 1.05},
		{"seconds spent, 8 ms late at 1 s", []int64{0, 1000, 2000, 3008}, []float64{0, 0.99, 1.98, 2.98}, 1},
		{"requests, 39 ms late at 2 s", []int64{0, 2000, 4000, 6039}, []float64{0, 2000, 4010, 6050}, 2040 / 2.039},
		{"+1 a scrape, after a missed one", []int64{0, 1000, 2000, 4003}, []float64{0, 1, 2, 4}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs rateState
			var r float64
			for i := range tc.t {
				got, ok := rs.rate(0, tc.t[i], tc.v[i], 0)
				require.Equal(t, i > 0, ok)
				r = got
			}
			require.InDelta(t, tc.want, r, 1e-9)
		})
	}
}

func TestScrapeInterval(t *testing.T) {
	for _, tc := range []struct {
		dt   int64
		same bool // the counter rose by as much as at its sample before
		want int64
	}{
		// Within 1% of a whole number of seconds, whatever the rise.
		{1000, false, 1000}, {1003, false, 1000}, {997, false, 1000}, {1010, false, 1000}, {1011, false, 1011}, {990, false, 1000}, {989, false, 989},
		{2004, false, 2000}, // a missed scrape
		{15000, false, 15000}, {15040, false, 15000}, {14890, false, 15000}, {60300, false, 60000},
		{150, false, 150}, {500, false, 500}, {1337, false, 1337}, {2500, false, 2500}, {0, false, 0},
		{2039, false, 2039}, {15151, false, 15151},
		// Within 25% when it rose as before: a scrape late or early.
		{2039, true, 2000}, {1961, true, 2000}, {2236, true, 2000}, {1250, true, 1000}, {1251, true, 1251}, {750, true, 1000},
		{15400, true, 15000}, {14600, true, 15000}, {400, true, 400},
	} {
		require.Equal(t, tc.want, scrapeInterval(tc.dt, tc.same), "dt %d, same %v", tc.dt, tc.same)
	}
}

// hogForecaster returns a pipeline whose one forecaster a series "hog"
// took and has not sent to since two hours, the clock at then.
func hogForecaster(t *testing.T, workers int) (*env, time.Time) {
	e := newEnv(t, "", nil, func(o *Options) { o.MaxSeries, o.ForecastMaxSeries, o.Workers = 1000, 1, workers })
	hog := labels.FromStrings("__name__", "g", "pod", "hog")
	e.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{hog}, []float64{1})
	e.sync()
	later := t0.Add(2 * time.Hour)
	e.clock.set(later)
	return e, later
}

// TestSweepGivesForecasterInPlace: a forecaster freed is given to one
// series, reserved against the other workers' sweeps, and the series keeps
// its detector: rebuilt from history, as a reload does, the series of every
// worker were rebuilt for the same room (3 of 4 to no forecaster).
func TestSweepGivesForecasterInPlace(t *testing.T) {
	e, later := hogForecaster(t, 4)
	var nw []labels.Labels
	var nv []float64
	for i := range 40 {
		nw = append(nw, labels.FromStrings("__name__", "g", "pod", fmt.Sprintf("n%02d", i)))
		nv = append(nv, 1)
	}
	for i := range 50 {
		e.push(later.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, nw, nv)
	}
	e.sync()
	models := func() map[string]*series {
		m := map[string]*series{}
		for _, w := range e.p.workers {
			w.view(func(s *series) { m[s.in.Get("pod")] = s })
		}
		return m
	}
	before := models()
	for _, w := range e.p.workers {
		w.sweep() // the hog goes, its forecaster with it
	}
	e.push(later.UnixMilli()+50*stepMs, model.MetricTypeGauge, nw, nv)
	e.sync()
	require.Equal(t, int64(1), e.p.forecasting.Load())
	after := models()
	withFc := 0
	for pod, s := range after {
		require.Same(t, before[pod], s, "%s: its models kept", pod)
		if s.fc != nil {
			withFc++
		}
	}
	require.Equal(t, 1, withFc)
}

// TestSweepForecasterWarmsFromHistory: a forecaster the sweep gives a
// series learns the series' history in the TSDB at its next sample, so it
// forecasts at once; it learnt from live samples only, and forecast 192
// steps (1.6 hours at 15 s) later. A counter's history is learnt as rates.
func TestSweepForecasterWarmsFromHistory(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  model.MetricType
		val  func(i int) float64
	}{
		{"gauge", model.MetricTypeGauge, func(i int) float64 { return 100 + 20*sinPeriod(i, 40) }},
		{"counter", model.MetricTypeCounter, func(i int) float64 { return float64(i * (i%7 + 3)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, later := hogForecaster(t, 1)
			ls := labels.FromStrings("__name__", "x_total", "pod", "b")
			const n = 500 // 250 steps of 30 s
			for i := range n {
				e.push(later.UnixMilli()+int64(i)*stepMs, tc.typ, []labels.Labels{ls}, []float64{tc.val(i)})
			}
			e.sync()
			b := podSeries(e, "b")
			require.NotNil(t, b)
			require.Nil(t, b.fc, "the hog holds the one forecaster")
			e.p.workers[0].sweep() // the hog goes, its forecaster to b
			e.push(later.UnixMilli()+n*stepMs, tc.typ, []labels.Labels{ls}, []float64{tc.val(n)})
			e.sync()
			e.p.workers[0].view(func(s *series) {
				if s != b {
					return
				}
				require.NotNil(t, s.fc)
				require.True(t, s.fc.m.Ready(), "warmed from its history")
				for h := range s.fc.horizons {
					require.True(t, s.fc.ok[h], "horizon %s forecast at once", s.fc.hname[h])
					require.True(t, isFinite(s.fc.pts[h].Yhat))
				}
				if tc.typ == model.MetricTypeCounter {
					require.Less(t, s.fc.pts[0].Yhat, 100.0, "a rate, not the running total")
				}
			})
		})
	}
}

// TestSweepForecasterWarmScrapedMeanwhile: a scrape of /metrics while the
// worker warms the forecaster the sweep gave a series reads the forecaster
// it copied the forecasts of: it read the series' forecaster again after
// its read lock, a data race with warmForecaster putting the warmed one in
// its place (go test -race failed).
func TestSweepForecasterWarmScrapedMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scrape func(e *env) error
	}{
		{"text exposition", func(e *env) error { return e.p.WriteOutputs(io.Discard) }},
		{"collector", func(e *env) error { _, err := gather(e); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, later := hogForecaster(t, 1)
			ls := labels.FromStrings("__name__", "x", "pod", "b")
			const n = 300
			val := func(i int) float64 { return 100 + 20*sinPeriod(i, 40) }
			for i := range n {
				e.push(later.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{val(i)})
			}
			e.sync()
			e.p.workers[0].sweep() // the hog goes, its forecaster to b
			stop, done := make(chan struct{}), make(chan error, 1)
			go func() {
				for {
					if err := tc.scrape(e); err != nil {
						done <- err
						return
					}
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
				}
			}()
			for i := n; i < n+3; i++ {
				e.push(later.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{val(i)})
				e.sync()
			}
			close(stop)
			require.NoError(t, <-done)
		})
	}
}

// TestScoringLagFollowsTheBacklog: omen_scoring_lag_seconds is how far
// scoring is behind now. It was set at the end of each batch: a worker
// held up on a batch showed the lag before it, and once ingestion stopped
// the last value stayed for good, so an OmenScoringLagging that fired went
// on firing on an idle omen. A worker is held up here by holding its lock,
// which scoring a known series takes.
func TestScoringLagFollowsTheBacklog(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "load")
	e.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{ls}, []float64{1})
	e.sync()
	require.Zero(t, testutil.ToFloat64(e.p.m.lag), "idle")

	// The batch is committed at t0 and taken by its worker, which waits
	// for the lock while the clock moves 90 s on.
	for _, w := range e.p.workers {
		w.mu.Lock()
	}
	// Before the env's cleanup, which waits for the workers, if a
	// requirement below fails.
	unlock := sync.OnceFunc(func() {
		for _, w := range e.p.workers {
			w.mu.Unlock()
		}
	})
	t.Cleanup(unlock)
	e.push(t0.UnixMilli()+stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{2})
	e.clock.set(t0.Add(90 * time.Second))
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.p.m.lag) == 90 }, timeout, tick,
		"a batch held up counts as it waits")
	unlock()
	e.sync()
	// Scored, and nothing else comes: no lag, however late the last was.
	require.Zero(t, testutil.ToFloat64(e.p.m.lag), "no batch left behind")

	// A worker on another task (here the head's deletions, which wait for
	// the lock) with a batch queued behind it: the batch waits as long as
	// the task, though no worker has taken it.
	for _, w := range e.p.workers {
		w.mu.Lock()
	}
	unlock = sync.OnceFunc(func() {
		for _, w := range e.p.workers {
			w.mu.Unlock()
		}
	})
	t.Cleanup(unlock)
	refs := make([]storage.SeriesRef, 0, len(e.p.workers))
	for r := storage.SeriesRef(1); len(refs) < len(e.p.workers); r++ {
		if shardOf(r, len(e.p.workers)) == len(refs) {
			refs = append(refs, r)
		}
	}
	e.p.SeriesDeleted(refs)
	require.Eventually(t, func() bool {
		for _, w := range e.p.workers {
			if w.busy.Load() == 0 {
				return false
			}
		}
		return true
	}, timeout, tick, "the workers on the deletions")
	e.push(t0.UnixMilli()+2*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{3})
	e.clock.set(t0.Add(180 * time.Second))
	require.Equal(t, 90.0, testutil.ToFloat64(e.p.m.lag), "a batch queued behind a task counts from the task's start")
	unlock()
	e.sync()
	require.Zero(t, testutil.ToFloat64(e.p.m.lag), "no batch left behind")
}
