// Package tsdb owns everything that touches the Prometheus storage API: the
// embedded TSDB, the remote-write and remote-read handlers and the
// Prometheus-compatible query API.
package tsdb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/util/compression"
)

// ErrNotReady is returned by Storage while the TSDB is still opening (WAL
// replay). The write handler answers it with 503 so that senders retry.
var ErrNotReady = errors.New("TSDB not ready: still opening or replaying the WAL")

// ErrStorageFailing is returned by Storage's appenders while the storage
// path cannot take writes (disk full, read-only, I/O errors). The write
// handler answers it with 503 and Retry-After so that senders retry, and
// /-/ready fails until a probe shows the path writable again.
var ErrStorageFailing = errors.New("storage failing")

// Options configure the embedded TSDB.
type Options struct {
	Path                 string
	RetentionTime        time.Duration // 0: 15d, or none with a RetentionSize (retentionTime)
	RetentionSize        int64         // bytes; 0: unlimited
	OutOfOrderTimeWindow time.Duration
	MaxExemplars         int64
	// Isolation makes a query see each commit (one remote-write request)
	// whole or not at all. Off by default, as in Mimir's ingesters: the
	// remote-write sender splits a scrape's samples across requests and
	// shards as it likes, so a request is no unit a reader could rely on,
	// and isolation costs every head series a ring of append IDs and every
	// append and query a lock on the shared isolation state.
	Isolation bool
	// StartTimestampZeroIngestion stores a remote-write 2.0 sample's start
	// timestamp as a zero sample before it (Prometheus's
	// created-timestamp-zero-ingestion feature), when the series has no
	// sample at or after it yet.
	StartTimestampZeroIngestion bool
	// MinFreeBytes is the free space below which writes are refused (503)
	// before the file system is actually full. 0: 5% of the file system,
	// at most 64 MiB; negative: no free-space check. The reserve matters
	// because the TSDB's head-chunk writer panics on a write error (it
	// cannot fail a transaction that has already committed), so omen stops
	// taking samples while there is still room to m-map the chunks it holds.
	MinFreeBytes int64
	// ProbeInterval is how often the storage path's health is checked
	// (free space, read-only, a small test write); 0: 1s.
	ProbeInterval time.Duration
	// WALCompression compresses the WAL's records (compression.Snappy or
	// Zstd); "" or compression.None writes them plain. Prometheus compresses
	// its WAL with Snappy by default: about half the bytes written, for a
	// few percent of a sample's append CPU. A WAL written either way is
	// read either way (each record says how it is compressed), so the
	// setting can change across restarts.
	WALCompression compression.Type
	// MaxHeadSeries is the write path's bound on the head's series
	// (WriteOptions.MaxHeadSeries): the storage refuses nothing for it,
	// but counts the series its head creates past it, in
	// omen_tsdb_head_series_created_over_limit_total. Remote write creates
	// none there, so they are omen's outputs: appended by the scorers
	// straight to the storage, never refused (see WriteOptions). 0: none.
	MaxHeadSeries int
}

// defaultRetention is the time retention when neither retention is set.
const defaultRetention = 15 * 24 * time.Hour

// retentionTime is the time retention in force for a RetentionTime of t and
// a RetentionSize of size, as Prometheus decides it: t; or, for 0, none when
// a size bounds the storage (0 had kept 15 days under the size: the flags
// that give Prometheus size-based retention alone gave omen both, and
// runtimeinfo showed the size alone), else 15 days.
func retentionTime(t time.Duration, size int64) time.Duration {
	switch {
	case t > 0:
		return t
	case size > 0:
		return 0
	}
	return defaultRetention
}

// DefaultOptions are those of `omen serve` without flags.
func DefaultOptions() Options {
	return Options{Path: "data", RetentionTime: defaultRetention, MaxExemplars: 100000}
}

