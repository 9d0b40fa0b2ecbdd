package pipeline

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
)

// sealSnapshot frames records as a snapshot file of version: the header,
// the records, the end tag and the checksum, as writeSnapshot does.
func sealSnapshot(tb testing.TB, version uint16, records []byte) []byte {
	var buf bytes.Buffer
	e, err := newSnapEncoder(&buf, version)
	require.NoError(tb, err)
	require.NoError(tb, e.write(records))
	require.NoError(tb, e.end())
	return buf.Bytes()
}

// fuzzRecords returns records as this release writes them (see
// appendRecord): a series with a detector and a forecaster that learnt a
// few hundred samples, one saved without models, a group's, and a derived
// input's with a later release's field.
func fuzzRecords(tb testing.TB) [][]byte {
	sc := config0().Defaults
	var hz horizonCache
	det, err := detect.New(detectOptions(sc))
	require.NoError(tb, err)
	s := &series{name: "g", fc: newFcStateOf(hz.of(sc), 0)}
	buf := newFcBuf()
	for i, v := range seasonal(400, 3) {
		at := t0.UnixMilli() + int64(i)*stepMs
		det.Update(at, v)
		s.fc.step(s, at, v, v, nil, &buf, stepMs)
	}
	d, err := det.AppendBinary(nil)
	require.NoError(tb, err)
	fc, err := s.fc.appendState(nil)
	require.NoError(tb, err)
	g, err := detect.NewGroup(2, 7, detectOptions(sc))
	require.NoError(tb, err)
	for i := range 50 {
		g.Update(t0.UnixMilli()+int64(i)*stepMs, []float64{float64(i % 7), float64(i % 5)})
	}
	gs, err := g.AppendBinary(nil)
	require.NoError(tb, err)
	inc := incidentState{since: t0.UnixMilli(), lastHot: t0.UnixMilli() + stepMs, peak: 3.5, quiet: 2, event: t0.UnixMilli(), longest: 4, peakMember: "level"}
	lbl := func(kv ...string) []byte { return appendLabels(nil, labels.FromStrings(kv...)) }
	return [][]byte{
		appendRecord(nil, lbl("__name__", "g", "pod", "a"), flagHasPrev|flagForecaster|flagCurrent, 1.5, t0.UnixMilli(), inc, 0.25, 12, d, fc, t0.UnixMilli(), nil),
		appendRecord(nil, lbl("__name__", "c", "job", "x"), flagCounter|flagWaiting|flagStale, 7, t0.UnixMilli(), incidentState{}, 0, 0, nil, nil, math.MinInt64, nil),
		appendRecord(nil, lbl("__name__", "grp"), flagDef, 0, 7, incidentState{}, 0, 0, gs, nil, t0.UnixMilli(), nil),
		appendRecord(nil, lbl("__name__", "d"), flagDef, 0, 12345, inc, math.NaN(), 1, d, nil, t0.UnixMilli(), []byte{0xde, 0xad, 0xbe, 0xef}),
	}
}

// unsized rewrites records of version 7 (1 | len uint32 | fields) in the
// layout of versions 5 and 6 (1 | fields); records must have no later
// release's fields.
func unsized(records []byte) []byte {
	var out []byte
	for len(records) >= 5 {
		n := int(uint32(records[1]) | uint32(records[2])<<8 | uint32(records[3])<<16 | uint32(records[4])<<24)
		out = append(append(out, 1), records[5:5+n]...)
		records = records[5+n:]
	}
	return out
}

