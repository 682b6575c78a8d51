package dump

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// benchRecords and benchResources are the size of the store of the
// benchmarks: records of 200 bytes (tokens, shares, history) in ten
// namespaces, and resources.
const benchRecords, benchResources = 10000, 100

func fillBench(b *testing.B, s store.Store) {
	b.Helper()
	ctx := b.Context()
	for i := range benchResources {
		r := store.Resource{ID: fmt.Sprintf("r%04d", i), ResourceServer: "rs", Owner: "o", Scopes: []string{"read"}}
		if err := s.CreateResource(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	writes := make([]store.Write, 0, 1000)
	exp := time.Now().Add(time.Hour)
	for i := range benchRecords {
		writes = append(writes, store.Write{Namespace: fmt.Sprintf("ns%d", i%10), Key: fmt.Sprintf("key-%06d", i),
			Value: bytes.Repeat([]byte{byte(i)}, 200), ExpiresAt: exp})
		if len(writes) == cap(writes) {
			if err := s.PutAll(ctx, writes); err != nil {
				b.Fatal(err)
			}
			writes = writes[:0]
		}
	}
}

// BenchmarkExport exports a store of benchRecords records and
// benchResources resources, on each backend.
func BenchmarkExport(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b)
			fillBench(b, s)
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if _, err := Export(b.Context(), &buf, s, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(buf.Len()))
		})
	}
}

// BenchmarkImport imports the dump of BenchmarkExport's store into a new
// store of each backend, with the check that reads it back.
func BenchmarkImport(b *testing.B) {
	src := openMemory(b)
	fillBench(b, src)
	var buf bytes.Buffer
	if _, err := Export(b.Context(), &buf, src, ""); err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				dst := be.open(b)
				b.StartTimer()
				if _, err := Import(b.Context(), bytes.NewReader(buf.Bytes()), dst, Options{}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(buf.Len()))
		})
	}
}
