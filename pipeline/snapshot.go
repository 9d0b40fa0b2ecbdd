package pipeline

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/forecast"
	"github.com/omen-sidecar/omen/internal/atomicfile"
	"github.com/omen-sidecar/omen/internal/livefc"
)

// The snapshot file:
//
//	"omsn" | version uint16 | zstd(
//	{ 1 | len uint32 | record }*
//	0 | CRC-32 (IEEE) of everything before it, uncompressed )
//
// where a record is
//
//	len uint32 | labels | flags uint8 | prevRaw float64 | prevT int64 |
//	since int64 | lastHot int64 | peak float64 | quiet uint32 |
//	event int64 | longest uint32 | len uint32 | peakMember |
//	absDif float64 | nDif uint32 |
//	len uint32 | detector | len uint32 | forecaster | ingested int64 |
//	later fields
//
// Version 7 gave each record its length: a release adding a field puts it
// at the end of the record (or of the forecaster state's head, see
// appendState), and keeps the version. A release reads the fields it knows
// and skips the rest, so a rollback by a release restores every series'
// state where a new field once meant a new version, which the release
// before refused as a whole (every series warmed from TSDB history). A
// reader must take a record without the fields it knows of later than the
// record's writer (see fields.more). Versions 1 to 6 had no length before
// a record: the fields only, without later ones.
//
// Version 6 compresses what follows the version (zstd's fastest level):
// uncompressed, a series' record was ~2.9 KB, ~300 MB rewritten every
// --snapshot.interval at 100 000 series (~85 GB of disk writes a day, ten
// times the WAL's); a real file of 20 000 series went from 57 to 17 MB
// for 0.14 CPU-s, against 0.93 s to encode it. Versions 1 to 5 are not
// compressed, and their checksum follows the end tag in the file.
// little-endian; labels are name 0xff value 0xff pairs (0xff never occurs in
// UTF-8). The forecaster is empty (none), or 0 | model, or 1 | the
// pipeline's state around the model (see fcState.appendState) | model;
// version 1 held the model alone. since, lastHot and peak are the series'
// incident (see published), so an alert on it outlives a restart; versions
// 1 and 2 had none. event, longest and peakMember (version 4) are its
// events' (see incidentState): without them a restart read blips minutes
// apart as one event of minutes, and paged; a version 3 incident's current
// event starts at its latest sample. absDif and nDif (version 5) are the
// forecast accuracy's MASE scale (see series.step): rebuilt from the ~20
// samples after a restart, it scaled the first figures after each by the
// mean of a few changes. ingested (version 7's first later field) is the
// latest sample time of an ingested input the writing run had taken, the
// same in every record (see Pipeline.restoredIngested). A derived series'
// prevT is its input definition's hash (flagDef). Another version, a bad checksum or a
// truncated file is rejected as a whole, and every series warms from TSDB
// history instead.
const (
	snapMagic   = "omsn"
	snapVersion = 7
	// snapZstd: the first version whose body is compressed.
	snapZstd = 6
	// snapSized: the first version whose records carry their length.
	snapSized = 7
	// maxRecord bounds a record's length, and a field's: more is damage.
	maxRecord = 1 << 26

	flagCounter = 1 << 0
	flagHasPrev = 1 << 1
	// flagDef: a derived input's series, whose prevT holds a hash of its
	// input's definition (config.Derived.Signature; derived inputs are
	// never counters, so prevT is otherwise unused): a state learnt under
	// another expression is not restored. Snapshots before it have none,
	// and are restored as they were.
	flagDef = 1 << 2
	// flagForecaster: the series had a forecaster, saved or not (not
	// while it awaited new models, see snapCursor.series): its share of
	// --forecast.max-series is held for it after a restart (see reserve).
	// Older versions ignore it.
	flagForecaster = 1 << 3
	// flagWaiting: a restored state that no series had claimed when the
	// snapshot was taken (see encodeRestored). Loaded again at a restart,
	// it is kept for its series but no budget is held for it (at a reopen
	// of the TSDB, what was held for it still is): its series did not
	// come back for a whole run, and held from restart to restart, each
	// loading it anew, its room was held for good while omen restarted
	// more often than --detect.stale-after. Older versions ignore it.
	flagWaiting = 1 << 4
	// flagStale: the series' input had gone stale (a staleness marker,
	// nothing since) when the snapshot was taken. The versions before
	// expireRestored gave the room of any state not back for the lookback
	// read it to give only such a state's room; this one no longer needs
	// it, and writes it still for them (a downgrade). Older versions
	// ignore it.
	flagStale = 1 << 5
	// flagCurrent: the series' models had learnt every sample the TSDB
	// held of it when the snapshot was written (see snapCursor.current),
	// so that a restored series skips its catch-up's read of the TSDB
	// (100 000 Selects of every label's matcher in the first seconds
	// after a restart, all finding nothing after a graceful stop). Taken
	// only while the snapshot's current mark (see writeMark) names it:
	// the start that restores it removes the mark, so that after a crash
	// of that run, whose samples the TSDB holds, the snapshot's states
	// catch up as any. Older versions ignore it.
	flagCurrent = 1 << 6
	// flagLive: the series was live (published.live), so that samples
	// behind the clock after the restart (Prometheus resending what it
	// queued while omen was stopped) are a backlog, whose incidents are
	// held on omen's clock. Kept for a state no series claimed for a run
	// (flagWaiting): omen restarting in a loop while Prometheus queued.
	// Older versions ignore it.
	flagLive = 1 << 7
)

// savedSeries is one series read from a snapshot, waiting for its first
// sample after the restart.
type savedSeries struct {
	ls      labels.Labels
	flags   uint8
	prevRaw float64
	prevT   int64
	inc     incidentState
	absDif  float64 // the MASE scale, see series.absDif; nDif 0: none saved
	nDif    uint32
	// ingested is the latest ingested sample time its writer had taken
	// (math.MinInt64: unknown, or a release before the field).
	ingested int64
	// state is its models, and the fields of a later release after those
	// this one reads (see savedState), packed by codec.
	state    []byte
	codec    *stateCodec
	loadedAt time.Time
	// unheld: what was held of the budgets for its series is given back
	// (see Pipeline.releaseHeld); under restoreMu.
	unheld bool
}

// snapEncoder writes the snapshot file, keeping its checksum; n counts the
// series records written.
type snapEncoder struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int
	buf [8]byte
	// out is the file's own buffer, zw the compressor between w and it
	// (nil before version 6).
	out *bufio.Writer
	zw  *zstd.Encoder
}

// newSnapEncoder writes the header of a snapshot of the given version to f
// and returns the encoder of its records.
func newSnapEncoder(f io.Writer, version uint16) (*snapEncoder, error) {
	out := bufio.NewWriterSize(f, 1<<16)
	e := &snapEncoder{w: out, out: out, crc: crc32.NewIEEE()}
	var v [2]byte
	binary.LittleEndian.PutUint16(v[:], version)
	if err := e.write(append([]byte(snapMagic), v[:]...)); err != nil {
		return nil, err
	}
	if version >= snapZstd {
		// One goroutine: the snapshot runs beside the scorers, on cores
		// they need.
		zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		e.zw, e.w = zw, bufio.NewWriterSize(zw, 1<<16)
	}
	return e, nil
}

// end writes the end tag and the checksum, and flushes what is buffered
// to the file.
func (e *snapEncoder) end() error {
	if err := e.u8(0); err != nil {
		return err
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], e.crc.Sum32())
	if _, err := e.w.Write(sum[:]); err != nil {
		return err
	}
	if err := e.w.Flush(); err != nil {
		return err
	}
	if e.zw != nil {
		if err := e.zw.Close(); err != nil {
			return err
		}
	}
	return e.out.Flush()
}

func (e *snapEncoder) write(b []byte) error {
	e.crc.Write(b)
	_, err := e.w.Write(b)
	return err
}

func (e *snapEncoder) u8(v uint8) error { e.buf[0] = v; return e.write(e.buf[:1]) }