// Storage is the embedded TSDB behind a readiness gate: it is usable as a
// storage.Storage from construction on, and answers ErrNotReady until Open
// has replayed the WAL. This lets the HTTP server start first and report
// /-/ready truthfully, as Prometheus does.
//
// It also watches the health of its path: a failed commit or a failed probe
// (see Options.MinFreeBytes) makes Ready false and every new appender fail
// with ErrStorageFailing, so that writes get a retriable 503 instead of
// half-failing inside the TSDB; the next successful probe (every
// ProbeInterval) makes it ready again, with no restart.
type Storage struct {
	logger *slog.Logger
	reg    prometheus.Registerer
	opts   Options
	stats  *tsdb.DBStats
	db     atomic.Pointer[tsdb.DB]

	failing atomic.Pointer[string] // why writes are refused; nil while healthy
	// failMu orders setFailing against a probe's clearing, and fails counts
	// the failures, so that a probe clears only failures seen before its
	// check began (see probe).
	failMu  sync.Mutex
	fails   uint64
	healthM prometheus.Gauge
	failM   *prometheus.CounterVec
	reopens prometheus.Counter
	// overLimit counts the series the head created past MaxHeadSeries.
	overLimit prometheus.Counter
	stop      chan struct{}
	probeWG   sync.WaitGroup

	// fault, when set (tests only), is consulted before each commit
	// ("commit") and each probe ("probe"): a non-nil error is the fault
	// injected there, standing in for ENOSPC or EROFS from the file system.
	fault atomic.Pointer[func(op string) error]

	// deleted, when set, is told the refs of series the head dropped (see
	// OnSeriesDeleted).
	deleted atomic.Pointer[func(refs []storage.SeriesRef)]
	// reopened, when set, is told that the TSDB was reopened (see
	// OnReopen).
	reopened atomic.Pointer[func()]

	// A commit that failed may have left half a record at the end of the
	// WAL (Prometheus's WAL does not undo a partial write), and a WAL that
	// goes on past it loses everything after it at the next start, when
	// the replay cuts the WAL at the damage: acknowledged samples. So repair
	// is set by such a failure, and the recovery reopens the TSDB (whose
	// replay repairs the WAL) before it takes writes again. A commit onto a
	// DB that is no longer the storage's (see commitFailed) asks for none.
	repair atomic.Bool
	// dbMetrics holds the collectors the current DB registered: a reopened
	// DB registers its own anew, which the registry would refuse.
	dbMetrics atomic.Pointer[collectorSet]

	// Head compaction is omen's, not the TSDB's (see compactLoop): gate
	// holds the appenders open, compactc asks for a compaction.
	gate      appendGate
	compactc  chan struct{}
	compactWG sync.WaitGroup
	// compactMu keeps a reopen from closing the DB under a compaction.
	compactMu sync.Mutex
	// chunksKept, compactLoop's only, says its last pass found no room
	// for the head's chunks (headChunksWritable).
	chunksKept bool
	// closing is cancelled when the storage closes: it cancels the
	// compactor's writing of a block (see newCompactor), which the close
	// would otherwise wait for (minutes, for a large head).
	closing       context.Context
	cancelClosing context.CancelFunc
	// shut is closed once Shutdown's close has ended, with shutErr.
	shutOnce sync.Once
	shut     chan struct{}
	shutErr  error
	// compactHook, when set before Open (tests only), is called by the
	// compactor before it writes a block, with the compactor's context:
	// it stands in for a compaction that takes long, or, returning an
	// error, for a block write that fails.
	compactHook func(ctx context.Context) error
	// compactBackoff is the first wait before a failed compaction is
	// retried (0: a second); tests set it.
	compactBackoff time.Duration
	// openHook, when set (tests only), is called by openDB before it opens
	// the TSDB: during a reopen, it runs with the old DB closed.
	openHook func()
	// abandoned counts the opens OpenContext left running (until they
	// closed the DB they opened): only tests wait for them, before they
	// open the path again or remove it.
	abandoned sync.WaitGroup
}

// appendGate lets a head compaction wait for the appenders opened before
// it. The TSDB does so only with isolation on (WaitForAppendersOverlapping
// reads the isolation's list of open appenders, empty without it): with
// isolation off, an appender opened before a head compaction (a worker's
// outputs, appended through a whole batch) committed samples into the range
// the compaction had just written to a block and dropped from the head. The
// head's minimum time went back below the block's end, and the next
// compaction wrote a block overlapping it (a 2 h fleet written at speed:
// "Overlapping blocks found during reloadBlocks", then a vertical
// compaction). An appender opened once the compaction has begun has a
// minimum valid time at or after the block's end (the head compacts only
// a range 1.5 blocks behind its maximum time), so it need not be waited for.
type appendGate struct {
	mu      sync.Mutex
	cur     *sync.WaitGroup
	waiting atomic.Int32  // compactions waiting in drain (tests)
	limit   time.Duration // of drain's wait; 0: drainLimit (tests set it)
}

// enter registers an appender; it calls Done on the result when it ends.
func (g *appendGate) enter() *sync.WaitGroup {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cur == nil {
		g.cur = new(sync.WaitGroup)
	}
	g.cur.Add(1)
	return g.cur
}

// drain returns once every appender entered before it has ended (done),
// or once limit has passed (not done), or when stop is closed first (not
// ok). The limit turns an appender that never ends (a panic between a
// request's append and its commit, recovered by net/http) into a late
// compaction rather than none ever again: the head would grow without
// bound. Appenders live for a request or a scorer's batch, within
// seconds.
func (g *appendGate) drain(stop <-chan struct{}) (done, ok bool) {
	g.mu.Lock()
	old := g.cur
	g.cur = nil
	g.mu.Unlock()
	if old == nil {
		return true, true
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	ended := make(chan struct{})
	go func() { old.Wait(); close(ended) }()
	t := time.NewTimer(cmp.Or(g.limit, drainLimit))
	defer t.Stop()
	select {
	case <-ended:
		return true, true
	case <-t.C:
		return false, true
	case <-stop:
		return false, false
	}
}

// drainLimit bounds a compaction's wait for the appenders open before it
// (see appendGate.drain).
const drainLimit = 2 * time.Minute

// collectorSet is a prometheus.Registerer that keeps what is registered
// with it, and a collector of all of it. Storage registers one collector on
// its registry that collects the current set.
type collectorSet struct {
	mu sync.Mutex
	cs []prometheus.Collector
}

func (c *collectorSet) Register(col prometheus.Collector) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cs = append(c.cs, col)
	return nil
}

func (c *collectorSet) MustRegister(cols ...prometheus.Collector) {
	for _, col := range cols {
		_ = c.Register(col)
	}
}

func (c *collectorSet) Unregister(col prometheus.Collector) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.cs {
		if x == col {
			c.cs = append(c.cs[:i], c.cs[i+1:]...)
			return true
		}
	}
	return false
}

// dbCollector collects the current DB's metrics; it describes nothing, so
// the registry takes it as unchecked.
type dbCollector struct{ s *Storage }

func (dbCollector) Describe(chan<- *prometheus.Desc) {}

