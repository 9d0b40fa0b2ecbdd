package server

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Inflight tracks the requests being served, so that a shutdown can cancel
// those still running when its grace is over and wait for them before the
// storage they read is closed. http.Server.Shutdown returns at its deadline
// with handlers still running: a long query then read the TSDB while it
// closed ("ChunkDiskMapper closed"), reading chunks being unmapped.
type Inflight struct {
	n      atomic.Int64
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

// Wrap counts the requests h serves.
func (i *Inflight) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.n.Add(1)
		defer i.n.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// Cancel cancels the context of every request and waits up to wait for
// their handlers to return; it reports whether they all did.
func (i *Inflight) Cancel(wait time.Duration) bool {
	i.cancel()
	deadline := time.Now().Add(wait)
	for i.n.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
