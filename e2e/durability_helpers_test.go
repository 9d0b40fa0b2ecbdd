package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// ackWriter streams remote-write 1.0 requests the way Prometheus does, and
// remembers exactly what was acknowledged. Its series are split over
// workers; worker w owns series i with i%workers == w and sends one request
// per round carrying one sample of each of its series at t0+round*step. A
// round is retried until it is acknowledged (as Prometheus retries 5xx and
// connection errors), so the acknowledged rounds of a worker are always
// 0..acked[w]-1: that is the whole record the checker needs.
type ackWriter struct {
	name    string // metric name
	series  int
	workers int
	t0      int64 // ms
	step    int64 // ms
	rounds  int   // rounds per worker at most; 0: until stopped
	spr     int   // samples of each series per request; 0 means 1
	// interval, when non-zero, is the soak's rate limit: a worker sends
	// round r no earlier than interval*r after start (and catches up at
	// full speed when it is behind, as Prometheus does after an outage).
	interval time.Duration
	begun    time.Time
	// gate, when non-nil, holds every worker after it has built its first
	// request until it is closed, and built counts the workers that have.
	// Building the overload test's 48 bodies of 400,000 samples takes
	// seconds on a machine whose page faults are slow; without the gate
	// that time ate the overload window and nothing was sent in it.
	gate  chan struct{}
	built sync.WaitGroup

	url    atomic.Pointer[string]
	acked  []atomic.Int64 // per worker: rounds acknowledged
	sent   atomic.Int64   // requests sent, including retries
	refuse atomic.Int64   // 5xx answers
	retry  atomic.Int64   // 503s that carried Retry-After
	conn   atomic.Int64   // connection errors (omen down)
	bad    atomic.Value   // string: first 4xx, which must never happen

	cancel   context.CancelFunc
	draining atomic.Bool
	stopped  atomic.Bool // stop abandoned requests: one more round per worker may be stored
	wg       sync.WaitGroup
}

func newAckWriter(name string, series, workers int, t0, step int64) *ackWriter {
	return &ackWriter{name: name, series: series, workers: workers, t0: t0, step: step, spr: 1, acked: make([]atomic.Int64, workers)}
}

// value is the value of the n-th sample of series i (at t0+n*step): exact
// in a float64, so the read-back comparison is exact too.
func (w *ackWriter) value(i int, n int64) float64 { return float64(n*100000 + int64(i)) }

// ackedOf is the number of acknowledged samples of series i.
func (w *ackWriter) ackedOf(i int) int64 { return w.acked[i%w.workers].Load() * int64(w.spr) }

func (w *ackWriter) labels(i int) []prompb.Label {
	return []prompb.Label{{Name: "__name__", Value: w.name}, {Name: "series", Value: strconv.Itoa(i)}}
}

func (w *ackWriter) setURL(base string) { s := base + "/api/v1/write"; w.url.Store(&s) }

func (w *ackWriter) start(base string) {
	w.setURL(base)
	w.begun = time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	if w.gate != nil {
		w.built.Add(w.workers)
	}
	for k := 0; k < w.workers; k++ {
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.run(ctx, k) }()
	}
}

// open waits until every worker has built its first request, then lets
// them all send it.
func (w *ackWriter) open() {
	w.built.Wait()
	close(w.gate)
}

// stop ends the workers; a request in flight is abandoned (its outcome is
// not counted as acknowledged, as for a sender that gave up).
func (w *ackWriter) stop() {
	w.stopped.Store(true)
	w.cancel()
	w.wg.Wait()
}

// drain ends the workers after the round each one is on has been
// acknowledged, so that nothing was sent whose outcome is unknown.
func (w *ackWriter) drain() {
	w.draining.Store(true)
	w.wg.Wait()
	w.cancel()
}

// wait blocks until every worker has sent all its rounds. A 4xx ends the
// wait at once, with its reason.
func (w *ackWriter) wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "writer to send every round", func() bool {
		if bad := w.bad.Load(); bad != nil {
			t.Fatalf("writer refused: %s (%s)", bad, w)
		}
		return w.ackedSamples() == int64(w.series*w.rounds)
	})
}

// maxAhead bounds how many rounds a worker runs ahead of the slowest one.
// Workers running freely drifted apart by more than the head keeps in
// order: once a compaction moved the head's minimum time past a worker
// left behind (a slow machine, a restart), its samples were refused as too
// old, as they would be from any sender that far behind. Prometheus's
// shards stay within a batch deadline of each other.
const maxAhead = 10

// minAcked is the number of rounds every worker has had acknowledged.
func (w *ackWriter) minAcked() int64 {
	m := w.acked[0].Load()
	for k := 1; k < w.workers; k++ {
		m = min(m, w.acked[k].Load())
	}
	return m
}

