package tsdb

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// len is the number of entries in both generations.
func (c *refCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.cur) + len(s.prev)
		s.mu.RUnlock()
	}
	return n
}

// get is getAll of one hash: the entry cached under h, if any.
func (c *refCache) get(h, epoch uint64) (refEntry, bool) {
	var l refLookup
	c.getAll([]uint64{h}, []bool{true}, epoch, &l)
	return l.ents[0], l.found[0] != notFound
}

func TestRefCacheBounded(t *testing.T) {
	c := newRefCache(refCacheShards * 8) // 4 per shard and generation
	for i := range uint64(10000) {
		c.put(i*0x9E3779B97F4A7C15, 0, refEntry{ref: storage.SeriesRef(i + 1)})
	}
	require.LessOrEqual(t, c.len(), refCacheShards*8)
	// The latest entries are still there.
	k := uint64(9999)
	e, ok := c.get(k*0x9E3779B97F4A7C15, 0)
	require.True(t, ok)
	require.Equal(t, storage.SeriesRef(10000), e.ref)
	require.Nil(t, newRefCache(-1))
}

func TestRefCachePromotesActive(t *testing.T) {
	c := newRefCache(refCacheShards * 4)    // 2 per shard and generation
	h := func(i uint64) uint64 { return i } // all in shard 0
	c.put(h(1), 0, refEntry{ref: 1})
	c.put(h(2), 0, refEntry{ref: 2})
	c.put(h(3), 0, refEntry{ref: 3}) // 1 and 2 become the previous generation
	_, ok := c.get(h(1), 0)          // promoted
	require.True(t, ok)
	c.put(h(4), 0, refEntry{ref: 4}) // {3,1} full: {3,1} previous, 2 gone
	_, ok = c.get(h(2), 0)
	require.False(t, ok)
	_, ok = c.get(h(1), 0)
	require.True(t, ok)
}

// TestWriteRefCacheCollisions makes every series hash the same: each
// request then hits entries of other series, and every sample must still
// land in its own series.
func TestWriteRefCacheCollisions(t *testing.T) {
	for _, cache := range []int{0, -1} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) {
			s := openTestStorage(t)
			h := NewWriteHandler(nil, nil, s, WriteOptions{SeriesCacheSize: cache})
			h.hash = func([]byte) uint64 { return 42 }
			base := time.Now().Add(-time.Minute).UnixMilli()
			const n = 5
			for round := range int64(4) {
				req := &prompb.WriteRequest{}
				for i := range n {
					// Series differing only in label values; every
					// other round lists them in reverse order.
					req.Timeseries = append(req.Timeseries, series(base+round, float64(10*i)+float64(round),
						"__name__", "m", "id", fmt.Sprint(i), "x", string(make([]byte, i))+"v"))
				}
				if round%2 == 1 {
					for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
						req.Timeseries[i], req.Timeseries[j] = req.Timeseries[j], req.Timeseries[i]
					}
				}
				w := post(t, h, v1Body(t, req), nil)
				require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			}
			got := map[string]map[int64]float64{}
			forEachSeries(t, s, "m", func(ls labels.Labels, smp map[int64]float64) { got[ls.Get("id")] = smp })
			require.Len(t, got, n)
			for i := range n {
				want := map[int64]float64{}
				for round := range int64(4) {
					want[base+round] = float64(10*i) + float64(round)
				}
				require.Equal(t, want, got[fmt.Sprint(i)], "series %d", i)
			}
			if cache == 0 {
				require.Equal(t, 1, h.refs.len(), "one hash, one entry")
			}
		})
	}
}

