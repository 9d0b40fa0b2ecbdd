package omenbin

import (
	"os"
	"os/exec"
	"path/filepath"
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
	t.Setenv(EnvBin, "") // built, also under make test, which sets it
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

// TestPathFromEnv: a binary named by $OMEN_BIN is used as it is, not built
// again, and Remove keeps it; one that does not exist is an error. make
// test builds bin/omen once and passes it to the e2e and web packages,
// which each built their own (a link of 10-20 s on two loaded cores).
func TestPathFromEnv(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "omen")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\necho omen from env\n"), 0o755))
	for _, tc := range []struct {
		name, env, want, err string
	}{
		{name: "absolute", env: bin, want: bin},
		{name: "missing", env: filepath.Join(dir, "nope"), err: "$OMEN_BIN: stat " + filepath.Join(dir, "nope")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OMEN_BIN", tc.env)
			var b Builder
			got, err := b.Path()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			b.Remove()
			_, err = os.Stat(bin)
			require.NoError(t, err, "Remove keeps a binary it did not build")
		})
	}
}