func (w *ackWriter) run(ctx context.Context, k int) {
	client := &http.Client{Timeout: 30 * time.Second}
	var req prompb.WriteRequest
	for i := k; i < w.series; i += w.workers {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: w.labels(i), Samples: make([]prompb.Sample, w.spr)})
	}
	var raw []byte
	for r := int64(0); (w.rounds == 0 || r < int64(w.rounds)) && !w.draining.Load(); {
		for r-w.minAcked() > maxAhead && !w.draining.Load() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
		for j := range req.Timeseries {
			for m := range req.Timeseries[j].Samples {
				n := r*int64(w.spr) + int64(m)
				req.Timeseries[j].Samples[m] = prompb.Sample{Timestamp: w.t0 + n*w.step, Value: w.value(k+j*w.workers, n)}
			}
		}
		var err error
		if raw, err = req.Marshal(); err != nil {
			panic(err)
		}
		body := snappy.Encode(nil, raw)
		if r == 0 && w.gate != nil {
			w.built.Done()
			select {
			case <-ctx.Done():
				return
			case <-w.gate:
			}
		}
		for {
			if ctx.Err() != nil {
				return
			}
			code, hdr, err := w.post(ctx, client, body)
			if ctx.Err() != nil {
				return // stopped: the outcome of the abandoned request is unknown
			}
			w.sent.Add(1)
			if err == nil && code/100 == 2 {
				w.acked[k].Store(r + 1)
				break
			}
			switch {
			case err != nil:
				w.conn.Add(1)
			case code/100 == 5:
				w.refuse.Add(1)
				if code == http.StatusServiceUnavailable && hdr.Get("Retry-After") != "" {
					w.retry.Add(1)
				}
			default:
				w.bad.CompareAndSwap(nil, fmt.Sprintf("worker %d round %d: status %d", k, r, code))
				return
			}
			select { // a short backoff, like Prometheus's min_backoff
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		r++
		if w.interval > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(w.begun.Add(time.Duration(r) * w.interval))):
			}
		}
	}
}

func (w *ackWriter) post(ctx context.Context, c *http.Client, body []byte) (int, http.Header, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, *w.url.Load(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	r.Header.Set("Content-Encoding", "snappy")
	r.Header.Set("Content-Type", "application/x-protobuf")
	r.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := c.Do(r)
	if err != nil {
		return 0, nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// ackedSamples is the number of samples acknowledged so far.
func (w *ackWriter) ackedSamples() int64 {
	var n int64
	for i := 0; i < w.series; i++ {
		n += w.ackedOf(i)
	}
	return n
}

func (w *ackWriter) String() string {
	return fmt.Sprintf("%d samples acknowledged, %d requests sent, %d answered 5xx (%d of them 503+Retry-After), %d connection errors",
		w.ackedSamples(), w.sent.Load(), w.refuse.Load(), w.retry.Load(), w.conn.Load())
}

// readBack reads every sample of the writer's metric from omen through
// remote read and returns, for each series, the samples by timestamp.
func (w *ackWriter) readBack(t testing.TB, base string) map[int]map[int64]float64 {
	t.Helper()
	maxRounds := int64(0)
	for k := range w.acked {
		maxRounds = max(maxRounds, w.acked[k].Load())
	}
	res, err := remoteRead(base, w.t0, w.t0+(maxRounds+1)*int64(w.spr)*w.step, &prompb.LabelMatcher{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: w.name})
	require.NoError(t, err)
	out := map[int]map[int64]float64{}
	for _, ts := range res {
		i := -1
		for _, l := range ts.Labels {
			if l.Name == "series" {
				i, _ = strconv.Atoi(l.Value)
			}
		}
		m := make(map[int64]float64, len(ts.Samples))
		for _, s := range ts.Samples {
			m[s.Timestamp] = s.Value
		}
		out[i] = m
	}
	return out
}

// requireNoneLost reads every acknowledged sample back from omen and fails
// the test for each one that is missing or has another value.
func (w *ackWriter) requireNoneLost(t testing.TB, base string) {
	t.Helper()
	require.Nil(t, w.bad.Load(), "a write was refused with 4xx")
	got := w.readBack(t, base)
	var lost, wrong, checked int64
	var first []string
	for i := 0; i < w.series; i++ {
		for n := int64(0); n < w.ackedOf(i); n++ {
			checked++
			ts := w.t0 + n*w.step
			v, ok := got[i][ts]
			switch {
			case !ok:
				lost++
			case v != w.value(i, n):
				wrong++
			default:
				continue
			}
			if len(first) < 5 {
				first = append(first, fmt.Sprintf("series %d sample %d (t=%d): found %v, want %v", i, n, ts, ok, w.value(i, n)))
			}
		}
	}
	t.Logf("read back %d acknowledged samples: %d lost, %d with another value (%s)", checked, lost, wrong, w)
	require.Positive(t, checked, "nothing was acknowledged: the test proved nothing")
	require.Zero(t, lost+wrong, "acknowledged samples lost or changed, e.g. %s", strings.Join(first, "; "))
}

// remoteRead runs one remote-read 1.0 query (SAMPLES response) against omen.
func remoteRead(base string, start, end int64, ms ...*prompb.LabelMatcher) ([]*prompb.TimeSeries, error) {
	rr := &prompb.ReadRequest{
		Queries:               []*prompb.Query{{StartTimestampMs: start, EndTimestampMs: end, Matchers: ms}},
		AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{prompb.ReadRequest_SAMPLES},
	}
	raw, err := proto.Marshal(rr)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/read", bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Read-Version", "0.1.0")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("remote read: status %d: %s", resp.StatusCode, tail(b, 300))
	}
	dec, err := snappy.Decode(nil, b)
	if err != nil {
		return nil, fmt.Errorf("remote read: snappy: %w", err)
	}
	var rresp prompb.ReadResponse
	if err := proto.Unmarshal(dec, &rresp); err != nil {
		return nil, fmt.Errorf("remote read: decode: %w", err)
	}
	if len(rresp.Results) != 1 {
		return nil, fmt.Errorf("remote read: %d results, want 1", len(rresp.Results))
	}
	return rresp.Results[0].Timeseries, nil
}

// omenAt starts `omen serve` on a fixed port (so that a writer keeps its
// URL across restarts) without waiting for it to be ready.
func omenAt(t testing.TB, dir string, port int, args ...string) *proc {
	t.Helper()
	all := append([]string{"serve", "--web.listen-address=127.0.0.1:" + strconv.Itoa(port), "--storage.tsdb.path=" + dir, "--log.level=info"}, args...)
	return start(t, "omen", port, omenBinary(t), all...)
}

// readyStatus is /-/ready's status code, 0 while nothing listens.
func readyStatus(base string) int {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(base + "/-/ready")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rssBytes is the resident set size of process pid, from /proc.
func rssBytes(pid int) (int64, error) {
	m, err := procMem(pid)
	return m["VmRSS"], err
}

// procMem reads the memory lines of /proc/<pid>/status (VmRSS, RssAnon,
// RssFile, ...) in bytes.
func procMem(pid int) (map[string]int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, err
			}
			out[strings.TrimSuffix(f[0], ":")] = kb << 10
		}
	}
	if _, ok := out["VmRSS"]; !ok {
		return nil, errors.New("no VmRSS in /proc status")
	}
	return out, nil
}

