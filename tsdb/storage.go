// Package tsdb owns everything that touches the Prometheus storage API: the
// embedded TSDB, the remote-write and remote-read handlers and the
// Prometheus-compatible query API.
package tsdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// ErrNotReady is returned by Storage while the TSDB is still opening (WAL
// replay). The write handler answers it with 503 so that senders retry.
var ErrNotReady = errors.New("TSDB not ready: still opening or replaying the WAL")

// Options configure the embedded TSDB.
type Options struct {
	Path                 string
	RetentionTime        time.Duration // 0: 15d
	RetentionSize        int64         // bytes; 0: unlimited
	OutOfOrderTimeWindow time.Duration
	MaxExemplars         int64
}

// DefaultOptions are those of `omen serve` without flags.
func DefaultOptions() Options {
	return Options{Path: "data", RetentionTime: 15 * 24 * time.Hour, MaxExemplars: 100000}
}

// Storage is the embedded TSDB behind a readiness gate: it is usable as a
// storage.Storage from construction on, and answers ErrNotReady until Open
// has replayed the WAL. This lets the HTTP server start first and report
// /-/ready truthfully, as Prometheus does.
type Storage struct {
	logger *slog.Logger
	reg    prometheus.Registerer
	opts   Options
	stats  *tsdb.DBStats
	db     atomic.Pointer[tsdb.DB]
}

// NewStorage returns a Storage that is not open yet.
func NewStorage(logger *slog.Logger, reg prometheus.Registerer, opts Options) *Storage {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Storage{logger: logger, reg: reg, opts: opts, stats: tsdb.NewDBStats()}
}

// Open opens the TSDB and replays its WAL; it returns once the storage is
// ready.
func (s *Storage) Open() error {
	o := tsdb.DefaultOptions()
	if s.opts.RetentionTime > 0 {
		o.RetentionDuration = s.opts.RetentionTime.Milliseconds()
	}
	o.MaxBytes = s.opts.RetentionSize
	o.OutOfOrderTimeWindow = s.opts.OutOfOrderTimeWindow.Milliseconds()
	o.EnableExemplarStorage = s.opts.MaxExemplars > 0
	o.MaxExemplars = s.opts.MaxExemplars
	o.EnableMetadataWALRecords = true
	start := time.Now()
	db, err := tsdb.Open(s.opts.Path, s.logger.With("component", "tsdb"), s.reg, o, s.stats)
	if err != nil {
		return fmt.Errorf("open TSDB at %s: %w", s.opts.Path, err)
	}
	s.db.Store(db)
	s.logger.Info("TSDB ready", "path", s.opts.Path, "duration", time.Since(start))
	return nil
}

// Ready reports whether the TSDB is open.
func (s *Storage) Ready() bool { return s.db.Load() != nil }

// DB returns the open TSDB, or nil before Open returned.
func (s *Storage) DB() *tsdb.DB { return s.db.Load() }

// Close closes the TSDB if it was opened.
func (s *Storage) Close() error {
	if db := s.db.Swap(nil); db != nil {
		return db.Close()
	}
	return nil
}

// AppenderV2 implements storage.AppendableV2.
func (s *Storage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	if db := s.db.Load(); db != nil {
		return db.AppenderV2(ctx)
	}
	return notReadyAppender{}
}

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