func (d dbCollector) Collect(ch chan<- prometheus.Metric) {
	set := d.s.dbMetrics.Load()
	if set == nil {
		return
	}
	set.mu.Lock()
	cs := slices.Clone(set.cs)
	set.mu.Unlock()
	for _, c := range cs {
		c.Collect(ch)
	}
}

// OnSeriesDeleted has f told the references of series the head garbage
// collects (no samples left in it after a compaction). A series that comes
// back gets a new reference, so whatever is keyed by the old one (the
// scorers' models) must go then, or the series is there twice. f runs on
// the head's garbage collection and must not block.
func (s *Storage) OnSeriesDeleted(f func(refs []storage.SeriesRef)) { s.deleted.Store(&f) }

// OnReopen has f told that the TSDB was reopened to repair its WAL, before
// it takes writes again. The reopened head numbers its series anew from
// the highest reference its WAL still holds: a reference of a series it
// collected earlier may now be another series'. So whatever maps series to
// references (the write path's cache, the scorers' models and their
// outputs) must forget them then, or samples go into the wrong series.
func (s *Storage) OnReopen(f func()) { s.reopened.Store(&f) }

// seriesLifecycle passes the head's deletions on to OnSeriesDeleted's f.
type seriesLifecycle struct{ s *Storage }

func (seriesLifecycle) PreCreation(labels.Labels) error { return nil }

// PostCreation counts a series created past Options.MaxHeadSeries. Those
// of the WAL's replay are not: the DB is not the storage's until it has
// opened.
func (l seriesLifecycle) PostCreation(labels.Labels) {
	if limit := l.s.opts.MaxHeadSeries; limit > 0 {
		if db := l.s.db.Load(); db != nil && db.Head().NumSeries() > uint64(limit) {
			l.s.overLimit.Inc()
		}
	}
}

func (l seriesLifecycle) PostDeletion(m map[chunks.HeadSeriesRef]labels.Labels) {
	f := l.s.deleted.Load()
	if f == nil || len(m) == 0 {
		return
	}
	refs := make([]storage.SeriesRef, 0, len(m))
	for r := range m {
		refs = append(refs, storage.SeriesRef(r))
	}
	(*f)(refs)
}

// NewStorage returns a Storage that is not open yet.
func NewStorage(logger *slog.Logger, reg prometheus.Registerer, opts Options) *Storage {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = time.Second
	}
	f := promauto.With(reg)
	s := &Storage{
		logger: logger, reg: reg, opts: opts, stats: tsdb.NewDBStats(),
		compactc: make(chan struct{}, 1),
		healthM: f.NewGauge(prometheus.GaugeOpts{
			Name: "omen_storage_writable",
			Help: "1 while the storage path takes writes, 0 while it is failing (disk full, read-only, I/O errors) and writes are refused with 503.",
		}),
		failM: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_storage_failures_total",
			Help: "Storage failures that made omen refuse writes, by where they were seen (commit, probe, reopen).",
		}, []string{"op"}),
		reopens: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_storage_wal_repairs_total",
			Help: "Times the TSDB was reopened, its WAL repaired, after a failed write before writes were taken again.",
		}),
		overLimit: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_tsdb_head_series_created_over_limit_total",
			Help: "Series the TSDB's head created while it held more than --write.max-head-series: omen's outputs (anomaly_score, yhat*, forecast*) of series it scores, which the limit does not refuse; remote write refuses new series at the limit.",
		}),
	}
	// At 0 from the start, so that increase() sees an op's first failure.
	for _, op := range [...]string{"commit", "probe", "reopen"} { // setFailing's
		s.failM.WithLabelValues(op)
	}
	s.closing, s.cancelClosing = context.WithCancel(context.Background())
	if reg != nil {
		reg.MustRegister(dbCollector{s})
	}
	return s
}

// Open opens the TSDB and replays its WAL; it returns once the storage is
// ready. It is OpenContext without cancellation.
func (s *Storage) Open() error { return s.OpenContext(context.Background()) }

// OpenContext opens the TSDB and replays its WAL as Open does, but returns
// once ctx is done if the replay has not ended by then, with ctx's error:
// the TSDB's open heeds no cancellation, and a shutdown during a replay of
// minutes waited for all of it (as Prometheus's does) before it could
// close what it had just opened, with the pod's termination grace running.
// The replay abandoned goes on until the process exits, and closes the DB
// it opens if it ends first; the storage stays unopened. Leaving it to the
// exit is what a SIGKILL during the replay does, and loses nothing: no
// write was taken yet (the storage answers ErrNotReady until it is open),
// the replay only reads the WAL, and the head chunks it writes as it goes
// are the TSDB's to check and rewrite at the next start, which replays
// the WAL again either way (a close after the replay writes no checkpoint).
func (s *Storage) OpenContext(ctx context.Context) error {
	start := time.Now()
	// omen_storage_writable says whether the path takes writes from the
	// start, not from the end of the WAL replay: it read 0 ("failing: disk
	// full, read-only") through every restart's replay, scraped so by a
	// Prometheus, and a replay longer than OmenStorageFailing's for (10m)
	// paged for a healthy disk. The TSDB creates the path as well.
	if err := os.MkdirAll(s.opts.Path, 0o777); err == nil {
		s.probe()
	}
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("open TSDB at %s: %w", s.opts.Path, err)
	}
	type opened struct {
		db  *tsdb.DB
		err error
	}
	done := make(chan opened, 1)
	go func() {
		db, err := s.openDB()
		done <- opened{db, err}
	}()
	var o opened
	select {
	case o = <-done:
	case <-ctx.Done():
		s.abandoned.Add(1)
		go func() {
			defer s.abandoned.Done()
			if o := <-done; o.db != nil {
				_ = o.db.Close()
			}
		}()
		return fmt.Errorf("open TSDB at %s: stopped during the WAL replay, left to the exit: %w", s.opts.Path, context.Cause(ctx))
	}
	if o.err != nil {
		return o.err
	}
	db := o.db
	s.probe() // start healthy only if the path is
	s.db.Store(db)
	s.stop = make(chan struct{})
	s.probeWG.Add(1)
	go s.probeLoop(s.stop)
	s.compactWG.Add(1)
	go s.compactLoop(s.stop)
	s.logger.Info("TSDB ready", "path", s.opts.Path, "duration", time.Since(start))
	return nil
}

