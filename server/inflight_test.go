package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestInflightCancel: after a shutdown whose grace ran out, Cancel ends the
// requests still running (their context is cancelled) and returns once
// their handlers have, so the storage they read closes after them.
func TestInflightCancel(t *testing.T) {
	in := NewInflight()
	started, ended := make(chan struct{}), make(chan error, 1)
	srv := httptest.NewUnstartedServer(in.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // a long query
		time.Sleep(50 * time.Millisecond)
		ended <- r.Context().Err()
	})))
	srv.Config.BaseContext = in.BaseContext
	srv.Start()
	defer srv.Close()
	go func() {
		if resp, err := http.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, srv.Config.Shutdown(ctx), context.DeadlineExceeded, "the query outlives the grace")
	require.True(t, in.Cancel(5*time.Second))
	select {
	case err := <-ended:
		require.ErrorIs(t, err, context.Canceled)
	default:
		t.Fatal("Cancel returned before the handler did")
	}
}

// TestInflightCancelWaits: Cancel reports true at once with no request
// running, false while a handler that ignores its context outlives the
// wait, and true once it has returned, a second Cancel waiting for it.
func TestInflightCancelWaits(t *testing.T) {
	in := NewInflight()
	require.True(t, in.Cancel(0), "nothing running")

	in = NewInflight()
	started, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(in.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release // deaf to its context
	})))
	defer srv.Close()
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-started
	require.False(t, in.Cancel(time.Millisecond), "the handler is still running")
	waited := make(chan bool)
	go func() { waited <- in.Cancel(time.Hour) }()
	close(release)
	require.True(t, <-waited)
	require.NoError(t, <-got)
}
