package policies_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/policies"
)

// shardMemRules are rules of the kinds bench/rules holds, each naming a
// person of its owner's (%d), so that no two owners' rules are alike.
var shardMemRules = []string{`package uma.share

import data.uma.lib

allow contains scope if {
	lib.in_group("family")
	some scope in lib.read_scopes
}

ask_owner contains scope if {
	lib.in_group("family")
	some scope in lib.requested
	not lib.is_read_scope(scope)
}
`, `package uma.share

import data.uma.lib

friends := {"bob@example.com", "friend-%[1]d@example.org", "other-%[1]d@example.net"}

allow contains scope if {
	lib.email in friends
	some scope in lib.read_scopes
}

required_claims contains lib.email_claim if not lib.email
`, `package uma.share

import data.uma.lib

allow contains scope if {
	input.resource.type == "urn:example:record"
	lib.in_email_domain("example.com")
	some scope in {"read", "comment"}
}

deny contains scope if {
	lib.is_person("mallory-%[1]d@example.com")
	some scope in lib.available
}
`}

// BenchmarkShardMemory reports the heap that the compiled shards of 640
// owners (ten shards of 64) hold once each owner was evaluated (every
// shard compiled), per owner (heap-KiB/owner), and the heap of their
// sources alone before any evaluation (sources-KiB/owner).
func BenchmarkShardMemory(b *testing.B) {
	const owners = 640
	ctx := context.Background()
	var perOwner, sources float64
	for b.Loop() {
		before := heapInUse()
		e := policies.NewEngine(policies.Options{})
		for o := range owners {
			src := shardMemRules[o%len(shardMemRules)]
			if strings.Contains(src, "%[1]d") {
				src = fmt.Sprintf(src, o)
			}
			if err := e.SetOwnerModules(ctx, fmt.Sprintf("owner-%d", o), map[string]string{"rules.rego": src}); err != nil {
				b.Fatal(err)
			}
		}
		loaded := heapInUse()
		for o := range owners {
			owner := fmt.Sprintf("owner-%d", o)
			in := policies.Input{
				Resource: policies.Resource{ID: "r1", Name: "photo", Owner: owner, Scopes: []string{"read", "write"}},
				Scopes:   []string{"read"}, ClientID: "app", Subject: "bob",
				Claims: map[string]any{"email": "bob@example.com", "email_verified": true, "groups": []any{"family"}},
				Now:    time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			}
			if _, err := e.Evaluate(ctx, owner, in); err != nil {
				b.Fatal(err)
			}
		}
		after := heapInUse()
		perOwner = float64(after-loaded) / owners
		sources = float64(loaded-before) / owners
		runtime.KeepAlive(e)
	}
	b.ReportMetric(perOwner/1024, "heap-KiB/owner")
	b.ReportMetric(sources/1024, "sources-KiB/owner")
}
