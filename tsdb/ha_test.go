package tsdb

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// TestHADeduplication: two replicas of one cluster write the same series;
// one replica's are stored, without the replica label, the other's answered
// 202 and dropped, until the elected one is silent for the failover
// timeout. The same on every decoding path, 1.0 and 2.0, fast and generic.
func TestHADeduplication(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v2      bool
		generic bool
	}{{"1.0 fast", false, false}, {"1.0 generic", false, true}, {"2.0 fast", true, false}, {"2.0 generic", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStorage(t)
			now := time.Unix(1_800_000_000, 0)
			reg := prometheus.NewRegistry()
			h := NewWriteHandler(nil, reg, s, WriteOptions{
				Now: func() time.Time { return now },
				HA:  HAOptions{ReplicaLabel: "__replica__", MaxClusters: 2},
			})
			h.generic = tc.generic
			// send posts one sample at now of each series ls (name, value
			// pairs, the external labels last as Prometheus adds them).
			send := func(v float64, lss ...[]string) *http.Response {
				var ts []prompb.TimeSeries
				for _, ls := range lss {
					ts = append(ts, series(now.UnixMilli(), v, ls...))
				}
				if !tc.v2 {
					return post(t, h, v1Body(t, &prompb.WriteRequest{Timeseries: ts}), nil).Result()
				}
				st := writev2.NewSymbolTable()
				var req writev2.Request
				for _, s := range ts {
					b := labels.NewScratchBuilder(len(s.Labels))
					for _, l := range s.Labels {
						b.Add(l.Name, l.Value)
					}
					b.Sort()
					req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
						LabelsRefs: st.SymbolizeLabels(b.Labels(), nil),
						Samples:    []writev2.Sample{{Value: s.Samples[0].Value, Timestamp: s.Samples[0].Timestamp}},
					})
				}
				req.Symbols = st.Symbols()
				raw, err := proto.Marshal(&req)
				require.NoError(t, err)
				return postV2(t, h, raw).Result()
			}
			replica := func(name, cluster, r string) []string {
				return []string{"__name__", name, "__replica__", r, "cluster", cluster, "job", "node"}
			}
			step := func(d time.Duration, v float64, r string, want int) {
				t.Helper()
				now = now.Add(d)
				resp := send(v, replica("up", "eu", r), replica("load", "eu", r))
				require.Equal(t, want, resp.StatusCode, "replica %s at %s", r, now)
				if tc.v2 {
					// Deduplicated samples are reported written, as
					// Cortex and Mimir do: a 2.0 sender told 0 counts
					// them as failed.
					require.Equal(t, "2", resp.Header.Get(headerSamplesWritten))
				}
			}
			step(0, 1, "a", http.StatusNoContent)
			step(time.Second, 2, "b", http.StatusAccepted)
			step(15*time.Second, 3, "a", http.StatusNoContent)
			step(time.Second, 4, "b", http.StatusAccepted)
			// a falls silent: after the timeout (30 s) b is elected.
			step(31*time.Second, 5, "b", http.StatusNoContent)
			step(time.Second, 6, "a", http.StatusAccepted)
			step(time.Second, 7, "b", http.StatusNoContent)

			// One series per input, without the replica label, holding the
			// elected replica's samples only.
			for _, name := range []string{"up", "load"} {
				got := map[float64]bool{}
				for _, v := range samples(t, s, name) {
					got[v] = true
				}
				require.Equal(t, map[float64]bool{1: true, 3: true, 5: true, 7: true}, got, name)
			}
			q, err := s.Querier(math.MinInt64, math.MaxInt64)
			require.NoError(t, err)
			ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
			require.True(t, ss.Next())
			require.Equal(t, `{__name__="up", cluster="eu", job="node"}`, ss.At().Labels().String())
			require.False(t, ss.Next())
			require.NoError(t, q.Close())

			require.Equal(t, 6.0, testutil.ToFloat64(h.ha.deduped.WithLabelValues("eu")), "three requests of two samples")
			require.Equal(t, 1.0, testutil.ToFloat64(h.ha.changes.WithLabelValues("eu")))

			// Without the replica label: stored as sent. Without the
			// cluster label: one unnamed cluster, its replica label
			// stripped too.
			now = now.Add(time.Second)
			require.Equal(t, http.StatusNoContent, send(8, []string{"__name__", "solo", "cluster", "eu"}).StatusCode)
			now = now.Add(time.Second)
			require.Equal(t, http.StatusNoContent, send(9, []string{"__name__", "solo", "__replica__", "x"}).StatusCode)
			require.Equal(t, http.StatusAccepted, send(9, []string{"__name__", "solo", "__replica__", "y"}).StatusCode)
			require.Equal(t, map[float64]bool{8: true, 9: true}, func() map[float64]bool {
				got := map[float64]bool{}
				for _, v := range samples(t, s, "solo") {
					got[v] = true
				}
				return got
			}())
			// That makes two clusters; a third is one too many, and the
			// answer says so.
			w := send(11, replica("up", "ap", "a"))
			require.Equal(t, http.StatusBadRequest, w.StatusCode)
			if tc.v2 {
				require.Equal(t, "0", w.Header.Get(headerSamplesWritten))
			}
			body := make([]byte, 512)
			n, _ := w.Body.Read(body)
			require.Contains(t, string(body[:n]), `too many HA clusters: "ap"`)
			require.Contains(t, string(body[:n]), strconv.Itoa(2))
		})
	}
}