// appendLabels appends ls as name 0xff value 0xff pairs.
func appendLabels(b []byte, ls labels.Labels) []byte {
	ls.Range(func(l labels.Label) {
		b = append(b, l.Name...)
		b = append(b, 0xff)
		b = append(b, l.Value...)
		b = append(b, 0xff)
	})
	return b
}

func decodeLabels(b []byte) (labels.Labels, error) {
	parts := strings.Split(string(b), "\xff")
	if len(parts)%2 != 1 || parts[len(parts)-1] != "" {
		return labels.EmptyLabels(), errors.New("malformed labels")
	}
	sb := labels.NewScratchBuilder(len(parts) / 2)
	for i := 0; i+1 < len(parts); i += 2 {
		sb.Add(parts[i], parts[i+1])
	}
	sb.Sort()
	return sb.Labels(), nil
}

// snapSliceBytes bounds what a worker encodes in one snapshot request
// (see worker.encodeSlice): it scores the batches queued meanwhile between
// two. Encoding all its series in one went at ~13 µs a series, so at
// 100000 series each worker scored nothing for half a second or more every
// --snapshot.interval, and the ack-to-score latency and the queues took
// it; a slice of this size is ~100 series of detectors, well under a
// millisecond.
const snapSliceBytes = 256 << 10

// snapCursor is a worker's progress through one snapshot, carried from
// slice to slice. The snapshot's goroutine owns it between requests; the
// worker's goroutine (or the snapshot's, once the worker has stopped)
// fills buf during one.
type snapCursor struct {
	// refs are the worker's series when the snapshot reached it: the map
	// changes between slices, and a Go map cannot be resumed. A series
	// created meanwhile is not in this snapshot (it claimed a restored
	// state, written before, or is new); one dropped meanwhile is
	// skipped.
	refs    []storage.SeriesRef
	next    int
	started bool
	limit   int // bytes of buf after which a slice ends
	// buf holds the slice's records, n how many; lbl and det are reused
	// for every series, so a snapshot makes no garbage per series.
	buf, lbl, det []byte
	n             int
	// current: the final snapshot of a run whose drain left nothing
	// queued, its HTTP server shut down before: each series' state has
	// what the TSDB holds of it but the samples dropped unscored for a
	// full queue, which are at or before droppedMaxT.
	current     bool
	droppedMaxT int64
	// ingested is written in every record (see savedSeries.ingested).
	ingested int64
}

// reset readies c for the next worker's series.
func (c *snapCursor) reset() {
	c.refs, c.next, c.started = c.refs[:0], 0, false
}

// encodeSlice appends the records of the worker's next series to c.buf,
// until it holds c.limit bytes or every series is done (true). It runs on
// the worker's goroutine, or on the caller's once the worker has stopped.
func (w *worker) encodeSlice(c *snapCursor) (bool, error) {
	if !c.started {
		c.started = true
		for ref := range w.series {
			c.refs = append(c.refs, ref)
		}
	}
	for c.next < len(c.refs) && len(c.buf) < c.limit {
		s := w.series[c.refs[c.next]]
		c.next++
		if s == nil {
			continue // dropped since the snapshot began
		}
		if err := c.series(s); err != nil {
			return false, err
		}
	}
	return c.next == len(c.refs), nil
}

// series appends s's record to c.buf.
func (c *snapCursor) series(s *series) error {
	// Derived inputs too, by their labels: their warm start evaluates
	// their expression over at most BackfillMaxPoints past steps; the
	// snapshot keeps all they learnt.
	var err error
	c.det = c.det[:0]
	if !s.rebuild && !s.bfWait {
		// A series awaiting new models (see reconfigure) has models of
		// the options before a reload, one awaiting its history by
		// remote read models of its local history alone: saved without
		// them, it warms again after a restart (asking for the history
		// again), keeping its incident.
		if s.grp != nil {
			c.det, err = s.grp.g.AppendBinary(c.det)
		} else {
			c.det, err = s.det.AppendBinary(c.det)
		}
		if err != nil {
			return err
		}
	}
	c.lbl = appendLabels(c.lbl[:0], s.in)
	var fc []byte
	if s.fc != nil && !s.rebuild && !s.bfWait && !s.fc.warmDue {
		// A forecaster the sweep gave and that has not learnt the
		// history yet is saved without a state: it learns it after the
		// restart (see series.restore).
		if fc, err = s.fc.appendState(nil); err != nil {
			return err
		}
	}
	var flags uint8
	if s.counter {
		flags |= flagCounter
	}
	if s.fc != nil {
		flags |= flagForecaster
	}
	if s.hasPrev {
		flags |= flagHasPrev
	}
	if s.pub.stale {
		flags |= flagStale
	}
	if c.current && s.current(c.droppedMaxT) {
		flags |= flagCurrent
	}
	if s.pub.live {
		flags |= flagLive
	}
	prevT := s.prevT
	if isDerived(s) {
		flags, prevT = flags|flagDef, int64(defHash(s.def))
	}
	nDif := uint32(min(int64(s.nDif), math.MaxUint32))
	c.buf = appendRecord(c.buf, c.lbl, flags, s.prevRaw, prevT, s.pub.incidentState, s.absDif, nDif, c.det, fc, c.ingested, nil)
	c.n++
	return nil
}

// appendRecord appends one series' record to b, its fields then ext (a
// later release's, see savedSeries.ext).
func appendRecord(b, lbl []byte, flags uint8, prevRaw float64, prevT int64, inc incidentState, absDif float64, nDif uint32, det, fc []byte, ingested int64, ext []byte) []byte {
	le := binary.LittleEndian
	b = append(b, 1, 0, 0, 0, 0)
	start := len(b)
	b = appendBytes(b, lbl)
	b = append(b, flags)
	b = le.AppendUint64(b, math.Float64bits(prevRaw))
	b = le.AppendUint64(b, uint64(prevT))
	b = le.AppendUint64(b, uint64(inc.since))
	b = le.AppendUint64(b, uint64(inc.lastHot))
	b = le.AppendUint64(b, math.Float64bits(inc.peak))
	b = le.AppendUint32(b, inc.quiet)
	b = le.AppendUint64(b, uint64(inc.event))
	b = le.AppendUint32(b, inc.longest)
	b = appendBytes(b, []byte(inc.peakMember))
	b = le.AppendUint64(b, math.Float64bits(absDif))
	b = le.AppendUint32(b, nDif)
	b = appendBytes(b, det)
	b = appendBytes(b, fc)
	b = le.AppendUint64(b, uint64(ingested))
	b = append(b, ext...)
	le.PutUint32(b[start-4:], uint32(len(b)-start))
	return b
}

// appendBytes appends v with its length before it.
func appendBytes(b, v []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(b, uint32(len(v))), v...)
}

// flush writes c's records to the file and empties c.buf.
func (e *snapEncoder) flush(c *snapCursor) error {
	err := e.write(c.buf)
	e.n += c.n
	c.buf, c.n = c.buf[:0], 0
	return err
}

// encodeRestored writes the restored states no series has claimed yet
// (their first sample since the restart has not come): a snapshot taken
// before it comes must keep them, or a second restart loses them.
func (p *Pipeline) encodeRestored(e *snapEncoder, c *snapCursor) error {
	p.restoreMu.Lock()
	var waiting []*savedSeries
	for _, list := range p.restored {
		waiting = append(waiting, list...)
	}
	p.restoreMu.Unlock()
	for _, s := range waiting { // immutable once read
		st, err := s.unpack()
		if err != nil {
			return err
		}
		c.lbl = appendLabels(c.lbl[:0], s.ls)
		// Not current: only a claimed state is known to be (see
		// snapCursor.current).
		c.buf = appendRecord(c.buf, c.lbl, s.flags&^flagCurrent|flagWaiting, s.prevRaw, s.prevT, s.inc, s.absDif, s.nDif, st.det, st.fc, c.ingested, st.ext)
		c.n++
		if len(c.buf) >= c.limit {
			if err := e.flush(c); err != nil {
				return err
			}
		}
	}
	return e.flush(c)
}

