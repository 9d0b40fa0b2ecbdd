package e2e

import (
	"bytes"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// TestLifecycle covers the process around the handlers: bad input never
// takes omen down, reloads keep a good configuration over a bad one,
// SIGTERM shuts down cleanly, and what was acknowledged is there after a
// restart. /metrics passes `promtool check metrics`.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "omen.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("defaults: {direction: up}\n"), 0o644))
	omen := startOmen(t, dir, "--config.file="+cfgFile, "--web.enable-lifecycle")

	now := time.Now()
	ms := now.UnixMilli()
	code, body := remoteWriteV1(t, omen.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "kept"}},
		Samples: []prompb.Sample{{Timestamp: ms - 1000, Value: 1}, {Timestamp: ms, Value: math.NaN()}},
	}}})
	require.Equal(t, http.StatusNoContent, code, body)

	// The bad-input battery against the real binary.
	for _, tc := range []struct {
		name string
		body []byte
		code int
	}{
		{"truncated snappy", snappy.Encode(nil, bytes.Repeat([]byte("abcdefgh"), 100))[:20], 400},
		{"garbage protobuf", snappy.Encode(nil, []byte{0xff, 0xff, 0xff, 0xff}), 400},
		{"empty", nil, 400},
	} {
		r, err := http.NewRequest(http.MethodPost, omen.URL+"/api/v1/write", bytes.NewReader(tc.body))
		require.NoError(t, err)
		r.Header.Set("Content-Encoding", "snappy")
		r.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err, tc.name)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, tc.code, resp.StatusCode, "%s: %s", tc.name, b)
	}
	for _, tc := range []struct {
		ls   []prompb.Label
		code int
	}{
		{[]prompb.Label{{Name: "job", Value: "x"}}, http.StatusBadRequest},
		{[]prompb.Label{{Name: "__name__", Value: "a"}, {Name: "a", Value: "1"}, {Name: "a", Value: "2"}}, http.StatusBadRequest},
		{[]prompb.Label{{Name: "a", Value: "1"}, {Name: "__name__", Value: "a"}, {Name: "a", Value: "2"}}, http.StatusBadRequest},
		// Unsorted, as vmagent sends a target's labels: sorted and
		// stored, as Prometheus's receiver does.
		{[]prompb.Label{{Name: "z", Value: "1"}, {Name: "__name__", Value: "a"}}, http.StatusNoContent},
	} {
		code, body := remoteWriteV1(t, omen.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: tc.ls, Samples: []prompb.Sample{{Timestamp: ms, Value: 1}}}}})
		require.Equal(t, tc.code, code, "%v: %s", tc.ls, body)
	}
	resp, err := http.Get(omen.URL + "/-/healthy")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Reload: a bad file keeps the old configuration and says why.
	require.NoError(t, os.WriteFile(cfgFile, []byte("defaults: {direction: sideways}\n"), 0o644))
	code, msg := postEmpty(t, omen.URL+"/-/reload")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, msg, `defaults.direction "sideways"`)
	require.NoError(t, os.WriteFile(cfgFile, []byte("defaults: {direction: down}\n"), 0o644))
	code, msg = postEmpty(t, omen.URL+"/-/reload")
	require.Equal(t, http.StatusOK, code, msg)
	// SIGHUP re-reads too; a bad file must not stop the process.
	require.NoError(t, os.WriteFile(cfgFile, []byte("{{{"), 0o644))
	require.NoError(t, omen.cmd.Process.Signal(syscall.SIGHUP))

	// /metrics is valid for promtool and carries the ingest metrics.
	waitFor(t, 10*time.Second, "failed reload visible in metrics", func() bool {
		return bytes.Contains(metricsText(t, omen.URL), []byte("omen_config_last_reload_successful 0"))
	})
	text := metricsText(t, omen.URL)
	for _, m := range []string{
		`omen_remote_write_samples_received_total{type="float"}`,
		`omen_remote_write_samples_appended_total{type="float"} 3`, // "kept" and the unsorted series
		`omen_remote_write_samples_rejected_total{reason="invalid_labels",type="float"} 3`,
		`omen_http_requests_total{code="400",handler="/api/v1/write"} 6`,
		`omen_http_request_duration_seconds_bucket{handler="/api/v1/write"`,
		`omen_tsdb_head_series `,
		`omen_build_info{`,
		`prometheus_tsdb_head_series `,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		require.Contains(t, string(text), m)
	}
	promtool := need(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		// promtool exits 3 for lint findings (1 for a parse error). The only
		// findings allowed are on the TSDB's and PromQL engine's own
		// prometheus_* families, whose names are Prometheus's to keep and
		// which Prometheus's own /metrics has too.
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, 3, ee.ExitCode(), "promtool check metrics:\n%s", out)
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			require.True(t, strings.HasPrefix(line, "prometheus_"), "promtool check metrics finding on omen's own metrics: %s", line)
		}
	}

	// Two input series were stored, kept and the unsorted one (as a{z="1"});
	// the rest are the pipeline's outputs for them (labelled for="kept",
	// for="a").
	res, err := query(t, omen.URL, `count({__name__=~".+", for=""})`, now)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, 2.0, res[0].F())
	res, err = query(t, omen.URL, `a{z="1"}`, now)
	require.NoError(t, err)
	require.Len(t, res, 1, "the unsorted series, stored sorted")

	// SIGTERM: a clean exit, and the data is there after a restart.
	omen.Stop()
	require.Equal(t, 0, omen.cmd.ProcessState.ExitCode())
	require.NoError(t, os.WriteFile(cfgFile, []byte(""), 0o644))
	omen = startOmen(t, dir, "--config.file="+cfgFile)
	res, err = query(t, omen.URL, "kept", now.Add(-500*time.Millisecond))
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, 1.0, res[0].F())
}

