// Package ready tells whether a server the tests started answers its
// readiness endpoint (omen's, Prometheus's and Alertmanager's /-/ready
// alike), for tests to poll while it starts.
package ready

import (
	"net/http"
	"time"
)

// client bounds one poll: a server that accepted the connection but hangs
// (still replaying, stopped by a debugger) is not ready, and the caller's
// poll goes on instead of blocking on it.
var client = &http.Client{Timeout: 2 * time.Second}

// OK reports whether GET base+"/-/ready" answered 200; false while nothing
// listens there yet, or it answers another status.
func OK(base string) bool {
	resp, err := client.Get(base + "/-/ready")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
