package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/loadgen"
)

// TestLoadgenEverySampleStored: what `omen loadgen` sends, remote-write 1.0
// and 2.0, is valid to the real receivers and stored sample for sample:
// Prometheus 3 (1.0 and 2.0, with and without start timestamps) and
// Debian's Prometheus 2.42 (1.0, what bench-ingest measures), at several
// samples per series per request and more workers than cores, nothing
// refused as out of order or too old. The count is Prometheus's own, over
// its query API.
func TestLoadgenEverySampleStored(t *testing.T) {
	for _, tc := range []struct {
		name            string
		prom3           bool
		protocol, sps   int
		startTimestamps bool
		extra           []string // Prometheus 3's flags
		zeros           bool     // start timestamps stored as zero samples
		backToBack      bool     // two runs of a second each
	}{
		{name: "prometheus3/v1", prom3: true, protocol: 1, sps: 1},
		{name: "prometheus3/v1/samples=4", prom3: true, protocol: 1, sps: 4},
		{name: "prometheus3/v2", prom3: true, protocol: 2, sps: 1},
		{name: "prometheus3/v2/samples=3/start timestamps", prom3: true, protocol: 2, sps: 3, startTimestamps: true},
		{name: "prometheus3/v2/start timestamps stored as zeros", prom3: true, protocol: 2, sps: 2, startTimestamps: true,
			extra: []string{"--enable-feature=created-timestamp-zero-ingestion"}, zeros: true},
		{name: "prometheus2/v1/samples=2", protocol: 1, sps: 2},
		{name: "prometheus3/v2/samples=3/back to back", prom3: true, protocol: 2, sps: 3, backToBack: true},
		{name: "prometheus2/v1/back to back", protocol: 1, sps: 1, backToBack: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := func(string) string { return "global:\n  scrape_interval: 1m\nscrape_configs: []\n" }
			var prom *proc
			if tc.prom3 {
				args := append([]string{"--web.enable-remote-write-receiver",
					"--web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest",
					"--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request"}, tc.extra...)
				prom = launchPrometheusBin(t, prometheus3(t), filepath.Join(t.TempDir(), "data"), freePort(t), cfg, args...)
				prom.WaitReady(60 * time.Second)
			} else {
				prom = startPrometheus(t, cfg, "--web.enable-remote-write-receiver")
			}
			const series, rounds = 600, 6
			opts := loadgen.Options{
				URL: prom.URL + "/api/v1/write", Protocol: tc.protocol, Series: series, SamplesPerSeries: tc.sps,
				Batch: 120, Concurrency: 8, Rounds: rounds, Warmup: true, StartTimestamps: tc.startTimestamps,
			}
			if tc.backToBack {
				// Two timed runs, one after the other, with many workers:
				// the second starts at the clock, after the first's rounds
				// ran ahead of it and stopped mid-round.
				opts.Concurrency, opts.Rounds, opts.Duration = 40, 0, time.Second
			}
			var sent int64
			for range 1 + btoi(tc.backToBack) {
				res, err := loadgen.Run(context.Background(), nil, opts)
				require.NoError(t, err)
				require.Empty(t, res.Warmup.Errors)
				require.Empty(t, res.Measured.Errors)
				sent += res.Warmup.Samples + res.Measured.Samples
				require.Equal(t, res.Warmup.Samples+res.Measured.Samples, res.Warmup.Accepted+res.Measured.Accepted)
			}
			if !tc.backToBack {
				require.EqualValues(t, series*tc.sps*(rounds+1), sent)
			}

			// Every sample, read back as a range vector (no function: 2.42
			// refuses count_over_time over series it leaves nameless). The
			// timestamps are at most 5 minutes past the clock (loadgen's
			// bound on a worker ahead of it); the window covers them all.
			data, err := apiGet(t, prom.URL, "/api/v1/query", url.Values{
				"query": {`{cluster!=""}[1h]`},
				"time":  {strconv.FormatInt(time.Now().Add(6*time.Minute).Unix(), 10)},
			})
			require.NoError(t, err)
			var matrix struct {
				Result []struct {
					Values [][2]any `json:"values"`
				} `json:"result"`
			}
			require.NoError(t, json.Unmarshal(data, &matrix))
			stored := 0
			for _, s := range matrix.Result {
				stored += len(s.Values)
			}
			require.Len(t, matrix.Result, series, "series stored")
			want := sent
			if tc.zeros {
				// One zero at the start timestamp before each counter's
				// first sample (counters: the families named so).
				for i := range series {
					ls := loadgen.SeriesLabels(i)
					for j := 0; j < len(ls); j += 2 {
						if ls[j] == "__name__" && (strings.HasSuffix(ls[j+1], "_total") || strings.HasSuffix(ls[j+1], "_sum")) {
							want++
						}
					}
				}
			}
			require.EqualValues(t, want, stored, "samples stored")
			m := familySums(t, prom.URL)
			require.Equal(t, float64(want), m["prometheus_tsdb_head_samples_appended_total"])
			for _, f := range []string{"prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total", "prometheus_tsdb_too_old_samples_total"} {
				if tc.zeros && f == "prometheus_tsdb_out_of_order_samples_total" {
					// Prometheus tries the start timestamp's zero again for
					// later samples that carry it and counts the refusal
					// (once a counter series here): its own, not the load's.
					require.LessOrEqual(t, m[f], float64(want-sent), f)
					continue
				}
				require.Zero(t, m[f], f)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
