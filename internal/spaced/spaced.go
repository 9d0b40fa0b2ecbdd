// Package spaced spaces warnings about a kind of event that, once it
// happens, happens at every request or sample (a full disk, a sender
// resending what was refused): one warning per interval, with the count
// of the events since the last, and the rest at debug.
package spaced

import (
	"sync/atomic"
	"time"
)

// Log tells when to warn about one kind of event. The zero value is ready;
// it is safe for concurrent use.
type Log struct {
	last  atomic.Int64 // unix ns of the last warning
	since atomic.Int64 // events since
}

// Note counts an event and reports whether to warn about it now, at most
// once per every, with the events since the last warning, this one
// included.
func (l *Log) Note(every time.Duration) (n int64, warn bool) {
	l.since.Add(1)
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(every) || !l.last.CompareAndSwap(last, now) {
		return 0, false
	}
	return l.since.Swap(0), true
}
