//go:build !(linux || darwin || freebsd)

package badgerstore

import "os"

// freeSpace does not know the free space here: writes are not guarded.
func freeSpace(string) (free uint64, known bool, err error) { return 0, false, nil }

// allocatedBytes returns the size of a file.
func allocatedBytes(path string) uint64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return uint64(info.Size())
}
