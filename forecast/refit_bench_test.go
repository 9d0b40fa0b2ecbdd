package forecast

import (
	"fmt"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// liveOptions are the pipeline's forecaster options (pipeline's
// forecastOptions): what a refit costs in omen serve.
var liveOptions = Options{MaxHorizon: 80, History: 512, RefitEvery: 64, MinSamples: 2*80 + 32, Coverage: 0.95}

// liveShapes returns n values of the series omen loadgen sends, from a
// fixed seed: a gauge's bounded random walk, and a counter's rate (whole
// increments of up to 20 a step, so noise about a level), and the hourly
// series with two seasons above for contrast.
func liveShapes(n int) map[string][]float64 {
	rng := rand.New(rand.NewPCG(7, 3))
	walk, rate := make([]float64, n), make([]float64, n)
	v := 1e3 + rng.Float64()*1e6
	for i := range n {
		v = math.Abs(v + (rng.Float64()-0.5)*v*0.02)
		walk[i] = v
		rate[i] = math.Floor(rng.Float64()*20) / 15
	}
	return map[string][]float64{"walk": walk, "rate": rate, "hourly": hourly(n)}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRefit measures one refit of a Model with the pipeline's options
// on the shapes of liveShapes, the previous refit's warm starts in place
// as in the steady state (each iteration adds RefitEvery samples, then
// forecasts, which refits).
//
//	go test -run '^$' -bench Refit -benchmem ./forecast
func BenchmarkRefit(b *testing.B) {
	const n = 4096
	for _, name := range []string{"walk", "rate", "hourly"} {
		y := liveShapes(n)[name]
		b.Run(fmt.Sprintf("shape=%s", name), func(b *testing.B) {
			m, err := New(liveOptions)
			require.NoError(b, err)
			feed(m, y[:liveOptions.History], 0)
			var sc Scratch
			pts := m.ForecastWith(nil, liveOptions.MaxHorizon, &sc)
			t, ts := liveOptions.History, int64(liveOptions.History)*hourMs
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				for range liveOptions.RefitEvery {
					if t == n {
						t = liveOptions.History // wrap: a jump, still a refit's work
					}
					m.Update(ts, y[t])
					t, ts = t+1, ts+hourMs
				}
				pts = m.ForecastWith(pts, liveOptions.MaxHorizon, &sc)
			}
			// CPU time besides the wall time: on a shared machine the
			// latter moves with the neighbours' load.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/refit")
		})
	}
}

// BenchmarkFourierFit measures the Fourier regression's fit alone, with the
// pipeline's history and horizon, on the hourly series (one and two
// seasons).
//
//	go test -run '^$' -bench FourierFit ./forecast
func BenchmarkFourierFit(b *testing.B) {
	y := hourly(liveOptions.History)
	for _, seasons := range [][]int{{24}, {24, 168}} {
		b.Run(fmt.Sprintf("seasons=%v", seasons), func(b *testing.B) {
			f := newFourierReg(seasons, liveOptions.MaxHorizon)
			var sc fitScratch
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				sc.off = 0
				require.True(b, f.fit(y, &sc))
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/fit")
		})
	}
}

// BenchmarkForecastStep measures a step of omen serve's forecasting
// between refits on the shapes of seasonalShapes with the pipeline's
// options: two updates and a MaxHorizon-step forecast (omen serve forecasts
// every second sample). The refits are left out (RefitEvery at its
// largest), BenchmarkRefit has them.
//
//	go test -run '^$' -bench ForecastStep -benchmem ./forecast
func BenchmarkForecastStep(b *testing.B) {
	const n = 1600
	for _, s := range seasonalShapes(n) {
		b.Run("shape="+s.name, func(b *testing.B) {
			opts := s.opts
			opts.RefitEvery = 1 << 20
			m, err := New(opts)
			require.NoError(b, err)
			start := s.opts.History + 64
			feed(m, s.y[:start], 0)
			var sc Scratch
			pts := m.ForecastWith(nil, opts.MaxHorizon, &sc)
			require.NotEmpty(b, pts)
			t, ts := start, int64(start)*hourMs
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				for range 2 {
					if t == n {
						t = start
					}
					m.Update(ts, s.y[t])
					t, ts = t+1, ts+hourMs
				}
				pts = m.ForecastWith(pts, opts.MaxHorizon, &sc)
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/step")
		})
	}
}
