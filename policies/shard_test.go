package policies

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// shardInputs are requests of several kinds: bob with a verified address and
// groups through one client, the same without a verified address, someone
// unknown, at two times, reading and writing.
func shardInputs(owner string) []Input {
	var out []Input
	for _, claims := range []map[string]any{
		{"email": "bob@example.com", "email_verified": true, "groups": []any{"family", "/family"}},
		{"email": "Bob@Example.com", "email_verified": false},
		{},
	} {
		for _, now := range []time.Time{t0, time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC)} {
			for _, scopes := range [][]string{{"read"}, {"write", "read"}} {
				out = append(out, Input{
					Resource: Resource{ID: "r-" + owner, Owner: owner, Type: "urn:example:record", Scopes: []string{"read", "write", "delete"}},
					Scopes:   scopes, ClientID: "coach-app", Subject: "bob", Issuer: "https://idp.example",
					Claims: claims, Now: now,
					Shares: []Share{{Email: "bob@example.com", Scopes: []string{"delete"}}},
				})
			}
		}
	}
	return out
}

// decide evaluates every input of shardInputs for owner.
func decide(t *testing.T, e *Engine, owner string) []Decision {
	t.Helper()
	var out []Decision
	for _, in := range shardInputs(owner) {
		d, err := e.Evaluate(t.Context(), owner, in)
		if err != nil {
			t.Fatalf("Evaluate(%s): %v", owner, err)
		}
		out = append(out, d)
	}
	return out
}

// inShard reports whether the owner's rules in force come from a shard.
func inShard(e *Engine, owner string) bool {
	v, ok := e.owners.Load(owner)
	if !ok {
		return false
	}
	p := v.(*ownerSlot).prog.Load()
	return p != nil && p.shard != nil
}

// TestShardsDecideAsAlone: owners' rules compiled together in shards
// decide exactly as each owner's rules compiled on their own, for the
// examples' rules and for rules that look at data beyond their package
// (which stay compiled on their own: nothing of another owner is visible
// to them).
func TestShardsDecideAsAlone(t *testing.T) {
	examples, _, err := LoadDir("examples")
	if err != nil {
		t.Fatal(err)
	}
	kinds := slices.Sorted(maps.Keys(examples))
	var sets []map[string]string
	for _, k := range kinds {
		sets = append(sets, examples[k])
	}
	// Rules that read data outside their package: compiled alone, each
	// sees only its own package, the library and the decision module.
	snoops := []string{
		`allow contains k if some k, _ in data.uma.owners`,
		`allow contains "x" if data["uma"]["owners"]`,
		`allow contains s if { some o; some s in data.uma.owners[o].allow }`,
		`allow contains "x" if data.uma.owners`,
		`allow contains "view" if data.uma.decisions`,
		`allow contains "x" if data.uma.system`,
		`allow contains "x" if data.uma.owners.o0`,
		`allow contains s if some s in data.uma.owners.o1.allow`,
		`allow contains "x" if data.uma.decisions.o2.result`,
		`allow contains "x" if { lib.subject == "bob" with data.uma.owners as {} }`,
		`allow contains k if some k, _ in data.uma.rulesets`,
		`allow contains s if { some r; some s in data.uma.rulesets[r].allow }`,
		`allow contains o if some o, _ in data.uma.ruleset_of`,
		`allow contains "x" if data.uma.ruleset_of[input.resource.owner]`,
	}
	for _, src := range snoops {
		sets = append(sets, rules(src))
	}
	// Rules that read their own package whole, and the library whole.
	sets = append(sets,
		rules("friends := {\"bob\"}\n\nallow contains \"read\" if \"bob\" in data.uma.share.friends\n"),
		rules("allow contains \"read\" if { x := lib; count(x.read_verbs) > count(lib.requested) }\n"),
	)

	ctx := t.Context()
	alone := newTestEngine(Options{})
	for i, modules := range sets {
		must(t, alone.SetOwnerModules(ctx, fmt.Sprintf("owner-%d", i), modules))
	}
	e := newTestEngine(Options{})
	const owners = 3 * shardSize
	for i := range owners {
		must(t, e.SetOwnerModules(ctx, fmt.Sprintf("owner-%d", i), sets[i%len(sets)]))
	}
	sharded := 0
	for i := range owners {
		owner := fmt.Sprintf("owner-%d", i)
		set := i % len(sets)
		alonedec := decide(t, alone, fmt.Sprintf("owner-%d", set))
		if got := decide(t, e, owner); !reflect.DeepEqual(got, alonedec) {
			t.Errorf("%s (%v):\n got %+v\nwant %+v", owner, sets[set], got, alonedec)
		}
		if inShard(e, owner) {
			sharded++
			if set >= len(kinds) && set < len(kinds)+len(snoops) {
				t.Errorf("%s: rules that read other data were compiled in a shard: %v", owner, sets[set])
			}
		}
	}
	// Every owner evaluated whose rules read only their package and the
	// library is in force from a shard.
	if want := owners - len(snoops)*owners/len(sets); sharded < want {
		t.Errorf("%d owners' rules in force from shards, want at least %d", sharded, want)
	}
}

