package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecast"
	"github.com/omen-sidecar/omen/internal/livefc"
)

func TestSnapshotRoundTrip(t *testing.T) {
	const n = 300
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	path := filepath.Join(t.TempDir(), "models.snap")

	// Reference: one detector fed every sample without a restart.
	_, want := uninterrupted(t, vs)

	e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	e.feed(ls, model.MetricTypeGauge, vs[:n])
	e.stop()

	// Restart over an empty TSDB: only the snapshot can make the next
	// score ready and identical.
	e2, got := restored(t, path, ls, t0.UnixMilli()+n*stepMs, vs[n])
	require.Equal(t, want.Score, float64(got.Score))
	require.Equal(t, want.Yhat, float64(got.Yhat))
	// The last snapshot written is the one restored, not none.
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.InDelta(t, float64(fi.ModTime().UnixNano())/1e9, testutil.ToFloat64(e2.p.m.snapLast), 1e-3)
}

// uninterrupted returns a detector of the default options fed every value
// of vs at the test's sample times, without a restart, and its last result.
func uninterrupted(t *testing.T, vs []float64) (*detect.Detector, detect.Result) {
	t.Helper()
	ref, err := detect.New(detectOptions(config0().Defaults))
	require.NoError(t, err)
	var want detect.Result
	for i, v := range vs {
		want = ref.Update(t0.UnixMilli()+int64(i)*stepMs, v)
	}
	return ref, want
}

// restored starts a pipeline over an empty TSDB with the snapshot at path
// and pushes the sample (ts, v) of ls; with nothing to warm from, only the
// snapshot can make its result ready, which restored checks (and that
// nothing was warmed) before returning it.
func restored(t *testing.T, path string, ls labels.Labels, ts int64, v float64) (*env, Anomaly) {
	t.Helper()
	e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	require.Eventually(t, e.p.Ready, timeout, tick)
	e.push(ts, model.MetricTypeGauge, []labels.Labels{ls}, []float64{v})
	e.sync()
	got := e.p.Anomalies(nil)
	require.Len(t, got, 1)
	require.True(t, got[0].Ready, "restored, not warming")
	require.Equal(t, 0.0, testutil.ToFloat64(e.p.m.warmed))
	return e, got[0]
}

// inIncident feeds n samples of a series whose level shifts two samples
// before the end, into a pipeline that snapshots to path, and returns the
// values (n+3), the series, path, the pipeline and its anomaly, active.
func inIncident(t *testing.T, mods ...func(*Options)) (vs []float64, ls labels.Labels, path string, e *env, before []Anomaly) {
	const n = 300
	vs = seasonal(n+3, 7)
	for i := n - 2; i < len(vs); i++ {
		vs[i] += 500 // a lasting shift, two samples before the shutdown
	}
	ls = labels.FromStrings("__name__", "temperature")
	path = filepath.Join(t.TempDir(), "models.snap")
	e = newEnv(t, "", nil, func(o *Options) {
		o.SnapshotPath = path
		for _, m := range mods {
			m(o)
		}
	})
	e.feed(ls, model.MetricTypeGauge, vs[:n])
	before = e.p.Anomalies(nil)
	require.True(t, before[0].Active)
	return vs, ls, path, e, before
}

// TestSnapshotKeepsIncident: a series in an incident at shutdown is still
// in it after the restart, with its start and peak, so the alert on it
// neither resolves nor starts over; the detector's event goes on too.
func TestSnapshotKeepsIncident(t *testing.T) {
	vs, ls, path, e, before := inIncident(t)
	e.stop()

	e2 := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	require.Eventually(t, e2.p.Ready, timeout, tick)
	for i := len(vs) - 3; i < len(vs); i++ {
		e2.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
	}
	e2.sync()
	after := e2.p.Anomalies(nil)
	require.True(t, after[0].Active)
	require.Less(t, after[0].Score, 1.0, "the shift's follow-ups are damped")
	require.Equal(t, *before[0].Since, *after[0].Since)
	require.Equal(t, before[0].PeakScore, after[0].PeakScore)
	require.True(t, after[0].LastAnomalous.After(*before[0].LastAnomalous), "the event went on after the restart")
}

// TestSnapshotKeepsIncidentOfRebuild: a series whose models a reload
// condemned (new horizons) and which saw no sample before the shutdown is
// saved without them, but with its incident: after the restart it warms
// again, here from an empty TSDB that cannot show it the shift, and its
// incident and alert go on. The worker rebuilds no series while idle here,
// as one stopped before it got to this one.
func TestSnapshotKeepsIncidentOfRebuild(t *testing.T) {
	vs, ls, path, e, before := inIncident(t, func(o *Options) { o.idleRebuildOff = true })
	n := len(vs) - 3
	cfg, err := config.Load([]byte("defaults: {forecast_horizons: [5m, 10m]}"))
	require.NoError(t, err)
	require.NoError(t, e.p.ApplyConfig(cfg))
	e.sync()
	require.True(t, e.onlySeries().rebuild)
	e.stop()

	e2 := newEnv(t, "", cfg, func(o *Options) { o.SnapshotPath = path })
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.push(t0.UnixMilli()+int64(n)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:n+1])
	e2.sync()
	after := e2.p.Anomalies(nil)
	require.Len(t, after, 1)
	require.False(t, after[0].Ready, "warming: the saved models were of the old options")
	require.True(t, after[0].Active)
	require.Equal(t, *before[0].Since, *after[0].Since)
	require.Equal(t, before[0].PeakScore, after[0].PeakScore)
}

// TestSnapshotReadsVersion2: a snapshot of the version before incidents
// were saved (an upgrade's first start) restores its models.
func TestSnapshotReadsVersion2(t *testing.T) {
	const n = 300
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature")
	path := oldSnapshot(t, 2, vs[:n], func(e *snapEncoder, det []byte) []error {
		return []error{e.u8(1), e.bytes(appendLabels(nil, ls)), e.u8(0), e.u64(0), e.u64(0), e.bytes(det), e.bytes(nil)}
	})
	restored(t, path, ls, t0.UnixMilli()+n*stepMs, vs[n])
}

// oldSnapshot writes a snapshot of the given version to a new path: its
// one series' record as record writes it, given the detector fed vs.
func oldSnapshot(t *testing.T, version byte, vs []float64, record func(e *snapEncoder, det []byte) []error) string {
	t.Helper()
	d, err := detect.New(detectOptions(config0().Defaults))
	require.NoError(t, err)
	for i, v := range vs {
		d.Update(t0.UnixMilli()+int64(i)*stepMs, v)
	}
	det, err := d.AppendBinary(nil)
	require.NoError(t, err)
	return snapFileOf(t, version, func(e *snapEncoder) []error { return record(e, det) })
}

// snapFileOf writes a snapshot of the given version to a new path: the
// header, the records as records writes them, the end tag and the
// checksum, as writeSnapshot frames them.
func snapFileOf(t *testing.T, version byte, records func(e *snapEncoder) []error) string {
	t.Helper()
	var buf bytes.Buffer
	e, err := newSnapEncoder(&buf, uint16(version))
	require.NoError(t, err)
	for _, err := range append(records(e), e.end()) {
		require.NoError(t, err)
	}
	path := filepath.Join(t.TempDir(), "models.snap")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	return path
}

func TestSnapshotUnusable(t *testing.T) {
	const n = 120
	vs := seasonal(n+1, 8)
	ls := labels.FromStrings("__name__", "temperature")
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"missing", func(t *testing.T, path string) { require.NoError(t, os.Remove(path)) }},
		{"flipped byte", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			b[len(b)/2] ^= 0x55
			require.NoError(t, os.WriteFile(path, b, 0o644))
		}},
		{"truncated", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, b[:len(b)/3], 0o644))
		}},
		{"other version", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			b[4] = 99
			require.NoError(t, os.WriteFile(path, b, 0o644))
		}},
		{"garbage", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte("not a snapshot"), 0o644))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "models.snap")
			db := filepath.Join(dir, "tsdb")
			e := newEnv(t, db, nil, func(o *Options) { o.SnapshotPath = path })
			e.feed(ls, model.MetricTypeGauge, vs[:n])
			e.stop()
			require.NoError(t, e.db.Close())
			tc.damage(t, path)

			// Same TSDB: the series warms from its history instead.
			e2 := newEnv(t, db, nil, func(o *Options) { o.SnapshotPath = path })
			require.Eventually(t, e2.p.Ready, timeout, tick)
			e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e2.sync()
			got := e2.p.Anomalies(nil)
			require.Len(t, got, 1)
			require.True(t, got[0].Ready, "warm from TSDB history")
			require.Equal(t, float64(n), testutil.ToFloat64(e2.p.m.warmed))
		})
	}
}

// TestSnapshotTornTempFile: a crash while the next snapshot is being
// written leaves a torn temporary file beside the last complete snapshot.
// The rename never happened, so the restart restores the complete one (no
// warm-up, though the TSDB is empty), and the next snapshot replaces the
// torn file.
func TestSnapshotTornTempFile(t *testing.T) {
	const n = 120
	vs, ls, path, e := snapshotting(t, n, "temperature")
	e.stop()
	good, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path+".tmp", good[:len(good)/2], 0o644))

	e2, _ := restored(t, path, ls, t0.UnixMilli()+n*stepMs, vs[n])
	e2.stop()
	_, err = os.Stat(path + ".tmp")
	require.ErrorIs(t, err, os.ErrNotExist, "the next snapshot replaced the torn temporary file")
	saved, err := readUnpacked(path)
	require.NoError(t, err)
	require.Len(t, saved, 1)
}

// TestSnapshotKeepsUnclaimedState: a restored state waits for its series'
// first sample; a snapshot taken before it comes (a second restart soon
// after the first, or a slow scrape) must keep it, and where a record of a
// series is written twice (claimed while the snapshot was written), the
// later one, the worker's, wins.
func TestSnapshotKeepsUnclaimedState(t *testing.T) {
	const n = 300
	vs := seasonal(n+2, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	ref, want := uninterrupted(t, vs)
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath = path }

	e := newEnv(t, "", nil, opts)
	e.feed(ls, model.MetricTypeGauge, vs[:n])
	e.stop()

	// A restart with no sample before the next shutdown.
	e2 := newEnv(t, "", nil, opts)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.stop()
	saved, err := readUnpacked(path)
	require.NoError(t, err)
	require.Len(t, saved, 1, "the unclaimed state is kept")

	// One more sample; then the stale state is put back as if the series
	// had claimed it while the snapshot was being written.
	e3 := newEnv(t, "", nil, opts)
	require.Eventually(t, e3.p.Ready, timeout, tick)
	e3.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:n+1])
	e3.sync()
	e3.p.restoreMu.Lock()
	e3.p.restored = map[uint64][]*savedSeries{ls.Hash(): {saved[0].savedSeries}}
	e3.p.restoreMu.Unlock()
	e3.stop()
	saved, err = readUnpacked(path)
	require.NoError(t, err)
	require.Len(t, saved, 2)

	e4 := newEnv(t, "", nil, opts)
	require.Eventually(t, e4.p.Ready, timeout, tick)
	e4.push(t0.UnixMilli()+(n+1)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n+1:])
	e4.sync()
	got := e4.p.Anomalies(nil)
	require.Len(t, got, 1)
	require.Equal(t, want.Score, float64(got[0].Score))
	require.Equal(t, 0.0, testutil.ToFloat64(e4.p.m.warmed))
	requireSameState(t, ref, e4, "resumed from the newer record, as if never restarted")
}

// TestSnapshotRestoreTakesNewOptions: a series restored after a restart
// scores with the options the configuration gives now; one whose saved
// state was learnt under another false-alarm rate starts again from its
// history instead, and one whose forecaster took the steps of other
// horizons has that forecaster learn its history again (the detector kept:
// TestRestoreOfOtherStepsKeepsDetector). One whose forecaster gets a
// horizon of the same steps it had no band floor of replays its history
// for that floor alone (TestRestartCalibratesNewHorizons), its models
// restored.
func TestSnapshotRestoreTakesNewOptions(t *testing.T) {
	const n = 300
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	for _, tc := range []struct {
		name      string
		cfg       string
		direction detect.Direction
		restored  bool
		replayed  bool // the history replayed for a new horizon's floor
	}{
		{"direction", "defaults: {direction: up}", detect.Up, true, false},
		{"false-alarm rate", "defaults: {false_alarm_rate: 0.01}", detect.Both, false, false},
		// The forecaster's step follows the longest horizon.
		{"horizons of the same steps", "defaults: {forecast_horizons: [10m, 30m]}", detect.Both, true, true},
		{"horizons of the same steps, none new", "defaults: {forecast_horizons: [15m, 30m]}", detect.Both, true, false},
		{"horizons of other steps", "defaults: {forecast_horizons: [5m, 1h]}", detect.Both, false, false}, // the forecaster learns the n samples again
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
			opts := func(o *Options) { o.SnapshotPath = path }
			e := newEnv(t, db, nil, opts)
			e.feed(ls, model.MetricTypeGauge, vs[:n])
			e.stop()
			require.NoError(t, e.db.Close())

			cfg, err := config.Load([]byte(tc.cfg))
			require.NoError(t, err)
			e2 := newEnv(t, db, cfg, opts)
			require.Eventually(t, e2.p.Ready, timeout, tick)
			e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e2.sync()
			s := e2.onlySeries()
			require.NotNil(t, s)
			require.Equal(t, tc.direction, s.det.Options().Direction)
			require.True(t, s.det.Ready(), "no new warm-up either way")
			switch {
			case tc.replayed:
				require.Equal(t, float64(n), testutil.ToFloat64(e2.p.m.warmed), "10m's floor calibrated on the TSDB's history")
				require.False(t, s.fc.warmDue, "the forecaster restored")
			case tc.restored:
				require.Equal(t, 0.0, testutil.ToFloat64(e2.p.m.warmed))
			default:
				require.Equal(t, float64(n), testutil.ToFloat64(e2.p.m.warmed), "warmed from the TSDB's history")
			}
		})
	}
}

// TestSnapshotCatchUpAfterCrash: after a crash the snapshot is the last
// periodic one; the samples acknowledged after it are in the TSDB (its
// WAL), and a restored series replays them before its next sample, so its
// models end as if there had been no crash.
func TestSnapshotCatchUpAfterCrash(t *testing.T) {
	const n1, n = 200, 300
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	ref := referenceDetector(t, vs)
	db, opts := stoppedAfter(t, ls, vs, n1, n, true)

	e2 := newEnv(t, db, nil, opts)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
	e2.sync()
	require.Equal(t, 0.0, testutil.ToFloat64(e2.p.m.warmed), "restored, not warmed")
	require.Equal(t, float64(n-n1), testutil.ToFloat64(e2.p.m.caughtUp))
	// As their HELP texts say, the replayed samples are counted apart:
	// the process before a crash scored and counted them, and those a
	// shutdown's drain left have no stored scores to count.
	require.Equal(t, float64(len(vs[n:])), testutil.ToFloat64(e2.p.m.scoredSamples), "the live sample alone")
	requireSameState(t, ref, e2, "as if there had been no crash")
}

// stoppedAfter feeds a pipeline snapshotting to a new path the first n of
// vs, with a periodic snapshot after n1, and stops it: gracefully (a
// snapshot at the end), or, if crash, as in a crash (the periodic snapshot
// the last). It returns the TSDB's directory and the options that restore
// the snapshot.
func stoppedAfter(t *testing.T, ls labels.Labels, vs []float64, n1, n int, crash bool) (db string, opts func(*Options)) {
	db, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
	opts = func(o *Options) { o.SnapshotPath = path }
	e := newEnv(t, db, nil, opts)
	e.feed(ls, model.MetricTypeGauge, vs[:n1])
	e.sync()
	e.p.snapshot(context.Background())
	periodic, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := n1; i < n; i++ {
		e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
	}
	e.stop()
	require.NoError(t, e.db.Close())
	if crash {
		require.NoError(t, os.WriteFile(path, periodic, 0o644))
	}
	return db, opts
}

