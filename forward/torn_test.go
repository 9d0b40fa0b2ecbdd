package forward

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
)

// TestForwardingTLSFileGoneMidReload: a TLS file that goes between the
// check and the module's ApplyConfig (a certificate rotated by delete and
// create) fails the module midway, the queue it kept before the failing
// one out of its list; the next reload started that queue again and omen
// panicked on its metrics registered twice. It is refused instead, and
// the queues run on.
func TestForwardingTLSFileGoneMidReload(t *testing.T) {
	rc, keep, other := twoQueues(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	tlsSrv.Close()
	pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	require.NoError(t, os.WriteFile(ca, pemCA, 0o644))
	other.HTTPClientConfig.TLSConfig.CAFile = ca
	both := []*promconfig.RemoteWriteConfig{keep, other}

	reg := prometheus.NewRegistry()
	f, err := New(nil, reg, t.TempDir(), nil, time.Second)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.ApplyConfig(both))

	f.checked = func() { require.NoError(t, os.Remove(ca)) }
	require.Error(t, f.ApplyConfig(both))
	f.checked = nil
	require.NoError(t, os.WriteFile(ca, pemCA, 0o644))
	require.NotPanics(t, func() {
		require.ErrorContains(t, f.ApplyConfig(both), "restart omen")
	})
	require.Equal(t, 2, testutil.CollectAndCount(reg, "prometheus_remote_storage_shards"), "both queues")

	// The queue the module lost still forwards, on its log reader's own
	// timer (5 s here): the commit notices go to the module's queues.
	appendOutputs(t, f, 2, 2, time.Now().Add(time.Second))
	require.Eventually(t, func() bool { f.rs.Notify(); d, _ := rc.received(); return d >= 4 }, 30*time.Second, 20*time.Millisecond)
}
