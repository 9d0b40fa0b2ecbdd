//go:build linux || darwin || freebsd

package tsdb

import (
	"fmt"
	"syscall"
)

// stRdOnly is ST_RDONLY, the read-only flag of statfs(2)'s f_flags on
// Linux; MNT_RDONLY, its counterpart on Darwin and FreeBSD, has the same
// value.
const stRdOnly = 0x1

// statDisk is statfs(2) on path.
func statDisk(path string) (diskStat, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return diskStat{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	return diskStat{
		known:    true,
		size:     uint64(st.Blocks) * uint64(st.Bsize),
		free:     uint64(st.Bavail) * uint64(st.Bsize),
		readOnly: uint64(st.Flags)&stRdOnly != 0,
	}, nil
}
