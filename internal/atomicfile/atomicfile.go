// Package atomicfile writes a file whole or not at all, durably: what
// omen keeps beside its TSDB (the model snapshot, the backfill's learnt
// external labels) and the batch results.
package atomicfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/prometheus/prometheus/tsdb/fileutil"
)

// Write writes path whole or not at all: write fills a temporary file
// beside it, which is fsynced, closed and renamed to path, and path's
// directory is fsynced after the rename, as Prometheus's tsdb/fileutil
// has it. Without either fsync a power cut just after could leave path
// empty, partial, or the old file on ext4 or XFS, which write data back
// and commit renames on their own schedules. The file's mode is perm less
// the umask, as os.Create's and the TSDB's files' are: the temporary is
// always a new file, never one a crash left, whose mode could be another.
//
// On an error before the rename the temporary file is removed and an
// earlier path is left as it was; write's own error is returned as it
// is. An error of the directory's fsync is returned with path written
// (renamed into place, but maybe not durably), and says so.
//
// The temporary file is tmp: a fixed name, which the next write removes
// and creates again after a crash left it; or, if tmp is "", a new file
// named "."+filepath.Base(path)+".tmp-" and a random suffix, for writers
// of one directory at once (a crash leaves it behind).
func Write(path, tmp string, perm os.FileMode, write func(f *os.File) error) error {
	return writeSynced(path, tmp, perm, write, syncDir)
}

// errDirSync is wrapped by Write's error when the file was renamed into
// place but its directory's fsync failed: the file is there, whole, but a
// power cut may yet lose the rename.
var errDirSync = errors.New("directory not synced after the rename")

// syncDir fsyncs the directory dir, as Prometheus's tsdb/fileutil.Rename
// does after its rename.
func syncDir(dir string) error {
	d, err := fileutil.OpenDir(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close() // the sync's error is the one to report
		return err
	}
	return d.Close()
}

// writeSynced is Write with the directory's fsync sync (tests inject
// its failure).
func writeSynced(path, tmp string, perm os.FileMode, write func(f *os.File) error, sync func(dir string) error) (err error) {
	f, err := create(path, tmp, perm)
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
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	// The rename, then the directory's fsync: an error of the latter
	// comes with path written, and says so (it read "rename", though
	// the rename had succeeded).
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, filepath.Base(path), err)
	}
	if err := sync(filepath.Dir(path)); err != nil {
		return fmt.Errorf("sync directory %s after renaming %s into it: %w: %w", filepath.Dir(path), filepath.Base(path), errDirSync, err)
	}
	return nil
}

// create creates Write's temporary file, of mode perm less the umask
// (O_EXCL: a new file, not one a crash left). os.CreateTemp's would be
// 0600 whatever the umask, and a Chmod to perm would ignore the umask.
func create(path, tmp string, perm os.FileMode) (*os.File, error) {
	const flags = os.O_RDWR | os.O_CREATE | os.O_EXCL
	if tmp != "" {
		if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return os.OpenFile(tmp, flags, perm)
	}
	prefix := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	for range 10000 {
		f, err := os.OpenFile(prefix+strconv.FormatUint(rand.Uint64(), 36), flags, perm)
		if !errors.Is(err, os.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("no free temporary name %s*: %w", prefix, os.ErrExist)
}
