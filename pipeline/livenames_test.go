package pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/stretchr/testify/require"
)

// TestLiveNamesAsTheWalk: the input names whose forecast accuracy
// /metrics shows (liveNames), told by the workers' index of arrivals per
// name (worker.markLive), are those walking every series finds a series of
// that is not marked stale nor silent (liveNamesWalk: walkOutputs' rule,
// and how liveNames told them up to 400a4a5), through random runs of
// samples, staleness markers, silences past the lookback, omen's clock
// stepping back, sweeps that drop series (--detect.stale-after) or
// refuse them (--detect.max-series), and the TSDB reopened (every series
// dropped).
func TestLiveNamesAsTheWalk(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			e := newEnv(t, "", nil, func(o *Options) {
				o.StaleAfter, o.MaxSeries, o.ForecastMaxSeries = 15*time.Minute, 14, 0
			})
			r := rand.New(rand.NewPCG(seed, 217))
			const names = 5
			var all []labels.Labels
			for n := range names {
				for i := range 1 + r.IntN(4) {
					all = append(all, labels.FromStrings("__name__", fmt.Sprint("in_", n), "instance", fmt.Sprint(i)))
				}
			}
			now, ts := t0, t0.UnixMilli()
			pick := func() []labels.Labels {
				var ls []labels.Labels
				share := r.Float64()
				for _, l := range all {
					if r.Float64() < share {
						ls = append(ls, l)
					}
				}
				return ls
			}
			push := func(ls []labels.Labels, v func() float64) {
				vs := make([]float64, len(ls))
				for i := range vs {
					vs[i] = v()
				}
				// About omen's clock, as a sender's; in order.
				ts = max(ts+1, now.UnixMilli()-r.Int64N(30_000))
				e.push(ts, model.MetricTypeGauge, ls, vs)
			}
			for step := range 400 {
				op := r.IntN(13)
				switch {
				case op < 5:
					push(pick(), r.NormFloat64)
				case op < 7:
					push(pick(), func() float64 { return math.Float64frombits(value.StaleNaN) })
				case op < 9:
					now = now.Add(time.Duration(r.Int64N(int64(7 * time.Minute))))
				case op < 10:
					// omen's clock steps back: arrivals after it.
					now = now.Add(-time.Duration(r.Int64N(int64(3 * time.Minute))))
				case op < 12:
					e.sync()
					sweepAll(e)
				default:
					// The TSDB reopened: every series dropped, made
					// again at its next sample.
					for _, w := range e.p.workers {
						w.reset(w.storeGen)
					}
				}
				e.clock.set(now)
				e.sync()
				want := map[string]bool{}
				for n := range names + 1 { // one never sent
					want[fmt.Sprint("in_", n)] = false
				}
				walked := liveNamesWalk(e.p, clone(want))
				require.Equal(t, walked, e.p.liveNames(want), "step %d, op %d", step, op)
				// Twice: what a walk wrote back holds at the next scrape.
				require.Equal(t, walked, e.p.liveNames(clone(want)), "step %d, again", step)
			}
		})
	}
}

// clone copies a want map of liveNames.
func clone(m map[string]bool) map[string]bool {
	c := make(map[string]bool, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// liveNamesWalk is liveNames told by walking every series, as at 400a4a5.
func liveNamesWalk(p *Pipeline, want map[string]bool) map[string]bool {
	holdMs, nowMs := p.opts.IncidentHold.Milliseconds(), p.opts.Now().UnixMilli()
	ivs := p.intervals()
	for _, w := range p.workers {
		w.view(func(s *series) {
			if seen, ok := want[s.name]; !ok || seen || s.pub.stale || s.silent(holdMs, ivs.everyMs(s), nowMs) {
				return
			}
			want[s.name] = true
		})
	}
	return want
}
