package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/omen-sidecar/omen/internal/freeport"
	"github.com/omen-sidecar/omen/internal/ready"
	"github.com/stretchr/testify/require"
)

// TestCheckConfig: `omen check config` refuses what a start or a reload
// refuses, the remote writes' TLS files included, and says which file and
// why; a valid file passes.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	good := write("good.yml", "include: ['{job=\"api\"}']\nderived:\n  - {name: ratio, expr: sum(up)}\n")
	for _, tc := range []struct {
		name, file string
		want       string // on stderr; empty: passes
	}{
		{"valid", good, ""},
		{"empty", write("empty.yml", ""), ""},
		{"typo", write("typo.yml", "defaults:\n  false_alarm_rat: 0.01\n"), "line 2: field false_alarm_rat not found"},
		{"bad PromQL", write("promql.yml", "derived:\n  - name: a\n    expr: sum(\n"), "line 3: derived[0].expr"},
		{"missing", filepath.Join(dir, "nope.yml"), "no such file"},
		{"a directory", dir, "is a directory"},
		// Loads, but the reload's remote write could not start. A password_file
		// is read at each request, by a start and a reload alike, but every
		// request fails without it: named, as for remote_read below.
		{"missing ca_file", write("ca.yml", "remote_write:\n  - url: https://mimir.example/api/v1/push\n    tls_config: {ca_file: missing.pem}\n"), "missing.pem"},
		{"missing password_file", write("pw.yml", "remote_write:\n  - url: https://mimir.example/api/v1/push\n    basic_auth: {username: a, password_file: missing}\n"), "remote_write[0].basic_auth.password_file: stat " + filepath.Join(dir, "missing")},
		// The warm start's upstream: its client, and the secret files it
		// reads at each request (a missing one is every warm start refused),
		// as promtool checks a scrape's credentials_file.
		{"remote_read missing password_file", write("rr-pw.yml", "remote_read:\n  - url: https://prom.example/api/v1/read\n    basic_auth: {username: a, password_file: missing-pw}\n"), "remote_read[0].basic_auth.password_file: stat " + filepath.Join(dir, "missing-pw")},
		{"remote_read missing credentials_file", write("rr-tok.yml", "remote_read:\n  - url: https://prom.example/api/v1/read\n    authorization: {credentials_file: missing-token}\n"), "remote_read[0].authorization.credentials_file: stat " + filepath.Join(dir, "missing-token")},
		{"remote_read missing ca_file", write("rr-ca.yml", "remote_read:\n  - url: https://prom.example/api/v1/read\n    tls_config: {ca_file: missing-ca.pem}\n"), "missing-ca.pem"},
		{"remote_read two", write("rr-two.yml", "remote_read:\n  - url: https://a.example/api/v1/read\n  - url: https://b.example/api/v1/read\n"), "one upstream at most"},
		{"remote_read", write("rr.yml", "remote_read:\n  - url: https://prom.example/api/v1/read\n    basic_auth: {username: a, password_file: good.yml}\n    headers: {X-Scope-OrgID: team-a}\n"), ""},
		{"remote write", write("rw.yml", "remote_write:\n  - url: https://mimir.example/api/v1/push\n    tls_config: {insecure_skip_verify: true}\n"), ""},
		// Loads, but `omen rules generate` cannot make its rules: passed,
		// and the CI job that ran the check failed at the generation.
		{"capacity horizon within no forecast", write("cap.yml", "alerting:\n  capacity:\n    - {name: Full, for: disk, limit: 1, horizon: 1m}\n"), "rules: alerting.capacity[0] \"Full\": no forecast horizon is within 1m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			failed := checkConfigs(&out, &errOut, []string{tc.file}, false)
			require.Contains(t, out.String(), "Checking "+tc.file)
			if tc.want == "" {
				require.Zero(t, failed, errOut.String())
				require.Contains(t, out.String(), "SUCCESS")
				return
			}
			require.Equal(t, 1, failed)
			require.Contains(t, errOut.String(), "FAILED")
			require.Contains(t, errOut.String(), tc.want)
		})
	}
	var out, errOut strings.Builder
	require.Equal(t, 2, checkConfigs(&out, &errOut, []string{good, filepath.Join(dir, "nope.yml"), good, dir}, false), "every file is checked")
}

