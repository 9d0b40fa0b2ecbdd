package pipeline

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// minutes is the horizons of so many minutes.
func minutes(ms ...int) []time.Duration {
	hs := make([]time.Duration, len(ms))
	for i, m := range ms {
		hs[i] = time.Duration(m) * time.Minute
	}
	return hs
}

// floorOf is the floor a test gives horizon h: distinct for each, within
// the floors' range.
func floorOf(h time.Duration) float32 { return float32(h.Minutes()) / 64 }

// savedWithFloors is the state appendState writes for a forecaster of the
// horizons hs, in that order (a release before config sorted them wrote
// them as the file listed them), each with its floorOf.
func savedWithFloors(t *testing.T, hs []time.Duration) []byte {
	t.Helper()
	f := newFcStateOf(&horizonSet{horizons: hs}, 1)
	for i, h := range hs {
		f.pend[i].Floor = floorOf(h)
	}
	f.stepDif = 0.5
	b, err := f.appendState(nil)
	require.NoError(t, err)
	return b
}

// keyless is the forecaster state b without the horizons its floors are
// of, as the releases before them wrote it (b itself if it has none).
func keyless(b []byte) []byte {
	n := len(b)
	at := fcFieldsAt(b)
	floors := int(binary.LittleEndian.Uint64(b[at+(fcStateFields3-1)*8:]) >> 32)
	end := at + fcStateFields3*8 + 4*floors
	if b[0] != 4 || fcStateLen(b) == end {
		return b
	}
	head := fcStateLen(b)
	out := append(append([]byte(nil), b[:end]...), b[head:n]...)
	binary.LittleEndian.PutUint32(out[1:], uint32(end-at))
	return out
}

// TestFloorsRestoredByHorizon: each horizon's calibrated band floor is
// restored to that horizon, whatever the horizons the forecaster has now
// (the same longest, so the same steps: its model is restored). The
// floors were restored by position, when as many: a snapshot of a
// release before config sorted the horizons, of a file listing [30m, 5m,
// 15m], gave 5m the floor of 30m, 15m the one of 5m and 30m the one of
// 15m; one horizon replaced by another ([5m, 15m, 30m] to [5m, 20m, 30m])
// gave 20m the floor of 15m; one added or removed lost every floor, those
// of the horizons kept too, until they calibrated again (6 to 20 hours of
// checks). A horizon new to the forecaster starts at 0, due to be
// calibrated on the series' history (floorsDue, see
// TestRestartCalibratesNewHorizons); the stepDif, their unit, is kept.
func TestFloorsRestoredByHorizon(t *testing.T) {
	for _, tc := range []struct {
		name      string
		saved, to []time.Duration
	}{
		{"same", minutes(5, 15, 30), minutes(5, 15, 30)},
		{"listed out of order before config sorted them", minutes(30, 5, 15), minutes(5, 15, 30)},
		{"one added", minutes(5, 15, 30), minutes(5, 10, 15, 30)},
		{"one removed", minutes(5, 15, 30), minutes(15, 30)},
		{"one replaced", minutes(5, 15, 30), minutes(5, 20, 30)},
		{"all but the longest replaced", minutes(5, 15, 30), minutes(1, 2, 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFcStateOf(&horizonSet{horizons: tc.to}, 1)
			require.NoError(t, f.restoreState(savedWithFloors(t, tc.saved)))
			require.Equal(t, float32(0.5), f.stepDif)
			for i, h := range tc.to {
				want := float32(0)
				for _, s := range tc.saved {
					if s == h {
						want = floorOf(h)
					}
				}
				require.Equal(t, want, f.pend[i].Floor, "the floor of %v", h)
				require.Equal(t, want == 0, f.floorsDue&(1<<i) != 0, "the floor of %v due from history", h)
			}
		})
	}
}

// TestFloorsOfDamagedHorizons: a state whose floors' horizons no
// configuration gives (one not positive, one twice) is damage under a
// valid checksum, refused as a malformed state is (its forecaster learns
// the TSDB's history), never a floor given to a horizon at random.
func TestFloorsOfDamagedHorizons(t *testing.T) {
	hs := minutes(5, 15, 30)
	for name, h := range map[string]int64{"not positive": 0, "twice": int64(5 * time.Minute)} {
		b := savedWithFloors(t, hs)
		at := fcFieldsAt(b) + fcStateFields3*8 + 4*len(hs) + 8 // the second horizon
		binary.LittleEndian.PutUint64(b[at:], uint64(h))
		require.NoError(t, fcReadable(b), name)
		f := newFcStateOf(&horizonSet{horizons: hs}, 1)
		require.ErrorContains(t, f.restoreState(b), "malformed forecaster state", name)
	}
}

// TestFloorsOfKeylessState: a forecaster state of a release before the
// floors carried their horizons is read still: its floors by position
// when it has as many as the forecaster has horizons (all it can tell),
// none otherwise.
func TestFloorsOfKeylessState(t *testing.T) {
	saved := keyless(savedWithFloors(t, minutes(5, 15, 30)))
	require.NoError(t, fcReadable(saved))
	for _, tc := range []struct {
		to   []time.Duration
		want []float32
	}{
		{minutes(5, 15, 30), []float32{floorOf(5 * time.Minute), floorOf(15 * time.Minute), floorOf(30 * time.Minute)}},
		{minutes(15, 30), []float32{0, 0}},
		{minutes(5, 10, 15, 30), []float32{0, 0, 0, 0}},
	} {
		f := newFcStateOf(&horizonSet{horizons: tc.to}, 1)
		require.NoError(t, f.restoreState(saved))
		for i := range tc.to {
			require.Equal(t, tc.want[i], f.pend[i].Floor, "%v: the floor of %v", tc.to, tc.to[i])
		}
	}
}

