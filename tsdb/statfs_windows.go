package tsdb

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// statDisk is GetDiskFreeSpaceExW on path. A read-only volume is left to
// checkPath's test write.
func statDisk(path string) (diskStat, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return diskStat{}, fmt.Errorf("disk free space of %s: %w", path, err)
	}
	var free, size, total uint64
	if err := windows.GetDiskFreeSpaceEx(p, &free, &size, &total); err != nil {
		return diskStat{}, fmt.Errorf("disk free space of %s: %w", path, err)
	}
	return diskStat{known: true, size: size, free: free}, nil
}
