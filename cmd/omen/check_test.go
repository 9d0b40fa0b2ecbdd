package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		// is read at each request, by a start and a reload alike.
		{"missing ca_file", write("ca.yml", "remote_write:\n  - url: https://mimir.example/api/v1/push\n    tls_config: {ca_file: missing.pem}\n"), "missing.pem"},
		{"missing password_file", write("pw.yml", "remote_write:\n  - url: https://mimir.example/api/v1/push\n    basic_auth: {username: a, password_file: missing}\n"), ""},
		// The warm start's upstream: its client, and the secret files it
		// reads at each request (a missing one is every warm start refused),
		// as promtool checks a scrape's credentials_file.
		{"remote_read missing password_file", write("rr-pw.yml", "remote_read:\n  - url: https://prom.example/api/v1/read\n    basic_auth: {username: a, password_file: missing-pw}\n"), "remote_read[0].basic_auth.password_file: stat " + filepath.Join(dir, "missing-pw")},
		{"remote_read missing credentials_file", write("rr-tok.yml", "remote_read:\n  - url: https://prom.example/api/v1/read\n    authorization: {credentials_file: missing-token}\n"), "remote_read[0].authorization.credentials_file: stat " + filepath.Join(dir, "missing-token")},
		{"remote_read missing ca_file", write("rr-ca.yml", "remote_read:\n  - url: https://prom.example/api/v1/read\n    tls_config: {ca_file: missing-ca.pem}\n"), "missing-ca.pem"},
		{"remote_read two", write("rr-two.yml", "remote_read:\n  - url: https://a.example/api/v1/read\n  - url: https://b.example/api/v1/read\n"), "one upstream at most"},
		{"remote_read", write("rr.yml", "remote_read:\n  - url: https://prom.example/api/v1/read\n    basic_auth: {username: a, password_file: good.yml}\n    headers: {X-Scope-OrgID: team-a}\n"), ""},
		{"remote write", write("rw.yml", "remote_write:\n  - url: https://mimir.example/api/v1/push\n    tls_config: {insecure_skip_verify: true}\n"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			failed := checkConfigs(&out, &errOut, []string{tc.file})
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
	require.Equal(t, 2, checkConfigs(&out, &errOut, []string{good, filepath.Join(dir, "nope.yml"), good, dir}), "every file is checked")
}