// TestSnapshotNeedsRoom: a snapshot that the file system has no room for
// above the storage's reserve is not started (it is written beside the
// old one, and a disk it filled failed the TSDB's commits meanwhile); the
// old one stays.
func TestSnapshotNeedsRoom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	full := errors.New("no space")
	var room atomic.Bool
	room.Store(true)
	var asked atomic.Int64
	e := newEnv(t, "", nil, func(o *Options) {
		o.SnapshotPath = path
		o.SnapshotRoom = func(need int64) error {
			asked.Store(need)
			if room.Load() {
				return nil
			}
			return full
		}
	})
	e.feed(labels.FromStrings("__name__", "temperature"), model.MetricTypeGauge, seasonal(100, 7))
	e.p.snapshot(context.Background())
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, int64(3<<10), asked.Load(), "a first snapshot: ~3 KiB a series")
	room.Store(false)
	e.feed(labels.FromStrings("__name__", "load"), model.MetricTypeGauge, seasonal(100, 8))
	e.p.snapshot(context.Background())
	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.snapFailures))
	require.Equal(t, int64(len(before))*5/4, asked.Load(), "the last snapshot's size and a quarter")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "the old snapshot stays")
	_, err = os.Stat(path + ".tmp")
	require.True(t, os.IsNotExist(err), "nothing half-written")
	room.Store(true) // the final snapshot at stop
}

// requireSameState checks that e's one series has learnt exactly what ref
// has.
func requireSameState(t *testing.T, ref *detect.Detector, e *env, msg string) {
	t.Helper()
	want, err := ref.MarshalBinary()
	require.NoError(t, err)
	s := e.onlySeries()
	require.NotNil(t, s)
	got, err := s.det.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, want, got, msg)
}

// TestSnapshotRestoresEverything: after a restart over an empty TSDB (only
// the snapshot to go on), a gauge's forecaster and a counter's last raw
// value come back too, so both series end exactly as in a run without the
// restart: the forecasts go on from the first sample, and the counter's
// first sample after the restart is scored as a rate.
func TestSnapshotRestoresEverything(t *testing.T) {
	const n, after = 800, 40 // the forecaster is fitted at the 384th sample
	for _, tc := range []struct {
		name string
		typ  model.MetricType
		vs   []float64
	}{
		{"gauge with forecaster", model.MetricTypeGauge, seasonal(n+after, 11)},
		{"counter", model.MetricTypeCounter, counterValues(seasonal(n+after, 12))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := labels.FromStrings("__name__", "requests_total", "job", "a")
			path := filepath.Join(t.TempDir(), "models.snap")
			feed := func(e *env, from, to int) {
				for i := from; i < to; i++ {
					e.push(t0.UnixMilli()+int64(i)*stepMs, tc.typ, []labels.Labels{ls}, tc.vs[i:i+1])
				}
				e.sync()
			}
			ref := newEnv(t, "", nil, nil)
			feed(ref, 0, n+after)

			e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
			feed(e, 0, n)
			e.stop()
			e2 := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
			require.Eventually(t, e2.p.Ready, timeout, tick)
			feed(e2, n, n+after)

			want, got := ref.onlySeries(), e2.onlySeries()
			require.NotNil(t, got)
			wd, err := want.det.MarshalBinary()
			require.NoError(t, err)
			gd, err := got.det.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, wd, gd, "detector")
			require.Equal(t, want.fc != nil, got.fc != nil)
			if want.fc != nil {
				wf, err := want.fc.m.MarshalBinary()
				require.NoError(t, err)
				gf, err := got.fc.m.MarshalBinary()
				require.NoError(t, err)
				require.Equal(t, wf, gf, "forecaster")
			}
			require.Equal(t, 0.0, testutil.ToFloat64(e2.p.m.warmed))
		})
	}
}

// counterValues turns positive increments into a running total.
func counterValues(incs []float64) []float64 {
	out := make([]float64, len(incs))
	total := 0.0
	for i, v := range incs {
		total += math.Abs(v)
		out[i] = total
	}
	return out
}

// TestSnapshotForecastsAtOnce: a restored series forecasts at its first
// sample after the restart. The forecasts themselves are not saved, only
// when the last was made, so they were missing from /metrics until the
// next was due (up to --forecast.interval) and went stale in Prometheus,
// breaking the capacity alerts on them off across every restart.
func TestSnapshotForecastsAtOnce(t *testing.T) {
	// 450 samples: the forecaster (30 s steps) is ready after 384, and
	// forecasts once a minute of sample time.
	const n = 449
	vs, ls, path, e := snapshotting(t, n, "queue_depth")
	var before bytes.Buffer
	require.NoError(t, e.p.WriteOutputs(&before))
	require.Contains(t, before.String(), "\nforecast{", "forecasting before the restart")
	e.stop()

	e2, _ := restored(t, path, ls, t0.UnixMilli()+n*stepMs, vs[n])
	var after bytes.Buffer
	require.NoError(t, e2.p.WriteOutputs(&after))
	require.Contains(t, after.String(), "\nforecast{", "forecasting after the first sample")
	require.Contains(t, after.String(), "\nforecast_upper{")
}

// snapshotting returns a pipeline that snapshots to a new path, fed the
// first n of n+1 seasonal values of the series named name.
func snapshotting(t *testing.T, n int, name string) (vs []float64, ls labels.Labels, path string, e *env) {
	vs = seasonal(n+1, 9)
	ls = labels.FromStrings("__name__", name)
	path = filepath.Join(t.TempDir(), "models.snap")
	e = newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	e.feed(ls, model.MetricTypeGauge, vs[:n])
	return vs, ls, path, e
}

// TestSnapshotKeepsIncidentEvents: an incident's events outlive a
// restart. Three unrelated blips 15 samples apart are one incident of
// three events, its duration the longest event's (0); without the events
// in the snapshot the restored incident read as one event of minutes
// (465 s, past the alerts' 300: a page on restart), and its explanation
// fell back to the latest sample's.
func TestSnapshotKeepsIncidentEvents(t *testing.T) {
	vs := seasonal(400, 3)
	for _, i := range []int{360, 375, 390} {
		vs[i] += 1000
	}
	ls := labels.FromStrings("__name__", "temperature")
	path := filepath.Join(t.TempDir(), "models.snap")
	e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	e.feed(ls, model.MetricTypeGauge, vs[:392])
	before := e.onlySeries().pub.incidentState
	require.NotZero(t, before.since)
	require.Less(t, before.duration(), time.Minute)
	e.stop()

	e2 := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.push(t0.UnixMilli()+392*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[392:393])
	e2.sync()
	after := e2.onlySeries().pub.incidentState
	require.Equal(t, before.since, after.since)
	require.Equal(t, before.event, after.event)
	require.Equal(t, before.duration(), after.duration(), "a restart lengthened the current event")
	require.Equal(t, before.peakMember, after.peakMember)
	require.NotEmpty(t, after.peakMember)
}

// TestSnapshotKeepsMASEScale: the forecast accuracy's MASE scale (the
// mean change between samples) outlives a restart. Rebuilt from the first
// samples after it, the first figures after every restart were scaled by
// a mean of a few changes.
func TestSnapshotKeepsMASEScale(t *testing.T) {
	vs, ls, path, e := snapshotting(t, 300, "temperature")
	s := e.onlySeries()
	before, nBefore := s.absDif, s.nDif
	require.Positive(t, before)
	e.stop()

	e2 := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.push(t0.UnixMilli()+300*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[300:301])
	e2.sync()
	after := e2.onlySeries()
	// The first sample after the restart has no sample before it in the
	// process (see step): the scale is the saved one.
	require.Equal(t, nBefore, after.nDif)
	require.Equal(t, before, after.absDif)
}

// TestSnapshotReadsVersions4And5: a snapshot before the MASE scale was
// saved (4) restores its models and incident, the scale rebuilt from the
// samples after the restart, as then; an uncompressed one (5, before
// version 6 compressed the file) restores them and its scale.
func TestSnapshotReadsVersions4And5(t *testing.T) {
	const n = 300
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature")
	since := t0.UnixMilli() + (n-5)*stepMs
	for _, tc := range []struct {
		version byte
		nDif    int
	}{{4, 0}, {5, 7}} {
		t.Run(fmt.Sprint(tc.version), func(t *testing.T) {
			path := oldSnapshot(t, tc.version, vs[:n], func(e *snapEncoder, det []byte) []error {
				errs := []error{
					e.u8(1), e.bytes(appendLabels(nil, ls)), e.u8(0), e.u64(0), e.u64(0),
					e.u64(uint64(since)), e.u64(uint64(since)), e.u64(math.Float64bits(3)), e.u32(4),
					e.u64(uint64(since)), e.u32(0), e.bytes([]byte("level")),
				}
				if tc.version >= 5 {
					errs = append(errs, e.u64(math.Float64bits(2.5)), e.u32(uint32(tc.nDif)))
				}
				return append(errs, e.bytes(det), e.bytes(nil))
			})
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Contains(t, string(b), "level", "uncompressed, as versions before 6 wrote it")

			e2, _ := restored(t, path, ls, t0.UnixMilli()+n*stepMs, vs[n])
			s := e2.onlySeries()
			require.Equal(t, since, s.pub.since, "its incident restored")
			require.Equal(t, "level", s.pub.peakMember)
			require.EqualValues(t, tc.nDif, s.nDif, "the scale saved, or none: rebuilt from the next samples")
		})
	}
}

// TestStorageReopenedRestartsSeries: after the TSDB is reopened (its series
// numbered anew, so a reference may name another series now) the scorers
// forget every series and each resumes at its next sample from the
// snapshot, by labels, as after a restart: the same score as without the
// reopen, no warm-up, and its incident kept.
func TestStorageReopenedRestartsSeries(t *testing.T) {
	const n = 300
	vs := seasonal(n+1, 7)
	vs[n-1] += 500 // an incident going on at the reopen
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	_, want := uninterrupted(t, vs)

	e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = filepath.Join(t.TempDir(), "models.snap") })
	e.feed(ls, model.MetricTypeGauge, vs[:n])
	before := e.p.Anomalies(nil)
	require.Len(t, before, 1)
	require.True(t, before[0].Active)
	warmed := testutil.ToFloat64(e.p.m.warmed)

	e.p.StorageReopened()
	for _, w := range e.p.workers {
		w.mu.RLock()
		require.Empty(t, w.series, "keyed by references the reopened TSDB may give to other series")
		w.mu.RUnlock()
	}
	require.Zero(t, e.p.scored.Load())

	e.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{vs[n]})
	e.sync()
	got := e.p.Anomalies(nil)
	require.Len(t, got, 1)
	require.True(t, got[0].Ready, "restored, not warming")
	require.Equal(t, warmed, testutil.ToFloat64(e.p.m.warmed))
	require.Equal(t, want.Score, float64(got[0].Score))
	require.True(t, got[0].Active)
	require.Equal(t, before[0].Since, got[0].Since, "the same incident")
	require.Equal(t, int64(1), e.p.scored.Load())
}

// TestStorageReopenedScoresQueuedFirst: a batch queued at the reopen is
// scored before the snapshot the series restart from; scored between the
// restore and the reset, a series it created took its restored state,
// which the reset then dropped, and it warmed again from history.
func TestStorageReopenedScoresQueuedFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath, o.Workers = path, 1 }
	vs := seasonal(302, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	e := newEnv(t, "", nil, opts)
	e.feed(ls, model.MetricTypeGauge, vs[:300])
	e.stop()

	// A restart over an empty TSDB: the series' state waits in the
	// snapshot for its next sample.
	e2 := newEnv(t, "", nil, opts)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	w := e2.p.workers[0]
	other := labels.FromStrings("__name__", "x")
	e2.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{other}, []float64{1})
	e2.sync()
	w.mu.Lock() // the worker stalls at the next batch
	e2.push(t0.UnixMilli()+stepMs, model.MetricTypeGauge, []labels.Labels{other}, []float64{1})
	time.Sleep(20 * time.Millisecond)
	for i := range 400 { // a backlog of new series, then the series' sample
		var nw []labels.Labels
		for j := range 20 {
			nw = append(nw, labels.FromStrings("__name__", "n", "i", fmt.Sprint(i*20+j)))
		}
		e2.push(t0.UnixMilli()+2*stepMs, model.MetricTypeGauge, nw, make([]float64, 20))
	}
	e2.push(t0.UnixMilli()+300*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[300:301]) // queued
	done := make(chan struct{})
	go func() { e2.p.StorageReopened(); close(done) }()
	time.Sleep(20 * time.Millisecond)
	w.mu.Unlock()
	<-done
	e2.push(t0.UnixMilli()+301*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[301:302])
	e2.sync()
	got := e2.p.Anomalies([][]*labels.Matcher{{labels.MustNewMatcher(labels.MatchEqual, "job", "a")}})
	require.Len(t, got, 1)
	require.True(t, got[0].Ready, "restored from the snapshot, not warming again")
}

// TestBudgetsKeptAcrossRestart: with --detect.max-series or
// --forecast.max-series full, the series that had a detector or a
// forecaster get theirs back after a restart whatever order they come back
// in; one that never had one gets none ahead of them, and gets the budget
// of a series that does not come back once its saved state expires. (The
// series that came back first took the budget, and every restart moved
// the scores or the forecasts, a KEDA trigger's among them.)
func TestBudgetsKeptAcrossRestart(t *testing.T) {
	for _, budget := range []string{"detect", "forecast"} {
		for _, tc := range []struct {
			name string
			back []string // the series that come back, in order
			have []string // those with a model of the budget's kind then
		}{
			{"all back, newcomer first", []string{"c", "a", "b"}, []string{"a", "b"}},
			{"all back, in order", []string{"a", "b", "c"}, []string{"a", "b"}},
			{"one back", []string{"c", "b"}, []string{"b"}},
		} {
			t.Run(budget+"/"+tc.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "models.snap")
				opts := func(o *Options) {
					o.SnapshotPath, o.MaxSeries, o.ForecastMaxSeries = path, 100, 100
					if budget == "detect" {
						o.MaxSeries = 2
					} else {
						o.ForecastMaxSeries = 2
					}
				}
				have := func(e *env) []string { return withModel(e, budget == "forecast") }
				e := newEnv(t, "", nil, opts)
				e.pushPods(t0.UnixMilli(), "a", "b", "c") // a and b take the budget
				require.Equal(t, []string{"a", "b"}, have(e))
				e.stop()

				e2 := newEnv(t, "", nil, opts)
				require.Eventually(t, e2.p.Ready, timeout, tick)
				e2.pushPods(t0.UnixMilli()+stepMs, tc.back...)
				require.Equal(t, tc.have, have(e2))

				// The saved states not claimed expire: their budget is
				// free again, and the sweep gives it to c if the others
				// do not fill it.
				later := t0.Add(2 * time.Hour)
				e2.clock.set(later)
				e2.p.expireRestored()
				e2.pushPods(later.UnixMilli(), tc.back...)
				for _, w := range e2.p.workers {
					w.sweep()
				}
				e2.pushPods(later.UnixMilli()+stepMs, tc.back...)
				want := tc.have
				if len(want) < 2 {
					want = append(want, "c")
				}
				require.Equal(t, want, have(e2))
				require.Zero(t, e2.p.scoredHeld.Load())
				require.Zero(t, e2.p.fcHeld.Load())
			})
		}
	}
}

