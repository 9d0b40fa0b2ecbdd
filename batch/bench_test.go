package batch_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/backtest"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecastcli"
)

// BenchmarkFile: the per-file work of `omen backtest` (read, score,
// write every row) and `omen forecast` (read, score, forecast as live, at the default horizons) on
// one file, per row.
//
//	go test -run '^$' -bench BenchmarkFile -benchtime 3x -count 6 ./batch
func BenchmarkFile(b *testing.B) {
	sc := detect.NewScratch()
	for _, cmd := range []struct {
		name string
		file func(in, out string) error
	}{
		{"backtest", func(in, out string) error {
			return backtest.File(context.Background(), nil, in, out, detect.DefaultOptions(), sc)
		}},
		{"forecast", func(in, out string) error {
			return forecastcli.File(context.Background(), nil, in, out, forecastcli.Config{Horizons: []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute}})
		}},
	} {
		for _, rows := range []int{100_000} {
			b.Run(fmt.Sprintf("cmd=%s/rows=%d", cmd.name, rows), func(b *testing.B) {
				dir := b.TempDir()
				in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
				if err := os.WriteFile(in, []byte(benchSeries(rows)), 0o644); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if err := cmd.file(in, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
				b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
			})
		}
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