// AwaitRoom returns, before Open, once the storage path's file system has
// free space above the reserve (MinFreeBytes), or with ctx's error. The
// WAL replay m-maps the head's full chunks into new chunk files, and the
// TSDB panics when it cannot write one (see MinFreeBytes): omen killed on a
// full disk panicked at every start, a crash loop while the disk stayed
// full, where the process that filled it refused writes and waited. This
// waits as that one did: the path reported failing (omen_storage_writable
// 0, logged once), writes answered 503 and /-/ready failing, as during a
// replay; every other fault of the path is left to Open.
func (s *Storage) AwaitRoom(ctx context.Context) error {
	for {
		err := s.checkPath()
		if !errors.Is(err, syscall.ENOSPC) {
			return nil
		}
		s.setFailing("probe", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.opts.ProbeInterval):
		}
	}
}

// openDB opens the TSDB, replaying (and if need be repairing) its WAL, with
// a new set of collectors for its metrics.
func (s *Storage) openDB() (*tsdb.DB, error) {
	o := tsdb.DefaultOptions()
	o.RetentionDuration = retentionTime(s.opts.RetentionTime, s.opts.RetentionSize).Milliseconds()
	o.MaxBytes = s.opts.RetentionSize
	o.OutOfOrderTimeWindow = s.opts.OutOfOrderTimeWindow.Milliseconds()
	o.EnableExemplarStorage = s.opts.MaxExemplars > 0
	o.MaxExemplars = s.opts.MaxExemplars
	o.EnableMetadataWALRecords = true
	if s.opts.WALCompression != "" {
		o.WALCompression = s.opts.WALCompression
	}
	o.IsolationDisabled = !s.opts.Isolation
	o.EnableSTAsZeroSample = s.opts.StartTimestampZeroIngestion
	o.SeriesLifecycleCallback = seriesLifecycle{s}
	o.NewCompactorFunc = s.newCompactor
	// The TSDB's loop m-maps full head chunks on this tick; compactLoop
	// does it instead, on its own goroutine, so that it never runs beside
	// a compaction's truncation of the chunk files: the chunk disk mapper
	// resets its next file number when a truncation finds no file, and a
	// first file cut meanwhile makes the next cut panic ("expected newly
	// cut file to have sequence:offset 1:8, got 2:8"; prometheus#12500).
	o.BlockReloadInterval = 100 * 365 * 24 * time.Hour
	var reg prometheus.Registerer
	if s.reg != nil {
		set := &collectorSet{}
		reg = set
		defer s.dbMetrics.Store(set)
	}
	logger := slog.New(omitDisabledCompactions{s.logger.Handler()}).With("component", "tsdb")
	if s.openHook != nil {
		s.openHook()
	}
	db, err := tsdb.Open(s.opts.Path, logger, reg, o, s.stats)
	if err != nil {
		return nil, fmt.Errorf("open TSDB at %s: %w", s.opts.Path, err)
	}
	// A head chunk room probe a crash left (see headChunkRoom): the TSDB
	// ignores it, but counts its 4 MiB in the head chunks' size (on each
	// scrape). Only once the TSDB holds its lock: another omen's open of
	// this path, failing on it, removed the probe this one was allocating.
	if err := os.Remove(filepath.Join(s.opts.Path, "chunks_head", probeFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Warn("Removing a head chunk room probe left by a crash", "component", "tsdb", "err", err)
	}
	// compactLoop compacts, once the appenders that could write into the
	// compacted range have ended (see appendGate).
	db.DisableCompactions()
	return db, nil
}

// newCompactor is the compactor the TSDB makes by default (tsdb.Open, with
// the options it passes), but cancelled by the storage's close as well as
// by the DB's: the compaction loop ends before the DB closes (see close),
// and a block being written held the shutdown until it was done. A
// cancelled compaction leaves the head as it was; the block is written
// after the restart. ctx is the DB's, cancelled by its Close.
func (s *Storage) newCompactor(ctx context.Context, r prometheus.Registerer, l *slog.Logger, ranges []int64, pool chunkenc.Pool, o *tsdb.Options) (tsdb.Compactor, error) {
	cctx, cancel := context.WithCancel(s.closing)
	context.AfterFunc(ctx, cancel)
	ctx = cctx
	c, err := tsdb.NewLeveledCompactorWithOptions(ctx, r, l, ranges, pool, tsdb.LeveledCompactorOptions{
		MaxBlockChunkSegmentSize:    o.MaxBlockChunkSegmentSize,
		EnableOverlappingCompaction: o.EnableOverlappingCompaction,
		PD:                          o.PostingsDecoderFactory,
		UseUncachedIO:               o.UseUncachedIO,
		BlockExcludeFilter:          o.BlockCompactionExcludeFunc,
		FloatChunkEncoding:          func() chunkenc.Encoding { return o.FloatChunkEncoding },
	})
	if err != nil || s.compactHook == nil {
		return c, err
	}
	return hookedCompactor{LeveledCompactor: c, ctx: ctx, hook: s.compactHook}, nil
}

// hookedCompactor calls hook before each block it writes (see
// Storage.compactHook).
type hookedCompactor struct {
	*tsdb.LeveledCompactor
	ctx  context.Context
	hook func(context.Context) error
}

func (c hookedCompactor) Write(dest string, b tsdb.BlockReader, mint, maxt int64, base *tsdb.BlockMeta) ([]ulid.ULID, error) {
	if err := c.hook(c.ctx); err != nil {
		return nil, err
	}
	return c.LeveledCompactor.Write(dest, b, mint, maxt, base)
}

// omitDisabledCompactions passes the TSDB's log records on but for the
// "Compactions disabled" its DisableCompactions logs, which openDB calls
// at every open because compactLoop compacts instead: at Info at every
// start, the line read as a TSDB that never compacts.
type omitDisabledCompactions struct{ slog.Handler }

func (h omitDisabledCompactions) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "Compactions disabled" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h omitDisabledCompactions) WithAttrs(as []slog.Attr) slog.Handler {
	return omitDisabledCompactions{h.Handler.WithAttrs(as)}
}

