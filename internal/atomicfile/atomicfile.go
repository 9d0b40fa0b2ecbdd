// Package atomicfile writes a file whole or not at all, durably: what
// omen keeps beside its TSDB (the model snapshot, the backfill's learnt
// external labels) and the batch results.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/prometheus/tsdb/fileutil"
)

// Write writes path whole or not at all: write fills a temporary file
// beside it, which is fsynced, closed and renamed to path, and path's
// directory is fsynced after the rename, as Prometheus's tsdb/fileutil
// has it. Without either fsync a power cut just after could leave path
// empty, partial, or the old file on ext4 or XFS, which write data back
// and commit renames on their own schedules. The file's mode is perm,
// whatever the umask.
//
// On an error before the rename the temporary file is removed and an
// earlier path is left as it was; write's own error is returned as it
// is. An error of the directory's fsync is returned with path written.
//
// The temporary file is tmp, created or truncated: a fixed name, which
// the next write takes over after a crash left it; or, if tmp is "", a
// new file named "."+filepath.Base(path)+".tmp-" and a random suffix,
// for writers of one directory at once (a crash leaves it behind).
func Write(path, tmp string, perm os.FileMode, write func(f *os.File) error) (err error) {
	var f *os.File
	if tmp == "" {
		f, err = os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	} else {
		f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp = f.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				_ = f.Close() // already failed; the first error is the one to report
			}
			_ = os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	// CreateTemp's 0600, or an earlier temporary's mode, else.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	// The rename, then the directory's fsync: an error of the latter
	// comes with path written.
	if err := fileutil.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, filepath.Base(path), err)
	}
	return nil
}
