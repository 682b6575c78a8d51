//go:build !linux

package storetest

import (
	"os"
	"testing"
)

// Tmpfs mounts a small tmpfs on Linux; elsewhere the test is skipped, or
// fails under CI=true.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal("a tmpfs for full-disk tests needs Linux")
	}
	t.Skip("a tmpfs for full-disk tests needs Linux")
	return ""
}
