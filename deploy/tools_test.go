package deploy

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// update regenerates the files derived from omen's code (the rule files):
// go test ./deploy -update
var update = flag.Bool("update", false, "rewrite the generated rule files under deploy/")

// e2e reports whether the external tools are required (make test sets
// OMEN_E2E=1 after installing them).
func e2e() bool { return os.Getenv("OMEN_E2E") == "1" }

// tool returns the path of an external program installed by the Makefile's
// deps-e2e; missing, it fails under OMEN_E2E=1 and skips otherwise.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if e2e() {
			t.Fatalf("%s not found but OMEN_E2E=1: run make deps-e2e (Debian package %s)", name, pkg)
		}
		t.Skipf("%s not installed (Debian package %s); make test installs it", name, pkg)
	}
	return p
}

// run runs a command in dir and returns its standard output; a non-zero exit
// fails the test with both outputs.
func run(t *testing.T, dir string, argv ...string) []byte {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, err, "%s:\n%s%s", strings.Join(argv, " "), stdout.String(), stderr.String())
	return stdout.Bytes()
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	require.NoError(t, err)
	return b
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.FromSlash(path), b, 0o644))
}
