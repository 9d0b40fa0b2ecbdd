package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"
)

// A snapshot's current mark, a file beside it (markSuffix), names it by
// its checksum and size: its states flagged flagCurrent had every sample
// the TSDB held of their series when it was written. Only a graceful
// stop's final snapshot has one (see snapCursor.current). New reads it,
// and the run's first commit of samples removes it, durably, before the
// TSDB stores them (see tookSamples): after a crash of that run the
// snapshot is restored again, and its series catch up on those; a stop
// or crash before it (during the TSDB's WAL replay, the restore) took no
// sample, and leaves the mark, still true, in place. A mark that names
// another file (a periodic snapshot written over it, one of an older
// release) is ignored.
//
// The mark also holds the latest sample time the TSDB held (see
// latestStored), checked again once the TSDB has opened: a release older
// than the mark (before 2026-12-06 19:35) neither removes nor rewrites it,
// and after a rollback to one whose run took samples and was killed before
// a snapshot of its own, the mark named the snapshot still, and the
// restored series skipped that run's samples for good. Samples such a run
// took only at or before that time (a backfill) are not seen so.
const markSuffix = ".current"

// markLen: checksum uint32 | size uint64 | latest sample time int64. A
// mark of another length (the 12 bytes before the latest time, or a later
// release's) is ignored: the next start catches up.
const markLen = 20

// writeMark writes the current mark of the snapshot at path, whose
// checksum is sum, the TSDB holding no sample after latest. Not synced:
// lost in a power cut, the next start catches up as after a crash.
func writeMark(path string, sum uint32, latest int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	b := binary.LittleEndian.AppendUint32(nil, sum)
	b = binary.LittleEndian.AppendUint64(b, uint64(fi.Size()))
	b = binary.LittleEndian.AppendUint64(b, uint64(latest))
	return os.WriteFile(path+markSuffix, b, 0o644)
}

// latestStored is the latest sample time st's head holds (math.MinInt64
// if none, or st is not a Prometheus TSDB). It only grows while the head
// takes samples, and a restart's WAL replay restores it.
func latestStored(st Storage) int64 {
	db := dbOf(st)
	if db == nil {
		return math.MinInt64
	}
	return db.Head().MaxTime()
}

// readMark reads the current mark of the snapshot at path; nil if none.
// It is left on disk until the first commit of samples (see tookSamples).
func readMark(path string) []byte {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path + markSuffix)
	if err != nil {
		return nil
	}
	return b
}

// tookSamples records that the tap commits samples of scored series (see
// took), before the TSDB stores them: the first time, it removes the
// snapshot's current mark, durably, which from then on no longer holds
// (else the commit is refused, and the sender sends it again). Commits
// wait for it; every one after costs one atomic load.
func (p *Pipeline) tookSamples() error {
	if p.took.Load() {
		return nil
	}
	p.markMu.Lock()
	defer p.markMu.Unlock()
	if p.took.Load() {
		return nil
	}
	if p.opts.SnapshotPath != "" {
		// Whether New read a mark or not: one it could not read is
		// still no mark to leave behind.
		if err := removeMark(p.opts.SnapshotPath); err != nil {
			if k, warn := p.markLog.Note(time.Minute); warn {
				p.logger.Error("Removing the model snapshot's current mark before the first samples are stored; refusing them (503)", "err", err, "commits_since_last_error", k)
			}
			return fmt.Errorf("remove the model snapshot's current mark: %w", err)
		}
	}
	p.took.Store(true)
	return nil
}

// removeMark removes the current mark of the snapshot at path, and syncs
// its directory (best effort: some file systems refuse a directory's
// sync). A mark already gone is no error.
func removeMark(path string) error {
	if err := os.Remove(path + markSuffix); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// marked reports whether mark names the snapshot c read, the TSDB holding
// no sample after the latest it held then.
func (c *stateCodec) marked(mark []byte, latest int64) bool {
	return len(mark) == markLen && c.size > 0 &&
		binary.LittleEndian.Uint32(mark) == c.sum && int64(binary.LittleEndian.Uint64(mark[4:])) == c.size &&
		int64(binary.LittleEndian.Uint64(mark[12:])) == latest
}

// current reports whether s's models have learnt every sample the TSDB
// holds of it, once its worker's queue is drained and its HTTP server
// shut down: a derived input's state is of its evaluations, not of stored
// samples; a series awaiting its catch-up or new models has not; nor has
// one whose models learnt up to before a sample dropped unscored (at or
// before droppedMaxT), which may be its.
func (s *series) current(droppedMaxT int64) bool {
	return !isDerived(s) && !s.catchUpDue && !s.rebuild && !s.bfWait && s.learntUpTo() >= droppedMaxT
}

// noteDropped keeps droppedMaxT at the latest sample of the batch b a full
// queue drops.
func (p *Pipeline) noteDropped(b *batch) {
	t := int64(math.MinInt64)
	for i := range b.s {
		t = max(t, b.s[i].t)
	}
	p.noteDroppedAt(t)
}

// noteDroppedAt is noteDropped for samples of latest timestamp t.
func (p *Pipeline) noteDroppedAt(t int64) {
	for {
		old := p.droppedMaxT.Load()
		if t <= old || p.droppedMaxT.CompareAndSwap(old, t) {
			return
		}
	}
}

// queuesEmpty reports whether no batch waits in a worker's queue.
func (p *Pipeline) queuesEmpty() bool {
	for _, w := range p.workers {
		if len(w.queue) > 0 {
			return false
		}
	}
	return true
}
