package omenbin

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPath builds omen and runs it. Under go test -trimpath (GOFLAGS set
// so for reproducible builds) the source file's path runtime.Caller gives
// is the package's import path, not a directory: the build ran in a
// directory that does not exist ("chdir github.com/omen-sidecar/omen: no
// such file or directory") and every web and e2e test that starts omen
// failed.
func TestPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds omen")
	}
	var b Builder
	t.Cleanup(b.Remove)
	bin, err := b.Path()
	require.NoError(t, err)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.True(t, strings.HasPrefix(string(out), "omen"), "%s", out)
	again, err := b.Path()
	require.NoError(t, err)
	require.Equal(t, bin, again, "built once")
}
