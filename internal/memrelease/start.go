package memrelease

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// maxStart bounds the start's lower collector target when restored states
// stay unclaimed (their series gone while omen was down): they are held
// for --detect.stale-after, an hour by default, and the start's target
// costs a collection per ~quarter of the live heap allocated. It runs from
// the first look that finds the target lowered, not from the process's
// start: a WAL replay (or a wait for disk room) longer than maxStart had
// the Settler set the steady target, already in force, and stop before
// the restore lowered it, which then stayed for good.
const maxStart = 10 * time.Minute

// Settler raises the collector's target (GOGC) to the steady state's once
// the start's burst of allocation is over. A restart allocates in a burst:
// the WAL replay, then, at the first rounds, every series' restored models
// decoded and caught up from the TSDB and its outputs written, beside the
// snapshot's records still held for the series not yet come back (234 MB
// at 100 000 series). At the steady state's GOGC=75 the heap grew to 1.75
// times a live heap swollen by those records: 2.17 GB of RSS against 1.43
// GB settled. At a lower target from the restore's end (the caller sets it),
// the heap is collected more often through the burst (a few CPU-seconds,
// once); the steady state's comes when allocation is quiet and the
// restored states are claimed.
type Settler struct {
	read    func() Stats
	set     func(int) int
	percent func() int // the collector's target now (GOGC)
	pending func() int64
	gogc    int
	every   time.Duration
	logger  *slog.Logger
}

// NewSettler returns a Settler that, once the caller has lowered GOGC below
// gogc (at the restore's end), sets it to gogc again when allocation is
// quiet (see Quiet) at a look every interval and pending (the restored
// states not yet claimed; nil for none) is 0, or maxStart after the first
// look that found it lowered.
func NewSettler(logger *slog.Logger, gogc int, every time.Duration, pending func() int64) *Settler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if pending == nil {
		pending = func() int64 { return 0 }
	}
	return &Settler{read: ReadStats, set: debug.SetGCPercent, percent: readGOGC, pending: pending, gogc: gogc, every: every, logger: logger}
}

// readGOGC returns the collector's target as set (GOGC), -1 if off.
func readGOGC() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	return int(int64(s[0].Value.Uint64()))
}

// Run looks every interval until the start is over or ctx is done. Until
// the target is lowered (the WAL replay and the restore, at the steady
// target) it only waits.
func (s *Settler) Run(ctx context.Context) error {
	t := time.NewTicker(s.every)
	defer t.Stop()
	var start time.Time // the first look at the lowered target
	prev := s.read()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			cur := s.read()
			if p := s.percent(); p < 0 || p >= s.gogc {
				prev = cur
				continue
			}
			if start.IsZero() {
				start = now
			}
			if startOver(prev, cur, s.pending(), now.Sub(start)) {
				old := s.set(s.gogc)
				s.logger.Info("Start's burst of allocation over: garbage collector at its steady target",
					"gogc", s.gogc, "start_gogc", old, "after", now.Sub(start).Round(time.Second), "live_bytes", cur.Live)
				<-ctx.Done()
				return nil
			}
			prev = cur
		}
	}
}

// startOver reports whether the start's burst is over at a look that read
// s, prev at the look before: allocation quiet and no restored state
// waiting for its series, or the start longer than maxStart.
func startOver(prev, s Stats, pending int64, since time.Duration) bool {
	return since >= maxStart || (pending <= 0 && Quiet(prev, s))
}
