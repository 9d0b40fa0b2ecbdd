package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/prometheus/tsdb/fileutil"

	"github.com/stretchr/testify/require"
)

func TestParseFeatures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   map[string]bool
		err    string
	}{
		{"none", nil, map[string]bool{}, ""},
		{"one", []string{"created-timestamp-zero-ingestion"}, map[string]bool{"created-timestamp-zero-ingestion": true}, ""},
		{"comma separated, spaces and empties", []string{" created-timestamp-zero-ingestion ,,"}, map[string]bool{"created-timestamp-zero-ingestion": true}, ""},
		{"repeated", []string{"created-timestamp-zero-ingestion", "created-timestamp-zero-ingestion"}, map[string]bool{"created-timestamp-zero-ingestion": true}, ""},
		{"unknown", []string{"created-timestamp-zero-ingestion,exemplar-storage"}, nil, `unknown feature "exemplar-storage"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFeatures(tc.values)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestFlagValues(t *testing.T) {
	app := kingpin.New("omen", "")
	registerServe(app, registerLogFlags(app))
	_, err := app.Parse([]string{"serve", "--storage.tsdb.path=/var/omen", "--remote-write.url=https://u:s3cret@mimir.example/api/v1/push", "--remote-write.url=http://plain.example/push"})
	require.NoError(t, err)
	m := flagValues(app.Model().Flags, app.GetCommand("serve").Model().Flags)
	require.Equal(t, "/var/omen", m["storage.tsdb.path"])
	require.Equal(t, "info", m["log.level"])
	require.NotContains(t, m["remote-write.url"], "s3cret")
	require.Contains(t, m["remote-write.url"], "https://u:xxxxx@mimir.example/api/v1/push")
	require.Contains(t, m["remote-write.url"], "http://plain.example/push")
}

// TestServeFlagsRefused: values the components would otherwise replace by
// their defaults without a word are refused before anything starts.
func TestServeFlagsRefused(t *testing.T) {
	for _, arg := range []string{
		"--web.max-connections=-1", "--write.max-inflight-requests=-1", "--write.max-inflight-bytes=0", "--web.max-request-bytes=0",
		"--write.max-series-per-request=0", "--web.shutdown-grace=-1s", "--web.read-timeout=0s",
		"--storage.remote.flush-deadline=-1s", "--output.score-floor=NaN", "--backfill.max-age=-1h",
		"--query.max-concurrency=0", "--storage.remote.read-max-bytes-in-frame=0", "--storage.remote.read-sample-limit=-1",
		"--web.listen-address=", "--query.timeout=0s", "--detect.queue-size=0", "--forecast.interval=0s", "--snapshot.interval=0s", "--detect.stale-after=0s", "--detect.shutdown-drain=0s", "--snapshot.shutdown-timeout=0s", "--detect.workers=-1", "--detect.workers=1025",
	} {
		app := kingpin.New("omen", "")
		cmd := registerServe(app, registerLogFlags(app))
		if _, err := app.Parse([]string{"serve", arg, "--storage.tsdb.path=" + t.TempDir(), "--web.listen-address=127.0.0.1:0"}); err != nil {
			continue // refused by the flag's own parsing
		}
		// Accepted, it would serve until the context ends, and return nil.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cmd.run(ctx)
		cancel()
		require.Error(t, err, arg)
		require.NotContains(t, err.Error(), "TSDB", arg)
	}
}

// TestSecondServeLeavesTheFirstAlone: a second omen on a data directory in
// use stops before it touches anything there. It rewrote the first's
// queries.active (mapped by its query tracker), which then died of SIGBUS
// at its next query, and only then failed on the TSDB's lock.
func TestSecondServeLeavesTheFirstAlone(t *testing.T) {
	dir := t.TempDir()
	held, _, err := fileutil.Flock(filepath.Join(dir, "omen.lock")) // the first omen's
	require.NoError(t, err)
	defer held.Release()
	active := filepath.Join(dir, "queries.active")
	require.NoError(t, os.WriteFile(active, []byte("the first's"), 0o644))

	app := kingpin.New("omen", "")
	cmd := registerServe(app, registerLogFlags(app))
	_, err = app.Parse([]string{"serve", "--storage.tsdb.path=" + dir, "--web.listen-address=127.0.0.1:0", "--query.max-concurrency=1"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = cmd.run(ctx)
	require.ErrorContains(t, err, "another omen uses it")
	b, err := os.ReadFile(active)
	require.NoError(t, err)
	require.Equal(t, "the first's", string(b))
}

// TestTSDBOpenFailureClosesForwardingLog: when the TSDB does not open, the
// forwarding log (opened first, once the server answers) is closed too: its
// queues and log reader ran on, never stopped.
func TestTSDBOpenFailureClosesForwardingLog(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(data, 0o777))
	require.NoError(t, os.WriteFile(filepath.Join(data, "wal"), nil, 0o644)) // the TSDB cannot open
	app := kingpin.New("omen", "")
	cmd := registerServe(app, registerLogFlags(app))
	_, err := app.Parse([]string{"serve", "--storage.tsdb.path=" + data, "--web.listen-address=127.0.0.1:0",
		"--remote-write.url=http://127.0.0.1:1/api/v1/write", "--log.level=error"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.ErrorContains(t, cmd.run(ctx), "TSDB")
	require.Eventually(t, func() bool {
		buf := make([]byte, 1<<22)
		st := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(st, "storage/remote.(*QueueManager)") && !strings.Contains(st, "storage/remote.(*Watcher)")
	}, 5*time.Second, 50*time.Millisecond, "the forwarding queues stopped")
}

// TestServeBadConfigExits2: a --config.file that does not load stops the
// start with exit code 2, as Prometheus's does (`prometheus
// --config.file=bad.yml` exits 2 after "Error loading config"); omen
// exited 1, as for a failure at its work (a TSDB that does not open), and
// a supervisor or a script could not tell the two apart.
func TestServeBadConfigExits2(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body string }{
		{"bad PromQL", "derived:\n  - name: a\n    expr: sum(\n"},
		{"unknown field", "defaults:\n  directon: up\n"},
		{"missing", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "omen.yml")
			_ = os.Remove(path)
			if tc.body != "" {
				require.NoError(t, os.WriteFile(path, []byte(tc.body), 0o644))
			}
			code := runMain([]string{"serve", "--log.level=error", "--config.file", path,
				"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", "127.0.0.1:0"})
			require.Equal(t, 2, code)
		})
	}
}
