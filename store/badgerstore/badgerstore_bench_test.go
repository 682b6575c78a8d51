package badgerstore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
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

var benchValue = []byte(`{"sub":"alice","scopes":["view","edit"],"aud":"rs1"}`)

func BenchmarkPut(b *testing.B) {
	s := benchStore(b)
	ctx := b.Context()
	i := 0
	for b.Loop() {
		if err := s.Put(ctx, "bench", fmt.Sprintf("key-%09d", i), benchValue, time.Time{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkPutParallel(b *testing.B) {
	s := benchStore(b)
	ctx := b.Context()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Sprintf("key-%09d", n.Add(1))
			if err := s.Put(ctx, "bench", k, benchValue, time.Time{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	ctx := b.Context()
	const keys = 1000
	for i := range keys {
		if err := s.Put(ctx, "bench", fmt.Sprintf("key-%09d", i), benchValue, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, "bench", fmt.Sprintf("key-%09d", i%keys)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkInsertTake is one single-use record's life: issued with Insert,
// redeemed with Take.
func BenchmarkInsertTake(b *testing.B) {
	s := benchStore(b)
	ctx := b.Context()
	exp := time.Now().Add(time.Hour)
	i := 0
	for b.Loop() {
		k := fmt.Sprintf("ticket-%09d", i)
		if err := s.Insert(ctx, "bench", k, benchValue, exp); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Take(ctx, "bench", k); err != nil {
			b.Fatal(err)
		}
		i++
	}
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
