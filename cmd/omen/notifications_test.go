package main

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/ready"
)

// TestNotificationsStreamEndsAtShutdown: through omen's whole HTTP stack,
// /api/v1/notifications/live streams as Prometheus 3's does (200,
// text/event-stream, held open), and a stream left open does not hold up
// the shutdown for --web.shutdown-grace: it ends as the shutdown starts.
// Here the grace is 10 minutes; with the stream open the shutdown waited
// all of it.
func TestNotificationsStreamEndsAtShutdown(t *testing.T) {
	addr := freeAddr(t)
	app := kingpin.New("omen", "")
	cmd := registerServe(app, registerLogFlags(app))
	_, err := app.Parse([]string{"serve", "--storage.tsdb.path=" + t.TempDir(), "--web.listen-address=" + addr,
		"--web.shutdown-grace=10m", "--log.level=error"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.run(ctx) }()
	base := "http://" + addr
	require.Eventually(t, func() bool { return ready.OK(base) }, 30*time.Second, 20*time.Millisecond)

	resp, err := http.Get(base + "/api/v1/notifications/live")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	read := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); read <- err }()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Minute):
		t.Fatal("omen still shutting down 2 minutes on, with a 10m grace: the stream held it")
	}
	require.NoError(t, <-read, "the stream ended, not cut")
}
