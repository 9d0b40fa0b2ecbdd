package loadgen

import (
	"math"
	"math/rand/v2"
)

// values produces the next sample of each series of one worker. Counters
// grow by whole increments (as request and byte counters do); gauges take a
// bounded random walk. Not goroutine-safe: one per worker.
type values struct {
	lo      int // global index of the first series
	v       []float64
	counter []bool
	rng     *rand.Rand
}

func newValues(lo int, counter []bool, seed uint64) *values {
	vs := &values{lo: lo, v: make([]float64, len(counter)), counter: counter, rng: rand.New(rand.NewPCG(seed, uint64(lo)))}
	for i := range vs.v {
		if counter[i] {
			vs.v[i] = math.Floor(vs.rng.Float64() * 1e6)
		} else {
			vs.v[i] = 1e3 + vs.rng.Float64()*1e6
		}
	}
	return vs
}

// next returns the next value of global series i.
func (vs *values) next(i int) float64 {
	j := i - vs.lo
	r := vs.rng.Float64()
	if vs.counter[j] {
		vs.v[j] += math.Floor(r * 20)
	} else {
		vs.v[j] = math.Abs(vs.v[j] + (r-0.5)*vs.v[j]*0.02)
	}
	return vs.v[j]
}