// quietThenNoisy is a daily-ish cycle whose noise grows 40-fold after
// its first 1000 samples: the forecaster's bands, from the errors of the
// quiet hours, miss, and the floors rise, each horizon's to its own.
func quietThenNoisy(n int) []float64 {
	r := rand.New(rand.NewPCG(3, 1))
	vs := make([]float64, n)
	for i := range vs {
		sd := 0.2
		if i > 1000 {
			sd = 8
		}
		vs[i] = 100 + 20*math.Sin(2*math.Pi*float64(i)/96) + sd*r.NormFloat64()
	}
	return vs
}

// TestSnapshotFloorsFollowHorizons: omen stopped with the default
// horizons (5m, 15m, 30m) and started again with others of the same
// longest restores each horizon's calibrated floor to that horizon. It
// restored them by position: the one of 15m became 20m's, and with one
// horizon more or fewer every floor was lost.
func TestSnapshotFloorsFollowHorizons(t *testing.T) {
	const n = 1500
	for _, tc := range []struct {
		name, horizons string
	}{
		{"listed out of order", "[30m, 5m, 15m]"},
		{"one added", "[5m, 10m, 15m, 30m]"},
		{"one removed", "[15m, 30m]"},
		{"one replaced", "[5m, 20m, 30m]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, db := filepath.Join(t.TempDir(), "models.snap"), t.TempDir()
			opts := func(o *Options) { o.SnapshotPath, o.Workers = path, 1 }
			e := newEnv(t, db, nil, opts)
			vs := quietThenNoisy(n + 1)
			e.feed(pod("b"), model.MetricTypeGauge, vs[:n])
			before := map[time.Duration]float32{}
			fc := podSeries(e, "b").fc
			for i, h := range fc.horizons {
				require.Positive(t, fc.pend[i].Floor, "the floor of %v calibrated", h)
				before[h] = fc.pend[i].Floor
			}
			e.stop()
			require.NoError(t, e.db.Close())

			cfg, err := config.Load([]byte("defaults: {forecast_horizons: " + tc.horizons + "}"))
			require.NoError(t, err)
			e2 := newEnv(t, db, cfg, opts)
			require.Eventually(t, e2.p.Ready, timeout, tick)
			e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{pod("b")}, vs[n:])
			e2.sync()
			after := podSeries(e2, "b").fc
			require.NotNil(t, after)
			require.False(t, after.warmDue, "the forecaster restored")
			for i, h := range after.horizons {
				if f, ok := before[h]; ok {
					require.Equal(t, f, after.pend[i].Floor, "the floor of %v", h)
				} else {
					require.Positive(t, after.pend[i].Floor, "the floor of %v, new, calibrated on the history (TestRestartCalibratesNewHorizons)", h)
				}
			}
			require.Zero(t, after.floorsDue)
		})
	}
}

// TestRestartCalibratesNewHorizons: a horizon added while omen was down
// gets its band floor calibrated on the series' history in the TSDB at the
// series' first sample after the restart, as a reload adding it does (it
// rebuilds the series from that history), the restored model and the
// other horizons' floors kept. It started at 0 (the floor's minimum), its
// bands too narrow for the 6 to 20 hours of checks that raise it: 0 for
// 10m on a064bd8, where the reload gave it the value logged below.
func TestRestartCalibratesNewHorizons(t *testing.T) {
	const n = 1500
	cfg, err := config.Load([]byte("defaults: {forecast_horizons: [5m, 10m, 15m, 30m]}"))
	require.NoError(t, err)
	vs := quietThenNoisy(n + 1)
	floor10 := func(f *fcState) float32 {
		for i, h := range f.horizons {
			if h == 10*time.Minute {
				return f.pend[i].Floor
			}
		}
		t.Fatal("no 10m horizon")
		return 0
	}

	// The reload's.
	e := newEnv(t, "", nil, func(o *Options) { o.Workers = 1 })
	e.feed(pod("b"), model.MetricTypeGauge, vs[:n])
	require.NoError(t, e.p.ApplyConfig(cfg))
	e.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{pod("b")}, vs[n:])
	e.sync()
	reloaded := floor10(podSeries(e, "b").fc)
	require.Positive(t, reloaded)
	e.stop()

	// The restart's.
	path, db := filepath.Join(t.TempDir(), "models.snap"), t.TempDir()
	opts := func(o *Options) { o.SnapshotPath, o.Workers = path, 1 }
	e = newEnv(t, db, nil, opts)
	e.feed(pod("b"), model.MetricTypeGauge, vs[:n])
	e.stop()
	require.NoError(t, e.db.Close())
	e = newEnv(t, db, cfg, opts)
	e.ready(t)
	e.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{pod("b")}, vs[n:])
	e.sync()
	f := podSeries(e, "b").fc
	require.False(t, f.warmDue, "the forecaster restored")
	restarted := floor10(f)
	t.Logf("10m band floor: reload %.3f, restart %.3f", reloaded, restarted)
	require.InDelta(t, reloaded, restarted, 0.25*float64(reloaded), "calibrated as the reload's")
}
