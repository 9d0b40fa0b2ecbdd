package tsdb

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// barrierHeadSeries returns a HeadSeries for s whose first n calls each
// read the head, then wait until all n have: n requests that
// check the limit at once, each before any of them appends its series,
// the interleaving that a lucky schedule gives and a test must force.
func barrierHeadSeries(s *Storage, n int) func() uint64 {
	var mu sync.Mutex
	calls := 0
	all := make(chan struct{})
	return func() uint64 {
		held := s.HeadSeries()
		mu.Lock()
		calls++
		c := calls
		if c == n {
			close(all)
		}
		mu.Unlock()
		if c <= n {
			<-all
		}
		return held
	}
}

// TestHeadSeriesLimitConcurrent: requests that each bring a new series
// and check the limit at once (the head one short of it, every check
// made before any append) create one series between them, not one each:
// before, 8 such requests took a head of limit 5 to 12, 7 past it (one
// per request beside the first: MaxInflightRequests - 1 in all). The
// room is taken before the check and given back once the series is in
// the head, so no interleaving creates a series past the limit.
func TestHeadSeriesLimitConcurrent(t *testing.T) {
	const limit, writers = 5, 8
	for _, tc := range []struct {
		name    string
		v2      bool
		generic bool
	}{
		{"v1 fast", false, false},
		{"v1 generic", false, true},
		{"v2 fast", true, false},
		{"v2 generic", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := time.Now().UnixMilli()
			s := openTestStorage(t)
			h := NewWriteHandler(nil, nil, s, WriteOptions{MaxHeadSeries: limit, HeadSeries: s.HeadSeries})
			h.generic = tc.generic
			code, body, _ := limitRequest(t, h, tc.v2, ms, "a", "b", "c", "d")
			require.Equal(t, http.StatusNoContent, code, body)
			require.Equal(t, uint64(limit-1), s.HeadSeries())

			h.opts.HeadSeries = barrierHeadSeries(s, writers)
			codes := make([]int, writers)
			bodies := make([]string, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					codes[i], bodies[i], _ = limitRequest(t, h, tc.v2, ms+1, fmt.Sprintf("new%d", i))
				})
			}
			wg.Wait()
			require.Equal(t, uint64(limit), s.HeadSeries(), "series created past the limit")
			stored := 0
			for i, c := range codes {
				switch c {
				case http.StatusNoContent:
					stored++
				case http.StatusBadRequest:
					require.Contains(t, bodies[i], "1 new series refused")
				default:
					t.Fatalf("request %d: %d %s", i, c, bodies[i])
				}
			}
			require.Equal(t, 1, stored)
			require.Zero(t, h.pending.Load(), "room still held after the requests")
		})
	}
}

// TestHeadSeriesLimitRace: writers sending new series at once, some the
// same as other writers' (created once, by whichever comes first), never
// take the head past the limit, and give back all the room they held:
// a request alone afterwards fills the head to exactly the limit. Run
// with -race, it also checks the reservation's memory accesses.
func TestHeadSeriesLimitRace(t *testing.T) {
	const limit, writers, rounds, perReq = 200, 16, 12, 5
	for _, tc := range []struct {
		name string
		v2   bool
	}{{"v1", false}, {"v2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ms := time.Now().UnixMilli()
			s := openTestStorage(t)
			h := NewWriteHandler(nil, nil, s, WriteOptions{MaxHeadSeries: limit, HeadSeries: s.HeadSeries})
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for r := range rounds {
						names := make([]string, perReq)
						for i := range names {
							// Every other series is shared by two writers.
							owner := w
							if i%2 == 1 {
								owner = w / 2
							}
							names[i] = fmt.Sprintf("s_%d_%d_%d_%d", owner, r, i, i%2)
						}
						code, body, _ := limitRequest(t, h, tc.v2, ms+int64(r), names...)
						if code != http.StatusNoContent && !strings.Contains(body, "new series refused") {
							t.Errorf("%d %s", code, body)
						}
					}
				})
			}
			wg.Wait()
			require.LessOrEqual(t, s.HeadSeries(), uint64(limit))
			require.Zero(t, h.pending.Load(), "room still held after the requests")
			fill := make([]string, limit)
			for i := range fill {
				fill[i] = fmt.Sprintf("fill_%d", i)
			}
			_, _, _ = limitRequest(t, h, tc.v2, ms+rounds, fill...)
			require.Equal(t, uint64(limit), s.HeadSeries())
		})
	}
}
