package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forward"
	"github.com/omen-sidecar/omen/server"
)

// fakePipeline refuses a configuration whose include names refused, as the
// pipeline refuses a remote_read it cannot take, and records what it
// committed.
type fakePipeline struct{ committed []*config.Config }

func (p *fakePipeline) PrepareConfig(c *config.Config) (func(), error) {
	if slices.Contains(c.Include, `{job="refused"}`) {
		return nil, errors.New(`remote_read: refused by the pipeline`)
	}
	return func() { p.committed = append(p.committed, c) }, nil
}

// queueURLs returns the URLs of the remote-write queues running, from the
// module's per-queue metrics: what the forwarder applied.
func queueURLs(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var urls []string
	for _, mf := range mfs {
		if mf.GetName() != "prometheus_remote_storage_shards_max" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "url" {
					urls = append(urls, lp.GetValue())
				}
			}
		}
	}
	slices.Sort(urls)
	return urls
}

// TestReloadAllOrNothing: a reload whose pipeline step fails leaves the
// remote writes as they were (a reviewer found them changed by a reload
// reported failed), says so in omen_config_last_reload_successful and a log
// line naming the problem; a good reload then applies both.
func TestReloadAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "omen.yml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o644)) }
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()

	write("remote_write:\n  - url: http://127.0.0.1:1/a\n")
	l, err := server.NewConfigLoader(logger, reg, path)
	require.NoError(t, err)
	fwd, err := forward.New(logger, reg, filepath.Join(dir, forward.Dir), nil, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, fwd.Close()) })
	require.NoError(t, l.Apply(func(c *config.Config) error { return fwd.ApplyConfig(c.RemoteWrite) }))
	pl := &fakePipeline{}
	l.OnReload(reloadListener(pl, fwd))
	success := func() float64 {
		v, err := testutil.GatherAndCount(reg, "omen_config_last_reload_successful")
		require.NoError(t, err)
		require.Equal(t, 1, v)
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "omen_config_last_reload_successful" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	require.Equal(t, []string{"http://127.0.0.1:1/a"}, queueURLs(t, reg))

	for _, tc := range []struct {
		name, file string
		err        string   // in the reload's error and its log line; "" for none
		urls       []string // the queues afterwards
		committed  int      // the pipeline's commits afterwards
	}{
		{"the pipeline refuses: remote writes unchanged",
			"include: ['{job=\"refused\"}']\nremote_write:\n  - url: http://127.0.0.1:1/b\n",
			"refused by the pipeline", []string{"http://127.0.0.1:1/a"}, 0},
		{"the remote writes refuse: pipeline unchanged",
			"remote_write:\n  - url: http://127.0.0.1:1/b\n    tls_config: {ca_file: " + filepath.Join(dir, "missing-ca.pem") + "}\n",
			"missing-ca.pem", []string{"http://127.0.0.1:1/a"}, 0},
		{"a remote_write not http(s): refused, named, remote writes unchanged",
			"remote_write:\n  - url: http://127.0.0.1:1/b\n  - url: ftp://127.0.0.1:1/c\n",
			`remote_write[1].url "ftp://127.0.0.1:1/c": want an absolute http(s) URL`, []string{"http://127.0.0.1:1/a"}, 0},
		{"a good reload applies both",
			"remote_write:\n  - url: http://127.0.0.1:1/b\n",
			"", []string{"http://127.0.0.1:1/b"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.file)
			logs.Reset()
			err := l.Reload()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.Equal(t, 0.0, success())
				require.Contains(t, logs.String(), "Configuration reload failed")
				require.Contains(t, logs.String(), strings.ReplaceAll(tc.err, `"`, `\"`)) // logfmt's quoting
			} else {
				require.NoError(t, err)
				require.Equal(t, 1.0, success())
				require.Same(t, l.Config(), pl.committed[len(pl.committed)-1])
			}
			require.Equal(t, tc.urls, queueURLs(t, reg))
			require.Len(t, pl.committed, tc.committed)
		})
	}
}
