package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// vmBinary returns VictoriaMetrics' binary name (vmagent or victoria-metrics)
// as `make deps-vm` builds it into bin/, else from PATH; it skips the test
// when neither has it, or fails it under OMEN_E2E=1 (make test builds it).
func vmBinary(t testing.TB, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(filepath.Dir(file)), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("OMEN_E2E") == "1" {
		t.Fatalf("%s not found in bin/ or on PATH; make deps-vm builds it", name)
	}
	t.Skipf("%s not found in bin/ or on PATH (make deps-vm builds it; OMEN_E2E=1 makes this a failure)", name)
	return ""
}

// vmExporter serves a counter of two series and a gauge whose values are
// the number of the scrape, for limit scrapes; then it answers 503, so that
// the target is down and vmagent writes staleness markers for its series.
type vmExporter struct {
	mu    sync.Mutex
	n     int
	limit int
}

func (e *vmExporter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n >= e.limit {
		http.Error(w, "gone", http.StatusServiceUnavailable)
		return
	}
	e.n++
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# HELP vmtest_requests_total Requests served.\n# TYPE vmtest_requests_total counter\n")
	fmt.Fprintf(w, "vmtest_requests_total{path=\"/a\"} %d\nvmtest_requests_total{path=\"/b\"} %d\n", e.n, 2*e.n)
	fmt.Fprintf(w, "# HELP vmtest_temperature_celsius Temperature.\n# TYPE vmtest_temperature_celsius gauge\n")
	fmt.Fprintf(w, "vmtest_temperature_celsius %d\n", e.n)
}

func (e *vmExporter) served() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