func (h omitDisabledCompactions) WithGroup(name string) slog.Handler {
	return omitDisabledCompactions{h.Handler.WithGroup(name)}
}

// reopen closes the TSDB and opens it again, which repairs a WAL a failed
// write left damaged; meanwhile writes and queries are answered as during
// the first replay (503).
func (s *Storage) reopen() error {
	start := time.Now()
	s.logger.Warn("Reopening the TSDB to repair its WAL after a failed write; writes are refused until it is open", "path", s.opts.Path)
	s.compactMu.Lock()
	old := s.db.Swap(nil)
	s.compactMu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			s.logger.Warn("Closing the TSDB for its repair", "err", err)
		}
	}
	db, err := s.openDB()
	if err != nil {
		return err
	}
	if f := s.reopened.Load(); f != nil {
		(*f)()
	}
	s.db.Store(db)
	s.reopens.Inc()
	s.logger.Info("TSDB reopened", "path", s.opts.Path, "duration", time.Since(start))
	return nil
}

// Ready reports whether the TSDB is open and its path takes writes.
func (s *Storage) Ready() bool { return s.db.Load() != nil && s.failing.Load() == nil }

// Opened reports whether the TSDB is open (its WAL replayed). Reads work
// from then on, even while a full or read-only path refuses writes.
func (s *Storage) Opened() bool { return s.db.Load() != nil }

// Failing returns why writes are refused, or "" while the storage is
// healthy.
func (s *Storage) Failing() string {
	if r := s.failing.Load(); r != nil {
		return *r
	}
	return ""
}

// setFailing records a failure seen at op; the first one is logged.
func (s *Storage) setFailing(op string, err error) {
	s.failM.WithLabelValues(op).Inc()
	msg := err.Error()
	s.failMu.Lock()
	s.fails++
	s.healthM.Set(0)
	old := s.failing.Swap(&msg)
	s.failMu.Unlock()
	if old == nil {
		s.logger.Error("Storage failing: refusing writes (503) and failing /-/ready until it recovers", "path", s.opts.Path, "op", op, "err", err)
	}
}

// failures returns the count of failures seen so far, for setHealthy.
func (s *Storage) failures() uint64 {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.fails
}

// setHealthy clears the failure, unless one was seen after the probe that
// found the path healthy read seen: that one is for the next probe.
func (s *Storage) setHealthy(seen uint64) {
	s.failMu.Lock()
	if s.fails != seen {
		s.failMu.Unlock()
		return
	}
	s.healthM.Set(1)
	old := s.failing.Swap(nil)
	s.failMu.Unlock()
	if old != nil {
		s.logger.Info("Storage recovered: taking writes again", "path", s.opts.Path, "was", *old)
	}
}

func (s *Storage) probeLoop(stop chan struct{}) {
	defer s.probeWG.Done()
	tick := time.NewTicker(s.opts.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			s.probe()
		}
	}
}

// compactInterval is how often compactLoop compacts unasked, as the TSDB's
// own loop does (block reload interval): blocks are merged and retention
// applied then.
const compactInterval = time.Minute

// compactLoop runs the TSDB's compactions and head chunk m-mapping in
// place of its own loop (which openDB disables): when a commit leaves the
// head compactable, and every compactInterval. Each compaction waits first
// for the appenders already open.
func (s *Storage) compactLoop(stop chan struct{}) {
	defer s.compactWG.Done()
	tick := time.NewTicker(compactInterval)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-stop; cancel() }()
	// A failed compaction is retried after a backoff, as the TSDB's own
	// loop does (1 s doubling to 1 min): every commit asks for one while
	// the head holds a range to compact, and a block that cannot be
	// written (the disk has room above the reserve but not for the block)
	// was written again at each, seconds of CPU and the disk filled to the
	// reserve each time.
	base := cmp.Or(s.compactBackoff, time.Second)
	var backoff time.Duration
	var retryAt time.Time
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		case <-s.compactc:
		}
		if time.Now().Before(retryAt) {
			continue
		}
		done, ok := s.gate.drain(stop)
		if !ok {
			return
		}
		if !done {
			s.logger.Warn("Compacting although appenders opened before it are still open after the wait; a sample they commit into the compacted range goes into the head below its blocks' end", "component", "tsdb", "waited", cmp.Or(s.gate.limit, drainLimit))
		}
		s.compactMu.Lock()
		if db := s.db.Load(); db != nil {
			if s.headChunksWritable() {
				db.ForceHeadMMap()
			}
			switch err := db.Compact(ctx); {
			case err == nil:
				backoff = 0
			case ctx.Err() == nil:
				backoff = min(max(2*backoff, base), 60*base)
				retryAt = time.Now().Add(backoff)
				s.logger.Error("compaction failed", "component", "tsdb", "err", err, "retry_in", backoff)
			}
		}
		s.compactMu.Unlock()
	}
}