// TestWriteRefCacheStaleRef plants references the head does not know (as
// after it dropped the series) and one of another series: appends must fall
// back to the labels, and the cache must learn the right reference.
func TestWriteRefCacheStaleRef(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{})
	ms := time.Now().UnixMilli()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "a"), series(ms, 2, "__name__", "b")}}
	require.Equal(t, http.StatusNoContent, post(t, h, v1Body(t, req), nil).Code)
	require.Equal(t, 2, h.refs.len())

	var hashes []uint64
	var refs []storage.SeriesRef
	for i := range h.refs.shards {
		for k, e := range h.refs.shards[i].cur {
			hashes, refs = append(hashes, k), append(refs, e.ref)
		}
	}
	for _, k := range hashes {
		e, _ := h.refs.get(k, 0)
		e.ref = 1 << 40 // unknown to the head
		h.refs.put(k, 0, e)
	}
	req = &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms+1, 3, "__name__", "a"), series(ms+1, 4, "__name__", "b")}}
	require.Equal(t, http.StatusNoContent, post(t, h, v1Body(t, req), nil).Code)
	require.Equal(t, map[int64]float64{ms: 1, ms + 1: 3}, samples(t, s, "a"))
	require.Equal(t, map[int64]float64{ms: 2, ms + 1: 4}, samples(t, s, "b"))
	for i, k := range hashes {
		e, ok := h.refs.get(k, 0)
		require.True(t, ok)
		require.Equal(t, refs[i], e.ref, "the head's reference is cached again")
	}
	require.Equal(t, uint64(2), s.HeadSeries())
}

func TestWriteRefCacheSkipsInvalid(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{})
	ms := time.Now().UnixMilli()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "b", "1", "__name__", "dup", "b", "2")}}
	for range 2 {
		w := post(t, h, v1Body(t, req), nil)
		require.Equal(t, http.StatusBadRequest, w.Code)
		require.Contains(t, w.Body.String(), `duplicate label name "b"`)
	}
	require.Zero(t, h.refs.len())
}

// forEachSeries calls fn with every series of metric name and its samples.
func forEachSeries(t testing.TB, s *Storage, name string, fn func(labels.Labels, map[int64]float64)) {
	t.Helper()
	selectSeries(t, s, name, func(series storage.Series) {
		smp := map[int64]float64{}
		it := series.Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			smp[ts] = v
		}
		require.NoError(t, it.Err())
		fn(series.Labels(), smp)
	})
}

// selectSeries calls fn with every series of metric name.
func selectSeries(t testing.TB, s *Storage, name string, fn func(storage.Series)) {
	t.Helper()
	q, err := s.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
	for ss.Next() {
		fn(ss.At())
	}
	require.NoError(t, ss.Err())
}

// TestRefCacheAcrossReopen: a reopened TSDB (after a failed commit) numbers
// series anew from the highest reference its WAL holds, so a series it had
// collected can find its cached reference given to another series, whose
// Append trusts it: the returning series' acknowledged samples went into
// the new one. The storage's reopen starts a new cache epoch.
func TestRefCacheAcrossReopen(t *testing.T) {
	s := NewStorage(nil, nil, Options{Path: t.TempDir(), MinFreeBytes: -1})
	require.NoError(t, s.Open())
	defer s.Close()
	h := NewWriteHandler(nil, nil, s, DefaultWriteOptions())
	s.OnReopen(h.StorageReopened)
	write := func(ts ...prompb.TimeSeries) {
		require.Equal(t, http.StatusNoContent, post(t, h, v1Body(t, &prompb.WriteRequest{Timeseries: ts}), nil).Code)
	}
	hour := time.Hour.Milliseconds()
	base := time.Now().Add(-20 * time.Hour).UnixMilli()
	write(series(base, 1, "__name__", "a"))
	write(series(base+1, 1, "__name__", "b")) // b has the highest reference
	for i := int64(1); i <= 18; i++ {         // compactions drop b from the head, then from the WAL's checkpoints
		write(series(base+i*hour, float64(i), "__name__", "a"))
		require.NoError(t, s.DB().Compact(t.Context()))
	}
	require.NoError(t, s.reopen()) // what the probe does after a failed commit
	now := base + 19*hour
	write(series(now, 100, "__name__", "c"))   // a new series: b's old reference
	write(series(now+1, 200, "__name__", "b")) // b again, its reference cached
	require.Equal(t, map[int64]float64{now: 100}, samples(t, s, "c"))
	require.Equal(t, map[int64]float64{base + 1: 1, now + 1: 200}, samples(t, s, "b"))
}

