package forecast

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// Run: go test -run '^$' -bench . -benchmem ./forecast
// (-count=6 and benchstat when comparing.)

// hourly returns n values of an hourly series with daily and weekly cycles
// and noise, from a fixed seed.
func hourly(n int) []float64 {
	rng := rand.New(rand.NewPCG(42, 1))
	y := make([]float64, n)
	for i := range y {
		day := 1.0
		if (i/24)%7 >= 5 {
			day = 0.6
		}
		y[i] = 1000 + day*300*math.Sin(2*math.Pi*float64(i)/24) + 20*rng.NormFloat64()
	}
	return y
}

// BenchmarkUpdate measures Update between refits: store the sample and
// advance the fitted models.
func BenchmarkUpdate(b *testing.B) {
	y := hourly(2048)
	m, err := New(Options{RefitEvery: 1 << 20}) // the largest valid: MaxInt32 made New fail and the benchmark panic
	require.NoError(b, err)
	feed(m, y[:1024], 0)
	m.Forecast(nil, 48)
	ts := int64(1024) * hourMs
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m.Update(ts, y[1024+i%1024])
		ts += hourMs
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/update")
}

// BenchmarkForecast measures a 48-step forecast between refits, and the
// refit (seasons, validation, fit) that every RefitEvery samples add.
func BenchmarkForecast(b *testing.B) {
	for _, n := range []int{700, 1024} {
		y := hourly(n)
		b.Run(fmt.Sprintf("history=%d/h=48", n), func(b *testing.B) {
			// No refit between the forecasts (RefitEvery's largest: an
			// out-of-range one made New fail and the benchmark panic).
			m, err := New(Options{RefitEvery: 1 << 20})
			require.NoError(b, err)
			feed(m, y, 0)
			dst := m.Forecast(nil, 48)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				dst = m.Forecast(dst, 48)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/forecast")
		})
		b.Run(fmt.Sprintf("history=%d/refit", n), func(b *testing.B) {
			m, err := New(Options{})
			require.NoError(b, err)
			feed(m, y, 0)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				m.fitted = false
				m.Forecast(nil, 48)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/refit")
		})
	}
}

// BenchmarkState reports the heap held by one fitted model (B/series),
// measured as the live-heap growth for 100 models.
func BenchmarkState(b *testing.B) {
	y := hourly(1024)
	for range b.N {
		const k = 100
		ms := make([]*Model, k)
		var before, after runtime.MemStats
		// Two collections empty the sync.Pools (the first moves them to
		// their victim caches), so what is counted is the models' own.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range ms {
			ms[i], _ = New(Options{})
			feed(ms[i], y, 0)
			ms[i].Forecast(nil, 48)
		}
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/k, "B/series")
		runtime.KeepAlive(ms)
	}
}

// BenchmarkForecastSteps measures a forecast between refits of the
// pipeline's forecaster (liveOptions, 64 steps) read as the live path
// reads it: at the two steps around each of three horizons (steps=6),
// against every step (steps=all: ForecastWith).
//
//	go test -run '^$' -bench ForecastSteps -benchmem ./forecast
func BenchmarkForecastSteps(b *testing.B) {
	const h = 64
	for _, shape := range []string{"walk", "hourly"} {
		y := liveShapes(1024)[shape]
		for _, steps := range [][]int{nil, {9, 10, 29, 30, 62, 63}} {
			name := "all"
			if steps != nil {
				name = fmt.Sprint(len(steps))
			}
			b.Run(fmt.Sprintf("shape=%s/h=%d/steps=%s", shape, h, name), func(b *testing.B) {
				opts := liveOptions
				opts.RefitEvery = 1 << 20 // no refit between the forecasts
				m, err := New(opts)
				require.NoError(b, err)
				feed(m, y, 0)
				var sc Scratch
				dst := m.ForecastSteps(nil, h, steps, &sc)
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime()
				for range b.N {
					dst = m.ForecastSteps(dst, h, steps, &sc)
				}
				// CPU time besides the wall time, which moves with the
				// neighbours' load on a shared machine.
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/forecast")
			})
		}
	}
}
