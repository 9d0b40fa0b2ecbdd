package pipeline

import (
	"strings"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// Bounds of matchCache: selectors remembered, and matches per worker worth
// remembering (a broad selector gains little: building its answer costs
// more than finding it).
const (
	matchCacheSelectors = 64
	matchCacheMaxRefs   = 1024
)

// matchCache remembers, per selector set and worker, which of the worker's
// series matched, tagged with the worker's generation (bumped whenever a
// series is added or dropped). A client that polls one selector (a
// dashboard panel, an alert's link, bench-ingest's latency probe) then
// costs a map lookup per match under the worker's read lock instead of
// label matching over every series: at 100k series the scan is ~1.7 ms of
// CPU and holds each worker's lock while it runs, delaying its scoring.
type matchCache struct {
	mu sync.Mutex
	m  map[string][]matchEntry // one entry per worker
}

type matchEntry struct {
	gen  uint64
	ok   bool
	refs []storage.SeriesRef
}

// matchKey is the cache key of sets; "" (no selector: every series) is
// not cached.
func matchKey(sets [][]*labels.Matcher) string {
	var b strings.Builder
	for i, ms := range sets {
		if i > 0 {
			b.WriteByte('|')
		}
		for j, m := range ms {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(m.String())
		}
	}
	return b.String()
}

// get returns worker w's matches for key if they were found at
// generation gen.
func (c *matchCache) get(key string, w int, gen uint64) ([]storage.SeriesRef, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	es := c.m[key]
	if w >= len(es) || !es[w].ok || es[w].gen != gen {
		return nil, false
	}
	return es[w].refs, true
}

// put records worker w's matches for key at generation gen (of nworkers).
func (c *matchCache) put(key string, w, nworkers int, gen uint64, refs []storage.SeriesRef) {
	if len(refs) > matchCacheMaxRefs {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]matchEntry{}
	}
	es, found := c.m[key]
	if !found {
		if len(c.m) >= matchCacheSelectors {
			clear(c.m)
		}
		es = make([]matchEntry, nworkers)
		c.m[key] = es
	}
	es[w] = matchEntry{gen: gen, ok: true, refs: refs}
}
