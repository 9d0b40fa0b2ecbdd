package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestOutputsKeepTheirOrigin: the real Prometheus scrapes omen with the
// shipped scrape configuration (honor_labels). It fills every label a
// scraped series lacks from omen's target, so the outputs of a recording
// rule's series (no instance) took omen's instance, and those of a series
// with no job omen's job="omen": the alerts' annotations and the series
// dashboard then looked for an input that is not there. omen exposes the
// missing ones empty, which keeps them out; its own metrics keep the
// target's job and instance, and have omen_instance.
func TestOutputsKeepTheirOrigin(t *testing.T) {
	need(t, "prometheus")
	omen := startOmen(t, "")
	now := time.Now()
	var req prompb.WriteRequest
	for _, ls := range [][]prompb.Label{
		{{Name: "__name__", Value: "job:requests:rate5m"}, {Name: "job", Value: "api"}},
		{{Name: "__name__", Value: "cluster:cpu:ratio"}, {Name: "cluster", Value: "c1"}},
		{{Name: "__name__", Value: "node_load1"}, {Name: "instance", Value: "n1:9100"}, {Name: "job", Value: "node"}},
	} {
		ts := prompb.TimeSeries{Labels: ls}
		for i := range 10 {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: now.Add(time.Duration(i-10) * time.Second).UnixMilli(), Value: float64(i)})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	code, body := remoteWriteV1(t, omen.URL, &req)
	require.Equal(t, http.StatusNoContent, code, body)

	shipped, err := os.ReadFile("../deploy/prometheus/scrape.yml")
	require.NoError(t, err)
	cfg := strings.NewReplacer("omen:9201", omen.Addr, "scrape_interval: 30s", "scrape_interval: 1s", "scrape_timeout: 25s", "scrape_timeout: 1s").Replace(string(shipped))
	require.Contains(t, cfg, omen.Addr)
	prom := startPrometheus(t, func(string) string { return cfg })

	want := map[string]map[string]string{
		"job:requests:rate5m": {"job": "api"},
		"cluster:cpu:ratio":   {"cluster": "c1"},
		"node_load1":          {"job": "node", "instance": "n1:9100"},
	}
	waitFor(t, 60*time.Second, "omen_model_ready in Prometheus", func() bool {
		res, err := query(t, prom.URL, "omen_model_ready", time.Time{})
		return err == nil && len(res) == len(want)
	})
	res, err := query(t, prom.URL, "omen_model_ready", time.Time{})
	require.NoError(t, err)
	for _, s := range res {
		in := want[s.Metric["for"]]
		require.NotNil(t, in, "%v", s.Metric)
		got := map[string]string{}
		for k, v := range s.Metric {
			if k != "__name__" && k != "for" && k != "kind" {
				got[k] = v
			}
		}
		require.Equal(t, in, got, "omen_model_ready{for=%q}: the input's labels, none of omen's target", s.Metric["for"])
	}
	self, err := query(t, prom.URL, `omen_series_scored`, time.Time{})
	require.NoError(t, err)
	require.Len(t, self, 1)
	require.Equal(t, "omen", self[0].Metric["job"])
	require.Equal(t, omen.Addr, self[0].Metric["instance"])
	// And omen_instance, which Alertmanager's lag inhibition compares: on
	// omen's own metrics, not on the outputs beside their inputs (above).
	require.Equal(t, omen.Addr, self[0].Metric["omen_instance"])
}