func metricsText(t testing.TB, base string) []byte {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

// TestSIGHUPDuringShutdown: a SIGHUP (logrotate, config management) while
// omen shuts down killed it (exit 129): the handler was removed at the
// start of the shutdown, and SIGHUP's default action ends the process, the
// TSDB not closed and the final snapshot not written.
func TestSIGHUPDuringShutdown(t *testing.T) {
	omen := startOmen(t, "", "--web.shutdown-grace=3s")
	// A request whose body never ends holds the shutdown for its grace.
	conn, err := net.Dial("tcp", omen.Addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\nab"))
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, omen.cmd.Process.Signal(syscall.SIGTERM))
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, omen.cmd.Process.Signal(syscall.SIGHUP))
	select {
	case <-omen.done:
	case <-time.After(30 * time.Second):
		t.Fatal("omen did not stop")
	}
	ws := omen.cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.False(t, ws.Signaled(), "killed by %v", ws.Signal())
	require.Equal(t, 0, ws.ExitStatus())
	b, err := os.ReadFile(omen.log)
	require.NoError(t, err)
	require.Contains(t, string(b), "omen stopped")
}

// TestFatalErrorIsLogged: the reason omen serve stops went to stderr as a
// plain line after the JSON logs, with no level: log pipelines that parse
// JSON, or alert on errors, missed it.
func TestFatalErrorIsLogged(t *testing.T) {
	out, err := exec.Command(omenBinary(t), "--log.format=json", "serve", "--config.file=/nonexistent/omen.yml",
		"--storage.tsdb.path="+t.TempDir(), "--web.listen-address=127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 2, ee.ExitCode(), "a configuration that does not load, as Prometheus's")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines {
		require.True(t, strings.HasPrefix(l, "{"), "not JSON: %s", l)
	}
	require.Contains(t, lines[len(lines)-1], `"level":"ERROR"`)
	require.Contains(t, lines[len(lines)-1], "nonexistent")
}

// TestQuit: POST /-/quit stops omen gracefully with --web.enable-lifecycle,
// as Prometheus's does (omen answered 404: scripts that stop Prometheus so
// did not stop omen).
func TestQuit(t *testing.T) {
	omen := startOmen(t, "", "--web.enable-lifecycle")
	code, body := postEmpty(t, omen.URL+"/-/quit")
	require.Equal(t, http.StatusOK, code, body)
	select {
	case <-omen.done:
	case <-time.After(30 * time.Second):
		t.Fatal("omen did not stop")
	}
	require.Equal(t, 0, omen.cmd.ProcessState.ExitCode())
	b, err := os.ReadFile(omen.log)
	require.NoError(t, err)
	require.Contains(t, string(b), "omen stopped")
}
