package memrelease

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
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