// TestRestoredKeptWhileNothingArrives: the states saved of series that
// have not come back since a restart go as the sweep forgets a live series
// (TestOmenClockStepsForward), --detect.stale-after on omen's clock and in
// sample time, where the latest sample the TSDB held at the restart stands
// for theirs. On omen's clock alone, an omen restarted while every sender
// had stopped (Prometheus down, its remote_write cut off) dropped them all
// an hour on with nothing arrived, and the series, back, warmed from their
// history as new ones (the first case: 2 of 2 states dropped on 3fbd5b7).
func TestRestoredKeptWhileNothingArrives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		clock  time.Duration // omen's clock at expireRestored, from the restart
		sample time.Duration // the sample time of a series that came since (0: none came)
		kept   int
	}{
		{"nothing arrives for 2h", 2 * time.Hour, 0, 2},
		{"a newcomer 2h on", 2 * time.Hour, 2 * time.Hour, 0},
		{"a newcomer 30m on in sample time, 2h on omen's clock", 2 * time.Hour, 30 * time.Minute, 2},
		{"a newcomer 2h on in sample time, 30m on omen's clock", 30 * time.Minute, 2 * time.Hour, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "models.snap")
			opts := func(o *Options) { o.SnapshotPath = path }
			db := t.TempDir()
			e := newEnv(t, db, nil, opts)
			e.pushPods(t0.UnixMilli(), "a", "b")
			e.stop()
			require.NoError(t, e.db.Close())

			e = newEnv(t, db, nil, opts)
			e.ready(t)
			waiting := func() int { return restoredWaiting(e) }
			require.Equal(t, 2, waiting())
			if tc.sample > 0 {
				e.pushPods(t0.Add(tc.sample).UnixMilli(), "c")
			}
			e.clock.set(t0.Add(tc.clock))
			e.p.expireRestored()
			require.Equal(t, tc.kept, waiting())
			if tc.kept > 0 {
				require.Equal(t, int64(2), e.p.scoredHeld.Load(), "their room is held as before")
			}
		})
	}
}

// TestRestoredKeptWhileOnlyDerivedArrive: a derived input, evaluated by
// omen on its own clock, goes on while every sender is down; its samples
// say nothing of the ingested series' absence. The states of ingested
// series not back since the restart were aged by them when no ingested
// sample had come, and dropped StaleAfter on with their senders still
// down (2 of 2 dropped on abf5690); the sweep keeps a live series so
// (arrived per kind, worker.sweep). A derived input's state not back ages
// with the derived samples, as before.
func TestRestoredKeptWhileOnlyDerivedArrive(t *testing.T) {
	cfg, err := config.Load([]byte("derived:\n  - {name: one, expr: vector(1), interval: 1h}\n  - {name: two, expr: vector(2), interval: 1h}\n"))
	require.NoError(t, err)
	one, err := config.Load([]byte("derived:\n  - {name: one, expr: vector(1), interval: 1h}\n"))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath = path }
	db := t.TempDir()
	e := newEnvEngine(t, db, cfg, testEngine(), opts)
	e.pushPods(t0.UnixMilli(), "a", "b")
	for i := range cfg.Derived {
		e.p.evalDerived(context.Background(), &cfg.Derived[i], t0)
	}
	e.sync()
	e.stop()
	require.NoError(t, e.db.Close())

	// Restarted without "two" (removed while omen was down), so that its
	// state waits; "one" is evaluated, the senders stay down.
	e = newEnvEngine(t, db, one, testEngine(), opts)
	e.ready(t)
	waiting := func() []string { return waitingNames(e.p, false) }
	require.Equal(t, []string{"ga", "gb", "one", "two"}, waiting())
	for _, at := range []time.Duration{time.Hour, 2 * time.Hour} {
		e.clock.set(t0.Add(at))
		e.p.evalDerived(context.Background(), &one.Derived[0], t0.Add(at))
		e.sync()
		e.p.expireRestored()
	}
	require.Equal(t, []string{"ga", "gb"}, waiting(), "the ingested states wait for their senders; the derived one not back goes")
	require.Equal(t, int64(2), e.p.scoredHeld.Load(), "their room is held as before")

	// Ingested samples from StaleAfter past the latest the TSDB held at
	// the restart: the two not back go.
	e.clock.set(t0.Add(3 * time.Hour))
	e.pushPods(t0.Add(3*time.Hour).UnixMilli(), "c")
	e.p.expireRestored()
	require.Empty(t, waiting())
}

// restoredWaiting is how many restored states wait for their series.
func restoredWaiting(e *env) int { return len(waitingNames(e.p, false)) }

// TestRestoredGoOnceSendersAreBack: the states of series not back since
// the restart, ingested ones and a derived input's removed from the
// configuration, go once ingested samples have come StaleAfter past the
// latest the TSDB held at the restart, whatever the derived inputs did.
// They were aged by the older of the two kinds' latest samples, and the
// derived kind's stops where omen stops evaluating one that yields (all
// removed at a reload, or one that yields only while something is absent):
// from then on, with the senders back and hours past, the states of
// series gone for good were kept, their room held, until omen restarted.
// The sweep ages a live series by its own kind's samples.
func TestRestoredGoOnceSendersAreBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  string
		// stop ends the derived kind's samples 20m after the restart.
		stop func(e *env, cfg *config.Config)
	}{
		{"the derived inputs removed at a reload", "derived:\n  - {name: one, expr: vector(1), interval: 1h}\n",
			func(e *env, _ *config.Config) { require.NoError(t, e.p.ApplyConfig(config.Default())) }},
		{"a derived input that yields no more", "derived:\n  - {name: one, expr: 'absent(g{pod=\"x\"})', interval: 1h}\n",
			func(e *env, cfg *config.Config) {
				e.pushPods(t0.Add(20*time.Minute).UnixMilli(), "x")
				e.p.evalDerived(context.Background(), &cfg.Derived[0], t0.Add(20*time.Minute))
				e.sync()
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]byte(tc.cfg))
			require.NoError(t, err)
			// Saved with a derived input, two, removed while omen was down.
			before, err := config.Load([]byte(tc.cfg + "  - {name: two, expr: vector(2), interval: 1h}\n"))
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "models.snap")
			opts := func(o *Options) { o.SnapshotPath = path }
			db := t.TempDir()
			e := newEnvEngine(t, db, before, testEngine(), opts)
			e.pushPods(t0.UnixMilli(), "a", "b")
			e.p.evalDerived(context.Background(), &before.Derived[1], t0)
			e.sync()
			e.stop()
			require.NoError(t, e.db.Close())

			e = newEnvEngine(t, db, cfg, testEngine(), opts)
			e.ready(t)
			waiting := func() int { return restoredWaiting(e) }
			require.Equal(t, 3, waiting())
			// The derived input yields 10 minutes after the restart, the
			// senders down; from 20 minutes on it yields no more.
			e.clock.set(t0.Add(10 * time.Minute))
			e.p.evalDerived(context.Background(), &cfg.Derived[0], t0.Add(10*time.Minute))
			e.sync()
			tc.stop(e, cfg)
			// The senders are back 3h on (a new pod, c); a and b are gone
			// for good.
			e.clock.set(t0.Add(3 * time.Hour))
			e.pushPods(t0.Add(3*time.Hour).UnixMilli(), "c")
			e.p.expireRestored()
			require.LessOrEqual(t, e.p.arrivedMs()[1], t0.Add(20*time.Minute).UnixMilli(), "the derived kind's latest sample")
			require.Zero(t, waiting(), "the states of the pods and of two, not back")
			require.Zero(t, e.p.scoredHeld.Load(), "their room")
		})
	}
}

// TestRestoredAgedFromTheSendersLatest: the ingested states saved at a
// graceful stop age from the latest ingested sample omen had taken, not
// from the TSDB head's latest sample, which a derived input's samples,
// stamped on omen's clock, put ahead of the senders' when their clocks
// are behind omen's (or their samples come late, a remote-write queue's
// backlog). With the senders 30 minutes behind, their states not back
// waited StaleAfter and 30 minutes of their samples (kept in the first
// case on a064bd8: 2 of 2). A derived state not back ages from the head's
// latest as before, and without a mark (a crash, the states' run may have
// taken later samples than the snapshot's) every state does.
func TestRestoredAgedFromTheSendersLatest(t *testing.T) {
	cfg, err := config.Load([]byte("derived:\n  - {name: one, expr: vector(1), interval: 1h}\n"))
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		back   time.Duration // the senders' first sample after the restart, after their latest before
		crash  bool          // the snapshot's current mark removed
		waitng []string
	}{
		{"senders back past StaleAfter", 70 * time.Minute, false, nil},
		{"senders back within StaleAfter", 50 * time.Minute, false, []string{"ga", "gb"}},
		{"no mark: the head's latest", 70 * time.Minute, true, []string{"ga", "gb"}},
		{"no mark, back past StaleAfter of the head's latest", 100 * time.Minute, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "models.snap")
			opts := func(o *Options) { o.SnapshotPath = path }
			db := t.TempDir()
			e := newEnvEngine(t, db, cfg, testEngine(), opts)
			// The senders' clock is 30 minutes behind omen's.
			e.clock.set(t0.Add(30 * time.Minute))
			e.pushPods(t0.UnixMilli(), "a", "b")
			e.p.evalDerived(context.Background(), &cfg.Derived[0], t0.Add(30*time.Minute))
			e.sync()
			e.stop()
			require.NoError(t, e.db.Close())
			if tc.crash {
				require.NoError(t, os.Remove(path+markSuffix))
			}

			// Restarted without the derived input, so that nothing of
			// omen's clock comes after the restart.
			e = newEnvEngine(t, db, nil, testEngine(), opts)
			e.ready(t)
			waiting := func() []string { return waitingNames(e.p, true) }
			require.Equal(t, []string{"ga", "gb"}, waiting())
			e.clock.set(t0.Add(3 * time.Hour))
			e.pushPods(t0.Add(tc.back).UnixMilli(), "c")
			e.p.expireRestored()
			require.Equal(t, tc.waitng, waiting())
		})
	}
}

// waitingNames lists the restored states not claimed yet, by name and pod
// label, sorted; of ingested inputs only if ingestedOnly.
func waitingNames(p *Pipeline, ingestedOnly bool) []string {
	p.restoreMu.Lock()
	defer p.restoreMu.Unlock()
	var names []string
	for _, list := range p.restored {
		for _, s := range list {
			if !ingestedOnly || s.flags&flagDef == 0 {
				names = append(names, s.ls.Get("__name__")+s.ls.Get("pod"))
			}
		}
	}
	slices.Sort(names)
	return names
}

// TestSavedIngested: the snapshot's latest ingested sample time is known
// only if every record says it: a release before the field, rolled back
// to, kept it in the states still waiting alone, of the run before its own.
func TestSavedIngested(t *testing.T) {
	const none = math.MinInt64
	for _, tc := range []struct {
		name string
		recs []int64
		want int64
	}{
		{"no record", nil, none},
		{"every record", []int64{5, 7, 7}, 7},
		{"a record without", []int64{5, none, 7}, none},
		{"written unknown", []int64{none, none}, none},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var saved []*savedSeries
			for _, v := range tc.recs {
				saved = append(saved, &savedSeries{ingested: v})
			}
			require.Equal(t, tc.want, savedIngested(saved))
		})
	}
}

// withModel lists the pod labels of the series scored (with a forecaster,
// if fc), sorted.
func withModel(e *env, fc bool) []string {
	e.sync()
	var pods []string
	for _, w := range e.p.workers {
		w.view(func(s *series) {
			if !fc || s.fc != nil {
				pods = append(pods, s.in.Get("pod"))
			}
		})
	}
	slices.Sort(pods)
	return pods
}

// TestSnapshotRestoredSkipsOutOfOrder: a series restored from the snapshot
// takes a sample at or before the latest its models took in as out of
// order, as it does once it has published: a sender resending its latest
// sample after the restart (which the TSDB takes as an identical
// duplicate), or older history that the TSDB's out-of-order window takes
// (self-backfill). Scored, the resent sample went through the models a
// second time and its results went over those stored before the restart,
// refused as duplicates (omen_output_append_failures_total, four a
// series); older history stepped the models back in time. After a crash
// the series still catches up, at its first sample in order, on what the
// TSDB took since the snapshot. So does a series warmed from its history
// instead (no snapshot, one unusable, or the series new since the last
// periodic snapshot before a crash): its warm-up learns up to the latest
// result the run before stored (its warm-up read the history only up to
// the sample before the one resent, which was scored again).
func TestSnapshotRestoredSkipsOutOfOrder(t *testing.T) {
	const n1, n = 200, 300
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	// Reference: one detector fed every sample once, without a restart
	// (a warm-up replays up to 2048 samples: all of them).
	ref, _ := uninterrupted(t, vs)
	for _, tc := range []struct {
		name string
		// What the restart finds: the snapshot taken at the stop (""), the
		// periodic one taken after n1 samples ("crash") or before the
		// first ("crash, series new"), none, or an unusable one.
		snap   string
		window int64 // the TSDB's out-of-order window after the restart, ms
		resend int   // the sample sent first after the restart
	}{
		{"the latest sample resent", "", 0, n - 1},
		{"the latest sample resent, out-of-order window", "", time.Hour.Milliseconds(), n - 1},
		{"older history, out-of-order window", "", time.Hour.Milliseconds(), n - 20},
		{"older history after a crash, out-of-order window", "crash", time.Hour.Milliseconds(), n1 - 10},
		{"warmed: the latest sample resent", "none", 0, n - 1},
		{"warmed: the latest sample resent, snapshot unusable", "unusable", 0, n - 1},
		{"warmed: the latest sample resent, series new since the periodic snapshot", "crash, series new", 0, n - 1},
		{"warmed: older history, out-of-order window", "none", time.Hour.Milliseconds(), n - 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			periodic := n1
			if tc.snap == "crash, series new" {
				periodic = 0
			}
			db, opts := stoppedAfter(t, ls, vs, periodic, n, strings.HasPrefix(tc.snap, "crash"))
			var o Options
			opts(&o)
			switch tc.snap {
			case "none":
				require.NoError(t, os.Remove(o.SnapshotPath))
			case "unusable":
				require.NoError(t, os.WriteFile(o.SnapshotPath, []byte("omsn\x04\x00 torn"), 0o644))
			}

			e2 := newEnv(t, db, nil, opts)
			if tc.window > 0 {
				require.NoError(t, e2.db.ApplyConfig(&promconfig.Config{StorageConfig: promconfig.StorageConfig{
					TSDBConfig: &promconfig.TSDBConfig{OutOfOrderTimeWindow: tc.window},
				}}))
			}
			require.Eventually(t, e2.p.Ready, timeout, tick)
			e2.push(t0.UnixMilli()+int64(tc.resend)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[tc.resend:tc.resend+1])
			e2.sync()
			require.Zero(t, testutil.ToFloat64(e2.p.m.outputErrors), "output appends refused")
			require.Zero(t, testutil.ToFloat64(e2.p.m.scoredSamples), "the sample resent is not scored again")
			require.Equal(t, tc.snap == "" || tc.snap == "crash", testutil.ToFloat64(e2.p.m.warmed) == 0, "restored, not warmed")

			e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e2.sync()
			require.Equal(t, 1.0, testutil.ToFloat64(e2.p.m.scoredSamples))
			require.Zero(t, testutil.ToFloat64(e2.p.m.outputErrors), "output appends refused")
			requireSameState(t, ref, e2, "every sample taken in once, as without the restart")
		})
	}
}

