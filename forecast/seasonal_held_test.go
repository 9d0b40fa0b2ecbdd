package forecast

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
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

// heldBy returns the heap bytes each of k Models of opts holds once fed y
// and forecast, the live heap's growth over their making, and the seasons
// the last one found.
func heldBy(t testing.TB, opts Options, y []float64, k int) (int64, []int) {
	dst := make([]Point, 0, opts.MaxHorizon)
	all := make([]*Model, k)
	runtime.GC()
	runtime.GC() // twice: the refits' pooled scratch goes with the second
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range all {
		m, err := New(opts)
		require.NoError(t, err)
		feed(m, y, 0)
		dst = m.Forecast(dst, opts.MaxHorizon)
		require.NotEmpty(t, dst)
		all[i] = m
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(all)
	return int64(after.HeapAlloc-before.HeapAlloc) / int64(k), all[k-1].Seasons()
}

// TestModelHeldBytesSeasonal bounds what a fitted Model of each shape holds.
// The seasonal naive and the seasonal random walk of the differences, on
// both scales, each kept the last season as float64s of their own: four
// copies of one season, 11.7 KB of the 18.8 KB a Model with a daily season
// at 360 steps held (11.5 KB with a season of 120 steps, 11.6 KB with two
// seasons, whose longer one two naive candidates kept). One ring shared by
// all of them (see seasonalNaive) holds it once: 9.6 KB, 8.4 KB and
// 10.2 KB. The bounds sit between; the shape without a season, 4.3 KB,
// holds no seasonal candidate.
func TestModelHeldBytesSeasonal(t *testing.T) {
	if testing.Short() {
		t.Skip("fits 400 models")
	}
	bound := map[string]int64{"none": 4800, "season=120": 9500, "season=360": 12000, "seasons=24,168": 10900}
	for _, s := range seasonalShapes(1600) {
		t.Run(s.name, func(t *testing.T) {
			got, seasons := heldBy(t, s.opts, s.y, 100)
			t.Logf("%d B held per fitted Model, seasons %v", got, seasons)
			require.Less(t, got, bound[s.name])
		})
	}
}

// TestForecastsBitIdentical pins the forecasts bit for bit: each shape of
// seasonalShapes, a sawtooth (the seasonal random walk of the differences'
// case) and a series with negative values (the values' scale only) are
// streamed through a Model with the pipeline's options, forecast every
// second sample as omen serve does, and restored from a snapshot half way;
// the SHA-256 of every Point's bits is compared with the one in testdata,
// written at d61ae02 (go test -run ForecastsBitIdentical
// -update ./forecast). A change that only moves memory
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

// TestSeasonalNaiveShared: a seasonal naive reading another's longer ring
// (shareSeasonRing), and with raw working on the original values itself,
// forecasts bit for bit what one with a ring of its own did, on the log
// scale inside rawScale with raw, past the season's end and after the
// ring turned.
func TestSeasonalNaiveShared(t *testing.T) {
	y := planted(200, 0, 100, 0.05, 10, 1)
	for i, v := range y {
		y[i] = math.Log(v)
	}
	const fitN, upd, H = 150, 23, 100
	for _, m := range []int{1, 24, 48} {
		for _, diff := range []bool{false, true} {
			for _, raw := range []bool{false, true} {
				t.Run(fmt.Sprintf("m=%d/diff=%v/raw=%v", m, diff, raw), func(t *testing.T) {
					mk := newSeasonalNaive
					if diff {
						mk = newSeasonalDiff
					}
					var ref component = mk(m)
					if raw {
						ref = &rawScale{c: ref}
					}
					s := mk(m)
					s.raw = raw
					comps := []component{newSeasonalDiff(60), s}
					for _, c := range append(comps, ref) {
						require.True(t, c.fit(y[:fitN], nil))
					}
					shareSeasonRing(comps)
					require.False(t, s.own)
					for _, v := range y[fitN : fitN+upd] {
						for _, c := range append(comps, ref) {
							c.update(v)
						}
					}
					want, got := make([]float64, H), make([]float64, H)
					ref.forecast(want)
					s.forecast(got)
					for h := range H {
						require.Equal(t, math.Float64bits(want[h]), math.Float64bits(got[h]), "h=%d", h+1)
					}
					require.Equal(t, ref.name(), s.name())
				})
			}
		}
	}
}

// TestSeasonExpsShared: raw seasonal naive components forecasting one
// after the other through a seasonExps, as ensemble.forecast runs them,
// forecast bit for bit what each does alone; the second of a season takes
// the first's exponentials, one of another season or ring takes its own.
// Horizons short of the season, of one season and past it; the plain
// repeat's and the differences' in either order.
func TestSeasonExpsShared(t *testing.T) {
	y := planted(200, 0, 100, 0.05, 10, 1)
	for i, v := range y {
		y[i] = math.Log(v)
	}
	const fitN, upd = 150, 23
	for _, tc := range []struct {
		name  string
		comps func() []*seasonalNaive
		share []bool // whether each takes the exponentials of one before it
	}{
		{"plain then diff", func() []*seasonalNaive { return []*seasonalNaive{newSeasonalNaive(24), newSeasonalDiff(24)} }, []bool{false, true}},
		{"diff then plain", func() []*seasonalNaive { return []*seasonalNaive{newSeasonalDiff(24), newSeasonalNaive(24)} }, []bool{false, true}},
		{"two seasons", func() []*seasonalNaive { return []*seasonalNaive{newSeasonalNaive(24), newSeasonalNaive(48)} }, []bool{false, false}},
		{"season 1", func() []*seasonalNaive { return []*seasonalNaive{newSeasonalDiff(1), newSeasonalNaive(1)} }, []bool{false, true}},
	} {
		for _, H := range []int{1, 10, 24, 48, 80} {
			t.Run(fmt.Sprintf("%s/H=%d", tc.name, H), func(t *testing.T) {
				comps, alone := tc.comps(), tc.comps()
				var cs []component
				for i := range comps {
					comps[i].raw, alone[i].raw = true, true
					cs = append(cs, comps[i])
					require.True(t, comps[i].fit(y[:fitN], nil))
					require.True(t, alone[i].fit(y[:fitN], nil))
				}
				shareSeasonRing(cs)
				for _, v := range y[fitN : fitN+upd] {
					for i := range comps {
						comps[i].update(v)
						alone[i].update(v)
					}
				}
				ex := seasonExps{v: make([]float64, 0, H)}
				for i := range comps {
					_, shared := ex.get(comps[i], min(H, int(comps[i].m)))
					require.Equal(t, tc.share[i], shared)
					want, got := make([]float64, H), make([]float64, H)
					alone[i].forecast(want)
					comps[i].forecastWith(got, &ex, nil)
					for h := range H {
						require.Equal(t, math.Float64bits(want[h]), math.Float64bits(got[h]), "%s h=%d", comps[i].name(), h+1)
					}
				}
			})
		}
	}
}

// TestRawSeasonPair: a forecast shares the season's exponentials only
// where two raw seasonal naives of one season are among its components.
func TestRawSeasonPair(t *testing.T) {
	raw := func(s *seasonalNaive) *seasonalNaive { s.raw = true; return s }
	for _, tc := range []struct {
		name  string
		comps []component
		want  bool
	}{
		{"one season", []component{newTheta(24, 80), raw(newSeasonalNaive(24)), newSeasonalDiff(24), raw(newSeasonalDiff(24))}, true},
		{"raw alone", []component{newSeasonalNaive(24), raw(newSeasonalNaive(24)), newSeasonalDiff(24)}, false},
		{"two seasons", []component{raw(newSeasonalNaive(24)), raw(newSeasonalNaive(168))}, false},
		{"pair after another", []component{raw(newSeasonalNaive(24)), raw(newSeasonalNaive(168)), raw(newSeasonalDiff(168))}, true},
		{"none", []component{newTheta(1, 80), &rawScale{c: newTheta(1, 80)}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, rawSeasonPair(tc.comps))
		})
	}
}