// headChunksWritable reports whether the TSDB may write the head's full
// chunks to their files (m-map them), which compactLoop has it do, and its
// close. The TSDB panics on a head chunk write error (see MinFreeBytes), so
// they are written only if a file the size of the chunk writer's buffer can
// be allocated where they go (headChunkRoom): omen on a file system filled
// to 0 bytes by another writer, refusing writes, panicked at the loop's
// next pass ("preallocate: no space left on device"), and again when it was
// sent SIGTERM. Left in memory meanwhile, they cost nothing more: the head
// takes no samples while writes are refused. It logs when that begins and
// ends, as setFailing and setHealthy do, not at every pass: once a minute
// for as long as the disk stays full. compactLoop calls it.
func (s *Storage) headChunksWritable() bool {
	err := s.headChunkRoom()
	switch {
	case err != nil && !s.chunksKept:
		s.logger.Warn("Head chunks kept in memory until there is room to write them", "component", "tsdb", "err", err)
	case err == nil && s.chunksKept:
		s.logger.Info("Head chunks written again", "component", "tsdb")
	}
	s.chunksKept = err != nil
	return err == nil
}

// headChunkRoomBytes is what headChunkRoom allocates: the chunk writer's
// buffer (chunks.DefaultWriteBufferSize), which it fills before a write.
const headChunkRoomBytes = 4 << 20

// headChunkRoom allocates headChunkRoomBytes in a file beside the head
// chunk files and removes it; an error says why it could not. One a crash
// left between the two is removed at the next open (openDB).
func (s *Storage) headChunkRoom() error {
	dir := filepath.Join(s.opts.Path, "chunks_head")
	f, err := os.Create(filepath.Join(dir, probeFile))
	if err != nil {
		return fmt.Errorf("head chunk room: %w", err)
	}
	// As the chunk writer allocates its files (the TSDB's own call, which
	// falls back where the file system cannot allocate, and builds on
	// every platform).
	err = fileutil.Preallocate(f, headChunkRoomBytes, true)
	err = errors.Join(err, f.Close(), os.Remove(f.Name()))
	if err != nil {
		return fmt.Errorf("head chunk room in %s (%d bytes): %w", dir, headChunkRoomBytes, err)
	}
	return nil
}

// compactable reports whether the head holds a range to compact: as the
// TSDB's test, 1.5 blocks between its minimum and maximum time.
func compactable(db *tsdb.DB) bool {
	h := db.Head()
	mint, maxt := h.MinTime(), h.MaxTime()
	return mint != math.MaxInt64 && maxt-mint > tsdb.DefaultBlockDuration/2*3
}

// probeFile is the file the probe writes and removes; the TSDB ignores
// files in its directory that are not blocks.
const probeFile = ".omen-write-probe"

// probe checks that the storage path takes writes: not read-only, free
// space above the reserve, and a small file can be written and removed.
//
// It repairs and clears only the failures seen before its check began: a
// commit that fails while the check runs (on a path found writable a
// moment before) has not had its path checked since. A probe that cleared
// it would take writes onto a WAL with half a record at its end; one that
// repaired it reopened the TSDB on a path that may have just filled, where
// the WAL replay panics (see MinFreeBytes), and while the failure was
// still there (queries answered 503 meanwhile). The next probe sees it.
func (s *Storage) probe() {
	seen := s.failures()
	if err := s.checkPath(); err != nil {
		s.setFailing("probe", err)
		return
	}
	if s.failures() != seen {
		return
	}
	// Cleared before the reopen, not after: a commit on the reopened DB
	// that fails asks for a repair of its own, which must stand.
	if s.repair.Swap(false) {
		if err := s.reopen(); err != nil {
			s.repair.Store(true)
			s.setFailing("reopen", err)
			return
		}
	}
	s.setHealthy(seen)
}

func (s *Storage) checkPath() error {
	if f := s.fault.Load(); f != nil {
		if err := (*f)("probe"); err != nil {
			return err
		}
	}
	st, err := statDisk(s.opts.Path)
	if err != nil {
		return err
	}
	if st.readOnly {
		return fmt.Errorf("%s is on a read-only file system", s.opts.Path)
	}
	if reserve := s.reserve(st.size); st.known && reserve > 0 {
		if st.free < reserve {
			return fmt.Errorf("%s has %d bytes free, below the reserve of %d bytes: %w", s.opts.Path, st.free, reserve, syscall.ENOSPC)
		}
	}
	path := filepath.Join(s.opts.Path, probeFile)
	if err := os.WriteFile(path, []byte("omen\n"), 0o644); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("test write: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("test write: %w", err)
	}
	return nil
}