// TestSnapshotCatchUpWaitedFor: a series restored from a snapshot older
// than the TSDB (after a crash), whose first sample is out of order for its
// models, catches up at its first sample in order, when it is the worker's
// already: the models step under the lock that /metrics and the API read
// it under (run with -race), and the warm-up the catch-up ends leaves
// omen_models_warming (it counted the series for good).
func TestSnapshotCatchUpWaitedFor(t *testing.T) {
	const n1, n = 20, 100 // restored while warming; ready after catching up
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	db, opts := stoppedAfter(t, ls, vs, n1, n, true)
	e := newEnv(t, db, nil, opts)
	require.NoError(t, e.db.ApplyConfig(&promconfig.Config{StorageConfig: promconfig.StorageConfig{
		TSDBConfig: &promconfig.TSDBConfig{OutOfOrderTimeWindow: time.Hour.Milliseconds()},
	}}))
	require.Eventually(t, e.p.Ready, timeout, tick)
	e.push(t0.UnixMilli()+int64(n1-10)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n1-10:n1-9])
	e.sync()
	require.True(t, e.onlySeries().catchUpDue)
	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.warming))

	var stop atomic.Bool
	done := make(chan struct{})
	go func() { // scrapes and API calls while it catches up
		defer close(done)
		for !stop.Load() {
			_, _ = gather(e)
			_ = e.p.Anomalies(nil)
		}
	}()
	time.Sleep(10 * time.Millisecond)
	e.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
	e.sync()
	stop.Store(true)
	<-done
	require.Equal(t, float64(n-n1), testutil.ToFloat64(e.p.m.caughtUp))
	require.True(t, e.onlySeries().pub.ready)
	require.Equal(t, 0.0, testutil.ToFloat64(e.p.m.warming), "ready once caught up")
}

// TestSnapshotRefusedKeepsState: after a restart with --detect.max-series
// lowered, a restored series refused for the budget keeps its saved state
// (in the snapshots too, until it expires): when room comes, it gets its
// models back rather than warming from history. (Taken before the budget
// was checked, the state of a series refused was dropped.)
func TestSnapshotRefusedKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	db := t.TempDir()
	e := newEnv(t, db, nil, func(o *Options) { o.SnapshotPath, o.MaxSeries = path, 3 })
	for i := range 5 {
		e.pushPods(t0.UnixMilli()+int64(i)*stepMs, "a", "b", "c")
	}
	require.Equal(t, []string{"a", "b", "c"}, withModel(e, false))
	e.stop()
	require.NoError(t, e.db.Close())

	e2 := newEnv(t, db, nil, func(o *Options) { o.SnapshotPath, o.MaxSeries = path, 2 })
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.pushPods(t0.UnixMilli()+5*stepMs, "a", "b", "c")
	require.Equal(t, []string{"a", "b"}, withModel(e2, false))
	require.Zero(t, e2.p.scoredHeld.Load())
	// a goes (the head dropped its series, say): the sweep gives its room
	// to c.
	a := refOf(e2, pod("a"))
	for _, w := range e2.p.workers {
		w.forget([]storage.SeriesRef{a})
	}
	for _, w := range e2.p.workers {
		w.sweep()
	}
	e2.pushPods(t0.UnixMilli()+6*stepMs, "b", "c")
	require.Equal(t, []string{"b", "c"}, withModel(e2, false))
	require.Zero(t, testutil.ToFloat64(e2.p.m.warmed), "c restored, not warmed from history")
	require.Zero(t, e2.p.scoredHeld.Load())
}

// TestSnapshotDeselectedKeepsState: a restored series the configuration no
// longer selects gives back what was held for it, and keeps its saved
// state: selected again by a reload, it takes it, and what is held for the
// others is not given back a second time (a newcomer took it, and one of
// them was refused).
func TestSnapshotDeselectedKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath, o.MaxSeries = path, 3 }
	db := t.TempDir()
	e := newEnv(t, db, nil, opts)
	for i := range 5 {
		e.pushPods(t0.UnixMilli()+int64(i)*stepMs, "a", "b", "c")
	}
	e.stop()
	require.NoError(t, e.db.Close())

	cfg, err := config.Load([]byte(`exclude: ['{pod="b"}']`))
	require.NoError(t, err)
	e2 := newEnv(t, db, cfg, opts)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.pushPods(t0.UnixMilli()+5*stepMs, "b")
	require.Empty(t, withModel(e2, false))
	require.Equal(t, int64(2), e2.p.scoredHeld.Load(), "b's given back")
	require.NoError(t, e2.p.ApplyConfig(nil))
	e2.pushPods(t0.UnixMilli()+6*stepMs, "b", "x", "a", "c")
	require.Equal(t, []string{"a", "b", "c"}, withModel(e2, false))
	require.Zero(t, testutil.ToFloat64(e2.p.m.warmed), "b restored, not warmed from history")
	require.Zero(t, e2.p.scoredHeld.Load())
}

// podsN samples of pods a and b are fed by podsStopped: the forecasters
// are ready from the 384th.
const podsN = 450

// podTime is the time of the pods' i-th sample.
func podTime(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }

// podsStopped feeds podsN samples of pods a and b, together, to a pipeline
// over the TSDB in db, stops it and closes the TSDB. It returns a's values,
// one more than fed.
func podsStopped(t *testing.T, db string, opts func(*Options)) (va []float64) {
	e := newEnv(t, db, nil, opts)
	pods := []labels.Labels{pod("a"), pod("b")}
	va, vb := seasonal(podsN+1, 3), seasonal(podsN, 4)
	for i := range podsN {
		e.push(podTime(i), model.MetricTypeGauge, pods, []float64{va[i], vb[i]})
		if i%256 == 255 {
			e.sync()
		}
	}
	e.sync()
	e.stop()
	require.NoError(t, e.db.Close())
	return va
}

// TestSnapshotDeselectedStalesOutputs: after a restart with a
// configuration that no longer selects some of the snapshot's series, each
// of their stored output series (anomaly_score, the band, every horizon's
// forecasts) gets a staleness marker just after its latest result, as a
// reload that deselects them writes (TestConfigSelection): without one,
// PromQL read them as live for its lookback delta. The series still
// selected are untouched, and a second restart appends no second marker.
func TestSnapshotDeselectedStalesOutputs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clock time.Time
	}{
		{"clock behind the samples", t0},
		// omen restarted behind a backlog (a Prometheus about to resend
		// what it queued meanwhile): markers at the clock moved the
		// head's maximum time there, and the backlog was refused as out
		// of bounds.
		{"clock ahead of the samples", t0.Add(48 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "models.snap")
			db := t.TempDir()
			podsStopped(t, db, func(o *Options) { o.SnapshotPath = path })

			opts := func(o *Options) {
				o.SnapshotPath = path
				o.Now = func() time.Time { return tc.clock }
			}
			cfg, err := config.Load([]byte(`exclude: ['{pod="b"}']`))
			require.NoError(t, err)
			for range 2 {
				e2 := newEnv(t, db, cfg, opts)
				require.Eventually(t, e2.p.Ready, timeout, tick)
				last := lastSample(t, e2.db, eq("for", "g"), eq("pod", "b"))
				require.Len(t, last, 4+3*3, "score, band and three horizons of forecasts")
				for name, s := range last {
					require.True(t, value.IsStaleNaN(s.v), name)
					// Just after the latest result, once.
					require.Equal(t, podTime(podsN-1)+1, s.t, name)
				}
				require.Equal(t, podTime(podsN-1)+1, e2.db.Head().MaxTime())
				last = lastSample(t, e2.db, eq("for", "g"), eq("pod", "a"))
				require.Len(t, last, 4+3*3)
				for name, s := range last {
					require.False(t, math.IsNaN(s.v), name)
				}
				require.Zero(t, testutil.ToFloat64(e2.p.m.outputErrors))
				e2.stop()
				require.NoError(t, e2.db.Close())
			}
		})
	}
}

// TestStaleAfterRestartStalesOutputs: an input that went away while omen
// was down, whose staleness marker comes after the restart (Prometheus
// sends what it could not deliver once omen is back), has its stored
// outputs marked stale at the marker's time, as a series omen holds does
// (TestStaleInputStalesOutputs): omen held no series of it, restored or
// warmed, and the results the run before stored read as live for PromQL's
// lookback delta. Once: a second marker appends nothing more. A marker
// older than the latest result (out of order) marks nothing.
func TestStaleAfterRestartStalesOutputs(t *testing.T) {
	const n = podsN
	ts := podTime
	stale := math.Float64frombits(value.StaleNaN)
	for _, tc := range []struct {
		name   string
		snap   bool // restarted with the snapshot: b's state waits for it
		marker int  // the sample time of b's marker
		stale  bool
	}{
		{"restored", true, n, true},
		{"warmed", false, n, true},
		{"out of order", true, n - 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "models.snap")
			opts := func(o *Options) {
				if tc.snap {
					o.SnapshotPath = path
				}
			}
			db := t.TempDir()
			va := podsStopped(t, db, opts)

			e2 := newEnv(t, db, nil, opts)
			require.NoError(t, e2.db.ApplyConfig(&promconfig.Config{StorageConfig: promconfig.StorageConfig{
				TSDBConfig: &promconfig.TSDBConfig{OutOfOrderTimeWindow: time.Hour.Milliseconds()},
			}}))
			require.Eventually(t, e2.p.Ready, timeout, tick)
			b := []labels.Labels{pod("b")}
			e2.push(ts(tc.marker), model.MetricTypeGauge, b, []float64{stale})
			e2.push(ts(tc.marker)+1, model.MetricTypeGauge, b, []float64{stale})
			e2.push(ts(n), model.MetricTypeGauge, []labels.Labels{pod("a")}, va[n:n+1])
			e2.sync()
			last := lastSample(t, e2.db, eq("for", "g"), eq("pod", "b"))
			require.Len(t, last, 4+3*3, "score, band and three horizons of forecasts")
			for name, s := range last {
				require.Equal(t, tc.stale, value.IsStaleNaN(s.v), name)
				if tc.stale {
					require.Equal(t, ts(tc.marker), s.t, name)
				}
			}
			for name, s := range lastSample(t, e2.db, eq("for", "g"), eq("pod", "a")) {
				require.False(t, math.IsNaN(s.v), name)
			}
			require.Zero(t, testutil.ToFloat64(e2.p.m.outputErrors))
		})
	}
}

// TestSnapshotRebuildPendingKeepsForecaster: a series that had a
// forecaster and awaited new models when the snapshot was taken (a reload
// to other horizons, before its next sample) is saved without its models,
// and warms from history after a restart; its share of
// --forecast.max-series is held for it all the same (a series that came
// back first took it).
func TestSnapshotRebuildPendingKeepsForecaster(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath, o.MaxSeries, o.ForecastMaxSeries = path, 100, 1 }
	cfg, err := config.Load([]byte("defaults: {forecast_horizons: [5m, 10m]}"))
	require.NoError(t, err)
	db := t.TempDir()
	e := newEnv(t, db, cfg, opts)
	e.pushPods(t0.UnixMilli(), "a", "b")
	require.Equal(t, []string{"a"}, withModel(e, true))
	cfg2, err := config.Load([]byte("defaults: {forecast_horizons: [10m]}"))
	require.NoError(t, err)
	require.NoError(t, e.p.ApplyConfig(cfg2))
	e.sync() // the workers take the reload: a awaits new models
	e.stop()
	require.NoError(t, e.db.Close())

	e2 := newEnv(t, db, cfg2, opts)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	require.Equal(t, int64(1), e2.p.fcHeld.Load())
	e2.pushPods(t0.UnixMilli()+stepMs, "b", "a")
	require.Equal(t, []string{"a"}, withModel(e2, true))
	require.Zero(t, e2.p.fcHeld.Load())
}

// TestSnapshotHeldNotForever: a series that went away is held its room
// after one restart, not after the next: its state, not claimed, is
// written to each snapshot and loaded anew at each restart, so while omen
// restarted more often than --detect.stale-after its room was held for
// good, and a newcomer refused at every restart.
func TestSnapshotHeldNotForever(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	now, clk := t0, &clock{now: t0}
	opts := func(o *Options) { o.SnapshotPath, o.MaxSeries, o.Now = path, 2, clk.Now }
	e := newEnv(t, "", nil, opts)
	e.pushPods(now.UnixMilli(), "a", "b")
	e.stop()
	// b goes away for good; omen restarts every 40 minutes (stale-after
	// 1h), and a newcomer, c, comes before a.
	var got [][]string
	for range 3 {
		now = now.Add(40 * time.Minute)
		clk.set(now)
		e = newEnv(t, "", nil, opts)
		require.Eventually(t, e.p.Ready, timeout, tick)
		e.p.expireRestored()
		e.pushPods(now.UnixMilli(), "c", "a")
		got = append(got, withModel(e, false))
		e.stop()
	}
	require.Equal(t, [][]string{{"a"}, {"a", "c"}, {"a", "c"}}, got)
}

// TestSnapshotStaleSeriesLeaveFullBudgets: the room held after a restart
// for the series that had gone stale before the snapshot (a Recreate
// rollout's old pods, marked by Prometheus) goes to the series refused for
// want of it once those have not come back for Prometheus's lookback, as
// the sweep gives the room of such series it holds
// (TestStaleSeriesLeaveFullBudgets). It was held for --detect.stale-after
// (an hour by default): an omen restarted during a rollout left the new
// pods unscored for that long. Within the lookback, or with nobody
// refused, it is held; a state given up is kept, and its series, back,
// competes for room as a newcomer does. So for series that stopped with no
// marker (moved to another shard by a change of the shard count, the pods
// restarted to take it): held for the hour, they kept the series the
// shard gained from the others unscored.
func TestSnapshotStaleSeriesLeaveFullBudgets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		waiting bool          // new pods want room
		silent  bool          // the old pods' series stopped with no staleness marker
		after   time.Duration // from the restart to expireRestored and the sweep
		holders []string      // the pods scored after the sweep
		held    int64
	}{
		{"gone past the lookback, new pods waiting", true, false, 6 * time.Minute, []string{"new-a", "new-b"}, 0},
		{"gone within the lookback", true, false, 4 * time.Minute, nil, 2},
		{"nobody waiting", false, false, 6 * time.Minute, nil, 2},
		{"moved away: gone past the lookback, new series waiting", true, true, 6 * time.Minute, []string{"new-a", "new-b"}, 0},
		{"moved away: gone within the lookback", true, true, 4 * time.Minute, nil, 2},
		{"moved away: nobody waiting", false, true, 6 * time.Minute, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "models.snap")
			clk := &clock{now: t0}
			opts := func(o *Options) { o.SnapshotPath, o.MaxSeries, o.Now = path, 2, clk.Now }
			e := newEnv(t, "", nil, opts)
			for k := range 3 {
				e.pushPods(t0.UnixMilli()+int64(k)*stepMs, "old-a", "old-b")
			}
			if !tc.silent {
				stale := math.Float64frombits(value.StaleNaN)
				e.push(t0.UnixMilli()+3*stepMs, model.MetricTypeGauge, []labels.Labels{pod("old-a"), pod("old-b")}, []float64{stale, stale})
			}
			e.sync()
			e.stop()

			e = newEnv(t, "", nil, opts)
			require.Eventually(t, e.p.Ready, timeout, tick)
			require.Equal(t, int64(2), e.p.scoredHeld.Load())
			if tc.waiting {
				e.pushPods(t0.UnixMilli()+4*stepMs, "new-a", "new-b")
			}
			now := t0.Add(tc.after)
			clk.set(now)
			e.p.expireRestored()
			for range 2 {
				for _, w := range e.p.workers {
					w.sweep()
				}
			}
			if tc.waiting {
				e.pushPods(now.UnixMilli(), "new-a", "new-b")
			}
			require.Equal(t, tc.holders, withModel(e, false))
			require.Equal(t, tc.held, e.p.scoredHeld.Load())
			e.stop()
		})
	}
}

