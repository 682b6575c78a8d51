package policies

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// benchInput is bob asking for view on alice's photo, with his e-mail and
// groups, and two console shares.
var benchInput = Input{
	Resource: photo, Scopes: []string{"view"}, ClientID: "app", Subject: "bob", Issuer: "https://idp.example",
	Claims: map[string]any{"email": "bob@example.org", "email_verified": true, "groups": []any{"family", "friends"}},
	Shares: []Share{{Subject: "carol", Scopes: []string{"view"}}, {Email: "bob@example.org", Scopes: []string{"download"}}},
	Now:    t0,
}

const smallPolicy = `package uma.share

import data.uma.lib

allow contains scope if {
	lib.in_group("family")
	some scope in lib.read_scopes
}

deny contains "edit" if lib.is_person("mallory@example.org")
`

// largePolicy has n rules: one per friend by subject, by e-mail, by domain
// and by group, in turn; bob matches the last one.
func largePolicy(n int) string {
	var b strings.Builder
	b.WriteString("package uma.share\n\nimport data.uma.lib\n\n")
	for i := range n - 1 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "allow contains \"view\" if input.requesting_party.sub == \"user-%d\"\n\n", i)
		case 1:
			fmt.Fprintf(&b, "allow contains \"download\" if lib.is_email(\"user-%d@example.org\")\n\n", i)
		case 2:
			fmt.Fprintf(&b, "allow contains scope if {\n\tlib.in_email_domain(\"org-%d.example\")\n\tsome scope in lib.read_scopes\n}\n\n", i)
		case 3:
			fmt.Fprintf(&b, "deny contains \"edit\" if lib.in_group(\"group-%d\")\n\n", i)
		}
	}
	b.WriteString("allow contains \"view\" if input.requesting_party.sub == \"bob\"\n")
	return b.String()
}

// indexedPolicy has n rules comparing input members with constants, which
// OPA's rule index selects without evaluating them all; bob matches the last.
func indexedPolicy(n int) string {
	var b strings.Builder
	b.WriteString("package uma.share\n\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "allow contains \"view\" if input.requesting_party.sub == \"user-%d\"\n\n", i)
	}
	b.WriteString("allow contains \"view\" if input.requesting_party.sub == \"bob\"\n")
	return b.String()
}

func benchmarkEvaluate(b *testing.B, src string, system bool) {
	e := newTestEngine(Options{})
	if err := e.SetOwnerModules(context.Background(), "alice", map[string]string{"rules.rego": src}); err != nil {
		b.Fatal(err)
	}
	if system {
		if err := e.SetSystemModules(context.Background(), map[string]string{"sys.rego": "package uma.system\n\ndeny contains \"admin\"\n"}); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	d, err := e.Evaluate(ctx, "alice", benchInput)
	if err != nil || len(d.Granted) == 0 {
		b.Fatalf("%+v, %v", d, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Evaluate(ctx, "alice", benchInput); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluateNoRules(b *testing.B) {
	benchmarkEvaluate(b, "package uma.share\n", false)
}

func BenchmarkEvaluateSmall(b *testing.B) {
	benchmarkEvaluate(b, smallPolicy, false)
}

func BenchmarkEvaluateSmallWithSystem(b *testing.B) {
	benchmarkEvaluate(b, smallPolicy, true)
}

// BenchmarkEvaluate200Rules: 200 rules calling library functions, which are
// evaluated one by one.
func BenchmarkEvaluate200Rules(b *testing.B) {
	benchmarkEvaluate(b, largePolicy(200), false)
}

// BenchmarkEvaluate200IndexedRules: 200 rules on input.requesting_party.sub.
func BenchmarkEvaluate200IndexedRules(b *testing.B) {
	benchmarkEvaluate(b, indexedPolicy(200), false)
}

func BenchmarkCompileSmall(b *testing.B) {
	for b.Loop() {
		if _, err := compile(context.Background(), ownerKind, map[string]string{"rules.rego": smallPolicy}, Options{}.withDefaults().bounds()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompile200Rules(b *testing.B) {
	src := largePolicy(200)
	for b.Loop() {
		if _, err := compile(context.Background(), ownerKind, map[string]string{"rules.rego": src}, Options{}.withDefaults().bounds()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOwnerProgramMemory reports the heap that one owner's rules in
// force hold (a one-rule module of their own, compiled with the library),
// measured over 200 owners.
func BenchmarkOwnerProgramMemory(b *testing.B) {
	const owners = 200
	var perOwner float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		e := NewEngine(Options{})
		for o := range owners {
			src := fmt.Sprintf("package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if lib.is_email(\"friend-%d@example.com\")\n", o)
			if err := e.SetOwnerModules(context.Background(), fmt.Sprintf("owner-%d", o), map[string]string{"main": src}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perOwner = float64(after.HeapAlloc-before.HeapAlloc) / owners
		runtime.KeepAlive(e)
	}
	b.ReportMetric(perOwner/1024, "heap-KiB/owner")
}

// BenchmarkCompileShard compiles a shard of shardSize owners with a small
// rule each (see shard.go) and reports the cost per owner (ns/owner), to
// compare with BenchmarkCompileSmall: one owner's rule compiled with the
// library on its own.
func BenchmarkCompileShard(b *testing.B) {
	ctx := context.Background()
	e := NewEngine(Options{})
	for i := range shardSize {
		src := strings.Replace(smallPolicy, "mallory@", fmt.Sprintf("mallory-%d@", i), 1)
		if err := e.SetOwnerModules(ctx, fmt.Sprintf("owner-%d", i), map[string]string{"rules.rego": src}); err != nil {
			b.Fatal(err)
		}
	}
	s := e.shards.of["owner-0"]
	if s == nil || len(s.members) != shardSize {
		b.Fatal("the owners are not in one shard")
	}
	b.ReportAllocs()
	for b.Loop() {
		s.mu.Lock()
		s.changed = shardSize
		e.compileShard(ctx, s)
		ok := s.changed == 0
		s.mu.Unlock()
		if !ok {
			b.Fatal("the shard did not compile")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/shardSize, "ns/owner")
}
