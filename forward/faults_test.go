package forward

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// counted sums the series of the counter or gauge name in reg (0 when it
// has none).
func counted(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestForwardingUpstreamAnswers: what an upstream's failing answer costs
// the outputs of --remote-write.url, as Prometheus's queues (the same code)
// handle it. The receiver answers the first request, or the first two,
// with the code and Retry-After: 1; then takes everything. A 400 drops
// that batch for good, counted in
// prometheus_remote_storage_samples_failed_total and not asked again; a
// 429 (retried for --remote-write.url) and a 503 are retried after their
// Retry-After until taken, each output once, with nothing counted failed.
func TestForwardingUpstreamAnswers(t *testing.T) {
	const series, n = 10, 5
	for _, tc := range []struct {
		name      string
		code      int
		failFirst int  // requests answered with code
		dropped   bool // the first batch is lost
	}{
		{"400 drops the batch", http.StatusBadRequest, 1, true},
		{"429 is retried", http.StatusTooManyRequests, 2, false},
		{"503 is retried", http.StatusServiceUnavailable, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc, srv := newReceiver(func(req int) int {
				if req <= tc.failFirst {
					return tc.code
				}
				return 0
			})
			defer srv.Close()
			f, reg := openForwarder(t, srv.URL)
			defer f.Close()

			// One batch (the queue sends after 5 s), answered with the code.
			appendOutputs(t, f, series, n, time.Now().Add(time.Second))
			if tc.dropped {
				require.Eventually(t, func() bool {
					return counted(t, reg, "prometheus_remote_storage_samples_failed_total") == series*n
				}, 30*time.Second, 20*time.Millisecond)
				rc.mu.Lock()
				requests := rc.requests
				rc.mu.Unlock()
				require.Equal(t, 1, requests, "a 400 is not asked again")
				// The queue goes on with what comes next.
				appendOutputs(t, f, series, n, time.Now().Add(time.Minute))
				require.Eventually(t, func() bool { d, _ := rc.received(); return d == series*n }, 60*time.Second, 20*time.Millisecond)
				d, _ := rc.received()
				require.Equal(t, series*n, d, "only the second batch")
				return
			}
			require.Eventually(t, func() bool { d, _ := rc.received(); return d == series*n }, 60*time.Second, 20*time.Millisecond)
			_, rep := rc.received()
			require.Zero(t, rep, "each output once")
			require.Zero(t, counted(t, reg, "prometheus_remote_storage_samples_failed_total"))
			require.Equal(t, float64(series*n*tc.failFirst), counted(t, reg, "prometheus_remote_storage_samples_retried_total"))
		})
	}
}

// TestForwardingHangingUpstream: an upstream that takes requests and never
// answers costs the scorers nothing: commits of outputs go on, past what
// the queue holds in memory (its reader of the log then waits on full
// shards, prometheus_remote_storage_enqueue_retries_total), and Close, as
// omen's shutdown, returns within its bound: the wait for the queues to
// read the log's end (the flush deadline here, shorter than 5 s) and the
// flush deadline, dropping what the queue held.
func TestForwardingHangingUpstream(t *testing.T) {
	reg := prometheus.NewRegistry()
	const flushDeadline = 2 * time.Second
	f, err := New(nil, reg, t.TempDir(), hangingUpstreams(t, 1), flushDeadline)
	require.NoError(t, err)
	require.NoError(t, f.ApplyConfig(nil))

	// 30 000 outputs, beyond the one shard's 10 000 and a batch of 2 000.
	const series, n = 100, 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		appendOutputs(t, f, series, n, time.Now().Add(time.Second))
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("commits of outputs blocked on the hanging upstream")
	}
	require.Eventually(t, func() bool {
		f.rs.Notify()
		return counted(t, reg, "prometheus_remote_storage_enqueue_retries_total") > 0
	}, 60*time.Second, 20*time.Millisecond, "the queue is full: its log reader waits")

	start := time.Now()
	require.NoError(t, f.Close())
	// The read wait and the flush deadline, and slack for a loaded machine.
	require.Less(t, time.Since(start), 2*flushDeadline+10*time.Second, "Close is bounded")
}

