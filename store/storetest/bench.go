package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// benchValue is the size of a typical record: a token holder.
var benchValue = []byte(`{"sub":"alice","scopes":["view","edit"],"aud":"rs1"}`)

// Bench runs the benchmarks of the records that the authorization server
// writes most, as sub-benchmarks of b, on the store that open returns (a
// new, empty one, as production runs it: durable writes). Run it from every
// backend, so that one `go test -bench` over the backends' packages
// compares them:
//
//	func BenchmarkStore(b *testing.B) { storetest.Bench(b, open) }
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	newStore := func(b *testing.B) store.Store {
		b.Helper()
		s := open(b)
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	b.Run("Put", func(b *testing.B) { benchPut(b, newStore(b)) })
	b.Run("PutParallel", func(b *testing.B) { benchPutParallel(b, newStore(b)) })
	b.Run("PutParallelWatched", func(b *testing.B) {
		s := newStore(b)
		if err := s.Watch(b.Context(), func(store.Change) {}, "bench"); err != nil {
			b.Fatal(err)
		}
		benchPutParallel(b, s)
	})
	b.Run("PutAll", func(b *testing.B) { benchPutAll(b, newStore(b), false) })
	b.Run("PutAllParallel", func(b *testing.B) { benchPutAll(b, newStore(b), true) })
	b.Run("Get", func(b *testing.B) { benchGet(b, newStore(b)) })
	b.Run("Insert", func(b *testing.B) { benchSingleUse(b, newStore(b), false) })
	b.Run("InsertTake", func(b *testing.B) { benchSingleUse(b, newStore(b), true) })
	for _, writers := range benchWriterCounts {
		name := fmt.Sprintf("writers=%d", writers)
		b.Run("ParallelPut/"+name, func(b *testing.B) {
			s := newStore(b)
			benchWriters(b, writers, func(ctx context.Context, i int64) error {
				return s.Put(ctx, "bench", fmt.Sprintf("key-%09d", i), benchValue, time.Time{})
			})
		})
		b.Run("ParallelInsert/"+name, func(b *testing.B) {
			s := newStore(b)
			exp := time.Now().Add(time.Hour)
			benchWriters(b, writers, func(ctx context.Context, i int64) error {
				return s.Insert(ctx, "bench", fmt.Sprintf("ticket-%09d", i), nil, exp)
			})
		})
		b.Run("ParallelPutAll/"+name, func(b *testing.B) {
			s := newStore(b)
			exp := time.Now().Add(time.Hour)
			benchWriters(b, writers, func(ctx context.Context, i int64) error {
				return s.PutAll(ctx, grantWrites(i, exp))
			})
		})
	}
}

// benchWriterCounts are the numbers of concurrent writers of the Parallel
// benchmarks: one, then as many as the AS has requests in flight.
var benchWriterCounts = []int{1, 8, 32, 64}

// benchWriters runs b.N writes on exactly writers goroutines, each taking
// the next index until b.N are done, and reports the writes per second
// (each write one call of write, acknowledged durable when it returns).
func benchWriters(b *testing.B, writers int, write func(ctx context.Context, i int64) error) {
	ctx := b.Context()
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := write(ctx, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// grantWrites are the records one UMA grant commits: the ticket's replay
// record, the RPT, the refresh token, a token holder and a PCT.
func grantWrites(i int64, exp time.Time) []store.Write {
	key := fmt.Sprintf("%09d", i)
	return []store.Write{
		{Namespace: "bench-ticket", Key: key, Value: []byte{}, ExpiresAt: exp},
		{Namespace: "bench-rpt", Key: key, Value: benchValue, ExpiresAt: exp},
		{Namespace: "bench-token", Key: "refresh-" + key, Value: benchValue, ExpiresAt: exp},
		{Namespace: "bench-holder", Key: key, Value: benchValue, ExpiresAt: exp},
		{Namespace: "bench-token", Key: "pct-" + key, Value: benchValue, ExpiresAt: exp},
	}
}

func benchPut(b *testing.B, s store.Store) {
	ctx := b.Context()
	i := 0
	for b.Loop() {
		if err := s.Put(ctx, "bench", fmt.Sprintf("key-%09d", i), benchValue, time.Time{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// benchPutParallel is 16 writers per CPU at once: what grouping of commits
// the backend achieves. PutParallelWatched runs it with a watcher of the
// namespace: what the change feed costs the writers (on PostgreSQL, NOTIFY
// serializes the commits that use it).
func benchPutParallel(b *testing.B, s store.Store) {
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

// benchPutAll is the commit of a grant: four records (RPT holder, refresh
// token, PCT, history) in one PutAll, one writer at a time or, with
// parallel, 16 writers per CPU.
func benchPutAll(b *testing.B, s store.Store, parallel bool) {
	ctx := b.Context()
	var n atomic.Int64
	commit := func() error {
		i := n.Add(1)
		w := make([]store.Write, 4)
		for j := range w {
			w[j] = store.Write{Namespace: "bench", Key: fmt.Sprintf("key-%09d-%d", i, j), Value: benchValue}
		}
		return s.PutAll(ctx, w)
	}
	if !parallel {
		for b.Loop() {
			if err := commit(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := commit(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchGet(b *testing.B, s store.Store) {
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

// benchSingleUse is one single-use record's life: issued with Insert (the
// replay record of a redeemed ticket), and, with take, redeemed with Take
// (an authorization code).
func benchSingleUse(b *testing.B, s store.Store, take bool) {
	ctx := b.Context()
	exp := time.Now().Add(time.Hour)
	i := 0
	for b.Loop() {
		k := fmt.Sprintf("ticket-%09d", i)
		if err := s.Insert(ctx, "bench", k, benchValue, exp); err != nil {
			b.Fatal(err)
		}
		if take {
			if _, err := s.Take(ctx, "bench", k); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
}
