// Package pipeline joins ingest to scoring: a tap on the remote-write
// appender hands every committed float sample to scorer workers, which keep
// one detect.Detector and one forecast.Model per series and write the
// results (anomaly_score, yhat, yhat_lower, yhat_upper, forecast,
// forecast_lower, forecast_upper) back into the TSDB and onto /metrics.
//
// Data flow:
//
//	write handler → Tap → TSDB            (synchronous, untouched)
//	                 └─ on Commit → shard queue (bounded, drops counted)
//	                                  → worker: rate, warm start, score,
//	                                    forecast → Storage (untapped)
//
// Model state is snapshotted to one file periodically and at shutdown and
// restored on start; series without a snapshot warm from TSDB history.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/internal/spaced"
)

// SnapshotFile is the snapshot's name when Options.SnapshotPath is a
// directory.
const SnapshotFile = "omen-models.snap"

// Storage is what the pipeline needs of the embedded TSDB: appending the
// outputs (not through the tap, so they are never scored themselves) and
// reading history for warm starts and derived inputs.
type Storage interface {
	storage.AppendableV2
	storage.Queryable
}

// Forward takes the outputs to remote-write upstream.
type Forward interface {
	// AppenderV2 returns nil while nothing is configured to receive them.
	AppenderV2(ctx context.Context) storage.AppenderV2
}

// Output family names. The rules, dashboards and UI rely on them.
const (
	FamilyScore         = "anomaly_score"
	FamilyYhat          = "yhat"
	FamilyYhatLower     = "yhat_lower"
	FamilyYhatUpper     = "yhat_upper"
	FamilyForecast      = "forecast"
	FamilyForecastLower = "forecast_lower"
	FamilyForecastUpper = "forecast_upper"
)

// AllFamilies lists every output family, the default of Options.Families.
var AllFamilies = []string{FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper, FamilyForecast, FamilyForecastLower, FamilyForecastUpper}

// BuildInfo is reported by /api/v1/status/omen.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"goVersion"`
}

