package web

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/omen-sidecar/omen/internal/freeport"
	"github.com/omen-sidecar/omen/internal/omenbin"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// omenBuild builds omen once per test binary. It was built for every omen
// a test started, five times a run, each a link of up to 23 s on two
// loaded cores, in one of make test's longest packages.
var omenBuild omenbin.Builder

// TestMain removes the binary omenBuild built.
func TestMain(m *testing.M) {
	code := m.Run()
	omenBuild.Remove()
	os.Exit(code)
}

// startOmen runs `omen serve` on a free local port with a fresh TSDB,
// stopping it in t's cleanup. It returns the server's base URL once
// /-/ready answers 200.
func startOmen(t *testing.T) string {
	t.Helper()
	return startOmenUnder(t, "")
}

// startOmenUnder is startOmen with more flags, for an omen that serves
// under the route prefix path ("/omen", "" for none; args set the flags
// that put it there): it is ready once path+"/-/ready" answers, and the
// URL returned ends in path.
func startOmenUnder(t *testing.T, path string, args ...string) string {
	t.Helper()
	return startOmenAs(t, "", path, args...)
}

// startOmenAs is startOmenUnder for an omen whose --web.config.file (in
// args) asks for the credentials userinfo ("user:password@"): it probes
// /-/ready with them, and the URL returned carries them.
func startOmenAs(t *testing.T, userinfo, path string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	bin, err := omenBuild.Path()
	require.NoError(t, err)

	port, err := freeport.Port()
	require.NoError(t, err)
	addr := "127.0.0.1:" + strconv.Itoa(port)

	var logs bytes.Buffer
	cmd := exec.Command(bin, append([]string{"serve", "--web.listen-address=" + addr, "--storage.tsdb.path=" + filepath.Join(dir, "data")}, args...)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	// exited is closed once omen has exited, with its error in waitErr:
	// a channel the wait below and the cleanup both read (one value sent
	// on it, taken by the wait when omen exited before it was ready, left
	// the cleanup waiting for ever, the test then ended by go test's
	// timeout 10 minutes later).
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("omen log:\n%s", logs.String())
		}
	})

	base := "http://" + userinfo + addr + path
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("omen exited before ready: %v\n%s", waitErr, logs.String())
		case <-deadline:
			t.Fatalf("omen not ready after 60s:\n%s", logs.String())
		case <-tick.C:
			resp, err := http.Get(base + "/-/ready")
			if err != nil {
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
	}
}

// remoteWrite sends every series the fake generates, sampled every step over
// the last span up to now, to omen's remote-write 1.0 endpoint.
func remoteWrite(t *testing.T, base string, series []fakeSeries, now time.Time, span, step time.Duration) {
	t.Helper()
	var req prompb.WriteRequest
	end := now.UnixMilli()
	for _, s := range series {
		ts := prompb.TimeSeries{}
		for k, v := range s.labels {
			ts.Labels = append(ts.Labels, prompb.Label{Name: k, Value: v})
		}
		sort.Slice(ts.Labels, func(i, j int) bool { return ts.Labels[i].Name < ts.Labels[j].Name })
		for ms := end - span.Milliseconds(); ms <= end; ms += step.Milliseconds() {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: ms, Value: s.at(float64(ms) / 1000)})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	require.NoError(t, err)
	hr.Header.Set("Content-Encoding", "snappy")
	hr.Header.Set("Content-Type", "application/x-protobuf")
	hr.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(hr)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Less(t, resp.StatusCode, 300, "remote write: %s", body)
}
