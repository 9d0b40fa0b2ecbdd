package memrelease

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

const mb = 1 << 20

func TestDue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prev, s Stats
		want    bool
	}{
		{"after a burst", Stats{Allocs: 10000 * mb}, Stats{Allocs: 10009 * mb, Live: 850 * mb, Free: 371 * mb}, true},
		{"during a burst", Stats{Allocs: 10000 * mb}, Stats{Allocs: 10400 * mb, Live: 850 * mb, Free: 371 * mb}, false},
		{"steady state's garbage", Stats{Allocs: 10000 * mb}, Stats{Allocs: 10009 * mb, Live: 850 * mb, Free: 50 * mb}, false},
		{"a share of a small heap, under the floor", Stats{Allocs: 100 * mb}, Stats{Allocs: 100 * mb, Live: 40 * mb, Free: 30 * mb}, false},
		{"at the floor and the share", Stats{Allocs: 100 * mb}, Stats{Allocs: 100 * mb, Live: 256 * mb, Free: 64 * mb}, true},
		{"no collection yet", Stats{}, Stats{Allocs: 10 * mb, Free: 100 * mb}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, due(tc.prev, tc.s))
		})
	}
}

// A release spaces the next by minGap, and counts what came back.
func TestCheckSpacesReleases(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := New(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, time.Second)
	s := Stats{Allocs: 1000 * mb, Live: 500 * mb, Free: 300 * mb}
	freed := 0
	r.read = func() Stats { return s }
	r.free = func() { freed++; s.Free = 10 * mb }
	r.last = s
	t0 := time.Unix(1e9, 0)
	require.True(t, r.Check(t0))
	require.Equal(t, 1, freed)
	require.Equal(t, 290.0*mb, testutil.ToFloat64(r.released))

	s.Free = 300 * mb // another burst's, right after
	require.False(t, r.Check(t0.Add(time.Minute)))
	require.True(t, r.Check(t0.Add(minGap)))
	require.Equal(t, 2.0, testutil.ToFloat64(r.releases))
}

var sink [][]byte

// With the real runtime: the free heap a burst leaves is given back.
func TestReleasesRealFreeHeap(t *testing.T) {
	r := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), time.Second)
	// A live heap of 128 MB, and a burst of 512 MB of garbage beside it.
	live := make([][]byte, 0, 128)
	for range 128 {
		live = append(live, make([]byte, mb))
	}
	for range 512 {
		sink = append(sink, make([]byte, mb))
	}
	sink = nil
	runtime.GC()
	r.last = ReadStats()
	before := r.last
	if before.Free < minFree || float64(before.Free) < freeShare*float64(before.Live) {
		t.Skipf("the runtime returned the burst's memory by itself (free %d MB, live %d MB)", before.Free/mb, before.Live/mb)
	}
	require.True(t, r.Check(time.Now()))
	after := ReadStats()
	require.Less(t, after.Free, before.Free/4, "free heap before %d MB, after %d MB", before.Free/mb, after.Free/mb)
	require.Greater(t, testutil.ToFloat64(r.released), float64(before.Free)/2)
	runtime.KeepAlive(live)
}

// TestNilLoggerIsNoOp: a nil logger (and registerer) means no logging, as
// for omen's other constructors, not a panic when a release or the end of
// the start is logged.
func TestNilLoggerIsNoOp(t *testing.T) {
	quiet := func() Stats { return Stats{Allocs: 1000 * mb, Live: 500 * mb, Free: 300 * mb} }
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"releaser", func(t *testing.T) {
			r := New(nil, nil, time.Second)
			r.read, r.free = quiet, func() {}
			r.last = quiet()
			require.True(t, r.Check(time.Unix(1e9, 0)))
		}},
		{"settler", func(t *testing.T) {
			s := NewSettler(nil, 75, time.Millisecond, nil)
			set := make(chan int, 1)
			s.read, s.set = quiet, func(v int) int { set <- v; return 25 }
			s.percent = func() int { return 25 } // lowered at the restore
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- s.Run(ctx) }()
			require.Equal(t, 75, <-set)
			cancel()
			require.NoError(t, <-done)
		}},
	} {
		t.Run(tc.name, tc.run)
	}
}
