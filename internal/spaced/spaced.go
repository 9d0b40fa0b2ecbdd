// Package spaced spaces warnings about a kind of event that, once it
// happens, happens at every request or sample (a full disk, a sender
// resending what was refused): one warning per interval, with the count
// of the events since the last, and the rest at debug.
package spaced

import (
	"sync"
	"sync/atomic"
	"time"
)

// Log tells when to warn about one kind of event. The zero value is ready;
// it is safe for concurrent use.
//
// The interval is measured on Go's monotonic clock, which a step of the
// wall clock (NTP, a VM resumed) does not move: on the wall clock
// (time.Now().UnixNano()), a step back of an hour silenced the warnings
// for that hour.
type Log struct {
	once  sync.Once
	start time.Time    // the first event, with its monotonic reading
	last  atomic.Int64 // ns after start of the last warning, plus one; 0: none yet
	since atomic.Int64 // events since
	// elapsed, if set, replaces the time since start (tests).
	elapsed func() time.Duration
}

// Note counts an event and reports whether to warn about it now, at most
// once per every, with the events since the last warning, this one
// included.
func (l *Log) Note(every time.Duration) (n int64, warn bool) {
	l.since.Add(1)
	now := l.now()
	last := l.last.Load()
	if (last != 0 && now-last < int64(every)) || !l.last.CompareAndSwap(last, now) {
		return 0, false
	}
	return l.since.Swap(0), true
}

// now is the time since the Log's first event in ns, plus one, so that
// it is never 0 (no warning yet).
func (l *Log) now() int64 {
	if l.elapsed != nil {
		return int64(l.elapsed()) + 1
	}
	l.once.Do(func() { l.start = time.Now() })
	return int64(time.Since(l.start)) + 1
}
