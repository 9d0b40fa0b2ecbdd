package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// testPKI is a throw-away CA and a server certificate for 127.0.0.1 and
// localhost, made for one test: no private key is committed anywhere.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

func newTestPKI(t testing.TB, dir string) testPKI {
	t.Helper()
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "omen e2e test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "omen"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		caFile:   writePEM("ca.pem", "CERTIFICATE", caDER),
		certFile: writePEM("server.pem", "CERTIFICATE", der),
		keyFile:  writePEM("server-key.pem", "EC PRIVATE KEY", keyDER),
		pool:     pool,
	}
}

// securedOmen is omen behind TLS and basic auth, with a client that trusts
// the test CA.
type securedOmen struct {
	*proc
	client     *http.Client
	user, pass string
}

// do sends a request with (auth true) or without credentials and returns
// the status and body.
func (o *securedOmen) do(t testing.TB, method, path string, body []byte, auth bool, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, o.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if auth {
		req.SetBasicAuth(o.user, o.pass)
	}
	resp, err := o.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// query runs an instant query, at now or at the given Unix milliseconds.
func (o *securedOmen) query(t testing.TB, q string, atMs ...int64) (int, apiResponse) {
	t.Helper()
	v := url.Values{"query": {q}}
	if len(atMs) == 1 {
		v.Set("time", strconv.FormatFloat(float64(atMs[0])/1000, 'f', 3, 64))
	}
	code, body := o.do(t, http.MethodGet, "/api/v1/query?"+v.Encode(), nil, true, nil)
	var r apiResponse
	require.NoError(t, json.Unmarshal([]byte(body), &r), "status %d body %q", code, body)
	return code, r
}

func (o *securedOmen) write(t testing.TB, req *prompb.WriteRequest) (int, string) {
	t.Helper()
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	return o.do(t, http.MethodPost, "/api/v1/write", snappy.Encode(nil, raw), true, map[string]string{
		"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
	})
}

// TestSecurity runs omen with a web config (TLS with a test CA, basic auth
// with a bcrypt hash): every endpoint but /-/healthy refuses a request
// without credentials, the real Prometheus remote-writes over TLS with its
// tls_config and basic_auth, omen's log never carries the password or its
// hash, and --query.max-samples stops a query that would load too much
// with a clear error while omen stays up.
func TestSecurity(t *testing.T) {
	need(t, "prometheus")
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	const user = "prometheus"
	pass := "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-secret"
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	require.NoError(t, err)
	// Relative certificate paths resolve against the web config's directory,
	// as in exporter-toolkit.
	webCfg := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(webCfg, []byte(fmt.Sprintf(`tls_server_config:
  cert_file: server.pem
  key_file: server-key.pem
basic_auth_users:
  %s: %s
`, user, hash)), 0o600))

	port := freePort(t)
	p := start(t, "omen", port, omenBinary(t), "serve",
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--log.level=debug", "--web.config.file="+webCfg, "--query.max-samples=1000", "--web.enable-lifecycle")
	p.URL = "https://" + p.Addr
	o := &securedOmen{proc: p, user: user, pass: pass, client: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}},
	}}
	waitFor(t, 60*time.Second, "omen ready over TLS", func() bool {
		req, _ := http.NewRequest(http.MethodGet, o.URL+"/-/ready", nil)
		req.SetBasicAuth(user, pass)
		resp, err := o.client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// Plain HTTP on the TLS port gets nothing served.
	if resp, err := http.Get("http://" + p.Addr + "/-/healthy"); err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP to the TLS port")
	}
	// A client that does not trust the CA fails the handshake.
	_, err = http.Get(o.URL + "/-/healthy")
	require.ErrorContains(t, err, "certificate")

	for _, tc := range []struct {
		method, path string
		want         int // with credentials
	}{
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodGet, "/api/v1/query?query=up", http.StatusOK},
		{http.MethodGet, "/api/v1/status/buildinfo", http.StatusOK},
		{http.MethodPost, "/api/v1/write", http.StatusBadRequest}, // empty body
		{http.MethodPost, "/api/v1/read", http.StatusBadRequest},  // empty body
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodGet, "/-/ready", http.StatusOK},
		{http.MethodPost, "/-/reload", http.StatusOK},
		{http.MethodGet, "/debug/pprof/", http.StatusOK},
		{http.MethodGet, "/debug/pprof/cmdline", http.StatusOK},
		{http.MethodGet, "/api/v1/anomalies", http.StatusOK},
		{http.MethodGet, "/api/v1/status/omen", http.StatusOK},
		{http.MethodGet, "/api/v1/status/config", http.StatusOK},
		{http.MethodGet, "/api/v1/status/flags", http.StatusOK},
		{http.MethodGet, "/api/v1/metadata", http.StatusOK},
		{http.MethodGet, "/ui/static/", http.StatusNotFound},
		{http.MethodOptions, "/api/v1/query", http.StatusNoContent}, // a CORS preflight
		{http.MethodGet, "/-/healthy/", http.StatusNotFound},        // only /-/healthy itself is open
		{http.MethodGet, "/no/such/path", http.StatusNotFound},      // no route is told apart without credentials
	} {
		code, body := o.do(t, tc.method, tc.path, nil, false, nil)
		require.Equal(t, http.StatusUnauthorized, code, "%s %s without credentials: %s", tc.method, tc.path, body)
		code, body = o.do(t, tc.method, tc.path, nil, true, nil)
		require.Equal(t, tc.want, code, "%s %s with credentials: %s", tc.method, tc.path, body)
	}
	// /-/quit apart: with credentials it stops omen.
	code, body := o.do(t, http.MethodPost, "/-/quit", nil, false, nil)
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, body = o.do(t, http.MethodGet, "/-/healthy", nil, false, nil)
	require.Equal(t, http.StatusOK, code, body)

	// The real Prometheus remote-writes over TLS with basic auth.
	prom := startPrometheus(t, func(addr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['%s']}]
