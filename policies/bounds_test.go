package policies

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nest repeats open n times, then inner, then close n times.
func nest(open, inner, close string, n int) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

// manyRules is n small rules.
func manyRules(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "r%d if input.scopes[0] == \"s%d\"\n", i, i)
	}
	return b.String()
}

// emails are n distinct addresses, as a Rego list.
func emails(n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("\"p%d@x.org\"", i)
	}
	return strings.Join(out, ",")
}

// longBody is one rule of n expressions.
func longBody(n int) string {
	var b strings.Builder
	b.WriteString("long if {\n")
	for i := range n {
		fmt.Fprintf(&b, "\tinput.scopes[_] != \"s%d\"\n", i)
	}
	b.WriteString("}\n")
	return b.String()
}

// TestCompileBounds shows that rule sets whose compilation would run long
// are refused from their parsed form, before the compiler runs. The
// context's deadline stands for a client that would not wait: if a bound
// did not hold, the compiler would run into it and the error would be
// ErrCompileTimeout, not the limit.
func TestCompileBounds(t *testing.T) {
	tests := []struct {
		name    string
		body    string // after `package uma.share`
		line    int    // of the limit error; 0: no error
		message string
	}{
		// The audit's module: 30 KB, 15,000 terms, 8-28 s of compiling.
		{"a chain of 15,000 additions", "x := 1" + strings.Repeat("+1", 14999), 3, "terms nested more than 32 deep"},
		{"arrays 33 deep", "x := " + nest("[", "1", "]", 33), 3, "terms nested more than 32 deep"},
		{"arrays 30 deep", "x := " + nest("[", "1", "]", 30), 0, ""},
		// 191 bytes took 10 s: each level doubles the type check.
		{"comprehensions 15 deep", "x := " + nest("[y | y := ", "1", "]", 15), 3, "comprehensions and every nested more than 4 deep"},
		{"comprehensions 4 deep", "x := " + nest("[y | y := ", "1", "]", 4), 0, ""},
		{"every 5 deep", "ok if {\n" + nest("every v in input.scopes { ", "v != \"\"", " }", 5) + "\n}", 4, "comprehensions and every nested more than 4 deep"},
		{"a rule of 101 expressions", longBody(101), 3, "more than 100 expressions and function calls"},
		{"a rule of 100 expressions", longBody(100), 0, ""},
		{"1001 rules", manyRules(1001), 1003, "more than 1000 rules in all"},
		{"1000 rules", manyRules(1000), 0, ""},
		{"20,001 terms", "x := [" + strings.Repeat("1,", 20000) + "1]", 3, "more than 20000 terms in all"},
		{"a set of 3000 e-mail addresses", "friends := {" + emails(3000) + "}", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(Options{CompileTimeout: time.Hour})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := e.Check(ctx, "mallory", map[string]string{"big.rego": "package uma.share\n\n" + tt.body + "\n"})
			if tt.line == 0 {
				if err != nil {
					t.Fatalf("within the limits: %v", err)
				}
				return
			}
			var ce CompileErrors
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a limit error", err)
			}
			if len(ce) != 1 || ce[0].Code != codeLimit || ce[0].Module != "big.rego" || ce[0].Line != tt.line ||
				!strings.Contains(ce[0].Message, tt.message) {
				t.Errorf("got %v, want %s at big.rego:%d", err, tt.message, tt.line)
			}
			if e.compiles.Load() != 1 {
				t.Errorf("%d compilations", e.compiles.Load())
			}
		})
	}
}

// TestBoundsCountAcrossModules shows that rules and terms count over the
// whole rule set, not per module.
func TestBoundsCountAcrossModules(t *testing.T) {
	e := newTestEngine(Options{MaxRules: 10})
	mods := map[string]string{
		"a.rego": "package uma.share\n\n" + manyRules(6),
		"b.rego": "package uma.share\n\n" + strings.ReplaceAll(manyRules(6), "r", "q"),
	}
	var ce CompileErrors
	if err := e.Check(t.Context(), "alice", mods); !errors.As(err, &ce) || ce[0].Module != "b.rego" ||
		!strings.Contains(ce[0].Message, "more than 10 rules in all") {
		t.Errorf("got %v", err)
	}
}

// stoppingContext is a context that is cancelled once Err has been asked
// after more than n times: it stops a compilation at a chosen point.
type stoppingContext struct {
	context.Context
	n, asked atomic.Int64
}

func (c *stoppingContext) Err() error {
	if c.asked.Add(1) > c.n.Load() {
		return context.Canceled
	}
	return nil
}

