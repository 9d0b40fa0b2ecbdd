package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLoadgenInterrupted: a run cut short by SIGINT prints what it
// measured and exits non-zero, so a script does not take it for a whole
// run.
func TestLoadgenInterrupted(t *testing.T) {
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
		// The signal handler is in place before any request is sent.
		once.Do(func() { require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGINT)) })
	}))
	defer srv.Close()
	code := runMain([]string{"loadgen", "--url", srv.URL, "--series", "200", "--rate", "2000", "--duration", "1m", "--no-warmup"})
	require.Equal(t, 1, code)
}