// TestStorageReopenedKeepsHeld: at a reopen of the TSDB, the series
// restored at the restart that have not come back yet keep the room held
// for them (their states, written to the snapshot as not claimed, are
// loaded again).
func TestStorageReopenedKeepsHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath, o.MaxSeries = path, 2 }
	e := newEnv(t, "", nil, opts)
	e.pushPods(t0.UnixMilli(), "a", "b")
	e.stop()
	e2 := newEnv(t, "", nil, opts)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.pushPods(t0.UnixMilli()+stepMs, "a")
	require.Equal(t, int64(1), e2.p.scoredHeld.Load())
	e2.p.StorageReopened()
	require.Equal(t, int64(2), e2.p.scoredHeld.Load(), "a's and b's")
	e2.pushPods(t0.UnixMilli()+2*stepMs, "c", "a", "b")
	require.Equal(t, []string{"a", "b"}, withModel(e2, false))
	require.Zero(t, e2.p.scoredHeld.Load())
}

// TestSnapshotForecastsAtOnceAfterCrash: after a crash too, a restored
// series forecasts, and stores the forecast, at its first sample after the
// restart, as after a graceful stop (TestSnapshotForecastsAtOnce). The
// catch-up on the samples acknowledged after the last periodic snapshot
// made forecasts of its own, stored by no one (the replay writes no
// outputs), and the one made at its first sample in the replay set when
// the next was due: the first forecast stored after the restart came up
// to --forecast.interval later, a stored forecast series' gap of up to
// twice the interval across the crash (93 s at a 1m interval behind a
// real Prometheus, the input's samples all delivered).
func TestSnapshotForecastsAtOnceAfterCrash(t *testing.T) {
	// The forecaster (30 s steps) is ready after 384 samples and forecasts
	// once a minute (4 samples); the catch-up replays 441..446.
	const n1, n = 441, 447
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "graceful", true: "crash"}[crash], func(t *testing.T) {
			vs := seasonal(n+1, 9)
			ls := labels.FromStrings("__name__", "queue_depth")
			db, opts := stoppedAfter(t, ls, vs, n1, n, crash)
			e2 := newEnv(t, db, nil, opts)
			require.Eventually(t, e2.p.Ready, timeout, tick)
			ts := t0.UnixMilli() + n*stepMs
			e2.push(ts, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e2.sync()
			if crash {
				require.Equal(t, float64(n-n1), testutil.ToFloat64(e2.p.m.caughtUp))
			}
			var out bytes.Buffer
			require.NoError(t, e2.p.WriteOutputs(&out))
			require.Contains(t, out.String(), "\nforecast{", "forecasting after the first sample")
			q, err := e2.db.Querier(ts, ts)
			require.NoError(t, err)
			defer q.Close()
			ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", FamilyForecast))
			stored := 0
			for ss.Next() {
				it := ss.At().Iterator(nil)
				for it.Next() != chunkenc.ValNone {
					if t, _ := it.At(); t == ts {
						stored++
					}
				}
			}
			require.NoError(t, ss.Err())
			require.Positive(t, stored, "a forecast stored at the first sample after the restart")
		})
	}
}

// TestSnapshotWaitingTakesNoHeldRoom: a series whose state waited, not
// claimed, through a whole run (written as flagWaiting) is held no room at
// the next restart, and takes none of the room held for the series that
// were scored at the snapshot: it competes for the free room as a newcomer
// does. (It came back first and, restored, took the held room: a series
// held its room was refused, its models lost.)
func TestSnapshotWaitingTakesNoHeldRoom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath, o.MaxSeries = path, 3 }
	e := newEnv(t, "", nil, opts)
	e.pushPods(t0.UnixMilli(), "w", "a", "b")
	e.stop()
	// w does not come back for a whole run: written as waiting.
	e = newEnv(t, "", nil, opts)
	require.Eventually(t, e.p.Ready, timeout, tick)
	e.pushPods(t0.UnixMilli()+stepMs, "a", "b")
	e.stop()
	e = newEnv(t, "", nil, opts)
	require.Eventually(t, e.p.Ready, timeout, tick)
	require.Equal(t, int64(2), e.p.scoredHeld.Load(), "a's and b's, not w's")
	// A newcomer, c, takes the free room; w, back, finds none; a and b
	// get theirs.
	e.pushPods(t0.UnixMilli()+2*stepMs, "c", "w", "a", "b")
	require.Equal(t, []string{"a", "b", "c"}, withModel(e, false))
	require.Zero(t, e.p.scoredHeld.Load())
	e.stop()
}

// TestSnapshotWaitingTakesNoHeldForecaster: the same for
// --forecast.max-series: a waiting state that had a forecaster, its series
// back first, takes no forecaster held for a series that had one.
func TestSnapshotWaitingTakesNoHeldForecaster(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	opts := func(fc int) func(o *Options) {
		return func(o *Options) { o.SnapshotPath, o.MaxSeries, o.ForecastMaxSeries = path, 100, fc }
	}
	cfg, err := config.Load([]byte("defaults: {forecast_horizons: [5m]}"))
	require.NoError(t, err)
	e := newEnv(t, "", cfg, opts(2))
	e.pushPods(t0.UnixMilli(), "w", "a")
	require.Equal(t, []string{"a", "w"}, withModel(e, true))
	e.stop()
	// w does not come back for a whole run (written as waiting); with a
	// larger budget, a newcomer b gets a forecaster.
	e = newEnv(t, "", cfg, opts(3))
	require.Eventually(t, e.p.Ready, timeout, tick)
	e.pushPods(t0.UnixMilli()+stepMs, "a", "b")
	require.Equal(t, []string{"a", "b"}, withModel(e, true))
	e.stop()
	e = newEnv(t, "", cfg, opts(2))
	require.Eventually(t, e.p.Ready, timeout, tick)
	require.Equal(t, int64(2), e.p.fcHeld.Load(), "a's and b's, not w's")
	e.pushPods(t0.UnixMilli()+2*stepMs, "w", "a", "b")
	require.Equal(t, []string{"a", "b"}, withModel(e, true))
	e.stop()
}

// podSeries returns the series of the pod named so (nil if none); call it
// after sync, while the workers are idle.
func podSeries(e *env, name string) *series {
	var s *series
	for _, w := range e.p.workers {
		w.view(func(x *series) {
			if x.in.Get("pod") == name {
				s = x
			}
		})
	}
	return s
}

// pod is the labels of the gauge g of a pod: the budget tests' series.
func pod(name string) labels.Labels { return labels.FromStrings("__name__", "g", "pod", name) }

// pushPods appends one sample of each pod's series at ts, one at a time and
// in order, each scored before the next.
func (e *env) pushPods(ts int64, pods ...string) {
	for _, name := range pods {
		e.push(ts, model.MetricTypeGauge, []labels.Labels{pod(name)}, []float64{1})
		e.sync()
	}
}

// TestSnapshotForecasterWithoutStateWarms: a series whose forecaster the
// snapshot has no state of learns its history at its first sample after
// the restart, as one the sweep gives does (TestSweepForecasterWarmsFromHistory):
// the sweep gave it one and omen stopped before its next sample, or it had
// none and --forecast.max-series has room at the restart. Restored with
// its detector, its forecaster learnt from live samples only, and forecast
// 192 steps later.
func TestSnapshotForecasterWithoutStateWarms(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sweep bool // the sweep gives b the hog's forecaster before the stop
		fcMax int  // --forecast.max-series at the restart
	}{
		{"given by the sweep before the stop", true, 1},
		{"room at the restart", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "models.snap")
			db := t.TempDir()
			fcMax := 1
			opts := func(o *Options) { o.SnapshotPath, o.MaxSeries, o.ForecastMaxSeries, o.Workers = path, 1000, fcMax, 1 }
			e := newEnv(t, db, nil, opts)
			e.push(t0.UnixMilli(), model.MetricTypeGauge, []labels.Labels{pod("hog")}, []float64{1})
			e.sync()
			later := t0.Add(2 * time.Hour)
			e.clock.set(later)
			b := []labels.Labels{pod("b")}
			const n = 500
			val := func(i int) float64 { return 100 + 20*sinPeriod(i, 40) }
			for i := range n {
				e.push(later.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, b, []float64{val(i)})
			}
			e.sync()
			if tc.sweep {
				e.p.workers[0].sweep()
			}
			e.stop()
			require.NoError(t, e.db.Close())

			fcMax = tc.fcMax
			e2 := newEnv(t, db, nil, opts)
			e2.clock.set(later.Add(n * stepMs * time.Millisecond))
			require.Eventually(t, e2.p.Ready, timeout, tick)
			e2.push(later.UnixMilli()+n*stepMs, model.MetricTypeGauge, b, []float64{val(n)})
			e2.sync()
			s := podSeries(e2, "b")
			require.NotNil(t, s)
			require.NotNil(t, s.fc)
			require.True(t, s.fc.m.Ready(), "warmed from its history")
			for h := range s.fc.horizons {
				require.True(t, s.fc.ok[h], "horizon %s forecast at once", s.fc.hname[h])
			}
		})
	}
}

// TestShutdownDrainBounded: at shutdown the workers score what is queued
// for ShutdownDrain at most, then leave the rest to the restart, whose
// catch-up replays it from the TSDB: the models end as if every sample had
// been scored. The drain was unbounded: a full queue (QueueSize batches a
// worker; ~2 040 batches with 100 000 series remote-written at speed) held
// the final snapshot, and SIGTERM to exit took 17–39 s on 2 shared cores,
// past Kubernetes' default grace of 30 s.
func TestShutdownDrainBounded(t *testing.T) {
	const n1, n = 200, 400
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	ref := referenceDetector(t, vs)
	db, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) {
		o.SnapshotPath = path
		o.ShutdownDrain = time.Nanosecond
	}
	// Two workers: the deadline must reach both (a timer's channel told
	// one of them, and the other scored its whole queue).
	other := labels.FromStrings("__name__", "temperature", "job", "b")
	e := newEnv(t, db, nil, opts)
	require.Len(t, e.p.workers, 2)
	e.feed(ls, model.MetricTypeGauge, vs[:n1])
	e.feed(other, model.MetricTypeGauge, vs[:n1])
	// Each worker blocks on its lock in its first batch; the others queue
	// behind it until the shutdown.
	for _, w := range e.p.workers {
		w.mu.Lock()
	}
	for i := n1; i < n; i++ {
		e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls, other}, []float64{vs[i], vs[i]})
	}
	e.cancel()
	left := 0
	for _, w := range e.p.workers {
		<-w.quit
	}
	for _, w := range e.p.workers {
		w.mu.Unlock()
	}
	require.NoError(t, <-e.done)
	e.cancel = nil
	for _, w := range e.p.workers {
		require.Greater(t, w.left, (n-n1)/2, "worker %d: the queue was left, not scored", w.id)
		left += w.left
	}
	scored := testutil.ToFloat64(e.p.m.scoredSamples)
	require.Equal(t, float64(2*n-left), scored)
	require.NoError(t, e.db.Close())

	e2 := newEnv(t, db, nil, opts)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls, other}, []float64{vs[n], vs[n]})
	e2.sync()
	require.Equal(t, 0.0, testutil.ToFloat64(e2.p.m.warmed), "restored, not warmed")
	require.Equal(t, float64(left), testutil.ToFloat64(e2.p.m.caughtUp))
	want, err := ref.MarshalBinary()
	require.NoError(t, err)
	for _, w := range e2.p.workers {
		w.view(func(s *series) {
			got, err := s.det.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, want, got, "%s: as if every sample had been scored before the stop", s.in)
		})
	}
}

// referenceDetector is a detector of the defaults that took vs, one sample
// every stepMs from t0, with nothing in between: what a pipeline's series
// should end as.
func referenceDetector(t *testing.T, vs []float64) *detect.Detector {
	t.Helper()
	ref, err := detect.New(detectOptions(config0().Defaults))
	require.NoError(t, err)
	for i, v := range vs {
		ref.Update(t0.UnixMilli()+int64(i)*stepMs, v)
	}
	return ref
}

// snapFile is a snapshot of this version holding records.
func snapFile(t *testing.T, records []byte) string {
	t.Helper()
	return snapFileOf(t, snapVersion, func(e *snapEncoder) []error { return []error{e.write(records)} })
}

// unpackedSeries is a record of a snapshot with its state unpacked.
type unpackedSeries struct {
	*savedSeries
	savedState
}

// readUnpacked reads the snapshot at path as a restart does, and unpacks
// each record's state.
func readUnpacked(path string) ([]unpackedSeries, error) {
	saved, err := readSnapshot(path, t0, &stateCodec{})
	if err != nil {
		return nil, err
	}
	out := make([]unpackedSeries, len(saved))
	for i, s := range saved {
		st, err := s.unpack()
		if err != nil {
			return nil, err
		}
		out[i] = unpackedSeries{s, st}
	}
	return out, nil
}

// savedNames maps the instance label of each record in the snapshot at
// path to its record.
func savedNames(t *testing.T, path string) map[string]unpackedSeries {
	t.Helper()
	saved, err := readUnpacked(path)
	require.NoError(t, err)
	m := map[string]unpackedSeries{}
	for _, s := range saved {
		require.NotContains(t, m, s.ls.Get("instance"), "written twice")
		m[s.ls.Get("instance")] = s
	}
	return m
}

// TestSnapshotSlices: a worker's series are encoded a slice at a time, its
// map changing between two; each series there from the snapshot's start to
// its end is written once, as the whole map at once writes it, and one
// dropped meanwhile is left out without harm.
func TestSnapshotSlices(t *testing.T) {
	const n = 40
	e := newEnv(t, "", nil, func(o *Options) { o.Workers = 1 })
	ls := make([]labels.Labels, n)
	vs := make([]float64, n)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "g", "instance", fmt.Sprint(i))
	}
	for round := range 5 {
		for i := range vs {
			vs[i] = float64(round * i)
		}
		e.push(t0.UnixMilli()+int64(round)*stepMs, model.MetricTypeGauge, ls, vs)
	}
	e.sync()
	e.stop() // the worker is done: slices are encoded here, between changes of ours
	w := e.p.workers[0]
	require.Len(t, w.series, n)

	whole := &snapCursor{limit: math.MaxInt}
	fin, err := w.encodeSlice(whole)
	require.NoError(t, err)
	require.True(t, fin)
	require.Equal(t, n, whole.n)
	want := savedNames(t, snapFile(t, whole.buf))

	c := &snapCursor{limit: 1} // a series a slice
	var records []byte
	done := make(chan error, 1)
	for slices := 0; ; slices++ {
		fin, err := w.sliceVia(c, done)
		require.NoError(t, err)
		require.LessOrEqual(t, c.n, 1)
		records = append(records, c.buf...)
		c.buf, c.n = c.buf[:0], 0
		if slices == 0 {
			// One not encoded yet goes; another comes, after the
			// snapshot began.
			gone := c.refs[len(c.refs)-1]
			s := w.series[gone]
			delete(w.series, gone)
			delete(want, s.in.Get("instance"))
			w.series[gone+1<<40] = s
		}
		if fin {
			require.Equal(t, n-1, slices, "a slice each, none for the series dropped")
			break
		}
	}
	got := savedNames(t, snapFile(t, records))
	require.Len(t, got, n-1)
	for name, s := range want {
		require.Contains(t, got, name)
		require.Equal(t, s.det, got[name].det)
		require.Equal(t, s.inc, got[name].inc)
	}
}