remote_write:
  - url: %s/api/v1/write
    tls_config: {ca_file: %s}
    basic_auth: {username: %s, password: %s}
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
`, addr, o.URL, pki.caFile, user, pass)
	})
	var last string
	waitFor(t, 90*time.Second, "Prometheus's samples in omen", func() bool {
		code, r := o.query(t, `count({job="prometheus", for=""})`)
		last = fmt.Sprintf("%d %s %s", code, r.Data, r.Error)
		var res struct{ Result []vectorSample }
		if code != http.StatusOK || json.Unmarshal(r.Data, &res) != nil || len(res.Result) != 1 {
			return false
		}
		return res.Result[0].F() > 100
	})
	t.Log("series from Prometheus in omen:", last)
	code, r := o.query(t, `up{job="prometheus", instance="`+strings.TrimPrefix(prom.URL, "http://")+`"}`)
	require.Equal(t, http.StatusOK, code, r.Error)
	require.Contains(t, string(r.Data), `"up"`)

	// --query.max-samples: a query loading more than 1000 samples fails
	// with Prometheus's error, and omen keeps serving.
	ms := time.Now().UnixMilli()
	ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "many_samples"}}}
	for i := 0; i < 2000; i++ {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: ms - int64(2000-i)*100, Value: float64(i)})
	}
	code, body = o.write(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}})
	require.Equal(t, http.StatusNoContent, code, body)
	code, r = o.query(t, `count_over_time(many_samples[10m])`, ms)
	require.Equal(t, http.StatusUnprocessableEntity, code, "%s %s", r.Data, r.Error)
	require.Equal(t, "execution", r.ErrorType)
	require.Contains(t, r.Error, "query processing would load too many samples into memory")
	// (ms-10s, ms] holds the samples at ms-100ms ... ms-9900ms: under the limit.
	code, r = o.query(t, `count_over_time(many_samples[10s])`, ms)
	require.Equal(t, http.StatusOK, code, r.Error)
	require.Contains(t, string(r.Data), `"99"`)
	code, body = o.do(t, http.MethodGet, "/-/healthy", nil, false, nil)
	require.Equal(t, http.StatusOK, code, body)

	// Nothing in omen's log carries the credentials. Wrong credentials
	// (the password with a typo, and the password given as the user name)
	// are refused and not logged either.
	wrong := &securedOmen{proc: p, client: o.client, user: user, pass: pass + "x"}
	code, _ = wrong.do(t, http.MethodGet, "/metrics", nil, true, nil)
	require.Equal(t, http.StatusUnauthorized, code)
	wrong.user, wrong.pass = pass, pass
	code, _ = wrong.do(t, http.MethodGet, "/metrics", nil, true, nil)
	require.Equal(t, http.StatusUnauthorized, code)
	p.Stop()
	logText, err := os.ReadFile(p.log)
	require.NoError(t, err)
	require.Contains(t, string(logText), "Listening on", "the log should have been captured")
	for _, secret := range []string{pass, string(hash), string(hash[7:])} { // [7:] drops the "$2a$10$" prefix
		require.NotContains(t, string(logText), secret)
	}
}