func TestCompileStops(t *testing.T) {
	mods := rules(`allow contains "view" if lib.is_subject("bob")`)

	t.Run("at the time limit", func(t *testing.T) {
		e := newTestEngine(Options{CompileTimeout: time.Nanosecond})
		err := e.Check(t.Context(), "alice", mods)
		if !errors.Is(err, ErrCompileTimeout) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrCompile) {
			t.Errorf("got %v, want ErrCompileTimeout", err)
		}
	})
	t.Run("when the caller goes away", func(t *testing.T) {
		e := newTestEngine(Options{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := e.Check(ctx, "alice", mods)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrCompileTimeout) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
	t.Run("between two stages of the compiler", func(t *testing.T) {
		// One look before parsing the module, then one after each stage:
		// the compiler stops after its third.
		ctx := &stoppingContext{Context: t.Context()}
		ctx.n.Store(4)
		if _, err := compile(ctx, ownerKind, mods, bounds{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if asked := ctx.asked.Load(); asked > 8 {
			t.Errorf("the context was asked %d times: the compiler did not stop at once", asked)
		}
	})
}

// TestCompileGate shows the limits on compilations at once: rules sent to
// be checked are refused with ErrBusy, rules put in force wait, and rules
// in force are evaluated meanwhile.
func TestCompileGate(t *testing.T) {
	e := newTestEngine(Options{MaxCompiles: 1, MaxOwnerCompiles: 1})
	bobs := rules(`allow contains "view" if lib.is_subject("bob")`)
	must(t, e.SetOwnerModules(t.Context(), "bob", bobs))
	draft := rules(`allow contains "download" if lib.is_subject("bob")`)
	// bob's rules are compiled (with their shard) at their first
	// evaluation; carol's, in the next shard, are not yet.
	if _, err := e.Evaluate(t.Context(), "bob", Input{Resource: Resource{Owner: "bob"}, Now: t0}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < shardSize; i++ { // rule sets of their own: a shard holds 64
		must(t, e.SetOwnerModules(t.Context(), fmt.Sprintf("owner-%d", i), rules(fmt.Sprintf(
			`allow contains "view" if lib.is_subject("bob-%d")`, i))))
	}
	carols := rules(`allow contains "view" if lib.is_subject("bob")
allow contains "view" if lib.is_subject("carol")`)
	must(t, e.SetOwnerModules(t.Context(), "carol", carols))

	// mallory's compilation runs (held here).
	done, err := e.gate.enter(t.Context(), "mallory", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Resource: photo, Subject: "bob", Now: t0}
	steps := []struct {
		name string
		err  error // nil: succeeds
		do   func() error
	}{
		{"the same owner again", ErrBusy, func() error { return e.Check(t.Context(), "mallory", draft) }},
		{"another owner, no slot free", ErrBusy, func() error { return e.Check(t.Context(), "alice", draft) }},
		{"a draft evaluated", ErrBusy, func() error {
			_, err := e.EvaluateDraft(t.Context(), "alice", draft, in)
			return err
		}},
		{"rules compiled already", nil, func() error { return e.Check(t.Context(), "alice", carols) }},
		{"another owner's rules in force", nil, func() error {
			d, err := e.Evaluate(t.Context(), "bob", Input{Resource: Resource{Scopes: []string{"view"}}, Subject: "bob", Now: t0})
			if err == nil && len(d.Granted) != 1 {
				err = fmt.Errorf("granted %v", d.Granted)
			}
			return err
		}},
		{"rules in force not compiled yet wait, until the caller gives up", context.DeadlineExceeded, func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			_, err := e.Evaluate(ctx, "carol", Input{Resource: Resource{Scopes: []string{"view"}}, Subject: "bob", Now: t0})
			return err
		}},
		{"rules put in force wait, until the caller gives up", context.DeadlineExceeded, func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			return e.SetOwnerModules(ctx, "alice", draft)
		}},
	}
	for _, s := range steps {
		err := s.do()
		if (s.err == nil) != (err == nil) || (s.err != nil && !errors.Is(err, s.err)) {
			t.Errorf("%s: got %v, want %v", s.name, err, s.err)
		}
	}
	done()
	if err := e.Check(t.Context(), "mallory", draft); err != nil {
		t.Errorf("after mallory's compilation: %v", err)
	}

	// Rules put in force wait at most CompileTimeout for a slot.
	e = newTestEngine(Options{MaxCompiles: 1, CompileTimeout: time.Millisecond})
	done, _ = e.gate.enter(t.Context(), "mallory", false, 0)
	defer done()
	if err := e.SetOwnerModules(context.Background(), "alice", draft); !errors.Is(err, ErrBusy) {
		t.Errorf("no slot within CompileTimeout: got %v, want ErrBusy", err)
	}
}

// TestCompileGateBackground: a compilation in the background (Warm's)
// takes a slot only when one is free, and never makes another compilation
// refused: rules sent to be checked while it holds the only slot wait for
// it, at most CompileTimeout, where a compilation of rules put in force
// would have them refused with ErrBusy.
func TestCompileGateBackground(t *testing.T) {
	e := newTestEngine(Options{MaxCompiles: 1})
	draft := rules(`allow contains "view" if lib.is_subject("bob")`)
	release, err := e.gate.enterBackground(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, release)
	if err := e.Check(t.Context(), "alice", draft); err != nil {
		t.Errorf("checked while a compilation in the background held the slot: %v", err)
	}

	// The background waits for a slot, until its context ends.
	done, err := e.gate.enter(t.Context(), "mallory", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if _, err := e.gate.enterBackground(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("background with no slot free: %v, want context.DeadlineExceeded", err)
	}
	if err := e.Check(t.Context(), "alice", rules(`allow contains "edit" if lib.is_subject("bob")`)); !errors.Is(err, ErrBusy) {
		t.Errorf("checked while another check held the slot: %v, want ErrBusy", err)
	}
	done()
}