// Room reports, as an error, whether the storage path's file system has
// need bytes free above the free-space reserve: for other files written
// there (the model snapshot), which must not eat the room the TSDB's WAL
// needs.
func (s *Storage) Room(need int64) error {
	st, err := statDisk(s.opts.Path)
	if err != nil || !st.known {
		return err
	}
	if reserve := s.reserve(st.size); st.free < reserve+uint64(max(need, 0)) {
		return fmt.Errorf("%s has %d bytes free, %d needed above the reserve of %d: %w", s.opts.Path, st.free, need, reserve, syscall.ENOSPC)
	}
	return nil
}

// diskStat is what checkPath and Room read of a file system; statDisk,
// one per platform, fills it (statfs_*.go).
type diskStat struct {
	known    bool   // false where the platform cannot tell: no reserve check
	size     uint64 // bytes
	free     uint64 // bytes available to an unprivileged user
	readOnly bool
}

// reserve is the free-space floor for a file system of size bytes.
func (s *Storage) reserve(size uint64) uint64 {
	switch {
	case s.opts.MinFreeBytes < 0:
		return 0
	case s.opts.MinFreeBytes > 0:
		return uint64(s.opts.MinFreeBytes)
	}
	return min(size/20, 64<<20)
}

// DB returns the open TSDB, or nil before Open returned.
func (s *Storage) DB() *tsdb.DB { return s.db.Load() }

// DefaultShutdownTimeout bounds the TSDB's close at omen's shutdown
// (--storage.tsdb.shutdown-timeout): 0.9-3.4 s measured at 100 000 series
// with 2 hours of history under a load of 24-39 (docs/deploy.md). Past it
// the close is left to the exit (see Shutdown), which costs the next start
// nothing it would not redo anyway.
const DefaultShutdownTimeout = 5 * time.Second

// Close closes the TSDB if it was opened, cancelling a compaction under
// way (see newCompactor). It is Shutdown without a bound.
func (s *Storage) Close() error { return s.Shutdown(context.Background()) }

// Shutdown closes the TSDB as Close does, but returns once ctx is done if
// the close has not ended by then, with ctx's error: the close goes on
// until the process exits. What is not closed then is the work in flight,
// redone at the next start (a WAL checkpoint, a head truncation, a block's
// write: the TSDB removes a half-written block on open), and never a
// committed sample: each commit's WAL records were written (write(2), to
// the page cache that outlives the process) before the commit returned,
// and the next start replays them. Further calls wait for the same close.
func (s *Storage) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.cancelClosing()
		s.shut = make(chan struct{})
		go func() {
			defer close(s.shut)
			s.shutErr = s.close()
		}()
	})
	select {
	case <-s.shut:
		return s.shutErr
	case <-ctx.Done():
		return fmt.Errorf("close the TSDB: still closing, left to the exit (committed samples are in the WAL): %w", context.Cause(ctx))
	}
}

// close stops the loops and closes the TSDB; Shutdown calls it once.
func (s *Storage) close() error {
	// The probe first: it may be reopening the DB. A compaction under way
	// is cancelled (closing), as the TSDB's own Close cancels it, but that
	// comes after the loop's end.
	if s.stop != nil {
		close(s.stop)
		s.probeWG.Wait()
		s.compactWG.Wait()
	}
	db := s.db.Swap(nil)
	if db == nil {
		return nil
	}
	if err := s.headChunkRoom(); err != nil {
		// The TSDB's close m-maps the head's full chunks, and panics on the
		// write error (see headChunksWritable): omen sent SIGTERM on a full
		// disk panicked here. Left to the exit instead, as Shutdown leaves
		// a close past its bound: every committed sample is in the WAL,
		// which the next start replays.
		return fmt.Errorf("close the TSDB: left to the exit (committed samples are in the WAL): %w", err)
	}
	return db.Close()
}

// AppenderV2 implements storage.AppendableV2. While the storage is failing
// it returns an appender that refuses every sample with ErrStorageFailing.
func (s *Storage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	db := s.db.Load()
	if db == nil {
		return notReadyAppender{}
	}
	if why := s.failing.Load(); why != nil {
		return failingAppender{err: fmt.Errorf("%w: %s", ErrStorageFailing, *why)}
	}
	a := healthAppenderPool.Get().(*healthAppender)
	// Entered before the TSDB's appender takes its minimum valid time: a
	// compaction that has not waited for this appender began after it.
	a.open = s.gate.enter()
	a.s, a.AppenderV2, a.db = s, db.AppenderV2(ctx), db
	return a
}

// healthAppender watches Commit: a commit that fails is a storage failure
// (the TSDB has rolled the transaction back; the sender gets a 503), and
// makes the storage refuse writes until a probe succeeds.
type healthAppender struct {
	storage.AppenderV2
	s    *Storage
	db   *tsdb.DB        // the DB it appends to
	open *sync.WaitGroup // of s.gate, done when the appender ends
}

var healthAppenderPool = sync.Pool{New: func() any { return &healthAppender{} }}

func (a *healthAppender) release() {
	a.s, a.AppenderV2, a.db, a.open = nil, nil, nil, nil
	healthAppenderPool.Put(a)
}

// AppendExemplars forwards to the TSDB's appender, which has them.
func (a *healthAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, ex []exemplar.Exemplar) (storage.SeriesRef, error) {
	if ea, ok := a.AppenderV2.(storage.ExemplarAppenderV2); ok {
		return ea.AppendExemplars(ref, ls, ex)
	}
	return ref, errors.New("exemplars not supported")
}