// TestForwardingHangingUpstreamsCloseOnce: with several upstreams that take
// requests and never answer, Close, as omen's shutdown, takes the flush
// deadline once in all, not once per upstream: the module stops its queues
// one after another, each waiting the whole deadline on its hanging send,
// and four such took the read wait and four deadlines (10 s here, minutes
// at the default deadline, past a pod's termination grace, which then cut
// the TSDB's close short too). What a queue still held is dropped, as a
// queue's own deadline drops it.
func TestForwardingHangingUpstreamsCloseOnce(t *testing.T) {
	const upstreams = 4
	urls, asked := askedHangingUpstreams(t, upstreams)

	const flushDeadline = 2 * time.Second
	f, err := New(nil, prometheus.NewRegistry(), t.TempDir(), urls, flushDeadline)
	require.NoError(t, err)
	require.NoError(t, f.ApplyConfig(nil))
	appendOutputs(t, f, 100, 30, time.Now().Add(time.Second))
	require.Eventually(t, func() bool { f.rs.Notify(); return asked() == upstreams }, 60*time.Second, 20*time.Millisecond, "every queue sends, and hangs")

	start := time.Now()
	require.NoError(t, f.Close())
	took := time.Since(start)
	t.Logf("Close took %s with %d hanging upstreams, flush deadline %s", took.Round(time.Millisecond), upstreams, flushDeadline)
	// In turn: the read wait (the deadline, shorter than 5 s) and one
	// deadline per upstream, 10 s; once: 6 s (the deadline being shorter
	// than the batch_send_deadline, the queues' stop gets that and a
	// second from the read wait's start), and slack for a loaded machine.
	require.Less(t, took, (upstreams-1)*flushDeadline+flushDeadline/2, "Close takes the flush deadline once, not once per upstream")
}

// TestForwardingHealthyUpstreamFinalBatchAtClose: beside upstreams that
// take requests and never answer, a working upstream gets every output
// logged before Close, at a flush deadline shorter than the queues'
// batch_send_deadline (5 s). The module stops its queues one after
// another, in map order; one whose turn had not come when Close stopped
// waiting (the read wait and one deadline, 4 s here) still held its last
// partial batch, which it sends only at its stop or when its batch timer
// fires (5 s after its previous send): its outputs were lost at the exit
// whenever a hanging queue came first. Four rounds, so that the working
// queue coming first by chance in each (1 in 6) hides it only rarely.
func TestForwardingHealthyUpstreamFinalBatchAtClose(t *testing.T) {
	const hanging, rounds = 5, 4
	const flushDeadline = 2 * time.Second
	urls := hangingUpstreams(t, hanging)
	for round := range rounds {
		rc, srv := newReceiver(nil)
		defer srv.Close()
		f, err := New(nil, prometheus.NewRegistry(), t.TempDir(), append([]string{srv.URL}, urls...), flushDeadline)
		require.NoError(t, err)
		require.NoError(t, f.ApplyConfig(nil))

		// A full batch (max_samples_per_send, 2 000) goes at once, and
		// restarts the queue's batch timer; then 100 outputs more, a
		// partial batch that the timer would send 5 s later.
		const series = 100
		start := time.Now().Add(time.Second)
		appendOutputs(t, f, series, 20, start)
		require.Eventually(t, func() bool { d, _ := rc.received(); return d == 20*series },
			60*time.Second, 20*time.Millisecond, "the working upstream gets the full batch")
		appendOutputs(t, f, series, 1, start.Add(time.Minute))

		closed := time.Now()
		require.NoError(t, f.Close())
		took := time.Since(closed)
		got, _ := rc.received()
		t.Logf("round %d: Close took %s; the working upstream has %d of %d", round, took.Round(time.Millisecond), got, 21*series)
		require.Equal(t, 21*series, got, "round %d: the working upstream's final partial batch is sent before Close returns", round)
	}
}

// hangingUpstreams returns the URLs of n upstreams that take requests and
// answer none until the test ends.
func hangingUpstreams(t *testing.T, n int) []string {
	urls, _ := askedHangingUpstreams(t, n)
	return urls
}

// askedHangingUpstreams is hangingUpstreams, and how many of them have
// been sent a request.
func askedHangingUpstreams(t *testing.T, n int) (urls []string, asked func() int) {
	release := make(chan struct{})
	var mu sync.Mutex
	got := map[string]bool{}
	for range n {
		var srv *httptest.Server
		srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got[srv.URL] = true
			mu.Unlock()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	// First of these cleanups: the servers' Close waits for the handlers.
	t.Cleanup(func() { close(release) })
	return urls, func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
}
