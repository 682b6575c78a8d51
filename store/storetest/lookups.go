package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// LookupSizes are the numbers of resources the lookup benchmarks run at.
var LookupSizes = []int{1, 10_000, 100_000}

// SeedResources creates n resources of the resource server "rs", over
// 10,000 owners: the i-th is "res-%06d" of "owner-(i mod 10000)", named
// "file i", with uris. Several goroutines create them, so that a backend
// with synced commits seeds 100k in seconds.
func SeedResources(tb testing.TB, s store.Store, n int) {
	tb.Helper()
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	const workers = 16
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				owner := fmt.Sprintf("owner-%d", i%10_000)
				r := store.Resource{
					ID: fmt.Sprintf("res-%06d", i), ResourceServer: "rs", Owner: owner, Name: fmt.Sprintf("file %d", i),
					Scopes: []string{"read", "write"}, URIs: []string{fmt.Sprintf("/files/%s/%d", owner, i)},
					CreatedAt: at, UpdatedAt: at,
				}
				if err := s.CreateResource(tb.Context(), r); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("seeding resources: %v", err)
	}
}

// BenchLookups runs the resource lookups of the request paths as
// sub-benchmarks of b, on s seeded with SeedResources(n): by resource
// server and name (the ticketless grant), by resource server, owner and
// name (a template's resource registered through the protection API), a
// page of an owner's resources, and, to compare, what a lookup by name
// cost without a name index: every resource of the resource server,
// filtered.
func BenchLookups(b *testing.B, s store.Store, n int) {
	i := n / 2
	name := fmt.Sprintf("file %d", i)
	owner := fmt.Sprintf("owner-%d", i%10_000)
	lookup := func(q store.ResourceQuery, want int) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				list, err := s.ListResources(b.Context(), q)
				if err != nil || len(list) != want {
					b.Fatalf("ListResources(%+v) = %d resources, %v; want %d", q, len(list), err, want)
				}
			}
		}
	}
	b.Run("ByName", lookup(store.ResourceQuery{ResourceServer: "rs", Name: name, Limit: 101}, 1))
	b.Run("ByOwnerAndName", lookup(store.ResourceQuery{ResourceServer: "rs", Owner: owner, Name: name}, 1))
	b.Run("OwnerPage", lookup(store.ResourceQuery{ResourceServer: "rs", Owner: owner, Limit: 10}, min(10, (n+9_999-i%10_000)/10_000)))
	b.Run("ByServerFiltered", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			list, err := s.ListResources(b.Context(), store.ResourceQuery{ResourceServer: "rs"})
			found := 0
			for _, r := range list {
				if r.Name == name {
					found++
				}
			}
			if err != nil || found != 1 {
				b.Fatalf("found %d, %v", found, err)
			}
		}
	})
}