// Options configure a Pipeline. Start from DefaultOptions.
type Options struct {
	// MaxSeries is the budget of scored series; new series beyond it are
	// counted in omen_series_over_budget_total and not scored.
	MaxSeries int
	// ForecastMaxSeries bounds the series that also get a forecast model.
	// A forecaster holds ~10 KiB and refits periodically, against ~4 KiB
	// for a detector, so it has a budget of its own.
	ForecastMaxSeries int
	// ForecastEvery is the sample time between forecasts of a series; the
	// forecast series are appended at those samples only.
	ForecastEvery time.Duration
	// Workers is the number of scorer goroutines (series are sharded by
	// reference). 0: GOMAXPROCS.
	Workers int
	// QueueSize is the number of committed batches each worker's queue
	// holds; a batch arriving at a full queue is dropped and counted.
	QueueSize int
	// SnapshotPath is the model state file, or a directory to hold it as
	// SnapshotFile; "" disables snapshots.
	SnapshotPath string
	// SnapshotRoom, if set, says whether the snapshot's file system can
	// take need more bytes and keep the storage's free-space reserve: the
	// new snapshot is written beside the old one, and a disk it filled
	// made the TSDB's commits fail meanwhile.
	SnapshotRoom func(need int64) error
	// SnapshotInterval is the time between periodic snapshots.
	SnapshotInterval time.Duration
	// Families are the output families exposed on /metrics.
	Families []string
	// StoreFamilies are the output families appended to the TSDB (and
	// remote-written). Each is one TSDB append per input sample, as costly
	// as the input's own, so storing fewer is the main lever on CPU.
	StoreFamilies []string
	// OutputInterval is the sample time between the results of a series
	// stored in the TSDB (and remote-written) while its score stays at most
	// 1; every result above 1 and the one after are stored as well (see
	// series.storeDue). 0 stores every sample's.
	OutputInterval time.Duration
	// IncidentHold: a series stays in an incident (listed as active, with
	// its start as since, by /api/v1/anomalies) until no score above 1 came
	// for this long of sample time.
	IncidentHold time.Duration
	// ScoreFloor: only series whose last score is >= ScoreFloor (or that
	// are in an incident) have their score and band exposed on /metrics
	// (0: all); forecasts are exposed whatever the score (see aboveFloor).
	ScoreFloor float64
	// Forward, if set, receives every output stored in the TSDB, to be
	// remote-written upstream (see package forward).
	Forward Forward
	// BackfillRemoteReadURL, if set, is remote-read for the older history
	// of a new series when the TSDB holds fewer than BackfillMaxPoints;
	// the configuration's remote_read entry, if any, is used instead (it
	// must name the same URL, see Options.remoteRead).
	BackfillRemoteReadURL string
	// BackfillExternalLabels, if set, names the labels the upstream adds
	// to every series (its external labels): an upstream series with
	// labels beyond a new series' is its history only if they are all
	// among these. Unset, they are learnt from the upstream's answers.
	BackfillExternalLabels []string
	// BackfillMaxPoints bounds the samples a warm start replays.
	BackfillMaxPoints int
	// BackfillMaxAge bounds how far back a warm start reads.
	BackfillMaxAge time.Duration
	// StaleAfter: a series without a sample for this long is dropped with
	// its state.
	StaleAfter time.Duration
	// ShutdownDrain bounds how long Run, once its context is done, lets the
	// workers score the batches still queued before the final snapshot.
	// What is left then is not lost: the samples are in the TSDB, and each
	// restored series replays those after its saved state at its next
	// sample (catchUp; its outputs for them are not stored). A full queue
	// holds QueueSize batches a worker, tens of seconds of scoring on a
	// busy node: unbounded, the final snapshot could come after
	// Kubernetes' SIGKILL.
	ShutdownDrain time.Duration
	// ShutdownSnapshot bounds the final snapshot, after the drain: one not
	// written by then is abandoned, and the last one written stays, as a
	// SIGKILL during it would leave it; the restart replays the samples
	// since from the TSDB into its models (catchUp). Unbounded, a snapshot
	// of 100 000 series on a loaded node (30 s at a load of 39) took the
	// time left to the forwarding's flush and the TSDB's close, and
	// Kubernetes' SIGKILL came in the middle of them.
	ShutdownSnapshot time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Stats, if set, reports the series stored in the TSDB and the samples
	// rejected by reason, for /api/v1/status/omen.
	Stats func() (seriesStored int, rejected map[string]float64)
	// Ready, if set, is called once the snapshot is restored, as /-/ready
	// starts to answer 200: the start's burst of allocation (every series
	// claiming its restored state at its first sample) follows.
	Ready func()
	// Build is reported by /api/v1/status/omen.
	Build BuildInfo
	// QueryGate, if set, bounds the /api/v1/anomalies requests served at
	// once: `omen serve` passes NewGate(AnomalyConcurrency), slots of
	// their own, not the PromQL API's. nil: no bound.
	QueryGate QueryGate
	// QueryTimeout, if more than 0, bounds an /api/v1/anomalies request's
	// wait for a slot and its work (--query.timeout).
	QueryTimeout time.Duration

	// rebuildBudget is the time a worker spends rebuilding series within
	// one batch (see rebuild.go): 0 is rebuildBatchBudget, below 0 none
	// (tests). idleRebuildOff leaves the rebuilds to the series' samples
	// (tests).
	rebuildBudget  time.Duration
	idleRebuildOff bool
	// rebuildSwap, if set, is called by a hand-over (a rebuild, while
	// idle or at a sample, or a retyped input's new start) between its
	// predecessor's release and its successor's creation, the places the
	// predecessor held in the budgets kept for the successor (tests).
	rebuildSwap func()
}

