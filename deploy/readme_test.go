package deploy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/server"
)

// TestReadmeSecurityExample runs the README's Security example as a reader
// would: its web.yml, beside a certificate and key under the names it gives
// (relative paths are the file's directory's), must load as omen loads
// --web.config.file, and its hash must be that of the password its comment
// names, "change-me"; its prometheus.yml must be a Prometheus configuration
// that reaches omen over TLS with that user, and reads it as Connect
// Prometheus does.
func TestReadmeSecurityExample(t *testing.T) {
	blocks := readmeBlocks(t, "## Security")
	require.Len(t, blocks, 2, "web.yml and prometheus.yml")

	dir := t.TempDir()
	writeSelfSigned(t, filepath.Join(dir, "omen.crt"), filepath.Join(dir, "omen.key"))
	path := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(path, blocks[0], 0o600))
	conf, err := server.LoadWebConfig(nil, path)
	require.NoError(t, err)
	require.True(t, conf.TLSEnabled())
	auth, err := server.NewBasicAuth(nil, prometheus.NewRegistry(), conf, server.HealthyPath)
	require.NoError(t, err)
	srv := httptest.NewServer(auth.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, path, user, pass string
		want                   int
	}{
		{"the documented user and password", "/metrics", "prometheus", "change-me", http.StatusOK},
		{"another password", "/metrics", "prometheus", "change-me-too", http.StatusUnauthorized},
		{"no credentials", "/api/v1/write", "", "", http.StatusUnauthorized},
		{"liveness needs none", server.HealthyPath, "", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			require.NoError(t, err)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, tc.want, resp.StatusCode)
		})
	}

	c := loadPromConfig(t, blocks[1])
	require.Len(t, c.RemoteWriteConfigs, 1)
	require.Len(t, c.RemoteReadConfigs, 1)
	connect := loadPromConfig(t, readmeConnect(t)).RemoteReadConfigs[0]
	for _, tc := range []struct {
		url    string
		client commoncfg.HTTPClientConfig
	}{
		{c.RemoteWriteConfigs[0].URL.String(), c.RemoteWriteConfigs[0].HTTPClientConfig},
		{c.RemoteReadConfigs[0].URL.String(), c.RemoteReadConfigs[0].HTTPClientConfig},
	} {
		require.Regexp(t, `^https://omen:9201/api/v1/(write|read)$`, tc.url)
		require.NotNil(t, tc.client.BasicAuth, tc.url)
		require.Equal(t, "prometheus", tc.client.BasicAuth.Username, "%s: the user web.yml lists", tc.url)
		require.NotEmpty(t, tc.client.BasicAuth.PasswordFile, "%s: the password from a file", tc.url)
		require.NotEmpty(t, tc.client.TLSConfig.CAFile, "%s: omen's CA", tc.url)
	}
	rr := c.RemoteReadConfigs[0]
	require.Equal(t, connect.ReadRecent, rr.ReadRecent, "read_recent as in Connect Prometheus")
	require.Equal(t, connect.FilterExternalLabels, rr.FilterExternalLabels, "filter_external_labels as in Connect Prometheus")
}

// writeSelfSigned writes a throw-away self-signed certificate for "omen"
// and its key, made for one test: no private key is committed anywhere.
func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "omen"},
		DNSNames:     []string{"omen"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
}

// TestReadmeGoVersion: the Quick start names the Go that go.mod requires
// (a Go older than its go line refuses to build, and Debian 12's
// golang-go is 1.19), not a shorter "1.26" that reads as any 1.26.
func TestReadmeGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	require.NotNil(t, m, "go.mod has a go line")
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, quick, ok := bytes.Cut(readme, []byte("\n## Quick start\n"))
	require.True(t, ok)
	quick, _, _ = bytes.Cut(quick, []byte("\n## "))
	require.Contains(t, string(quick), "Go "+string(m[1])+" or newer", "the Quick start names go.mod's Go")
}

// TestReadmeConnectExternalLabels follows the Quick start on Debian: its
// prometheus.yml sets external_labels monitor: 'example', which remote
// write adds to every series before write_relabel_configs; with the
// Connect Prometheus block's commented labeldrop uncommented as it is, the
// series reach omen without monitor, omen's outputs stay dropped, and
// nothing else changes.
func TestReadmeConnectExternalLabels(t *testing.T) {
	block := string(readmeConnect(t))
	const commented = "      # - action: labeldrop\n      #   regex: 'monitor'\n"
	require.Contains(t, block, commented, "the labeldrop the Quick start says to uncomment")
	block = strings.Replace(block, commented, "      - action: labeldrop\n        regex: 'monitor'\n", 1)
	c := loadPromConfig(t, []byte("global:\n  external_labels:\n    monitor: 'example'\n"+block))
	rw := c.RemoteWriteConfigs[0]
	sent := func(ls labels.Labels) labels.Labels {
		lb := labels.NewBuilder(ls)
		c.GlobalConfig.ExternalLabels.Range(func(l labels.Label) {
			if !ls.Has(l.Name) {
				lb.Set(l.Name, l.Value)
			}
		})
		return lb.Labels()
	}
	for _, ls := range inputs {
		got, keep := keeps(rw.WriteRelabelConfigs, sent(ls))
		require.True(t, keep, "%s must reach omen", ls)
		require.Equal(t, ls, got, "omen stores the series as Prometheus does, without monitor")
	}
	for _, ls := range outputs {
		_, keep := keeps(rw.WriteRelabelConfigs, sent(ls))
		require.False(t, keep, "%s must not be written back to omen", ls)
	}
}