// TestCapacityCeilingOfZeroWarned: a capacity ceiling of 0 (limit: 0
// without direction: down) is valid but fires on every series that never
// goes negative: `omen check config` passes it with a warning naming the
// entry, and `omen rules generate` prints the rules with it on stderr.
func TestCapacityCeilingOfZeroWarned(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, capacity, want string }{
		{"ceiling of 0", "{name: DiskFree, for: node_filesystem_avail_bytes, limit: 0}", `alerting.capacity[0] "DiskFree": limit 0 with direction up`},
		{"floor of 0", "{name: DiskFree, for: node_filesystem_avail_bytes, limit: 0, direction: down}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yml")
			require.NoError(t, os.WriteFile(f, []byte("alerting: {capacity: ["+tc.capacity+"]}\n"), 0o644))
			var out, errOut strings.Builder
			require.Zero(t, checkConfigs(&out, &errOut, []string{f}, false), errOut.String())
			require.Contains(t, out.String(), "SUCCESS")
			var rulesOut, rulesErr strings.Builder
			require.NoError(t, generateRules(&rulesOut, &rulesErr, f))
			require.Contains(t, rulesOut.String(), "alert: DiskFree\n")
			if tc.want == "" {
				require.Empty(t, errOut.String())
				require.Empty(t, rulesErr.String())
				return
			}
			require.Equal(t, "  WARNING: "+tc.want, errOut.String()[:len("  WARNING: ")+len(tc.want)])
			require.True(t, strings.HasPrefix(rulesErr.String(), "warning: "+tc.want), rulesErr.String())
		})
	}
}

// TestFarHorizonsWarned: a horizon whose first forecast waits for more
// samples than the TSDB keeps by default (a 1y horizon: 192 steps of a
// 64th of a year) passes `omen check config` with a warning naming the
// selection and the wait; it passed without one and forecast nothing for
// three years. Selections that inherit the defaults' horizons are warned
// of once, at the defaults.
func TestFarHorizonsWarned(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"the default horizons", "{}", nil},
		{"4h, three of them in 12h", "defaults: {forecast_horizons: [5m, 4h]}", nil},
		{"5d, in 15d", "defaults: {forecast_horizons: [5d]}", nil},
		{"a week", "defaults: {forecast_horizons: [1h, 1w]}", []string{
			"defaults.forecast_horizons: the first forecasts at 1w come after 3w of samples (192 steps of 2h37m30s)"}},
		{"a year in an override and a derived input", `
defaults: {forecast_horizons: [1y]}
overrides: [{match: '{a="b"}', direction: up}, {match: '{a="c"}', forecast_horizons: [5m]}, {match: '{a="d"}', forecast_horizons: [5m, 1y]}]
derived: [{name: r, expr: up}, {name: s, expr: up, forecast_horizons: [1y, 5m]}]
`, []string{
			"defaults.forecast_horizons: the first forecasts at 1y come after 3y of samples",
			"overrides[2].forecast_horizons: the first forecasts at 1y",
			"derived[1].forecast_horizons: the first forecasts at 1y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, "omen.yml")
			require.NoError(t, os.WriteFile(f, []byte(tc.file), 0o644))
			var out, errOut strings.Builder
			require.Zero(t, checkConfigs(&out, &errOut, []string{f}, false), errOut.String())
			require.Contains(t, out.String(), "SUCCESS")
			warnings := strings.Count(errOut.String(), "WARNING: ")
			require.Equal(t, len(tc.want), warnings, errOut.String())
			for _, w := range tc.want {
				require.Contains(t, errOut.String(), "  WARNING: "+w)
			}
		})
	}
}

