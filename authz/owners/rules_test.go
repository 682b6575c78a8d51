package owners

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/caddy-uma/caddy-uma/policies"
)

const viewRule = "package uma.share\n\nallow contains \"view\" if true\n"

func TestRulesSavedCompiledAndPutInForce(t *testing.T) {
	_, opts, c := newTestStore(t)
	engine := policies.NewEngine(policies.Options{})
	b := NewRules(opts, RulesOptions{Engine: engine})
	ctx := t.Context()
	if err := b.PutRule(ctx, "alice", "../x", viewRule); !errors.Is(err, ErrBadRuleName) {
		t.Errorf("a bad name: %v", err)
	}
	var ce policies.CompileErrors
	if err := b.PutRule(ctx, "alice", "broken", "package uma.share\n\nallow contains"); !errors.As(err, &ce) {
		t.Errorf("rules that do not compile: %v", err)
	}
	if err := b.PutRule(ctx, "alice", "main", viewRule); err != nil {
		t.Fatal(err)
	}
	if mods, err := b.Rules(ctx, "alice"); err != nil || !slices.Equal(slices.Sorted(maps.Keys(mods)), []string{"main"}) {
		t.Fatalf("alice's rules: %v %v", mods, err)
	}
	if err := b.InForce(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	in := policies.Input{Resource: policies.Resource{ID: "photos", Owner: "alice", Scopes: []string{"view", "edit"}}, Scopes: []string{"view", "edit"}, Now: c.now()}
	if dec, err := engine.Evaluate(ctx, "alice", in); err != nil || !slices.Equal(dec.Granted, []string{"view"}) {
		t.Fatalf("alice's rules in force grant %v, %v", dec.Granted, err)
	}
	if err := b.DeleteRule(ctx, "alice", "main"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRule(ctx, "alice", "main"); !errors.Is(err, ErrNoSuchRule) {
		t.Errorf("deleting again: %v", err)
	}
	if dec, err := engine.Evaluate(ctx, "alice", in); err != nil || len(dec.Granted) != 0 {
		t.Errorf("after the delete the rules in force grant %v, %v", dec.Granted, err)
	}
	b.Changed("alice" + sep + "main")
	b.mu.Lock()
	loaded := b.loaded["alice"]
	b.mu.Unlock()
	if loaded {
		t.Error("a change of alice's rules left them marked in force")
	}
	if dirErr, problems := b.Status(); dirErr != "" || len(problems) != 0 {
		t.Errorf("status: %q %v", dirErr, problems)
	}
	if IsDirectoryRule("main") || !IsDirectoryRule("dir/main.rego") {
		t.Error("IsDirectoryRule")
	}
}
