package pipeline

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// backlogRun is a series of 15 s samples, live ones (scored as they
// arrive, omen's clock at each) then a stretch sent at once: a backlog or
// history. A spike early in the stretch scores above 1 at its own
// timestamp, and its incident is over in sample time (the hold has
// passed) by the stretch's end.
type backlogRun struct {
	e    *env
	ls   labels.Labels
	vs   []float64
	hold time.Duration
	// The stretch is samples [blLive, blLive+outage), the spike at spikeAt.
	outage, spikeAt int
}

const blLive = 700 // samples before the stretch

func blTs(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }

// newBacklogRun starts a pipeline on dbDir (a new one if empty) with
// the snapshot at snapPath (none if empty): a 10-minute stretch (40
// samples), the spike 2 minutes in, a hold of 5 minutes; short, a
// 2-minute one (8), the spike 30 s in, a hold of 30 s.
func newBacklogRun(t *testing.T, dbDir, snapPath string, short bool) *backlogRun {
	r := &backlogRun{ls: labels.FromStrings("__name__", "temperature"), hold: 5 * time.Minute, outage: 40, spikeAt: blLive + 8}
	if short {
		r.hold, r.outage, r.spikeAt = 30*time.Second, 8, blLive+2
	}
	r.vs = seasonal(r.end()+30, 5)
	r.vs[r.spikeAt] += 1000
	r.start(t, dbDir, snapPath)
	return r
}

func (r *backlogRun) start(t *testing.T, dbDir, snapPath string) {
	r.e = newEnv(t, dbDir, nil, func(o *Options) { o.IncidentHold, o.SnapshotPath = r.hold, snapPath })
}

// end is the first sample after the stretch.
func (r *backlogRun) end() int { return blLive + r.outage }

// live sends samples [from, to) one at a time, omen's clock at each.
func (r *backlogRun) live(from, to int) {
	for i := from; i < to; i++ {
		r.e.clock.set(time.UnixMilli(blTs(i)))
		r.push(i)
		if i%256 == 255 {
			r.e.sync()
		}
	}
	r.e.sync()
}

// atOnce sends samples [from, to) in a burst, omen's clock at the
// sample time of to (the stretch's end).
func (r *backlogRun) atOnce(from, to int) {
	r.e.clock.set(time.UnixMilli(blTs(to)))
	for i := from; i < to; i++ {
		r.push(i)
	}
	r.e.sync()
}

func (r *backlogRun) push(i int) {
	r.e.push(blTs(i), model.MetricTypeGauge, []labels.Labels{r.ls}, r.vs[i:i+1])
}

// exposed reports whether the series' incident is on /metrics.
func (r *backlogRun) exposed(t *testing.T) bool {
	var buf bytes.Buffer
	require.NoError(t, r.e.p.WriteOutputs(&buf))
	return strings.Contains(buf.String(), `omen_incident_peak_score{for="temperature",job="",instance=""}`)
}

// listed reports whether /api/v1/anomalies lists the spike's incident as
// active (and no other).
func (r *backlogRun) listed(t *testing.T) bool {
	for _, a := range r.e.p.Anomalies(nil) {
		if a.Active {
			// The spike scored above 1 at its own timestamp.
			require.Equal(t, time.UnixMilli(blTs(r.spikeAt)).UTC(), *a.Since)
			require.Equal(t, time.UnixMilli(blTs(r.spikeAt)).UTC(), *a.LastAnomalous)
			require.Greater(t, float64(a.PeakScore), 1.0)
			return true
		}
	}
	return false
}

