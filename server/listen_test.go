package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

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
