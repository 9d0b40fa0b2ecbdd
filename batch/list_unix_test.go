//go:build unix

package batch

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestListSkipsSpecialFiles: a named pipe (or socket, or device) named
// *.csv is not listed: opening a pipe with no writer blocks, and the run
// hung on it for ever.
func TestListSkipsSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.csv"), "x")
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "pipe.csv"), 0o644))
	files, _, err := List(dir)
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(dir, "a.csv")}, files)
}