// TestShardsFollowChanges: an owner whose rules are in a shard gets new
// rules at once, and none when they are removed; the shard compiled again
// later keeps them.
func TestShardsFollowChanges(t *testing.T) {
	ctx := t.Context()
	e := newTestEngine(Options{})
	view := rules(`allow contains "read" if lib.is_subject("bob")`)
	for i := range shardSize {
		must(t, e.SetOwnerModules(ctx, fmt.Sprintf("owner-%d", i), view))
	}
	granted := func(owner string) []string {
		t.Helper()
		d, err := e.Evaluate(ctx, owner, shardInputs(owner)[5])
		if err != nil {
			t.Fatal(err)
		}
		return d.Granted
	}
	if got := granted("owner-0"); !slices.Equal(got, []string{"read"}) {
		t.Fatalf("owner-0 granted %v, want read", got)
	}
	if !inShard(e, "owner-0") {
		t.Fatal("owner-0's rules are not in a shard once evaluated")
	}
	write := rules(`allow contains "write" if lib.is_subject("bob")`)
	must(t, e.SetOwnerModules(ctx, "owner-0", write))
	if got := granted("owner-0"); !slices.Equal(got, []string{"write"}) {
		t.Errorf("owner-0 granted %v after a change, want write", got)
	}
	must(t, e.SetOwnerModules(ctx, "owner-1", nil))
	if got := granted("owner-1"); len(got) != 0 {
		t.Errorf("owner-1 granted %v without rules", got)
	}
	// Enough changes to compile the shard again.
	for i := 2; i < shardSize/2+2; i++ {
		must(t, e.SetOwnerModules(ctx, fmt.Sprintf("owner-%d", i), write))
	}
	if !inShard(e, "owner-0") || inShard(e, "owner-1") {
		t.Errorf("after the shard's compilation: owner-0 in a shard %v, owner-1 %v", inShard(e, "owner-0"), inShard(e, "owner-1"))
	}
	if got := granted("owner-0"); !slices.Equal(got, []string{"write"}) {
		t.Errorf("owner-0 granted %v from the shard, want write", got)
	}
	if got := granted("owner-1"); len(got) != 0 {
		t.Errorf("owner-1 granted %v without rules", got)
	}
	if got := granted(fmt.Sprintf("owner-%d", shardSize-1)); !slices.Equal(got, []string{"read"}) {
		t.Errorf("an unchanged owner granted %v, want read", got)
	}
	if got := e.OwnerModules("owner-0"); !maps.Equal(got, write) {
		t.Errorf("OwnerModules from a shard = %v", got)
	}
}

// TestShardsKeepOwnersApart: in a shard, whose one query picks the package
// of the input's owner, each owner gets their own rules' decision and never
// another's, whatever the owners' names (names that look like paths,
// quotes, a name that is a prefix of another); an input naming another
// owner is refused.
func TestShardsKeepOwnersApart(t *testing.T) {
	ctx := t.Context()
	e := newTestEngine(Options{})
	names := []string{"a", "a.b", "a b", `q"uote`, "owners", "o0", "uma.share", "[x]", "é"}
	for len(names) < shardSize {
		names = append(names, fmt.Sprintf("owner-%d", len(names)))
	}
	for i, owner := range names {
		must(t, e.SetOwnerModules(ctx, owner, rules(fmt.Sprintf(
			"allow contains \"s%d\" if input.resource.owner == %q\n\ndeny contains \"d%d\"\n", i, owner, i))))
	}
	for i, owner := range names {
		in := shardInputs(owner)[0]
		d, err := e.Evaluate(ctx, owner, in)
		if err != nil {
			t.Fatalf("%q: %v", owner, err)
		}
		if !inShard(e, owner) {
			t.Fatalf("%q: rules not in a shard", owner)
		}
		if want := []string{fmt.Sprintf("s%d", i)}; !slices.Equal(d.Allow, want) {
			t.Errorf("%q: allow %v, want %v", owner, d.Allow, want)
		}
		if want := []string{fmt.Sprintf("d%d", i)}; !slices.Equal(d.Deny, want) {
			t.Errorf("%q: deny %v, want %v", owner, d.Deny, want)
		}
		in.Resource.Owner = names[(i+1)%len(names)]
		if d, err := e.Evaluate(ctx, owner, in); !errors.Is(err, ErrEvaluation) {
			t.Errorf("%q evaluated on %q's resource: %+v, %v", owner, in.Resource.Owner, d, err)
		}
	}
}

