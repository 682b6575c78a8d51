package storetest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// FillDisk appends about n bytes to the file "filler" in dir, or with
// n < 0 writes until the disk is full (ENOSPC), as another process filling
// the disk would. It returns the file's path: removing it frees the space.
func FillDisk(dir string, n int64) (string, error) {
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for written := int64(0); n < 0 || written < n; {
		part := chunk
		if n >= 0 && n-written < int64(len(part)) {
			part = part[:n-written]
		}
		k, err := f.Write(part)
		written += int64(k)
		if errors.Is(err, syscall.ENOSPC) && n < 0 {
			if len(chunk) == 1 {
				return path, nil
			}
			chunk = chunk[:len(chunk)/2] // fill the last pages too
			continue
		}
		if err != nil {
			return path, err
		}
	}
	return path, nil
}