// DefaultOptions returns the defaults of `omen serve`.
func DefaultOptions() Options {
	return Options{
		MaxSeries:         100000,
		ForecastMaxSeries: 10000,
		ForecastEvery:     time.Minute,
		QueueSize:         1024,
		SnapshotInterval:  5 * time.Minute,
		Families:          AllFamilies,
		OutputInterval:    time.Minute,
		IncidentHold:      5 * time.Minute,
		BackfillMaxPoints: 2048,
		BackfillMaxAge:    24 * time.Hour,
		StaleAfter:        time.Hour,
		ShutdownDrain:     10 * time.Second,
		ShutdownSnapshot:  15 * time.Second,
		Build:             BuildInfo{GoVersion: runtime.Version()},
	}
}

func (o *Options) validate() error {
	d := DefaultOptions()
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.QueueSize == 0 {
		o.QueueSize = d.QueueSize
	}
	if o.rebuildBudget == 0 {
		o.rebuildBudget = rebuildBatchBudget
	}
	if o.ForecastEvery == 0 {
		o.ForecastEvery = d.ForecastEvery
	}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = d.SnapshotInterval
	}
	if fi, err := os.Stat(o.SnapshotPath); o.SnapshotPath != "" && err == nil && fi.IsDir() {
		o.SnapshotPath = filepath.Join(o.SnapshotPath, SnapshotFile)
	}
	if o.Families == nil {
		o.Families = d.Families
	}
	if o.StoreFamilies == nil {
		o.StoreFamilies = d.Families
	}
	o.Families, o.StoreFamilies = splitCommas(o.Families), splitCommas(o.StoreFamilies)
	if o.BackfillMaxPoints == 0 {
		o.BackfillMaxPoints = d.BackfillMaxPoints
	}
	if o.BackfillMaxAge == 0 {
		o.BackfillMaxAge = d.BackfillMaxAge
	}
	if o.StaleAfter == 0 {
		o.StaleAfter = d.StaleAfter
	}
	if o.ShutdownDrain == 0 {
		o.ShutdownDrain = d.ShutdownDrain
	}
	if o.ShutdownSnapshot == 0 {
		o.ShutdownSnapshot = d.ShutdownSnapshot
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Build.GoVersion == "" {
		o.Build.GoVersion = runtime.Version()
	}
	switch {
	case o.MaxSeries < 0:
		return fmt.Errorf("max series %d: want >= 0", o.MaxSeries)
	case o.ForecastMaxSeries < 0:
		return fmt.Errorf("forecast max series %d: want >= 0", o.ForecastMaxSeries)
	case o.Workers < 0 || o.Workers > 1024:
		return fmt.Errorf("workers %d: want 0 (one per CPU) to 1024", o.Workers)
	case o.QueueSize < 1:
		return fmt.Errorf("queue size %d: want >= 1", o.QueueSize)
	case o.ForecastEvery < 0:
		return fmt.Errorf("forecast interval %s: want > 0", o.ForecastEvery)
	case o.SnapshotInterval < time.Second:
		return fmt.Errorf("snapshot interval %s: want at least 1s", o.SnapshotInterval)
	case o.StaleAfter < time.Minute:
		return fmt.Errorf("stale-after %s: want at least 1m", o.StaleAfter)
	case o.ShutdownDrain < 0:
		return fmt.Errorf("shutdown drain %s: want >= 0", o.ShutdownDrain)
	case o.ShutdownSnapshot < 0:
		return fmt.Errorf("shutdown snapshot %s: want >= 0", o.ShutdownSnapshot)
	case o.OutputInterval < 0:
		return fmt.Errorf("output interval %s: want >= 0", o.OutputInterval)
	case o.IncidentHold < 0:
		return fmt.Errorf("incident hold %s: want >= 0", o.IncidentHold)
	case o.BackfillMaxPoints < 0:
		return fmt.Errorf("backfill max points %d: want >= 0", o.BackfillMaxPoints)
	case o.BackfillMaxAge < 0:
		return fmt.Errorf("backfill max age %s: want >= 0", o.BackfillMaxAge)
	case !(o.ScoreFloor >= 0) || math.IsInf(o.ScoreFloor, 1):
		return fmt.Errorf("score floor %v: want a number >= 0", o.ScoreFloor)
	}
	for _, f := range append(o.Families[:len(o.Families):len(o.Families)], o.StoreFamilies...) {
		if !isOutputName(f) {
			return fmt.Errorf("output family %q: want one of %v", f, AllFamilies)
		}
	}
	return nil
}