// TestCheckConfigAgreesWithStart: `omen check config` refuses a file that a
// real start of omen serve refuses, and passes one it takes, with one
// difference, promtool's: a secret file (password_file, credentials_file)
// that is not there is refused, in remote_write as in remote_read, though a
// start takes it (it is read at each request, and every request fails
// without it), as `promtool check config` refuses a scrape's missing
// credentials_file that Prometheus starts with. A reload of a running omen
// (started with the remote_read entry every row has) refuses what the
// start refuses.
func TestCheckConfigAgreesWithStart(t *testing.T) {
	dir := t.TempDir()
	const rw, rr = "remote_write:\n  - url: http://127.0.0.1:1/api/v1/write\n", "remote_read:\n  - url: http://127.0.0.1:1/api/v1/read\n"
	running := filepath.Join(dir, "running.yml")
	require.NoError(t, os.WriteFile(running, []byte(rr), 0o644))
	addr := freeAddr(t)
	{
		app := kingpin.New("omen", "")
		cmd := registerServe(app, registerLogFlags(app))
		_, err := app.Parse([]string{"serve", "--config.file=" + running, "--storage.tsdb.path=" + filepath.Join(dir, "running"),
			"--web.listen-address=" + addr, "--web.enable-lifecycle", "--log.level=error"})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- cmd.run(ctx) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
		require.Eventually(t, func() bool { return ready.OK("http://" + addr) }, 20*time.Second, 50*time.Millisecond)
	}
	for i, tc := range []struct {
		name, yml            string
		start, check, syntax bool // refused by a start, by omen check config, with --syntax-only
	}{
		{"valid", rw + rr + "derived:\n  - {name: a, expr: sum(up)}\n", false, false, false},
		{"unknown key", "defaults: {false_alarm_rat: 0.01}\n", true, true, true},
		{"bad PromQL in a derived input", "derived:\n  - {name: a, expr: 'sum('}\n", true, true, true},
		{"a derived input named twice", "derived:\n  - {name: a, expr: sum(up)}\n  - {name: a, expr: sum(up)}\n", true, true, true},
		{"an override given twice", "overrides:\n  - {match: '{job=\"a\"}', direction: up}\n  - {match: '{job=\"a\"}', direction: down}\n", true, true, true},
		{"an override after a wider one", "overrides:\n  - {match: '{job=\"a\"}'}\n  - {match: '{job=\"a\",instance=\"i\"}'}\n", true, true, true},
		{"a remote_write named twice", rw + "    name: x\n  - url: http://127.0.0.1:1/b\n    name: x\n", true, true, true},
		{"a remote_write given twice", rw + "  - url: http://127.0.0.1:1/api/v1/write\n", true, true, false},
		{"remote_write missing ca_file", rw + "    tls_config: {ca_file: missing-ca.pem}\n", true, true, false},
		{"remote_read missing ca_file", rr + "    tls_config: {ca_file: missing-ca.pem}\n", true, true, false},
		{"remote_write missing password_file", rw + "    basic_auth: {username: a, password_file: missing-pw}\n", false, true, false},
		{"remote_read missing password_file", rr + "    basic_auth: {username: a, password_file: missing-pw}\n", false, true, false},
		{"remote_write missing credentials_file", rw + "    authorization: {credentials_file: missing-token}\n", false, true, false},
		{"remote_read missing credentials_file", rr + "    authorization: {credentials_file: missing-token}\n", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yml := tc.yml
			if !strings.Contains(yml, "remote_read") {
				yml = rr + yml // a reload that removed it would be refused
			}
			file := filepath.Join(dir, fmt.Sprintf("%d.yml", i))
			require.NoError(t, os.WriteFile(file, []byte(yml), 0o644))
			require.NoError(t, os.WriteFile(running, []byte(yml), 0o644))
			r, err := http.Post("http://"+addr+"/-/reload", "", nil)
			require.NoError(t, err)
			msg, err := io.ReadAll(r.Body)
			require.NoError(t, err)
			require.NoError(t, r.Body.Close())
			require.Equal(t, tc.start, r.StatusCode != http.StatusOK, "reload: %s", msg)

			var out, errOut strings.Builder
			require.Equal(t, tc.check, checkConfigs(&out, &errOut, []string{file}, false) > 0, "omen check config: %s", errOut.String())
			// --syntax-only refuses what the file itself gets wrong, and
			// takes what only the files it names (not mounted in CI) do.
			require.Equal(t, tc.syntax, checkConfigs(io.Discard, io.Discard, []string{file}, true) > 0, "omen check config --syntax-only")

			// A start that refuses the file returns its error by itself; one
			// that takes it gets ready (past the remote writes' start, where
			// the refusals come) and serves until the context ends. Waited
			// for, not timed: a start given 3s was now and then cancelled
			// under load before it refused the file, and returned nil.
			addr := freeAddr(t)
			app := kingpin.New("omen", "")
			cmd := registerServe(app, registerLogFlags(app))
			_, err = app.Parse([]string{"serve", "--config.file=" + file, "--storage.tsdb.path=" + filepath.Join(dir, fmt.Sprint(i)),
				"--web.listen-address=" + addr, "--log.level=error"})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- cmd.run(ctx) }()
			if tc.start {
				select {
				case err := <-done:
					require.Error(t, err, "omen serve")
					require.NotContains(t, err.Error(), "address already in use", "the start ran into another's port, not the file")
				case <-time.After(time.Minute):
					require.FailNow(t, "omen serve: took the file, still running after a minute")
				}
				return
			}
			deadline := time.Now().Add(time.Minute)
			for !ready.OK("http://" + addr) {
				select {
				case err := <-done:
					require.FailNow(t, "omen serve: refused the file", "%v", err)
				case <-time.After(20 * time.Millisecond):
				}
				require.True(t, time.Now().Before(deadline), "omen serve: not ready after a minute")
			}
			cancel()
			require.NoError(t, <-done, "omen serve")
		})
	}
}

// freeAddr is a loopback address with a port free a moment ago, for a
// server a test must reach by address.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := freeport.Port()
	require.NoError(t, err)
	return "127.0.0.1:" + strconv.Itoa(port)
}
