package policies

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWatcherPoll is one poll of an operator directory of more and
// more owners where nothing changed: the names, sizes and times of every
// owner's files. The watcher polls every interval (5 s by default) only
// where changes are not notified; on notifications it reads nothing while
// nothing changes (TestWatcherNotified).
func BenchmarkWatcherPoll(b *testing.B) {
	for _, n := range []int{100, 10000} {
		dir := b.TempDir()
		for i := range n {
			owner := filepath.Join(dir, fmt.Sprintf("owner-%05d", i))
			if err := os.Mkdir(owner, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(owner, "rules.rego"), []byte(aliceRules), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("owners=%d", n), func(b *testing.B) {
			w := NewWatcher(dir, time.Hour, nil, nil)
			if _, err := w.poll(true); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := w.poll(false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
