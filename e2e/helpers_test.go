package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/freeport"
	"github.com/omen-sidecar/omen/internal/omenbin"
	"github.com/omen-sidecar/omen/internal/ready"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// need skips the test when tool is not on PATH, or fails it under
// OMEN_E2E=1 (make test), where the Makefile has installed it.
func need(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("OMEN_E2E") == "1" {
			t.Fatalf("%s not found on PATH; make deps-e2e installs it", tool)
		}
		t.Skipf("%s not found on PATH (set OMEN_E2E=1 to make this a failure)", tool)
	}
	return p
}

var omenBuild omenbin.Builder

// TestMain removes the binary omenBinary built (65 MB a run, which piled
// up in the temporary folder).
func TestMain(m *testing.M) {
	code := m.Run()
	omenBuild.Remove()
	os.Exit(code)
}

// omenBinary builds cmd/omen once per test binary.
func omenBinary(t testing.TB) string {
	t.Helper()
	bin, err := omenBuild.Path()
	require.NoError(t, err)
	return bin
}

// freePort returns a loopback port that was free a moment ago, below the
// ephemeral range (see internal/freeport).
func freePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Port()
	require.NoError(t, err)
	return p
}

// proc is a server process started by a test, with its log kept in a file
// that is printed when the test fails.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	URL  string
	Addr string
	log  string
	done chan struct{}
}

func start(t testing.TB, name string, port int, bin string, args ...string) *proc {
	t.Helper()
	logf := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logf)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := &proc{t: t, name: name, cmd: cmd, URL: "http://" + addr, Addr: addr, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(logf)
			t.Logf("--- %s log ---\n%s", name, tail(b, 8000))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// WaitReady polls /-/ready until it answers 200.
func (p *proc) WaitReady(timeout time.Duration) {
	p.t.Helper()
	if !p.waitReadyUnlessPortTaken(timeout) {
		b, _ := os.ReadFile(p.log)
		p.t.Fatalf("%s exited before it was ready:\n%s", p.name, tail(b, 4000))
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *proc) Stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// startOmen starts `omen serve` on a free port with storage in dir (a new
// temporary directory when empty) and waits until it is ready.
func startOmen(t testing.TB, dir string, args ...string) *proc {
	t.Helper()
	return startOmenUnder(t, dir, "", args...)
}

// startOmenUnder is startOmen for an omen serving under the route prefix
// path ("/omen"; args set the flags that put it there): its URL ends in
// the prefix, so the tests' queries and the readiness poll go under it.
func startOmenUnder(t testing.TB, dir, path string, args ...string) *proc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	// A port found free is bound by omen a moment later, and now and then
	// another process took it meanwhile (the servers other packages' tests
	// start beside these in make test): omen then exits at once, and
	// starts again on another. (Not port 0 with the port read from omen's
	// log: the kernel gave omen the port that freePort had just found for
	// a Prometheus the test starts next.)
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		all := append([]string{"serve", "--web.listen-address=127.0.0.1:" + strconv.Itoa(port), "--storage.tsdb.path=" + dir, "--log.level=debug"}, args...)
		p := start(t, "omen", port, omenBinary(t), all...)
		p.URL += path
		if p.waitReadyUnlessPortTaken(60 * time.Second) {
			return p
		}
		if attempt == 5 {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("omen's port was taken 5 times:\n%s", tail(b, 4000))
		}
		t.Logf("omen's port %d was taken before it bound it; starting again", port)
	}
}

// waitReadyUnlessPortTaken polls /-/ready until it answers 200, and is
// false if the process exited because its port was taken.
func (p *proc) waitReadyUnlessPortTaken(timeout time.Duration) bool {
	p.t.Helper()
	taken := false
	waitFor(p.t, timeout, p.name+" ready", func() bool {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			if bytes.Contains(b, []byte("bind: address already in use")) {
				taken = true
				return true
			}
			p.t.Fatalf("%s exited before it was ready:\n%s", p.name, tail(b, 4000))
		default:
		}
		return ready.OK(p.URL)
	})
	return !taken
}

