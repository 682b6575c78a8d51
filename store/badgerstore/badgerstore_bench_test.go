package badgerstore

import (
	"testing"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/storetest"
)

// The benchmarks run on disk with SyncWrites, as in production: write
// costs are dominated by the sync of each commit.
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		s, err := Open(Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
