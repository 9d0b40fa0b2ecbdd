package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// FuzzWebConfig feeds the web configuration file (exporter-toolkit's
// format, which omen reads itself, see WebConfig) at start and at a
// runtime re-read. At start, whatever the bytes, LoadWebConfig errs or
// gives a configuration whose middleware answers an exempt path without
// credentials, and any other path 401 when it has users. At a re-read
// over a configuration with users and TLS, a file that does not load or
// would turn either off leaves them in force: never a panic, never a
// door opened by a half-written file.
func FuzzWebConfig(f *testing.F) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(f, err)
	cert, err := filepath.Abs("testdata/tls-cert.pem")
	require.NoError(f, err)
	key, err := filepath.Abs("testdata/tls-key.pem")
	require.NoError(f, err)
	tlsCfg := "tls_server_config:\n  cert_file: " + cert + "\n  key_file: " + key + "\n"
	users := "basic_auth_users:\n  alice: " + string(h) + "\n"
	good := tlsCfg + users
	for _, s := range []string{
		"", users, good,
		users + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n  http2: false\n",
		users + "rate_limit:\n  interval: 1s\n  burst: 2\n",
		"rate_limit:\n  interval: -1s\n  burst: -1\n",
		tlsCfg + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: " + cert + "\n",
		tlsCfg + "  min_version: TLS13\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
		"basic_auth_users:\n  bob: plaintext\n", "basic_auth_users: {}\n", "http_server_config:\n  headers:\n    Set-Cookie: x\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "web.yml")
	base := filepath.Join(dir, "base.yml")
	require.NoError(f, os.WriteFile(base, []byte(good), 0o600))
	baseConf, err := LoadWebConfig(nil, base)
	require.NoError(f, err)
	stamp := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, in []byte) {
		require.NoError(t, os.WriteFile(path, in, 0o600))
		if conf, err := LoadWebConfig(nil, path); err == nil {
			a, err := NewBasicAuth(nil, prometheus.NewRegistry(), conf, HealthyPath)
			if err == nil {
				ok := a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
				for _, p := range []string{HealthyPath, "/metrics"} {
					w := httptest.NewRecorder()
					ok.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
					want := http.StatusOK
					if p != HealthyPath && len(conf.cur.cfg.Users) > 0 {
						want = http.StatusUnauthorized
					}
					if w.Code != want && (p == HealthyPath || w.Code != http.StatusTooManyRequests) {
						t.Fatalf("%s: status %d, want %d", p, w.Code, want)
					}
				}
			}
			if conf.TLSEnabled() {
				_, _ = conf.tlsConfig()
			}
		}

		// The same bytes as a runtime change of the file in force.
		require.NoError(t, os.WriteFile(base, in, 0o600))
		stamp = stamp.Add(time.Second)
		require.NoError(t, os.Chtimes(base, stamp, stamp))
		l, err := baseConf.get()
		require.NoError(t, err)
		require.NotEmpty(t, l.cfg.Users, "basic auth turned off at runtime")
		require.True(t, l.cfg.TLSConfig.IsEnabled(), "TLS turned off at runtime")
		// Back to the configuration of users and TLS, for the next input.
		require.NoError(t, os.WriteFile(base, []byte(good), 0o600))
		stamp = stamp.Add(time.Second)
		require.NoError(t, os.Chtimes(base, stamp, stamp))
		l, err = baseConf.get()
		require.NoError(t, err)
		require.Contains(t, l.cfg.Users, "alice")
	})
}
