//go:build linux || darwin || freebsd

package badgerstore

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// freeSpace returns the space available to unprivileged processes on the
// filesystem of dir (f_bavail: a filesystem's reserve for root is not
// counted, so the guard is stricter when Caddy runs as root).
func freeSpace(dir string) (free uint64, known bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false, err
	}
	if st.Blocks == 0 {
		return 0, false, nil // a filesystem without a size (some virtual ones)
	}
	avail := int64(st.Bavail)
	if avail < 0 {
		avail = 0
	}
	return uint64(avail) * uint64(st.Bsize), true, nil
}

// allocatedBytes returns the space a file takes on disk (a sparse file
// takes less than its size).
func allocatedBytes(path string) uint64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512 // st_blocks counts 512-byte units
	}
	return uint64(info.Size())
}
