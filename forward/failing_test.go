package forward

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
)

// TestForwardingLogsEveryFailingUpstream: with two upstreams answering
// 500, the log warns of each, naming its url. The prometheus module's
// logger repeats a message at most once a minute across all its queues
// (its Deduper keys on the message alone), so the second queue's "Failed
// to send batch, retrying" was dropped: one upstream down hid the other
// for a minute, and for good when the first kept failing. Failing before:
// no warning named the second upstream within 20 s.
func TestForwardingLogsEveryFailingUpstream(t *testing.T) {
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	f, err := New(logger, prometheus.NewRegistry(), t.TempDir(), nil, time.Second)
	require.NoError(t, err)
	f.failingEvery = 200 * time.Millisecond
	var urls []string
	require.NoError(t, f.ApplyConfig(twoFailing(t, &urls)))
	t.Cleanup(func() { _ = f.Close() })

	warned := func(url string) bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "url="+url+" ") && (strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(20 * time.Second) // well within the module's minute
	for !(warned(urls[0]) && warned(urls[1])) && time.Now().Before(deadline) {
		appendOutputs(t, f, 2, 1, time.Now().Add(time.Second))
		f.rs.Notify()
		time.Sleep(50 * time.Millisecond)
	}
	for _, u := range urls {
		require.True(t, warned(u), "no warning names %s:\n%s", u, logs.String())
	}
}

// twoFailing returns the remote writes of two upstreams that answer every
// request with 500, sending at once, and appends their URLs to urls.
func twoFailing(t *testing.T, urls *[]string) []*promconfig.RemoteWriteConfig {
	t.Helper()
	var cfgs []*promconfig.RemoteWriteConfig
	for range 2 {
		_, srv := newReceiver(func(int) int { return http.StatusInternalServerError })
		t.Cleanup(srv.Close)
		c, err := URLConfig(srv.URL)
		require.NoError(t, err)
		c.QueueConfig.BatchSendDeadline = model.Duration(10 * time.Millisecond)
		c.QueueConfig.MinBackoff, c.QueueConfig.MaxBackoff = model.Duration(10*time.Millisecond), model.Duration(100*time.Millisecond)
		cfgs = append(cfgs, c)
		*urls = append(*urls, srv.URL)
	}
	return cfgs
}

// TestForwardingReloadRemovingHangingQueues: a reload that removes queues
// whose upstreams do not answer waited, in the module, for each in turn to
// give up (the flush deadline, a minute by default), and /-/reload with
// it: 3.0 s for three at a deadline of 1 s. The log said nothing of it,
// or "Stopping remote storage..." for the first queue only (the module's
// logger repeats a message once a minute across queues). Now each queue
// stopped is named before the wait, with the deadline; the reload answers
// after one deadline, the stops going on behind it; and the next reload
// waits for them.
func TestForwardingReloadRemovingHangingQueues(t *testing.T) {
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	const flushDeadline = time.Second
	urls, asked := askedHangingUpstreams(t, 3)
	f, err := New(logger, prometheus.NewRegistry(), t.TempDir(), nil, flushDeadline)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	var cfgs []*promconfig.RemoteWriteConfig
	for _, u := range urls {
		c, err := URLConfig(u)
		require.NoError(t, err)
		c.QueueConfig.BatchSendDeadline = model.Duration(10 * time.Millisecond)
		cfgs = append(cfgs, c)
	}
	require.NoError(t, f.ApplyConfig(cfgs))
	appendOutputs(t, f, 5, 3, time.Now().Add(time.Second))
	require.Eventually(t, func() bool { f.rs.Notify(); return asked() == len(urls) }, 60*time.Second, 20*time.Millisecond, "every queue sends, and hangs")

	start := time.Now()
	require.NoError(t, f.ApplyConfig(nil))
	took := time.Since(start)
	t.Logf("a reload removing %d queues to upstreams not answering took %s at a flush deadline of %s", len(urls), took.Round(time.Millisecond), flushDeadline)
	require.Less(t, took, 2*flushDeadline, "one deadline, not one per queue (slack for a loaded machine)")
	require.NoError(t, f.ApplyConfig(nil), "the next reload waits for the stops")
	require.Contains(t, logs.String(), `msg="Remote write reload stopped its queues" queues=3`)
	for _, u := range urls {
		var said bool
		for _, l := range strings.Split(logs.String(), "\n") {
			said = said || (strings.Contains(l, "level=INFO") && strings.Contains(l, "url="+u+" ") && strings.Contains(l, "flush_deadline=1s"))
		}
		require.True(t, said, "no line names the stop of %s and its deadline:\n%s", u, logs.String())
	}
}
