package policies

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu        sync.Mutex
	compiled  []error
	evaluated []error
}

func (r *recorder) Compiled(_ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.compiled = append(r.compiled, err)
}

func (r *recorder) Evaluated(_ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evaluated = append(r.evaluated, err)
}

// TestObserver checks that the Observer hears of each compilation (not of
// rule sets found compiled) and of each evaluation, with its error.
func TestObserver(t *testing.T) {
	in := Input{Resource: photo, Subject: "bob", Now: t0}
	tests := []struct {
		name          string
		do            func(ctx context.Context, e *Engine) error
		wantCompiled  []error // the sentinel each reported error matches; nil for success
		wantEvaluated []error
	}{
		{
			name: "rules put in force and evaluated",
			do: func(ctx context.Context, e *Engine) error {
				if err := e.SetOwnerModules(ctx, "alice", rules(`allow contains "view" if lib.is_subject("bob")`)); err != nil {
					return err
				}
				_, err := e.Evaluate(ctx, "alice", in)
				return err
			},
			wantCompiled:  []error{nil},
			wantEvaluated: []error{nil},
		},
		{
			name: "the same rules again are not compiled again",
			do: func(ctx context.Context, e *Engine) error {
				r := rules(`allow contains "view"`)
				if err := e.Check(ctx, "alice", r); err != nil {
					return err
				}
				return e.SetOwnerModules(ctx, "alice", r)
			},
			wantCompiled: []error{nil},
		},
		{
			name: "rules that do not compile",
			do: func(ctx context.Context, e *Engine) error {
				if err := e.Check(ctx, "alice", rules(`allow contains x`)); !errors.Is(err, ErrCompile) {
					return err
				}
				return nil
			},
			wantCompiled: []error{ErrCompile},
		},
		{
			name: "an evaluation that runs past its time limit",
			do: func(ctx context.Context, e *Engine) error {
				if err := e.SetOwnerModules(ctx, "mallory", rules(runaway)); err != nil {
					return err
				}
				_, err := e.Evaluate(ctx, "mallory", Input{Resource: Resource{Scopes: []string{"view"}}, Now: t0})
				if !errors.Is(err, ErrTimeout) {
					return err
				}
				return nil
			},
			wantCompiled:  []error{nil},
			wantEvaluated: []error{ErrTimeout},
		},
		{
			name: "a draft is compiled and evaluated",
			do: func(ctx context.Context, e *Engine) error {
				_, err := e.EvaluateDraft(ctx, "alice", rules(`allow contains "edit"`), in)
				return err
			},
			wantCompiled:  []error{nil},
			wantEvaluated: []error{nil},
		},
	}
	check := func(t *testing.T, what string, got, want []error) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s reported %d times (%v), want %d", what, len(got), got, len(want))
		}
		for i := range want {
			if (want[i] == nil) != (got[i] == nil) || (want[i] != nil && !errors.Is(got[i], want[i])) {
				t.Errorf("%s %d reported %v, want %v", what, i, got[i], want[i])
			}
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			e := newTestEngine(Options{Observer: rec, Timeout: 100 * time.Millisecond})
			if err := tc.do(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			check(t, "compilation", rec.compiled, tc.wantCompiled)
			check(t, "evaluation", rec.evaluated, tc.wantEvaluated)
		})
	}
}
