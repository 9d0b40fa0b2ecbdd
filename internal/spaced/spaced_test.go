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
