package forecast

import (
	"math"
	"testing"
)

// BenchmarkDetectSeasons is the season detection of one refit of a
// forecaster whose window is full (512 values, as omen serve's are).
func BenchmarkDetectSeasons(b *testing.B) {
	y := make([]float64, 512)
	for i := range y {
		y[i] = 10 + 3*math.Sin(2*math.Pi*float64(i)/48) + 0.5*math.Sin(float64(i)*1.7)
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(detectSeasons(y, 512, nil)) == 0 {
			b.Fatal("no season found")
		}
	}
}