// snapshot writes every worker's state to SnapshotPath atomically: a
// temporary file, fsynced, renamed over the old one, the directory fsynced.
// Once ctx is done it is abandoned, the old one left in place, and it
// reports true; the caller says so (see writeSnapshot).
func (p *Pipeline) snapshot(ctx context.Context) (abandoned bool) {
	if p.opts.SnapshotPath == "" {
		return false
	}
	// Its wait for one under way (a TSDB reopen's, see StorageReopened,
	// seconds at 100 000 series) is within ctx too: the final snapshot's
	// bound (ShutdownSnapshot) did not cover it, and a reopen during a
	// shutdown held the pod past its grace.
	select {
	case p.snapSem <- struct{}{}:
	case <-ctx.Done():
		return true
	}
	defer func() { <-p.snapSem }()
	start := time.Now()
	n, err := p.writeSnapshot(ctx, p.opts.SnapshotPath)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return true
	}
	if err != nil {
		p.m.snapFailures.Inc()
		p.logger.Error("Writing model snapshot", "path", p.opts.SnapshotPath, "err", err)
		return false
	}
	p.m.snapLast.Set(float64(p.opts.Now().UnixNano()) / 1e9)
	p.logger.Info("Model snapshot written", "path", p.opts.SnapshotPath, "series", n, "duration", time.Since(start))
	if p.bf != nil {
		if err := p.bf.saveExtSets(p.extSetsPath()); err != nil {
			p.logger.Warn("Writing the learnt external labels of the backfill upstream; they are learnt again after a restart", "err", err)
		}
	}
	return false
}

// extSetsPath is ExtSetsFile's path, beside the snapshot.
func (p *Pipeline) extSetsPath() string {
	return filepath.Join(filepath.Dir(p.opts.SnapshotPath), ExtSetsFile)
}

