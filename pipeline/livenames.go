package pipeline

import "math"

// nameLive bounds when a sample of one input name last arrived at a
// worker (wall clock, series.lastSeen), of its series not marked stale:
// that latest arrival, m, is in [lo, hi] (math.MinInt64: no such
// series). An arrival raises both; a series that stops counting
// (marked stale, dropped, or its arrival taken back to omen's clock
// stepped back) may have been the latest, so lo forgets it (hi still
// bounds m). A scrape knows the name live while lo is within the lookback
// and silent once hi is not; between, it walks the worker's series for
// the names it cannot tell (see worker.markLive).
//
// It is kept per worker and kind of input (see worker.live): a derived
// input's series are silent past its interval (see series.silent).
type nameLive struct {
	lo, hi int64
	n      int // the worker's series of the name, stale or not
}

// noArrival is nameLive's bound with no series that counts.
const noArrival = math.MinInt64

// arrived raises the bounds to t, the arrival of a sample of a series
// that counts (not marked stale).
func (e *nameLive) arrived(t int64) {
	e.lo, e.hi = max(e.lo, t), max(e.hi, t)
}

// left forgets a series that stops counting, which last arrived at t: if
// it may be what lo stood for, lo is unknown.
func (e *nameLive) left(t int64) {
	if t >= e.lo {
		e.lo = noArrival
	}
}

// liveOf returns the entry of s's name and kind, nil if it has none (a
// series the worker does not hold). The caller holds mu.
func (w *worker) liveOf(s *series) *nameLive {
	return w.live[s.ref>>63][s.name]
}

// liveAdd counts s, a series the worker now holds, in its name's entry.
// The caller holds mu.
func (w *worker) liveAdd(s *series) {
	m := w.live[s.ref>>63]
	e := m[s.name]
	if e == nil {
		e = &nameLive{lo: noArrival, hi: noArrival}
		m[s.name] = e
	}
	e.n++
	if !s.pub.stale {
		e.arrived(s.lastSeen)
	}
}

// liveDrop uncounts s, a series the worker no longer holds. The caller
// holds mu.
func (w *worker) liveDrop(s *series) {
	e := w.liveOf(s)
	if e == nil {
		return
	}
	if !s.pub.stale {
		e.left(s.lastSeen)
	}
	if e.n--; e.n <= 0 {
		delete(w.live[s.ref>>63], s.name)
	}
}

// liveReplaced uncounts the series s replaced in the worker's map
// without a drop (see rebuildIdle): of s's name and kind, counted there
// still, it arrived when s did (s.lastSeen), so no bound forgets it. The
// caller holds mu.
func (w *worker) liveReplaced(s *series) {
	e := w.liveOf(s)
	if e == nil {
		return
	}
	e.n-- // s's own count remains: never 0
	if !s.pub.stale {
		e.arrived(s.lastSeen)
	}
}

// liveSeen books the arrival of a sample of s (s.lastSeen, which was
// prev), once its step has ended a staleness marker (wasStale: s was
// marked stale before it). An arrival before prev (omen's clock stepped
// back) takes prev back. On the hot path: no allocation, mu held already.
// The caller holds mu.
func (w *worker) liveSeen(s *series, prev int64, wasStale bool) {
	e := w.liveOf(s)
	if e == nil {
		return
	}
	if s.lastSeen < prev && !wasStale {
		e.left(prev)
	}
	if !s.pub.stale {
		e.arrived(s.lastSeen)
	}
}

// liveStale books that s is about to be marked stale. The caller holds
// mu.
func (w *worker) liveStale(s *series) {
	if e := w.liveOf(s); e != nil && !s.pub.stale {
		e.left(s.lastSeen)
	}
}

// markLive marks true the names of want that have a series in w whose
// outputs /metrics shows (see walkOutputs): not marked stale, not silent
// at nowMs. Each name is told by its entries (see nameLive); the names
// they cannot tell, after a series that may have been a name's latest
// stopped counting, by one walk of the series, which leaves their entries
// exact, or a lower bound within the lookback (the walk stops once it has
// found a live series of each).
func (w *worker) markLive(want map[string]bool, ivs derivedIntervals, holdMs, nowMs int64) {
	// A walk's result is written back under the read lock: liveMu keeps
	// scrapes from writing at once, and the read lock the worker.
	w.liveMu.Lock()
	defer w.liveMu.Unlock()
	w.mu.RLock()
	defer w.mu.RUnlock()
	type walked struct {
		e        *nameLive
		cut, max int64
		found    bool
	}
	var walk [2]map[string]*walked
	left := 0
	for name, live := range want {
		for kind := range w.live {
			e := w.live[kind][name]
			if live || e == nil {
				continue
			}
			// As series.silent: silent once nowMs-lastSeen > keep.
			cut := nowMs - (max(holdMs, lookbackMs) + ivs.everyMsOf(name, kind == 1))
			switch {
			case e.lo >= cut:
				want[name], live = true, true
			case e.hi >= cut:
				if walk[kind] == nil {
					walk[kind] = map[string]*walked{}
				}
				walk[kind][name] = &walked{e: e, cut: cut, max: noArrival}
				left++
			}
		}
	}
	if left == 0 {
		return
	}
	complete := true
	for _, s := range w.series {
		if s.pub.stale {
			continue
		}
		x := walk[s.ref>>63][s.name]
		if x == nil || s.lastSeen <= x.max {
			continue
		}
		x.max = s.lastSeen
		if !x.found && x.max >= x.cut {
			x.found = true
			if left--; left == 0 {
				complete = false
				break
			}
		}
	}
	for _, m := range walk {
		for name, x := range m {
			if complete {
				x.e.lo, x.e.hi = x.max, x.max
			} else {
				x.e.lo = max(x.e.lo, x.max) // found, a lower bound
			}
			if x.found {
				want[name] = true
			}
		}
	}
}
