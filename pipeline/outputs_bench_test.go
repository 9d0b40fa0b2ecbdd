package pipeline

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// BenchmarkOutputCommit appends the four base outputs of `inputs` inputs
// into a real TSDB head through outputs, once a minute of sample time each
// (omen serve's default --output.tsdb-interval), committing every `batch`
// inputs: what storing the results costs per output sample, and how much
// of it is the commits' fixed cost. The scorers commit once per batch the
// tap hands them: in omen serve behind Prometheus's 2 000-sample requests
// over 2 workers, ~1 000 input samples, ~250 of them with results due at
// the 1 m interval (1 000 output samples), plus the new forecasts. Measured at ea3e46b (median of 5,
// CPU time): 371 cpu-ns an output at 16 inputs a commit, 272 at 250, 270 at
// 1 000, 288 at 4 000. A commit's fixed part (the WAL write's syscall, the
// head's counters, isolation) is ~1.6 µs, amortised from a few hundred
// outputs on; the rest (the head's series lookup by reference, the chunk
// encoding at commit, the WAL record) is per sample, so fewer, larger
// commits would not be cheaper.
//
//	go test -run '^$' -bench OutputCommit -benchtime 20x -benchmem ./pipeline
func BenchmarkOutputCommit(b *testing.B) {
	const inputs = 25000 // 100 000 output series in the head
	for _, batch := range []int{16, 250, 1000, 4000} {
		b.Run(fmt.Sprintf("series=%d/batch=%d", inputs, batch), func(b *testing.B) {
			e := newEnv(b, "", nil, nil)
			ss := make([]*series, inputs)
			for i := range ss {
				in := labels.FromStrings("__name__", "bench_gauge", "instance", fmt.Sprint(i), "job", "bench")
				ss[i] = &series{ref: storage.SeriesRef(i + 1), name: "bench_gauge", in: in}
			}
			round := func(n int) {
				t := t0.UnixMilli() + int64(n)*60_000
				for lo := 0; lo < inputs; lo += batch {
					out := e.p.newOutputs(context.Background())
					for i, s := range ss[lo:min(lo+batch, inputs)] {
						v := float64((n*7+i)%1000) / 10
						for f := range baseFamilies {
							out.one(s, &s.outRef[f], baseFamilies[f], "", t, v+float64(f), 10)
						}
					}
					if err := out.commit(); err != nil {
						b.Fatal(err)
					}
				}
			}
			round(0) // the output series made, their refs known
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for n := range b.N {
				round(n + 1)
			}
			b.StopTimer()
			samples := float64(b.N * inputs * len(baseFamilies))
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/samples, "cpu-ns/output")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/output")
		})
	}
}
