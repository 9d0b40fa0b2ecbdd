package memrelease

import (
	"context"
	"io"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStartOver(t *testing.T) {
	quiet := [2]Stats{{Allocs: 10000 * mb}, {Allocs: 10009 * mb, Live: 850 * mb}}
	burst := [2]Stats{{Allocs: 10000 * mb}, {Allocs: 10600 * mb, Live: 1050 * mb}}
	for _, tc := range []struct {
		name    string
		looks   [2]Stats
		pending int64
		since   time.Duration
		want    bool
	}{
		{"quiet, every restored state claimed", quiet, 0, time.Minute, true},
		{"the first rounds' claims", burst, 0, time.Minute, false},
		{"quiet before the series come back", quiet, 100000, time.Minute, false},
		{"states whose series are gone, past maxStart", quiet, 10, maxStart, true},
		{"a burst past maxStart", burst, 10, maxStart, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, startOver(tc.looks[0], tc.looks[1], tc.pending, tc.since))
		})
	}
}

// The Settler sets the steady target once, when the restored states are
// claimed and allocation is quiet; not before.
func TestSettlerRun(t *testing.T) {
	var allocs, pending atomic.Int64
	allocs.Store(1000 * mb)
	pending.Store(5)
	set := make(chan int, 2)
	s := NewSettler(slog.New(slog.NewTextHandler(io.Discard, nil)), 75, time.Millisecond, pending.Load)
	s.read = func() Stats { return Stats{Allocs: uint64(allocs.Load()), Live: 800 * mb} }
	s.set = func(v int) int { set <- v; return 25 }
	s.percent = func() int { return 25 } // lowered at the restore
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()

	time.Sleep(20 * time.Millisecond) // quiet, but states pending
	require.Empty(t, set)
	pending.Store(0)
	require.Equal(t, 75, <-set)
	time.Sleep(10 * time.Millisecond)
	require.Empty(t, set, "set once")
	cancel()
	require.NoError(t, <-done)
}

// runFakeStart runs a Settler for the steady target 75 looking every 30 s
// (in a synctest bubble) on a quiet heap, with pending and a GOGC of its
// own, 75 until the test lowers it as the restore does; stop cancels and
// waits for it.
func runFakeStart(t *testing.T, pending func() int64) (gogc *atomic.Int64, stop func()) {
	gogc = new(atomic.Int64)
	gogc.Store(75)
	s := NewSettler(nil, 75, 30*time.Second, pending)
	s.read = func() Stats { return Stats{Allocs: 1000 * mb, Live: 800 * mb} } // quiet
	s.set = func(v int) int { return int(gogc.Swap(int64(v))) }
	s.percent = func() int { return int(gogc.Load()) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	return gogc, func() {
		cancel()
		require.NoError(t, <-done)
	}
}

// A start whose WAL replay outlasts maxStart: the steady target comes
// back once the restore has lowered it and the start is over, as cmd/omen
// wires it (pending 1 until the restore, GOGC lowered at its end). At
// 957d2fb maxStart ran from Run: the Settler set the steady target at 10
// minutes, before the restore, and GOGC stayed at 25 for good.
func TestSettlerSlowStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var restored atomic.Bool
		gogc, stop := runFakeStart(t, func() int64 {
			if !restored.Load() {
				return 1 // the replay and the restore to come
			}
			return 0
		})
		defer stop()
		time.Sleep(15 * time.Minute) // the WAL replay (fake time)
		restored.Store(true)
		gogc.Store(25) // the restore's end, as runtimeFlags.restoring
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		require.EqualValues(t, 75, gogc.Load(), "the steady target after the slow start")
	})
}

// maxStart runs from the lowering: restored states left unclaimed hold the
// start's target that long after the restore, however long the replay.
func TestSettlerMaxStartFromLowering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gogc, stop := runFakeStart(t, func() int64 { return 10 }) // never claimed
		defer stop()
		time.Sleep(20 * time.Minute)
		gogc.Store(25)
		time.Sleep(maxStart - time.Minute)
		synctest.Wait()
		require.EqualValues(t, 25, gogc.Load(), "within maxStart of the lowering")
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		require.EqualValues(t, 75, gogc.Load(), "past maxStart of the lowering")
	})
}

// readGOGC reads the target SetGCPercent set.
func TestReadGOGC(t *testing.T) {
	old := debug.SetGCPercent(37)
	defer debug.SetGCPercent(old)
	require.Equal(t, 37, readGOGC())
	debug.SetGCPercent(-1)
	require.Equal(t, -1, readGOGC())
}