// TestIncidentInABacklogIsExposed: omen down or hung while Prometheus
// queues its samples, then the queue resent in a burst, scored within a
// second of omen's clock. The spike's incident, over in sample time by the
// backlog's end, must still be on /metrics and listed for the hold on
// omen's clock: the alerts read omen_incident_peak_score from a scrape. It
// was exposed only while the burst was being scored, between two scrapes,
// so no alert fired on an anomaly omen had scored and stored (seen with
// the real Prometheus 2.42: e2e/TestBacklogAfterOutage). Once the hold has
// passed on omen's clock too, the incident is over as before. "restarted":
// omen stopped (its snapshot written) before the outage and started after
// it: its series was live before, and the burst is a backlog still.
// "short": 2 minutes down, a hold of 30 s: a backlog no older than the
// 2 minutes a sample may be behind and be current (e2e's 75 s outage was
// one).
func TestIncidentInABacklogIsExposed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
		short   bool
	}{{"hung", false, false}, {"restarted", true, false}, {"short", false, true}, {"short restarted", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db, snap := filepath.Join(dir, "tsdb"), filepath.Join(dir, "models.snap")
			r := newBacklogRun(t, db, snap, tc.short)
			r.live(0, blLive)
			require.False(t, r.e.onlySeries().pub.active(r.hold.Milliseconds()), "no incident before the outage")
			if tc.restart {
				r.e.stop()
				require.NoError(t, r.e.db.Close())
				r.start(t, db, snap)
				r.e.ready(t)
			}

			// Back after the outage: the backlog arrives at once.
			back := time.UnixMilli(blTs(r.end()))
			r.atOnce(blLive, r.end())
			if tc.restart {
				require.Zero(t, testutil.ToFloat64(r.e.p.m.warmed), "the models restored")
			}
			require.False(t, r.e.onlySeries().pub.active(r.hold.Milliseconds()), "over in sample time")
			require.True(t, r.exposed(t), "the backlog's incident on /metrics")
			require.True(t, r.listed(t), "the backlog's incident in /api/v1/anomalies")

			// Live again, a sample every 15 s: exposed for the hold on
			// omen's clock, then over.
			for i := r.end(); i < len(r.vs); i++ {
				r.live(i, i+1)
				within := r.e.clock.Now().Sub(back) <= r.hold
				require.Equal(t, within, r.exposed(t), "%s after the backlog", r.e.clock.Now().Sub(back))
				require.Equal(t, within, r.listed(t), "%s after the backlog", r.e.clock.Now().Sub(back))
			}
		})
	}
}

// TestHistoryIsNoBacklog: history written in one go to a new series (as
// e2e/TestScoringEndToEnd writes a day of it over remote write before its
// series go live) is no backlog: an incident in it over in sample time is
// not exposed or listed on omen's clock, then or once the series is live,
// and the alerts do not fire on an old anomaly. Holding every incident
// scored as it arrived on omen's clock (e88ae20) fired
// OmenSeriesAnomalous for TestScoringEndToEnd's control series. A live
// incident after the history is held in sample time.
func TestHistoryIsNoBacklog(t *testing.T) {
	r := newBacklogRun(t, "", "", false)
	// The history, up to now on omen's clock, the spike in it.
	r.atOnce(0, r.end())
	require.True(t, r.e.onlySeries().pub.ready)
	require.False(t, r.exposed(t), "history's incident on /metrics")
	require.False(t, r.listed(t), "history's incident in /api/v1/anomalies")

	// Live from there: the history's incident never shows.
	second := len(r.vs) - 10 // a live spike near the end
	r.vs[second] += 10000    // the band still wide from the first
	for i := r.end(); i < second; i++ {
		r.live(i, i+1)
		require.False(t, r.exposed(t), "history's incident on /metrics %s after it", r.e.clock.Now().Sub(time.UnixMilli(blTs(r.spikeAt))))
	}
	// A live spike: in an incident at once, held in sample time.
	r.live(second, second+1)
	require.True(t, r.exposed(t), "the live spike's incident on /metrics")
	require.True(t, r.e.onlySeries().pub.live)
	require.Zero(t, r.e.onlySeries().pub.hotAt, "held in sample time only")
}

// TestHotAt: an incident's latest event sample is held on omen's clock
// only for a live series (see published.live) and a sample behind the
// clock; a sample at or after the clock holds longer in sample time, and
// one replayed from history (nowMs 0) holds in sample time only.
func TestHotAt(t *testing.T) {
	const now = int64(1_800_000_000_000)
	for _, tc := range []struct {
		name   string
		live   bool
		t, now int64
		want   uint32
	}{
		{"live, behind the clock", true, now - 600_000, now, uint32(now / 1000)},
		{"live, a second behind", true, now - 1000, now, uint32(now / 1000)},
		{"live, at the clock", true, now, now, 0},
		{"live, ahead of the clock", true, now + 5000, now, 0},
		{"not live", false, now - 600_000, now, 0},
		{"replayed", true, now - 600_000, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := published{live: tc.live, hotAt: 7}
			p.hot(tc.t, tc.now)
			require.Equal(t, tc.want, p.hotAt)
		})
	}
	p := published{}
	p.arrived(now-currentMs-1, now, 15_000)
	require.False(t, p.live, "more than 2 minutes behind")
	p.arrived(now-currentMs-1, now, 60_000)
	require.True(t, p.live, "within 4 intervals of a minute")
	p = published{}
	p.arrived(now-1, 0, 15_000)
	require.False(t, p.live, "replayed")
}
