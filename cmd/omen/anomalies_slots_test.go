package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAnomaliesAnswerWhileQueriesFillSlots: dashboards' slow PromQL
// queries holding every --query.max-concurrency slot do not keep the
// anomalies API, which reads the scorers' state and not the TSDB, from
// the on-call engineer who opens omen's page: it answers at once. It shared
// those slots, and waited behind the queries until --query.timeout, then
// answered 503.
func TestAnomaliesAnswerWhileQueriesFillSlots(t *testing.T) {
	dir := t.TempDir()
	base := startServe(t, "--storage.tsdb.path="+dir, "--query.max-concurrency=1", "--query.timeout=20s",
		"--query.max-samples=1000000000", "--web.shutdown-grace=0s", "--log.level=error")

	// A query that runs until --query.timeout or its client goes: a
	// subquery of a subquery at 1 ms steps (under the limit of a million
	// steps), counting 420 000 points at each of 420 000.
	slow := `count_over_time(count_over_time(vector(1)[7m:1ms])[7m:1ms])`
	qctx, qcancel := context.WithCancel(context.Background())
	defer qcancel()
	go func() {
		req, _ := http.NewRequestWithContext(qctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(slow), nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	// The tracker lists the queries running in queries.active.
	running := func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "queries.active"))
		return strings.Contains(string(b), "count_over_time")
	}
	require.Eventually(t, running, 10*time.Second, 10*time.Millisecond, "the slow query holds the one slot")

	start := time.Now()
	resp, err := http.Get(base + "/api/v1/anomalies?limit=5")
	require.NoError(t, err)
	_ = resp.Body.Close()
	took := time.Since(start)
	require.True(t, running(), "the slow query still held its slot when the answer came")
	require.Equal(t, http.StatusOK, resp.StatusCode, fmt.Sprintf("after %s", took))
	require.Less(t, took, 5*time.Second)
}