// startVMAgent starts vmagent scraping target every second and
// remote-writing to omen with its defaults (the VictoriaMetrics protocol
// first, which it drops to Prometheus's when refused), and waits until it
// is ready.
func startVMAgent(t testing.TB, target, omenURL string, extra ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "scrape.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: vmtest
    static_configs: [{targets: ['%s']}]
`, target)), 0o644))
	port := freePort(t)
	args := append([]string{
		"-httpListenAddr=127.0.0.1:" + strconv.Itoa(port),
		"-promscrape.config=" + cfg,
		"-remoteWrite.url=" + omenURL + "/api/v1/write",
		"-remoteWrite.tmpDataPath=" + filepath.Join(dir, "queue"),
		// The retry backoff starts at 1s and doubles up to 1m by default:
		// a test must not wait a minute for a refused block.
		"-remoteWrite.retryMaxTime=2s",
	}, extra...)
	p := start(t, "vmagent", port, vmBinary(t, "vmagent"), args...)
	p.WaitReady(60 * time.Second)
	return p
}

// vmMetrics reads the sum of each metric family on a VictoriaMetrics
// component's /metrics, by name and by name{labels}.
func vmMetrics(t testing.TB, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		out[series] += v
		if j := strings.IndexByte(series, '{'); j >= 0 {
			out[series[:j]] += v
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// vmagentStatus sums vmagent's remote-write requests answered with code
// (vmagent_remotewrite_requests_total{status_code=...}).
func vmagentStatus(m map[string]float64, code string) float64 {
	var n float64
	for k, v := range m {
		if strings.HasPrefix(k, "vmagent_remotewrite_requests_total{") && strings.Contains(k, `status_code="`+code+`"`) {
			n += v
		}
	}
	return n
}

// requireVMAgentDelivered checks that omen holds every sample vmagent
// scraped from e (limit scrapes, numbered 1..limit, each once), that the
// series went stale when the target went down, and that vmagent dropped
// nothing and has nothing left to send.
func requireVMAgentDelivered(t *testing.T, omenURL string, agent *proc, e *vmExporter) {
	t.Helper()
	waitFor(t, 90*time.Second, "every scrape served", func() bool { return e.served() == e.limit })
	// The scrape after the last one fails: up is 0 and the series are
	// marked stale, so an instant query finds none of them.
	waitFor(t, 60*time.Second, "the target down and its series stale in omen", func() bool {
		up, err := query(t, omenURL, `up{job="vmtest"}`, time.Time{})
		if err != nil || len(up) != 1 || up[0].F() != 0 {
			return false
		}
		live, err := query(t, omenURL, `{__name__=~"vmtest_.*"}`, time.Time{})
		return err == nil && len(live) == 0
	})
	// The failing scrapes go on (up=0 each second): vmagent's queue
	// empties between its flushes.
	waitFor(t, 30*time.Second, "vmagent's queue empty", func() bool {
		return vmMetrics(t, agent.URL)["vmagent_remotewrite_pending_data_bytes"] == 0
	})
	require.Zero(t, vmMetrics(t, agent.URL)["vmagent_remotewrite_packets_dropped_total"], "vmagent dropped blocks omen refused")

	n := float64(e.limit)
	rng := "[5m]"
	for _, c := range []struct {
		q           string
		count, sum  float64
		description string
	}{
		{`vmtest_requests_total{path="/a"}`, n, n * (n + 1) / 2, "counter /a"},
		{`vmtest_requests_total{path="/b"}`, n, n * (n + 1), "counter /b"},
		{`vmtest_temperature_celsius`, n, n * (n + 1) / 2, "gauge"},
	} {
		// Range selectors skip staleness markers: these are the scraped
		// values, each once.
		cnt, err := query(t, omenURL, "count_over_time("+c.q+rng+")", time.Time{})
		require.NoError(t, err)
		require.Len(t, cnt, 1, c.description)
		require.Equal(t, c.count, cnt[0].F(), "%s: samples in omen", c.description)
		sum, err := query(t, omenURL, "sum_over_time("+c.q+rng+")", time.Time{})
		require.NoError(t, err)
		require.Len(t, sum, 1, c.description)
		require.Equal(t, c.sum, sum[0].F(), "%s: every value, each once", c.description)
	}
	// vmagent's own series of the scrapes: up is 1 for each that
	// succeeded (and 0 for each failed one since).
	ups, err := query(t, omenURL, `sum_over_time(up{job="vmtest"}`+rng+`)`, time.Time{})
	require.NoError(t, err)
	require.Len(t, ups, 1)
	require.Equal(t, n, ups[0].F(), "up=1 samples in omen")
}

// vmagentOOOWindow is the out-of-order window the README asks of vmagent's
// users. vmagent sends a target's blocks on 2 × CPUs queues at once, and
// one retried (after a 503, or re-packed after its first 415) reaches omen
// after a later block of the same series: without a window its samples are
// out of order, answered 400 (as Prometheus's receiver does), and vmagent
// drops the block. Without it this test lost a block in 3 of 4 runs on a
// busy machine (vmagent_remotewrite_packets_dropped_total 1).
const vmagentOOOWindow = "--storage.tsdb.out-of-order-time-window=10m"

// TestVMAgentRemoteWrite: the real vmagent scrapes an exporter and
// remote-writes to omen with its defaults. vmagent first sends the
// VictoriaMetrics protocol (the same WriteRequest, zstd-compressed), which
// omen refuses with 415; vmagent then re-packs that block to snappy,
// resends it, and speaks Prometheus's protocol from then on. omen must end
// up with every scraped sample (the first ones too), score the inputs, store
// vmagent's staleness markers and its metadata, and vmagent must have
// dropped nothing. omen has the out-of-order window the README asks of
// vmagent's users (see vmagentOOOWindow).
func TestVMAgentRemoteWrite(t *testing.T) {
	omen := startOmen(t, "", "--output.tsdb-interval=0s", vmagentOOOWindow)
	e := &vmExporter{limit: 15}
	exp := httptest.NewServer(e)
	t.Cleanup(exp.Close)
	agent := startVMAgent(t, strings.TrimPrefix(exp.URL, "http://"), omen.URL)

	// Scored while the target is up: a gauge as it is, a counter as a rate.
	waitFor(t, 60*time.Second, "the inputs scored", func() bool {
		g, err1 := query(t, omen.URL, `anomaly_score{for="vmtest_temperature_celsius"}`, time.Time{})
		c, err2 := query(t, omen.URL, `anomaly_score{for="vmtest_requests_total"}`, time.Time{})
		return err1 == nil && err2 == nil && len(g) == 1 && len(c) == 2
	})
	kinds := string(metricsText(t, omen.URL))
	require.Contains(t, kinds, `kind="counter"`)
	require.Regexp(t, `omen_model_ready\{[^}]*for="vmtest_requests_total"[^}]*kind="counter"`, kinds)

	requireVMAgentDelivered(t, omen.URL, agent, e)

	m := vmMetrics(t, agent.URL)
	t.Logf("vmagent: %v requests answered 415 (its protocol refused, the block re-packed and resent), %v 2XX, %v retries",
		vmagentStatus(m, "415"), vmagentStatus(m, "2XX"), m["vmagent_remotewrite_retries_count_total"])
	require.Positive(t, vmagentStatus(m, "415"), "vmagent never tried its own protocol: the negotiation was not tested")
	require.Positive(t, vmagentStatus(m, "2XX"))

	// vmagent sends the families' metadata with the samples.
	md, err := apiGet(t, omen.URL, "/api/v1/metadata", nil)
	require.NoError(t, err)
	require.Contains(t, string(md), `"vmtest_requests_total":[{"type":"counter","help":"Requests served."`)
	require.Contains(t, string(md), `"vmtest_temperature_celsius":[{"type":"gauge","help":"Temperature."`)
}

// TestVMAgentRetriesOverload: omen answers 503 with Retry-After when its
// remote-write slots are taken (here one slot, kept busy by large writes of
// other series); vmagent must retry those blocks, not drop them.
func TestVMAgentRetriesOverload(t *testing.T) {
	omen := startOmen(t, "", "--write.max-inflight-requests=1", vmagentOOOWindow)
	e := &vmExporter{limit: 15}
	exp := httptest.NewServer(e)
	t.Cleanup(exp.Close)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k := range 3 {
		wg.Go(func() { floodOmen(omen.URL, k, stop) })
	}
	stopped := false
	stopFlood := func() {
		if !stopped {
			close(stop)
			wg.Wait()
			stopped = true
		}
	}
	t.Cleanup(stopFlood)

	agent := startVMAgent(t, strings.TrimPrefix(exp.URL, "http://"), omen.URL)
	waitFor(t, 60*time.Second, "vmagent refused with 503", func() bool {
		return vmagentStatus(vmMetrics(t, agent.URL), "503") > 0
	})
	stopFlood()
	requireVMAgentDelivered(t, omen.URL, agent, e)
	require.Positive(t, vmMetrics(t, agent.URL)["vmagent_remotewrite_retries_count_total"])
}

// floodOmen remote-writes requests of 20,000 samples of its own series
// (omen_-prefixed, so not scored) to base until stop is closed, ignoring
// the answers: it keeps omen's write slots busy.
func floodOmen(base string, k int, stop <-chan struct{}) {
	t0 := time.Now().Add(-30 * time.Minute).UnixMilli()
	name := fmt.Sprintf("omen_e2e_vmflood_%d", k)
	for round := int64(0); ; round++ {
		select {
		case <-stop:
			return
		default:
		}
		var req prompb.WriteRequest
		for s := range 200 {
			ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}, {Name: "s", Value: strconv.Itoa(s)}}}
			for i := range int64(100) {
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t0 + (round*100+i)*10, Value: float64(i)})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		raw, err := proto.Marshal(&req)
		if err != nil {
			panic(err)
		}
		r, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
		if err != nil {
			panic(err)
		}
		r.Header.Set("Content-Encoding", "snappy")
		r.Header.Set("Content-Type", "application/x-protobuf")
		if resp, err := http.DefaultClient.Do(r); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// startVictoriaMetrics starts the single-node VictoriaMetrics with its
// storage in dir on port and waits until it is ready. Queries see the
// newest samples (no 30s latency offset) and are not cached, so a test
// reads what is stored.
func startVictoriaMetrics(t testing.TB, dir string, port int) *proc {
	t.Helper()
	p := start(t, "victoria-metrics", port, vmBinary(t, "victoria-metrics"),
		"-httpListenAddr=127.0.0.1:"+strconv.Itoa(port), "-storageDataPath="+dir,
		"-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=WARN")
	p.WaitReady(60 * time.Second)
	return p
}

// seriesOf returns the label sets /api/v1/series finds for match over the
// last 10 minutes, each as a sorted string.
func seriesOf(t testing.TB, base, match string) []string {
	t.Helper()
	now := time.Now()
	data, err := apiGet(t, base, "/api/v1/series", url.Values{"match[]": {match},
		"start": {strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(now.Add(time.Minute).Unix(), 10)}})
	if err != nil {
		t.Logf("series of %s at %s: %v", match, base, err)
		return nil
	}
	var sets []map[string]string
	require.NoError(t, json.Unmarshal(data, &sets))
	out := make([]string, 0, len(sets))
	for _, s := range sets {
		out = append(out, labels.FromMap(s).String())
	}
	sort.Strings(out)
	return out
}

// TestForwardToVictoriaMetrics forwards omen's outputs to the real
// single-node VictoriaMetrics's /api/v1/write with the configuration
// file's remote_write, as TestForwardToPrometheus does to Prometheus, and
// takes it down for a while: once it is back it holds every output omen
// stored, sample for sample, with the labels omen gave them (the for label,
// a UTF-8 value).
func TestForwardToVictoriaMetrics(t *testing.T) {
	vmDir, vmPort := filepath.Join(t.TempDir(), "vm"), freePort(t)
	vm := startVictoriaMetrics(t, vmDir, vmPort)
	cfg := filepath.Join(t.TempDir(), "omen.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`remote_write:
  - url: %s/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
`, vm.URL)), 0o644))
	omen := startOmen(t, "", "--config.file="+cfg, "--output.tsdb-interval=0s")

	instances := []string{"a", "zürich-1", "b"}
	var n int
	write := func(rounds int) {
		for range rounds {
			now := time.Now().UnixMilli()
			req := &prompb.WriteRequest{}
			for s, inst := range instances {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  []prompb.Label{{Name: "__name__", Value: "vmfwd_temperature"}, {Name: "instance", Value: inst}},
					Samples: []prompb.Sample{{Timestamp: now, Value: 100 + 10*math.Sin(float64(n)/5) + float64(s)}},
				})
			}
			code, body := remoteWriteV1(t, omen.URL, req)
			require.Equal(t, 204, code, body)
			n++
			time.Sleep(50 * time.Millisecond)
		}
	}
	byInstance := func(base, q string) map[string]float64 {
		out := map[string]float64{}
		vs, err := query(t, base, q, time.Now())
		if err != nil {
			t.Logf("%s at %s: %v", q, base, err)
			return out
		}
		for _, v := range vs {
			out[v.Metric["instance"]] = v.F()
		}
		return out
	}
	write(40)
	const scores = `count_over_time(anomaly_score{for="vmfwd_temperature"}[10m])`
	waitFor(t, 60*time.Second, "the first scores in VictoriaMetrics", func() bool { return len(byInstance(vm.URL, scores)) == len(instances) })

	// VictoriaMetrics goes away while omen keeps scoring, and comes back.
	vm.Stop()
	write(60)
	vm = startVictoriaMetrics(t, vmDir, vmPort)
	write(10)

	want := byInstance(omen.URL, scores)
	require.Len(t, want, len(instances))
	for _, c := range want {
		require.Equal(t, float64(n), c, "omen scored every sample")
	}
	for _, fam := range []string{"anomaly_score", "yhat", "yhat_lower", "yhat_upper"} {
		q := `count_over_time(` + fam + `{for="vmfwd_temperature"}[10m])`
		waitFor(t, 90*time.Second, "every "+fam+" in VictoriaMetrics", func() bool {
			got, want := byInstance(vm.URL, q), byInstance(omen.URL, q)
			return len(want) == len(instances) && fmt.Sprint(got) == fmt.Sprint(want)
		})
	}
	// The same values, not only as many: to 12 digits, as VictoriaMetrics
	// stores a float as a decimal mantissa and exponent and sums in
	// another order (measured: 8.440695147961378 in omen, ...069 there).
	const sum = `sum_over_time(anomaly_score{for="vmfwd_temperature"}[10m])`
	sums := byInstance(vm.URL, sum)
	require.Len(t, sums, len(instances))
	for inst, s := range byInstance(omen.URL, sum) {
		require.InDelta(t, s, sums[inst], 1e-12*math.Max(1, math.Abs(s)), inst)
	}
	require.Empty(t, byInstance(vm.URL, `count_over_time(vmfwd_temperature[10m])`), "inputs are not forwarded")

	// Every output series with the labels omen stored it with.
	const outputs = `{for="vmfwd_temperature"}`
	var got, stored []string
	waitFor(t, 30*time.Second, "the same output series in VictoriaMetrics", func() bool {
		got, stored = seriesOf(t, vm.URL, outputs), seriesOf(t, omen.URL, outputs)
		return len(stored) > 0 && slices.Equal(stored, got)
	})
	require.Contains(t, strings.Join(got, "\n"), `instance="zürich-1"`)
}

// TestBackfillFromVictoriaMetrics: --backfill.remote-read-url at
// VictoriaMetrics, which has no Prometheus remote-read API (it answers
// 400 "unsupported path requested"). omen starts, scores its new series
// from local history alone, and says once why their history is not read
// and what to do.
func TestBackfillFromVictoriaMetrics(t *testing.T) {
	vm := startVictoriaMetrics(t, filepath.Join(t.TempDir(), "vm"), freePort(t))
	omen := startOmen(t, "", "--backfill.remote-read-url="+vm.URL+"/api/v1/read")
	for i := range 5 {
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "vmread_temperature"}, {Name: "instance", Value: "a"}},
			Samples: []prompb.Sample{{Timestamp: time.Now().Add(time.Duration(i-5) * time.Second).UnixMilli(), Value: float64(20 + i)}},
		}}}
		code, body := remoteWriteV1(t, omen.URL, req)
		require.Equal(t, http.StatusNoContent, code, body)
	}
	const explained = "The upstream does not serve Prometheus remote read (VictoriaMetrics has no remote-read API)"
	waitFor(t, 60*time.Second, "the warning that the upstream has no remote read", func() bool { return omen.logContains(explained) })
	waitFor(t, 30*time.Second, "the series scored", func() bool {
		res, err := query(t, omen.URL, `anomaly_score{for="vmread_temperature"}`, time.Time{})
		return err == nil && len(res) == 1
	})
	b, err := os.ReadFile(omen.log)
	require.NoError(t, err)
	require.Equal(t, 1, bytes.Count(b, []byte(explained)))
	require.NotContains(t, string(b), "reads pause", "the generic warning instead")
}