// TestShardsShareRuleSets: owners whose rules are the same but for
// comments and layout have one rule set, compiled once in one shard, and
// each decides as their rules do alone (here with a rule that reads the
// owner of the resource); owners with rules of their own fill shards of
// 64 rule sets. An owner whose rules change leaves the rule set, which
// the others keep.
func TestShardsShareRuleSets(t *testing.T) {
	ctx := t.Context()
	e := newTestEngine(Options{})
	template := "allow contains \"read\" if lib.is_subject(\"bob\")\n\nallow contains \"owner\" if input.resource.owner == \"o-7\"\n"
	const owners = 300
	for i := range owners {
		src := template
		switch {
		case i%3 == 1:
			src = fmt.Sprintf("# the rules of o-%d\n%s", i, template)
		case i%3 == 2:
			src = strings.ReplaceAll(template, "\n\n", "\n\n\n")
		}
		must(t, e.SetOwnerModules(ctx, fmt.Sprintf("o-%d", i), rules(src)))
	}
	for i := range 2 * shardSize {
		must(t, e.SetOwnerModules(ctx, fmt.Sprintf("own-%d", i), rules(fmt.Sprintf(
			"allow contains \"read\" if lib.is_subject(\"bob-%d\")\n", i))))
	}
	e.shards.mu.Lock()
	shared := e.shards.of["o-0"]
	var others []*shard
	for i := range owners {
		if e.shards.of[fmt.Sprintf("o-%d", i)] != shared {
			others = append(others, e.shards.of[fmt.Sprintf("o-%d", i)])
		}
	}
	shardsOfOwn := map[*shard]bool{}
	for i := range 2 * shardSize {
		shardsOfOwn[e.shards.of[fmt.Sprintf("own-%d", i)]] = true
	}
	e.shards.mu.Unlock()
	if shared == nil || len(others) != 0 {
		t.Fatalf("the owners of one rule set are in %d other shards", len(others))
	}
	if n := len(shardsOfOwn); n != 3 {
		t.Errorf("128 owners with rules of their own, and one rule set, in %d shards; want 3", n)
	}
	for _, i := range []int{0, 1, 2, 7, 8, owners - 1} {
		o := fmt.Sprintf("o-%d", i)
		d, err := e.Evaluate(ctx, o, Input{Resource: Resource{ID: "r", Owner: o, Scopes: []string{"read", "owner"}}, Subject: "bob", Now: t0})
		want := []string{"read"}
		if i == 7 {
			want = []string{"owner", "read"}
		}
		if err != nil || !slices.Equal(d.Granted, want) || !inShard(e, o) {
			t.Errorf("%s: granted %v, %v (in a shard: %v); want %v", o, d.Granted, err, inShard(e, o), want)
		}
	}
	shared.mu.Lock()
	sets, members := len(shared.sets), len(shared.members)
	shared.mu.Unlock()
	if sets != shardSize { // the shared rule set and 63 owners' own
		t.Errorf("the shard of the rule set holds %d rule sets, want %d", sets, shardSize)
	}
	if members < owners {
		t.Errorf("the shard of the rule set holds %d owners, want at least %d", members, owners)
	}
	// A new owner of the rule set is in force from the shard, compiled
	// already, at once: no change to compile it again for.
	shared.mu.Lock()
	changed := shared.changed
	shared.mu.Unlock()
	must(t, e.SetOwnerModules(ctx, "o-new", rules("# mine\n"+template)))
	shared.mu.Lock()
	changedAfter := shared.changed
	shared.mu.Unlock()
	if !inShard(e, "o-new") || changedAfter != changed {
		t.Errorf("a new owner of a compiled rule set: in a shard %v, changes %d -> %d; want true, unchanged",
			inShard(e, "o-new"), changed, changedAfter)
	}
	if d, err := e.Evaluate(ctx, "o-new", Input{Resource: Resource{ID: "r", Owner: "o-new", Scopes: []string{"read", "owner"}}, Subject: "bob", Now: t0}); err != nil || !slices.Equal(d.Granted, []string{"read"}) {
		t.Errorf("o-new: granted %v, %v; want [read]", d.Granted, err)
	}
	// o-8 changes their rules: the others keep the rule set.
	must(t, e.SetOwnerModules(ctx, "o-8", rules(`allow contains "write" if lib.is_subject("bob")`)))
	for _, o := range []string{"o-8", "o-9"} {
		d, err := e.Evaluate(ctx, o, Input{Resource: Resource{ID: "r", Owner: o, Scopes: []string{"read", "write"}}, Subject: "bob", Now: t0})
		want := map[string][]string{"o-8": {"write"}, "o-9": {"read"}}[o]
		if err != nil || !slices.Equal(d.Granted, want) {
			t.Errorf("%s after o-8's change: granted %v, %v; want %v", o, d.Granted, err, want)
		}
	}
}

