package web

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A minimal W3C WebDriver client over net/http, driving Debian's chromium
// through its chromedriver: enough to open a page, run script in it, click,
// type and take a screenshot, without a browser-automation module.

// webElementKey is the W3C name of an element reference in JSON.
const webElementKey = "element-6066-11e4-a52e-4f735466cecf"

type browser struct {
	t      testing.TB
	base   string // http://127.0.0.1:port/session/<id>
	client *http.Client
}

// e2e says whether the end-to-end tests must run (a missing browser is then
// a failure rather than a skip).
func e2e() bool { return os.Getenv("OMEN_E2E") == "1" }

func lookTool(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("none of %v on PATH (make deps-ui installs Debian's chromium and chromium-driver)", names)
	if e2e() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startBrowser starts chromedriver on a free port and a headless Chromium
// session with a fresh profile; both end in t's cleanup.
func startBrowser(t testing.TB, width, height int) *browser {
	t.Helper()
	chromium := lookTool(t, "chromium", "chromium-browser")
	driver := lookTool(t, "chromedriver")

	// chromedriver --port=0 picks its port itself, and one taken by then
	// (the e2e package's servers start beside it in make test) makes it
	// exit with "bind() failed: Address already in use": started again.
	var port string
	for attempt := 1; port == ""; attempt++ {
		var err error
		port, err = startDriver(t, driver)
		if err != nil && attempt == 3 {
			t.Fatal(err)
		}
	}

	b := &browser{t: t, client: &http.Client{Timeout: 90 * time.Second}}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			"args": []string{
				"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
				fmt.Sprintf("--window-size=%d,%d", width, height),
				"--user-data-dir=" + t.TempDir(),
			},
		},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	b.do(http.MethodPost, "http://127.0.0.1:"+port+"/session", caps, &sess)
	require.NotEmpty(t, sess.SessionID, "new WebDriver session")
	b.base = "http://127.0.0.1:" + port + "/session/" + sess.SessionID
	// Registered after chromedriver's cleanup, so it runs first: the
	// browser closes before its driver is killed.
	t.Cleanup(func() { b.do(http.MethodDelete, b.base, nil, nil) })
	b.do(http.MethodPost, b.base+"/timeouts", map[string]int{"script": 30000, "pageLoad": 30000, "implicit": 0}, nil)
	return b
}

// do sends one WebDriver command and decodes its "value" into out.
func (b *browser) do(method, url string, in, out any) {
	b.t.Helper()
	var body io.Reader
	if in != nil {
		j, err := json.Marshal(in)
		require.NoError(b.t, err)
		body = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, body)
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	require.NoError(b.t, err, "webdriver %s %s", method, url)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	require.NoError(b.t, json.Unmarshal(raw, &env), "webdriver reply %s", raw)
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("webdriver %s %s: HTTP %d: %s", method, url, resp.StatusCode, truncate(string(raw), 2000))
	}
	if out != nil {
		require.NoError(b.t, json.Unmarshal(env.Value, out), "webdriver value %s", truncate(string(env.Value), 500))
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (b *browser) open(url string) {
	b.t.Helper()
	b.do(http.MethodPost, b.base+"/url", map[string]string{"url": url}, nil)
}

// eval runs script (a function body; use return) in the page and decodes its
// result into out.
func (b *browser) eval(out any, script string, args ...any) {
	b.t.Helper()
	if args == nil {
		args = []any{}
	}
	b.do(http.MethodPost, b.base+"/execute/sync", map[string]any{"script": script, "args": args}, out)
}

// waitFor waits, inside the page, until the JavaScript expression cond is
// true, failing the test after timeout with what.
func (b *browser) waitFor(what, cond string, timeout time.Duration) {
	b.t.Helper()
	script := `var done = arguments[arguments.length - 1], deadline = Date.now() + arguments[0];
(function poll() {
  var ok = false;
  try { ok = !!(` + cond + `); } catch (e) {}
  if (ok) return done(true);
  if (Date.now() > deadline) return done(false);
  setTimeout(poll, 50);
})();`
	var ok bool
	b.do(http.MethodPost, b.base+"/execute/async", map[string]any{"script": script, "args": []any{timeout.Milliseconds()}}, &ok)
	if !ok {
		var state string
		b.eval(&state, `return document.getElementById("error").textContent + " | " + document.body.innerText.slice(0, 1500);`)
		b.t.Fatalf("timed out after %s waiting for %s (%s); page: %s", timeout, what, cond, state)
	}
}

func (b *browser) find(css string) string {
	b.t.Helper()
	var el map[string]string
	b.do(http.MethodPost, b.base+"/element", map[string]string{"using": "css selector", "value": css}, &el)
	id := el[webElementKey]
	require.NotEmpty(b.t, id, "element %s", css)
	return id
}

func (b *browser) click(css string) {
	b.t.Helper()
	b.do(http.MethodPost, b.base+"/element/"+b.find(css)+"/click", map[string]any{}, nil)
}

func (b *browser) typeInto(css, text string) {
	b.t.Helper()
	id := b.find(css)
	b.do(http.MethodPost, b.base+"/element/"+id+"/clear", map[string]any{}, nil)
	b.do(http.MethodPost, b.base+"/element/"+id+"/value", map[string]string{"text": text}, nil)
}

// screenshot saves a PNG of the viewport to path.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	var enc string
	b.do(http.MethodGet, b.base+"/screenshot", nil, &enc)
	png, err := base64.StdEncoding.DecodeString(enc)
	require.NoError(b.t, err)
	require.True(b.t, strings.HasPrefix(string(png), "\x89PNG"), "screenshot is a PNG")
	require.NoError(b.t, os.WriteFile(path, png, 0o644))
}

// startDriver starts chromedriver on a port of its choosing and returns
// that port, or an error if it exits or prints none within 30 s.
func startDriver(t testing.TB, driver string) (string, error) {
	t.Helper()
	cmd := exec.Command(driver, "--port=0")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start(), "start chromedriver")
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	// chromedriver prints the port it bound; wait for that line rather than
	// polling the port.
	portc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`started successfully on port (\d+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				portc <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case port := <-portc:
		return port, nil
	case <-exited:
		return "", fmt.Errorf("chromedriver exited: %s", stderr.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return "", fmt.Errorf("chromedriver did not start: %s", stderr.String())
	}
}