// splitCommas splits "a,b" values (as flags may give them) into a list.
func splitCommas(in []string) []string {
	out := []string{}
	for _, f := range in {
		for _, x := range strings.Split(f, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

// Pipeline scores and forecasts the series that pass through its Tap.
type Pipeline struct {
	logger *slog.Logger
	st     Storage
	engine promql.QueryEngine
	// derivedLast: the series each derived input gave at its last
	// evaluation, to mark those that leave its result stale.
	derivedMu   sync.Mutex
	derivedLast map[string]map[storage.SeriesRef]labels.Labels
	derivedSig  map[string]string // each input's Signature at its last evaluation
	// derivedRewarm: inputs whose next evaluation is to read their
	// history again (see historyWanted).
	derivedRewarm map[string]bool
	groupScored   map[storage.SeriesRef]int64 // each group's last scored evaluation, ms
	hist          derivedHistories            // first evaluations' histories, for warm starts
	histTimeout   time.Duration               // of a history's queries, at least (historyTimeout)
	opts          Options
	m             *metrics
	workers       []*worker
	matches       matchCache      // /api/v1/anomalies' selectors
	family        map[string]bool // exposed on /metrics
	store         map[string]bool // appended to the TSDB

	// derivedWarned: when each derived input's failure was last logged as
	// a warning, and its failures since (see warnDue); derivedCounted: the
	// inputs with counters (see countDerived). Under derivedMu.
	derivedWarned  map[string]*warnState
	derivedCounted map[string]bool

	cfg     atomic.Pointer[config.Config]
	cfgGen  atomic.Uint64
	cfgYAML atomic.Pointer[string]

	// declared: the families whose metadata types them against their
	// names (NoteType); copied on write, read per sample.
	declaredMu  sync.Mutex
	declared    atomic.Pointer[map[string]model.MetricType]
	declaredAll map[string]model.MetricType // every family's latest declaration, under declaredMu
	// created holds <family>_created for the families declared counters,
	// histograms or summaries: OpenMetrics' creation timestamps of their
	// series, which are not scored (see tapAppender.Append).
	created atomic.Pointer[map[string]struct{}]

	scored, forecasting atomic.Int64 // series with a detector / a forecaster
	// warming counts the scored series whose detector is still warming
	// up (omen_models_warming): the status API reads it rather than walk
	// every series under the scorers' locks.
	warming atomic.Int64
	// scoredHeld and fcHeld are how much of --detect.max-series and
	// --forecast.max-series is held for the restored series that have
	// not come back yet (see reserve).
	scoredHeld, fcHeld atomic.Int64
	// outRefusedLog spaces the warnings about output samples the TSDB
	// refused.
	outRefusedLog spaced.Log
	// droppedLog spaces the warnings about batches the scorers' full
	// queues drop (see worker.offer).
	droppedLog spaced.Log
	// bfRefusedLog spaces the warnings about series the backfill
	// upstream refuses alone (see logRefusedSeries).
	bfRefusedLog  spaced.Log
	overBudgetNow atomic.Int64 // series the workers ignore for the budget alone
	tapped        atomic.Uint64
	ready         atomic.Bool

	restoreMu sync.Mutex
	// snapSem lets one snapshot be written at a time (capacity 1): a
	// channel, not a mutex, so that a snapshot's context bounds its wait
	// for another (see snapshot).
	snapSem  chan struct{}
	restored map[uint64][]*savedSeries
	// restoredLatest is the latest sample time the TSDB held when the
	// states in restored were loaded (math.MinInt64 if unknown): no state
	// was saved of a sample after it (see expireRestored); under
	// restoreMu.
	restoredLatest int64
	// restoredIngested is restoredLatest for the ingested inputs' states:
	// the latest ingested sample time the run that wrote the snapshot had
	// taken (see savedSeries.ingested), when its mark says the TSDB took
	// none after; else restoredLatest. A derived input's samples, on
	// omen's clock, put the head's latest ahead of the senders' when
	// their clocks are behind omen's (or their samples late), and the
	// ingested states not back were held that much past StaleAfter
	// (TestRestoredAgedFromTheSendersLatest). Under restoreMu.
	restoredIngested int64
	// mark is the current mark found beside the snapshot when New ran,
	// for the first restore; final is set before the final snapshot when
	// the drain left nothing queued (see snapCursor.current).
	mark []byte
	// took is set by the tap's first commit of samples to score (see
	// tapAppender.Commit), once it removed the mark, before the TSDB
	// stores them, and never cleared: the snapshot is no longer as
	// current as its mark said. markMu orders the commits that find it
	// unset (see tookSamples); markLog spaces the errors of a mark that
	// cannot be removed.
	took    atomic.Bool
	markMu  sync.Mutex
	markLog spaced.Log
	final   atomic.Bool
	// committing counts the tap's commits of samples to score under way,
	// from before each reads final: once final is set, the tap refuses
	// them (see tapAppender.Commit), and the final snapshot is marked
	// current only if none was under way after it (see writeSnapshot).
	committing atomic.Int64
	// droppedMaxT is the latest timestamp of a sample a full queue
	// dropped unscored (math.MinInt64: none): the TSDB holds it, and a
	// series whose models learnt up to before it may hold it (see
	// series.current).
	droppedMaxT atomic.Int64
	// storeGen numbers the TSDB's numberings of series: a reopen (see
	// StorageReopened) begins the next. The tap's batches carry the one
	// their references are of, and a worker drops those of a numbering
	// before the one it reset to (see worker.renumbered).
	storeGen atomic.Uint32

	bf *backfill // remote-read source of warm starts; nil if not configured
	// fresh spares a new series' warm start its TSDB reads when the TSDB
	// holds nothing of it (see freshness).
	fresh freshness

	accOnce  sync.Once
	accuracy *accuracy

	rateMu       sync.Mutex
	rateMarks    [rateWindow]rateMark // ring of the latest readings, oldest at rateNext once full
	rateNext     int
	rateLen      int
	ingestPerSec float64
}

// rateWindow is how many readings of the tapped-sample count, one per 10 s
// tick, the status API's ingest rate reaches back over: a minute, as a
// rate(...[1m]) would. Over one tick alone, a Prometheus that sends a batch
// per 15 s scrape read 0 at one tick in three (omen's status and web UI
// said "ingest 0/s" for a Prometheus sending 7 samples every 15 s).
const rateWindow = 6

// rateMark is one reading of the tapped-sample count.
type rateMark struct {
	at time.Time
	n  uint64
}

// New returns a Pipeline. A nil logger discards, a nil registerer registers
// nowhere; cfg nil means config.Default().
func New(logger *slog.Logger, reg prometheus.Registerer, st Storage, engine promql.QueryEngine, cfg *config.Config, opts Options) (*Pipeline, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if st == nil {
		return nil, errors.New("pipeline: nil storage")
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("pipeline options: %w", err)
	}
	p := &Pipeline{
		logger: logger, st: st, engine: engine, opts: opts, family: map[string]bool{}, store: map[string]bool{},
		derivedLast: map[string]map[storage.SeriesRef]labels.Labels{}, derivedSig: map[string]string{}, derivedRewarm: map[string]bool{}, derivedWarned: map[string]*warnState{}, derivedCounted: map[string]bool{},
		groupScored: map[storage.SeriesRef]int64{}, histTimeout: historyTimeout, snapSem: make(chan struct{}, 1),
	}
	for _, f := range opts.Families {
		p.family[f] = true
	}
	for _, f := range opts.StoreFamilies {
		p.store[f] = true
	}
	p.m = newMetrics(reg, p)
	if err := adoptReadClientMetrics(reg); err != nil {
		logger.Warn("Remote read client metrics the module keeps on its default registry are not on /metrics", "err", err)
	}
	p.droppedMaxT.Store(math.MinInt64)
	p.restoredLatest, p.restoredIngested = math.MinInt64, math.MinInt64
	p.mark = readMark(opts.SnapshotPath)
	for i := range opts.Workers {
		p.workers = append(p.workers, newWorker(p, i))
	}
	rr, err := opts.remoteRead(cfg)
	if err != nil {
		return nil, err
	}
	if rr != nil {
		bf, err := newBackfillFrom(rr, opts.MaxSeries)
		if err != nil {
			return nil, err
		}
		if bf.extNames, err = externalNames(opts.BackfillExternalLabels); err != nil {
			return nil, err
		}
		bf.maxAge, bf.now = opts.BackfillMaxAge, opts.Now
		bf.pending = p.m.backfillPending
		p.bf = bf
	}
	if err := p.ApplyConfig(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// ApplyConfig replaces the configuration. Each worker applies it before
// its next batch (see worker.reconfigure): series the new selectors
// exclude are dropped and their stored outputs marked stale; the others
// take the new scoring options, in place or, where their models cannot,
// by starting again from their history at their next sample.
func (p *Pipeline) ApplyConfig(cfg *config.Config) error {
	commit, err := p.PrepareConfig(cfg)
	if err != nil {
		return err
	}
	commit()
	return nil
}

// PrepareConfig does all of ApplyConfig that can fail (the warm start's
// upstream client, built once from cfg's remote_read and its TLS files;
// the configuration's encoding for the status API), changing nothing, and
// returns what applies cfg, which cannot fail. A reload prepares the
// pipeline before it changes the remote writes and commits after: a
// remote_read refused then (or a TLS file gone between a check and a
// second read of it) changed the remote writes of a reload reported
// failed. A commit not called leaves the pipeline as it was.
func (p *Pipeline) PrepareConfig(cfg *config.Config) (commit func(), err error) {
	if cfg == nil {
		cfg = config.Default()
	}
	up, err := p.nextUpstream(cfg)
	if err != nil {
		return nil, err
	}
	b, err := cfg.YAML()
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	s := string(b)
	return func() {
		if up != nil {
			p.bf.rr.cur.Store(up)
		}
		p.cfgYAML.Store(&s)
		p.cfg.Store(cfg)
		p.cfgGen.Add(1)
		// Workers apply it at their next batch; an idle one is woken, so
		// that the API and /metrics drop deselected series now, not at
		// its next sweep (up to StaleAfter/8 later).
		for _, w := range p.workers {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}, nil
}

// derivedIntervals are the evaluation intervals of the derived inputs in
// force, by name.
type derivedIntervals []config.Derived

// intervals returns the derived inputs' intervals in force.
func (p *Pipeline) intervals() derivedIntervals {
	if c := p.cfg.Load(); c != nil {
		return c.Derived
	}
	return nil
}

// everyMs returns how often s's input is evaluated by omen, in ms: its
// derived input's interval, 0 for an ingested input (or a derived one no
// longer configured).
func (ds derivedIntervals) everyMs(s *series) int64 {
	return ds.everyMsOf(s.name, isDerived(s))
}

// everyMsOf is everyMs of a series of name, a derived input's if derived.
func (ds derivedIntervals) everyMsOf(name string, derived bool) int64 {
	if !derived {
		return 0
	}
	for i := range ds {
		if ds[i].Name == name {
			return time.Duration(ds[i].Interval).Milliseconds()
		}
	}
	return 0
}

// SeriesDeleted drops the models of the series the TSDB's head deleted
// (tsdb.Storage.OnSeriesDeleted): a series that comes back after the head
// dropped it gets a new reference, and keyed by the old one its models
// would be listed and exposed twice until the stale sweep. It does not
// wait for the workers: the head calls it once per stripe of its series
// map, thousands of times in one collection, so each worker keeps a list
// of its deleted references and takes all of them when it next runs.
func (p *Pipeline) SeriesDeleted(refs []storage.SeriesRef) {
	n := len(p.workers)
	if n == 0 {
		return
	}
	for _, r := range refs {
		w := p.workers[shardOf(r, n)]
		w.goneMu.Lock()
		w.goneRefs = append(w.goneRefs, r)
		w.goneMu.Unlock()
		select {
		case w.gone <- struct{}{}:
		default: // already woken; it takes the whole list
		}
	}
}

// StorageReopened starts the scorers' series again as after a restart (see
// tsdb.Storage.OnReopen): their models, and the references their outputs
// are stored under, are keyed by references that the reopened TSDB may
// have given to other series (a series' samples scored by another's
// models, its outputs appended to another series). Their state is written
// to the snapshot and restored by labels at each series' next sample,
// caught up from the TSDB; without a snapshot file they warm from its
// history. It runs before the reopened TSDB takes writes: the batches
// queued are all of the old references, and are scored first (one scored
// between the restore and the reset took its series' restored state, which
// the reset then dropped). A batch of the old references queued after the
// reset (a commit onto the TSDB before its close whose goroutine queued it
// only after the reopen) is not scored (see worker.renumbered).
func (p *Pipeline) StorageReopened() {
	// Before the reopened TSDB takes writes: a tap appender that reads
	// the new numbering opens onto it (or onto none, refused).
	gen := p.storeGen.Add(1)
	if !p.ready.Load() {
		return // not running yet: Run restores the snapshot, the workers start at gen
	}
	p.logger.Warn("TSDB reopened: the scorers' series start again from the snapshot, as after a restart")
	for _, w := range p.workers {
		w.sync()
	}
	p.snapshot(context.Background())
	p.restore()
	for _, w := range p.workers {
		w.reset(gen)
	}
}

// RestoresPending returns how many restored states still hold room for
// their series, not come back since the restore.
func (p *Pipeline) RestoresPending() int64 { return p.scoredHeld.Load() }

// Ready reports whether the model state has been restored (or found
// missing) and the scorers run.
func (p *Pipeline) Ready() bool { return p.ready.Load() }

// Run restores the snapshot (marking stale the stored outputs of its series
// the configuration no longer selects), then runs the scorer workers,
// derived inputs, and periodic snapshots until ctx is done; then it takes
// a final snapshot and returns nil.
func (p *Pipeline) Run(ctx context.Context) error {
	// A shutdown that came while the TSDB opened (a SIGTERM during a WAL
	// replay of minutes) finds the snapshot on disk the state: restoring
	// it, and writing it again with nothing scored, took seconds of the
	// pod's termination grace at 100 000 series.
	if ctx.Err() != nil {
		p.logger.Info("Shutdown before scoring started; the model snapshot is left as it is", "path", p.opts.SnapshotPath)
		return nil
	}
	// Before any series is created: those the head takes from here on
	// are fresh (see freshness).
	p.fresh.prime(p.st)
	p.restore()
	p.staleDeselected(ctx)
	// The line Prometheus's "Server is ready to receive web requests." is:
	// /-/ready answers 200 from here, and nothing said when the restore's
	// last step (the deselected series' staleness markers) was done.
	p.logger.Info("Ready: scoring", "workers", len(p.workers), "max_series", p.opts.MaxSeries, "forecast_max_series", p.opts.ForecastMaxSeries)
	p.ready.Store(true)
	if p.opts.Ready != nil {
		p.opts.Ready()
	}
	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(context.Background())
	for _, w := range p.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(wctx) }()
	}
	var dwg sync.WaitGroup
	dwg.Add(1)
	go func() { defer dwg.Done(); p.runDerived(ctx) }()
	if p.bf != nil {
		for range backfillReaders {
			dwg.Add(1)
			go func() { defer dwg.Done(); p.runBackfill(ctx) }()
		}
	}

	snap := time.NewTicker(p.opts.SnapshotInterval)
	defer snap.Stop()
	// The rate's first interval starts now: the status API has one from
	// the first tick on, not the second (it read 0 for the first ~20 s
	// of samples).
	p.updateIngestRate()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-snap.C:
			// Abandoned if a shutdown comes meanwhile: the final
			// snapshot follows, and would wait for this one (30 s at
			// 100 000 series on a loaded node).
			if p.snapshot(ctx) {
				p.logger.Info("Model snapshot abandoned: shutting down, the final one follows", "path", p.opts.SnapshotPath)
			}
		case <-tick.C:
			p.updateIngestRate()
			p.expireRestored()
		}
	}
	dwg.Wait()
	// Workers score what is queued before the final snapshot, all of them
	// at once and for ShutdownDrain at most (the rest is caught up from
	// the TSDB after the restart).
	drainStart := time.Now()
	// A context's Done, closed for every worker (a timer's channel would
	// tell one of them).
	drain, stopDrain := context.WithTimeout(context.Background(), p.opts.ShutdownDrain)
	for _, w := range p.workers {
		w.drainBy = drain.Done()
		close(w.quit)
	}
	left := 0
	for _, w := range p.workers {
		<-w.done
		left += w.left
	}
	stopDrain()
	p.final.Store(left == 0)
	if left > 0 {
		p.logger.Warn("Shutdown: samples still queued for scoring were left to the next start, which replays them from the TSDB into the restored models (their outputs are not stored)",
			"samples", left, "drain", p.opts.ShutdownDrain)
	}
	p.logger.Info("Shutdown: scoring stopped", "duration", time.Since(drainStart))
	cancel()
	wg.Wait()
	sctx, stopSnap := context.WithTimeout(context.Background(), p.opts.ShutdownSnapshot)
	defer stopSnap()
	if p.snapshot(sctx) {
		p.logger.Warn("Final model snapshot abandoned past --snapshot.shutdown-timeout; the last one written stays, and the next start replays the samples since from the TSDB into the restored models (their outputs are not stored)",
			"path", p.opts.SnapshotPath, "timeout", p.opts.ShutdownSnapshot)
	}
	return nil
}

func (p *Pipeline) stepOpts() stepOpts {
	return stepOpts{forecastEveryMs: p.opts.ForecastEvery.Milliseconds(), holdMs: p.opts.IncidentHold.Milliseconds()}
}

// updateIngestRate takes a reading of the tapped-sample count and sets the
// ingest rate to the samples per second since the oldest reading kept
// (rateWindow readings back, or the first one). A reading at the time of
// the latest one replaces it.
func (p *Pipeline) updateIngestRate() {
	now := p.opts.Now()
	n := p.tapped.Load()
	p.rateMu.Lock()
	defer p.rateMu.Unlock()
	last := (p.rateNext - 1 + rateWindow) % rateWindow
	if p.rateLen > 0 && !now.After(p.rateMarks[last].at) {
		p.rateMarks[last].n = n
		return
	}
	if p.rateLen > 0 {
		oldest := p.rateMarks[(p.rateNext-p.rateLen+rateWindow)%rateWindow]
		p.ingestPerSec = float64(n-oldest.n) / now.Sub(oldest.at).Seconds()
	}
	p.rateMarks[p.rateNext] = rateMark{at: now, n: n}
	p.rateNext = (p.rateNext + 1) % rateWindow
	p.rateLen = min(p.rateLen+1, rateWindow)
}

func isOutputName(name string) bool {
	switch name {
	case FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper, FamilyForecast, FamilyForecastLower, FamilyForecastUpper:
		return true
	}
	return false
}