// TestRefCacheRotatesByAge: entries of series not written for two
// generations' age fall out even while the cache is far from full (the
// head has dropped those series; their labels were held until a million
// others came), and those written meanwhile stay.
func TestRefCacheRotatesByAge(t *testing.T) {
	c := newRefCache(1 << 20)
	now := time.Unix(0, 0)
	c.now = func() time.Time { return now }
	h := func(i uint64) uint64 { return i } // all in shard 0
	c.put(h(1), 0, refEntry{ref: 1})        // departs
	c.put(h(2), 0, refEntry{ref: 2})        // stays active
	for range 2 {
		now = now.Add(refCacheRotate)
		_, ok := c.get(h(2), 0)
		require.True(t, ok)
		c.put(h(100+uint64(now.Unix())), 0, refEntry{ref: 3}) // a new series: the put that rotates
	}
	_, ok := c.get(h(1), 0)
	require.False(t, ok, "not written for two generations")
	_, ok = c.get(h(2), 0)
	require.True(t, ok)
	require.Equal(t, 3, c.len())
}

// TestRefCacheGetAll checks the batched lookup against get: the same
// entries, misses and promotions, whatever shards the hashes fall in.
func TestRefCacheGetAll(t *testing.T) {
	shardOf := func(k, i uint64) uint64 { return k<<58 | i } // the top 6 bits pick the shard
	for _, tc := range []struct {
		name   string
		hashes []uint64
		use    []bool
		want   []uint8
	}{
		{"empty", nil, nil, nil},
		{"hits in two shards", []uint64{shardOf(3, 1), shardOf(0, 1), shardOf(3, 2)}, []bool{true, true, true}, []uint8{foundCur, foundCur, foundCur}},
		{"miss and unused", []uint64{shardOf(3, 1), shardOf(5, 9), shardOf(0, 1)}, []bool{true, true, false}, []uint8{foundCur, notFound, notFound}},
		{"previous generation", []uint64{shardOf(63, 1), shardOf(63, 3)}, []bool{true, true}, []uint8{foundPrev, foundCur}},
		{"twice in a request", []uint64{shardOf(0, 1), shardOf(0, 1)}, []bool{true, true}, []uint8{foundCur, foundCur}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRefCache(refCacheShards * 4) // 2 per shard and generation
			for _, h := range []uint64{shardOf(0, 1), shardOf(3, 1), shardOf(3, 2)} {
				c.put(h, 0, refEntry{ref: storage.SeriesRef(h)})
			}
			for _, h := range []uint64{shardOf(63, 1), shardOf(63, 2), shardOf(63, 3)} {
				c.put(h, 0, refEntry{ref: storage.SeriesRef(h)}) // 63/1 and 63/2 become the previous generation
			}
			var l refLookup
			c.getAll(tc.hashes, tc.use, 0, &l)
			require.Equal(t, len(tc.hashes), len(l.found))
			for i, h := range tc.hashes {
				require.Equal(t, tc.want[i], l.found[i], "hash %x", h)
				if l.found[i] != notFound {
					require.Equal(t, storage.SeriesRef(h), l.ents[i].ref)
				}
			}
			for i, h := range tc.hashes {
				if tc.want[i] == foundPrev {
					// Promoted: now in the current generation, so
					// 63/2, left in the previous one, is dropped at
					// the next rotation and 63/1 is not.
					c.put(shardOf(63, 4), 0, refEntry{ref: 4})
					_, ok := c.get(h, 0)
					require.True(t, ok)
					_, ok = c.get(shardOf(63, 2), 0)
					require.False(t, ok)
				}
			}
		})
	}
}