func (p *Pipeline) writeSnapshot(ctx context.Context, path string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, fmt.Errorf("create snapshot directory: %w", err)
	}
	if p.opts.SnapshotRoom != nil {
		// About the last snapshot's size, and at least 512 bytes a series
		// (compressed, they took ~0.85 KB: the floor is for series added
		// since a small one); or ~3 KiB a series, uncompressed, for a
		// first.
		series := int64(p.scored.Load())
		need := series * 3 << 10
		if fi, err := os.Stat(path); err == nil {
			need = max(series*512, fi.Size()*5/4)
		}
		if err := p.opts.SnapshotRoom(need); err != nil {
			return 0, fmt.Errorf("no room for the snapshot (about %d bytes): %w", need, err)
		}
	}
	// Done, it is abandoned between two slices, and before the fsync,
	// which on a slow volume takes seconds of its own.
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Whole or not at all, and durably (atomicfile.Write): the current
	// mark written after names what is on disk. The temporary's name is
	// fixed: one a crash left, of the snapshot's size, is removed by the
	// next write.
	var e *snapEncoder
	var c *snapCursor
	err := atomicfile.Write(path, path+".tmp", 0o644, func(f *os.File) error {
		var err error
		e, err = newSnapEncoder(f, snapVersion)
		if err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
		// The unclaimed restored states first: a series that claims its
		// state meanwhile is then written twice, never not at all, and
		// restore keeps the later record, the worker's.
		c = &snapCursor{limit: snapSliceBytes, current: p.final.Load(), droppedMaxT: p.droppedMaxT.Load(), ingested: p.latestIngested()}
		if err := p.encodeRestored(e, c); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
		for _, w := range p.workers {
			if err := w.encodeVia(ctx, e, c); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := e.end(); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if c.current && p.committing.Load() == 0 && p.droppedMaxT.Load() == c.droppedMaxT && p.queuesEmpty() {
		// Nothing taken for scoring since the drain either (a write
		// request outliving the HTTP server's grace), nor being taken: a
		// commit under way is counted before it reads final, and ends
		// after its batch is queued (or dropped), so it is seen here
		// whichever it is; one begun after is refused (see
		// tapAppender.Commit).
		if err := writeMark(path, e.crc.Sum32(), latestStored(p.st)); err != nil {
			p.logger.Warn("Writing the snapshot's current mark; the next start catches every restored series up from the TSDB", "err", err)
		}
	}
	return e.n, nil
}

// encodeVia writes the worker's series to e, slice by slice (see
// encodeSlice): each encoded on the worker's goroutine, which scores what
// is queued between two, or directly once it is not running (before Run,
// or after it stopped: the final snapshot). The file and its checksum are
// written here, on the snapshot's goroutine.
func (w *worker) encodeVia(ctx context.Context, e *snapEncoder, c *snapCursor) error {
	c.reset()
	done := make(chan error, 1)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		fin, err := w.sliceVia(c, done)
		if err != nil {
			return err
		}
		if err := e.flush(c); err != nil {
			return err
		}
		if fin {
			return nil
		}
	}
}

// sliceVia has the worker encode one slice into c.buf; true when its
// series are all done.
func (w *worker) sliceVia(c *snapCursor, done chan error) (bool, error) {
	select {
	case <-w.done:
		return w.encodeSlice(c)
	default:
	}
	r := snapReq{cur: c, done: done}
	select {
	case w.snap <- r:
		// The worker's send happens before this receive: c is ours again.
		err := <-done
		return err == nil && c.next == len(c.refs), err
	case <-w.done:
		return w.encodeSlice(c)
	}
}

// restore loads the snapshot, if any, into p.restored. Problems are logged
// and the affected series warm from history: never a crash.
func (p *Pipeline) restore() {
	if p.opts.SnapshotPath == "" {
		return
	}
	if p.bf != nil {
		if err := p.bf.loadExtSets(p.extSetsPath(), p.opts.Now()); err != nil {
			p.logger.Warn("Reading the learnt external labels of the backfill upstream; they are learnt again", "err", err)
		}
	}
	// The forecasters the configuration gives the series now, as their
	// first samples will find them, refuse some states (see fcRefusal):
	// counted for the log below.
	cfg := p.cfg.Load()
	var hz horizonCache
	codec := &stateCodec{refuse: func(s *savedSeries, fc []byte) error {
		sc, ok := scoringOf(cfg, s.ls, s.ls.Get(model.MetricNameLabel), s.flags&flagDef != 0)
		if !ok || len(sc.ForecastHorizons) == 0 {
			return nil // not forecast now
		}
		return fcRefusal(fc, hz.of(sc).longest())
	}}
	mark := p.mark
	p.mark = nil // the first restore's: a reopen of the TSDB restores a snapshot of this run
	saved, err := readSnapshot(p.opts.SnapshotPath, p.opts.Now(), codec)
	switch {
	case errors.Is(err, os.ErrNotExist):
		p.logger.Info("No model snapshot; series warm from TSDB history", "path", p.opts.SnapshotPath)
		return
	case err != nil:
		p.logger.Warn("Model snapshot unusable; series warm from TSDB history", "path", p.opts.SnapshotPath, "err", err)
		return
	}
	// current: the states that skip their catch-up's read (see
	// flagCurrent), said in the log: after a graceful stop all but those
	// whose samples were dropped, else 0.
	current, marked := 0, codec.marked(mark, latestStored(p.st))
	for _, s := range saved {
		if !marked {
			s.flags &^= flagCurrent
		} else if s.flags&flagCurrent != 0 {
			current++
		}
	}
	m := make(map[uint64][]*savedSeries, len(saved))
	n := 0
next:
	for _, s := range saved {
		h := s.ls.Hash()
		for i, o := range m[h] {
			if labels.Equal(o.ls, s.ls) {
				m[h][i] = s // a later record of the same series is newer
				continue next
			}
		}
		m[h] = append(m[h], s)
		n++
	}
	// Models of a release whose detector state this one does not read (an
	// upgrade across many versions, a rollback) warm from history series
	// by series, as they come (see series.restore), which logs nothing:
	// said here, once, with how many and why (counted as they were read,
	// a record replaced by a later one's included).
	unreadable, why := codec.unreadable, codec.why
	p.restoreMu.Lock()
	var held, fc int64
	for _, list := range m {
		for _, s := range list {
			if s.flags&flagWaiting != 0 && !p.stillHeldLocked(s.ls) {
				s.unheld = true // nothing held for it
				continue
			}
			held++
			if s.forecaster() {
				fc++
			}
		}
	}
	p.restored, p.restoredLatest = m, latestStored(p.st)
	p.restoredIngested = p.restoredLatest
	if ingested := savedIngested(saved); marked && ingested != math.MinInt64 && p.restoredLatest != math.MinInt64 {
		p.restoredIngested = min(ingested, p.restoredLatest)
	}
	// The series scored and forecast before keep their budget when they
	// come back (see reserve), as many as the budgets now allow.
	p.scoredHeld.Store(min(held, int64(p.opts.MaxSeries)))
	p.fcHeld.Store(min(fc, int64(p.opts.ForecastMaxSeries)))
	p.restoreMu.Unlock()
	// The last snapshot written is the one restored, by the process before
	// (at its shutdown, or its last period): the gauge read 0 until this
	// process's first, and a dashboard's "since the last snapshot" 56 years.
	if fi, err := os.Stat(p.opts.SnapshotPath); err == nil {
		p.m.snapLast.Set(float64(fi.ModTime().UnixNano()) / 1e9)
	}
	attrs := []any{"path", p.opts.SnapshotPath, "series", n, "current", current}
	if unreadable > 0 {
		attrs = append(attrs, "unreadable", unreadable, "err", why)
	}
	// Forecasters of other steps or options than their horizons get now
	// (an upgrade that changed them, or horizons changed while omen was
	// down): they first forecast again after twice their longest horizon's
	// steps plus 64, hours for a capacity horizon, which the log told
	// nothing of.
	if codec.refused > 0 {
		attrs = append(attrs, "forecasters_refused", codec.refused, "forecasters_refused_err", codec.refusedWhy)
	}
	switch {
	case unreadable > 0:
		p.logger.Warn("Model snapshot restored, but some series' models (detector or forecaster) are of a release this one does not read; those warm again from TSDB history, their incidents kept", attrs...)
	case codec.refused > 0:
		p.logger.Warn("Model snapshot restored, but some series' forecasters were saved with other steps or options than their horizons get now; those learn again from TSDB history and forecast again hours later, their incidents kept", attrs...)
	default:
		p.logger.Info("Model snapshot restored", attrs...)
	}
}

// staleDeselected marks stale the stored outputs of the restored series
// that the configuration does not select (omen restarted with another
// --config.file, or without a derived input), as worker.reconfigure does
// for the series a reload deselects: nothing else ended them, and PromQL
// read their last results as live for its lookback delta (a Grafana panel,
// an alert on anomaly_score > 1). Their states are kept for a reload that
// selects them again (see keepRestored). A restart after finds the markers
// and appends none. It runs before the workers do, so no result of theirs
// comes between a series' latest output read and its marker.
func (p *Pipeline) staleDeselected(ctx context.Context) {
	cfg := p.cfg.Load()
	var gone []*savedSeries
	p.restoreMu.Lock()
	for _, list := range p.restored {
		for _, s := range list {
			if _, ok := scoringOf(cfg, s.ls, s.ls.Get(model.MetricNameLabel), s.flags&flagDef != 0); !ok {
				gone = append(gone, s)
			}
		}
	}
	p.restoreMu.Unlock()
	if len(gone) == 0 {
		return
	}
	out := p.newOutputs(ctx)
	q, err := p.st.Querier(out.minT, math.MaxInt64)
	if err != nil {
		_ = out.app.Rollback()
		if out.fwd != nil {
			_ = out.fwd.Rollback()
		}
		p.logger.Warn("Reading the outputs of the restored series the configuration does not select; they are not marked stale", "err", err)
		return
	}
	markT := markerTime(p.st, p.opts.Now())
	for _, s := range gone {
		out.staleStored(ctx, q, s.ls, s.ls.Get(model.MetricNameLabel), markT, false)
	}
	_ = q.Close()
	if err := out.commit(); err != nil {
		p.logger.Debug("Marking outputs stale", "err", err)
		p.m.outputErrors.Inc()
	}
}

// readSnapshot reads the snapshot at path, its records' states packed by
// codec (see savedState), which then only unpacks.
func readSnapshot(path string, now time.Time, codec *stateCodec) ([]*savedSeries, error) {
	defer codec.done()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < int64(len(snapMagic))+2+1+4 {
		return nil, fmt.Errorf("snapshot of %d bytes is truncated", size)
	}
	head := make([]byte, len(snapMagic)+2)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	if string(head[:4]) != snapMagic {
		return nil, errors.New("not an omen model snapshot")
	}
	version := binary.LittleEndian.Uint16(head[4:])
	if version < 1 || version > snapVersion {
		return nil, fmt.Errorf("snapshot version %d, want %d", version, snapVersion)
	}
	// First pass: the checksum, so nothing is decoded from a damaged file.
	body := io.NewSectionReader(f, int64(len(head)), size-int64(len(head)))
	var r *bufio.Reader
	var left int64 // the bytes of records, end tag and checksum
	if version >= snapZstd {
		// Decompressed twice rather than held: at 100 000 series it is
		// ~300 MB, and decompressing costs a tenth of decoding.
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		defer zr.Close()
		sum := &checked{crc: crc32.NewIEEE()}
		sum.crc.Write(head)
		if _, err := io.Copy(sum, zr); err != nil {
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		if !sum.ok() {
			return nil, errors.New("snapshot checksum mismatch")
		}
		codec.sum, codec.size, left = sum.crc.Sum32(), size, sum.n
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		if err := zr.Reset(body); err != nil {
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		r = bufio.NewReader(zr)
	} else {
		crc := crc32.NewIEEE()
		if _, err := io.Copy(crc, io.NewSectionReader(f, 0, size-4)); err != nil {
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		var sum [4]byte
		if _, err := f.ReadAt(sum[:], size-4); err != nil {
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		if binary.LittleEndian.Uint32(sum[:]) != crc.Sum32() {
			return nil, errors.New("snapshot checksum mismatch")
		}
		r = bufio.NewReader(io.NewSectionReader(f, int64(len(head)), size-4-int64(len(head))))
		left = size - int64(len(head))
	}
	d := decoder{r: r, left: left - 4}
	if version >= snapSized {
		return readSized(&d, now, codec)
	}
	return readRecords(&d, codec, func() (*savedSeries, savedState, error) { return readFields(&d, version, now) })
}

// readRecords reads the records that follow d's header, each with read,
// until the end tag, and packs their states with codec.
func readRecords(d *decoder, codec *stateCodec, read func() (*savedSeries, savedState, error)) ([]*savedSeries, error) {
	var out []*savedSeries
	for {
		tag := d.u8()
		if d.err != nil || tag == 0 {
			break
		}
		s, st, err := read()
		if d.err == nil {
			d.err = err
		}
		if d.err != nil {
			break
		}
		codec.add(s, st)
		out = append(out, s)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", d.err)
	}
	return out, nil
}

// recordReader reads a record's fields in turn: decoder from the stream
// (versions 1 to 6), fields from a record read whole (later ones).
type recordReader interface {
	u8() uint8
	u32() uint32
	u64() uint64
	bytes() []byte
}

// readFields reads the fields of a record of version, in the order
// appendRecord writes them; the error is the labels'. A read error stays
// in r. The state returned is of r's memory.
func readFields(r recordReader, version uint16, now time.Time) (*savedSeries, savedState, error) {
	ls, err := decodeLabels(r.bytes())
	s := &savedSeries{ls: ls, flags: r.u8(), prevRaw: math.Float64frombits(r.u64()), prevT: int64(r.u64()), ingested: math.MinInt64, loadedAt: now}
	if version >= 3 {
		s.inc = incidentState{since: int64(r.u64()), lastHot: int64(r.u64()), peak: math.Float64frombits(r.u64()), quiet: r.u32()}
		s.inc.event = s.inc.lastHot
	}
	if version >= 4 {
		s.inc.event, s.inc.longest, s.inc.peakMember = int64(r.u64()), r.u32(), string(r.bytes())
	}
	if version >= 5 {
		s.absDif, s.nDif = math.Float64frombits(r.u64()), r.u32()
	}
	if !s.inc.plausible() {
		// Damage under a valid checksum: the models are restored
		// without it.
		s.inc = incidentState{}
	}
	var st savedState
	st.det, st.fc = r.bytes(), r.bytes()
	if version == 1 && len(st.fc) > 0 {
		st.fc = append([]byte{0}, st.fc...) // the model alone
	}
	return s, st, err
}

// plausible reports whether inc is one incident could have kept: none
// (since 0), or since ≤ event ≤ lastHot, sample times within the years
// JSON's RFC 3339 writes (0 to 9999), and a peak that is a score. A since
// before the year 0, read from a damaged record, made every answer of the
// anomalies API a 500 while its incident lasted.
func (inc *incidentState) plausible() bool {
	if inc.since == 0 {
		return true
	}
	first := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	last := time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
	return first <= inc.since && inc.since <= inc.event && inc.event <= inc.lastHot && inc.lastHot <= last && inc.peak >= 0
}

// readSized reads the records of a snapshot of version snapSized or later,
// each whole, then its fields (see fields): those of a later release are
// kept in ext.
func readSized(d *decoder, now time.Time, codec *stateCodec) ([]*savedSeries, error) {
	var r fields // one for every record: through recordReader it is on the heap
	var rec []byte
	return readRecords(d, codec, func() (*savedSeries, savedState, error) {
		// Every record in one buffer: what the series keeps of it is
		// copied (the labels, the peak's member, the packed state).
		// Allocated a record at a time, they were ~2.2 KB of garbage a
		// series, 216 MB at 100 000, made during the restore.
		rec = d.bytesInto(rec)
		r = fields{b: rec}
		s, st, err := readFields(&r, snapSized, now)
		if r.more() {
			s.ingested = int64(r.u64())
		}
		if r.more() {
			st.ext = r.b
		}
		return s, st, cmp.Or(r.err, err)
	})
}

// fields reads a record's fields from b, in turn; a field past b's end
// sets err.
type fields struct {
	b   []byte
	err error
}

// more reports whether fields follow: a field a later release than the
// record's writer added is read only if so (the record is of a release
// before it otherwise), as in
//
//	if r.more() { s.x = r.u64() }
func (r *fields) more() bool { return len(r.b) > 0 }

// next returns the next n bytes, capped so that an append to them cannot
// write over the field after; nil past the end.
func (r *fields) next(n int) []byte {
	if r.err == nil && n > len(r.b) {
		r.err = fmt.Errorf("record truncated: a field of %d bytes, %d left", n, len(r.b))
	}
	if r.err != nil {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// num returns the next n (at most 8) bytes, zeros past the end.
func (r *fields) num(n int) []byte {
	if v := r.next(n); v != nil {
		return v
	}
	return make([]byte, 8)[:n] // does not escape: no allocation
}

func (r *fields) u8() uint8   { return r.num(1)[0] }
func (r *fields) u32() uint32 { return binary.LittleEndian.Uint32(r.num(4)) }
func (r *fields) u64() uint64 { return binary.LittleEndian.Uint64(r.num(8)) }

func (r *fields) bytes() []byte { return r.next(int(min(r.u32(), maxRecord+1))) }

// checked takes a decompressed snapshot: the checksum of all but its last
// 4 bytes, which are the checksum written; n counts the bytes.
type checked struct {
	crc  hash.Hash32
	tail []byte
	n    int64
}

func (c *checked) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	c.tail = append(c.tail, b...)
	if n := len(c.tail) - 4; n > 0 {
		c.crc.Write(c.tail[:n])
		c.tail = append(c.tail[:0], c.tail[n:]...)
	}
	return len(b), nil
}

func (c *checked) ok() bool {
	return len(c.tail) == 4 && binary.LittleEndian.Uint32(c.tail) == c.crc.Sum32()
}

// decoder reads a snapshot's records from r; left is what r holds still,
// read from the file's size or its first pass (see readSnapshot), so that
// a length that claims more is refused before its buffer is made.
type decoder struct {
	r    *bufio.Reader
	err  error
	buf  [8]byte
	left int64
}

func (d *decoder) read(n int) []byte {
	if d.err != nil {
		return d.buf[:n]
	}
	_, d.err = io.ReadFull(d.r, d.buf[:n])
	d.left -= int64(n)
	return d.buf[:n]
}

func (d *decoder) u8() uint8   { return d.read(1)[0] }
func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.read(4)) }
func (d *decoder) u64() uint64 { return binary.LittleEndian.Uint64(d.read(8)) }

func (d *decoder) bytes() []byte { return d.bytesInto(nil) }

// bytesInto is bytes read into buf's memory if it has room.
func (d *decoder) bytesInto(buf []byte) []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if n > maxRecord {
		d.err = fmt.Errorf("record of %d bytes is implausible", n)
		return nil
	}
	if int64(n) > d.left {
		d.err = fmt.Errorf("record of %d bytes, %d left in the snapshot", n, max(d.left, 0))
		return nil
	}
	d.left -= int64(n)
	b := buf[:0]
	if cap(b) < int(n) {
		b = make([]byte, n)
	}
	b = b[:n]
	_, d.err = io.ReadFull(d.r, b)
	return b
}

// takeRestored removes and returns the saved state of the series ls.
func (p *Pipeline) takeRestored(ls labels.Labels) *savedSeries {
	p.restoreMu.Lock()
	defer p.restoreMu.Unlock()
	if p.restored == nil {
		return nil
	}
	h := ls.Hash()
	list := p.restored[h]
	for i, s := range list {
		if labels.Equal(s.ls, ls) {
			list = append(list[:i], list[i+1:]...)
			if len(list) == 0 {
				delete(p.restored, h)
			} else {
				p.restored[h] = list
			}
			return s
		}
	}
	return nil
}

// stillHeldLocked reports whether room is held now for the state of the
// series ls waiting in p.restored (restoreMu held): at a reopen of the
// TSDB (Pipeline.StorageReopened), a state still waiting since the
// restart keeps what is held for it.
func (p *Pipeline) stillHeldLocked(ls labels.Labels) bool {
	for _, s := range p.restored[ls.Hash()] {
		if labels.Equal(s.ls, ls) {
			return !s.unheld
		}
	}
	return false
}

// keepRestored puts back the saved state of a series that create took and
// did not score (the budget full, or not selected): a series that gets
// room at the sweep, or that a reload selects, takes it then, and the
// snapshots keep it until it expires, as before it was taken. Not if its
// series has another by now (the TSDB was reopened meanwhile).
func (p *Pipeline) keepRestored(saved *savedSeries) {
	if saved == nil {
		return
	}
	p.restoreMu.Lock()
	defer p.restoreMu.Unlock()
	if p.restored == nil {
		return
	}
	h := saved.ls.Hash()
	for _, s := range p.restored[h] {
		if labels.Equal(s.ls, saved.ls) {
			return
		}
	}
	p.restored[h] = append(p.restored[h], saved)
}

// expireRestored forgets saved states whose series did not come back
// within StaleAfter, stale forecast accuracy entries and the anomaly
// counters of input names no longer scored. A saved state goes by the
// sweep's rule (see worker.sweep): StaleAfter on omen's clock since it
// was loaded and in sample time, samples having come from StaleAfter
// after the latest the TSDB held then. On omen's clock alone, an omen
// restarted while its senders had stopped (Prometheus down, remote_write
// cut off) dropped every saved model an hour later while nothing arrived,
// and the series, back, warmed from at most --backfill.max-points of
// history (a day's seasonality lost) with their incidents gone; the live
// series of an omen not restarted kept theirs. While series are
// refused for want of room, the states of series that have not come back
// for Prometheus's lookback since the restart give back the room held for
// them, and are kept as a waiting state is: held for StaleAfter, a
// Recreate rollout during which omen restarted (the old pods' series
// stale before the snapshot) left the new pods unscored for an hour, and
// so did a change of the shard count the pods restarted for (the series
// moved to other shards, with no marker, held the room of those gained),
// where without the restart the sweep gave them the room after the
// lookback (see worker.sweep).
func (p *Pipeline) expireRestored() {
	now := p.opts.Now()
	// An ingested series' state ages by the ingested samples alone, as
	// the sweep ages a live one: a derived input's samples, omen's
	// evaluations, go on while every sender is down, and aged the
	// ingested series' states then as if their senders had come back.
	// A derived input's state ages by the later of the two kinds': its
	// own, as the sweep's, and the ingested ones for one removed from the
	// configuration, whose kind's samples stop where omen evaluates no
	// derived input that yields (all removed at a reload, an absent()
	// guard). Taken as the older of the two, that stop kept both kinds'
	// states of series gone for good, with the senders back.
	arrived := p.arrivedMs()
	ingested, either := arrived[0], arrived[0]
	if either == 0 || arrived[1] != 0 && arrived[1] < either {
		either = arrived[1]
	}
	derived := max(arrived[0], arrived[1])
	p.acc().expire(now.UnixMilli(), p.opts.StaleAfter.Milliseconds(), either)
	p.m.names.expire(p.m.anomalies, now.UnixMilli())
	refused := p.overBudgetNow.Load() > 0
	p.restoreMu.Lock()
	defer p.restoreMu.Unlock()
	// Nothing since the restart (arrived 0) passes no state; nor does a
	// TSDB that held no sample (latest unknown) keep them for good.
	// An ingested input's state ages from the latest ingested sample
	// before the restart (see restoredIngested), a derived input's from
	// the latest sample the TSDB held (restoredLatest).
	passedBy := func(arrived, latest int64) bool {
		return latest == math.MinInt64 || arrived-latest > p.opts.StaleAfter.Milliseconds()
	}
	passedIngested, passedDerived := passedBy(ingested, p.restoredIngested), passedBy(derived, p.restoredLatest)
	for h, list := range p.restored {
		if len(list) > 0 && now.Sub(list[0].loadedAt) > p.opts.StaleAfter {
			kept := list[:0]
			for _, s := range list {
				if s.flags&flagDef == 0 && passedIngested || s.flags&flagDef != 0 && passedDerived {
					p.releaseHeldLocked(s)
					continue
				}
				kept = append(kept, s)
			}
			if len(kept) == 0 {
				delete(p.restored, h)
				continue
			}
			clear(list[len(kept):])
			p.restored[h], list = kept, kept
		}
		if !refused {
			continue
		}
		for _, s := range list {
			if now.Sub(s.loadedAt).Milliseconds() > lookbackMs {
				p.releaseHeldLocked(s)
			}
		}
	}
}

// savedIngested is the latest ingested sample time the snapshot's writer
// had taken (see savedSeries.ingested), math.MinInt64 if a record does not
// say: a release before the field, rolled back to, writes it back in the
// states still waiting (their ext) and not in the others, and a time of
// the run before it would age them all from then.
func savedIngested(saved []*savedSeries) int64 {
	t := int64(math.MinInt64)
	for i, s := range saved {
		if s.ingested == math.MinInt64 {
			return math.MinInt64
		}
		if i == 0 || s.ingested > t {
			t = s.ingested
		}
	}
	return t
}

// latestIngested is what a snapshot records as the latest ingested sample
// time (see savedSeries.ingested): the workers' latest, or the restored
// snapshot's while they have taken none (the senders down all this run),
// math.MinInt64 if neither knows.
func (p *Pipeline) latestIngested() int64 {
	t := p.arrivedMs()[0]
	if t == 0 {
		t = math.MinInt64
	}
	p.restoreMu.Lock()
	defer p.restoreMu.Unlock()
	return max(t, p.restoredIngested)
}

// counter reports whether the series was saved as a counter.
func (saved *savedSeries) counter() bool { return saved.flags&flagCounter != 0 }

// live reports whether the restored series was live (see published.live).
func (saved *savedSeries) live() bool { return saved.flags&flagLive != 0 }

// forecaster reports whether the series had a forecaster: one saved, or,
// awaiting new models when the snapshot was taken, not saved (a snapshot
// of an older version has only the first).
func (saved *savedSeries) forecaster() bool {
	return saved.flags&flagForecaster != 0 // set at the read for a state saved (see stateCodec.add)
}

// unpack returns the saved state, in memory of its own.
func (saved *savedSeries) unpack() (savedState, error) { return saved.codec.unpack(saved.state) }

// restore loads saved state into s; false if it does not decode (another
// detector version, say), in which case s warms from history.
func (s *series) restore(saved *savedSeries) bool {
	if saved.flags&flagDef != 0 && uint64(saved.prevT) != defHash(s.def) {
		// A derived input whose definition changed while omen was down:
		// its models learnt another quantity.
		return false
	}
	st, err := saved.unpack()
	if err != nil {
		return false
	}
	if s.grp != nil {
		if err := s.grp.g.Restore(st.det); err != nil {
			return false
		}
		s.pub.incidentState = saved.inc
		s.pub.ready = s.grp.g.Ready()
		return true
	}
	// Its forecaster learnt the steps of other horizons (an upgrade
	// across the horizons' steps, or horizons changed while omen was
	// down): the detector, which steps with the samples, is restored,
	// and the forecaster learns the TSDB's history again at the next
	// sample. A derived input's history is evaluated again whole, as
	// after a reload to them.
	fcOther := s.fc != nil && !s.fc.sameSteps(st.fc)
	if fcOther && saved.flags&flagDef != 0 {
		return false
	}
	// Restore keeps the options the configuration gives now.
	if err := s.det.Restore(st.det); err != nil {
		return false
	}
	fcLost := fcOther
	if s.fc != nil && len(st.fc) > 0 && !fcOther {
		if err := s.fc.restoreState(st.fc); err != nil {
			// A later release's or damaged: started afresh, and
			// warmed as one without a state is (the load said why).
			s.fc = newFcStateOf(s.fc.horizonSet, s.ref)
			fcLost = true
		}
	}
	if s.fc != nil && (saved.flags&flagDef != 0 || fcLost) {
		// A derived input's history is its evaluations, which a replay
		// does not read: its new horizons calibrate on live checks, as
		// a new forecaster's do.
		s.fc.floorsDue = 0
	}
	if s.fc != nil && (len(st.fc) == 0 || fcLost) && saved.flags&flagDef == 0 {
		// The snapshot has no state of its forecaster it reads: one
		// the sweep gave before its next sample, one given now (the
		// series had none, and --forecast.max-series has room), or one
		// of a later release. It learns the series' history at its next
		// sample, as the sweep's does; it learnt from live samples only,
		// and forecast 192 steps later.
		s.fc.warmDue = true
	}
	s.counter = saved.counter()
	s.hasPrev = saved.flags&flagHasPrev != 0
	if saved.flags&flagDef == 0 {
		s.prevRaw, s.prevT = saved.prevRaw, saved.prevT
	}
	// The incident goes on if the next sample comes within the hold (see
	// published.active for one whose latest event sample is after it).
	s.pub.incidentState = saved.inc
	if isFinite(saved.absDif) && saved.absDif >= 0 {
		// Else damage under a valid checksum: rebuilt, as from a
		// snapshot without it.
		s.absDif, s.nDif = saved.absDif, int(saved.nDif)
	}
	s.pub.ready = s.det.Ready()
	// Without a result yet, a sample at or before the latest the restored
	// models took in is out of order for them (series.outOfOrder): a
	// sender resending what it sent before the restart, or older history
	// the TSDB's out-of-order window took, is not scored again. Scored, it
	// stepped the models back in time and its results went over the
	// stored ones (a resent latest sample's, as duplicates the TSDB
	// refused: four output append failures a series).
	return true
}

// The forecaster's state, as appendState writes it: a tag byte, the
// resampler's and fcState's fields (fcStateFields of them with tag 2,
// fcStateFields1 with tag 1, the fixed-step resampler's before 2026-12-05),
// with tag 3 one more (the bands' unit, stepDif, and how many horizons'
// floors follow) and the floors, 4 bytes each; then the model. Tag 0 is
// the model alone. Tag 4 is tag 3 with the length of what follows the tag
// up to the model (the head) after the tag, a uint32: a release adding a
// field to the state puts it at the end of the head, and keeps the tag; a
// release reads the fields it knows and skips the rest (see snapSized).
// The first field so added (2026-12-07) is the horizons the floors are of,
// after them: an int64 of nanoseconds each, in the floors' order (see
// floorsByHorizon). A head without them has its floors by position.
const (
	fcStateFields  = 15
	fcStateFields1 = 11
	fcStateFields3 = fcStateFields + 1
)

// fcStateLen is the size of what appendState writes before the model, as
// b's head tells (0 for a tag it does not know, or a tag 3 or 4 head too
// short to tell or to hold its floors).
func fcStateLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	switch b[0] {
	case 1:
		return 1 + fcStateFields1*8
	case 2:
		return 1 + fcStateFields*8
	case 3, 4:
		at := fcFieldsAt(b)
		n := at + fcStateFields3*8
		if len(b) < n {
			return 0
		}
		floors := binary.LittleEndian.Uint64(b[n-8:]) >> 32
		if floors > maxHorizons {
			return 0
		}
		n += 4 * int(floors)
		if b[0] == 4 {
			head := binary.LittleEndian.Uint32(b[1:])
			if uint64(head) < uint64(n-at) || head > maxRecord {
				return 0
			}
			n = at + int(head)
		}
		return n
	}
	return 0
}

// fcFieldsAt is where the fields of the forecaster state b begin: after
// its tag, and with tag 4 its head's length.
func fcFieldsAt(b []byte) int {
	if b[0] >= 4 {
		return 1 + 4
	}
	return 1
}

// maxHorizons bounds the floors a tag 3 state may claim: more horizons
// than any configuration gives is damage.
const maxHorizons = 1 << 10

// appendState appends the forecaster's snapshot to b: the resampler's open
// step (without it the first step after a restart is a partial mean, and
// the input interval is learnt again), the within-step spread that widens
// the bands (restarting it at 0 made the bands too narrow for the first
// ~32 steps after every restart), when the last forecast was made, and
// the bands' calibrated floors with their unit (restarting them at their
// minimum made the bands too narrow again for about a day of checks); then
// the model. A release before tag 4 reads it as damage and warms the
// forecaster from history, the rest of the series restored; from tag 4, a
// field added goes at the end of the head (after the floors and their
// horizons, which the release before skips).
func (f *fcState) appendState(b []byte) ([]byte, error) {
	r := &f.rs
	closed := uint64(0)
	if r.Closed {
		closed = 1
	}
	b = append(b, 4, 0, 0, 0, 0)
	start := len(b)
	for _, u := range [fcStateFields3]uint64{
		uint64(r.MinStepMs), uint64(r.IV[0]), uint64(r.IV[1]), uint64(r.IV[2]), uint64(r.Ref), closed, uint64(r.Ctr),
		uint64(r.N), uint64(r.First), uint64(r.LastT), math.Float64bits(r.X0), math.Float64bits(r.DSum), math.Float64bits(r.DSq),
		math.Float64bits(f.within), uint64(f.made),
		uint64(math.Float32bits(f.stepDif)) | uint64(len(f.horizons)-bits.OnesCount8(f.floorsDue))<<32,
	} {
		b = binary.LittleEndian.AppendUint64(b, u)
	}
	// A horizon whose floor is still to calibrate (floorsDue: the worker
	// had no time for it yet) is saved without one, so that the restart
	// calibrates it, rather than restore the minimum as calibrated.
	for i := range f.horizons {
		if f.floorsDue&(1<<i) == 0 {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f.pend[i].Floor))
		}
	}
	for i, h := range f.horizons {
		if f.floorsDue&(1<<i) == 0 {
			b = binary.LittleEndian.AppendUint64(b, uint64(h))
		}
	}
	binary.LittleEndian.PutUint32(b[start-4:], uint32(len(b)-start))
	m, err := f.m.MarshalBinary()
	return append(b, m...), err
}

