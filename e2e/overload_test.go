package e2e

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rssSampler records a process's resident set size every 100ms.
type rssSampler struct {
	peak, last atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			if b, err := rssBytes(pid); err == nil {
				s.last.Store(b)
				if b > s.peak.Load() {
					s.peak.Store(b)
				}
			}
			select {
			case <-s.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *rssSampler) close() { close(s.stop); s.wg.Wait() }

// overloadInflight is the request limit the overload test runs omen with;
// OMEN_OVERLOAD_INFLIGHT overrides it, to see the test fail without the
// limit (e.g. 64).
func overloadInflight() int {
	if n, err := strconv.Atoi(os.Getenv("OMEN_OVERLOAD_INFLIGHT")); err == nil {
		return n
	}
	return 2
}

// TestOverload drives omen far beyond its capacity: 48 writers, each with a
// request of 40,000 samples always in flight, against
// --write.max-inflight-requests=2, while the real Prometheus remote-writes
// its own scrapes to omen. omen must refuse what it cannot take with 503 +
// Retry-After (which Prometheus 2.42 retries; it drops 4xx, and retries 429
// only with retry_on_http_429), keep its memory bounded, store exactly what
// it acknowledged, and Prometheus must catch up once the overload ends
// without having dropped a sample.
func TestOverload(t *testing.T) {
	need(t, "prometheus")
	omen := startOmen(t, "", fmt.Sprintf("--write.max-inflight-requests=%d", overloadInflight()))
	prom := startPrometheus(t, func(addr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['%s']}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 2s}
`, addr, omen.URL)
	})
	waitFor(t, 60*time.Second, "Prometheus's samples in omen", func() bool {
		res, err := query(t, omen.URL, `up{job="prometheus"}`, time.Time{})
		return err == nil && len(res) == 1
	})

	rss := sampleRSS(omen.cmd.Process.Pid)
	time.Sleep(time.Second)
	base := rss.last.Load()

	// omen_-prefixed series are not scored, so omen's memory is what the
	// write path holds plus the TSDB head, not per-series models. The
	// samples start 55 minutes back: Prometheus's samples make the head's
	// newest time "now", and the head takes samples down to an hour before.
	w := newAckWriter("omen_e2e_overload", 48*100, 48, time.Now().Add(-55*time.Minute).UnixMilli(), 100)
	w.spr = 4000 // 400,000 samples per request, ~6 MB decoded
	// Two rounds per writer at most (38.4M samples, 2 x 400 s of data per
	// series): what the head holds at the end does not depend on how fast
	// this machine is.
	w.rounds = 2
	w.gate = make(chan struct{})
	w.start(omen.URL)
	w.open()
	start := time.Now()
	// At least 9 s of overload, and until something was both refused and
	// acknowledged: a slow machine takes longer over its first requests,
	// and a window in which none was stored tests nothing.
	waitFor(t, 90*time.Second, "overload", func() bool {
		return w.ackedSamples() == int64(w.series*w.spr*w.rounds) ||
			time.Since(start) > 9*time.Second && w.ackedSamples() > 0 && w.retry.Load() > 0
	})
	w.stop()
	end := time.Now()
	rss.close()
	t.Logf("overload for %s: %s", end.Sub(start).Round(time.Millisecond), w)
	t.Logf("omen RSS: %d MiB before, peak %d MiB during the overload", base>>20, rss.peak.Load()>>20)

	require.Nil(t, w.bad.Load(), "overload must never be answered with 4xx: %v", w.bad.Load())
	require.Positive(t, w.retry.Load(), "omen never refused a write: the load did not exceed capacity")
	require.Equal(t, w.refuse.Load(), w.retry.Load(), "every 5xx is a 503 with Retry-After")
	// The bound: the limit holds 2 requests (~6 MB decoded, a few times
	// that unmarshalled) at once, and the head grows by the samples
	// accepted. Measured on 2 cores: 250-600 MiB of growth with the limit
	// of 2, 1.5-3.3 GiB with 64 (OMEN_OVERLOAD_INFLIGHT=64 makes this fail).
	require.Less(t, rss.peak.Load()-base, int64(1<<30), "omen's memory grew by more than 1 GiB under overload")

	// The requests the writer abandoned on stop may still be committing.
	waitFor(t, 30*time.Second, "no remote write in flight", func() bool {
		v, err := metricValue(omen.URL, "omen_remote_write_requests_inflight")
		return err == nil && v == 0
	})
	w.requireNoneLostByQuery(t, omen.URL)

	// Prometheus catches up: every sample it scraped during the overload is
	// in omen, none failed (dropped), and it was pushed back (retried).
	at := end.Add(2 * time.Second)
	// One series per scrape-generated metric (count_over_time of several
	// series of different names would clash on their name-less labels).
	rng := fmt.Sprintf("[%dms]", at.Sub(start).Milliseconds()+5000)
	q := `count_over_time(up{job="prometheus"}` + rng + `) + ignoring() count_over_time(scrape_samples_scraped{job="prometheus"}` + rng +
		`) + ignoring() count_over_time(scrape_duration_seconds{job="prometheus"}` + rng + `)`
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last comparison: %s", last)
		}
	}()
	waitFor(t, 60*time.Second, "omen to hold every sample Prometheus scraped during the overload", func() bool {
		p, err1 := query(t, prom.URL, q, at)
		o, err2 := query(t, omen.URL, q, at)
		if err1 != nil || err2 != nil || len(p) != 1 || len(o) != 1 {
			last = fmt.Sprintf("prometheus %v %v, omen %v %v", p, err1, o, err2)
			return false
		}
		last = fmt.Sprintf("prometheus %g samples, omen %g", p[0].F(), o[0].F())
		return p[0].F() > 0 && p[0].F() == o[0].F()
	})
	t.Logf("caught up %s after the overload: %s", time.Since(end).Round(time.Millisecond), last)
	res, err := query(t, prom.URL, `sum(prometheus_remote_storage_samples_failed_total)`, time.Time{})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Zero(t, res[0].F(), "Prometheus dropped samples")
	res, err = query(t, prom.URL, `sum(prometheus_remote_storage_samples_retried_total)`, time.Time{})
	require.NoError(t, err)
	require.Len(t, res, 1)
	t.Logf("Prometheus retried %g samples", res[0].F())
	require.Positive(t, res[0].F(), "Prometheus was never pushed back: the overload did not reach it")
}