// TestSnapshotWhileScoring: a snapshot taken a series a slice while the
// worker scores new series and old: every series scored before it began is
// in it, once, and the file decodes (run with -race: the slices and the
// scoring share the worker's map).
func TestSnapshotWhileScoring(t *testing.T) {
	const n = 200
	e := newEnv(t, "", nil, func(o *Options) { o.Workers = 1 })
	ls := make([]labels.Labels, 2*n)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "g", "instance", fmt.Sprint(i))
	}
	vs := make([]float64, n)
	e.push(t0.UnixMilli(), model.MetricTypeGauge, ls[:n], vs)
	e.sync()

	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for i := range n {
			// A new series and an old one each time.
			e.push(t0.UnixMilli()+stepMs, model.MetricTypeGauge, []labels.Labels{ls[n+i], ls[i]}, vs[:2])
		}
	}()
	var buf bytes.Buffer
	enc := &snapEncoder{w: bufio.NewWriter(&buf), crc: crc32.NewIEEE()}
	require.NoError(t, e.p.workers[0].encodeVia(context.Background(), enc, &snapCursor{limit: 1}))
	require.NoError(t, enc.w.Flush())
	<-pushed
	got := savedNames(t, snapFile(t, buf.Bytes()))
	require.Equal(t, len(got), enc.n)
	for i := range n {
		require.Contains(t, got, fmt.Sprint(i))
	}
}

// u32, u64 and bytes write a record field by field, as the old snapshots
// were (appendRecord writes them now).
func (e *snapEncoder) u32(v uint32) error {
	binary.LittleEndian.PutUint32(e.buf[:4], v)
	return e.write(e.buf[:4])
}
func (e *snapEncoder) u64(v uint64) error {
	binary.LittleEndian.PutUint64(e.buf[:8], v)
	return e.write(e.buf[:8])
}
func (e *snapEncoder) bytes(b []byte) error {
	if err := e.u32(uint32(len(b))); err != nil {
		return err
	}
	return e.write(b)
}

// TestAppendRecordLayout: appendRecord writes a record byte for byte as
// the file's layout (see snapVersion) says, field by field, as the
// snapshots of earlier releases were written (the format did not change
// with the slices), in a record of its length since version 7, the fields
// of a later release last.
func TestAppendRecordLayout(t *testing.T) {
	inc := incidentState{since: 11, lastHot: 12, peak: 3.5, quiet: 4, event: 13, longest: 5, peakMember: "level"}
	lbl, det, fc, ext := appendLabels(nil, labels.FromStrings("__name__", "g", "job", "a")), []byte{1, 2, 3}, []byte{0, 9}, []byte{7, 7}
	var want bytes.Buffer
	bw := bufio.NewWriter(&want)
	e := &snapEncoder{w: bw, crc: crc32.NewIEEE()}
	size := uint32(4 + len(lbl) + 1 + 8 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 4 + len(inc.peakMember) + 8 + 4 + 4 + len(det) + 4 + len(fc) + 8 + len(ext))
	for _, err := range []error{
		e.u8(1), e.u32(size), e.bytes(lbl), e.u8(flagCounter | flagHasPrev),
		e.u64(math.Float64bits(-2.25)), e.u64(uint64(1234)),
		e.u64(uint64(inc.since)), e.u64(uint64(inc.lastHot)), e.u64(math.Float64bits(inc.peak)), e.u32(inc.quiet),
		e.u64(uint64(inc.event)), e.u32(inc.longest), e.bytes([]byte(inc.peakMember)),
		e.u64(math.Float64bits(0.5)), e.u32(7),
		e.bytes(det), e.bytes(fc), e.u64(uint64(5678)), e.write(ext),
	} {
		require.NoError(t, err)
	}
	require.NoError(t, bw.Flush())
	got := appendRecord([]byte{0xaa}, lbl, flagCounter|flagHasPrev, -2.25, 1234, inc, 0.5, 7, det, fc, 5678, ext)
	require.Equal(t, append([]byte{0xaa}, want.Bytes()...), got)
}

// v6Record writes a series record of snapshot version 6 for ls with the
// detector state det and the forecaster state fc, its other fields zero.
func v6Record(e *snapEncoder, ls labels.Labels, det, fc []byte) []error {
	return []error{
		e.u8(1), e.bytes(appendLabels(nil, ls)), e.u8(0), e.u64(0), e.u64(0),
		e.u64(0), e.u64(0), e.u64(0), e.u32(0),
		e.u64(0), e.u32(0), e.bytes(nil),
		e.u64(0), e.u32(0),
		e.bytes(det), e.bytes(fc),
	}
}

// TestSnapshotNamesUnreadableModels: a snapshot whose file this release
// reads but whose models it does not (an upgrade from a release before
// detector state version 9, or a group's state from before version 2) said
// "Model snapshot restored" with every series counted, and each series then
// warmed from history with nothing logged: measured upgrading from ddfe190
// (2026-12-03), 100 of 100 series replayed their history after that line.
// The load now says how many series' models it cannot read, and why.
func TestSnapshotNamesUnreadableModels(t *testing.T) {
	vs := seasonal(200, 7)
	a := labels.FromStrings("__name__", "temperature", "room", "a")
	b := labels.FromStrings("__name__", "temperature", "room", "b")
	tests := []struct {
		name    string
		version uint16 // the second series' detector state's; 0: as written
		fc      []byte // the second series' forecaster state
		want    []string
	}{
		{"all readable", 0, nil, []string{"level=INFO", `msg="Model snapshot restored"`, "series=2"}},
		{"an older release's", 8, nil, []string{"level=WARN", "series=2", "unreadable=1", "detector state version 8"}},
		{"a later release's", 99, nil, []string{"level=WARN", "series=2", "unreadable=1", "detector state version 99"}},
		{"a later release's forecaster", 0, []byte("\x00OMF\x63"), []string{"level=WARN", "series=2", "unreadable=1", "forecast model version 99"}},
		{"a later release's forecaster state", 0, []byte{5, 0}, []string{"level=WARN", "series=2", "unreadable=1", "forecaster state of tag 5"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := oldSnapshot(t, 6, vs, func(e *snapEncoder, det []byte) []error { // v6Record writes version 6's
				old := append([]byte(nil), det...)
				if tc.version != 0 {
					binary.LittleEndian.PutUint16(old[4:], tc.version)
				}
				return append(v6Record(e, a, det, nil), v6Record(e, b, old, tc.fc)...)
			})
			db := openDB(t, t.TempDir())
			t.Cleanup(func() { _ = db.Close() })
			o := DefaultOptions()
			o.SnapshotPath = path
			var buf syncbuf.Buffer
			p, err := New(slog.New(slog.NewTextHandler(&buf, nil)), prometheus.NewRegistry(), db, nil, config.Default(), o)
			require.NoError(t, err)
			p.restore()
			log := buf.String()
			for _, w := range tc.want {
				require.Contains(t, log, w)
			}
			require.Len(t, p.restored, 2, "both kept: the readable one restores, the other warms from history")
		})
	}
}

// TestSnapshotNamesRefusedForecasters: an upgrade that gives a horizon's
// forecasters other steps or options (the 1h-6h23m horizons' 4-minute
// steps, 768-step history and their own MaxHorizon) refuses their saved
// states, and they learn the TSDB's history again: hours without a
// forecast (twice the longest horizon's steps plus 64), which the start
// log said nothing of, "Model snapshot restored" at INFO with nothing
// unreadable. It now says how many forecasters' states the configuration
// at start refuses, and why the first.
func TestSnapshotNamesRefusedForecasters(t *testing.T) {
	vs := seasonal(200, 7)
	a := labels.FromStrings("__name__", "queue", "q", "a")
	b := labels.FromStrings("__name__", "queue", "q", "b")
	capacity := config.Scoring{ForecastHorizons: []model.Duration{model.Duration(5 * time.Minute), model.Duration(time.Hour)}}
	saved := func(sc config.Scoring, edit func(*forecast.Options)) []byte {
		hs, names := horizonsOf(sc)
		_, _, fc := savedForecaster(t, hs, names, edit)
		return fc
	}
	same := func(*forecast.Options) {}
	for _, tc := range []struct {
		name    string
		yml     string // the configuration at start
		fc      []byte // the second series' forecaster state
		want    []string
		refused bool
	}{
		{"its own options", "defaults: {forecast_horizons: [5m, 1h]}", saved(capacity, same),
			[]string{"level=INFO", `msg="Model snapshot restored"`, "series=2"}, false},
		{"a 1h horizon's options before its own", "defaults: {forecast_horizons: [5m, 1h]}",
			saved(capacity, func(o *forecast.Options) { o.MaxHorizon, o.MinSamples = 80, 192 }),
			[]string{"level=WARN", "series=2", "forecasters_refused=1", "80-step horizon ready at 192 steps"}, true},
		{"a 5h horizon's history before its own", "defaults: {forecast_horizons: [5m, 5h]}",
			saved(config.Scoring{ForecastHorizons: []model.Duration{model.Duration(5 * time.Minute), model.Duration(5 * time.Hour)}},
				func(o *forecast.Options) { o.History, o.MaxPeriod = 615, 0 }),
			[]string{"level=WARN", "forecasters_refused=1", "615-step history"}, true},
		{"steps of other horizons", "", saved(capacity, same),
			[]string{"level=WARN", "forecasters_refused=1", "steps of at least 4m0s, where its horizons now give 28.125s"}, true},
		{"a series no longer forecast", "defaults: {forecast_horizons: []}", saved(capacity, same),
			[]string{"level=INFO", `msg="Model snapshot restored"`}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := oldSnapshot(t, 6, vs, func(e *snapEncoder, det []byte) []error {
				return append(v6Record(e, a, det, nil), v6Record(e, b, det, tc.fc)...)
			})
			cfg, err := config.Load([]byte(tc.yml))
			require.NoError(t, err)
			db := openDB(t, t.TempDir())
			t.Cleanup(func() { _ = db.Close() })
			o := DefaultOptions()
			o.SnapshotPath = path
			var buf syncbuf.Buffer
			p, err := New(slog.New(slog.NewTextHandler(&buf, nil)), prometheus.NewRegistry(), db, nil, cfg, o)
			require.NoError(t, err)
			p.restore()
			log := buf.String()
			for _, w := range tc.want {
				require.Contains(t, log, w)
			}
			if !tc.refused {
				require.NotContains(t, log, "refused")
			}
			require.NotContains(t, log, "unreadable")
			// Counted as the series' forecaster refuses it at its first
			// sample (series.restore).
			if sc := cfg.ScoringFor(b); len(sc.ForecastHorizons) > 0 {
				hs, names := horizonsOf(sc)
				g := newFcState(hs, names)
				require.Equal(t, tc.refused, !g.sameSteps(tc.fc) || g.restoreState(tc.fc) != nil)
			}
		})
	}
}

// TestSnapshotForecasterOfLaterReleaseWarms: a forecaster state this
// release does not read (a model version of a later release, after a
// rollback within one snapshot version, as forecast versions 3 and 4 came
// within snapshot version 4) was replaced by an empty forecaster that
// learnt from live samples alone: no forecast for its first hundreds of
// samples, with nothing logged. It learns the series' history at its next
// sample instead, as one given without a state does, and the load says so.
func TestSnapshotForecasterOfLaterReleaseWarms(t *testing.T) {
	const n = 500
	path, db, opts, vs, _, s := forecastingPod(t, n)
	at := fcStateLen(s.fc)
	require.NotZero(t, at)
	require.Equal(t, "OMF", string(s.fc[at:at+3]))
	s.fc[at+3] = 99 // the model's version
	later := snapFileOf(t, snapVersion, func(e *snapEncoder) []error {
		return []error{e.write(appendRecord(nil, appendLabels(nil, s.ls), s.flags, s.prevRaw, s.prevT, s.inc, s.absDif, s.nDif, s.det, s.fc, math.MinInt64, nil))}
	})
	data, err := os.ReadFile(later)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o644))

	e2 := newEnv(t, db, nil, opts)
	e2.clock.set(t0.Add(n * stepMs * time.Millisecond))
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{pod("b")}, vs[n:])
	e2.sync()
	got := podSeries(e2, "b")
	require.NotNil(t, got.fc)
	require.True(t, got.fc.m.Ready(), "warmed from its history, not started afresh")
	require.Equal(t, []bool{true, true, true}, got.fc.ok[:len(got.fc.horizons)], "every horizon forecast at once")
}