// fcReadable returns why restoreState cannot read the forecaster state b
// (see appendState), as its head tells, or nil; nil for none.
func fcReadable(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n := 1
	if b[0] != 0 {
		if n = fcStateLen(b); n == 0 {
			return fmt.Errorf("forecaster state of tag %d, which this release does not read", b[0])
		}
	}
	if len(b) < n {
		return errors.New("forecaster state truncated")
	}
	return forecast.Readable(b[n:])
}

// sameSteps reports whether the forecaster state b, as appendState wrote
// it, was fed steps of the length f's horizons give (see livefc.HorizonSteps);
// true if b has none, or predates the resampler's state.
func (f *fcState) sameSteps(b []byte) bool { return savedSteps(b, f.rs.MinStepMs) }

// savedSteps is sameSteps for steps of minStepMs.
func savedSteps(b []byte, minStepMs int64) bool {
	if n := fcStateLen(b); n == 0 || len(b) < n {
		return true
	}
	return int64(binary.LittleEndian.Uint64(b[fcFieldsAt(b):])) == minStepMs
}

// fcRefusal says why a forecaster of horizons whose longest is longest
// refuses the forecaster state b, one this release reads (see fcReadable),
// or nil, as series.restore would: steps of another length (then the
// forecaster learns the TSDB's history, see series.restore), or a model of other
// options (see restoreModel). The restore counts them for its log.
func fcRefusal(b []byte, longest time.Duration) error {
	step := livefc.MinStep(longest)
	if !savedSteps(b, step) {
		return fmt.Errorf("forecaster state of steps of at least %v, where its horizons now give %v",
			time.Duration(binary.LittleEndian.Uint64(b[fcFieldsAt(b):]))*time.Millisecond, time.Duration(step)*time.Millisecond)
	}
	n := 1
	if b[0] != 0 {
		n = fcStateLen(b)
	}
	o, err := forecast.OptionsOf(b[n:])
	if err != nil {
		return err
	}
	return otherOptions(o, step, longest)
}

