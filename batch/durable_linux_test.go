package batch

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/durabletest"
)

// TestWriteFileDurable runs WriteFile under strace and checks the system
// calls a crash leaves a whole file after (see durabletest): the
// temporary file fsynced after its last write and before its rename, the
// directory fsynced after the rename.
func TestWriteFileDurable(t *testing.T) {
	if out := os.Getenv(durabletest.Env); out != "" {
		require.NoError(t, WriteFile(out, func(w *bufio.Writer) error {
			for range 1000 { // 26 kB: a write(2) or more
				w.WriteString("2026-12-07T06:00:00Z,1.5\n")
			}
			return nil
		}))
		return
	}
	dir := t.TempDir()
	durabletest.Check(t, filepath.Join(dir, "r.csv"), filepath.Join(dir, ".r.csv.tmp-")+"*")
}