// FuzzSnapshot: whatever the snapshot file holds, reading it gives an
// error (the restart warms every series from the TSDB) or records whose
// states unpack, encode again to a file that reads back the same, and
// restore into a series as its first sample after a restart does
// (series.restore), which then scores and forecasts, or are refused (that
// series warms): never a panic. A random file almost never passes the
// checksum, so the input is read three ways: as the whole file, and as
// the records of a file of the version given, framed and summed as
// writeSnapshot does (compressed from version 6).
func FuzzSnapshot(f *testing.F) {
	recs := fuzzRecords(f)
	records := bytes.Join(recs, nil)
	f.Add(uint16(snapVersion), records)
	f.Add(uint16(snapVersion), records[:len(records)/2])
	f.Add(uint16(snapVersion), sealSnapshot(f, snapVersion, records))
	v5 := unsized(bytes.Join(recs[:3], nil)) // the last has a later release's field
	f.Add(uint16(5), v5)
	f.Add(uint16(5), sealSnapshot(f, 5, v5[:len(v5)/3]))
	f.Add(uint16(2), []byte{1, 4, 0, 0, 0, 'a', 0xff, 'b', 0xff, 0})
	for _, at := range []int{1, 10, 40, 200, len(records) / 2, len(records) - 3} {
		b := append([]byte(nil), records...)
		b[at] ^= 0x40
		f.Add(uint16(snapVersion), b)
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "models.snap")
	sc := config0().Defaults
	f.Fuzz(func(t *testing.T, version uint16, in []byte) {
		for _, file := range [][]byte{in, sealSnapshot(t, version, in)} {
			require.NoError(t, os.WriteFile(path, file, 0o644))
			var hz horizonCache
			longest := hz.of(sc).longest()
			codec := &stateCodec{refuse: func(_ *savedSeries, fc []byte) error { return fcRefusal(fc, longest) }}
			saved, err := readSnapshot(path, t0, codec)
			if err != nil {
				continue
			}
			_ = codec.marked(in[:min(len(in), markLen)], 0)
			var again []byte
			states := make([]savedState, len(saved))
			for i, s := range saved {
				st, err := s.unpack()
				require.NoError(t, err, "a state packed at the read does not unpack")
				states[i] = st
				again = appendRecord(again, appendLabels(nil, s.ls), s.flags, s.prevRaw, s.prevT, s.inc, s.absDif, s.nDif, st.det, st.fc, s.ingested, st.ext)
			}
			// The round trip, as encodeRestored writes the states read.
			require.NoError(t, os.WriteFile(path, sealSnapshot(t, snapVersion, again), 0o644))
			back, err := readSnapshot(path, t0, &stateCodec{})
			require.NoError(t, err, "the records read do not read again once written")
			require.Len(t, back, len(saved))
			for i, s := range back {
				st, err := s.unpack()
				require.NoError(t, err)
				require.Equal(t, states[i], st)
				o := saved[i]
				require.True(t, labels.Equal(o.ls, s.ls), "labels %v, then %v", o.ls, s.ls)
				require.Equal(t, o.flags|s.flags&flagForecaster, s.flags) // the read sets it for a state that has one
				require.Equal(t, math.Float64bits(o.prevRaw), math.Float64bits(s.prevRaw))
				require.Equal(t, o.prevT, s.prevT)
				require.Equal(t, o.inc.peakMember, s.inc.peakMember)
				require.Equal(t, math.Float64bits(o.inc.peak), math.Float64bits(s.inc.peak))
				o.inc.peak, s.inc.peak = 0, 0
				require.Equal(t, o.inc, s.inc)
				require.Equal(t, math.Float64bits(o.absDif), math.Float64bits(s.absDif))
				require.Equal(t, o.nDif, s.nDif)
			}
			for _, s := range saved {
				restoreAndScore(t, s, sc)
				if s.flags&flagDef != 0 {
					// A derived input's is refused unless its definition's
					// hash matches: restored too as an ingested series'.
					c := *s
					c.flags &^= flagDef
					restoreAndScore(t, &c, sc)
				}
			}
		}
	})
}

