package badgerstore

import (
	"fmt"
	"testing"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/storetest"
)

// The benchmarks run on disk with SyncWrites, as in production: write
// costs are dominated by the sync of each commit.

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkStore runs the benchmarks every backend runs (storetest.Bench).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return benchStore(b) })
}

// BenchmarkFreeSpace is one statfs of the database's filesystem, the check
// that the free-space guard runs at most every spaceCheckInterval.
func BenchmarkFreeSpace(b *testing.B) {
	dir := b.TempDir()
	for b.Loop() {
		if _, _, err := freeSpace(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpaceGuardAdmit is what the guard adds to each write between
// two measures.
func BenchmarkSpaceGuardAdmit(b *testing.B) {
	s := benchStore(b)
	for b.Loop() {
		if err := s.space.admit(1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookups runs the resource lookups at 1, 10k and 100k resources
// (storetest.BenchLookups), in memory: reads do not sync.
func BenchmarkLookups(b *testing.B) {
	for _, n := range storetest.LookupSizes {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			s, err := Open(Options{InMemory: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			storetest.SeedResources(b, s, n)
			storetest.BenchLookups(b, s, n)
		})
	}
}
