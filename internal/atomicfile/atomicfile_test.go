package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/internal/durabletest"
)

// TestWrite: the file appears whole, with its mode whatever an earlier
// temporary's (see TestWriteUmask for the umask's), or not at all: a failed write, or a rename that
// fails (a directory where the file goes), leaves the earlier file as it
// was and no temporary one, and says why.
func TestWrite(t *testing.T) {
	for _, tmp := range []string{"fixed", ""} {
		t.Run("tmp="+tmp, func(t *testing.T) {
			dir, path, tmpPath := testPaths(t, tmp)
			if tmpPath != "" {
				// A crash's leftover, of another mode: taken over.
				require.NoError(t, os.WriteFile(tmpPath, []byte("leftover, longer than what is written"), 0o600))
			}
			write := func(body string, err error) func(*os.File) error {
				return func(f *os.File) error {
					_, werr := f.WriteString(body)
					require.NoError(t, werr)
					return err
				}
			}
			check := func(want string) {
				t.Helper()
				b, err := os.ReadFile(path)
				require.NoError(t, err)
				require.Equal(t, want, string(b))
				fi, err := os.Stat(path)
				require.NoError(t, err)
				require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
				entries, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Len(t, entries, 1, "no temporary file left")
			}
			require.NoError(t, Write(path, tmpPath, 0o644, write("one", nil)))
			check("one")

			bad := errors.New("input line 9: bad")
			require.Equal(t, bad, Write(path, tmpPath, 0o644, write("tw", bad)), "write's error as it is")
			check("one")

			require.NoError(t, Write(path, tmpPath, 0o644, write("three", nil)))
			check("three")

			// A directory in the way: the rename fails.
			other := filepath.Join(dir, "d")
			require.NoError(t, os.MkdirAll(filepath.Join(other, "x"), 0o755))
			otherTmp := ""
			if tmp != "" {
				otherTmp = other + ".tmp"
			}
			err := Write(other, otherTmp, 0o644, write("four", nil))
			require.ErrorContains(t, err, "rename")
			require.DirExists(t, filepath.Join(other, "x"), "what was there is left")
			require.NoError(t, os.RemoveAll(other))
			check("three")
		})
	}
}

// TestWriteDurable: under strace, the temporary is fsynced after its last
// write and before its rename, and the directory after (durabletest).
func TestWriteDurable(t *testing.T) {
	if out := os.Getenv(durabletest.Env); out != "" {
		require.NoError(t, Write(out, out+".tmp", 0o644, func(f *os.File) error {
			_, err := f.WriteString("x")
			return err
		}))
		return
	}
	out := filepath.Join(t.TempDir(), "f")
	durabletest.Check(t, out, out+".tmp")
}

// TestWriteUmask: the file's mode is perm less the umask, as os.Create
// and os.WriteFile give and the TSDB's files beside it have, over a
// leftover temporary of any mode: a Chmod to perm made the model snapshot
// and the learnt external labels 0644 under a umask of 077, readable by
// every user where they had been the owner's only.
func TestWriteUmask(t *testing.T) {
	for _, tc := range []struct {
		umask int
		want  os.FileMode
	}{
		{0o077, 0o600},
		{0o027, 0o640},
		{0o022, 0o644},
	} {
		for _, tmp := range []string{"fixed", ""} {
			t.Run(fmt.Sprintf("umask=%03o/tmp=%s", tc.umask, tmp), func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "f")
				tmpPath := ""
				if tmp != "" {
					tmpPath = filepath.Join(dir, tmp)
					require.NoError(t, os.WriteFile(tmpPath, []byte("leftover"), 0o600))
					require.NoError(t, os.Chmod(tmpPath, 0o666))
				}
				old := syscall.Umask(tc.umask)
				defer syscall.Umask(old)
				require.NoError(t, Write(path, tmpPath, 0o644, func(f *os.File) error {
					_, err := f.WriteString("x")
					return err
				}))
				fi, err := os.Stat(path)
				require.NoError(t, err)
				require.Equal(t, tc.want, fi.Mode().Perm())
			})
		}
	}
}

// TestWriteDirSyncFails: a directory fsync that fails after the rename
// is reported as such, with the file in place and whole (the rename
// succeeded) and no temporary left; its error read "rename X to Y", which
// sent an operator after a rename that had worked. The fsync's failure is
// injected: a directory's fsync fails only on a failing disk or file
// system, which a test cannot make.
func TestWriteDirSyncFails(t *testing.T) {
	for _, tmp := range []string{"fixed", ""} {
		t.Run("tmp="+tmp, func(t *testing.T) {
			dir, path, tmpPath := testPaths(t, tmp)
			eio := fmt.Errorf("test: %w", syscall.EIO)
			synced := ""
			err := writeSynced(path, tmpPath, 0o644, func(f *os.File) error {
				_, err := f.WriteString("new")
				return err
			}, func(d string) error {
				synced = d
				return eio
			})
			require.Equal(t, dir, synced, "path's directory")
			require.ErrorIs(t, err, errDirSync)
			require.ErrorIs(t, err, syscall.EIO)
			require.ErrorContains(t, err, "sync directory "+dir+" after renaming f into it")
			require.NotContains(t, err.Error(), "rename ", "the rename succeeded")
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, "new", string(b), "in place, whole")
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "no temporary file left")
		})
	}
}

// testPaths returns a new directory, the path of the file f in it and,
// unless tmp is "", of the fixed temporary tmp ("" else).
func testPaths(t *testing.T, tmp string) (dir, path, tmpPath string) {
	dir = t.TempDir()
	if tmp != "" {
		tmpPath = filepath.Join(dir, tmp)
	}
	return dir, filepath.Join(dir, "f"), tmpPath
}