// restoreAndScore restores saved into a series of the scoring sc, as
// worker.create does at the series' first sample, and feeds it a few
// samples if it took the state.
func restoreAndScore(t *testing.T, saved *savedSeries, sc config.Scoring) {
	var hz horizonCache
	s := &series{in: saved.ls, name: saved.ls.Get(model.MetricNameLabel), counter: saved.counter()}
	require.NoError(t, s.det.Init(detectOptions(sc), detect.NewScratch()))
	s.fc = newFcStateOf(hz.of(sc), 0)
	if !s.restore(saved) {
		return
	}
	require.True(t, s.pub.incidentState.plausible(), "incident %+v restored", s.pub.incidentState)
	buf := newFcBuf()
	last := s.det.LastTimestamp()
	for i := range int64(6) {
		at := last + (i+1)*stepMs
		if at < last {
			at = last
		}
		v := float64(i%3) * 10
		r := s.det.Update(at, v)
		if !(r.Score >= 0) || math.IsInf(r.Score, 0) {
			t.Fatalf("score %v from a restored state", r.Score)
		}
		if s.fc != nil {
			s.fc.step(s, at, v, v, nil, &buf, stepMs)
		}
	}
}

// TestSnapshotDamagedRestores: a snapshot damaged under a valid checksum
// (a byte of its record flipped here and there, the file framed and summed
// again, as FuzzSnapshot's inputs are) goes through the pipeline's own
// restore, the series' first sample after the restart claiming the state:
// the series is scored at once, its models restored or warmed from the
// TSDB's history, never a crash.
func TestSnapshotDamagedRestores(t *testing.T) {
	const n = 300
	vs := seasonal(n+1, 8)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	dir := t.TempDir()
	path, db := filepath.Join(dir, "models.snap"), filepath.Join(dir, "tsdb")
	e := newEnv(t, db, nil, func(o *Options) { o.SnapshotPath = path })
	e.feed(ls, model.MetricTypeGauge, vs[:n])
	e.stop()
	require.NoError(t, e.db.Close())
	saved, err := readUnpacked(path)
	require.NoError(t, err)
	require.Len(t, saved, 1)
	s := saved[0]
	require.NotEmpty(t, s.fc, "a forecaster's state to damage too")
	lbl := appendLabels(nil, s.ls)
	rec := appendRecord(nil, lbl, s.flags, s.prevRaw, s.prevT, s.inc, s.absDif, s.nDif, s.det, s.fc, s.ingested, s.ext)
	// The top byte of each field (see appendRecord), and of the
	// forecaster state's (see fcState.appendState): no checksum covers
	// them but the file's. The detector's state has its own.
	at := 5 + 4 + len(lbl)
	damage := map[string]int{"flags": at}
	at++
	for _, f := range []struct {
		name string
		size int
	}{{"prevRaw", 8}, {"prevT", 8}, {"since", 8}, {"lastHot", 8}, {"peak", 8}, {"quiet", 4}, {"event", 8}, {"longest", 4}} {
		at += f.size
		damage[f.name] = at - 1
	}
	at += 4 + len(s.inc.peakMember)
	damage["absDif"], damage["nDif"] = at+7, at+11
	at += 12
	damage["detector"] = at + 4 + len(s.det)/2
	at += 4 + len(s.det) + 4 // the forecaster's state: tag, head length, fields
	for k := range fcStateFields3 {
		damage[fmt.Sprintf("forecaster field %d", k)] = at + 5 + 8*k + 7
	}
	damage["forecaster model"] = at + fcStateLen(s.fc) + (len(s.fc)-fcStateLen(s.fc))/2
	for name, at := range damage {
		t.Run(name, func(t *testing.T) {
			bad := append([]byte(nil), rec...)
			bad[at] ^= 0x80
			run := t.TempDir()
			require.NoError(t, os.CopyFS(filepath.Join(run, "tsdb"), os.DirFS(db)))
			p := filepath.Join(run, "models.snap")
			require.NoError(t, os.WriteFile(p, sealSnapshot(t, snapVersion, bad), 0o644))
			e2 := newEnv(t, filepath.Join(run, "tsdb"), nil, func(o *Options) { o.SnapshotPath = p })
			require.Eventually(t, e2.p.Ready, timeout, tick)
			e2.push(t0.UnixMilli()+n*stepMs, model.MetricTypeGauge, []labels.Labels{ls}, vs[n:])
			e2.sync()
			got := e2.p.Anomalies(nil)
			require.Len(t, got, 1)
			require.True(t, got[0].Ready, "restored or warmed from TSDB history")
			require.False(t, math.IsNaN(float64(got[0].Score)))
		})
	}
}
