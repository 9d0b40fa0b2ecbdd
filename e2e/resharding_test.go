package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"
)

// reshardAt is the value of the resharding test's series at t (unix ms): a
// slow sine, the same in the history and live.
func reshardAt(i int, ms int64) float64 {
	return 20 + float64(i) + 5*math.Sin(2*math.Pi*float64(ms)/3_600_000)
}

// TestReshardingToVictoriaMetrics goes from one omen shard to two behind
// the real Prometheus 2.42, with the sharded overlay's relabelling, both
// shards forwarding to the real VictoriaMetrics and warming new series
// from Prometheus (--backfill.remote-read-url, as the overlay sets it):
//   - the series that move to the new shard, which has no history of
//     them, are ready there once their history is read, with no warm-up
//     of 64 samples of their own;
//   - upstream, each moved output series is one series with every sample
//     either shard stored, each timestamp once: Prometheus stops the old
//     queues before it starts the new, so the two shards never score one
//     series at the same time, and the shard that lost it forwards nothing
//     more for it (no conflicting samples, no staleness marker among the
//     new shard's).
func TestReshardingToVictoriaMetrics(t *testing.T) {
	promtool := need(t, "promtool")
	need(t, "prometheus")
	vm := startVictoriaMetrics(t, filepath.Join(t.TempDir(), "vm"), freePort(t))

	// Two hours at 10 s of 8 targets, ending a minute ago, as
	// Prometheus's own blocks.
	const targets = 8
	const step = 10 * time.Second
	inst := func(i int) string { return fmt.Sprintf("10.0.0.%d:9100", i) }
	end := time.Now().Add(-time.Minute).Truncate(step)
	var om bytes.Buffer
	om.WriteString("# TYPE reshard_temp gauge\n")
	for i := range targets {
		for tm := end.Add(-2 * time.Hour); !tm.After(end); tm = tm.Add(step) {
			fmt.Fprintf(&om, "reshard_temp{instance=%q,job=\"reshard\",namespace=\"ns\"} %g %d\n", inst(i), reshardAt(i, tm.UnixMilli()), tm.Unix())
		}
	}
	om.WriteString("# EOF\n")
	dir := t.TempDir()
	omFile, data := filepath.Join(dir, "history.om"), filepath.Join(dir, "data")
	require.NoError(t, os.WriteFile(omFile, om.Bytes(), 0o644))
	out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", omFile, data).CombinedOutput()
	require.NoError(t, err, string(out))

	promPort := freePort(t)
	readURL := "http://127.0.0.1:" + strconv.Itoa(promPort) + "/api/v1/read"
	shards := make([]*proc, 2)
	for i := range shards {
		shards[i] = startOmen(t, "", "--remote-write.url="+vm.URL+"/api/v1/write", "--backfill.remote-read-url="+readURL, "--output.tsdb-interval=0s")
	}
	promCfg := func(urls ...string) string {
		b, err := yaml.Marshal(map[string]any{"remote_write": shardedRemoteWrite(t, urls...)})
		require.NoError(t, err)
		return string(b)
	}
	prom := startPrometheusAt(t, data, promPort, func(string) string { return promCfg(shards[0].URL) }, "--web.enable-remote-write-receiver")

	n := 0
	push := func() {
		ms := time.Now().UnixMilli()
		req := &prompb.WriteRequest{}
		for i := range targets {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels: []prompb.Label{
					{Name: "__name__", Value: "reshard_temp"}, {Name: "instance", Value: inst(i)},
					{Name: "job", Value: "reshard"}, {Name: "namespace", Value: "ns"},
				},
				Samples: []prompb.Sample{{Timestamp: ms, Value: reshardAt(i, ms)}},
			})
		}
		code, body := remoteWriteV1(t, prom.URL, req)
		require.Equal(t, http.StatusNoContent, code, body)
		n++
	}
	// ready returns the instances of the series omen at base scores with a
	// ready model, and of all it scores.
	ready := func(base string) (ok, all []string) {
		for _, a := range anomaliesOf(t, base, "reshard_temp") {
			all = append(all, a.Labels["instance"])
			if a.Ready {
				ok = append(ok, a.Labels["instance"])
			}
		}
		return ok, all
	}

	// One shard: it scores every series, warmed from Prometheus.
	var last string
	waitFor(t, 90*time.Second, "shard 0 to score every series, warm", func() bool {
		push()
		ok, all := ready(shards[0].URL)
		last = fmt.Sprintf("ready %d of %d", len(ok), len(all))
		return len(ok) == targets && metricsGauge(t, shards[0].URL, "omen_warm_start_remote_read_pending", "") == 0
	})
	t.Log("one shard:", last)

	// Two shards: the configuration the overlay's file gives for 2, and a
	// reload.
	args := prom.cmd.Args
	var cfgFile string
	for _, a := range args {
		if f, ok := strings.CutPrefix(a, "--config.file="); ok {
			cfgFile = f
		}
	}
	require.NotEmpty(t, cfgFile)
	require.NoError(t, os.WriteFile(cfgFile, []byte(promCfg(shards[0].URL, shards[1].URL)), 0o644))
	require.NoError(t, prom.cmd.Process.Signal(syscall.SIGHUP))
	var moved []string
	waitFor(t, 90*time.Second, "the moved series warm at shard 1", func() bool {
		push()
		ok, all := ready(shards[1].URL)
		moved = all
		last = fmt.Sprintf("ready %d of %d, history reads pending %g", len(ok), len(all), metricsGauge(t, shards[1].URL, "omen_warm_start_remote_read_pending", ""))
		return len(all) > 0 && len(ok) == len(all) && metricsGauge(t, shards[1].URL, "omen_warm_start_remote_read_pending", "") == 0
	})
	t.Log("shard 1:", last, moved)
	require.Less(t, len(moved), targets, "every series moved")
	// Their history replayed: ready from Prometheus's, not from 64
	// samples of their own.
	warmed := metricsGauge(t, shards[1].URL, "omen_warm_start_samples_total", "")
	require.GreaterOrEqual(t, warmed, float64(len(moved)*64), "shard 1 replayed the moved series' history")
	for range 20 {
		push()
		time.Sleep(100 * time.Millisecond)
	}

	// Upstream: every stored sample of each moved series, from one shard
	// or the other, once.
	counts := func(base, instance string) float64 {
		v, err := query(t, base, fmt.Sprintf(`count_over_time(anomaly_score{for="reshard_temp",instance=%q}[30m])`, instance), time.Now())
		if err != nil || len(v) != 1 {
			return 0
		}
		return v[0].F()
	}
	for _, in := range moved {
		var a, b, got float64
		waitFor(t, 60*time.Second, "every output of "+in+" in VictoriaMetrics", func() bool {
			a, b, got = counts(shards[0].URL, in), counts(shards[1].URL, in), counts(vm.URL, in)
			return a > 0 && b > 0 && got == a+b
		})
		t.Logf("%s: shard 0 stored %g scores, shard 1 %g, VictoriaMetrics holds %g", in, a, b, got)
		ts := exportTimestamps(t, vm.URL, fmt.Sprintf(`anomaly_score{for="reshard_temp",instance=%q}`, in))
		require.Len(t, ts, int(a+b), "%s: VictoriaMetrics's raw samples", in)
		for i := 1; i < len(ts); i++ {
			require.Greater(t, ts[i], ts[i-1], "%s: two samples at one time (both shards scored it)", in)
		}
	}
}

// exportTimestamps returns the timestamps of the raw samples VictoriaMetrics
// holds for the one series match selects over the last hour, in order.
func exportTimestamps(t *testing.T, base, match string) []int64 {
	t.Helper()
	q := url.Values{"match[]": {match}, "start": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}}
	resp, err := http.Get(base + "/api/v1/export?" + q.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var ts []int64
	lines := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var row struct {
			Timestamps []int64 `json:"timestamps"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &row))
		ts = append(ts, row.Timestamps...)
		lines++
	}
	require.NoError(t, sc.Err())
	require.Equal(t, 1, lines, "one series")
	return ts
}