// restoreModel loads the forecaster's Model from b (see
// forecast.Model.MarshalBinary), refused if it holds another history,
// MaxHorizon or MinSamples than its horizons get now (see otherOptions),
// before the refit its load makes.
// Refused, the series' forecaster learns its history in the TSDB again
// (see series.restore).
func (f *fcState) restoreModel(b []byte) error {
	o, err := forecast.OptionsOf(b)
	if err != nil {
		return err
	}
	if err := otherOptions(o, f.rs.MinStepMs, f.longest()); err != nil {
		return err
	}
	return f.m.UnmarshalBinary(b)
}

// otherOptions says why a forecaster stepping minStepMs for horizons whose
// longest is longest refuses a Model of the options o, or nil: the Model
// takes its options from its state, so one saved before its steps got a
// longer history kept the shorter after every restart, and never the day
// it was lengthened for, and a 1h horizon's saved with MaxHorizon 80
// waited 192 steps (12.8 hours) again for a new series' first forecast
// (see forecastOptionsFor).
func otherOptions(o forecast.Options, minStepMs int64, longest time.Duration) error {
	want := livefc.OptionsFor(minStepMs, longest)
	if o.History != want.History {
		return fmt.Errorf("forecaster state of a %d-step history, where its steps now get %d", o.History, want.History)
	}
	if o.MaxHorizon != want.MaxHorizon || o.MinSamples != want.MinSamples {
		return fmt.Errorf("forecaster state of a %d-step horizon ready at %d steps, where its horizons now get %d and %d",
			o.MaxHorizon, o.MinSamples, want.MaxHorizon, want.MinSamples)
	}
	return nil
}

