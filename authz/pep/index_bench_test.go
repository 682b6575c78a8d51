package pep

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// The cost of mapping a request by the uris of registered resources, and
// of an authorized request so mapped, at 1, 10k and 100k registered
// resources: flat when the uri table is a trie.

var indexSizes = []int{1, 10_000, 100_000}

// registeredResource is the i-th of the benchmarks' registered resources:
// one of 10k owners, with the uris of one file and of what is under it.
func registeredResource(i int) Resource {
	owner := fmt.Sprintf("owner-%d", i%10_000)
	base := fmt.Sprintf("/files/%s/%d", owner, i)
	return Resource{ID: fmt.Sprintf("res-%06d", i), Owner: owner, Scopes: []string{"read", "write", "delete"},
		URIs: []string{base, base + "/*"}}
}

func BenchmarkURIMatch(b *testing.B) {
	for _, n := range indexSizes {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			as := newFakeAS()
			for i := range n {
				as.registered = append(as.registered, registeredResource(i))
			}
			e, err := New(Config{AS: as, RegisteredURIs: true, URIRefresh: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			want := registeredResource(n / 2)
			r := request("GET", want.URIs[0]+"/thumb.jpg", "")
			segs, _ := splitPath(r.URL)
			ctx := context.Background()
			if res, ok, err := e.uris.match(ctx, r.Host, segs); !ok || err != nil || res.ID != want.ID {
				b.Fatalf("match = %v, %v, %v; want %s", res.ID, ok, err, want.ID)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, ok, _ := e.uris.match(ctx, r.Host, segs); !ok {
					b.Fatal("no match")
				}
			}
		})
	}
}

// BenchmarkCachedRPTRegisteredURIs is an authorized request with a cached
// RPT, co-hosted, mapped by registered uris among n resources of the AS's
// store.
func BenchmarkCachedRPTRegisteredURIs(b *testing.B) {
	for _, n := range indexSizes {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			as := newRealAS(b, nil)
			ctx := context.Background()
			now := time.Now().UTC()
			for i := range n - 1 {
				res := registeredResource(i)
				err := as.store.CreateResource(ctx, store.Resource{ID: res.ID, ResourceServer: "rs-api", Owner: res.Owner,
					Scopes: res.Scopes, URIs: res.URIs, CreatedAt: now, UpdatedAt: now})
				if err != nil {
					b.Fatal(err)
				}
			}
			err := as.store.CreateResource(ctx, store.Resource{ID: "album", ResourceServer: "rs-api", Owner: "alice",
				Scopes: []string{"read"}, URIs: []string{"/photos/alice/*"}, CreatedAt: now, UpdatedAt: now})
			if err != nil {
				b.Fatal(err)
			}
			e, err := New(Config{AS: CoHosted("rs-api", func(context.Context) LocalServer { return as.srv }),
				RegisteredURIs: true, URIRefresh: time.Hour, Now: as.clock.Now})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(e.Close)
			rpt := as.rptFor(e.Decide(request("GET", "/photos/alice/beach.jpg", "")).Challenge)
			r := request("GET", "/photos/alice/beach.jpg", rpt)
			if d := e.Decide(r); !d.Allow {
				b.Fatal(d)
			}
			benchAuthorized(b, e, r)
		})
	}
}

// BenchmarkURITableMemory reports the heap that a table of 100k
// registered resources (two uris each, over 10k owners) holds, per
// resource.
func BenchmarkURITableMemory(b *testing.B) {
	const n = 100_000
	list := make([]Resource, n)
	for i := range list {
		list[i] = registeredResource(i)
	}
	var table *uriTable
	var perResource float64
	for b.Loop() {
		table = nil
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		table = newURITable()
		for _, res := range list {
			table.put(res)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perResource = float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	runtime.KeepAlive(table)
	b.ReportMetric(perResource, "heap-B/resource")
	b.ReportMetric(perResource*n/(1<<20), "heap-MiB/100k")
}
