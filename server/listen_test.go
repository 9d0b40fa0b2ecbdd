package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// twoListeners serves "ok" on two listeners that share 2 connection slots.
func twoListeners(t *testing.T) (*http.Server, *Listeners, chan error) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ls, err := Listen(nil, nil, srv, []string{"127.0.0.1:0", "127.0.0.1:0"}, "", 2)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- ls.Serve() }()
	return srv, ls, served
}

// TestMaxConnections: at most maxConns connections are open at once across
// the listeners; one more is accepted when another closes, and a shutdown
// does not wait on a listener blocked for a slot.
func TestMaxConnections(t *testing.T) {
	srv, ls, served := twoListeners(t)
	addr := func(i int) string { return ls.ls[i].Addr().String() }

	// Two idle connections, one on each listener, take both slots.
	var held []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", addr(i))
		require.NoError(t, err)
		held = append(held, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
	}
	third := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr(0) + "/")
		if err != nil {
			third <- 0
			return
		}
		resp.Body.Close()
		third <- resp.StatusCode
	}()
	select {
	case code := <-third:
		t.Fatalf("a third connection was served (%d) while two were open", code)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, held[1].Close())
	select {
	case code := <-third:
		require.Equal(t, http.StatusOK, code)
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not served once a slot was free")
	}

	// Both slots taken again: Close returns and Serve ends all the same.
	c, err := net.Dial("tcp", addr(1))
	require.NoError(t, err)
	defer c.Close()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, srv.Close())
	select {
	case err := <-served:
		require.ErrorIs(t, err, http.ErrServerClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the server closed")
	}
	held[0].Close()
}

// TestMaxConnectionsIdleListenerHoldsNone: a listener waiting for a
// connection holds no slot: with two listeners and two slots, one open
// connection left the other slot to the idle listener, and a second
// client of the first waited.
func TestMaxConnectionsIdleListenerHoldsNone(t *testing.T) {
	srv, ls, _ := twoListeners(t)
	defer srv.Close()
	u := "http://" + ls.ls[1].Addr().String() + "/"
	keep := &http.Client{}
	resp, err := keep.Get(u) // stays open, kept alive
	require.NoError(t, err)
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	resp, err = (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}).Get(u)
	require.NoError(t, err, "one of two slots in use")
	resp.Body.Close()
	keep.CloseIdleConnections()
}

// TestClientConnectionErrorsSpaced: every connection that failed its TLS
// handshake (a TCP health check of a load balancer, a port scanner, a
// client speaking plain HTTP), or its HTTP/2 preface, was a warning line
// of the HTTP server's own, without limit: 300 such connections, 300
// lines. Each kind is one warning per interval with the count since, and
// the rest at debug. Other messages of the server's error log stay
// warnings.
func TestClientConnectionErrorsSpaced(t *testing.T) {
	for _, tc := range []struct {
		level       slog.Level
		warn, debug int // of each kind
	}{
		{slog.LevelInfo, 1, 0},
		{slog.LevelDebug, 1, 19},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"tls-cert.pem", "tls-key.pem"} {
				b, err := os.ReadFile(filepath.Join("testdata", f))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o600))
			}
			webCfg := filepath.Join(dir, "web.yml")
			require.NoError(t, os.WriteFile(webCfg, []byte("tls_server_config:\n  cert_file: tls-cert.pem\n  key_file: tls-key.pem\n"), 0o600))
			rec := &recorder{level: tc.level}
			logger := slog.New(rec)
			srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 10 * time.Second}
			ls, err := Listen(logger, prometheus.NewRegistry(), srv, []string{"127.0.0.1:0"}, webCfg, 0)
			require.NoError(t, err)
			served := make(chan error, 1)
			go func() { served <- ls.Serve() }()
			t.Cleanup(func() {
				require.NoError(t, srv.Close())
				<-served
			})
			addr := ls.ls[0].Addr().String()
			for range 20 {
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				require.NoError(t, c.Close())
				// The test's certificate is self-signed: its chain is
				// not what is tested.
				tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
				require.NoError(t, err)
				_, err = tc.Write([]byte("GARBAGE\r\n\r\nNOT A PREFACE, 24 BYTES+\r\n"))
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, tc) // until the server hangs up
				require.NoError(t, tc.Close())
			}
			// The server's other complaints are not spaced.
			srv.ErrorLog.Printf("http: panic serving 1.2.3.4:5: boom")
			srv.ErrorLog.Printf("http: panic serving 1.2.3.4:5: boom")
			for _, msg := range []string{"http: TLS handshake error", "http2: server: error reading preface"} {
				require.Eventually(t, func() bool {
					w, _ := rec.count(slog.LevelWarn, msg)
					d, _ := rec.count(slog.LevelDebug, msg)
					return w+d == tc.warn+tc.debug
				}, 10*time.Second, 10*time.Millisecond, "%s\n%s", msg, rec)
				time.Sleep(100 * time.Millisecond) // none more
				w, first := rec.count(slog.LevelWarn, msg)
				require.Equal(t, tc.warn, w, "%s\n%s", msg, rec)
				require.Equal(t, 1, first, "%s\n%s", msg, rec)
				d, _ := rec.count(slog.LevelDebug, msg)
				require.Equal(t, tc.debug, d, "%s\n%s", msg, rec)
			}
			panics, _ := rec.count(slog.LevelWarn, "http: panic serving")
			require.Equal(t, 2, panics, "%s", rec)
		})
	}
}

// recorder is a slog.Handler keeping the records at or above level, for
// the server's goroutines and the test to share.
type recorder struct {
	level slog.Level
	mu    sync.Mutex
	rs    []slog.Record
}

func (h *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rs = append(h.rs, r.Clone())
	return nil
}

func (h *recorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recorder) WithGroup(string) slog.Handler      { return h }

// count returns how many records at level start with msg, and how many of
// those say they are the first failure since the last warning.
func (h *recorder) count(level slog.Level, msg string) (n, first int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rs {
		if r.Level != level || !strings.HasPrefix(r.Message, msg) {
			continue
		}
		n++
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "failures_since_last_warning" && a.Value.Int64() == 1 {
				first++
			}
			return true
		})
	}
	return n, first
}

func (h *recorder) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range h.rs {
		fmt.Fprintf(&b, "%s %s\n", r.Level, r.Message)
	}
	return b.String()
}