// TestPutBuffersBoundsLookup: the ref-cache lookup's scratch, sized by a
// request's series, is not pooled after a request of more series than
// maxPooledSeen (a request of a million series grew it to 44 MiB), and a
// pooled one keeps no cached labels alive.
func TestPutBuffersBoundsLookup(t *testing.T) {
	for _, tc := range []struct {
		series int
		kept   bool
	}{
		{2000, true},
		{maxPooledSeen, true},
		{maxPooledSeen + 1, false},
	} {
		t.Run(fmt.Sprint(tc.series), func(t *testing.T) {
			h := NewWriteHandler(nil, nil, nil, WriteOptions{})
			c := newRefCache(1 << 20)
			c.put(1, 0, refEntry{ref: 1, ls: labels.FromStrings("__name__", "m")})
			b := &writeBuffers{hashes: make([]uint64, tc.series), use: make([]bool, tc.series)}
			b.hashes[0], b.use[0] = 1, true
			c.getAll(b.hashes, b.use, 0, &b.lookup)
			require.Equal(t, foundCur, b.lookup.found[0])
			h.putBuffers(b)
			require.Equal(t, tc.kept, b.lookup.ents != nil)
			require.Equal(t, tc.kept, b.hashes != nil)
			for _, e := range b.lookup.ents {
				require.True(t, e.ls.IsEmpty())
			}
		})
	}
}

// TestSameLabelSet: the ref cache's check for labels sent out of order
// takes any order of the same labels, and nothing else: not a raw label
// twice in place of another, not another value, not one more or less.
func TestSameLabelSet(t *testing.T) {
	stored := labels.FromStrings("__name__", "m", "a", "1", "job", "j")
	for _, tc := range []struct {
		name string
		raw  []string
		want bool
	}{
		{"sorted", []string{"__name__", "m", "a", "1", "job", "j"}, true},
		{"target's labels last", []string{"__name__", "m", "job", "j", "a", "1"}, true},
		{"reversed", []string{"job", "j", "a", "1", "__name__", "m"}, true},
		{"one label twice, another missing", []string{"__name__", "m", "a", "1", "a", "1"}, false},
		{"another value", []string{"job", "j", "a", "2", "__name__", "m"}, false},
		{"one fewer", []string{"job", "j", "__name__", "m"}, false},
		{"one more", []string{"job", "j", "a", "1", "__name__", "m", "b", "1"}, false},
		{"a name as a value", []string{"job", "j", "a", "1", "__name__", "a"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			var fl []fastLabel
			for i := 0; i < len(tc.raw); i += 2 {
				l := fastLabel{nameFrom: int32(len(body))}
				body = append(body, tc.raw[i]...)
				l.nameTo, l.valueFrom = int32(len(body)), int32(len(body))
				body = append(body, tc.raw[i+1]...)
				l.valueTo = int32(len(body))
				fl = append(fl, l)
			}
			require.Equal(t, tc.want, sameLabelSet(body, fl, stored))
		})
	}
}

// TestWriteRefCacheUnsorted: series whose labels come out of order (as
// vmagent sends them) are ref-cached, and a hit is used only for the same
// labels: with every hash colliding, a series sent in two orders and
// another differing in one value each keep their own samples. The cache
// held no entry for them before (every request built, validated and
// looked up their labels again: BenchmarkWriteV1VMAgent's cache=on cost
// cache=off's).
func TestWriteRefCacheUnsorted(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{})
	h.hash = func([]byte) uint64 { return 42 }
	base := time.Now().Add(-time.Minute).UnixMilli()
	for round := range int64(6) {
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series(base+round, float64(round), "z", "1", "__name__", "m", "a", "x"),
			series(base+round, 100+float64(round), "z", "2", "__name__", "m", "a", "x"),
		}}
		if round%3 == 2 {
			// The first series in another order: the same series.
			req.Timeseries[0] = series(base+round, float64(round), "a", "x", "z", "1", "__name__", "m")
		}
		w := post(t, h, v1Body(t, req), nil)
		require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
		require.Equal(t, 1, h.refs.len(), "round %d: the unsorted series cached (one hash, one entry)", round)
	}
	got := map[string]map[int64]float64{}
	forEachSeries(t, s, "m", func(ls labels.Labels, smp map[int64]float64) { got[ls.Get("z")] = smp })
	require.Len(t, got, 2)
	for z, off := range map[string]float64{"1": 0, "2": 100} {
		want := map[int64]float64{}
		for round := range int64(6) {
			want[base+round] = off + float64(round)
		}
		require.Equal(t, want, got[z], "series z=%s", z)
	}
}
