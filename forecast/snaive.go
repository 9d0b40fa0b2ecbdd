package forecast

import "fmt"

// seasonalNaive repeats the last season: ŷ_{n+h} = y_{n+h−m·⌈h/m⌉}. It is
// the floor every other model has to beat.
type seasonalNaive struct {
	last []float64 // ring of the last m observations
	pos  int       // oldest entry, i.e. the season of the next observation
}

func newSeasonalNaive(m int) *seasonalNaive {
	return &seasonalNaive{last: make([]float64, max(m, 1))}
}

func (s *seasonalNaive) name() string { return fmt.Sprintf("snaive-%d", len(s.last)) }

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
	if s.pos++; s.pos == len(s.last) {
		s.pos = 0
	}
}

func (s *seasonalNaive) forecast(dst []float64) {
	p := s.pos
	for k := range dst {
		dst[k] = s.last[p]
		if p++; p == len(s.last) {
			p = 0
		}
	}
}
