package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The Prometheus project's remote-write receiver compliance suite
// (github.com/prometheus/compliance, folder remotewrite/receiver), run
// unmodified against omen and, side by side, against the real Prometheus 3
// receiver as the baseline. The suite is a package of _test.go files only,
// whose go.mod names it github.com/prometheus/complicance/remotewrite2
// (sic); e2e/rwcompliance is a module of ours that requires it under that
// path, replaced by the repository's path at the same version, so that the
// go command fetches it from the module proxy. make deps-rwcompliance
// compiles its test binary (go test -c) into bin/rwcompliance.test.

// rwComplianceBinary is $OMEN_RWCOMPLIANCE, the suite's test binary. Not
// under make test: its cold build (prometheus v0.306 and its dependencies,
// the version the suite pins, not omen's) takes about 2 CPU-minutes; make
// test-compliance builds it and sets the variable.
func rwComplianceBinary(t testing.TB) string {
	t.Helper()
	return binaryFromEnv(t, "OMEN_RWCOMPLIANCE", "make test-compliance builds the suite and runs this test")
}

// binaryFromEnv is the binary the environment variable env names, for a
// test of a tool too slow to build under make test: unset, the test skips
// (how tells what sets it); set, the binary must be there.
func binaryFromEnv(t testing.TB, env, how string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		t.Skipf("%s not set: %s", env, how)
	}
	_, err := os.Stat(bin)
	require.NoError(t, err, env)
	return bin
}

// rwAnswer is what a receiver answered one request of the suite: the
// status and the X-Prometheus-Remote-Write-*-Written headers, a missing
// one read as 0 (the spec: a sender can take it so).
type rwAnswer struct {
	Status                         int
	Samples, Histograms, Exemplars string
}

func rwAnswerOf(resp *http.Response) rwAnswer {
	written := func(what string) string {
		if v := resp.Header.Get("X-Prometheus-Remote-Write-" + what + "-Written"); v != "" {
			return v
		}
		return "0"
	}
	return rwAnswer{resp.StatusCode, written("Samples"), written("Histograms"), written("Exemplars")}
}

func (a rwAnswer) String() string {
	return fmt.Sprintf("%d samples=%s histograms=%s exemplars=%s", a.Status, a.Samples, a.Histograms, a.Exemplars)
}

// rwRecorder is a reverse proxy in front of a receiver that keeps its
// answers in the order of the requests (the suite sends one at a time).
type rwRecorder struct {
	mu       sync.Mutex
	answers  []rwAnswer
	requests []capturedRequest // Status unused: answers has it
}

