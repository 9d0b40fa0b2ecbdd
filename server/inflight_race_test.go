package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestInflightAdmitsNothingAfterCancel: a request whose handler has not
// reached Wrap when Cancel begins, held before it by the middleware that
// omen puts outside Wrap (the web configuration's basic auth, its bcrypt
// comparisons one at a time: a flood of them outlasts any grace), is
// refused once it gets there, never served after Cancel reported the
// requests done and the TSDB began to close. It used to be served then:
// a remote write appending to the head being closed.
func TestInflightAdmitsNothingAfterCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	writeWebConfig(t, path, map[string]string{"alice": "pw"}, "")
	conf, err := LoadWebConfig(nil, path)
	require.NoError(t, err)
	auth, err := NewBasicAuth(nil, prometheus.NewRegistry(), conf, HealthyPath)
	require.NoError(t, err)

	in := NewInflight()
	var served atomic.Bool
	returned := make(chan int, 1) // the status the chain answered
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Store(true) })
	chain := auth.Wrap(in.Wrap(inner)) // as serve.go and Listen build it
	entered := make(chan struct{})     // past the server's own shutdown check
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		chain.ServeHTTP(rec, r)
		returned <- rec.code
	}))
	srv.Config.BaseContext = in.BaseContext
	// Another request's bcrypt comparison is under way: this one's
	// (a password not yet verified) waits for it, short of Wrap.
	auth.bcryptMu.Lock()
	srv.Start()
	t.Cleanup(srv.Close)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", nil)
		req.SetBasicAuth("alice", "pw")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	}()
	<-entered

	// serve.go's interrupt, with the grace run out.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, srv.Config.Shutdown(ctx), context.Canceled)
	_ = srv.Config.Close()
	require.True(t, in.Cancel(5*time.Second), "no request in Wrap")
	// The TSDB closes now; the comparison ends.
	auth.bcryptMu.Unlock()
	select {
	case code := <-returned:
		require.False(t, served.Load(), "a request was served after Cancel returned")
		require.Equal(t, http.StatusServiceUnavailable, code)
	case <-time.After(time.Minute):
		t.Fatal("the request never returned")
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// TestInflightCancelRace: requests arriving without pause while the server
// shuts down (no grace) and Cancel runs. Every request served ran wholly
// before Cancel returned: none is still running then, none starts after.
// Run with -race; its failures before the fix were rare (a request between
// the server's own shutdown check and Wrap), hence -count.
func TestInflightCancelRace(t *testing.T) {
	in := NewInflight()
	var cancelled atomic.Bool // Cancel has returned true
	var late atomic.Int64     // handlers running or started after that
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cancelled.Load() {
			late.Add(1)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		if cancelled.Load() {
			late.Add(1)
		}
	})
	srv := httptest.NewUnstartedServer(in.Wrap(inner))
	srv.Config.BaseContext = in.BaseContext
	srv.Start()
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(client.CloseIdleConnections)

	var wg sync.WaitGroup
	var ok atomic.Int64
	stop, flowing := make(chan struct{}), make(chan struct{})
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(srv.URL, "application/x-protobuf", http.NoBody)
				if err != nil {
					continue // the server closed the connection, or refused it
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK && ok.Add(1) == 50 {
					close(flowing)
				}
			}
		})
	}
	// Shut down once requests flow.
	select {
	case <-flowing:
	case <-time.After(time.Minute):
		t.Fatal("no requests served")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Config.Shutdown(ctx); err != nil {
		_ = srv.Config.Close()
	}
	require.True(t, in.Cancel(time.Minute))
	cancelled.Store(true)
	close(stop)
	wg.Wait()
	require.Zero(t, late.Load(), "handlers ran after Cancel returned")
}