// restoreState loads what appendState wrote. The resampler's state is
// taken only if its step rule is the one in force (the horizons decide
// it); otherwise the resampler starts afresh, as after a reload.
func (f *fcState) restoreState(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty forecaster state")
	}
	if b[0] == 0 {
		return f.restoreModel(b[1:])
	}
	n := fcStateLen(b)
	if n == 0 || len(b) < n {
		return errors.New("malformed forecaster state")
	}
	fields := fcStateFields1
	switch b[0] {
	case 2:
		fields = fcStateFields
	case 3, 4:
		fields = fcStateFields3
	}
	at := fcFieldsAt(b)
	u := make([]uint64, fields)
	for i := range u {
		u[i] = binary.LittleEndian.Uint64(b[at+8*i:])
	}
	if err := f.restoreModel(b[n:]); err != nil {
		return err
	}
	var rs livefc.Resampler
	var within float64
	if b[0] == 1 {
		rs, within = f.resampler1(u)
	} else {
		rs = livefc.Resampler{
			MinStepMs: int64(u[0]), IV: [3]int32{int32(u[1]), int32(u[2]), int32(u[3])}, Ref: int64(u[4]), Closed: u[5] == 1,
			Ctr: int64(u[6]), N: int(int64(u[7])), First: int64(u[8]), LastT: int64(u[9]),
			X0: math.Float64frombits(u[10]), DSum: math.Float64frombits(u[11]), DSq: math.Float64frombits(u[12]),
		}
		within = math.Float64frombits(u[13])
		if u[5] > 1 || u[1] > math.MaxInt32 || u[2] > math.MaxInt32 || u[3] > math.MaxInt32 {
			rs.N = -1 // damage, refused below
		}
	}
	// u[last], when the last forecast was made, is not restored: the
	// forecasts themselves are not saved, so the series forecasts again at
	// its first sample instead of leaving the forecast series empty (and
	// stale in Prometheus) until the next is due, up to
	// --forecast.interval after the restart.
	// A state that no resampler reaches is damage under a valid checksum.
	if rs.N < 0 || rs.IV[0] < 0 || rs.IV[1] < 0 || rs.IV[2] < 0 || rs.Ctr < 0 || (rs.N > 0 && rs.First > rs.LastT) ||
		!isFinite(rs.X0) || !isFinite(rs.DSum) || !isFinite(rs.DSq) || rs.DSq < 0 || !isFinite(within) || within < 0 {
		return errors.New("malformed forecaster state")
	}
	// The latest sample is the last step's, or one of the open step,
	// which ends within two steps of it: one damaged into the future
	// (a day on) made every sample until then one at or before it, which
	// the resampler ignores, and no step or forecast came for that long.
	if rs.Closed && (rs.LastT < rs.Ref || (rs.N == 0 && rs.LastT != rs.Ref) || (rs.N > 0 && rs.LastT-rs.Ref >= 2*rs.Step())) {
		return errors.New("malformed forecaster state")
	}
	var stepDif float32
	var floors []float32
	var keys []byte // the horizons of the floors (see floorsByHorizon), nil if not saved
	if b[0] >= 3 {
		stepDif = math.Float32frombits(uint32(u[fcStateFields]))
		floors = make([]float32, u[fcStateFields]>>32)
		for i := range floors {
			floors[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[at+fcStateFields3*8+4*i:]))
			if !(floors[i] >= 0) || floors[i] > float32(livefc.FloorTop)+1e-3 {
				return errors.New("malformed forecaster state")
			}
		}
		if !(stepDif >= 0) || math.IsInf(float64(stepDif), 1) {
			return errors.New("malformed forecaster state")
		}
		var err error
		if keys, err = floorsByHorizon(b, at, len(floors)); err != nil {
			return err
		}
	}
	if rs.MinStepMs == f.rs.MinStepMs {
		rs.Instant, rs.InstN = rs.LastT, 1
		f.rs = rs
		// The floors and their unit are of steps of this length; each
		// floor goes to its horizon, a horizon not saved is calibrated
		// on the series' history at its next sample (floorsDue), as a
		// reload to other horizons rebuilds the series from it (see
		// sameHorizons). Without their horizons, by position when as
		// many, which is all such a state tells.
		f.stepDif = stepDif
		switch {
		case keys != nil:
			for i, h := range f.horizons {
				f.floorsDue |= 1 << i
				for j := range floors {
					if time.Duration(binary.LittleEndian.Uint64(keys[8*j:])) == h {
						f.pend[i].Floor = floors[j]
						f.floorsDue &^= 1 << i
					}
				}
			}
		case len(floors) == len(f.horizons):
			for i := range f.horizons {
				f.pend[i].Floor = floors[i]
			}
		case b[0] >= 3:
			// Floors saved, of other horizons than as many as now.
			f.floorsDue = 1<<len(f.horizons) - 1
		}
	}
	f.within = within
	return nil
}