// logContains reports whether the process's log has s in it.
func (p *proc) logContains(s string) bool {
	b, _ := os.ReadFile(p.log)
	return bytes.Contains(b, []byte(s))
}

// requireNoneLostByQuery checks, through the query API, that each series
// holds exactly its acknowledged samples: the count and the sum of the
// values over the written range (exact: integer values below 2^53). It
// suits writers too large to read back sample by sample. After stop, the
// request a worker abandoned may have been stored or not, as a whole (a
// request is one transaction): both are accepted, nothing in between.
func (w *ackWriter) requireNoneLostByQuery(t testing.TB, base string) {
	t.Helper()
	require.Nil(t, w.bad.Load(), "a write was refused with 4xx")
	var maxN int64
	for i := 0; i < w.series; i++ {
		maxN = max(maxN, w.ackedOf(i))
	}
	require.Positive(t, maxN, "nothing was acknowledged: the test proved nothing")
	counts, sums := w.countAndSum(t, base, w.t0-1, w.t0+(maxN-1)*w.step)
	var total float64
	for i := 0; i < w.series; i++ {
		c := w.ackedOf(i)
		if c == 0 {
			continue
		}
		if w.stopped.Load() && counts[i] == float64(c+int64(w.spr)) {
			c += int64(w.spr) // the abandoned request was stored
		}
		wantSum := 100000*float64(c*(c-1)/2) + float64(int64(i)*c)
		require.Equal(t, float64(c), counts[i], "series %d: samples stored vs acknowledged", i)
		require.Equal(t, wantSum, sums[i], "series %d: sum of the values stored vs acknowledged", i)
		total += counts[i]
	}
	t.Logf("query API: %d samples stored, every acknowledged one exactly (%s)", int64(total), w)
}

// countAndSum returns, by series, how many samples omen holds in (from, to]
// (ms) and the sum of their values, from the query API.
func (w *ackWriter) countAndSum(t testing.TB, base string, from, to int64) (counts, sums map[int]float64) {
	t.Helper()
	get := func(fn string) map[int]float64 {
		res, err := query(t, base, fmt.Sprintf("%s(%s[%dms])", fn, w.name, to-from), time.UnixMilli(to))
		require.NoError(t, err)
		out := map[int]float64{}
		for _, s := range res {
			i, err := strconv.Atoi(s.Metric["series"])
			require.NoError(t, err)
			out[i] = s.F()
		}
		return out
	}
	return get("count_over_time"), get("sum_over_time")
}
