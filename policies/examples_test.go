package policies

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// runRegoTests runs the Rego tests (test_ rules) of modules, compiled with the
// library and the sandbox, and fails t on any failure, error or when there
// are no tests at all.
func runRegoTests(t *testing.T, modules map[string]*ast.Module) {
	t.Helper()
	lib, _ := library()
	all := map[string]*ast.Module{}
	for name, mod := range lib {
		all[name] = mod
	}
	for name, mod := range modules {
		all[name] = mod
	}
	ctx := context.Background()
	store := inmem.New()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetCompiler(newCompiler(capabilities)).
		SetStore(store).
		SetModules(all).
		CapturePrintOutput(true).
		RunTests(ctx, txn)
	if err != nil {
		t.Fatalf("compiling tests: %v", err)
	}
	n := 0
	for r := range ch {
		if strings.HasPrefix(r.Location.File, libPrefix) && modules[r.Location.File] == nil {
			continue // the library's own tests are run by TestLibrary
		}
		n++
		switch {
		case r.Error != nil:
			t.Errorf("%s.%s: error: %v", r.Package, r.Name, r.Error)
		case r.Fail:
			t.Errorf("%s.%s: FAIL (%s:%d)", r.Package, r.Name, r.Location.File, r.Location.Row)
		case r.Skip:
			t.Errorf("%s.%s: skipped", r.Package, r.Name)
		}
	}
	if n == 0 {
		t.Error("no Rego tests ran")
	}
}

func parseFile(t *testing.T, path string) *ast.Module {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := ast.ParseModuleWithOpts(path, string(src), parserOptions)
	if err != nil {
		t.Fatal(err)
	}
	return mod
}

func TestLibrary(t *testing.T) {
	_, tests := library()
	if len(tests) == 0 {
		t.Fatal("the library has no Rego tests")
	}
	runRegoTests(t, tests)
}

// exampleCase is one input evaluated through the Engine, and what it must
// grant.
type exampleCase struct {
	in   Input
	want []string
}

var (
	jan2025 = time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC)
	// exampleCases are a positive and a negative case for each example.
	exampleCases = map[string][2]exampleCase{
		"doctor-by-email": {
			{Input{Resource: Resource{ID: "r1", Type: "lab-report", Scopes: []string{"read", "download", "write"}},
				Claims: map[string]any{"email": "dr.rivera@clinic.example", "email_verified": true}},
				[]string{"download", "read"}},
			{Input{Resource: Resource{ID: "r1", Type: "lab-report", Scopes: []string{"read", "download", "write"}},
				Claims: map[string]any{"email": "dr.rivera@clinic.example", "email_verified": false}},
				nil},
		},
		"family-read-only": {
			{Input{Resource: Resource{ID: "a1", Scopes: []string{"photo:view", "photo:edit"}},
				Claims: map[string]any{"groups": []string{"family"}}},
				[]string{"photo:view"}},
			{Input{Resource: Resource{ID: "a1", Scopes: []string{"photo:view", "photo:edit"}},
				Claims: map[string]any{"groups": []any{"friends"}}},
				nil},
		},
		"insurer-time-window": {
			{Input{Resource: Resource{ID: "c1", Type: "claim-file", Scopes: []string{"read", "write"}},
				Claims: map[string]any{"email": "claims@insurer.example"}, Now: jan2025},
				[]string{"read"}},
			{Input{Resource: Resource{ID: "c1", Type: "claim-file", Scopes: []string{"read", "write"}},
				Claims: map[string]any{"email": "claims@insurer.example"}, Now: jan2025.AddDate(1, 0, 0)},
				nil},
		},
		"colleagues-domain": {
			{Input{Resource: Resource{ID: "d1", Type: "document", Scopes: []string{"read", "comment", "edit"}},
				Claims: map[string]any{"email": "bob@acme.example"}},
				[]string{"comment", "read"}},
			{Input{Resource: Resource{ID: "d1", Type: "document", Scopes: []string{"read", "comment", "edit"}},
				Claims: map[string]any{"email": "mallory@acme.example"}},
				nil},
		},
		"one-client-app": {
			{Input{Resource: Resource{ID: "x", Scopes: []string{"activity.read", "activity.write"}},
				ClientID: "coach-app", Claims: map[string]any{"email": "coach@fit.example"}},
				[]string{"activity.read"}},
			{Input{Resource: Resource{ID: "x", Scopes: []string{"activity.read", "activity.write"}},
				ClientID: "other-app", Claims: map[string]any{"email": "coach@fit.example"}},
				nil},
		},
		"need-info-email": {
			{Input{Resource: Resource{ID: "n1", Scopes: []string{"read", "write"}},
				Claims: map[string]any{"email": "bo@example.org"}},
				[]string{"read"}},
			{Input{Resource: Resource{ID: "n1", Scopes: []string{"read", "write"}}},
				nil},
		},
		"ask-owner-write": {
			{Input{Resource: Resource{ID: "cal", Scopes: []string{"calendar:read", "calendar:write"}},
				Scopes: []string{"calendar:read"}, Claims: map[string]any{"groups": []string{"family"}}},
				[]string{"calendar:read"}},
			{Input{Resource: Resource{ID: "cal", Scopes: []string{"calendar:read", "calendar:write"}},
				Scopes: []string{"calendar:read"}, Claims: map[string]any{"groups": []string{"work"}}},
				nil},
		},
		"_system": {
			// Evaluated with an owner who allows everything.
			{Input{Resource: Resource{ID: "r", Scopes: []string{"read", "admin"}}, ClientID: "web"},
				[]string{"read"}},
			{Input{Resource: Resource{ID: "r", Scopes: []string{"read", "admin"}}, ClientID: "legacy-sync"},
				nil},
		},
	}
)

func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob("examples/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 7 {
		t.Fatalf("%d examples, want at least 7", len(dirs))
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			policy := filepath.Join(dir, "policy.rego")
			test := filepath.Join(dir, "policy_test.rego")
			runRegoTests(t, map[string]*ast.Module{
				policy: parseFile(t, policy),
				test:   parseFile(t, test),
			})

			cases, ok := exampleCases[name]
			if !ok {
				t.Fatalf("no Engine cases for example %s", name)
			}
			src, err := os.ReadFile(policy)
			if err != nil {
				t.Fatal(err)
			}
			e := newTestEngine(Options{})
			modules := map[string]string{"policy.rego": string(src)}
			if name == "_system" {
				err = e.SetSystemModules(context.Background(), modules)
				if err == nil {
					err = e.SetOwnerModules(context.Background(), "alice", map[string]string{"all.rego": allowAll})
				}
			} else {
				err = e.SetOwnerModules(context.Background(), "alice", modules)
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range cases {
				d, err := e.Evaluate(context.Background(), "alice", c.in)
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				if !slices.Equal(d.Granted, c.want) {
					t.Errorf("case %d: granted %q, want %q (decision %+v)", i, d.Granted, c.want, d)
				}
			}
		})
	}
}

const allowAll = `package uma.share

allow contains scope if some scope in input.resource.scopes
`

// TestRegoFormatted keeps the library and the examples as `opa fmt` writes
// them, since authors copy them.
func TestRegoFormatted(t *testing.T) {
	examples, _ := filepath.Glob("examples/*/*.rego")
	lib, _ := filepath.Glob("lib/*.rego")
	for _, file := range append(examples, lib...) {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out, err := format.SourceWithOpts(file, src, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if string(out) != string(src) {
			t.Errorf("%s is not formatted as opa fmt would", file)
		}
	}
}