// floorsByHorizon returns the horizons of the n floors of the tag 3 or 4
// forecaster state b, whose fields begin at at (see appendState): n int64s
// of nanoseconds after the floors, within the head; nil if the head ends
// before them (a tag 3 state, or one of a release before them), an error
// for a horizon no configuration gives (not positive, or twice).
func floorsByHorizon(b []byte, at, n int) ([]byte, error) {
	from := at + fcStateFields3*8 + 4*n
	if b[0] < 4 || fcStateLen(b) < from+8*n || n == 0 {
		return nil, nil
	}
	keys := b[from : from+8*n]
	for j := range n {
		h := int64(binary.LittleEndian.Uint64(keys[8*j:]))
		if h <= 0 {
			return nil, errors.New("malformed forecaster state")
		}
		for k := range j {
			if int64(binary.LittleEndian.Uint64(keys[8*k:])) == h {
				return nil, errors.New("malformed forecaster state")
			}
		}
	}
	return keys, nil
}

// resampler1 reads the resampler of a tag 1 state (a step fixed at k input
// intervals, the open step in the bucket t/stepMs; with k 1 its n counted
// short intervals, and no step was open) into this one's; the model is
// loaded, so the last step's latest sample is its latest point.
func (f *fcState) resampler1(u []uint64) (livefc.Resampler, float64) {
	stepMs, k := int64(u[1]), int64(u[2])
	rs := livefc.Resampler{
		MinStepMs: int64(u[0]), N: int(int64(u[4])), LastT: int64(u[5]),
		X0: math.Float64frombits(u[6]), DSum: math.Float64frombits(u[7]), DSq: math.Float64frombits(u[8]),
	}
	if stepMs < 0 || k < 0 || (stepMs == 0) != (k == 0) || (k > 0 && stepMs%k != 0) {
		rs.N = -1 // damage, refused by the caller
		return rs, 0
	}
	if k > 1 && rs.N > 0 && int64(u[3]) != rs.LastT/stepMs {
		rs.N = -1 // the open step's latest sample outside its bucket: damage
		return rs, 0
	}
	if k > 0 {
		iv := stepMs / k
		i32 := int32(min(iv, math.MaxInt32))
		rs.IV = [3]int32{i32, i32, i32}
		rs.Ctr = (stepMs - iv) / 2
		if k == 1 {
			rs.N, rs.Ctr = 0, 0
		}
		rs.First = rs.LastT - int64(max(rs.N-1, 0))*iv
	} else {
		rs.First = rs.LastT
	}
	if t, _, ok := f.m.Last(); ok {
		rs.Ref, rs.Closed = t, true
	}
	return rs, math.Float64frombits(u[9])
}
