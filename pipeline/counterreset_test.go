package pipeline

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestCounterResetNotAnAnomaly: a target restarted (a redeploy, a crashed
// container started again) counts from zero, and the first sample after
// it holds only what was counted since the restart, not the scrape
// interval's rise: its rate, taken Prometheus's way (the value as the
// rise), was a dip of the share of the interval the old process did not
// live to be scraped for. Against the real Prometheus scraping a counter
// of 50 a second every 15 s, a restart 11 s before a scrape scored 3.22,
// an anomaly of every counter of every pod redeployed. The rise across a
// reset is not known; the sample gives the next one its base and is not
// scored itself, and the series goes on at its rate with no false alarm.
func TestCounterResetNotAnAnomaly(t *testing.T) {
	const n = 1500 // about 6 hours at 15 s
	for _, tc := range []struct {
		name string
		// st: the reset is told by a start timestamp (remote-write
		// 2.0's) too; then the counter has passed its old value.
		st bool
	}{{"decrease", false}, {"start timestamp", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil, nil)
			ls := labels.FromStrings("__name__", "requests_total", "pod", "a")
			rng := rand.New(rand.NewPCG(1, 2))
			rise := func() float64 { return math.Round(750 + 30*rng.NormFloat64()) } // 50/s ± 2 at 15 s
			push := func(i int, st int64, v float64) {
				a := e.app.AppenderV2(context.Background())
				_, err := a.Append(0, ls, st, t0.UnixMilli()+int64(i)*stepMs, v, nil, nil, storage.AOptions{Metadata: metadata.Metadata{}})
				require.NoError(t, err)
				require.NoError(t, a.Commit())
			}
			start := t0.UnixMilli() - 1
			var v float64
			for i := range n {
				v += rise()
				push(i, start, v)
				if i%256 == 255 {
					e.sync()
				}
			}
			e.sync()
			got := e.p.Anomalies(nil)
			require.Len(t, got, 1)
			require.True(t, got[0].Ready)
			prev := v
			anomalies := testutil.ToFloat64(e.p.m.anomalies.WithLabelValues("requests_total"))

			// Restarted 11 s before the next scrape: 4 s of its rise lost.
			since := math.Round(rise() * 11 / 15)
			if v = since; tc.st {
				// Passed its old value (a counter that had counted less
				// than it counts now): only the start timestamp tells.
				v = prev + since
				start = t0.UnixMilli() + int64(n)*stepMs - 11_000
			}
			push(n, start, v)
			for i := n + 1; i < n+40; i++ {
				e.sync()
				got = e.p.Anomalies(nil)
				require.Len(t, got, 1)
				require.Less(t, float64(got[0].Score), 1.0, "the reset paged, sample %d", i-n)
				v += rise()
				push(i, start, v)
			}
			e.sync()
			got = e.p.Anomalies(nil)
			require.Len(t, got, 1)
			require.Equal(t, anomalies, testutil.ToFloat64(e.p.m.anomalies.WithLabelValues("requests_total")))
			require.InDelta(t, 50, float64(got[0].Value), 10, "scored at its rate after the reset")
		})
	}
}