func newRWRecorder(t *testing.T, target string) (*rwRecorder, string) {
	u, err := url.Parse(target)
	require.NoError(t, err)
	r := &rwRecorder{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.answers = append(r.answers, rwAnswerOf(resp))
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		h := http.Header{}
		for _, k := range []string{"Content-Type", "Content-Encoding", "X-Prometheus-Remote-Write-Version"} {
			if v, ok := req.Header[k]; ok {
				h[k] = v
			}
		}
		r.mu.Lock()
		r.requests = append(r.requests, capturedRequest{Header: h, Body: body})
		r.mu.Unlock()
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

// rwCase is one request of the suite as one receiver saw it.
type rwCase struct {
	passed bool
	answer rwAnswer
	req    int // index of its request in the recorder
	output strings.Builder
}

// rwSuiteDifferences are the cases where omen answers otherwise than
// Prometheus 3, each with the spec's reason.
var rwSuiteDifferences = map[string]string{
	// The spec: "Receivers MUST return 415 Unsupported Media Type for
	// any unsupported content type"; the suite asks for exactly 415, and
	// Prometheus tries to decode the body as snappy (400, failing the
	// suite's case).
	"TestBadContentTypes/application_json": "415 for an unsupported Content-Type",
	"TestBadContentTypes/image_png":        "415 for an unsupported Content-Type",
}

// TestRWCompliance runs the suite against Prometheus 3 and omen (through
// recording proxies) and requires: every case of omen passes; omen answers
// each request as Prometheus does (status and Written headers), but for
// rwSuiteDifferences; and both stored the same samples, histograms and
// exemplars.
func TestRWCompliance(t *testing.T) {
	suite := rwComplianceBinary(t)
	prom := startPrometheus3(t, func(string) string { return "global: {}\n" },
		"--web.enable-remote-write-receiver",
		"--web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest",
		"--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request",
		// omen stores exemplars and 2.0's metadata: the baseline does too.
		"--enable-feature=exemplar-storage,metadata-wal-records")
	om := startOmen(t, "")
	recs := map[string]*rwRecorder{}
	var cfg strings.Builder
	cfg.WriteString("remote_write:\n")
	for _, rcv := range []struct{ name, url string }{{"prometheus", prom.URL}, {"omen", om.URL}} {
		rec, proxy := newRWRecorder(t, rcv.url)
		recs[rcv.name] = rec
		fmt.Fprintf(&cfg, "  - name: %s\n    url: %s/api/v1/write\n", rcv.name, proxy)
	}
	cfgFile := filepath.Join(t.TempDir(), "config.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg.String()), 0o644))

	recordedAt := time.Now()
	// test2json: the suite's verdicts and logs by test, not by line.
	cmd := exec.Command("go", "tool", "test2json", "-t", suite, "-test.v=test2json", "-test.count=1")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PROMETHEUS_RW2_COMPLIANCE_CONFIG_FILE="+cfgFile)
	out, err := cmd.Output()
	// The suite exits 1 when Prometheus fails a case (it does, below):
	// omen's verdicts are read from the events.
	if _, ok := err.(*exec.ExitError); !ok {
		require.NoError(t, err)
	}

	cases := map[string]map[string]*rwCase{} // case -> receiver -> what it saw
	next := map[string]int{}                 // receiver -> its next recorded answer
	code := regexp.MustCompile(`Response code from "(\w+)": (\d+)`)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct{ Action, Test, Output string }
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "%s", sc.Bytes())
		i := strings.LastIndexByte(ev.Test, '/')
		if i < 0 || recs[ev.Test[i+1:]] == nil {
			continue
		}
		name, rcv := ev.Test[:i], ev.Test[i+1:]
		if cases[name] == nil {
			cases[name] = map[string]*rwCase{}
		}
		c := cases[name][rcv]
		if c == nil {
			c = &rwCase{}
			cases[name][rcv] = c
		}
		switch ev.Action {
		case "pass":
			c.passed = true
		case "output":
			c.output.WriteString(ev.Output)
			if m := code.FindStringSubmatch(ev.Output); m != nil && m[1] == rcv {
				rec := recs[rcv]
				rec.mu.Lock()
				require.Less(t, next[rcv], len(rec.answers), "%s: the suite logged more answers of %s than its proxy saw", name, rcv)
				c.answer, c.req = rec.answers[next[rcv]], next[rcv]
				rec.mu.Unlock()
				next[rcv]++
				require.Equal(t, m[2], fmt.Sprint(c.answer.Status), "%s: answers of %s out of step with the proxy's", name, rcv)
			}
		}
	}
	require.NoError(t, sc.Err())
	require.Greater(t, len(cases), 100, "the suite ran %d cases: %s", len(cases), tail(out, 4000))

	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p, o := cases[n]["prometheus"], cases[n]["omen"]
		require.NotNil(t, o, "%s: omen did not run", n)
		require.NotNil(t, p, "%s: prometheus did not run", n)
		if !o.passed {
			t.Errorf("%s: omen fails the suite:\n%s", n, o.output.String())
		}
		if why, ok := rwSuiteDifferences[n]; ok {
			t.Logf("%s: omen %v, prometheus %v (%s)", n, o.answer, p.answer, why)
			continue
		}
		if o.answer != p.answer {
			t.Errorf("%s: omen answered %v, prometheus %v\nomen:\n%s\nprometheus:\n%s", n, o.answer, p.answer, o.output.String(), p.output.String())
		}
	}
	t.Logf("%d cases; omen passes %d, prometheus %d", len(cases), countPassed(cases, "omen"), countPassed(cases, "prometheus"))
	if dir := os.Getenv("OMEN_RWCOMPLIANCE_CAPTURE"); dir != "" && !t.Failed() {
		saveRWExchanges(t, dir, recordedAt, names, cases, recs["omen"])
	}

	// What is stored: every series the suite wrote, whole (floats and
	// histograms, 1d back), and the exemplars; omen's outputs left out.
	const sel = `{__name__=~".+",__name__!~"anomaly_score|yhat.*|forecast.*"}`
	now := time.Now()
	stored := func(base string) map[string]string {
		raw, err := apiGet(t, base, "/api/v1/query", url.Values{"query": {sel + "[1d]"}, "time": {fmt.Sprint(now.Unix())}})
		require.NoError(t, err)
		var res struct {
			Result []struct {
				Metric     map[string]string
				Values     json.RawMessage
				Histograms json.RawMessage
			}
		}
		require.NoError(t, json.Unmarshal(raw, &res))
		m := map[string]string{}
		for _, r := range res.Result {
			k, _ := json.Marshal(r.Metric)
			m[string(k)] = string(r.Values) + " " + string(r.Histograms)
		}
		return m
	}
	ps, oms := stored(prom.URL), stored(om.URL)
	require.Greater(t, len(ps), 100, "series Prometheus stored")
	require.Equal(t, ps, oms, "series stored: prometheus, omen")

	exemplars := func(base string) []string {
		raw, err := apiGet(t, base, "/api/v1/query_exemplars", url.Values{"query": {sel},
			"start": {fmt.Sprint(now.Add(-24 * time.Hour).Unix())}, "end": {fmt.Sprint(now.Add(time.Hour).Unix())}})
		require.NoError(t, err)
		var res []json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &res))
		s := make([]string, len(res))
		for i, r := range res {
			s[i] = string(r)
		}
		sort.Strings(s)
		return s
	}
	pe := exemplars(prom.URL)
	require.NotEmpty(t, pe, "exemplars Prometheus stored")
	require.Equal(t, pe, exemplars(om.URL), "exemplars stored: prometheus, omen")
}

func countPassed(cases map[string]map[string]*rwCase, rcv string) int {
	n := 0
	for _, c := range cases {
		if c[rcv] != nil && c[rcv].passed {
			n++
		}
	}
	return n
}

// TestRWComplianceModuleInStep: e2e/rwcompliance requires the suite under
// its declared path and replaces it by the repository's path; the two
// versions must be the same, or go get moves one and the build takes the
// other (a go get of a newer suite that forgot the replace still builds
// the old one).
func TestRWComplianceModuleInStep(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("rwcompliance", "go.mod"))
	require.NoError(t, err)
	var required, replaced string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		switch {
		case len(f) == 2 && f[0] == "github.com/prometheus/complicance/remotewrite2":
			required = f[1]
		case len(f) == 5 && f[0] == "replace" && f[1] == "github.com/prometheus/complicance/remotewrite2" && f[2] == "=>":
			replaced = f[4]
		}
	}
	require.NotEmpty(t, required, "e2e/rwcompliance/go.mod requires the suite")
	require.Equal(t, required, replaced, "e2e/rwcompliance/go.mod: the replace names the required version")
}
