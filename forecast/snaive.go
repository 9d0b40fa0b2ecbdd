package forecast

import "fmt"

// seasonalNaive repeats the last season: ŷ_{n+h} = y_{n+h−m·⌈h/m⌉}. It is
// the floor every other model has to beat.
//
// With diff it is the seasonal random walk of the differences,
// ARIMA(0,1,0)(0,1,0)_m: the last season's course from the latest value,
// plus the change over the last season for each season ahead,
//
//	ŷ_{n+h} = y_{n+j−m} + k·(y_n − y_{n−m}),  h = j + (k−1)·m, 1 ≤ j ≤ m.
//
// The plain repeat forecasts the last season's levels: on a sawtooth (a
// disk cleaned up every 8 hours) it lags the ramp by what the series
// gained since a season ago, and when the periodic event stops it goes on
// forecasting the level after the drop for a whole season, 20 below a disk
// filling up (make bench-capacity). The differences carry the ramp's slope
// from the latest value, and a drop that did not come is no longer in them
// once its time has passed.
type seasonalNaive struct {
	last []float64 // ring of the last m observations (m+1 with diff)
	pos  int32     // oldest entry, i.e. the season of the next observation
	// diff: the seasonal random walk of the differences, above. Beside
	// pos, it costs the component no bytes.
	diff bool
}

func newSeasonalNaive(m int) *seasonalNaive {
	return &seasonalNaive{last: make([]float64, max(m, 1))}
}

// newSeasonalDiff returns the seasonal random walk of the differences with
// season m (see seasonalNaive).
func newSeasonalDiff(m int) *seasonalNaive {
	return &seasonalNaive{last: make([]float64, max(m, 1)+1), diff: true}
}

func (s *seasonalNaive) name() string {
	if s.diff {
		return fmt.Sprintf("sdiff-%d", len(s.last)-1)
	}
	return fmt.Sprintf("snaive-%d", len(s.last))
}

func (s *seasonalNaive) fit(y []float64, _ *fitScratch) bool {
	m := len(s.last)
	if len(y) < m {
		return false
	}
	copy(s.last, y[len(y)-m:])
	s.pos = 0
	return true
}

func (s *seasonalNaive) update(v float64) {
	s.last[s.pos] = v
	if s.pos++; int(s.pos) == len(s.last) {
		s.pos = 0
	}
}

func (s *seasonalNaive) forecast(dst []float64) {
	p := int(s.pos)
	n := len(s.last)
	if s.diff {
		// The ring holds y_{n−m} (at pos) to y_n.
		m := n - 1
		newest := p - 1
		if newest < 0 {
			newest = m
		}
		d := s.last[newest] - s.last[p]
		step := d
		for k := range dst {
			j := k%m + 1 // y_{n+j−m} sits j places after y_{n−m}
			if k > 0 && j == 1 {
				step += d // one more season ahead
			}
			i := p + j
			if i >= n {
				i -= n
			}
			dst[k] = s.last[i] + step
		}
		return
	}
	for k := range dst {
		dst[k] = s.last[p]
		if p++; p == n {
			p = 0
		}
	}
}
