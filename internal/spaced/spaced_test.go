package spaced

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNote: the first event warns, the next ones within the interval do
// not, and the next warning counts every event since the last, from many
// goroutines at once.
func TestNote(t *testing.T) {
	var l Log
	n, warn := l.Note(time.Hour)
	require.True(t, warn)
	require.Equal(t, int64(1), n)
	var wg sync.WaitGroup
	var warned atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, warn := l.Note(time.Hour); warn {
					warned.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.Zero(t, warned.Load(), "none within the interval")
	n, warn = l.Note(0)
	require.True(t, warn)
	require.Equal(t, int64(801), n, "the events since the last warning, this one included")
}

// TestNoteInterval: warnings are spaced by the time elapsed on the Log's
// clock (Go's monotonic one unless a test sets elapsed), each with the
// events since the last. On the wall clock a step back silenced them for
// the step's length: 80b9866's Note, its time.Now swapped for a fake wall
// clock stepped back an hour after a warning, did not warn 2 minutes later
// at an interval of a minute (the "2m later" case here, as the events come
// on the monotonic clock, which the step does not move). A wall clock
// cannot be stepped in a test, so that proof is not repeated here.
func TestNoteInterval(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   []time.Duration // each event's time on the Log's clock
		want []int64         // the count warned with at each; 0: no warning
	}{
		{"first warns at once", []time.Duration{0}, []int64{1}},
		{"within the interval", []time.Duration{0, time.Second, 59 * time.Second}, []int64{1, 0, 0}},
		{"at the interval", []time.Duration{0, 30 * time.Second, time.Minute}, []int64{1, 0, 2}},
		{"2m later", []time.Duration{10 * time.Minute, 12 * time.Minute, 12*time.Minute + time.Second, 13 * time.Minute}, []int64{1, 1, 0, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var now time.Duration
			l := Log{elapsed: func() time.Duration { return now }}
			for i, at := range tc.at {
				now = at
				n, warn := l.Note(time.Minute)
				require.Equal(t, tc.want[i] != 0, warn, "event %d at %s", i, at)
				require.Equal(t, tc.want[i], n, "event %d at %s", i, at)
			}
		})
	}
}

// TestNoteAllocs: Note allocates nothing (it runs at every refused request
// or sample).
func TestNoteAllocs(t *testing.T) {
	var l Log
	require.Zero(t, testing.AllocsPerRun(100, func() { l.Note(time.Minute) }))
}
