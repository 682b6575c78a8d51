package policies

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"testing"
	"time"
)

// FuzzOwnerModule uploads any module source as an owner's rules, as the
// owner API and the console do: Check, then SetOwnerModules, then an
// evaluation. No panic and no hang; a refusal is a CompileErrors or the
// compile bound (ErrCompileTimeout); what Check accepts is put in force; an
// evaluation grants only scopes the resource offers, and another owner's
// evaluation is untouched. Seeds: testdata/fuzz/FuzzOwnerModule (the
// examples directory's policies among them, and the audit's 15,000-term
// sum).
func FuzzOwnerModule(f *testing.F) {
	const limit = 10 * time.Second
	e := NewEngine(Options{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	report := Resource{ID: "r1", Name: "labs", Type: "lab-report", Scopes: []string{"read", "download", "write"}}
	in := Input{
		Resource: report, Scopes: []string{"read"}, ClientID: "app", Subject: "bob", Issuer: "https://idp.example",
		Claims:  map[string]any{"email": "dr.rivera@clinic.example", "email_verified": true, "groups": []any{"family"}},
		Request: map[string]any{"method": "GET"}, Now: at,
	}
	f.Fuzz(func(t *testing.T, src string) {
		modules := map[string]string{"rules.rego": src}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		hang := time.AfterFunc(limit+time.Second, func() { debug.SetTraceback("all"); panic(fmt.Sprintf("rules upload: no answer within %s", limit)) })
		defer hang.Stop()
		if err := e.Check(ctx, "alice", modules); err != nil {
			if !errors.Is(err, ErrCompile) && !errors.Is(err, ErrCompileTimeout) {
				t.Fatalf("Check: neither a compile error nor the compile bound: %v", err)
			}
			return
		}
		if err := e.SetOwnerModules(ctx, "alice", modules); err != nil {
			t.Fatalf("Check accepted what SetOwnerModules refuses: %v", err)
		}
		defer e.SetOwnerModules(ctx, "alice", nil)
		d, err := e.Evaluate(ctx, "alice", in)
		if err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrEvaluation) {
			t.Fatalf("Evaluate: %v", err)
		}
		for _, s := range d.Granted {
			if !slices.Contains(report.Scopes, s) {
				t.Fatalf("granted %q, which the resource does not offer: %+v", s, d)
			}
		}
		other := in
		other.Resource.Owner = "carol"
		if d, err := e.Evaluate(ctx, "carol", other); err != nil || len(d.Granted) > 0 {
			t.Fatalf("alice's rules reached carol's decision: %+v, %v", d, err)
		}
	})
}
