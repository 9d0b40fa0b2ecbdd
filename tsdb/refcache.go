package tsdb

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
)

// refCache maps the hash of a series' raw remote-write label bytes (1.0)
// or of its label strings resolved from the symbols (2.0, whose references
// are per request) to its head reference and validated labels, so that a
// request for a series seen before skips building the labels, validating
// them and the head's hash lookup: the append goes straight to the series
// by reference.
//
// Correctness does not rest on the hash: a hit is used only after the raw
// labels compare equal to the cached labels (lookupV1 and lookupV2 do
// that), so a collision is a miss that overwrites the entry.
//
// A cached reference may outlive its series (the head drops series without
// samples at compaction). That is safe because head references are never
// reused within a TSDB's life and the head's Append, given a reference it
// does not know, falls back to the labels (tsdb/head_append_v2.go in
// Prometheus v0.316: getByID, then getOrCreate(ls)); the new reference it
// returns replaces the cached one. A cache therefore belongs to one TSDB
// lifetime: a reopened TSDB numbers series anew and may give a collected
// series' reference to another, whose Append trusts it without looking at
// the labels. So reset (the TSDB reopened) starts a new epoch and empties
// the cache, and put refuses an entry of a request that began in an
// earlier one.
//
// It is bounded: each shard keeps two generations of at most cap/shards/2
// entries; when the current one is full, or older than refCacheRotate, it
// becomes the previous one and the old previous one is dropped, so series
// not written for a generation fall out while active ones are promoted
// back. By age too, because the head drops series that stopped (pods of
// past deploys) while their entries would hold their labels until a
// million others had come: ~300 MB of them after 2 million series under
// churn. Lookups of the current generation take only a shard's read lock.
type refCache struct {
	shards [refCacheShards]refShard
	limit  int // entries per shard and generation
	epoch  atomic.Uint64
	now    func() time.Time
}

// refCacheRotate is the age of a generation that makes it the previous
// one at the next entry put: a series written less often than that is
// looked up in the head again.
const refCacheRotate = 15 * time.Minute

const refCacheShards = 64

type refEntry struct {
	ref storage.SeriesRef
	ls  labels.Labels
	// meta is the series' remote-write 2.0 metadata as last stored, its
	// strings owned by the entry (nil for 1.0): a request whose metadata
	// is unchanged passes it to the storage without copying it again.
	meta *metadata.Metadata
}

type refShard struct {
	mu        sync.RWMutex
	cur, prev map[uint64]refEntry
	born      time.Time // of cur
	_         [16]byte  // keep shards on separate cache lines
}

// newRefCache returns a cache of about size entries; size <= 0 disables it.
func newRefCache(size int) *refCache {
	if size <= 0 {
		return nil
	}
	return &refCache{limit: max(size/refCacheShards/2, 1), now: time.Now}
}

func (c *refCache) shard(h uint64) *refShard { return &c.shards[h>>58] } // top 6 bits: 64 shards

// refLookup is the scratch of getAll, kept with a request's buffers.
type refLookup struct {
	order []int32 // the series to look up, grouped by shard
	found []uint8 // by series: notFound, foundCur or foundPrev
	ents  []refEntry
	start [refCacheShards + 1]int32
}

// Outcomes of getAll for one series.
const (
	notFound uint8 = iota
	foundCur
	foundPrev // in the previous generation: promoted after the shard's lookups
)

// getAll looks up hashes[i] for every i with use[i] and leaves the entry
// found in l.ents[i], l.found[i] saying whether and where. An entry found
// in the previous generation is promoted (put again, in epoch): it is
// active.
//
// It goes shard by shard: one read lock per shard a request touches rather
// than one per series (2000 lock and unlock pairs of atomic adds on a
// request of 2000 series become at most 64), and a shard's probes run back
// to back with nothing between them, so the CPU overlaps their cache
// misses, which at 100k series are nearly every probe's.
func (c *refCache) getAll(hashes []uint64, use []bool, epoch uint64, l *refLookup) {
	n := len(hashes)
	l.found = resize(l.found, n)
	l.ents = resize(l.ents, n)
	clear(l.found)
	l.start = [refCacheShards + 1]int32{}
	m := 0
	for i, h := range hashes {
		if use[i] {
			l.start[h>>58+1]++
			m++
		}
	}
	for k := 1; k <= refCacheShards; k++ {
		l.start[k] += l.start[k-1]
	}
	l.order = resize(l.order, m)
	next := l.start
	for i, h := range hashes {
		if use[i] {
			k := h >> 58
			l.order[next[k]] = int32(i)
			next[k]++
		}
	}
	for k := range refCacheShards {
		idx := l.order[l.start[k]:l.start[k+1]]
		if len(idx) == 0 {
			continue
		}
		s := &c.shards[k]
		promote := false
		s.mu.RLock()
		for _, i := range idx {
			h := hashes[i]
			if e, ok := s.cur[h]; ok {
				l.ents[i], l.found[i] = e, foundCur
			} else if e, ok = s.prev[h]; ok {
				l.ents[i], l.found[i] = e, foundPrev
				promote = true
			}
		}
		s.mu.RUnlock()
		if promote {
			for _, i := range idx {
				if l.found[i] == foundPrev {
					c.put(hashes[i], epoch, l.ents[i]) // promote: it is active
				}
			}
		}
	}
}

// release drops the entries' references to labels and metadata, so that a
// pooled buffer does not keep series alive that the cache let go.
func (l *refLookup) release() { clear(l.ents) }

// resize returns s with length n, reusing its array when it is big enough.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// reset empties the cache: the TSDB was reopened. A request under way
// read the epoch before it took its appender and puts its entries with
// it: one that checks under a shard's lock before the new epoch begins is
// emptied with the shard after, and one that checks after is refused, so
// a request still appending to the closed TSDB leaves none of its
// references.
func (c *refCache) reset() {
	if c == nil {
		return
	}
	c.epoch.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.cur, s.prev = nil, nil
		s.mu.Unlock()
	}
}

// put caches e under h, replacing what was there, unless the request
// that puts it began in an earlier epoch than the cache's (see reset).
func (c *refCache) put(h, epoch uint64, e refEntry) {
	s := c.shard(h)
	now := c.now()
	s.mu.Lock()
	if epoch != c.epoch.Load() {
		s.mu.Unlock()
		return
	}
	if s.cur == nil {
		s.cur, s.born = make(map[uint64]refEntry, min(c.limit, 1024)), now
	}
	if _, ok := s.cur[h]; !ok && (len(s.cur) >= c.limit || now.Sub(s.born) >= refCacheRotate) {
		s.prev, s.cur, s.born = s.cur, make(map[uint64]refEntry, len(s.cur)), now
	}
	s.cur[h] = e
	s.mu.Unlock()
}
