package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// received is one series' samples as a test receiver decoded them.
type received struct {
	labels  []string // name=value, in the order sent
	counter bool
	ts      []int64
	vs      []float64
	st      []int64 // v2 start timestamps
}

// receiver is an httptest handler that decodes every request with
// Prometheus's own generated types and checks the headers.
type receiver struct {
	t        *testing.T
	protocol int
	fail     func(n int) int // status for the n-th request (0-based); nil: 204
	mu       sync.Mutex
	n        int
	series   map[string]*received
	perReq   []int // samples per request
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	require.NoError(rc.t, err)
	raw, err := snappy.Decode(nil, body)
	require.NoError(rc.t, err)
	require.Equal(rc.t, "snappy", r.Header.Get("Content-Encoding"))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := rc.n
	rc.n++
	samples := 0
	add := func(key string, ls []string, counter bool, ts, st int64, v float64) {
		s := rc.series[key]
		if s == nil {
			s = &received{labels: ls, counter: counter}
			rc.series[key] = s
		}
		s.ts = append(s.ts, ts)
		s.st = append(s.st, st)
		s.vs = append(s.vs, v)
		samples++
	}
	switch rc.protocol {
	case 1:
		require.Equal(rc.t, "application/x-protobuf", r.Header.Get("Content-Type"))
		require.Equal(rc.t, "0.1.0", r.Header.Get("X-Prometheus-Remote-Write-Version"))
		var req prompb.WriteRequest
		require.NoError(rc.t, req.Unmarshal(raw))
		for _, ts := range req.Timeseries {
			var ls []string
			counter := false
			for _, l := range ts.Labels {
				ls = append(ls, l.Name+"="+l.Value)
				if l.Name == "__name__" {
					counter = strings.HasSuffix(l.Value, "_total") || strings.HasSuffix(l.Value, "_sum")
				}
			}
			for _, s := range ts.Samples {
				add(strings.Join(ls, ","), ls, counter, s.Timestamp, 0, s.Value)
			}
		}
	case 2:
		require.Equal(rc.t, "application/x-protobuf;proto=io.prometheus.write.v2.Request", r.Header.Get("Content-Type"))
		require.Equal(rc.t, "2.0.0", r.Header.Get("X-Prometheus-Remote-Write-Version"))
		var req writev2.Request
		require.NoError(rc.t, req.Unmarshal(raw))
		require.Equal(rc.t, "", req.Symbols[0])
		for _, ts := range req.Timeseries {
			require.Zero(rc.t, len(ts.LabelsRefs)%2)
			var ls []string
			for i := 0; i < len(ts.LabelsRefs); i += 2 {
				ls = append(ls, req.Symbols[ts.LabelsRefs[i]]+"="+req.Symbols[ts.LabelsRefs[i+1]])
			}
			counter := ts.Metadata.Type == writev2.Metadata_METRIC_TYPE_COUNTER
			if !counter {
				require.Equal(rc.t, writev2.Metadata_METRIC_TYPE_GAUGE, ts.Metadata.Type)
			}
			for _, s := range ts.Samples {
				add(strings.Join(ls, ","), ls, counter, s.Timestamp, s.StartTimestamp, s.Value)
			}
		}
	}
	rc.perReq = append(rc.perReq, samples)
	code := http.StatusNoContent
	if rc.fail != nil {
		code = rc.fail(n)
	}
	if code == http.StatusNoContent && rc.protocol == 2 {
		w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", "1") // deliberately not the count: the header wins
	}
	if code != http.StatusNoContent {
		http.Error(w, "test failure", code)
		return
	}
	w.WriteHeader(code)
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name                         string
		protocol, series, sps, batch int
		concurrency, rounds          int
		warmup, startTimestamps      bool
	}{
		{name: "v1", protocol: 1, series: 97, sps: 1, batch: 20, concurrency: 3, rounds: 4},
		{name: "v1/samples=3/warmup", protocol: 1, series: 50, sps: 3, batch: 30, concurrency: 2, rounds: 3, warmup: true},
		{name: "v2", protocol: 2, series: 97, sps: 1, batch: 20, concurrency: 3, rounds: 4},
		{name: "v2/samples=2/warmup", protocol: 2, series: 40, sps: 2, batch: 7, concurrency: 4, rounds: 2, warmup: true},
		{name: "v2/start timestamps", protocol: 2, series: 60, sps: 2, batch: 16, concurrency: 2, rounds: 3, warmup: true, startTimestamps: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{t: t, protocol: tc.protocol, series: map[string]*received{}}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			// A frozen clock: every round must still move the timestamps on.
			now := time.UnixMilli(1_800_000_000_000)
			res, err := Run(context.Background(), nil, Options{
				URL: srv.URL, Protocol: tc.protocol, Series: tc.series, SamplesPerSeries: tc.sps,
				Batch: tc.batch, Concurrency: tc.concurrency, Rounds: tc.rounds, Warmup: tc.warmup,
				StartTimestamps: tc.startTimestamps, Now: func() time.Time { return now },
			})
			require.NoError(t, err)

			rounds := tc.rounds
			if tc.warmup {
				rounds++
				require.Equal(t, int64(tc.series*tc.sps), res.Warmup.Samples)
			}
			require.Len(t, rc.series, tc.series, "distinct label sets")
			for _, n := range rc.perReq {
				require.LessOrEqual(t, n, tc.batch)
			}
			for key, s := range rc.series {
				require.GreaterOrEqual(t, len(s.labels), 6, key)
				require.LessOrEqual(t, len(s.labels), 10, key)
				require.True(t, slices.IsSortedFunc(s.labels, func(a, b string) int {
					return strings.Compare(a[:strings.IndexByte(a, '=')], b[:strings.IndexByte(b, '=')])
				}), "labels sorted by name: %s", key)
				require.Len(t, s.ts, rounds*tc.sps, key)
				for i := 1; i < len(s.ts); i++ {
					require.Greater(t, s.ts[i], s.ts[i-1], "timestamps increase: %s", key)
					if s.counter {
						require.GreaterOrEqual(t, s.vs[i], s.vs[i-1], "counter never decreases: %s", key)
					}
				}
				require.GreaterOrEqual(t, s.ts[0], now.UnixMilli())
				// Counters carry the run's start, just before their first
				// sample, when asked; gauges never do.
				wantST := int64(0)
				if tc.startTimestamps && s.counter {
					wantST = now.UnixMilli() - 1
				}
				for i, st := range s.st {
					require.Equal(t, wantST, st, "start timestamp of sample %d: %s", i, key)
				}
			}
			m := res.Measured
			require.Equal(t, int64(tc.series*tc.sps*tc.rounds), m.Samples)
			require.Empty(t, m.Errors)
			if tc.protocol == 1 {
				require.Equal(t, m.Samples, m.Accepted)
			} else {
				require.Equal(t, m.Requests, m.Accepted, "v2 counts the Samples-Written header")
			}
			require.Positive(t, m.P50)
			require.GreaterOrEqual(t, m.P99, m.P50)
		})
	}
}

