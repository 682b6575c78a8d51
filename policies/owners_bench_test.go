package policies_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/policies"
)

// ownerRules is a family-and-friends rule of the kind the README shows;
// each owner names a person of their own (%d), so that no two owners'
// rules compile to the same program.
const ownerRules = `package uma.share

import data.uma.lib

allow contains scope if {
	lib.in_group("family")
	some scope in lib.read_scopes
}

deny contains scope if {
	lib.is_person("mallory-%d@example.org")
	some scope in lib.available
}
`

// BenchmarkEvaluateAmongOwners evaluates one owner's rules while more and
// more owners' rules are loaded in the engine: a flat evaluation costs the
// same at every size. It also reports the heap each loaded owner's
// compiled rules take (heap-B/owner), which sets the resident memory of an
// AS with many owners.
func BenchmarkEvaluateAmongOwners(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("owners=%d", n), func(b *testing.B) {
			ctx := context.Background()
			before := heapInUse()
			e := policies.NewEngine(policies.Options{})
			for i := range n {
				if err := e.SetOwnerModules(ctx, fmt.Sprintf("owner-%d", i), map[string]string{"rules.rego": fmt.Sprintf(ownerRules, i)}); err != nil {
					b.Fatal(err)
				}
			}
			perOwner := float64(heapInUse()-before) / float64(n)
			owner := fmt.Sprintf("owner-%d", n/2)
			in := policies.Input{
				Resource: policies.Resource{ID: "r1", Name: "photo", Owner: owner, Scopes: []string{"read", "write"}},
				Scopes:   []string{"read"}, ClientID: "app", Subject: "bob",
				Claims: map[string]any{"email": "bob@example.org", "email_verified": true, "groups": []any{"family"}},
				Now:    time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			}
			if d, err := e.Evaluate(ctx, owner, in); err != nil || len(d.Granted) == 0 {
				b.Fatalf("%+v, %v", d, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := e.Evaluate(ctx, owner, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perOwner, "heap-B/owner")
			runtime.KeepAlive(e)
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
