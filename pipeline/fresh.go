package pipeline

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
)

// freshness tells a new series' warm start, from its head reference alone,
// that the TSDB holds nothing a warm start would read: no sample of the
// input before its first one, and no output a run before stored for it.
// The two TSDB reads that find this out otherwise (the stored outputs, then
// the input's history, each a Select of a dozen equality matchers over the
// whole head) were half of a new series' cost: 100 000 series arriving at
// once at full ingest took seconds of both cores, and the scorers' queues
// overflowed behind them (issue 7: 1.8-2.5% of a run's samples dropped
// unscored, all in its first round).
//
// A series is fresh if
//   - the head created it since the scan of its references, at the
//     pipeline's start, right after the TSDB opened (for a head reopened
//     since, the first time one of its series was asked about): its
//     reference is above every one the head held then (the head numbers
//     series in order of creation). A series from the WAL (a run before's,
//     whose outputs may be stored at or after this sample: a sender
//     resending what that run scored) is not;
//   - its first sample in the head is the one being scored (or later),
//     so the head holds none before it;
//   - no block holds samples within the warm start's window: the history
//     of a series the head dropped and created again (under a new
//     reference) is in one.
//
// Anything else reads the TSDB as before. The out-of-order head is not
// looked at: a sample older than the series' first that came in after it
// (out of order, while the first waited in the queue) was read as history
// or not depending on when the worker got to the first; now it is not.
type freshness struct {
	mu  sync.Mutex // one scan of the head's references at a time
	cut atomic.Pointer[freshCut]
}

// freshCut is the highest series reference a head held when first asked.
type freshCut struct {
	head   *tsdb.Head
	maxRef storage.SeriesRef
}

// fresh reports whether the series with head reference ref, first scored
// at t, is certainly fresh (see freshness) for a warm start reading back to
// mint; false when unsure (not a Prometheus TSDB, a derived input, a
// series the head no longer holds). chks is the caller's scratch.
func (f *freshness) fresh(st Storage, ref storage.SeriesRef, mint, t int64, chks *[]chunks.Meta) bool {
	db := dbOf(st)
	if db == nil || ref&derivedRefBit != 0 {
		return false
	}
	h := db.Head()
	c := f.cut.Load()
	if c == nil || c.head != h {
		c = f.scan(h)
	}
	if ref <= c.maxRef {
		return false
	}
	for _, b := range db.Blocks() {
		if b.Meta().MaxTime > mint {
			return false
		}
	}
	ir, err := h.Index()
	if err != nil {
		return false
	}
	defer func() { _ = ir.Close() }() // the head's: nothing to release
	var lb labels.ScratchBuilder
	if err := ir.Series(ref, &lb, chks); err != nil || len(*chks) == 0 {
		return false
	}
	first := (*chks)[0].MinTime
	for _, m := range (*chks)[1:] {
		first = min(first, m.MinTime)
	}
	return first >= t
}

// prime scans st's head, if it is a Prometheus TSDB's, now: before the
// writes of the series that are to be fresh.
func (f *freshness) prime(st Storage) {
	if db := dbOf(st); db != nil {
		f.scan(db.Head())
	}
}

// scan records the highest series reference h holds now. Series created
// later have higher ones; so does one created between the head's opening
// and the scan, which is then taken as not fresh: the scan is only ever
// wrong on the safe side.
func (f *freshness) scan(h *tsdb.Head) *freshCut {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.cut.Load(); c != nil && c.head == h {
		return c
	}
	c := &freshCut{head: h, maxRef: ^storage.SeriesRef(0)} // nothing is fresh if the scan fails
	if ir, err := h.Index(); err == nil {
		defer func() { _ = ir.Close() }()
		name, value := index.AllPostingsKey()
		p, err := ir.Postings(context.Background(), name, value)
		if err == nil {
			var last storage.SeriesRef
			for p.Next() {
				last = p.At() // in order
			}
			if p.Err() == nil {
				c.maxRef = last
			}
		}
	}
	f.cut.Store(c)
	return c
}

// dbOf returns the Prometheus TSDB behind st (directly or as omen's
// tsdb.Storage), else nil.
func dbOf(st Storage) *tsdb.DB {
	switch db := st.(type) {
	case *tsdb.DB:
		return db
	case interface{ DB() *tsdb.DB }:
		return db.DB()
	}
	return nil
}