func TestRunCountsErrorsByStatus(t *testing.T) {
	rc := &receiver{t: t, protocol: 1, series: map[string]*received{}, fail: func(n int) int {
		switch n % 4 {
		case 1:
			return http.StatusBadRequest
		case 2:
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	res, err := Run(context.Background(), nil, Options{URL: srv.URL, Series: 100, Batch: 10, Concurrency: 1, Rounds: 2})
	require.NoError(t, err)
	m := res.Measured
	require.Equal(t, int64(20), m.Requests)
	require.Equal(t, map[string]int64{"400": 5, "503": 5}, m.Errors)
	require.Equal(t, int64(100), m.Accepted)
}

func TestRunStopsAtDuration(t *testing.T) {
	rc := &receiver{t: t, protocol: 1, series: map[string]*received{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	res, err := Run(context.Background(), nil, Options{URL: srv.URL, Series: 10, Batch: 5, Concurrency: 2, Duration: 200 * time.Millisecond})
	require.NoError(t, err)
	require.Positive(t, res.Measured.Requests)
	require.Less(t, res.Measured.Seconds, 5.0)
}

func TestSeriesLabelsDistinct(t *testing.T) {
	seen := map[string]bool{}
	counters := 0
	const n = 200_000
	for i := range n {
		ls, counter := seriesLabels(i)
		var b strings.Builder
		for _, l := range ls {
			b.WriteString(l.name + "=" + l.value + ",")
		}
		require.False(t, seen[b.String()], "series %d repeats %s", i, b.String())
		seen[b.String()] = true
		if counter {
			counters++
		}
	}
	require.InDelta(t, 7.0/12, float64(counters)/n, 0.01)
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		err  string
	}{
		{"no URL", Options{Series: 1}, "no URL"},
		{"protocol", Options{URL: "x", Series: 1, Protocol: 3}, "protocol 3"},
		{"no series", Options{URL: "x"}, "series 0"},
		{"batch", Options{URL: "x", Series: 10, SamplesPerSeries: 5, Batch: 4}, "batch 4"},
		{"concurrency", Options{URL: "x", Series: 2, Concurrency: 3}, "concurrency 3"},
		{"start timestamps on 1.0", Options{URL: "x", Series: 10, StartTimestamps: true}, "need remote-write 2.0"},
		{"ok", Options{URL: "x", Series: 10}, ""},
		{"ok/start timestamps", Options{URL: "x", Series: 10, Protocol: 2, StartTimestamps: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.validate()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestNextRoundBoundsTheFuture(t *testing.T) {
	w := &worker{}
	now := time.UnixMilli(1_000_000)
	ts, err := w.nextRound(now, 10)
	require.NoError(t, err)
	require.Equal(t, int64(1_000_000), ts)
	ts, err = w.nextRound(now, 10)
	require.NoError(t, err)
	require.Equal(t, int64(1_000_010), ts, "after the previous round's last sample")
	w.last = now.UnixMilli() + maxAhead.Milliseconds()
	_, err = w.nextRound(now, 10)
	require.ErrorContains(t, err, "ahead of the clock")
	// The limit it names is the one for its samples per series: 1000
	// rounds/s at 1, 1 round/s at 1000 (samples 1 ms apart).
	for _, tc := range []struct {
		sps   int
		limit string
	}{{1, "more than 1000 rounds/s"}, {10, "more than 100 rounds/s"}, {1000, "more than 1 rounds/s"}} {
		w := &worker{last: now.UnixMilli() + maxAhead.Milliseconds()}
		_, err := w.nextRound(now, tc.sps)
		require.ErrorContains(t, err, tc.limit, "samples per series %d", tc.sps)
	}
}

func TestRunSampleIntervalWritesHistory(t *testing.T) {
	for _, protocol := range []int{1, 2} {
		t.Run(fmt.Sprint("protocol=", protocol), func(t *testing.T) {
			rc := &receiver{t: t, protocol: protocol, series: map[string]*received{}}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			now := time.UnixMilli(1_700_000_000_000)
			res, err := Run(context.Background(), nil, Options{URL: srv.URL, Protocol: protocol, Series: 6, Batch: 4, Concurrency: 2,
				Rounds: 4, Warmup: true, SampleInterval: 15 * time.Second, Backdate: time.Hour, Now: func() time.Time { return now }})
			require.NoError(t, err)
			require.EqualValues(t, 6*4, res.Measured.Samples)
			require.Len(t, rc.series, 6)
			start := now.Add(-time.Hour).UnixMilli()
			for key, s := range rc.series {
				// The warm-up is round 0; every series gets the same timestamps.
				require.Equal(t, []int64{start, start + 15000, start + 30000, start + 45000, start + 60000}, s.ts, key)
			}
		})
	}
	_, err := Run(context.Background(), nil, Options{URL: "x", Series: 1, Concurrency: 1, Backdate: time.Hour})
	require.ErrorContains(t, err, "a backdate needs a sample interval")
}

// TestRunsBackToBack: a run whose rounds put timestamps ahead of the clock
// (up to maxAhead) waits for the clock to pass them before it returns, so
// the next run against the same receiver is not refused as out of order.
//
// Each run is five rounds of 1000 samples a series, five seconds of
// timestamps sent in five requests: ahead of the clock unless sending them
// takes those five seconds. (The test ran 300 ms of rounds of 1 ms each,
// counting on the machine's speed to get ahead, and asked for more than 100
// samples a series: a loaded machine sent 80, and a receiver answering in
// 8 ms, as that machine did, failed it every time. Then it sent rounds of
// 500 samples to 10 series, a second ahead: under -race on a loaded 2-core
// machine a run took more than that second, 5 times in 12.)
func TestRunsBackToBack(t *testing.T) {
	rc := &receiver{t: t, protocol: 1, series: map[string]*received{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	for run := range 2 {
		var logs syncbuf.Buffer
		res, err := Run(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)), Options{URL: srv.URL, Series: 2,
			SamplesPerSeries: 1000, Batch: 5000, Concurrency: 1, Rounds: 5})
		require.NoError(t, err)
		require.Equal(t, int64(2*5*1000), res.Measured.Accepted, "run %d", run)
		require.Contains(t, logs.String(), "Waiting for the clock to pass the last timestamp sent", "run %d ended ahead of the clock", run)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Len(t, rc.series, 2)
	for key, s := range rc.series {
		require.Len(t, s.ts, 2*5*1000, key)
		require.True(t, slices.IsSorted(s.ts), "%s: timestamps across both runs in order", key)
		for i := 1; i < len(s.ts); i++ {
			require.Greater(t, s.ts[i], s.ts[i-1], "%s: a timestamp repeated", key)
		}
	}
}

// TestPartialWriteCountsStored: a 400 for part of a request, whose 2.0
// header says how many samples were stored, counts those as accepted (and
// the request as an error); one without the header counts none.
func TestPartialWriteCountsStored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		want   int64
	}{
		{"header", "9", 9},
		{"no header", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if tc.header != "" {
					w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", tc.header)
				}
				http.Error(w, "remote write: 1 sample(s) rejected, the rest stored", http.StatusBadRequest)
			}))
			defer srv.Close()
			res, err := Run(context.Background(), nil, Options{URL: srv.URL, Protocol: 2, Series: 10, Batch: 10, Concurrency: 1, Rounds: 3})
			require.NoError(t, err, "a receiver's refusals are counted, not a failure of the run")
			require.Equal(t, int64(3), res.Measured.Requests)
			require.Equal(t, 3*tc.want, res.Measured.Accepted)
			require.Equal(t, map[string]int64{"400": 3}, res.Measured.Errors)
		})
	}
}

// failingTransport answers request n (0-based) by fail(n): a transport
// error, or nil for a 204. No network and no clock: the errors are the
// ones net/http's client returns for a timeout and a refused connection.
type failingTransport struct {
	mu   sync.Mutex
	n    int
	fail func(n int) error
}

func (ft *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	_ = r.Body.Close()
	ft.mu.Lock()
	n := ft.n
	ft.n++
	ft.mu.Unlock()
	if err := ft.fail(n); err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: http.StatusNoContent, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// timeoutError is what a transport's deadline gives (net.Error, Timeout).
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestRunCountsTransportErrors: requests that got no answer (a timeout, a
// refused connection) were sent all the same: they count in the requests
// and samples sent, none of their samples as accepted, and the errors say
// which was which; a timed-out request's wait counts in the latencies
// (a p99 that left the timeouts out would flatter the receiver).
func TestRunCountsTransportErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	ft := &failingTransport{fail: func(n int) error {
		switch n % 4 {
		case 1:
			return timeoutError{}
		case 2:
			return refused
		}
		return nil
	}}
	res, err := Run(context.Background(), nil, Options{URL: "http://127.0.0.1:1/api/v1/write", Series: 80, Batch: 10,
		Concurrency: 1, Rounds: 1, Client: &http.Client{Transport: ft}})
	require.NoError(t, err)
	m := res.Measured
	require.Equal(t, int64(8), m.Requests, "requests sent")
	require.Equal(t, int64(80), m.Samples, "samples sent")
	require.Equal(t, int64(40), m.Accepted)
	require.Equal(t, map[string]int64{"timeout": 2, "transport": 2}, m.Errors)

	// The latencies, from one worker's record.
	ft.n = 0
	o := Options{URL: "http://127.0.0.1:1/api/v1/write", Series: 10}
	require.NoError(t, o.validate())
	s := &sender{opts: &o, client: &http.Client{Transport: ft}, logger: slog.New(slog.DiscardHandler), logged: map[string]bool{}}
	var st stats
	for range 8 {
		s.send(context.Background(), &reqBuf{samples: 10}, &st)
	}
	require.Len(t, st.latencies, 6, "answered and timed-out requests have a latency, refused ones none")
}

// TestRunClientTimeoutIsATimeout: the client's own per-request timeout,
// against a receiver that never answers one request, is counted as a
// timeout, and the other requests' answers as usual.
func TestRunClientTimeoutIsATimeout(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if n.Add(1) == 2 {
			<-r.Context().Done() // the client gave up
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	res, err := Run(context.Background(), nil, Options{URL: srv.URL, Series: 30, Batch: 10, Concurrency: 1, Rounds: 1, Timeout: 2 * time.Second})
	require.NoError(t, err)
	m := res.Measured
	require.Equal(t, map[string]int64{"timeout": 1}, m.Errors)
	require.Equal(t, int64(3), m.Requests)
	require.Equal(t, int64(20), m.Accepted)
	require.GreaterOrEqual(t, m.Max, 2.0, "the timed-out request's wait is the longest latency")
}

// TestQuantileNearestRank: the latency quantiles are nearest-rank, the
// ceil(q·n)-th smallest of n values, checked on 1..n ns, where the rank
// is the value (ranks by integer arithmetic: ceil(99n/100), ceil(n/2)).
func TestQuantileNearestRank(t *testing.T) {
	for _, n := range []int{1, 2, 3, 99, 100, 101, 199, 200, 1000, 12345, 1_000_001} {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i + 1)
		}
		require.Equal(t, time.Duration((99*n+99)/100), quantile(d, 0.99), "p99 of %d", n)
		require.Equal(t, time.Duration((n+1)/2), quantile(d, 0.5), "p50 of %d", n)
	}
}

// TestRunSaysWhyBeforeWaiting: a run the generator stops (its timestamps
// would run more than maxAhead past the clock) waits, as any run, for the
// clock to pass the last timestamp sent, up to 5 minutes; it says why it
// stopped before that wait. It said so only after it, in its error: for
// up to 5 minutes the only word was "Waiting for the clock", and a person
// waited for a run that had failed. The clock is frozen: every round puts
// the timestamps further ahead.
func TestRunSaysWhyBeforeWaiting(t *testing.T) {
	rc := &receiver{t: t, protocol: 1, series: map[string]*received{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, logger, Options{URL: srv.URL, Series: 2, Batch: 2000, SamplesPerSeries: 1000, Concurrency: 1,
			Duration: time.Hour, Now: func() time.Time { return now }})
		done <- err
	}()
	deadline := time.After(time.Minute)
	for !strings.Contains(logs.String(), "ahead of the clock") {
		select {
		case err := <-done:
			t.Fatalf("run returned %v; it logged:\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("the run did not say why it stopped within a minute; it logged:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	require.Contains(t, logs.String(), "Waiting for the clock")
	cancel() // the wait, interrupted
	require.ErrorContains(t, <-done, "ahead of the clock")
}

// TestRunLogsFailuresOncePerStatus: each status's first failure is one
// warning, whose receiver's answer is under err: it was under msg, the
// message's own key, so a logfmt line had msg= twice and a JSON one a
// duplicate "msg" key (the message lost in most log pipelines).
func TestRunLogsFailuresOncePerStatus(t *testing.T) {
	rc := &receiver{t: t, protocol: 1, series: map[string]*received{}, fail: func(n int) int {
		if n%2 == 1 {
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	_, err := Run(context.Background(), logger, Options{URL: srv.URL, Series: 100, Batch: 10, Concurrency: 1, Rounds: 2})
	require.NoError(t, err)
	var failed []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		require.Equal(t, 1, strings.Count(l, `"msg":`), l)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		if strings.HasPrefix(m["msg"].(string), "Remote write failed") {
			failed = append(failed, m)
		}
	}
	require.Len(t, failed, 1, logs.String())
	require.Equal(t, "400", failed[0]["status"])
	require.NotEmpty(t, failed[0]["err"])
}
