package tsdb

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestWriteConcurrentManySamples writes disjoint series from concurrent
// writers, many samples per series per request, and reads every series
// back: each holds exactly its own samples.
func TestWriteConcurrentManySamples(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{})
	const workers, perWorker, spr, rounds = 8, 50, 400, 4
	t0 := time.Now().Add(-50 * time.Minute).UnixMilli()
	var wg sync.WaitGroup
	for k := range workers {
		wg.Go(func() {
			var req prompb.WriteRequest
			for j := range perWorker {
				i := k + j*workers
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "series", Value: strconv.Itoa(i)}},
					Samples: make([]prompb.Sample, spr)})
			}
			for r := range int64(rounds) {
				for j := range req.Timeseries {
					i := k + j*workers
					for m := range req.Timeseries[j].Samples {
						n := r*spr + int64(m)
						req.Timeseries[j].Samples[m] = prompb.Sample{Timestamp: t0 + n, Value: float64(n*100000 + int64(i))}
					}
				}
				w := post(t, h, v1Body(t, &req), nil)
				if w.Code != http.StatusNoContent {
					t.Errorf("status %d: %s", w.Code, w.Body.String())
					return
				}
			}
		})
	}
	wg.Wait()
	seen := 0
	forEachSeries(t, s, "m", func(ls labels.Labels, smp map[int64]float64) {
		seen++
		i, err := strconv.Atoi(ls.Get("series"))
		require.NoError(t, err)
		require.Len(t, smp, spr*rounds, "series %d", i)
		for n := range int64(spr * rounds) {
			require.Equal(t, float64(n*100000+int64(i)), smp[t0+n], fmt.Sprintf("series %d sample %d", i, n))
		}
	})
	require.Equal(t, workers*perWorker, seen)
}
