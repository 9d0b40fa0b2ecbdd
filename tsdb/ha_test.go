package tsdb

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
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
	for _, tc := range decodingPaths {
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
				return postVersion(t, h, tc.v2, ts).Result()
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
				require.Equal(t, map[float64]bool{1: true, 3: true, 5: true, 7: true}, values(t, s, name), name)
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

			// Without the replica label, or without the cluster label: stored
			// as sent (a Prometheus that is no HA replica, a separate one).
			now = now.Add(time.Second)
			require.Equal(t, http.StatusNoContent, send(8, []string{"__name__", "solo", "cluster", "eu"}).StatusCode)
			now = now.Add(time.Second)
			require.Equal(t, http.StatusNoContent, send(9, []string{"__name__", "solo", "__replica__", "x"}).StatusCode)
			require.Equal(t, map[float64]bool{8: true, 9: true}, values(t, s, "solo"))

			// A target's own cluster label (Prometheus keeps it over the
			// external one) makes a cluster of its own, whose replicas are
			// still told apart; it decides nothing for the request's other
			// series, and its elected replica, sending on, never looks
			// silent.
			target := func(r string) []string {
				return []string{"__name__", "es_docs", "__replica__", r, "cluster", "es-prod", "job", "es"}
			}
			for k := range 4 {
				now = now.Add(20 * time.Second)
				v := float64(20 + k)
				require.Equal(t, http.StatusNoContent, send(v, target("b"), replica("up", "eu", "b")).StatusCode, "b elected for both")
				require.Equal(t, http.StatusAccepted, send(v, target("a"), replica("up", "eu", "a")).StatusCode)
			}
			require.Equal(t, map[float64]bool{20: true, 21: true, 22: true, 23: true}, values(t, s, "es_docs"))
			require.Equal(t, 1.0, testutil.ToFloat64(h.ha.changes.WithLabelValues("eu")), "no failover since")
			require.Equal(t, 0.0, testutil.ToFloat64(h.ha.changes.WithLabelValues("es-prod")))

			// That makes two clusters, the limit: a third cluster's series are
			// refused, the rest of the request stored, and the answer names
			// them; once a cluster has been idle for an hour, its slot is
			// taken.
			now = now.Add(time.Second)
			w := send(11, replica("up", "ap", "a"), []string{"__name__", "solo", "cluster", "x"})
			require.Equal(t, http.StatusBadRequest, w.StatusCode)
			body := make([]byte, 512)
			n, _ := w.Body.Read(body)
			require.Contains(t, string(body[:n]), `1 sample(s) of HA cluster "ap" refused: more than 2 clusters`)
			require.Contains(t, values(t, s, "solo"), 11.0)
			require.Equal(t, 1.0, testutil.ToFloat64(h.metrics.rejected.WithLabelValues("float", "ha_too_many_clusters")))
			now = now.Add(61 * time.Minute)
			require.Equal(t, http.StatusNoContent, send(12, replica("up", "ap", "a")).StatusCode)
		})
	}
}

// TestHAStripClusterLabel: with StripClusterLabel the elected replica's
// series are stored without the cluster label too, as their inputs are in
// the Prometheus the pair belongs to (the Prometheus Operator's labels).
func TestHAStripClusterLabel(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{HA: HAOptions{
		ReplicaLabel: "prometheus_replica", ClusterLabel: "prometheus", StripClusterLabel: true,
	}})
	now := time.Now().UnixMilli()
	for _, r := range []string{"prometheus-k8s-0", "prometheus-k8s-1"} {
		post(t, h, v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series(now, 1, "__name__", "up", "job", "node", "prometheus", "monitoring/k8s", "prometheus_replica", r),
		}}), nil)
	}
	q, err := s.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
	require.True(t, ss.Next())
	require.Equal(t, `{__name__="up", job="node"}`, ss.At().Labels().String())
	require.False(t, ss.Next())
}

// values returns the set of values of the series named name.
func values(t *testing.T, s *Storage, name string) map[float64]bool {
	t.Helper()
	got := map[float64]bool{}
	for _, v := range samples(t, s, name) {
		got[v] = true
	}
	return got
}

// postVersion posts the series ts (their samples, labels and nothing else)
// as a remote-write 1.0 request, or as a 2.0 one if v2.
func postVersion(t *testing.T, h http.Handler, v2 bool, ts []prompb.TimeSeries) *httptest.ResponseRecorder {
	t.Helper()
	if !v2 {
		return post(t, h, v1Body(t, &prompb.WriteRequest{Timeseries: ts}), nil)
	}
	st := writev2.NewSymbolTable()
	var req writev2.Request
	for _, s := range ts {
		b := labels.NewScratchBuilder(len(s.Labels))
		for _, l := range s.Labels {
			b.Add(l.Name, l.Value)
		}
		b.Sort()
		e := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(b.Labels(), nil)}
		for _, smp := range s.Samples {
			e.Samples = append(e.Samples, writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		for _, ex := range s.Exemplars {
			b.Reset()
			for _, l := range ex.Labels {
				b.Add(l.Name, l.Value)
			}
			b.Sort()
			e.Exemplars = append(e.Exemplars, writev2.Exemplar{LabelsRefs: st.SymbolizeLabels(b.Labels(), nil), Value: ex.Value, Timestamp: ex.Timestamp})
		}
		for _, hp := range s.Histograms {
			if hp.IsFloatHistogram() {
				e.Histograms = append(e.Histograms, writev2.FromFloatHistogram(0, hp.Timestamp, hp.ToFloatHistogram()))
			} else {
				e.Histograms = append(e.Histograms, writev2.FromIntHistogram(0, hp.Timestamp, hp.ToIntHistogram()))
			}
		}
		req.Timeseries = append(req.Timeseries, e)
	}
	req.Symbols = st.Symbols()
	raw, err := proto.Marshal(&req)
	require.NoError(t, err)
	return postV2(t, h, raw)
}

// decodingPaths are the write handler's four ways through a request: 1.0 or
// 2.0, each fast or generic.
var decodingPaths = []struct {
	name        string
	v2, generic bool
}{{"1.0 fast", false, false}, {"1.0 generic", false, true}, {"2.0 fast", true, false}, {"2.0 generic", true, true}}
