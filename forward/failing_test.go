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
