package badgerstore

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them. The
// full-disk child process (TestFullDiskChild) is the exception: it leaves
// its database open on purpose, because Badger's Close would write into
// the full disk, and its parent checks what it left.
func TestMain(m *testing.M) {
	if os.Getenv(fullDirEnv) != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}
