package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Inflight tracks the requests being served, so that a shutdown can cancel
// those still running when its grace is over and wait for them before the
// storage they read is closed. http.Server.Shutdown returns at its deadline
// with handlers still running: a long query then read the TSDB while it
// closed ("ChunkDiskMapper closed"), reading chunks being unmapped.
//
// A request that reaches Wrap once Cancel has begun is refused, not served:
// http.Server.Close does not wait for the handlers it has started, and
// what runs before Wrap (the basic auth's bcrypt comparisons, one at a
// time, which a flood of them makes outlast any grace) held requests that
// were then served after Cancel returned, writing to the TSDB being closed.
type Inflight struct {
	mu     sync.Mutex
	n      int           // requests being served
	closed bool          // Cancel has begun: Wrap admits no more
	idle   chan struct{} // closed when n comes to 0 while Cancel waits
	ctx    context.Context
	cancel context.CancelFunc
}

// NewInflight returns an Inflight whose BaseContext is live until Cancel.
func NewInflight() *Inflight {
	ctx, cancel := context.WithCancel(context.Background())
	return &Inflight{ctx: ctx, cancel: cancel}
}

// BaseContext is the http.Server's BaseContext: every request's context
// derives from it.
func (i *Inflight) BaseContext(net.Listener) context.Context { return i.ctx }

// Wrap counts the requests h serves; once Cancel has begun it answers 503
// (which Prometheus's remote write retries) without calling h.
func (i *Inflight) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.mu.Lock()
		if i.closed {
			i.mu.Unlock()
			w.Header().Set("Connection", "close")
			http.Error(w, "503 Service Unavailable: omen is shutting down", http.StatusServiceUnavailable)
			return
		}
		i.n++
		i.mu.Unlock()
		defer i.leave()
		h.ServeHTTP(w, r)
	})
}

func (i *Inflight) leave() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.n--; i.n == 0 && i.idle != nil {
		close(i.idle)
		i.idle = nil
	}
}

// Cancel cancels the context of every request and waits up to wait for
// their handlers to return; it reports whether they all did. Wrap serves
// no request after Cancel has begun.
func (i *Inflight) Cancel(wait time.Duration) bool {
	i.cancel()
	i.mu.Lock()
	i.closed = true
	if i.n == 0 {
		i.mu.Unlock()
		return true
	}
	if i.idle == nil {
		i.idle = make(chan struct{})
	}
	idle := i.idle
	i.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}
