package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"
)

// shardedRemoteWrite returns the remote_write section of the Kubernetes
// sharded overlay, cut to two shards writing to urls: the same relabelling
// users deploy (drop omen's outputs and its own job, hashmod over
// namespace, job and instance, keep one shard), only the modulus and the
// URLs change, and the send deadline is shortened for the test.
func shardedRemoteWrite(t *testing.T, urls ...string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "kubernetes", "overlays", "sharded", "prometheus-remote-write.yml"))
	require.NoError(t, err)
	var doc struct {
		RemoteWrite []map[string]any `yaml:"remote_write"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	require.GreaterOrEqual(t, len(doc.RemoteWrite), len(urls))
	var out []map[string]any
	for i, u := range urls {
		rw := doc.RemoteWrite[i]
		rw["url"] = u + "/api/v1/write"
		found := false
		for _, rc := range rw["write_relabel_configs"].([]any) {
			m := rc.(map[any]any)
			if m["action"] == "hashmod" {
				m["modulus"] = len(urls)
				found = true
			}
		}
		require.True(t, found, "entry %d has no hashmod", i)
		rw["queue_config"] = map[string]any{"batch_send_deadline": "1s", "max_shards": 2, "min_backoff": "100ms", "max_backoff": "1s"}
		out = append(out, rw)
	}
	return out
}

// seriesSet returns the series matching sel on base's /api/v1/series, as
// sorted label strings.
func seriesSet(t *testing.T, base, sel string, start time.Time) ([]string, error) {
	t.Helper()
	data, err := apiGet(t, base, "/api/v1/series", url.Values{"match[]": {sel}, "start": {fmt.Sprint(start.Unix())}})
	if err != nil {
		return nil, err
	}
	var list []map[string]string
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list))
	for _, m := range list {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%q,", k, m[k])
		}
		out = append(out, b.String())
	}
	slices.Sort(out)
	return out, nil
}

// TestShardedByHashmod runs two omen instances behind the real Prometheus
// with the sharded overlay's relabelling: each receives a disjoint half of
// the series, whole targets at a time, and together they hold exactly the
// series Prometheus has.
func TestShardedByHashmod(t *testing.T) {
	need(t, "prometheus")
	shards := []*proc{startOmen(t, ""), startOmen(t, "")}
	rws := shardedRemoteWrite(t, shards[0].URL, shards[1].URL)
	prom := startPrometheus(t, func(addr string) string {
		cfg := map[string]any{
			"global": map[string]any{"scrape_interval": "1s"},
			"scrape_configs": []any{
				// Prometheus itself: one target, so one shard gets all of it.
				map[string]any{"job_name": "prometheus", "static_configs": []any{map[string]any{"targets": []string{addr}}}},
				// omen's own metrics are dropped by the relabelling.
				map[string]any{"job_name": "omen", "static_configs": []any{map[string]any{"targets": []string{shards[0].Addr, shards[1].Addr}}}},
			},
			"remote_write": rws,
		}
		b, err := yaml.Marshal(cfg)
		require.NoError(t, err)
		return string(b)
	}, "--web.enable-remote-write-receiver")

	// Series of 48 targets (4 namespaces × 3 jobs × 4 instances), 5 metrics
	// each, pushed into Prometheus, which forwards them like scraped ones.
	start := time.Now().Add(-time.Minute)
	push := func(ms int64) {
		req := &prompb.WriteRequest{}
		for ns := range 4 {
			for job := range 3 {
				for inst := range 4 {
					for m := range 5 {
						req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
							Labels: []prompb.Label{
								{Name: "__name__", Value: fmt.Sprintf("shard_test_metric_%d", m)},
								{Name: "instance", Value: fmt.Sprintf("10.0.%d.%d:9100", job, inst)},
								{Name: "job", Value: fmt.Sprintf("job-%d", job)},
								{Name: "namespace", Value: fmt.Sprintf("ns-%d", ns)},
							},
							Samples: []prompb.Sample{{Timestamp: ms, Value: float64(m)}},
						})
					}
				}
			}
		}
		code, body := remoteWriteV1(t, prom.URL, req)
		require.Equal(t, 204, code, body)
	}
	const pushed = 4 * 3 * 4 * 5
	push(time.Now().UnixMilli())

	sel := `{__name__=~"shard_test_metric_.*"}`
	var all []string
	var halves [2][]string
	var last string
	waitFor(t, 60*time.Second, "both shards to hold the pushed series", func() bool {
		push(time.Now().UnixMilli()) // keep samples flowing while Prometheus starts sending
		var err error
		if all, err = seriesSet(t, prom.URL, sel, start); err != nil {
			last = err.Error()
			return false
		}
		for i, s := range shards {
			if halves[i], err = seriesSet(t, s.URL, sel, start); err != nil {
				last = err.Error()
				return false
			}
		}
		last = fmt.Sprintf("prometheus %d, shards %d + %d", len(all), len(halves[0]), len(halves[1]))
		return len(all) == pushed && len(halves[0])+len(halves[1]) >= pushed
	})
	t.Log("pushed series:", last)
	require.NotEmpty(t, halves[0], "shard 0 got nothing")
	require.NotEmpty(t, halves[1], "shard 1 got nothing")
	for _, s := range halves[0] {
		require.NotContains(t, halves[1], s, "a series reached both shards")
	}
	union := slices.Concat(halves[0], halves[1])
	slices.Sort(union)
	require.Equal(t, all, union, "the shards together hold exactly Prometheus's series")
	// Whole targets go to one shard: a target's metrics are never split.
	owner := map[string]int{}
	for i, h := range halves {
		for _, s := range h {
			target := s[strings.Index(s, "instance="):]
			if o, ok := owner[target]; ok {
				require.Equal(t, o, i, "target %s split across shards", target)
			}
			owner[target] = i
		}
	}
	require.Len(t, owner, 48)

	// Prometheus's self-scrape is one target: all of it on one shard, the
	// same number of series as Prometheus holds at the same instant (but
	// those the remote_write drops as moved by omen's own alerts or by its
	// link to omen), and
	// none of omen's own metrics (job="omen") reach either shard.
	waitFor(t, 60*time.Second, "Prometheus's own series on one shard", func() bool {
		at := time.Now().Add(-5 * time.Second)
		// omen's outputs carry for=<input>
		q := `count({__name__=~".+", __name__!~"prometheus_notifications_.+|prometheus_template_text_expansions_total", rule_group!~".*;omen-.+", remote_name!~"omen(-[0-9]+)?", consumer!~"omen(-[0-9]+)?", dialer_name!~"omen|serviceMonitor/.+/omen/[0-9]+|remote_storage_(read|write)_client|alertmanager", job="prometheus", for=""})`
		p, err := query(t, prom.URL, q, at)
		if err != nil || len(p) != 1 {
			last = fmt.Sprintf("prometheus %v %v", p, err)
			return false
		}
		var got []float64
		for _, s := range shards {
			o, err := query(t, s.URL, q, at)
			if err != nil {
				last = err.Error()
				return false
			}
			if len(o) == 1 {
				got = append(got, o[0].F())
			}
		}
		last = fmt.Sprintf("prometheus %g, shards %v", p[0].F(), got)
		return p[0].F() > 100 && len(got) == 1 && got[0] == p[0].F()
	})
	t.Log("self-scrape:", last)
	p, err := query(t, prom.URL, `count({job="omen"})`, time.Time{})
	require.NoError(t, err)
	require.Len(t, p, 1, "Prometheus scrapes the shards' own metrics")
	for _, s := range shards {
		o, err := query(t, s.URL, `count({job="omen"})`, time.Time{})
		require.NoError(t, err)
		require.Empty(t, o, "omen's own metrics must not be written to a shard")
	}
}