// threeShards returns an engine that keeps two shards in memory, with the
// rules of three shards' owners put in force (owner(shard, i)), none
// evaluated: each allows "s<shard>" to bob, in a rule set of their own.
func threeShards(t *testing.T) (*Engine, func(shard, i int) string) {
	e := newTestEngine(Options{MaxShardsInForce: 2})
	owner := func(shard, i int) string { return fmt.Sprintf("owner-%d-%d", shard, i) }
	for sh := range 3 {
		for i := range shardSize {
			must(t, e.SetOwnerModules(t.Context(), owner(sh, i), ownRules(sh, i)))
		}
	}
	return e, owner
}

// ownRules are the rules of threeShards' owner(shard, i).
func ownRules(shard, i int) map[string]string {
	return rules(fmt.Sprintf("allow contains \"s%d\" if { lib.is_subject(\"bob\"); input.resource.id != \"r-%d-%d\" }\n", shard, shard, i))
}

// liveShards returns the number of shards compiled, in memory.
func (e *Engine) liveShards() int {
	e.shards.mu.Lock()
	defer e.shards.mu.Unlock()
	return len(e.shards.live)
}

// TestShardsCompiledWhenEvaluatedAndBounded: owners' rules put in force
// are compiled with their shard at the first evaluation of one of its
// owners, not before; past MaxShardsInForce the shard evaluated longest
// ago is dropped, and its owners' next evaluation compiles it again, with
// the same decisions. Rules read again unchanged compile nothing.
func TestShardsCompiledWhenEvaluatedAndBounded(t *testing.T) {
	ctx := t.Context()
	e, owner := threeShards(t)
	compiled := e.liveShards
	if n := compiled(); n != 0 {
		t.Fatalf("%d shards compiled before any evaluation, want 0", n)
	}
	check := func(sh, i int) {
		t.Helper()
		o := owner(sh, i)
		d, err := e.Evaluate(ctx, o, shardInputs(o)[0])
		if err != nil {
			t.Fatalf("Evaluate(%s): %v", o, err)
		}
		if want := []string{fmt.Sprintf("s%d", sh)}; !slices.Equal(d.Allow, want) {
			t.Errorf("%s: allow %v, want %v", o, d.Allow, want)
		}
		if !inShard(e, o) {
			t.Errorf("%s: not in force from a shard once evaluated", o)
		}
	}
	check(0, 0)
	if n := compiled(); n != 1 {
		t.Errorf("%d shards compiled after one evaluation, want 1", n)
	}
	check(0, 5) // the same shard: nothing more compiled
	check(1, 3)
	check(2, 7) // past the bound: shard 0 was evaluated longest ago
	if n := compiled(); n != 2 {
		t.Errorf("%d shards compiled, want the bound, 2", n)
	}
	if inShard(e, owner(0, 0)) {
		t.Errorf("%s: shard 0 still compiled past the bound", owner(0, 0))
	}
	if got := e.OwnerModules(owner(0, 0)); len(got) == 0 {
		t.Errorf("a dropped shard's owner lost their sources")
	}
	compiles := e.compiles.Load()
	// Rules read again unchanged (as the authorization server does when
	// its change feed is not fresh) compile nothing, in or out of memory.
	for _, sh := range []int{0, 2} {
		if _, err := e.LoadOwnerModules(ctx, owner(sh, 1), ownRules(sh, 1), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.compiles.Load() - compiles; n != 0 {
		t.Errorf("%d compilations to read unchanged rules again, want 0", n)
	}
	check(0, 1) // compiled again, dropping shard 1
	check(2, 2)
	if inShard(e, owner(1, 3)) {
		t.Errorf("%s: shard 1 still compiled past the bound", owner(1, 3))
	}
	check(1, 3)
}

// TestWarm: Warm compiles the shards whose owners' rules wait for their
// first evaluation, up to MaxShardsInForce and never past it, without
// compiling any owner's rules again; the owners of a warmed shard decide
// from it, as they would have after compiling it at their first
// evaluation. A second Warm finds nothing to do, and one whose context
// ended compiles nothing.
func TestWarm(t *testing.T) {
	ctx := t.Context()
	e, owner := threeShards(t)
	live := e.liveShards
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if n, err := e.Warm(stopped); n != 0 || !errors.Is(err, context.Canceled) || live() != 0 {
		t.Fatalf("Warm with its context ended: %d shards, %v, %d in memory; want 0, context.Canceled, 0", n, err, live())
	}
	compiles := e.compiles.Load()
	n, err := e.Warm(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Warm: %d shards, %v; want the bound, 2", n, err)
	}
	if got := live(); got != 2 {
		t.Errorf("%d shards in memory after Warm, want 2", got)
	}
	warmed := 0
	for sh := range 3 {
		if !inShard(e, owner(sh, 0)) {
			continue
		}
		warmed++
		for _, i := range []int{0, shardSize - 1} {
			o := owner(sh, i)
			d, err := e.Evaluate(ctx, o, shardInputs(o)[0])
			if err != nil || !slices.Equal(d.Allow, []string{fmt.Sprintf("s%d", sh)}) {
				t.Errorf("%s: allow %v, %v", o, d.Allow, err)
			}
		}
	}
	if warmed != 2 {
		t.Errorf("%d shards' owners in force from their shard, want 2", warmed)
	}
	if n, err := e.Warm(ctx); n != 0 || err != nil {
		t.Errorf("Warm again: %d shards, %v; want 0, nil", n, err)
	}
	if got := e.compiles.Load() - compiles; got != 0 {
		t.Errorf("%d owners' rules compiled again by Warm and the evaluations, want 0", got)
	}
}

// TestWarmLeavesHeldShards: Warm skips a shard that someone else holds
// (here as an evaluation compiling it would, which may wait for the slot
// Warm took), and compiles the others without waiting for it.
func TestWarmLeavesHeldShards(t *testing.T) {
	e, owner := threeShards(t)
	e.shards.mu.Lock()
	held := e.shards.of[owner(1, 0)]
	e.shards.mu.Unlock()
	held.mu.Lock()
	n, err := e.Warm(t.Context())
	held.mu.Unlock()
	if err != nil || n != 2 {
		t.Fatalf("Warm with one shard held: %d shards, %v; want 2, nil", n, err)
	}
	if inShard(e, owner(1, 0)) || !inShard(e, owner(0, 0)) || !inShard(e, owner(2, 0)) {
		t.Errorf("in force from a shard: held %v, others %v %v; want false, true, true",
			inShard(e, owner(1, 0)), inShard(e, owner(0, 0)), inShard(e, owner(2, 0)))
	}
}

// TestShardsReadOnlyTheOutputsDefined: a shard's query looks only at the
// outputs that one of its rule sets defines; each owner still gets their
// own, and none of another's.
func TestShardsReadOnlyTheOutputsDefined(t *testing.T) {
	ctx := t.Context()
	e := newTestEngine(Options{})
	owners := map[string]string{
		"only-allow": `allow contains "read" if lib.is_subject("bob")`,
		"asks":       "allow contains \"read\" if lib.is_subject(\"bob\")\n\nask_owner contains \"write\" if lib.is_subject(\"bob\")",
		"needs":      `required_claims contains lib.email_claim if not lib.email`,
	}
	for o, src := range owners {
		must(t, e.SetOwnerModules(ctx, o, rules(src)))
	}
	in := func(o string) Input {
		return Input{Resource: Resource{ID: "r", Owner: o, Scopes: []string{"read", "write"}}, Scopes: []string{"read", "write"}, Subject: "bob", Now: t0}
	}
	for o := range owners {
		d, err := e.Evaluate(ctx, o, in(o))
		if err != nil || !inShard(e, o) {
			t.Fatalf("%s: %v (in a shard: %v)", o, err, inShard(e, o))
		}
		got := fmt.Sprint(d.Allow, d.AskOwner, len(d.RequiredClaims))
		want := map[string]string{"only-allow": "[read] [] 0", "asks": "[read] [write] 0", "needs": "[] [] 1"}[o]
		if got != want {
			t.Errorf("%s: allow, ask_owner, required claims %s; want %s", o, got, want)
		}
	}
}
