package forecast

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// seasonalShape is a series of a typical shape and the pipeline's options
// for it (forecastOptionsFor: two days of history where a day is 360
// steps).
type seasonalShape struct {
	name string
	opts Options
	y    []float64
}

// seasonalShapes returns n values of each shape from fixed seeds: no
// season (a counter's rate, noise about a level), a season of 120 steps (an
// hour at 30 s), a daily one at 360 steps (4-minute steps, the 4h
// horizon's), and two seasons (hourly data's day and week).
func seasonalShapes(n int) []seasonalShape {
	rng := rand.New(rand.NewPCG(17, 2))
	sine := func(period, amp float64) []float64 {
		y := make([]float64, n)
		for t := range y {
			y[t] = 100 + 0.01*float64(t) + amp*math.Sin(2*math.Pi*float64(t)/period) + rng.NormFloat64()
		}
		return y
	}
	daily := liveOptions
	daily.History = 768
	return []seasonalShape{
		{"none", liveOptions, liveShapes(n)["rate"]},
		{"season=120", liveOptions, sine(120, 20)},
		{"season=360", daily, sine(360, 30)},
		{"seasons=24,168", liveOptions, hourly(n)},
	}
}

var updateGolden = flag.Bool("update-seasonal-golden", false, "rewrite testdata/forecasts-stream.sha256")

// TestForecastsBitIdentical pins the forecasts bit for bit: each shape of
// seasonalShapes, a sawtooth (the seasonal random walk of the differences'
// case) and a series with negative values (the values' scale only) are
// streamed through a Model with the pipeline's options, forecast every
// second sample as omen serve does, and restored from a snapshot half way;
// the SHA-256 of every Point's bits is compared with the one in testdata,
// written at d61ae02 (go test -run ForecastsBitIdentical
// -update-seasonal-golden ./forecast). A change that only moves memory
// (where a component keeps its state) must not move it.
//
// Only on amd64: Go may fuse x*y+z into one rounding on arm64, ppc64le and
// s390x, which moves the last bits.
func TestForecastsBitIdentical(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("digests written on amd64, see above")
	}
	shapes := seasonalShapes(1600)
	shapes = append(shapes,
		seasonalShape{"sawtooth", liveOptions, sawtooth(rand.New(rand.NewPCG(5, 5)), 1600, 1100)},
		seasonalShape{"negative", liveOptions, planted(1600, 0, -50, 0.01, 10, 1)},
	)
	var lines []string
	for _, s := range shapes {
		h := sha256.New()
		m, err := New(s.opts)
		require.NoError(t, err)
		var pts []Point
		var b [8]byte
		for i, v := range s.y {
			m.Update(int64(i)*hourMs, v)
			if i == len(s.y)/2 {
				snap, err := m.MarshalBinary()
				require.NoError(t, err)
				m = new(Model)
				require.NoError(t, m.UnmarshalBinary(snap))
			}
			if i%2 != 0 {
				continue
			}
			pts = m.Forecast(pts, s.opts.MaxHorizon)
			for _, p := range pts {
				for _, x := range []uint64{uint64(p.TsMillis), math.Float64bits(p.Yhat), math.Float64bits(p.Lower), math.Float64bits(p.Upper)} {
					binary.LittleEndian.PutUint64(b[:], x)
					h.Write(b[:])
				}
			}
		}
		lines = append(lines, s.name+" "+hex.EncodeToString(h.Sum(nil)))
	}
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", "forecasts-stream.sha256")
	if *updateGolden {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got)
}
