package storetest

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Tmpfs mounts a new tmpfs of size bytes on a temporary directory and
// returns the directory; the test unmounts it at its end. A small tmpfs is
// a disk that fills up quickly, for tests of full-disk behaviour. Mounting
// needs root: without it the test is skipped, or fails under CI=true.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700,size="+strconv.FormatInt(size, 10))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a tmpfs on %s (CI runs as root and needs it): %v", dir, err)
		}
		t.Skipf("mounting a tmpfs needs root: %v", err)
	}
	// Registered after TempDir's cleanup, so it runs first.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			// Something still holds a file in it: detach it now, the
			// kernel frees it when the last file closes.
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}
