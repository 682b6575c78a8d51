package policies

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
)

// TestLibraryPrunedCompilesAlike compiles rules that reach the library in
// every way Rego allows, with the library pruned (withLibraryPruned) and
// whole, and compares the errors and the decisions on inputs that make
// the library's functions answer both ways; and checks that pruning
// leaves out rules where it may and none where it may not.
func TestLibraryPrunedCompilesAlike(t *testing.T) {
	cases := []struct {
		src   string
		whole bool // the library must stay whole
	}{
		{"import data.uma.lib\n\nallow contains s if { lib.in_group(\"family\"); some s in lib.read_scopes }", false},
		{"import data.uma.lib as l\n\nallow contains \"read\" if l.is_person(\"bob\")", false},
		{"import data.uma.lib.is_person\n\nallow contains \"read\" if is_person(\"bob@example.com\")", false},
		{"allow contains \"read\" if data.uma.lib.in_email_domain(\"example.com\")", false},
		{"import data.uma.lib\n\nallow contains \"read\" if lib.within(\"2020-01-01T00:00:00Z\", \"2099-01-01T00:00:00Z\")", false},
		{"import data.uma.lib\n\nrequired_claims contains lib.email_claim if not lib.email", false},
		{"import data.uma.lib\n\nallow contains \"read\" if lib.is_person(\"x\") with input.requesting_party as {\"sub\": \"x\"}", false},
		{"import data.uma.lib\n\ndeny contains s if { lib.is_client(\"evil\"); some s in lib.available }\nallow contains s if some s in lib.requested", false},
		{"allow contains \"read\" if input.requesting_party.sub == \"bob\"", false},
		{"import data.uma.lib\n\nallow contains \"read\" if lib.nosuch(1)", false},
		{"import data.uma.lib\n\nallow contains \"read\" if lib.read_scopes + 1", false},
		{"import data.uma.lib\n\nallow contains \"read\" if lib.subject == 1", false},
		{"import data.uma.lib\n\nis_person(x) if x == \"me\"\nallow contains \"read\" if is_person(input.requesting_party.sub)", false},
		{"allow contains s if some s in data.uma.lib.read_scopes", false},
		{"allow contains \"read\" if { x := data.uma.lib; x.is_subject(\"bob\") }", true},
		{"allow contains \"read\" if { some name in [\"subject\"]; data.uma.lib[name] == \"bob\" }", true},
		{"import data.uma\n\nallow contains \"read\" if uma.lib.is_person(\"bob\")", false},
		{"h if { some k in [\"lib\"]; data.uma[k].subject == \"bob\" }", true},
		{"allow contains \"read\" if { x := data.uma.lib.subject; x == \"bob\" }", false},
	}
	inputs := []Input{
		{Resource: Resource{ID: "r", Owner: "alice", Type: "t", Scopes: []string{"read", "write"}}, Scopes: []string{"read"}, Now: t0},
		{Resource: Resource{ID: "r", Owner: "alice", Type: "t", Scopes: []string{"read", "write"}}, Scopes: []string{"read", "write"},
			Subject: "bob", ClientID: "evil", Now: t0,
			Claims: map[string]any{"groups": []any{"family"}, "email": "bob@example.com", "email_verified": true},
			Shares: []Share{{Subject: "bob", Scopes: []string{"write"}}}},
	}
	ctx := context.Background()
	lib, _ := library()
	libRules := 0
	for _, mod := range lib {
		libRules += len(mod.Rules)
	}
	for _, c := range cases {
		src := "package uma.share\n\n" + c.src + "\n"
		t.Run(strings.ReplaceAll(c.src, "\n", " "), func(t *testing.T) {
			decide := func(prune bool) (string, int) {
				mod, errs := parseModule(ownerKind, "rules.rego", src, Options{}.withDefaults().bounds())
				if len(errs) > 0 {
					t.Fatal(errs)
				}
				parsed := maps.Clone(lib)
				parsed[userPrefix+"rules.rego"] = mod
				parsed[decisionModule] = parsedDecision(ownerKind)
				comp := newCompiler(capabilitiesFor(parsed))
				if prune {
					comp = withLibraryPruned(comp)
				}
				comp.Compile(parsed)
				kept := 0
				for name, m := range comp.Modules {
					if strings.HasPrefix(name, libPrefix) {
						kept += len(m.Rules)
					}
				}
				if comp.Failed() {
					return sortErrors(fromOPA("", comp.Errors)).Error(), kept
				}
				q, err := rego.New(rego.Compiler(comp), rego.Query(decisionQuery)).PrepareForEval(ctx)
				if err != nil {
					return err.Error(), kept
				}
				var out []string
				for _, in := range inputs {
					v, err := in.value("alice", t0)
					if err != nil {
						t.Fatal(err)
					}
					rs, err := q.Eval(ctx, rego.EvalParsedInput(v))
					out = append(out, fmt.Sprint(rs, err))
				}
				return strings.Join(out, "\n"), kept
			}
			got, kept := decide(true)
			want, all := decide(false)
			if got != want {
				t.Errorf("pruned:\n%s\nwhole:\n%s", got, want)
			}
			if all != libRules {
				t.Fatalf("the whole library compiled %d rules of %d", all, libRules)
			}
			if c.whole && kept != all || !c.whole && kept >= all {
				t.Errorf("kept %d of the library's %d rules", kept, all)
			}
		})
	}
}

// The decision module reaches the library (shared_scopes): a rule set
// that refers to none of it keeps what the decision needs.
func TestLibraryPrunedKeepsTheDecisions(t *testing.T) {
	mod, _ := parseModule(ownerKind, "rules.rego", "package uma.share\n\nallow contains \"read\" if true\n", Options{}.withDefaults().bounds())
	lib, _ := library()
	parsed := maps.Clone(lib)
	parsed[userPrefix+"rules.rego"] = mod
	parsed[decisionModule] = parsedDecision(ownerKind)
	comp := withLibraryPruned(newCompiler(capabilitiesFor(parsed)))
	if comp.Compile(parsed); comp.Failed() {
		t.Fatal(comp.Errors)
	}
	var kept []string
	for name, m := range comp.Modules {
		if strings.HasPrefix(name, libPrefix) {
			for _, r := range m.Rules {
				kept = append(kept, r.Head.Ref().String())
			}
		}
	}
	if !strings.Contains(strings.Join(kept, " "), "shared_scopes") || strings.Contains(strings.Join(kept, " "), "in_group") {
		t.Errorf("kept %v", kept)
	}
}
