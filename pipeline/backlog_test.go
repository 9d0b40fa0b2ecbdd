package pipeline

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// TestIncidentInABacklogIsExposed: omen down or hung for 10 minutes while
// Prometheus queues its samples, then the queue resent in a burst, scored
// within a second of omen's clock. A spike 2 minutes into the outage scores
// above 1 at its own timestamp, and its incident, over in sample time (the
// hold, 5 minutes, had passed by the backlog's end), must still be on
// /metrics and listed for the hold on omen's clock: the alerts read
// omen_incident_peak_score from a scrape. It was exposed only while the
// burst was being scored, between two scrapes, so no alert fired on an
// anomaly omen had scored and stored (seen with the real Prometheus 2.42:
// e2e/TestBacklogAfterOutage). Once the hold has passed on omen's clock
// too, the incident is over as before.
func TestIncidentInABacklogIsExposed(t *testing.T) {
	const hold = 5 * time.Minute
	e := newEnv(t, "", nil, func(o *Options) { o.IncidentHold = hold })
	ls := labels.FromStrings("__name__", "temperature")
	const live, outage = 700, 40 // samples at 15 s: 10 minutes down
	vs := seasonal(live+outage+30, 5)
	const spikeAt = live + 8 // 2 minutes into the outage
	vs[spikeAt] += 1000
	tsOf := func(i int) int64 { return t0.UnixMilli() + int64(i)*stepMs }
	push := func(i int) {
		e.push(tsOf(i), model.MetricTypeGauge, []labels.Labels{ls}, vs[i:i+1])
	}
	for i := range live {
		e.clock.set(time.UnixMilli(tsOf(i)))
		push(i)
		if i%256 == 255 {
			e.sync()
		}
	}
	e.sync()
	require.False(t, e.onlySeries().pub.active(hold.Milliseconds()), "no incident before the outage")

	// Back after the outage: the backlog arrives at once.
	back := time.UnixMilli(tsOf(live + outage))
	e.clock.set(back)
	for i := live; i < live+outage; i++ {
		push(i)
	}
	e.sync()
	require.False(t, e.onlySeries().pub.active(hold.Milliseconds()), "over in sample time")
	exposed := func() bool {
		var buf bytes.Buffer
		require.NoError(t, e.p.WriteOutputs(&buf))
		return strings.Contains(buf.String(), `omen_incident_peak_score{for="temperature",job="",instance=""}`)
	}
	listed := func() bool {
		for _, a := range e.p.Anomalies(nil) {
			if a.Active {
				// The spike scored above 1 at its own timestamp.
				require.Equal(t, time.UnixMilli(tsOf(spikeAt)).UTC(), *a.Since)
				require.Equal(t, time.UnixMilli(tsOf(spikeAt)).UTC(), *a.LastAnomalous)
				require.Greater(t, float64(a.PeakScore), 1.0)
				return true
			}
		}
		return false
	}
	require.True(t, exposed(), "the backlog's incident on /metrics")
	require.True(t, listed(), "the backlog's incident in /api/v1/anomalies")

	// Live again, a sample every 15 s: exposed for the hold on omen's
	// clock, then over.
	for i := live + outage; i < len(vs); i++ {
		e.clock.set(time.UnixMilli(tsOf(i)))
		push(i)
		e.sync()
		within := e.clock.Now().Sub(back) <= hold
		require.Equal(t, within, exposed(), "%s after the backlog", e.clock.Now().Sub(back))
		require.Equal(t, within, listed(), "%s after the backlog", e.clock.Now().Sub(back))
	}
}
