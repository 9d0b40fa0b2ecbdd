package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/syncbuf"
)

// TestServeLogComponents: the lines of the web server (listening, refused
// remote writes) carry component=web and those of the remote-write
// forwarder component=remote, as Prometheus's do. They had none, so the
// forwarder's "replaying WAL, this may take a while" read as the TSDB's,
// and an operator filtering by component (a Loki or Elasticsearch query)
// missed omen's own warnings about its senders.
func TestServeLogComponents(t *testing.T) {
	var logs syncbuf.Buffer
	app := kingpin.New("omen", "")
	lc := registerLogFlags(app)
	lc.cfg.Writer = &logs // omen's own logger, as the flags make it
	cmd := registerServe(app, lc)
	_, err := app.Parse([]string{"serve", "--storage.tsdb.path=" + t.TempDir(), "--web.listen-address=127.0.0.1:0",
		"--remote-write.url=http://127.0.0.1:1/api/v1/write", "--storage.remote.flush-deadline=1s", "--no-auto-gomemlimit"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Fatal("omen serve did not stop")
		}
	}()

	listening := regexp.MustCompile(`msg="Listening on".* address=(\S+)`)
	var addr string
	require.Eventually(t, func() bool {
		m := listening.FindStringSubmatch(logs.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil && strings.Contains(logs.String(), "Ready: scoring")
	}, 30*time.Second, 20*time.Millisecond, logs.String())
	resp, err := http.Post("http://"+addr+"/api/v1/write", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "Remote write rejected") }, 10*time.Second, 20*time.Millisecond)

	line := func(msg string) string {
		for l := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(l, msg) {
				return l
			}
		}
		t.Fatalf("no line %q in\n%s", msg, logs.String())
		return ""
	}
	require.Contains(t, line(`msg="Listening on"`), "component=web")
	require.Contains(t, line(`msg="Remote write rejected`), "component=web")
	require.Contains(t, line("forward/wal"), "component=remote")
}