// GetRef forwards to the TSDB's appender, which has it: the write handler
// asks the head whether it holds a series before it may create it (see
// WriteOptions.MaxHeadSeries).
func (a *healthAppender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	if g, ok := a.AppenderV2.(storage.GetRef); ok {
		return g.GetRef(ls, hash)
	}
	return 0, labels.EmptyLabels()
}

func (a *healthAppender) Commit() error {
	s, app, db, open := a.s, a.AppenderV2, a.db, a.open
	a.release()
	defer s.ended(open)
	if f := s.fault.Load(); f != nil {
		if err := (*f)("commit"); err != nil {
			// As the TSDB does when its WAL write fails.
			_ = app.Rollback()
			err = fmt.Errorf("write to WAL: %w", err)
			s.commitFailed(db, err)
			return err
		}
	}
	if err := app.Commit(); err != nil {
		s.commitFailed(db, err)
		return err
	}
	return nil
}

// commitFailed refuses writes until a probe passes, and has that probe
// repair the WAL, if db, the DB the commit went to, is the storage's. One a
// repair has closed since (an appender opened before the commit that asked
// for the repair failed: a scorer's outputs, a request) fails on its closed
// WAL: no failure of the storage, whose reopened DB is another, and its
// sender retries. Counted as one, it kept the reopened storage refusing
// writes until the probe after; and during the reopen's WAL replay (no DB
// the storage's yet) it asked for a second repair, another replay.
func (s *Storage) commitFailed(db *tsdb.DB, err error) {
	if s.db.Load() != db {
		return
	}
	s.repair.Store(true)
	s.setFailing("commit", err)
}

func (a *healthAppender) Rollback() error {
	s, app, open := a.s, a.AppenderV2, a.open
	a.release()
	defer s.ended(open)
	return app.Rollback()
}

// ended marks an appender's end (after its commit), and asks for a
// compaction if the head has a range to compact.
func (s *Storage) ended(open *sync.WaitGroup) {
	open.Done()
	if db := s.db.Load(); db != nil && compactable(db) {
		select {
		case s.compactc <- struct{}{}:
		default:
		}
	}
}

type failingAppender struct{ err error }

func (a failingAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 0, a.err
}
func (a failingAppender) Commit() error   { return a.err }
func (a failingAppender) Rollback() error { return nil }

// Querier implements storage.Queryable.
func (s *Storage) Querier(mint, maxt int64) (storage.Querier, error) {
	if db := s.db.Load(); db != nil {
		return db.Querier(mint, maxt)
	}
	return nil, ErrNotReady
}

// ChunkQuerier implements storage.ChunkQueryable (remote read's streamed
// chunks).
func (s *Storage) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	if db := s.db.Load(); db != nil {
		return db.ChunkQuerier(mint, maxt)
	}
	return nil, ErrNotReady
}

// ExemplarQuerier implements storage.ExemplarQueryable.
func (s *Storage) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	if db := s.db.Load(); db != nil {
		return db.ExemplarQuerier(ctx)
	}
	return nil, ErrNotReady
}

// StartTime implements storage.Storage.
func (s *Storage) StartTime() (int64, error) {
	if db := s.db.Load(); db != nil {
		return db.StartTime()
	}
	return 0, ErrNotReady
}

// HeadSeries is the number of series in the head block, 0 before Open.
func (s *Storage) HeadSeries() uint64 {
	if db := s.db.Load(); db != nil {
		return db.Head().NumSeries()
	}
	return 0
}

// The methods below are what Prometheus's query API needs for its TSDB
// status and admin endpoints (web/api/v1.TSDBAdminStats).

func (s *Storage) CleanTombstones() error {
	if db := s.db.Load(); db != nil {
		return db.CleanTombstones()
	}
	return ErrNotReady
}

func (s *Storage) Delete(ctx context.Context, mint, maxt int64, ms ...*labels.Matcher) error {
	if db := s.db.Load(); db != nil {
		return db.Delete(ctx, mint, maxt, ms...)
	}
	return ErrNotReady
}

func (s *Storage) Snapshot(dir string, withHead bool) error {
	if db := s.db.Load(); db != nil {
		return db.Snapshot(dir, withHead)
	}
	return ErrNotReady
}

func (s *Storage) Stats(statsByLabelName string, limit int) (*tsdb.Stats, error) {
	if db := s.db.Load(); db != nil {
		return db.Head().Stats(statsByLabelName, limit), nil
	}
	return nil, ErrNotReady
}

func (s *Storage) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	return s.stats.Head.WALReplayStatus.GetWALReplayStatus(), nil
}

func (s *Storage) BlockMetas() ([]tsdb.BlockMeta, error) {
	db := s.db.Load()
	if db == nil {
		return nil, ErrNotReady
	}
	blocks := db.Blocks()
	metas := make([]tsdb.BlockMeta, 0, len(blocks))
	for _, b := range blocks {
		metas = append(metas, b.Meta())
	}
	return metas, nil
}

type notReadyAppender struct{}

func (notReadyAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 0, ErrNotReady
}
func (notReadyAppender) Commit() error   { return ErrNotReady }
func (notReadyAppender) Rollback() error { return nil }

// AppendableV2 names the storage.AppendableV2 interface for callers that
// wire decorators (the scoring tap) between the write handler and Storage.
type AppendableV2 = storage.AppendableV2

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

var (
	_ storage.ExemplarAppenderV2 = (*healthAppender)(nil)
	_ storage.GetRef             = (*healthAppender)(nil)
)
