package policies_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
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

// BenchmarkEvaluateRandomOwner is the rules' part of a grant on a random
// resource of one of more and more owners, as the authorization server
// does it: evaluate the owner's rules, and if they are not in memory any
// more (ErrNotInForce) put them in force again and evaluate. Flat is the
// same ns/op at every size; heap-B/owner is the heap all owners' rules in
// force take, per owner.
func BenchmarkEvaluateRandomOwner(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("owners=%d", n), func(b *testing.B) {
			ctx := context.Background()
			before := heapInUse()
			e := policies.NewEngine(policies.Options{})
			modules := make([]map[string]string, n)
			for i := range n {
				modules[i] = map[string]string{"rules.rego": fmt.Sprintf(ownerRules, i)}
				if _, err := e.LoadOwnerModules(ctx, fmt.Sprintf("owner-%d", i), modules[i], nil); err != nil {
					b.Fatal(err)
				}
			}
			perOwner := float64(heapInUse()-before) / float64(n)
			rng := rand.New(rand.NewPCG(1, 2))
			in := policies.Input{
				Resource: policies.Resource{ID: "r1", Name: "photo", Scopes: []string{"read", "write"}},
				Scopes:   []string{"read"}, ClientID: "app", Subject: "bob",
				Claims: map[string]any{"email": "bob@example.org", "email_verified": true, "groups": []any{"family"}},
				Now:    time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			}
			reloads := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				i := rng.IntN(n)
				owner := fmt.Sprintf("owner-%d", i)
				in.Resource.Owner = owner
				d, err := e.Evaluate(ctx, owner, in)
				if errors.Is(err, policies.ErrNotInForce) {
					reloads++
					if _, err := e.LoadOwnerModules(ctx, owner, modules[i], nil); err != nil {
						b.Fatal(err)
					}
					d, err = e.Evaluate(ctx, owner, in)
				}
				if err != nil || len(d.Granted) == 0 {
					b.Fatalf("%s: %+v, %v", owner, d, err)
				}
			}
			b.ReportMetric(perOwner, "heap-B/owner")
			b.ReportMetric(float64(reloads)/float64(b.N), "reloads/op")
			if rss := residentMiB(); rss > 0 {
				b.ReportMetric(rss, "rss-MiB")
			}
			runtime.KeepAlive(e)
		})
	}
}

// residentMiB is the resident memory of the process (VmRSS), or 0 where
// /proc does not tell.
func residentMiB() float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kib / 1024
		}
	}
	return 0
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