// TestSnapshotCompressed: the file is compressed (version 6). Uncompressed
// it was ~2.9 KB a series: ~300 MB rewritten every --snapshot.interval at
// 100 000 series (~85 GB of disk writes a day); zstd's fastest level took
// a real one of 20 000 series (57 MB) to a 3.4th for 0.14 CPU-s.
func TestSnapshotCompressed(t *testing.T) {
	const n, k = 400, 20
	vs := seasonal(n, 5)
	path := filepath.Join(t.TempDir(), "models.snap")
	e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	for i := range k {
		ls := labels.FromStrings("__name__", "temperature", "instance", fmt.Sprint(i))
		w := make([]float64, n)
		for j, v := range vs {
			w[j] = v * float64(1+i)
		}
		e.feed(ls, model.MetricTypeGauge, w)
	}
	e.stop()
	saved, err := readUnpacked(path)
	require.NoError(t, err)
	require.Len(t, saved, k)
	raw := 0
	for _, s := range saved {
		raw += len(appendRecord(nil, appendLabels(nil, s.ls), s.flags, s.prevRaw, s.prevT, s.inc, s.absDif, s.nDif, s.det, s.fc, math.MinInt64, nil))
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Less(t, fi.Size()*2, int64(raw), "file of %d bytes for %d bytes of records", fi.Size(), raw)
}

// forecastingPod is a pipeline of one worker that scored and forecast the
// series pod("b") for n of the samples vs and stopped, its TSDB closed:
// the snapshot at path, the TSDB's directory, the options that give both,
// the series as it stopped and its record in the snapshot.
func forecastingPod(t *testing.T, n int) (path, db string, opts func(*Options), vs []float64, last *series, saved unpackedSeries) {
	t.Helper()
	path, db = filepath.Join(t.TempDir(), "models.snap"), t.TempDir()
	opts = func(o *Options) { o.SnapshotPath, o.Workers = path, 1 }
	e := newEnv(t, db, nil, opts)
	vs = seasonal(n+1, 40)
	e.feed(pod("b"), model.MetricTypeGauge, vs[:n])
	last = podSeries(e, "b")
	require.True(t, last.fc.m.Ready())
	e.stop()
	require.NoError(t, e.db.Close())
	all, err := readUnpacked(path)
	require.NoError(t, err)
	require.Len(t, all, 1)
	return path, db, opts, vs, last, all[0]
}

// nextRelease rewrites a record as appendRecord frames it (1 | len uint32 |
// fields) with one more field at its end, as the next release adding a
// field writes it.
func nextRelease(rec, field []byte) []byte {
	out := append(append([]byte(nil), rec...), field...)
	binary.LittleEndian.PutUint32(out[1:], binary.LittleEndian.Uint32(out[1:])+uint32(len(field)))
	return out
}

// nextReleaseFc rewrites a forecaster state as appendState writes it (tag |
// head len uint32 | head | model) with one more field at the end of its
// head, as the next release adding one writes it.
func nextReleaseFc(fc, field []byte) []byte {
	at := fcStateLen(fc)
	out := append(append(append([]byte(nil), fc[:at]...), field...), fc[at:]...)
	binary.LittleEndian.PutUint32(out[1:], binary.LittleEndian.Uint32(out[1:])+uint32(len(field)))
	return out
}

// TestSnapshotReadsNextRelease: a rollback by one release keeps every
// series' state. The next release adding a field at the end of a record,
// or of the forecaster state's head, leaves the snapshot's version and the
// state's tag as they are; this release reads the fields it knows and
// skips the rest. Before records carried their length, such a field forced
// a new version or tag, which the release before refused: the whole file
// (every series warming from history), or each forecaster (bf525eb's tag
// 3: every forecasting series relearnt its history after a rollback).
func TestSnapshotReadsNextRelease(t *testing.T) {
	const n = 500
	path, db, opts, vs, before, s := forecastingPod(t, n)
	field := []byte{0xde, 0xad, 0xbe, 0xef, 7, 7, 7, 7, 7}
	// And one at the end of the forecast model, the forecaster state's
	// last part, and of the detector's state (detect.Detector.MarshalBinary).
	fc := append(nextReleaseFc(s.fc, field), field...)
	det := append(append([]byte(nil), s.det[:len(s.det)-4]...), field...)
	det = binary.LittleEndian.AppendUint32(det, crc32.ChecksumIEEE(det))
	rec := nextRelease(appendRecord(nil, appendLabels(nil, s.ls), s.flags, s.prevRaw, s.prevT, s.inc, s.absDif, s.nDif, det, fc, math.MinInt64, nil), field)
	next := snapFile(t, rec)

	got, err := readUnpacked(next)
	require.NoError(t, err, "the next release's file")
	require.Len(t, got, 1)
	require.Equal(t, det, got[0].det)
	require.Equal(t, s.inc, got[0].inc)
	require.Equal(t, s.absDif, got[0].absDif)
	require.Equal(t, field, got[0].ext, "kept, to be written back while its series has not claimed it")
	require.NoError(t, fcReadable(got[0].fc))

	f := newFcStateOf(before.fc.horizonSet, before.ref)
	require.NoError(t, f.restoreState(got[0].fc))
	require.Equal(t, before.fc.stepDif, f.stepDif)
	require.Equal(t, before.fc.within, f.within)
	require.Equal(t, before.fc.rs.LastT, f.rs.LastT)
	for i := range f.pend {
		require.Equal(t, before.fc.pend[i].Floor, f.pend[i].Floor, "horizon %d", i)
	}

	// Restored whole at a restart: nothing said unreadable, nothing
	// relearnt from history.
	data, err := os.ReadFile(next)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	var log syncbuf.Buffer
	db2 := openDB(t, db)
	e2 := newEnvOnLogged(t, db2, db2, nil, nil, slog.New(slog.NewTextHandler(&log, nil)), opts)
	e2.clock.set(t0.Add(n * stepMs * time.Millisecond))
	e2.ready(t)
	require.Contains(t, log.String(), `msg="Model snapshot restored"`)
	require.NotContains(t, log.String(), "unreadable")
	// Unclaimed, the state is written back with the fields of the later
	// release: an upgrade again finds them.
	again := filepath.Join(t.TempDir(), "models.snap")
	_, err = e2.p.writeSnapshot(context.Background(), again)
	require.NoError(t, err)
	kept, err := readUnpacked(again)
	require.NoError(t, err)
	require.Len(t, kept, 1)
	require.Equal(t, field, kept[0].ext)
	require.Equal(t, fc, kept[0].fc)
	require.Equal(t, det, kept[0].det)
	e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{pod("b")}, vs[n:])
	e2.sync()
	after := podSeries(e2, "b")
	require.True(t, after.det.Ready())
	require.True(t, after.fc.m.Ready())
	require.Zero(t, testutil.ToFloat64(e2.p.m.warmed), "detector and forecaster restored, not warmed from history")
}

// TestRunStoppedBeforeItStartedKeepsSnapshot: a SIGTERM while the TSDB
// still replays its WAL (minutes at 100 000 series) cancels Run's context
// before Run begins. Run restored the snapshot, started the scorers and
// wrote the final snapshot all the same (4.7 s and 8.4 s of the pod's
// termination grace at 100 000 series), rewriting the file it had just
// read with nothing scored in between. It now returns at once, the file as
// it was, and a later start restores it.
func TestRunStoppedBeforeItStartedKeepsSnapshot(t *testing.T) {
	const n = 300
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	ref := referenceDetector(t, vs)
	dbDir, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath = path }
	e := newEnv(t, dbDir, nil, opts)
	e.feed(ls, model.MetricTypeGauge, vs[:n])
	e.stop()
	require.NoError(t, e.db.Close())
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(path, old, old))

	db := openDB(t, dbDir)
	o := DefaultOptions()
	o.Workers = 2
	opts(&o)
	reg := prometheus.NewRegistry()
	p, err := New(nil, reg, db, nil, nil, o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, p.Run(ctx))
	require.False(t, p.Ready(), "never ready: it never scored")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.True(t, fi.ModTime().Equal(old), "the snapshot was written again (modified %s)", fi.ModTime())
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.NoError(t, db.Close())

	e2 := newEnv(t, dbDir, nil, opts)
	e2.ready(t)
	e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
	e2.sync()
	require.Equal(t, 0.0, testutil.ToFloat64(e2.p.m.warmed), "restored, not warmed")
	requireSameState(t, ref, e2, "restored from the snapshot the stopped start left")
}

// TestSnapshotAbandoned: a snapshot whose context is done is abandoned and
// the last one written stays, whole, with nothing half-written beside it:
// the final one past ShutdownSnapshot (it took 30 s at 100 000 series on a
// loaded node, and Kubernetes' SIGKILL then came during the forwarding's
// flush or the TSDB's close), and a periodic one a shutdown interrupts
// (the final one, which waited for it, follows). Neither is a failure of
// the volume (omen_snapshot_failures_total, OmenSnapshotFailing).
func TestSnapshotAbandoned(t *testing.T) {
	tests := []struct {
		name  string
		final bool   // abandoned by Run's bound, not by a context cancelled before
		want  string // logged (Run logs the periodic one's, which this calls as Run does)
	}{
		{name: "final, past --snapshot.shutdown-timeout", final: true, want: "Final model snapshot abandoned"},
		{name: "periodic, at shutdown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			path := filepath.Join(t.TempDir(), "models.snap")
			e := newEnvLogged(t, nil, slog.New(slog.NewTextHandler(&logs, nil)), func(o *Options) {
				o.SnapshotPath = path
				if tc.final {
					o.ShutdownSnapshot = time.Nanosecond
				}
			})
			e.feed(labels.FromStrings("__name__", "temperature"), model.MetricTypeGauge, seasonal(100, 7))
			e.p.snapshot(context.Background())
			before, err := os.ReadFile(path)
			require.NoError(t, err)
			e.feed(labels.FromStrings("__name__", "load"), model.MetricTypeGauge, seasonal(100, 8))
			if tc.final {
				e.stop()
			} else {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				e.p.snapshot(ctx)
			}
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, before, after, "the last snapshot written stays")
			_, err = os.Stat(path + ".tmp")
			require.True(t, os.IsNotExist(err), "nothing half-written")
			require.Contains(t, logs.String(), tc.want)
			require.NotContains(t, logs.String(), "Writing model snapshot")
			require.Zero(t, testutil.ToFloat64(e.p.m.snapFailures))
			if !tc.final {
				e.stop() // the final snapshot, unbounded enough, is written
				after, err = os.ReadFile(path)
				require.NoError(t, err)
				require.NotEqual(t, before, after)
			}
		})
	}
}

// TestRestoreHoldsStatesPacked: the restored states waiting for their
// series' first samples cost about what the snapshot file does. Held as
// read, they took ~4 times the file (~234 MB at 100 000 series against a
// file of ~60 MB) from the restore until every series had come back, on
// top of the models built from them: the restart's RSS peak.
func TestRestoreHoldsStatesPacked(t *testing.T) {
	const k, n = 1000, 300
	path := filepath.Join(t.TempDir(), "models.snap")
	e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	ls := make([]labels.Labels, k)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "temperature", "instance", fmt.Sprint(i))
	}
	base := seasonal(n, 7)
	vs := make([]float64, k)
	rng := rand.New(rand.NewPCG(1, 2)) // each series its own noise, as real ones
	for j, v := range base {
		for i := range vs {
			vs[i] = v*float64(1+i%13) + rng.NormFloat64()
		}
		e.push(t0.UnixMilli()+int64(j)*stepMs, model.MetricTypeGauge, ls, vs)
		if j%64 == 63 {
			e.sync()
		}
	}
	e.stop()
	require.NoError(t, e.db.Close()) // its memory freed before the baseline
	e = nil
	fi, err := os.Stat(path)
	require.NoError(t, err)

	db := openDB(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	p, err := New(nil, nil, db, nil, config.Default(), func() Options {
		o := DefaultOptions()
		o.SnapshotPath = path
		return o
	}())
	require.NoError(t, err)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	h0 := heap()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	p.restore()
	runtime.ReadMemStats(&m1)
	h1 := heap()
	alloc := int64(m1.TotalAlloc - m0.TotalAlloc)
	t.Logf("restore allocated %d bytes, %d a series", alloc, alloc/k)
	require.Len(t, p.restored, k)
	held := int64(h1) - int64(h0)
	t.Logf("restored states hold %d bytes, %d a series; the file is %d", held, held/k, fi.Size())
	// Besides the states, ~0.75 KB a series of labels, fields and map
	// (here the file holds ~0.94 KB a series): held as read, 3.4 KB a
	// series, 3.7 times the file; packed, 1.8 to 1.9 KB, 2 times.
	require.Less(t, held, 5*fi.Size()/2, "held %d bytes for a file of %d", held, fi.Size())
	// And made little garbage: each record read into memory of its own
	// made ~3 KB a series (9.6 MB allocated for the file's 0.93, ~10
	// times; now ~6.6 MB, 7 times, the zstd reader's buffers included).
	require.Less(t, alloc, 17*fi.Size()/2, "allocated %d bytes for a file of %d", alloc, fi.Size())
	runtime.KeepAlive(p)
}

// TestRestoreCurrentSkipsCatchUp: after a graceful stop, whose final
// snapshot has every sample the TSDB holds, a restored series reads
// nothing from the TSDB at its first sample: the catch-up's read found
// nothing, at the cost of a Select of all its labels' matchers, 100 000
// of them in the first seconds after a restart. Scored as if there had
// been no restart all the same. After a crash (the periodic snapshot
// restored), or once a run after the graceful stop took samples and then
// crashed (the graceful stop's snapshot restored again), it reads and
// replays what the TSDB holds since its state's last sample. So it does
// after a rollback to a release older than the mark, whose run took
// samples and was killed before a snapshot of its own (the mark left, as
// that release knows none): the restored series once skipped those
// samples for good (a rollback to c193ae9 killed after 15 s of load: 1050
// samples acknowledged, "current=300" and no catch-up at the next start).
// Such a run that took nothing leaves the mark good.
func TestRestoreCurrentSkipsCatchUp(t *testing.T) {
	const n1, n, k = 200, 300, 20
	vs := seasonal(n+k+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	at := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	tests := []struct {
		name  string
		crash bool
		// then: a run after the stop takes samples n to n+k, and
		// crashes before any snapshot of its own.
		then bool
		// older: that run is of a release that knows no mark: it
		// leaves it; took: the samples it took (k, or none).
		older bool
		took  int
		// caughtUp: the samples replayed; 0: none, nor any read.
		caughtUp int
	}{
		{"graceful stop", false, false, false, 0, 0},
		{"crash", true, false, false, 0, n - n1},
		{"graceful stop, then a run that crashed", false, true, false, k, k},
		{"graceful stop, then an older release's run that crashed", false, true, true, k, k},
		{"graceful stop, then an older release's run that took nothing", false, true, true, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, opts := stoppedAfter(t, ls, vs, n1, n, tc.crash)
			last := n
			if tc.then && tc.older {
				// The older release's run: samples into the TSDB, no
				// snapshot of its own, the mark left as it was.
				d := openDB(t, db)
				app := d.Appender(context.Background())
				for i := n; i < n+tc.took; i++ {
					_, err := app.Append(0, ls, at(i), vs[i])
					require.NoError(t, err)
				}
				require.NoError(t, app.Commit())
				require.NoError(t, d.Close())
				last = n + tc.took
			} else if tc.then {
				var o Options
				opts(&o)
				path := o.SnapshotPath
				graceful, err := os.ReadFile(path)
				require.NoError(t, err)
				e := newEnv(t, db, nil, opts)
				require.Eventually(t, e.p.Ready, timeout, tick)
				for i := n; i < n+k; i++ {
					e.push(at(i), model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
				}
				e.stop()
				require.NoError(t, e.db.Close())
				// The crash: its final snapshot and mark never
				// written, the graceful stop's snapshot the last, its
				// mark removed by that run's start.
				require.NoError(t, os.WriteFile(path, graceful, 0o644))
				require.NoError(t, os.Remove(path+markSuffix))
				last = n + k
			}
			ref := referenceDetector(t, vs[:last+1])
			cdb := &countingDB{db: openDB(t, db)}
			var log syncbuf.Buffer
			e2 := newEnvOnLogged(t, cdb.db, cdb, nil, nil, slog.New(slog.NewTextHandler(&log, nil)), opts)
			require.Eventually(t, e2.p.Ready, timeout, tick)
			before := cdb.queriers.Load()
			e2.push(at(last), model.MetricTypeGauge, []labels.Labels{ls}, vs[last:last+1])
			e2.sync()
			require.Equal(t, 0.0, testutil.ToFloat64(e2.p.m.warmed), "restored, not warmed")
			requireSameState(t, ref, e2, "as if there had been no restart")
			reads := cdb.queriers.Load() - before
			require.Equal(t, float64(tc.caughtUp), testutil.ToFloat64(e2.p.m.caughtUp))
			if tc.caughtUp == 0 {
				require.Zero(t, reads, "nothing read from the TSDB at the claim")
				require.Contains(t, log.String(), "series=1 current=1")
			} else {
				require.Contains(t, log.String(), "series=1 current=0")
			}
		})
	}
}

// TestSeriesCurrent: a series' state is flagged current (see flagCurrent)
// only if its models learnt up to the latest sample dropped unscored or
// after it: a full queue's drop of a later sample, which the TSDB holds,
// is caught up after the restart. Nor while it awaits its catch-up or new
// models.
func TestSeriesCurrent(t *testing.T) {
	const last = 1000 // the models' latest sample
	tests := []struct {
		name    string
		dropped []int64 // the timestamps of the batches dropped, in turn
		mod     func(*series)
		want    bool
	}{
		{"nothing dropped", nil, nil, true},
		{"dropped before its last", []int64{last - 1}, nil, true},
		{"dropped at its last", []int64{last}, nil, true},
		{"dropped after its last", []int64{last + 1}, nil, false},
		{"dropped after, then before", []int64{last + 1, last - 1}, nil, false},
		{"awaiting its catch-up", nil, func(s *series) { s.catchUpDue = true }, false},
		{"awaiting new models", nil, func(s *series) { s.rebuild = true }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Pipeline
			p.droppedMaxT.Store(math.MinInt64)
			for _, d := range tc.dropped {
				p.noteDropped(&batch{s: []sample{{t: d - 5}, {t: d}, {t: d - 1}}})
			}
			s := &series{}
			require.NoError(t, s.det.Init(detect.DefaultOptions(), detect.NewScratch()))
			s.det.Update(last, 1)
			if tc.mod != nil {
				tc.mod(s)
			}
			require.Equal(t, tc.want, s.current(p.droppedMaxT.Load()))
		})
	}
}

