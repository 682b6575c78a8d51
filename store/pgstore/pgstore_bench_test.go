package pgstore

import (
	"fmt"
	"testing"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
	"github.com/caddy-uma/caddy-uma/store/storetest"
)

// The benchmarks run on the test server of pgtest with synchronous commit,
// as in production: write costs are dominated by the WAL flush of each
// commit, plus a round trip per statement.
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		return openDSN(b, pgtest.DSN(b), Options{})
	})
}

// BenchmarkLookups runs the resource lookups at 1, 10k and 100k resources
// (storetest.BenchLookups), each size in a schema of its own.
func BenchmarkLookups(b *testing.B) {
	for _, n := range storetest.LookupSizes {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			s := openDSN(b, pgtest.DSN(b), Options{})
			b.Cleanup(func() { s.Close() })
			storetest.SeedResources(b, s, n)
			if _, err := s.pool.Exec(b.Context(), "ANALYZE resources"); err != nil {
				b.Fatal(err)
			}
			storetest.BenchLookups(b, s, n)
		})
	}
}
