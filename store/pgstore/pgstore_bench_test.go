package pgstore

import (
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
