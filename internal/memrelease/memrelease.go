// Package memrelease gives the heap's free memory back to the operating
// system once a burst of allocation is over.
//
// Go's background scavenger keeps free heap memory up to 110% of the
// collector's heap goal, GOGC percent above the live heap. A burst (the
// WAL replay at start, a Prometheus catching up after an outage, hours of
// history remote-written at speed) grows the heap to its goal; when it is
// over the live heap is what it was, but the goal is computed from it, so
// the memory freed stays resident for good: measured at 100k scored series
// after 2 h of history written in 5 minutes, 371 MB of free heap kept
// beside 935 MB in use, 28% of the RSS a Kubernetes limit is set against.
// Without a memory limit near, the runtime has no reason to give it back.
//
// A Releaser looks every interval: when the bytes allocated since its last
// look are a small share of the live heap (the burst is over) and the free
// heap retained is a large one, it runs debug.FreeOSMemory once: one
// collection and the free pages returned. In a steady state the free heap
// stays a small share (garbage between collections), so it does nothing.
package memrelease

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

const (
	// quietShare: at most this share of the live heap allocated since the
	// last look counts as quiet. The steady state at 100k series allocates
	// ~9 MB per 30 s beside a live heap of ~850 MB (1%). At 10% a release
	// came while 2 h of history was still being written at 150k samples/s
	// (under 83 MB per 30 s), whose heap grew back to its goal within
	// minutes: memory returned only to be faulted in again.
	quietShare = 0.03
	// freeShare and minFree: free heap retained worth a collection to
	// return. A collection marks the whole live heap (~1 CPU-s at 1 GB), so
	// a little free memory is not worth one; the steady state's garbage
	// between the runtime's two-minute collections is ~50 MB at 100k
	// series. At 25%, 177 MB free beside a live heap of 930 MB stayed.
	freeShare = 0.1
	minFree   = 64 << 20
	// minGap between releases: a pulsing load (a sender's backlog in
	// waves) gets one collection per gap at most.
	minGap = 5 * time.Minute
)

// Stats are the runtime's figures a Releaser decides on.
type Stats struct {
	Allocs uint64 // bytes allocated on the heap since the process started
	Live   uint64 // the live heap as of the last collection
	Free   uint64 // free heap memory still resident (not released)
}

var sampleNames = [3]string{"/gc/heap/allocs:bytes", "/gc/heap/live:bytes", "/memory/classes/heap/free:bytes"}

// ReadStats reads Stats from runtime/metrics.
func ReadStats() Stats {
	var s [3]metrics.Sample
	for i, n := range sampleNames {
		s[i].Name = n
	}
	metrics.Read(s[:])
	var v [3]uint64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	return Stats{Allocs: v[0], Live: v[1], Free: v[2]}
}

// Releaser returns free heap memory after bursts. read and free are the
// runtime's (ReadStats, debug.FreeOSMemory) unless a test sets them.
type Releaser struct {
	read  func() Stats
	free  func()
	every time.Duration

	logger   *slog.Logger
	releases prometheus.Counter
	released prometheus.Counter

	last     Stats
	lastFree time.Time // of the last release
}

// New returns a Releaser that looks every interval.
func New(logger *slog.Logger, reg prometheus.Registerer, every time.Duration) *Releaser {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := promauto.With(reg)
	return &Releaser{
		read:   ReadStats,
		free:   debug.FreeOSMemory,
		every:  every,
		logger: logger,
		releases: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_memory_releases_total",
			Help: "Times the free heap memory left by a burst of allocation was given back to the operating system (see --runtime.release-free-memory).",
		}),
		released: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_memory_released_bytes_total",
			Help: "Free heap memory given back to the operating system after bursts of allocation.",
		}),
	}
}

// Run looks every interval until ctx is done.
func (r *Releaser) Run(ctx context.Context) error {
	r.last = r.read()
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			r.Check(now)
		}
	}
}

// Check looks once, at now, and releases if the time has come; it reports
// whether it did.
func (r *Releaser) Check(now time.Time) bool {
	s := r.read()
	prev := r.last
	r.last = s
	if !due(prev, s) || (!r.lastFree.IsZero() && now.Sub(r.lastFree) < minGap) {
		return false
	}
	r.free()
	after := r.read()
	r.last = after
	r.lastFree = now
	var back uint64
	if s.Free > after.Free {
		back = s.Free - after.Free
	}
	r.releases.Inc()
	r.released.Add(float64(back))
	r.logger.Info("Gave free heap memory back to the operating system after a burst of allocation",
		"free_before_bytes", s.Free, "free_after_bytes", after.Free, "live_bytes", after.Live)
	return true
}

// due reports whether the allocation since prev was quiet and the free
// heap retained is worth a collection.
func due(prev, s Stats) bool {
	return Quiet(prev, s) && s.Free >= minFree && float64(s.Free) >= freeShare*float64(s.Live)
}

// Quiet reports whether the allocation between two looks, prev then s, was
// a small share of the live heap: no burst going on.
func Quiet(prev, s Stats) bool {
	if s.Allocs < prev.Allocs || s.Live == 0 {
		return false
	}
	return float64(s.Allocs-prev.Allocs) <= quietShare*float64(s.Live)
}