// heldCommits is a Storage whose appenders' commits, once armed, wait
// after the TSDB's commit for release: a write request outliving the HTTP
// server's shutdown grace, its samples stored and not yet handed to the
// scorers.
type heldCommits struct {
	*tsdb.DB
	armed            atomic.Bool
	entered, release chan struct{}
}

func (h *heldCommits) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return heldAppender{AppenderV2: h.DB.AppenderV2(ctx), h: h}
}

type heldAppender struct {
	storage.AppenderV2
	h *heldCommits
}

func (a heldAppender) Commit() error {
	err := a.AppenderV2.Commit()
	if a.h.armed.CompareAndSwap(true, false) {
		close(a.h.entered)
		<-a.h.release
	}
	return err
}

// TestFinalSnapshotNotCurrentBesideACommit: the final snapshot is marked
// current (its states skip the restart's catch-up, see flagCurrent) only if
// no sample the TSDB takes goes unscored: a write request still committing
// when it was taken (outliving the HTTP server's grace), or beginning
// after, had its sample stored and never learnt by the models; the mark,
// checked on the queues alone, was written all the same, and the restarted
// series skipped the sample for good. Such a request now either keeps the
// mark away (its sample is caught up after the restart) or, begun after
// the final snapshot started, is refused (503: the sender retries after the
// restart), and the models end as if there had been no restart.
func TestFinalSnapshotNotCurrentBesideACommit(t *testing.T) {
	const n = 300
	vs := seasonal(n+2, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	at := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	for _, tc := range []struct {
		name  string
		after bool // the request begins after Run stopped, else it is committing then
	}{
		{"committing at the final snapshot", false},
		{"begun after the final snapshot", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
			opts := func(o *Options) { o.SnapshotPath = path }
			db := openDB(t, dir)
			st := &heldCommits{DB: db, entered: make(chan struct{}), release: make(chan struct{})}
			e := newEnvOn(t, db, st, nil, nil, opts)
			e.feed(ls, model.MetricTypeGauge, vs[:n])
			commit := func() error {
				a := e.app.AppenderV2(context.Background())
				_, err := a.Append(0, ls, 0, at(n), vs[n], nil, nil, storage.AOptions{})
				require.NoError(t, err)
				return a.Commit()
			}
			var err error
			if tc.after {
				e.stop()
				err = commit()
			} else {
				st.armed.Store(true)
				errc := make(chan error, 1)
				go func() { errc <- commit() }()
				<-st.entered
				e.stop()
				close(st.release)
				err = <-errc
			}
			require.NoError(t, db.Close())

			e2 := newEnv(t, dir, nil, opts)
			require.Eventually(t, e2.p.Ready, timeout, tick)
			first := n + 1
			if err != nil {
				first = n // refused: the sender sends it again
			}
			for i := first; i <= n+1; i++ {
				e2.push(at(i), model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
			}
			e2.sync()
			requireSameState(t, referenceDetector(t, vs[:n+2]), e2, "every sample learnt once")
		})
	}
}

// TestFinalSnapshotBoundedBesideAReopen: --snapshot.shutdown-timeout bounds
// the final snapshot's wait for one already being written, a TSDB reopen's
// (StorageReopened, unbounded, seconds at 100 000 series on a loaded node):
// the final one is abandoned, the last written stays, and the restart
// catches up from the TSDB. It waited for the lock without its bound, and
// a reopen during a shutdown held the pod past its grace.
func TestFinalSnapshotBoundedBesideAReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.snap")
	var holding atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, "", nil, func(o *Options) {
		o.SnapshotPath, o.ShutdownSnapshot = path, time.Millisecond
		o.SnapshotRoom = func(int64) error {
			if holding.CompareAndSwap(true, false) {
				close(held)
				<-release // the reopen's snapshot, under way
			}
			return nil
		}
	})
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	e.feed(ls, model.MetricTypeGauge, seasonal(10, 7))
	holding.Store(true)
	reopened := make(chan struct{})
	go func() { e.p.StorageReopened(); close(reopened) }()
	<-held
	e.cancel()
	select {
	case err := <-e.done:
		require.NoError(t, err)
		e.cancel = nil
	case <-time.After(time.Minute): // a watchdog: the wait above is 1 ms
		close(release)
		t.Fatal("Run waited for the reopen's snapshot past --snapshot.shutdown-timeout")
	}
	close(release)
	<-reopened
}

// TestRestoreOfOtherStepsKeepsDetector: a series whose saved forecaster
// took the steps of other horizons (an upgrade across the 1h-6h23m
// horizons' steps, or horizons changed while omen was down) keeps its
// detector, as saved, and only its forecaster learns the TSDB's history
// again. It warmed whole before: the detector learnt again from the
// --backfill.max-points the TSDB gives it (here 100 of the 300 samples it
// had learnt), and an open incident started again.
func TestRestoreOfOtherStepsKeepsDetector(t *testing.T) {
	const n, maxPoints = 300, 100
	vs := seasonal(n+1, 7)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	db, path := t.TempDir(), filepath.Join(t.TempDir(), "models.snap")
	opts := func(o *Options) { o.SnapshotPath = path; o.BackfillMaxPoints = maxPoints }
	e := newEnv(t, db, nil, opts)
	e.feed(ls, model.MetricTypeGauge, vs[:n])
	e.stop()
	require.NoError(t, e.db.Close())

	cfg, err := config.Load([]byte("defaults: {forecast_horizons: [5m, 1h]}"))
	require.NoError(t, err)
	e2 := newEnv(t, db, cfg, opts)
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
	e2.sync()
	requireSameState(t, referenceDetector(t, vs), e2, "the detector restored, not warmed from 100 samples")
	s := e2.onlySeries()
	require.NotNil(t, s.fc)
	require.Equal(t, float64(maxPoints), testutil.ToFloat64(e2.p.m.warmed), "the forecaster learnt the TSDB's history")
	require.Equal(t, livefc.MinStep(time.Hour), s.fc.rs.MinStepMs, "of the steps its horizons get now")
}

// TestSnapshotSmallAllocatesLittle: a record's length that claims more
// than the file holds (up to maxRecord, 64 MiB) is refused before its
// buffer is made: a snapshot of a few dozen bytes, its checksum right,
// allocated what its first record claimed (64 MiB), whichever version.
func TestSnapshotSmallAllocatesLittle(t *testing.T) {
	claim := []byte{1, 0xf0, 0xff, 0xff, 0x03, 'a', 'b'} // tag, a length of 64 MiB - 16, 2 bytes
	for _, version := range []byte{snapVersion, 5} {
		path := snapFileOf(t, version, func(e *snapEncoder) []error { return []error{e.write(claim)} })
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := readSnapshot(path, t0, &stateCodec{})
		runtime.ReadMemStats(&after)
		require.ErrorContains(t, err, "left in the snapshot")
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4<<20), "bytes allocated reading a snapshot of version %d", version)
	}
}

// TestSnapshotDamagedIncident: a series' incident read from a record
// damaged under a valid checksum (times out of order or beyond what JSON
// writes, a peak that is no score) is dropped, the models restored: with a
// since before the year 0 every answer of the anomalies API was a 500
// ("Time.MarshalJSON: year outside of range [0,9999]") while it lasted.
func TestSnapshotDamagedIncident(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(inc *incidentState)
	}{
		{"since before the year 0", func(inc *incidentState) { inc.since = -inc.since * 1000 }},
		{"event before since", func(inc *incidentState) { inc.event = inc.since - 1 }},
		{"lastHot past the year 9999", func(inc *incidentState) { inc.lastHot = inc.lastHot * 1000 }},
		{"peak not a score", func(inc *incidentState) { inc.peak = math.NaN() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs, ls, path, e, _ := inIncident(t)
			e.stop()
			damageIncident(t, path, tc.damage)

			e2 := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
			require.Eventually(t, e2.p.Ready, timeout, tick)
			for i := len(vs) - 3; i < len(vs); i++ {
				e2.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
			}
			e2.sync()
			require.Zero(t, testutil.ToFloat64(e2.p.m.warmed), "the models restored")
			w := httptest.NewRecorder()
			e2.p.AnomaliesHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/anomalies", nil))
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		})
	}
}

// damageIncident rewrites the snapshot at path, of one series, with its
// incident changed by damage, under a right checksum.
func damageIncident(t *testing.T, path string, damage func(inc *incidentState)) {
	t.Helper()
	saved, err := readUnpacked(path)
	require.NoError(t, err)
	require.Len(t, saved, 1)
	s := saved[0]
	inc := s.inc
	damage(&inc)
	rec := appendRecord(nil, appendLabels(nil, s.ls), s.flags, s.prevRaw, s.prevT, inc, s.absDif, s.nDif, s.det, s.fc, s.ingested, s.ext)
	require.NoError(t, os.Rename(snapFileOf(t, snapVersion, func(e *snapEncoder) []error { return []error{e.write(rec)} }), path))
}

// stoppedInIncident feeds vs to a series of labels ls, which must end in
// an incident, and stops, saving the snapshot at path; before is the
// series' anomaly at the shutdown.
func stoppedInIncident(t *testing.T, ls labels.Labels, vs []float64) (path string, before Anomaly) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "models.snap")
	e := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	e.feed(ls, model.MetricTypeGauge, vs)
	as := e.p.Anomalies(nil)
	require.Len(t, as, 1)
	require.True(t, as[0].Active, "in an incident at the shutdown")
	e.stop()
	return path, as[0]
}

// TestSnapshotIncidentAheadOfModels: a restored incident whose latest
// event sample (lastHot) is later than the latest sample its restored
// models took in may be damage (a record damaged under a right checksum):
// the models are restored, and the incident ends at the first sample
// before its lastHot (see published.active; one ahead of the models alone
// is real, TestSnapshotKeepsIncidentOutOfRange). Kept, it stayed active
// until sample time passed lastHot and the hold while the series scored
// calmly on (a day of an alert firing for lastHot a day ahead, for good
// for one near the year 9999). The series had a spike ten samples before
// the shutdown, and is calm after the restart for twice the hold.
func TestSnapshotIncidentAheadOfModels(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ahead time.Duration
	}{
		{"undamaged", 0},
		{"lastHot a day ahead", 24 * time.Hour},
		{"lastHot a sample ahead", stepMs * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n, calm = 300, 40 // calm: 10 minutes, twice the hold
			vs := seasonal(n+calm, 7)
			vs[n-10] += 500
			ls := labels.FromStrings("__name__", "temperature")
			path, _ := stoppedInIncident(t, ls, vs[:n]) // the spike's incident in its hold
			damageIncident(t, path, func(inc *incidentState) { inc.lastHot += tc.ahead.Milliseconds() })

			e2 := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
			require.Eventually(t, e2.p.Ready, timeout, tick)
			for i := n; i < len(vs); i++ {
				e2.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
			}
			e2.sync()
			require.Zero(t, testutil.ToFloat64(e2.p.m.warmed), "the models restored")
			after := e2.p.Anomalies(nil)
			require.Len(t, after, 1)
			require.False(t, after[0].Active, "the incident ended after the hold of calm samples: %+v", after[0])
		})
	}
}

// TestSnapshotKeepsIncidentOutOfRange: a series whose latest samples are
// ±Inf (a ratio whose denominator stalled, a histogram_quantile past the
// largest bucket) is in an incident its detector scores at
// detect.OutOfRangeScore without learning them, so the incident's latest
// event sample is later than the latest sample the models took in. That
// is a real incident: after a restart it goes on, with its start, when the
// series is still out of range. It was dropped as damage (the restored
// incident ahead of its models), and the next +Inf sample opened another:
// the warning alert on it pending again for its `for`.
func TestSnapshotKeepsIncidentOutOfRange(t *testing.T) {
	const n = 300
	vs := seasonal(n+1, 7)
	for i := n - 3; i < len(vs); i++ {
		vs[i] = math.Inf(1)
	}
	ls := labels.FromStrings("__name__", "latency_p99")
	path, before := stoppedInIncident(t, ls, vs[:n])
	require.Equal(t, t0.Add(time.Duration(n-1)*stepMs*time.Millisecond), *before.LastAnomalous, "out of range: the incident's latest")

	e2 := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	require.Eventually(t, e2.p.Ready, timeout, tick)
	e2.push(t0.UnixMilli()+int64(n)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:n+1])
	e2.sync()
	require.Zero(t, testutil.ToFloat64(e2.p.m.warmed), "the models restored")
	after := e2.p.Anomalies(nil)
	require.Len(t, after, 1)
	require.True(t, after[0].Active)
	require.Equal(t, *before.Since, *after[0].Since, "the incident goes on")
}

// TestSnapshotIncidentBeforeFirstResult: a restored series whose first
// sample after the restart is one its models took in before it (a sender
// resending) has no result until its next; meanwhile its restored
// incident is still current on /metrics (incident_peak), as before a
// damaged lastHot ended incidents at their first sample before it.
func TestSnapshotIncidentBeforeFirstResult(t *testing.T) {
	vs, ls, path, e, _ := inIncident(t)
	e.stop()

	e2 := newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
	require.Eventually(t, e2.p.Ready, timeout, tick)
	n := len(vs) - 3
	e2.push(t0.UnixMilli()+int64(n-5)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n-5:n-4])
	e2.sync()
	incident, hasResult := currentIncident(t, e2)
	require.False(t, hasResult, "out of order for the restored models: not scored")
	require.True(t, incident, "the restored incident is current")
}

// currentIncident reports whether e's only series is in an incident on
// /metrics and in the anomalies API now (see series.inIncident), and
// whether it has a result.
func currentIncident(t *testing.T, e *env) (incident, hasResult bool) {
	t.Helper()
	s := e.onlySeries()
	require.NotNil(t, s)
	for _, w := range e.p.workers {
		w.view(func(y *series) {
			if y == s {
				incident = s.inIncident(e.p.opts.IncidentHold.Milliseconds(), 0, e.clock.Now().UnixMilli())
				hasResult = s.pub.hasResult
			}
		})
	}
	return incident, hasResult
}

// TestSnapshotIncidentEndsOnNoValues: a series in an incident that sends
// only NaN (a ratio's 0/0 once its traffic stopped) leaves the incident
// after the hold, as a live one does, also when omen restarted in the
// incident. Restored, it has no result until its first number, and a NaN
// without a result was skipped: its restored incident stayed current
// (omen_incident_peak_score, the alert on it firing) for as long as the
// NaNs came.
func TestSnapshotIncidentEndsOnNoValues(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%t", restart), func(t *testing.T) {
			vs, ls, path, e, _ := inIncident(t)
			n := len(vs) - 3 // inIncident fed vs[:n]
			if restart {
				e.stop()
				e = newEnv(t, "", nil, func(o *Options) { o.SnapshotPath = path })
				require.Eventually(t, e.p.Ready, timeout, tick)
			}
			holdSteps := int(e.p.opts.IncidentHold.Milliseconds() / stepMs)
			for i := n; i <= n+holdSteps+2; i++ {
				e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, []float64{math.NaN()})
				if i == n {
					e.sync()
					incident, _ := currentIncident(t, e)
					require.True(t, incident, "within the hold: the incident goes on")
				}
			}
			e.sync()
			incident, _ := currentIncident(t, e)
			require.False(t, incident, "NaN past the hold: the incident is over")
		})
	}
}