// startPrometheus starts the real Prometheus with the configuration that
// cfg returns for Prometheus's own listen address, and waits until it is
// ready.
func startPrometheus(t testing.TB, cfg func(addr string) string, extra ...string) *proc {
	t.Helper()
	return startPrometheusAt(t, filepath.Join(t.TempDir(), "data"), freePort(t), cfg, extra...)
}

// startPrometheusAt is startPrometheus with the storage in dataDir (which
// may already hold blocks) and the given port.
func startPrometheusAt(t testing.TB, dataDir string, port int, cfg func(addr string) string, extra ...string) *proc {
	t.Helper()
	p := launchPrometheus(t, dataDir, port, cfg, extra...)
	p.WaitReady(60 * time.Second)
	return p
}

// startPrometheusBasicAuth is startPrometheusAt behind --web.config.file's
// basic auth of user and password (bcrypt at its lowest cost, for speed);
// its URL carries them, so that the readiness poll and the tests' queries
// authenticate, and any other client is refused.
func startPrometheusBasicAuth(t testing.TB, dataDir string, port int, cfg func(addr string) string, user, password string) *proc {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	require.NoError(t, err)
	web := filepath.Join(t.TempDir(), "web.yml")
	require.NoError(t, os.WriteFile(web, []byte(fmt.Sprintf("basic_auth_users:\n  %s: %s\n", user, hash)), 0o644))
	p := launchPrometheus(t, dataDir, port, cfg, "--web.config.file="+web)
	p.URL = "http://" + url.UserPassword(user, password).String() + "@" + p.Addr
	p.WaitReady(60 * time.Second)
	return p
}

// launchPrometheus starts the real Prometheus on port, not waiting for it.
func launchPrometheus(t testing.TB, dataDir string, port int, cfg func(addr string) string, extra ...string) *proc {
	t.Helper()
	return launchPrometheusBin(t, need(t, "prometheus"), dataDir, port, cfg, extra...)
}

// launchPrometheusBin is launchPrometheus with the server binary bin.
func launchPrometheusBin(t testing.TB, bin, dataDir string, port int, cfg func(addr string) string, extra ...string) *proc {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg("127.0.0.1:"+strconv.Itoa(port))), 0o644))
	args := append([]string{
		"--config.file=" + cfgFile, "--storage.tsdb.path=" + dataDir,
		"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
	}, extra...)
	return start(t, "prometheus", port, bin, args...)
}

// waitFor polls cond every 200ms until it holds or timeout passes. The
// timeout is a bound on a wait for an event, never a performance target.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

// vectorSample is one element of an instant-vector result.
type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// F is the sample's value as a float.
func (s vectorSample) F() float64 {
	str, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(str, 64)
	return f
}

// apiGet calls a Prometheus-style API endpoint and returns its data.
func apiGet(t testing.TB, base, path string, params url.Values) (json.RawMessage, error) {
	t.Helper()
	resp, err := http.Get(base + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r apiResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: status %d, body %q: %w", path, resp.StatusCode, tail(b, 300), err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// query runs an instant query and returns the vector (nil on error).
func query(t testing.TB, base, q string, at time.Time) ([]vectorSample, error) {
	t.Helper()
	p := url.Values{"query": {q}}
	if !at.IsZero() {
		p.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	data, err := apiGet(t, base, "/api/v1/query", p)
	if err != nil {
		return nil, err
	}
	var res struct {
		ResultType string         `json:"resultType"`
		Result     []vectorSample `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	if res.ResultType != "vector" {
		return nil, fmt.Errorf("result type %q, want vector", res.ResultType)
	}
	return res.Result, nil
}

// postEmpty POSTs an empty body to u and returns the status and body.
func postEmpty(t testing.TB, u string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "text/plain", bytes.NewReader(nil))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
