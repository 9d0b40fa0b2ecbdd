package backtest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omen-sidecar/omen/detect"
)

// BenchmarkFile: `omen backtest` over one file, read, scored and written,
// per row.
//
//	go test -run '^$' -bench BenchmarkFile -benchtime 3x ./backtest
func BenchmarkFile(b *testing.B) {
	for _, rows := range []int{100_000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			dir := b.TempDir()
			in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
			if err := os.WriteFile(in, []byte(benchSeries(rows)), 0o644); err != nil {
				b.Fatal(err)
			}
			sc := detect.NewScratch()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := File(context.Background(), nil, in, out, detect.DefaultOptions(), sc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// benchSeries is rows of a daily seasonal gauge at 15 s with Gaussian
// noise, seeded so runs repeat.
func benchSeries(rows int) string {
	r := rand.New(rand.NewPCG(1, 2))
	var s strings.Builder
	s.WriteString("timestamp,value\n")
	for i := range rows {
		fmt.Fprintf(&s, "%d,%.3f\n", 1_600_000_000+15*i, 50+20*math.Sin(2*math.Pi*float64(i)/5760)+2*r.NormFloat64())
	}
	return s.String()
}
